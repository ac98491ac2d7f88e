//! A crash-safe training checkpoint: model, optimizer, epoch, generator state and your
//! own metadata in one native file, so an interrupted run resumes exactly.

pub use crate::error::checkpoint::CheckpointProblem;
use crate::error::checkpoint::FORMAT;
use crate::module::{Module, ModuleExt, StateDict};
use crate::optim::Optimizer;
use crate::rng::RngState;
use crate::{Error, LoadOptions, Result, Tensor};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

/// The format before the scheduler's state was added (read, never written).
const FORMAT_V1: &str = "nn-training-checkpoint/1";

/// One metadata value: an integer or a string (a seed, a batch size, a git revision,
/// a data set name ...).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MetaValue {
    /// An integer.
    Int(i64),
    /// A string.
    Str(String),
}

impl MetaValue {
    fn kind(&self) -> &'static str {
        match self {
            MetaValue::Int(_) => "an integer",
            MetaValue::Str(_) => "a string",
        }
    }
}

impl From<i64> for MetaValue {
    fn from(v: i64) -> Self {
        MetaValue::Int(v)
    }
}

impl From<i32> for MetaValue {
    fn from(v: i32) -> Self {
        MetaValue::Int(v.into())
    }
}

impl From<&str> for MetaValue {
    fn from(v: &str) -> Self {
        MetaValue::Str(v.to_string())
    }
}

impl From<String> for MetaValue {
    fn from(v: String) -> Self {
        MetaValue::Str(v)
    }
}

/// Everything needed to continue training exactly where it stopped: the model's and the
/// optimizer's state dicts, the number of finished epochs, the generator state, your
/// metadata and your own tensors (a loss history, an average of the weights ...).
///
/// [`TrainingCheckpoint::capture`] takes one, [`TrainingCheckpoint::save`] writes it
/// crash-safely (the previous file survives a crash during the write),
/// [`TrainingCheckpoint::resume`] reads it back into a model and an optimizer built
/// from code.
///
/// ```
/// # extern crate nn_core as nn;
/// use nn::io::TrainingCheckpoint;
/// use nn::optim::{Adam, Optimizer};
/// use nn::{Forward, Linear, ModuleExt, Tensor};
/// # let dir = std::env::temp_dir().join(format!("nn-ckpt-doc-{}", std::process::id()));
/// # std::fs::create_dir_all(&dir).map_err(|source| nn::Error::Io { path: dir.display().to_string(), source })?;
/// let path = dir.join("checkpoint.nn");
///
/// nn::manual_seed(0);
/// let net = Linear::new(3, 1);
/// let mut opt = Adam::with_lr(net.parameters(), 1e-2)?;
/// let step = |opt: &mut Adam| -> nn::Result<()> {
///     let loss = net.forward(&Tensor::ones(&[4, 3]))?.square()?.mean()?;
///     opt.zero_grad();
///     loss.backward()?;
///     opt.step()
/// };
/// step(&mut opt)?;
/// TrainingCheckpoint::capture(1, &net, &opt)?
///     .with_meta("batch_size", 4)
///     .save(&path)?;
///
/// // later, maybe in another process: the same architecture and optimizer from code ...
/// let net2 = Linear::new(3, 1);
/// let mut opt2 = Adam::with_lr(net2.parameters(), 1e-2)?;
/// // ... and everything else from the file (strictly: every key must fit)
/// let ck = TrainingCheckpoint::resume(&path, &net2, &mut opt2)?;
/// assert_eq!((ck.epoch, ck.meta_i64("batch_size")?), (1, 4));
/// assert_eq!(net2.weight.data()?.to_vec::<f32>()?, net.weight.data()?.to_vec::<f32>()?);
/// # std::fs::remove_dir_all(&dir).ok();
/// # Ok::<(), nn::Error>(())
/// ```
///
/// # File layout
///
/// A native file (see [`crate::io`]: header, checksum, postcard payload, written through
/// the crash-safe writer) whose payload is, in order: the format tag
/// `nn-training-checkpoint/2` (a string), the epoch (u64), the generator state (two
/// u64, [`RngState`]), the metadata (a map from string to [`MetaValue`]), then four
/// state dicts: the model's, the optimizer's, your own tensors and the lr scheduler's
/// (version 1 files, without the last, still load). Nothing in it depends
/// on how the run got there (no time stamps, maps in a fixed order), so a resumed run
/// writes byte-identical checkpoints to an uninterrupted one.
#[derive(Debug, Clone)]
pub struct TrainingCheckpoint {
    /// Epochs finished (or any progress counter you like: steps ...).
    pub epoch: u64,
    /// The model's state dict (parameters and buffers).
    pub model: StateDict,
    /// The optimizer's state dict (moments, step counts).
    pub optimizer: StateDict,
    /// The generators' state at the capture.
    pub rng: RngState,
    /// Your scalars, by name.
    pub metadata: BTreeMap<String, MetaValue>,
    /// Your tensors, by name (not loaded into anything by [`TrainingCheckpoint::resume`]).
    pub tensors: StateDict,
    /// The lr scheduler's state (`LrScheduler::state_dict`, empty when none was added
    /// with [`TrainingCheckpoint::with_scheduler`]); give it to the scheduler's
    /// `load_state_dict` after [`TrainingCheckpoint::resume`].
    pub scheduler: StateDict,
    /// The file it was read from (named in errors).
    origin: Option<String>,
}

#[derive(Serialize)]
struct WireRef<'a> {
    format: &'a str,
    epoch: u64,
    rng_key: u64,
    rng_default_seed: u64,
    metadata: &'a BTreeMap<String, MetaValue>,
    model: &'a StateDict,
    optimizer: &'a StateDict,
    tensors: &'a StateDict,
    scheduler: &'a StateDict,
}

#[derive(Deserialize)]
struct Wire {
    format: String,
    epoch: u64,
    rng_key: u64,
    rng_default_seed: u64,
    metadata: BTreeMap<String, MetaValue>,
    model: StateDict,
    optimizer: StateDict,
    tensors: StateDict,
    scheduler: StateDict,
}

/// A version 1 payload (no scheduler).
#[derive(Deserialize)]
struct WireV1 {
    format: String,
    epoch: u64,
    rng_key: u64,
    rng_default_seed: u64,
    metadata: BTreeMap<String, MetaValue>,
    model: StateDict,
    optimizer: StateDict,
    tensors: StateDict,
}

impl From<WireV1> for Wire {
    fn from(w: WireV1) -> Wire {
        Wire {
            format: w.format,
            epoch: w.epoch,
            rng_key: w.rng_key,
            rng_default_seed: w.rng_default_seed,
            metadata: w.metadata,
            model: w.model,
            optimizer: w.optimizer,
            tensors: w.tensors,
            scheduler: StateDict::new(),
        }
    }
}

impl TrainingCheckpoint {
    /// A checkpoint of `model` and `optimizer` after `epoch` epochs, with no metadata
    /// and no extra tensors. Captures the generator state, which re-keys this thread's
    /// generator (see [`RngState`]): capture at the same points in runs you compare.
    pub fn capture(
        epoch: u64,
        model: &(impl Module + ?Sized),
        optimizer: &(impl Optimizer + ?Sized),
    ) -> Result<TrainingCheckpoint> {
        Ok(TrainingCheckpoint {
            epoch,
            model: model.state_dict()?,
            optimizer: optimizer.state_dict()?,
            rng: RngState::capture(),
            metadata: BTreeMap::new(),
            tensors: StateDict::new(),
            scheduler: StateDict::new(),
            origin: None,
        })
    }

    /// Adds the lr scheduler's state (`sched.state_dict()`).
    ///
    /// ```
    /// # extern crate nn_core as nn;
    /// use nn::io::TrainingCheckpoint;
    /// use nn::optim::lr_scheduler::{LrScheduler, StepLR};
    /// use nn::optim::Sgd;
    /// use nn::{Linear, ModuleExt};
    /// let net = Linear::new(2, 1);
    /// let mut opt = Sgd::with_lr(net.parameters(), 0.1)?;
    /// let mut sched = StepLR::new(&mut opt, 10, 0.5)?;
    /// let ck = TrainingCheckpoint::capture(0, &net, &opt)?.with_scheduler(sched.state_dict());
    /// sched.load_state_dict(&ck.scheduler)?;
    /// # Ok::<(), nn::Error>(())
    /// ```
    #[must_use]
    pub fn with_scheduler(mut self, state: StateDict) -> Self {
        self.scheduler = state;
        self
    }

    /// Adds (or replaces) a metadata entry.
    #[must_use]
    pub fn with_meta(mut self, key: impl Into<String>, value: impl Into<MetaValue>) -> Self {
        self.metadata.insert(key.into(), value.into());
        self
    }

    /// Adds (or replaces) one of your tensors.
    #[must_use]
    pub fn with_tensor(mut self, key: impl Into<String>, t: Tensor) -> Self {
        self.tensors.insert(key, t);
        self
    }

    fn invalid(&self, problem: CheckpointProblem) -> Error {
        Error::InvalidCheckpoint {
            path: self.origin.clone(),
            problem,
        }
    }

    fn meta(&self, key: &str) -> Result<&MetaValue> {
        self.metadata.get(key).ok_or_else(|| {
            self.invalid(CheckpointProblem::MissingMeta {
                key: key.to_string(),
            })
        })
    }

    /// The integer metadata entry `key`; an [`Error::InvalidCheckpoint`] when it is
    /// absent or a string.
    pub fn meta_i64(&self, key: &str) -> Result<i64> {
        match self.meta(key)? {
            MetaValue::Int(v) => Ok(*v),
            other => Err(self.invalid(CheckpointProblem::MetaType {
                key: key.to_string(),
                expected: "an integer",
                found: other.kind(),
            })),
        }
    }

    /// The string metadata entry `key`; an [`Error::InvalidCheckpoint`] when it is
    /// absent or an integer.
    pub fn meta_str(&self, key: &str) -> Result<&str> {
        match self.meta(key)? {
            MetaValue::Str(v) => Ok(v),
            other => Err(self.invalid(CheckpointProblem::MetaType {
                key: key.to_string(),
                expected: "a string",
                found: other.kind(),
            })),
        }
    }

    /// Writes the checkpoint in the native format through the crash-safe writer: at
    /// any moment `path` holds the previous checkpoint or this one, never a mix.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        let wire = WireRef {
            format: FORMAT,
            epoch: self.epoch,
            rng_key: self.rng.key,
            rng_default_seed: self.rng.default_seed,
            metadata: &self.metadata,
            model: &self.model,
            optimizer: &self.optimizer,
            tensors: &self.tensors,
            scheduler: &self.scheduler,
        };
        super::save(&wire, path)
    }

    /// Reads a checkpoint file (checksum verified first). A damaged file is an
    /// [`Error::Format`]; a plain state dict file or another format is an
    /// [`Error::InvalidCheckpoint`].
    pub fn load(path: impl AsRef<Path>) -> Result<TrainingCheckpoint> {
        let path = path.as_ref();
        let origin = path.display().to_string();
        let invalid = |problem| Error::InvalidCheckpoint {
            path: Some(origin.clone()),
            problem,
        };
        let wire: Wire = match super::load::<Wire>(path) {
            Ok(w) => w,
            // a version 1 file (or an unknown tag over that layout)
            Err(Error::Format { .. }) if super::load::<WireV1>(path).is_ok() => {
                super::load::<WireV1>(path)?.into()
            }
            // the costly second look only on the error path, to say what the file is
            Err(e @ (Error::Format { .. } | Error::FileKind { .. })) => {
                return Err(match super::load_state_dict_file(path) {
                    Ok(_) => invalid(CheckpointProblem::StateDictFile),
                    Err(_) => e,
                })
            }
            Err(e) => return Err(e),
        };
        if wire.format != FORMAT && wire.format != FORMAT_V1 {
            return Err(invalid(CheckpointProblem::UnknownFormat {
                found: wire.format,
            }));
        }
        Ok(TrainingCheckpoint {
            epoch: wire.epoch,
            model: wire.model,
            optimizer: wire.optimizer,
            rng: RngState {
                key: wire.rng_key,
                default_seed: wire.rng_default_seed,
            },
            metadata: wire.metadata,
            tensors: wire.tensors,
            scheduler: wire.scheduler,
            origin: Some(origin),
        })
    }

    /// Puts the state back: the model's state dict strictly (every key must match a
    /// parameter or buffer of the same shape and dtype; deferred parameters take their
    /// shapes from the checkpoint), then the optimizer's state, then the generators.
    /// The model and the optimizer may already live on any device; values are copied
    /// there. On error the generators are untouched; a failing model load changes
    /// nothing, a failing optimizer load leaves the model loaded and the optimizer as
    /// it was.
    pub fn restore_into(
        &self,
        model: &(impl Module + ?Sized),
        optimizer: &mut (impl Optimizer + ?Sized),
    ) -> Result<()> {
        // A deferred parameter adopts the checkpoint's tensor (shared memory): the fused
        // optimizer update copies it on write at the first step, bit-identically.
        model.load_state_dict(&self.model, &LoadOptions::strict())?;
        optimizer.load_state_dict(&self.optimizer)?;
        self.rng.restore();
        Ok(())
    }

    /// [`TrainingCheckpoint::load`] then [`TrainingCheckpoint::restore_into`]; returns the
    /// checkpoint for its epoch, metadata and tensors.
    pub fn resume(
        path: impl AsRef<Path>,
        model: &(impl Module + ?Sized),
        optimizer: &mut (impl Optimizer + ?Sized),
    ) -> Result<TrainingCheckpoint> {
        let ck = Self::load(path)?;
        ck.restore_into(model, optimizer)?;
        Ok(ck)
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod tests_scheduler;
