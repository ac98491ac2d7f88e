//! Why a distributed run cannot go on ([`crate::Error::Distributed`], feature `mpi`);
//! re-exported as `crate::distributed::DistributedProblem`.

/// What went wrong in a distributed run (inside [`crate::Error::Distributed`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DistributedProblem {
    /// MPI was initialized before in this process (a second
    /// [`crate::distributed::ProcessGroup::init`]).
    #[error("MPI is already initialized in this process; call ProcessGroup::init once and clone the group")]
    AlreadyInitialized,
    /// The MPI library cannot serialize calls from several threads.
    #[error("the MPI library offers thread level {provided}, at least `serialized` is needed")]
    ThreadLevel {
        /// The level it offers.
        provided: String,
    },
    /// Ranks passed tensors of different shapes or dtypes to one collective.
    #[error("rank {rank} passed {what}, rank {other_rank} passed {other}; every rank must pass the same shape and dtype")]
    RanksDisagree {
        /// A rank.
        rank: usize,
        /// What it passed.
        what: String,
        /// Another rank.
        other_rank: usize,
        /// What that one passed.
        other: String,
    },
    /// A root rank outside the world.
    #[error("root rank {root} does not exist in a world of {world_size}")]
    BadRoot {
        /// The root asked for.
        root: usize,
        /// The world size.
        world_size: usize,
    },
    /// A checkpoint written by a run of another world size.
    #[error("{path}: written by a run of {saved} ranks, resumed with {current}; resume with `mpirun -np {saved}` (the data shards and the batch per rank depend on the world size)")]
    WorldSizeMismatch {
        /// The checkpoint.
        path: String,
        /// Its world size.
        saved: i64,
        /// This run's world size.
        current: usize,
    },
    /// DDP's communication thread ([`crate::distributed::Overlap::Thread`]) is gone
    /// (it panicked), so a gradient bucket cannot be reduced.
    #[error(
        "rank {rank}: the gradient communication thread stopped before bucket {bucket} was reduced"
    )]
    CommThread {
        /// This rank.
        rank: usize,
        /// The bucket that was to be reduced.
        bucket: usize,
    },
    /// A device engine failed or refused a tensor.
    #[error("{engine}: {msg}")]
    Engine {
        /// The engine (`nccl`).
        engine: &'static str,
        /// What happened.
        msg: String,
    },
    /// Another rank's step failed where this one's succeeded (DDP's backward on ranks
    /// that share memory: the sums would hold that rank's unfinished gradients, so no
    /// rank takes them).
    #[error("rank {rank}: the step failed on rank {other_rank}, so the gradients were not averaged (see rank {other_rank}'s error)")]
    PeerFailed {
        /// This rank.
        rank: usize,
        /// The lowest rank that failed.
        other_rank: usize,
    },
}
