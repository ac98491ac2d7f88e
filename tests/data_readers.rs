//! `nn::data::readers` on files numpy, Pillow and torchvision wrote
//! (tools/make_data_fixtures.py), on files the tests write, and on hostile files.

#[cfg(any(feature = "csv", feature = "image"))]
use nn::data::readers;
use nn::data::readers::{read_idx, read_npy, read_npz, write_npy, Cifar, Mnist, NpyFile};
use nn::data::{resized_crop, Dataset};
use nn::{DType, HostData, Result, Tensor};
use std::path::PathBuf;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/data")
        .join(name)
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("nn-data-readers-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&d);
    d.join(name)
}

fn arange(n: usize) -> Vec<f64> {
    (0..n).map(|i| i as f64).collect()
}

fn as_f64(t: &Tensor) -> Result<Vec<f64>> {
    Ok(match t.to_host()? {
        HostData::F32(v) => v.into_iter().map(f64::from).collect(),
        HostData::F64(v) => v,
        HostData::I64(v) => v.into_iter().map(|x| x as f64).collect(),
        HostData::I32(v) => v.into_iter().map(f64::from).collect(),
        HostData::U8(v) | HostData::Bool(v) => v.into_iter().map(f64::from).collect(),
        other => {
            return Err(nn::Error::DType {
                op: "test",
                dtype: other.dtype(),
                expected: None,
            })
        }
    })
}

#[test]
fn npy_files_numpy_wrote() -> Result<()> {
    // (file, dtype, shape): every array is np.arange(n) reshaped, C order after reading
    for (f, dt, shape) in [
        ("npy_f32.npy", DType::F32, vec![2, 3]),
        ("npy_f64_f.npy", DType::F64, vec![3, 4]),
        ("npy_i64.npy", DType::I64, vec![5]),
        ("npy_u8.npy", DType::U8, vec![2, 3, 4]),
        ("npy_i32_f.npy", DType::I32, vec![2, 3, 4]),
        ("npy_f32_be.npy", DType::F32, vec![3, 2]),
    ] {
        let t = read_npy(fixture(f))?;
        assert_eq!((t.dtype(), t.shape()), (dt, &shape[..]), "{f}");
        assert_eq!(as_f64(&t)?, arange(t.numel()), "{f}");
    }
    let b = read_npy(fixture("npy_bool.npy"))?;
    assert_eq!(
        (b.dtype(), as_f64(&b)?),
        (DType::Bool, vec![0.0, 1.0, 0.0, 1.0])
    );
    Ok(())
}

#[test]
fn npy_round_trip_and_mapped_rows() -> Result<()> {
    let t = Tensor::arange(0, 12)
        .to_dtype(DType::F32)?
        .reshape(&[4, 3])?;
    let p = tmp("rt.npy");
    write_npy(&p, &t)?;
    assert_eq!(read_npy(&p)?.to_vec::<f32>()?, t.to_vec::<f32>()?);
    let rows = NpyFile::open(&p)?;
    assert_eq!(rows.len(), 4);
    assert_eq!(rows.get(2)?.to_vec::<f32>()?, vec![6.0, 7.0, 8.0]);
    assert!(rows.get(4).is_err());
    // a Fortran-order file has no contiguous rows
    assert!(NpyFile::open(fixture("npy_f64_f.npy")).is_err());
    Ok(())
}

#[test]
fn npz_stored_and_deflated() -> Result<()> {
    for f in ["arrays.npz", "arrays_z.npz"] {
        let a = read_npz(fixture(f))?;
        let names: Vec<&str> = a.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, vec!["x", "y", "flags"], "{f}");
        assert_eq!((a[0].1.shape(), as_f64(&a[0].1)?), (&[2, 3][..], arange(6)));
        assert_eq!((a[1].1.dtype(), as_f64(&a[1].1)?), (DType::I64, arange(4)));
        assert_eq!(as_f64(&a[2].1)?, vec![1.0, 0.0, 1.0]);
    }
    Ok(())
}

#[test]
fn idx_plain_and_gzipped() -> Result<()> {
    let plain = read_idx(fixture("images-idx3-ubyte"))?;
    let gz = read_idx(fixture("images-idx3-ubyte.gz"))?;
    assert_eq!(plain.shape(), &[5, 4, 3]);
    let want: Vec<f64> = (0..60).map(|k| ((k * 7) % 256) as f64).collect();
    assert_eq!((as_f64(&plain)?, as_f64(&gz)?), (want.clone(), want));
    let m = Mnist::new(
        fixture("images-idx3-ubyte.gz"),
        fixture("labels-idx1-ubyte"),
    )?;
    assert_eq!(m.len(), 5);
    let (img, label) = m.get(3)?;
    assert_eq!((img.shape(), label), (&[1, 4, 3][..], 3));
    assert!((img.to_vec::<f32>()?[1] - ((36 + 1) * 7 % 256) as f32 / 255.0).abs() < 1e-6);
    Ok(())
}

#[test]
fn cifar_batches() -> Result<()> {
    let c = Cifar::cifar10(&[fixture("cifar10.bin")])?;
    assert_eq!(c.len(), 3);
    let (img, label) = c.get(2)?;
    assert_eq!((img.shape(), label), (&[3, 32, 32][..], 2));
    let px = img.to_vec::<f32>()?;
    assert!(
        (px[1024] - ((2 + 1024) % 256) as f32 / 255.0).abs() < 1e-6,
        "channel-major"
    );
    let c = Cifar::cifar100(&[fixture("cifar100.bin")])?;
    assert_eq!(
        (c.labels(), c.coarse_labels()),
        (&[5, 15, 25][..], &[1, 2, 3][..])
    );
    Ok(())
}

#[test]
fn resized_crop_matches_torchvision() -> Result<()> {
    let x = read_npy(fixture("resized_crop_in.npy"))?;
    let want = read_npy(fixture("resized_crop.npy"))?.to_vec::<f32>()?;
    let cases: Vec<(usize, usize, usize, usize, [usize; 2])> = serde_json::from_str(
        &std::fs::read_to_string(fixture("resized_crop.json"))
            .map_err(|e| nn::Error::io("resized_crop.json", e))?,
    )
    .map_err(|e| nn::Error::Format {
        path: "resized_crop.json".into(),
        msg: e.to_string(),
    })?;
    let mut at = 0;
    for (i, j, h, w, [oh, ow]) in cases {
        let got = resized_crop(&x, i, j, h, w, (oh, ow))?.to_vec::<f32>()?;
        let exp = &want[at..at + got.len()];
        at += got.len();
        let err = got
            .iter()
            .zip(exp)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(
            err < 1e-5,
            "case {i} {j} {h} {w} -> {oh}x{ow}: max error {err}"
        );
    }
    assert_eq!(at, want.len());
    Ok(())
}

#[cfg(feature = "csv")]
#[test]
fn csv_with_a_header() -> Result<()> {
    let ds = readers::CsvDataset::read(fixture("table.csv"), "class")?;
    assert_eq!(
        (ds.len(), ds.feature_names()),
        (4, &["a".to_string(), "b".to_string()][..])
    );
    let (x, y) = ds.get(3)?;
    assert_eq!((x.to_vec::<f32>()?, y), (vec![-4.5, 8.0], 2));
    let p = tmp("bad.csv");
    std::fs::write(&p, "a,class\n1,0\nx,1\n").map_err(|e| nn::Error::io(&p, e))?;
    let e = readers::CsvDataset::read(&p, "class")
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        e.contains("bad.csv") && e.contains("line 3") && e.contains("`a`"),
        "{e}"
    );
    assert!(readers::CsvDataset::read(fixture("table.csv"), "label").is_err());
    Ok(())
}

#[cfg(feature = "image")]
#[test]
fn image_folder_as_torchvision_lists_and_pillow_decodes() -> Result<()> {
    let root = fixture("folder");
    let ds = readers::ImageFolder::new(&root)?;
    let want: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(fixture("folder.json"))
            .map_err(|e| nn::Error::io("folder.json", e))?,
    )
    .map_err(|e| nn::Error::Format {
        path: "folder.json".into(),
        msg: e.to_string(),
    })?;
    let classes: Vec<String> = want["classes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c.as_str().map(String::from))
        .collect();
    assert_eq!(ds.classes(), &classes[..]);
    let samples = want["samples"].as_array().cloned().unwrap_or_default();
    assert_eq!(ds.len(), samples.len());
    for (k, s) in samples.iter().enumerate() {
        let rel = s[0].as_str().unwrap_or_default();
        assert_eq!(ds.samples()[k].0, root.join(rel), "sample {k}");
        let (img, class) = ds.get(k)?;
        assert_eq!(Some(class), s[1].as_i64());
        let pil = read_npy(fixture(&format!("pix_{k}.npy")))?;
        assert_eq!(img.shape(), pil.shape());
        let (a, b) = (as_f64(&img)?, as_f64(&pil)?);
        let worst = a
            .iter()
            .zip(&b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f64::max);
        // PNG is lossless; JPEG decoders may round IDCT output differently by a step or two
        let tol = if rel.to_lowercase().ends_with(".png") {
            0.0
        } else {
            8.0
        };
        assert!(worst <= tol, "{rel}: max pixel difference {worst}");
    }
    Ok(())
}

/// A deterministic byte mutator for the hostile-file tests.
fn mutate(b: &[u8], seed: u64) -> Vec<u8> {
    let mut s = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut next = || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        s
    };
    let mut out = b.to_vec();
    match next() % 3 {
        0 => out.truncate((next() as usize) % (b.len() + 1)),
        1 => {
            for _ in 0..4 {
                let i = (next() as usize) % out.len().max(1);
                if let Some(x) = out.get_mut(i) {
                    *x = next() as u8;
                }
            }
        }
        _ => {
            // claim a huge size in a header field
            let i = (next() as usize) % out.len().clamp(1, 16);
            if let Some(x) = out.get_mut(i) {
                *x = 0xff;
            }
        }
    }
    out
}

#[test]
fn hostile_files_are_errors_naming_the_file() -> Result<()> {
    let p = tmp("hostile.bin");
    let write = |b: &[u8]| std::fs::write(&p, b).map_err(|e| nn::Error::io(&p, e));
    // a header claiming 2^32 x 2^32 x ... elements in a 30-byte file
    write(&[
        0, 0, 8, 3, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 1, 2,
    ])?;
    let e = read_idx(&p)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(e.contains("hostile.bin") && e.contains("claims"), "{e}");
    let npy = std::fs::read(fixture("npy_f32.npy")).map_err(|e| nn::Error::io("npy_f32.npy", e))?;
    write(&npy[..npy.len() - 1])?;
    let e = read_npy(&p)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(e.contains("hostile.bin") && e.contains("data bytes"), "{e}");
    write(&[0u8; 3074])?;
    assert!(Cifar::cifar10(&[&p])
        .err()
        .is_some_and(|e| e.to_string().contains("hostile.bin")));
    // every reader survives many mutations of every fixture without a panic
    let files = [
        "npy_f32.npy",
        "npy_i32_f.npy",
        "arrays.npz",
        "arrays_z.npz",
        "images-idx3-ubyte",
        "images-idx3-ubyte.gz",
        "cifar100.bin",
    ];
    for f in files {
        let b = std::fs::read(fixture(f)).map_err(|e| nn::Error::io(f, e))?;
        for seed in 0..60 {
            write(&mutate(&b, seed))?;
            let _ = read_npy(&p);
            let _ = NpyFile::open(&p)
                .and_then(|m| (0..m.len().min(4)).try_for_each(|i| m.get(i).map(drop)));
            let _ = read_npz(&p);
            let _ = read_idx(&p);
            let _ = Cifar::cifar100(&[&p]);
        }
    }
    Ok(())
}
