//! What a file holds and what kind of file it is, for every file nn writes: native
//! state dicts (format v1 and v2), training checkpoints, tensor and tensor-list files,
//! safetensors and PyTorch `torch.save` archives. Keys are the ones `load` addresses
//! (`model.0.weight`); tensors holding the same data under several keys are marked tied.

use crate::error::{CliError, Result};
use nn_core::io::{self, FileFormat, MetaValue, NativeKind, TrainingCheckpoint};
use nn_core::{DType, Error, StateDict, Tensor};
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::io::Read;
use std::path::{Path, PathBuf};

/// What a file holds, as a whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A flat map of key to tensor (`ModuleExt::save`, `save_state_dict`, safetensors,
    /// `torch.save(model.state_dict())`).
    StateDict,
    /// nn's `TrainingCheckpoint`: model, optimizer, epoch, generators, metadata, your
    /// tensors, the lr scheduler.
    TrainingCheckpoint,
    /// One tensor (`io::save(&tensor)`).
    Tensor,
    /// A `Vec<Tensor>` of this many tensors.
    List(usize),
    /// A tuple or array of this many tensors.
    Tuple(usize),
    /// A `torch.save` of a nested dict with non-tensor values (a PyTorch checkpoint).
    TorchCheckpoint,
}

impl Kind {
    /// A stable name for scripts (the JSON `kind`).
    pub fn id(self) -> &'static str {
        match self {
            Kind::StateDict => "state_dict",
            Kind::TrainingCheckpoint => "training_checkpoint",
            Kind::Tensor => "tensor",
            Kind::List(_) => "tensor_list",
            Kind::Tuple(_) => "tensor_tuple",
            Kind::TorchCheckpoint => "checkpoint_dict",
        }
    }
}

/// One tensor of a file.
#[derive(Debug, Clone)]
pub struct TensorItem {
    /// The key `load` addresses it by.
    pub name: String,
    /// Element type.
    pub dtype: DType,
    /// Shape.
    pub shape: Vec<usize>,
    /// Data size in bytes.
    pub bytes: usize,
    /// The first key holding the same data (a tied parameter), when there is one.
    pub tied_to: Option<String>,
}

/// One entry of a file, in file order.
#[derive(Debug, Clone)]
pub enum Item {
    /// A tensor.
    Tensor(TensorItem),
    /// A non-tensor value (`epoch`, metadata, a `.pt` file's hyper-parameters) as text.
    Value {
        /// Its dotted key.
        name: String,
        /// Its value, printed.
        text: String,
    },
}

impl Item {
    /// The key.
    pub fn name(&self) -> &str {
        match self {
            Item::Tensor(t) => &t.name,
            Item::Value { name, .. } => name,
        }
    }
}

/// A file read and described.
pub struct Described {
    /// The file.
    pub path: PathBuf,
    /// The container format its first bytes name.
    pub format: FileFormat,
    /// The native format's version (1 or 2), for native files.
    pub version: Option<u32>,
    /// What it holds.
    pub kind: Kind,
    /// Its entries, in file order.
    pub items: Vec<Item>,
    /// Its tensors, when they were read already.
    loaded: Option<StateDict>,
}

impl Described {
    /// Reads what `path` holds (scanned and verified as loading does; tensor data is read
    /// only where it must be: ties among same-shaped tensors, non-state-dict files).
    pub fn open(path: &Path) -> Result<Described> {
        let mut d = match io::inspect(path) {
            Ok(s) => {
                let kind = match s.format {
                    FileFormat::Torch if !s.others.is_empty() => Kind::TorchCheckpoint,
                    _ => Kind::StateDict,
                };
                let mut items: Vec<Item> = s
                    .tensors
                    .iter()
                    .map(|t| {
                        Item::Tensor(TensorItem {
                            name: t.name.clone(),
                            dtype: t.dtype,
                            shape: t.shape.clone(),
                            bytes: t.bytes,
                            tied_to: None,
                        })
                    })
                    .collect();
                items.extend(s.others.iter().map(|(k, v)| Item::Value {
                    name: k.clone(),
                    text: v.clone(),
                }));
                let version = match s.format {
                    FileFormat::Native => native_version(path),
                    _ => None,
                };
                Described {
                    path: path.to_path_buf(),
                    format: s.format,
                    version,
                    kind,
                    items,
                    loaded: None,
                }
            }
            // not a state dict, or damaged: the typed kind (every checksum verified)
            // says which; a damaged file keeps the error the state-dict read gave
            Err(e) => match io::native_kind(path) {
                Ok(Some(kind)) => native_file(path, kind, e)?,
                Ok(None) | Err(_) => return Err(e.into()),
            },
        };
        d.mark_ties()?;
        Ok(d)
    }

    /// One line saying what the file is (`nn training checkpoint (native format v2)`).
    pub fn kind_text(&self) -> String {
        let native = format!("native format v{}", self.version.unwrap_or(2));
        match (self.format, self.kind) {
            (FileFormat::Safetensors, _) => "safetensors state dict".into(),
            (FileFormat::Torch, Kind::TorchCheckpoint) => {
                "PyTorch torch.save archive (a checkpoint: nested dicts with non-tensor values)"
                    .into()
            }
            (FileFormat::Torch, _) => "PyTorch torch.save archive (state dict)".into(),
            (_, Kind::StateDict) => format!("nn state dict ({native})"),
            (_, Kind::TrainingCheckpoint) => format!("nn training checkpoint ({native})"),
            (_, Kind::Tensor) => format!("nn tensor ({native})"),
            (_, Kind::List(n)) => format!("nn list of {n} tensors ({native})"),
            (_, Kind::Tuple(n)) => format!("nn tuple of {n} tensors ({native})"),
            (_, Kind::TorchCheckpoint) => format!("nn file ({native})"),
        }
    }

    /// The tensors.
    pub fn tensors(&self) -> impl Iterator<Item = &TensorItem> {
        self.items.iter().filter_map(|i| match i {
            Item::Tensor(t) => Some(t),
            Item::Value { .. } => None,
        })
    }

    /// The non-tensor values, as `(key, text)`.
    pub fn values(&self) -> impl Iterator<Item = (&str, &str)> {
        self.items.iter().filter_map(|i| match i {
            Item::Value { name, text } => Some((name.as_str(), text.as_str())),
            Item::Tensor(_) => None,
        })
    }

    /// Tensors, elements and bytes, each tied group counted once; and how many tensors
    /// are ties of an earlier one.
    pub fn totals(&self) -> (usize, u128, u128, usize) {
        let (mut n, mut elems, mut bytes, mut tied) = (0, 0u128, 0u128, 0);
        for t in self.tensors() {
            if t.tied_to.is_some() {
                tied += 1;
                continue;
            }
            n += 1;
            elems += t.shape.iter().map(|&d| d as u128).product::<u128>();
            bytes += t.bytes as u128;
        }
        (n, elems, bytes, tied)
    }

    /// Every tensor by its key (read now if it was not yet).
    pub fn into_state_dict(self) -> Result<StateDict> {
        match self.loaded {
            Some(sd) => Ok(sd),
            None => Ok(io::load_state_dict_file(&self.path)?),
        }
    }

    /// Marks each tensor whose dtype, shape and bytes equal an earlier one's as tied to
    /// it (within one section of a training checkpoint). nn's writers store a tied parameter under each of its keys and a `.pt` file
    /// shares one storage, so equal data is how a tie shows in every format; constant
    /// tensors (zeros, ones) are alike by chance and are never marked.
    fn mark_ties(&mut self) -> Result<()> {
        // a checkpoint's sections are separate state dicts: an EMA copy equal to the
        // model is a copy, not a tie
        let sectioned = self.kind == Kind::TrainingCheckpoint;
        let mut groups: HashMap<(&str, DType, Vec<usize>), Vec<usize>> = HashMap::new();
        for (i, item) in self.items.iter().enumerate() {
            if let Item::Tensor(t) = item {
                if t.shape.iter().product::<usize>() >= 2 {
                    let section = match sectioned {
                        true => t.name.split('.').next().unwrap_or(""),
                        false => "",
                    };
                    groups
                        .entry((section, t.dtype, t.shape.clone()))
                        .or_default()
                        .push(i);
                }
            }
        }
        groups.retain(|_, v| v.len() >= 2);
        if groups.is_empty() {
            return Ok(());
        }
        let mapped;
        let sd = match &self.loaded {
            Some(sd) => sd,
            None => {
                mapped = io::map_state_dict_file(&self.path)?;
                &mapped
            }
        };
        let path = self.path.clone();
        let bytes_of = |name: &str| -> Result<Vec<u8>> {
            let t = sd
                .get(name)
                .ok_or_else(|| CliError::vanished(&path, name))?;
            Ok(t.to_host()?.to_le_bytes())
        };
        let mut ties: Vec<(usize, String)> = Vec::new();
        for members in groups.values() {
            // a hash per distinct tensor, the bytes compared again on a hash match: memory
            // for two tensors at a time, however large the file
            let mut seen: Vec<(String, u64)> = Vec::new();
            for &i in members {
                let name = self.items[i].name().to_string();
                let bytes = bytes_of(&name)?;
                let Some(Item::Tensor(t)) = self.items.get(i) else {
                    continue;
                };
                if constant(&bytes, t.dtype.size_in_bytes()) {
                    continue;
                }
                let h = {
                    let mut h = std::collections::hash_map::DefaultHasher::new();
                    bytes.hash(&mut h);
                    h.finish()
                };
                let mut tied = None;
                for (first, fh) in &seen {
                    if *fh == h && bytes_of(first)? == bytes {
                        tied = Some(first.clone());
                        break;
                    }
                }
                match tied {
                    Some(first) => ties.push((i, first)),
                    None => seen.push((name, h)),
                }
            }
        }
        for (i, first) in ties {
            if let Some(Item::Tensor(t)) = self.items.get_mut(i) {
                t.tied_to = Some(first);
            }
        }
        Ok(())
    }
}

/// Whether every `size`-byte element of `bytes` is the same.
fn constant(bytes: &[u8], size: usize) -> bool {
    let size = size.max(1);
    let first = bytes.get(..size).unwrap_or(bytes);
    bytes.chunks(size).all(|c| c == first)
}

/// The native format version in the header of `path`, or `None` when it does not
/// start with nn's magic number. Called only on a path already opened as a regular file.
fn native_version(path: &Path) -> Option<u32> {
    let mut head = [0u8; 12];
    std::fs::File::open(path).ok()?.read_exact(&mut head).ok()?;
    let (magic, version) = head.split_at(8);
    if magic != io::MAGIC {
        return None;
    }
    let mut v = [0u8; 4];
    v.copy_from_slice(version);
    Some(u32::from_le_bytes(v))
}

/// A sound native file that `inspect` did not read as a state dict, by what it holds;
/// `e` is the error that read gave.
fn native_file(path: &Path, kind: NativeKind, e: Error) -> Result<Described> {
    let version = native_version(path).unwrap_or(0);
    let unknown = || CliError::UnknownPayload {
        path: path.display().to_string(),
        version,
    };
    let (kind, ts) = match kind {
        NativeKind::SingleTensor => (Kind::Tensor, vec![io::load::<Tensor>(path)?]),
        NativeKind::List(_) => {
            let ts = io::load::<Vec<Tensor>>(path)?;
            (Kind::List(ts.len()), ts)
        }
        NativeKind::Tuple(k) => {
            let ts = load_tuple(path, k)?.ok_or_else(unknown)?;
            (Kind::Tuple(ts.len()), ts)
        }
        NativeKind::TrainingCheckpoint => return checkpoint(path, version),
        NativeKind::StateDict => return Err(e.into()),
        _ => return Err(unknown()),
    };
    let mut sd = StateDict::new();
    let mut items = Vec::new();
    for (i, t) in ts.into_iter().enumerate() {
        let name = match kind {
            Kind::Tensor => "tensor".to_string(),
            _ => i.to_string(),
        };
        items.push(tensor_item(&name, &t));
        sd.insert(name, t);
    }
    Ok(Described {
        path: path.to_path_buf(),
        format: FileFormat::Native,
        version: Some(version),
        kind,
        items,
        loaded: Some(sd),
    })
}

/// A tuple of `k` tensors (written by `io::save(&(a, b))` or of an array), read as the
/// array of the same layout; `None` past the 32 elements serde reads as an array.
fn load_tuple(path: &Path, k: usize) -> Result<Option<Vec<Tensor>>> {
    macro_rules! arms {
        ($($n:literal)*) => {
            match k {
                $($n => Some(io::load::<[Tensor; $n]>(path)?.to_vec()),)*
                _ => None,
            }
        };
    }
    Ok(arms!(2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25 26 27 28 29 30 31 32))
}

fn tensor_item(name: &str, t: &Tensor) -> Item {
    Item::Tensor(TensorItem {
        name: name.to_string(),
        dtype: t.dtype(),
        shape: t.shape().to_vec(),
        bytes: t.numel() * t.dtype().size_in_bytes(),
        tied_to: None,
    })
}

/// A training checkpoint; one of an unknown layout version is a value we do not know.
fn checkpoint(path: &Path, version: u32) -> Result<Described> {
    let ck = match TrainingCheckpoint::load(path) {
        Ok(ck) => ck,
        Err(Error::InvalidCheckpoint { .. }) => {
            return Err(CliError::UnknownPayload {
                path: path.display().to_string(),
                version,
            })
        }
        Err(e) => return Err(e.into()),
    };
    let mut items = vec![
        Item::Value {
            name: "epoch".into(),
            text: ck.epoch.to_string(),
        },
        Item::Value {
            name: "rng.key".into(),
            text: ck.rng.key.to_string(),
        },
        Item::Value {
            name: "rng.default_seed".into(),
            text: ck.rng.default_seed.to_string(),
        },
    ];
    for (k, v) in &ck.metadata {
        let text = match v {
            MetaValue::Int(i) => i.to_string(),
            MetaValue::Str(s) => format!("{s:?}"),
        };
        items.push(Item::Value {
            name: format!("metadata.{k}"),
            text,
        });
    }
    let mut sd = StateDict::new();
    for (section, part) in [
        ("model", &ck.model),
        ("optimizer", &ck.optimizer),
        ("tensors", &ck.tensors),
        ("scheduler", &ck.scheduler),
    ] {
        for (k, t) in part.iter() {
            let name = format!("{section}.{k}");
            items.push(tensor_item(&name, t));
            sd.insert(name, t.clone());
        }
    }
    Ok(Described {
        path: path.to_path_buf(),
        format: FileFormat::Native,
        version: Some(version),
        kind: Kind::TrainingCheckpoint,
        items,
        loaded: Some(sd),
    })
}
