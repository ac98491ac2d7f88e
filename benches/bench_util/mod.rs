//! Timing shared by the benchmarks (`#[path = "bench_util/mod.rs"] mod bench_util;`):
//! a warm-up, then `reps` timed batches of `inner` calls; the median and the best batch,
//! in seconds per call; and their command-line arguments.

#![allow(dead_code)] // each benchmark uses part of it

use nn::Result;
use std::time::{Duration, Instant};

/// The command-line arguments, without the `--bench` flag `cargo bench` appends to a
/// `harness = false` target's own (`cargo bench --bench NAME -- ARGS` runs `NAME ARGS
/// --bench`).
pub fn args() -> Vec<String> {
    std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect()
}

/// How long to warm up before timing.
#[derive(Debug, Clone, Copy)]
pub enum Warm {
    /// Call for at least this long (caches, the buffer pool and the allocator settle).
    For(Duration),
    /// Exactly this many calls (where every process must make the same calls, as MPI
    /// ranks in a collective must).
    Calls(usize),
}

/// A timing plan: warm-up, then `reps` batches of `inner` calls.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    pub warm: Warm,
    pub reps: usize,
    pub inner: usize,
}

impl Plan {
    /// `reps` single calls after warming up for `ms` milliseconds.
    pub fn after_ms(ms: u64, reps: usize) -> Plan {
        Plan {
            warm: Warm::For(Duration::from_millis(ms)),
            reps,
            inner: 1,
        }
    }

    /// Median and best seconds per call of `f`; `before_batch` runs, untimed, before each
    /// batch (a barrier, say).
    pub fn run_with(
        &self,
        mut f: impl FnMut() -> Result<()>,
        mut before_batch: impl FnMut() -> Result<()>,
    ) -> Result<(f64, f64)> {
        match self.warm {
            Warm::For(d) => {
                let t = Instant::now();
                while t.elapsed() < d {
                    f()?;
                }
            }
            Warm::Calls(n) => {
                for _ in 0..n {
                    f()?;
                }
            }
        }
        let inner = self.inner.max(1);
        let mut v = Vec::with_capacity(self.reps.max(1));
        for _ in 0..self.reps.max(1) {
            before_batch()?;
            let t = Instant::now();
            for _ in 0..inner {
                f()?;
            }
            v.push(t.elapsed().as_secs_f64() / inner as f64);
        }
        Ok(median_best(&mut v))
    }

    /// [`Plan::run_with`] with nothing between batches.
    pub fn run(&self, f: impl FnMut() -> Result<()>) -> Result<(f64, f64)> {
        self.run_with(f, || Ok(()))
    }
}

/// (median, best) of non-empty `v` (sorted in place); NaN for an empty one.
pub fn median_best(v: &mut [f64]) -> (f64, f64) {
    if v.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    v.sort_by(f64::total_cmp);
    (v[v.len() / 2], v[0])
}
