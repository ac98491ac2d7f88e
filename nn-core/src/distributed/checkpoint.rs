//! Training checkpoints of a distributed run: written by rank 0 with the world size
//! recorded, read back by every rank after checking it.

use super::{problem, DistributedProblem, ProcessGroup, ReduceOp};
use crate::io::{MetaValue, TrainingCheckpoint};
use crate::module::Module;
use crate::optim::Optimizer;
use crate::{Error, Result, Tensor};
use std::path::Path;

/// The metadata key under which [`save_checkpoint`] records the world size.
pub const WORLD_SIZE_KEY: &str = "nn.distributed.world_size";

/// Writes `checkpoint` from rank 0 only, through the crash-safe writer, recording the
/// world size (under [`WORLD_SIZE_KEY`]); every rank returns once the file is complete
/// (a barrier), so any rank may read it next. An error on rank 0 is reported to all
/// ranks, so none waits for a file that will not come.
pub fn save_checkpoint(
    group: &ProcessGroup,
    checkpoint: TrainingCheckpoint,
    path: impl AsRef<Path>,
) -> Result<()> {
    let mut result = Ok(());
    if group.is_root() {
        result = checkpoint
            .with_meta(WORLD_SIZE_KEY, group.world_size() as i64)
            .save(path.as_ref());
    }
    let failed = group.all_reduce(
        &Tensor::from_vec(vec![i64::from(result.is_err())], &[1])?,
        ReduceOp::Sum,
    )?;
    match (result, failed.to_vec::<i64>()?.first()) {
        (Err(e), _) => Err(e),
        (Ok(()), Some(&n)) if n > 0 => Err(Error::Io {
            path: path.as_ref().display().to_string(),
            source: std::io::Error::other("rank 0 could not write the checkpoint"),
        }),
        _ => Ok(()),
    }
}

/// Checks the world size a distributed checkpoint (read from `path`) was written with:
/// a [`DistributedProblem::WorldSizeMismatch`] when it is not this group's, an
/// [`Error::InvalidCheckpoint`] when it records none (not written by [`save_checkpoint`]).
pub fn check_world_size(
    group: &ProcessGroup,
    checkpoint: &TrainingCheckpoint,
    path: impl AsRef<Path>,
) -> Result<()> {
    let saved = checkpoint.meta_i64(WORLD_SIZE_KEY)?;
    if saved != group.world_size() as i64 {
        return Err(problem(
            "resume",
            DistributedProblem::WorldSizeMismatch {
                path: path.as_ref().display().to_string(),
                saved,
                current: group.world_size(),
            },
        ));
    }
    Ok(())
}

/// Every rank reads `path`, checks its world size ([`check_world_size`]) and restores
/// `model` and `optimizer` from it ([`TrainingCheckpoint::restore_into`]). Every rank
/// reads the same bytes, so the ranks stay bit-identical.
pub fn resume_checkpoint(
    group: &ProcessGroup,
    path: impl AsRef<Path>,
    model: &(impl Module + ?Sized),
    optimizer: &mut (impl Optimizer + ?Sized),
) -> Result<TrainingCheckpoint> {
    let ck = TrainingCheckpoint::load(path.as_ref())?;
    check_world_size(group, &ck, path.as_ref())?;
    ck.restore_into(model, optimizer)?;
    Ok(ck)
}

/// The world size recorded in a checkpoint, if it is a distributed one.
pub fn checkpoint_world_size(checkpoint: &TrainingCheckpoint) -> Option<i64> {
    match checkpoint.metadata.get(WORLD_SIZE_KEY) {
        Some(MetaValue::Int(n)) => Some(*n),
        _ => None,
    }
}
