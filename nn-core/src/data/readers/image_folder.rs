//! torchvision's `ImageFolder` (feature `image`, the `image` crate with its PNG and
//! JPEG decoders): `root/<class>/**/<file>`, classes from the sorted folder names.

use super::bad;
use crate::data::dataset::check_index;
use crate::data::Dataset;
use crate::{Error, HostData, Result, Tensor};
use std::path::{Path, PathBuf};

/// torchvision's `IMG_EXTENSIONS` (matched case-insensitively). Only PNG and JPEG are
/// decoded by this build; a listed file of another kind fails when it is loaded.
pub const IMG_EXTENSIONS: [&str; 9] = [
    ".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp",
];

/// Largest decoded image accepted (bytes), so a hostile header cannot claim gigabytes.
const MAX_DECODED: u64 = 256 << 20;

/// Images in class folders: sample `i` is `(image u8 [H, W, 3], class index)` as
/// torchvision's `ImageFolder` gives `(PIL RGB image, class)`; apply
/// [`crate::data::ToTensor`] for f32 `[3, H, W]`.
#[derive(Debug, Clone)]
pub struct ImageFolder {
    classes: Vec<String>,
    samples: Vec<(PathBuf, usize)>,
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> Error + '_ {
    move |e| Error::io(path, e)
}

/// Files under `dir` (following links) in torchvision's order: `sorted(os.walk(dir))`
/// sorts the folders by their path *string*, then each folder's `sorted(fnames)`.
fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    let mut folders: Vec<(String, Vec<String>)> = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        let mut files = Vec::new();
        for e in std::fs::read_dir(&d).map_err(io(&d))? {
            let p = e.map_err(io(&d))?.path();
            if p.is_dir() {
                todo.push(p);
            } else {
                files.push(p.to_string_lossy().into_owned());
            }
        }
        files.sort();
        folders.push((d.to_string_lossy().into_owned(), files));
    }
    folders.sort_by(|a, b| a.0.cmp(&b.0));
    out.extend(
        folders
            .into_iter()
            .flat_map(|(_, files)| files.into_iter().map(PathBuf::from)),
    );
    Ok(())
}

impl ImageFolder {
    /// Lists `root`: one class per sub-folder (sorted by name), every file with an
    /// [`IMG_EXTENSIONS`] extension below it; a class without files is an error, as in
    /// torchvision.
    pub fn new(root: impl AsRef<Path>) -> Result<ImageFolder> {
        let root = root.as_ref();
        let mut classes = Vec::new();
        for e in std::fs::read_dir(root).map_err(io(root))? {
            let p = e.map_err(io(root))?.path();
            if p.is_dir() {
                classes.push(
                    p.file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default(),
                );
            }
        }
        classes.sort();
        if classes.is_empty() {
            return Err(bad(root, "no class folders"));
        }
        let mut samples = Vec::new();
        for (k, c) in classes.iter().enumerate() {
            let mut files = Vec::new();
            walk(&root.join(c), &mut files)?;
            let before = samples.len();
            for f in files {
                let name = f.to_string_lossy().to_lowercase();
                if IMG_EXTENSIONS.iter().any(|e| name.ends_with(e)) {
                    samples.push((f, k));
                }
            }
            if samples.len() == before {
                return Err(bad(
                    root,
                    format!(
                        "class folder `{c}` holds no file with an extension in {IMG_EXTENSIONS:?}"
                    ),
                ));
            }
        }
        Ok(ImageFolder { classes, samples })
    }

    /// The class names, sorted; a sample's label indexes this list.
    pub fn classes(&self) -> &[String] {
        &self.classes
    }

    /// Every `(file, class index)`, in order.
    pub fn samples(&self) -> &[(PathBuf, usize)] {
        &self.samples
    }
}

/// Decodes an image file to RGB u8 `[H, W, 3]`.
pub fn read_image(path: impl AsRef<Path>) -> Result<Tensor> {
    let path = path.as_ref();
    let mut reader = image::ImageReader::open(path)
        .map_err(io(path))?
        .with_guessed_format()
        .map_err(io(path))?;
    let mut limits = image::Limits::default();
    limits.max_alloc = Some(MAX_DECODED);
    limits.max_image_width = Some(1 << 15);
    limits.max_image_height = Some(1 << 15);
    reader.limits(limits);
    let img = reader
        .decode()
        .map_err(|e| bad(path, format!("cannot decode image: {e}")))?
        .into_rgb8();
    let (w, h) = (img.width() as usize, img.height() as usize);
    Tensor::from_host(HostData::U8(img.into_raw()), &[h, w, 3])
}

impl Dataset for ImageFolder {
    type Item = (Tensor, i64);
    fn len(&self) -> usize {
        self.samples.len()
    }
    fn get(&self, index: usize) -> Result<(Tensor, i64)> {
        check_index("ImageFolder::get", index, self.samples.len())?;
        let (path, class) = &self.samples[index];
        Ok((read_image(path)?, *class as i64))
    }
}
