//! `DistributedDataParallel`: one model replica per rank, kept identical by broadcasting
//! rank 0's state once and averaging gradients in every backward, bucket by bucket, each
//! bucket's all-reduce started as soon as backward has produced its gradients.

use super::group::InFlight;
use super::{problem, DistributedProblem, ProcessGroup};
use crate::autograd::HookHandle;
use crate::module::{Module, ModuleExt, Param, Visitor, VisitorMut};
use crate::{Error, Forward, Result, Tensor};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;

mod reducer;
use reducer::{flatten, pack, unflatten, unpack, Overlapped};

/// Default bucket size: PyTorch's `bucket_cap_mb=25`. On a quiet 2-vCPU machine
/// (`benches/bench_w8.sh`, 2 ranks of 1 thread, W8's 7.5 MB MLP, benches/PEERS.md) 25 MiB
/// buckets after a 1 MiB first one stepped at 61% scaling efficiency, 4 MiB buckets at
/// 56%, one blocking 25 MiB bucket after backward at 55%, the communication thread at 50%.
const DEFAULT_BUCKET_BYTES: usize = 25 << 20;

/// Default first-bucket size: PyTorch's 1 MiB (the last layers' gradients, ready first,
/// go out early).
const DEFAULT_FIRST_BUCKET_BYTES: usize = 1 << 20;

/// How [`DistributedDataParallel::backward`] moves the gradient buckets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Overlap {
    /// No overlap: after the whole backward, one blocking all-reduce per bucket
    /// ([`DistributedDataParallel::sync_gradients`]).
    Off,
    /// PyTorch DDP's bucket hooks: a post-accumulate-grad hook on every parameter packs
    /// its gradient as soon as backward has accumulated it, and a bucket's all-reduce
    /// (`MPI_Iallreduce`) starts as soon as all of its parameters are in (buckets in
    /// order, last layers first); each later hook lets the reductions in flight
    /// progress, and the end of `backward` waits for them all.
    #[default]
    Nonblocking,
    /// Like [`Overlap::Nonblocking`], but a communication thread runs each ready
    /// bucket's blocking all-reduce while backward goes on.
    Thread,
}

/// The settings of [`DistributedDataParallel::with_options`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DdpOptions {
    /// The largest bucket in bytes (PyTorch's `bucket_cap_mb`; default 25 MiB). A
    /// parameter larger than that gets a bucket of its own.
    pub bucket_bytes: usize,
    /// The first bucket's cap (the last layers' gradients, ready first): kept small, as
    /// PyTorch does (default 1 MiB), so the first all-reduce starts early.
    pub first_bucket_bytes: usize,
    /// How backward overlaps the all-reduces (default [`Overlap::Nonblocking`]).
    pub overlap: Overlap,
    /// When every rank runs on one host (and the parameters are on the CPU), sum the
    /// gradients through a node-shared memory window instead of MPI messages (default
    /// true; with [`Overlap::Nonblocking`] or [`Overlap::Thread`]): hooks pack each
    /// gradient into this rank's segment as backward produces it, and at the end of
    /// backward each rank sums its share of the elements over all segments, in place,
    /// with no copies in and out of message queues (W8, 2 ranks on 2 vCPUs: MPI's
    /// all-reduces took 2.7 ms of a 14.4 ms step, the shared sums 0.1-0.3 ms of 11.7-12.4;
    /// benches/PEERS.md). Same sums as MPI's on 2 ranks, bit for bit; on more ranks each
    /// sum is added up in rank order, once, by one rank. A step that fails on one rank
    /// fails on all of them ([`crate::distributed::DistributedProblem::PeerFailed`]).
    pub shared_memory: bool,
}

impl Default for DdpOptions {
    fn default() -> Self {
        DdpOptions {
            bucket_bytes: DEFAULT_BUCKET_BYTES,
            first_bucket_bytes: DEFAULT_FIRST_BUCKET_BYTES,
            overlap: Overlap::default(),
            shared_memory: true,
        }
    }
}

/// Wraps any `Module + Forward` for data-parallel training (PyTorch's
/// `DistributedDataParallel`):
///
/// - [`DistributedDataParallel::new`] checks that every rank built the same model
///   (parameter names and shapes), then broadcasts rank 0's parameters and buffers, so
///   the replicas start identical whatever each rank drew;
/// - [`DistributedDataParallel::backward`] runs `loss.backward()` and averages the
///   gradients over the ranks, packed into few large messages (buckets of up to 25 MiB,
///   the first up to 1 MiB, last parameters first as their gradients are ready first,
///   see [`DdpOptions`]), each parameter once,
///   so tied parameters are reduced once. By default ([`Overlap::Nonblocking`]) a
///   bucket's all-reduce starts inside backward, as soon as backward has produced all
///   of its gradients (PyTorch DDP's bucket hooks), and `backward` returns once every
///   bucket is reduced: after it, every gradient is the mean, and there is no moment
///   where an optimizer could read a half-reduced one. When every rank runs on one host,
///   the gradients are summed through a node-shared memory window instead of messages
///   ([`DdpOptions::shared_memory`]). [`Overlap::Off`] reduces after backward
///   ([`DistributedDataParallel::sync_gradients`]); all give bit-identical gradients on
///   2 ranks. A parameter that got no gradient on a rank counts as a zero gradient
///   there (every rank sends the same buckets);
/// - it is a [`Module`] whose traversal is the inner module's: `state_dict()` names are
///   the inner model's (no `module.` prefix), and the inner module is
///   [`DistributedDataParallel::module`].
///
/// Each rank then steps its own optimizer on identical gradients, so the replicas stay
/// bit-identical without further messages. Every parameter must be materialized before
/// wrapping (run one forward of a lazy model first): a deferred one is an
/// [`Error::Uninitialized`].
pub struct DistributedDataParallel<M> {
    module: M,
    group: ProcessGroup,
    /// Buckets of trainable parameters, in reduction order.
    buckets: Vec<Vec<Param>>,
    /// The overlapped path's state and hooks (None: [`Overlap::Off`], or parameters
    /// off the CPU).
    overlap: Option<Overlapped>,
    /// Host buckets' send and receive buffers, reused every step: fresh multi-MB
    /// buffers each step made glibc hand pages back to the OS and fault them in again
    /// (1.3 M page faults in 150 W2 steps, the step 2-4x slower).
    host: Mutex<(Vec<f32>, Vec<f32>)>,
    /// Whether [`DistributedDataParallel::backward`] averages the gradients (off inside
    /// [`DistributedDataParallel::no_sync`]).
    sync: AtomicBool,
}

impl<M: std::fmt::Debug> std::fmt::Debug for DistributedDataParallel<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DistributedDataParallel")
            .field("module", &self.module)
            .field("group", &self.group)
            .field("buckets", &self.buckets.len())
            .field(
                "overlap",
                &self
                    .overlap
                    .as_ref()
                    .map_or(Overlap::Off, |o| o.reducer.mode),
            )
            .finish()
    }
}

/// A cheap fingerprint of names and shapes (FNV-1a), to compare models across ranks.
fn fingerprint(items: &[(String, Vec<usize>)]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |b: &[u8]| {
        for &x in b {
            h ^= u64::from(x);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    };
    for (name, shape) in items {
        eat(name.as_bytes());
        eat(&[0xff]);
        for d in shape {
            eat(&(*d as u64).to_le_bytes());
        }
        eat(&[0xfe]);
    }
    h
}

impl<M: Module + Forward> DistributedDataParallel<M> {
    /// Wraps `module` with the default [`DdpOptions`]: buckets of up to 25 MiB (the
    /// first up to 1 MiB), each all-reduce overlapped with backward
    /// ([`Overlap::Nonblocking`]).
    pub fn new(module: M, group: &ProcessGroup) -> Result<Self> {
        Self::with_options(module, group, DdpOptions::default())
    }

    /// Wraps `module`, packing gradients into buckets of up to `bucket_bytes` (the first
    /// one too; a parameter larger than that gets a bucket of its own), overlapped.
    pub fn with_bucket_bytes(module: M, group: &ProcessGroup, bucket_bytes: usize) -> Result<Self> {
        Self::with_options(
            module,
            group,
            DdpOptions {
                bucket_bytes,
                first_bucket_bytes: bucket_bytes,
                ..DdpOptions::default()
            },
        )
    }

    /// Wraps `module` with the bucket sizes and overlap of `options`.
    ///
    /// ```no_run
    /// # extern crate nn_core as nn;
    /// use nn::distributed::{DdpOptions, DistributedDataParallel, Overlap, ProcessGroup};
    /// let group = ProcessGroup::init()?;
    /// let options = DdpOptions {
    ///     bucket_bytes: 4 << 20,       // more, smaller buckets: more overlap
    ///     first_bucket_bytes: 1 << 20, // PyTorch's small first bucket
    ///     overlap: Overlap::Nonblocking,
    ///     shared_memory: true,         // ranks on one host: sums through shared memory
    /// };
    /// let ddp = DistributedDataParallel::with_options(nn::Linear::new(4, 1), &group, options)?;
    /// assert_eq!(ddp.overlap(), Overlap::Nonblocking);
    /// # Ok::<(), nn::Error>(())
    /// ```
    pub fn with_options(module: M, group: &ProcessGroup, options: DdpOptions) -> Result<Self> {
        const OP: &str = "DistributedDataParallel::new";
        let named = module.named_parameters();
        let mut layout = Vec::with_capacity(named.len());
        for (name, p) in &named {
            let shape = p.shape().ok_or_else(|| Error::Uninitialized {
                param: name.clone(),
            })?;
            layout.push((name.clone(), shape));
        }
        for (name, b) in module.named_buffers() {
            layout.push((name, b.get().shape().to_vec()));
        }
        // every rank built the same model? (one small message; all ranks agree on the answer)
        let local = [layout.len() as u64, fingerprint(&layout)];
        let all = group.gather_words(OP, &local);
        if let Some((r, w)) = all.chunks(2).enumerate().find(|(_, w)| *w != local) {
            return Err(problem(
                OP,
                DistributedProblem::RanksDisagree {
                    rank: group.rank(),
                    what: format!("a model with {} parameters and buffers", local[0]),
                    other_rank: r,
                    other: format!(
                        "a model with {} parameters and buffers{}",
                        w[0],
                        if w[0] == local[0] {
                            " of other names or shapes"
                        } else {
                            ""
                        }
                    ),
                },
            ));
        }
        let params: Vec<Param> = named.into_iter().map(|(_, p)| p).collect();
        let buckets = Self::bucketize(&params, options.first_bucket_bytes, options.bucket_bytes);
        // the overlapped path packs host memory; parameters elsewhere (CUDA) are reduced
        // after backward, through the device engine
        let host = buckets.iter().flatten().all(|p| p.device().is_cpu());
        let overlap = match options.overlap {
            Overlap::Off => None,
            _ if !host => None,
            mode => Some(Overlapped::new(
                group,
                &buckets,
                mode,
                options.shared_memory,
            )?),
        };
        let ddp = DistributedDataParallel {
            group: group.clone(),
            buckets,
            overlap,
            host: Mutex::new((Vec::new(), Vec::new())),
            sync: AtomicBool::new(true),
            module,
        };
        ddp.broadcast_state(&params)?;
        Ok(ddp)
    }

    /// Trainable parameters in reverse registration order, cut into buckets of up to
    /// `first` bytes (the first bucket) and `rest` bytes (the others).
    fn bucketize(params: &[Param], first: usize, rest: usize) -> Vec<Vec<Param>> {
        let mut buckets: Vec<Vec<Param>> = Vec::new();
        let mut bytes = 0usize;
        for p in params.iter().rev().filter(|p| p.requires_grad()) {
            let size = p.numel() * 4;
            let cap = if buckets.len() <= 1 { first } else { rest };
            match buckets.last_mut() {
                Some(b) if bytes + size <= cap => b.push(p.clone()),
                _ => {
                    buckets.push(vec![p.clone()]);
                    bytes = 0;
                }
            }
            bytes += size;
        }
        buckets
    }

    /// Rank 0's parameters (all of them, frozen ones too, in one flat message per
    /// bucket) and buffers, everywhere.
    fn broadcast_state(&self, params: &[Param]) -> Result<()> {
        let root = 0;
        for bucket in Self::bucketize_all(params) {
            let flat = flatten(&bucket, |p| p.data())?;
            let got = self.group.broadcast_unchecked(&flat, root)?;
            unflatten(&bucket, &got, |p, t| p.set_data(t))?;
        }
        for (_, b) in self.module.named_buffers() {
            let got = self.group.broadcast_unchecked(&b.get(), root)?;
            b.set(&got);
        }
        Ok(())
    }

    fn bucketize_all(params: &[Param]) -> Vec<Vec<Param>> {
        // one bucket per device kind is enough here (this runs once)
        let mut cpu = Vec::new();
        let mut other = Vec::new();
        for p in params {
            if p.device().is_cpu() {
                cpu.push(p.clone());
            } else {
                other.push(p.clone());
            }
        }
        [cpu, other].into_iter().filter(|b| !b.is_empty()).collect()
    }

    /// `loss.backward()` with the gradients averaged over the ranks (unless inside
    /// [`DistributedDataParallel::no_sync`]): with overlap (the default) each bucket's
    /// all-reduce starts during backward, and this returns once all are done; with
    /// [`Overlap::Off`] it is `loss.backward()` then
    /// [`DistributedDataParallel::sync_gradients`]. If backward fails, the all-reduces
    /// already started are waited for before the error is returned.
    pub fn backward(&self, loss: &Tensor) -> Result<()> {
        if !self.sync.load(Ordering::Relaxed) {
            return loss.backward();
        }
        match &self.overlap {
            Some(o) => {
                o.reducer.arm();
                let done = loss.backward();
                o.reducer.finish(done, 1.0 / self.group.world_size() as f32)
            }
            None => {
                loss.backward()?;
                self.sync_gradients()
            }
        }
    }

    /// Whether `backward` sums the gradients through shared memory
    /// ([`DdpOptions::shared_memory`], and every rank on this host).
    pub fn shared_memory(&self) -> bool {
        self.overlap
            .as_ref()
            .is_some_and(|o| o.reducer.shared_memory())
    }

    /// How `backward` overlaps the all-reduces with the backward pass
    /// ([`Overlap::Off`] also where the parameters are not on the CPU).
    pub fn overlap(&self) -> Overlap {
        self.overlap
            .as_ref()
            .map_or(Overlap::Off, |o| o.reducer.mode)
    }

    /// Gradient accumulation without communication (PyTorch's `with ddp.no_sync():`):
    /// while the returned guard lives, [`DistributedDataParallel::backward`] only
    /// accumulates local gradients; the first `backward` after it is dropped averages
    /// the accumulated gradients over the ranks, so `k` micro-batches cost one
    /// all-reduce per optimizer step and give the gradients of one large batch.
    ///
    /// ```no_run
    /// # extern crate nn_core as nn;
    /// # fn demo(ddp: &nn::distributed::DistributedDataParallel<nn::Linear>,
    /// #         micro: &[nn::Tensor]) -> nn::Result<()> {
    /// use nn::Forward;
    /// let (last, rest) = micro.split_last().expect("micro-batches");
    /// {
    ///     let _guard = ddp.no_sync();
    ///     for x in rest {
    ///         ddp.backward(&ddp.forward(x)?.square()?.mean()?)?;
    ///     }
    /// }
    /// ddp.backward(&ddp.forward(last)?.square()?.mean()?)?; // one all-reduce
    /// # Ok(()) }
    /// ```
    pub fn no_sync(&self) -> NoSync<'_> {
        let was = self.sync.swap(false, Ordering::Relaxed);
        NoSync {
            ddp: &self.sync,
            was,
        }
    }

    /// Whether `backward` averages gradients now (false inside `no_sync`).
    pub fn require_backward_grad_sync(&self) -> bool {
        self.sync.load(Ordering::Relaxed)
    }

    /// Averages every trainable parameter's gradient over the ranks, one all-reduce per
    /// bucket. Call it after `backward` and before the optimizer step, on every rank.
    pub fn sync_gradients(&self) -> Result<()> {
        let scale = 1.0 / self.group.world_size() as f32;
        crate::no_grad(|| {
            for bucket in &self.buckets {
                if bucket.iter().all(|p| p.device().is_cpu()) {
                    self.sync_host_bucket(bucket, scale)?;
                    continue;
                }
                let flat = flatten(bucket, |p| match p.grad() {
                    Some(g) => Ok(g),
                    None => {
                        Tensor::try_zeros(&p.shape().unwrap_or_default())?.to_device(&p.device())
                    }
                })?;
                let sum = self.group.all_reduce_sum_unchecked(&flat)?;
                let mean = sum.mul_scalar(scale)?;
                unflatten(bucket, &mean, |p, g| {
                    p.set_grad(Some(g.clone()));
                    Ok(())
                })?;
            }
            Ok(())
        })
    }

    /// A bucket of CPU parameters: the gradients are packed straight into the reused
    /// send buffer, reduced by MPI into the reused receive buffer, and each parameter's
    /// mean is cut out of it (one pass, no intermediate tensors).
    fn sync_host_bucket(&self, bucket: &[Param], scale: f32) -> Result<()> {
        let mut bufs = self.host.lock().unwrap_or_else(|e| e.into_inner());
        let (send, recv) = &mut *bufs;
        let len: usize = bucket.iter().map(Param::numel).sum();
        send.resize(len, 0.0);
        let mut at = 0;
        for p in bucket {
            let n = p.numel();
            pack(
                self.group.rank(),
                None,
                p,
                p.grad().as_ref(),
                &mut send[at..at + n],
            )?;
            at += n;
        }
        recv.resize(send.len(), 0.0);
        self.group.all_reduce_sum_into(send, recv, "all_reduce");
        unpack(bucket, recv, scale)
    }

    /// The number of gradient messages per step.
    pub fn bucket_count(&self) -> usize {
        self.buckets.len()
    }

    /// The group it averages over.
    pub fn group(&self) -> &ProcessGroup {
        &self.group
    }

    /// The wrapped module.
    pub fn module(&self) -> &M {
        &self.module
    }

    /// The wrapped module, mutably (keep every rank's replica the same).
    pub fn module_mut(&mut self) -> &mut M {
        &mut self.module
    }

    /// Unwraps.
    pub fn into_inner(self) -> M {
        self.module
    }
}

/// The guard of [`DistributedDataParallel::no_sync`]: dropping it turns gradient
/// averaging back on (as it was before).
#[must_use = "no_sync lasts as long as its guard: bind it with `let _guard = ...`"]
#[derive(Debug)]
pub struct NoSync<'a> {
    ddp: &'a AtomicBool,
    was: bool,
}

impl Drop for NoSync<'_> {
    fn drop(&mut self) {
        self.ddp.store(self.was, Ordering::Relaxed);
    }
}

impl<M: Module> Module for DistributedDataParallel<M> {
    fn visit<'a>(&'a self, v: &mut dyn Visitor<'a>) {
        self.module.visit(v)
    }

    fn visit_mut(&mut self, v: &mut dyn VisitorMut) {
        self.module.visit_mut(v)
    }

    fn module_name(&self) -> String {
        format!("DistributedDataParallel[{}]", self.module.module_name())
    }

    fn extra_repr(&self) -> String {
        self.module.extra_repr()
    }

    fn set_training(&mut self, training: bool) {
        self.module.set_training(training)
    }
}

impl<M: Forward> Forward for DistributedDataParallel<M> {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.module.forward(x)
    }
}
