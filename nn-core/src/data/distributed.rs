//! `DistributedSampler`: each rank's disjoint shard of an epoch's seeded permutation,
//! with PyTorch's `torch.utils.data.DistributedSampler` semantics.

use super::sampler::or_abort;
use super::seed::{try_range, SplitMix64};
use super::Sampler;
use crate::host::try_with_capacity;
use crate::{Error, Result};

/// Splits the indices `0..len` of a data set among `world_size` ranks, epoch by epoch,
/// as PyTorch's `DistributedSampler` does:
///
/// - with a seed, epoch `e`'s order is a permutation determined by `(seed, e)` only
///   (splitmix64 + Fisher-Yates, stable across versions: not torch's `randperm`);
///   without one, `0..len` in order;
/// - unless `drop_last`, the order is padded by repeating its head until its length is
///   a multiple of the world size (`num_samples = ceil(len / world_size)` per rank),
///   with `drop_last` its tail is cut instead (`num_samples = floor(len / world_size)`);
/// - rank `r` takes every `world_size`-th index starting at `r`.
///
/// So the shards are disjoint (up to the padding), of equal length, and a run's batches
/// depend on the seed and the world size only.
///
/// ```
/// # extern crate nn_core as nn;
/// use nn::data::DistributedSampler;
/// let s0 = DistributedSampler::new(5, 2, 0, None)?;
/// let s1 = DistributedSampler::new(5, 2, 1, None)?;
/// assert_eq!((s0.indices(0), s1.indices(0)), (vec![0, 2, 4], vec![1, 3, 0])); // padded with 0
/// # Ok::<(), nn::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DistributedSampler {
    len: usize,
    world_size: usize,
    rank: usize,
    seed: Option<u64>,
    drop_last: bool,
}

impl DistributedSampler {
    /// A sampler over `len` items for `rank` of `world_size`, shuffled with `seed`
    /// (`None`: in order), padding to equal shards (see [`Self::drop_last`]).
    pub fn new(
        len: usize,
        world_size: usize,
        rank: usize,
        seed: Option<u64>,
    ) -> Result<DistributedSampler> {
        const OP: &str = "DistributedSampler::new";
        if world_size == 0 {
            return Err(Error::invalid_config(
                OP,
                "world_size",
                0,
                "must be at least 1",
            ));
        }
        if rank >= world_size {
            return Err(Error::invalid_config(
                OP,
                "rank",
                rank,
                format!("must be below the world size {world_size}"),
            ));
        }
        if len == 0 {
            return Err(Error::EmptyInput {
                op: OP,
                what: "the data set".into(),
            });
        }
        // `total_size` pads to equal shards: it must not overflow
        if len.div_ceil(world_size).checked_mul(world_size).is_none() {
            return Err(Error::invalid_config(
                OP,
                "len",
                len,
                format!("padded to {world_size} equal shards, it overflows usize"),
            ));
        }
        Ok(DistributedSampler {
            len,
            world_size,
            rank,
            seed,
            drop_last: false,
        })
    }

    /// Cuts the tail instead of padding (PyTorch's `drop_last=True`); errors when that
    /// leaves no item for a rank.
    pub fn drop_last(mut self, on: bool) -> Result<DistributedSampler> {
        if on && self.len < self.world_size {
            return Err(Error::invalid_config(
                "DistributedSampler::drop_last",
                "len",
                self.len,
                format!(
                    "fewer items than ranks ({}): every shard would be empty",
                    self.world_size
                ),
            ));
        }
        self.drop_last = on;
        Ok(self)
    }

    /// Indices per rank and epoch.
    pub fn num_samples(&self) -> usize {
        if self.drop_last {
            self.len / self.world_size
        } else {
            self.len.div_ceil(self.world_size)
        }
    }

    /// Indices per epoch over all ranks (`num_samples * world_size`).
    pub fn total_size(&self) -> usize {
        self.num_samples() * self.world_size
    }

    /// This rank's indices for `epoch` (0-based), in the order to visit them (aborting
    /// like any allocation where the data set's indices do not fit in memory:
    /// [`Self::try_indices`] returns an error instead).
    pub fn indices(&self, epoch: u64) -> Vec<usize> {
        or_abort(self.try_indices(epoch), self.len)
    }

    /// [`Self::indices`], or an [`Error::OutOfMemory`] naming the sampler and the size
    /// where the data set's indices cannot be allocated.
    pub fn try_indices(&self, epoch: u64) -> Result<Vec<usize>> {
        const OP: &str = "DistributedSampler::indices";
        let mut order = try_range(self.len, OP)?;
        if let Some(seed) = self.seed {
            let mut rng = SplitMix64::new(seed ^ epoch.wrapping_mul(0xd1b5_4a32_d192_ed03));
            for i in (1..self.len).rev() {
                order.swap(i, rng.below(i + 1));
            }
        }
        let total = self.total_size();
        if total <= order.len() {
            order.truncate(total);
        } else {
            // padding repeats the head: fewer than `world_size` extra indices
            let pad = total - order.len();
            order
                .try_reserve_exact(pad)
                .map_err(|_| Error::OutOfMemory {
                    bytes: total as u128 * std::mem::size_of::<usize>() as u128,
                    op: OP,
                })?;
            while order.len() < total {
                let k = (total - order.len()).min(self.len);
                order.extend_from_within(..k);
            }
        }
        let mut mine = try_with_capacity(self.num_samples(), OP)?;
        mine.extend(order.into_iter().skip(self.rank).step_by(self.world_size));
        Ok(mine)
    }
}

impl Sampler for DistributedSampler {
    fn len(&self) -> usize {
        self.num_samples()
    }

    fn indices(&self, epoch: u64) -> Vec<usize> {
        DistributedSampler::indices(self, epoch)
    }
    fn try_indices(&self, epoch: u64) -> Result<Vec<usize>> {
        DistributedSampler::try_indices(self, epoch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shards(len: usize, world: usize, seed: Option<u64>, epoch: u64) -> Vec<Vec<usize>> {
        (0..world)
            .map(|r| {
                DistributedSampler::new(len, world, r, seed)
                    .map(|s| s.indices(epoch))
                    .unwrap_or_default()
            })
            .collect()
    }

    #[test]
    fn matches_pytorch_in_order_with_padding() {
        // torch.utils.data.DistributedSampler(range(10), num_replicas=3, rank=r, shuffle=False)
        assert_eq!(
            shards(10, 3, None, 0),
            vec![vec![0, 3, 6, 9], vec![1, 4, 7, 0], vec![2, 5, 8, 1]]
        );
        // padding longer than the data set repeats it (len 2, 5 replicas)
        assert_eq!(
            shards(2, 5, None, 0),
            vec![vec![0], vec![1], vec![0], vec![1], vec![0]]
        );
    }

    #[test]
    fn drop_last_cuts_the_tail() -> Result<()> {
        // PyTorch, drop_last=True: 10 items on 3 ranks -> 3 each, index 9 unused
        let got: Vec<Vec<usize>> = (0..3)
            .map(|r| {
                Ok(DistributedSampler::new(10, 3, r, None)?
                    .drop_last(true)?
                    .indices(0))
            })
            .collect::<Result<_>>()?;
        assert_eq!(got, vec![vec![0, 3, 6], vec![1, 4, 7], vec![2, 5, 8]]);
        assert!(DistributedSampler::new(1, 2, 0, None)?
            .drop_last(true)
            .is_err());
        Ok(())
    }

    #[test]
    fn shuffled_shards_are_disjoint_cover_and_depend_on_seed_and_epoch() {
        let a = shards(101, 4, Some(7), 3);
        let mut all: Vec<usize> = a.concat();
        assert_eq!(all.len(), 104);
        all.sort_unstable();
        all.dedup();
        assert_eq!(
            all,
            (0..101).collect::<Vec<_>>(),
            "every item, padding repeats only"
        );
        assert!(a.iter().all(|s| s.len() == 26));
        assert_eq!(
            a,
            shards(101, 4, Some(7), 3),
            "a function of seed and epoch"
        );
        assert_ne!(a, shards(101, 4, Some(7), 4));
        assert_ne!(a, shards(101, 4, Some(8), 3));
        assert_ne!(a[0], (0..101).step_by(4).collect::<Vec<_>>(), "shuffled");
    }

    #[test]
    fn bad_arguments_are_errors() {
        assert!(DistributedSampler::new(10, 0, 0, None).is_err());
        let e = DistributedSampler::new(10, 2, 2, None)
            .err()
            .map(|e| e.to_string());
        assert!(e.is_some_and(|e| e.contains("rank") && e.contains("world size 2")));
        assert!(DistributedSampler::new(0, 2, 0, None).is_err());
    }
}
