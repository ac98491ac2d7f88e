//! `DistributedDataParallel`: one model replica per rank, kept identical by broadcasting
//! rank 0's state once and averaging gradients after every backward.

use super::{problem, DistributedProblem, ProcessGroup};
use crate::module::{Module, ModuleExt, Param, Visitor, VisitorMut};
use crate::{Error, Forward, Result, Tensor};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

/// Default bucket size: PyTorch's `bucket_cap_mb=25`.
const DEFAULT_BUCKET_BYTES: usize = 25 << 20;

/// Wraps any `Module + Forward` for data-parallel training (PyTorch's
/// `DistributedDataParallel`):
///
/// - [`DistributedDataParallel::new`] checks that every rank built the same model
///   (parameter names and shapes), then broadcasts rank 0's parameters and buffers, so
///   the replicas start identical whatever each rank drew;
/// - [`DistributedDataParallel::backward`] runs `loss.backward()` then
///   [`DistributedDataParallel::sync_gradients`]: the gradients are averaged over the
///   ranks, packed into few large messages (buckets of up to 25 MiB, last parameters
///   first as their gradients are ready first), each parameter once, so tied
///   parameters are reduced once. A parameter that got no gradient on a rank counts as
///   a zero gradient there (every rank sends the same buckets);
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
    /// Wraps `module`, with buckets of up to 25 MiB.
    pub fn new(module: M, group: &ProcessGroup) -> Result<Self> {
        Self::with_bucket_bytes(module, group, DEFAULT_BUCKET_BYTES)
    }

    /// Wraps `module`, packing gradients into buckets of up to `bucket_bytes` (a
    /// parameter larger than that gets a bucket of its own).
    pub fn with_bucket_bytes(module: M, group: &ProcessGroup, bucket_bytes: usize) -> Result<Self> {
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
        let ddp = DistributedDataParallel {
            group: group.clone(),
            buckets: Self::bucketize(&params, bucket_bytes),
            host: Mutex::new((Vec::new(), Vec::new())),
            sync: AtomicBool::new(true),
            module,
        };
        ddp.broadcast_state(&params)?;
        Ok(ddp)
    }

    /// Trainable parameters in reverse registration order, cut into buckets.
    fn bucketize(params: &[Param], bucket_bytes: usize) -> Vec<Vec<Param>> {
        let mut buckets: Vec<Vec<Param>> = Vec::new();
        let mut bytes = 0usize;
        for p in params.iter().rev().filter(|p| p.requires_grad()) {
            let size = p.numel() * 4;
            match buckets.last_mut() {
                Some(b) if bytes + size <= bucket_bytes => b.push(p.clone()),
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

    /// `loss.backward()`, then [`DistributedDataParallel::sync_gradients`] unless inside
    /// [`DistributedDataParallel::no_sync`].
    pub fn backward(&self, loss: &Tensor) -> Result<()> {
        loss.backward()?;
        if self.sync.load(Ordering::Relaxed) {
            self.sync_gradients()?;
        }
        Ok(())
    }

    /// Gradient accumulation without communication (PyTorch's `with ddp.no_sync():`):
    /// while the returned guard lives, [`DistributedDataParallel::backward`] only
    /// accumulates local gradients; the first `backward` after it is dropped averages
    /// the accumulated gradients over the ranks, so `k` micro-batches cost one
    /// all-reduce per optimizer step and give the gradients of one large batch.
    ///
    /// ```no_run
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
        send.clear();
        for p in bucket {
            let n = p.numel();
            match p.grad() {
                None => send.resize(send.len() + n, 0.0),
                // host memory is read in place; anything else (a file mapping) is copied
                Some(g) => match g.storage().as_host() {
                    Some(h) => match h.f32s("DistributedDataParallel::sync_gradients")? {
                        v if v.len() == n => send.extend_from_slice(v),
                        v => {
                            return Err(Error::bad_shape(
                                "DistributedDataParallel::sync_gradients",
                                g.shape(),
                                format!(
                                    "the gradient of `{}` holds {} elements, the parameter {n}",
                                    p.name(),
                                    v.len()
                                ),
                            ))
                        }
                    },
                    None => send.extend(g.to_vec::<f32>()?),
                },
            }
        }
        recv.resize(send.len(), 0.0);
        self.group.all_reduce_sum_into(send, recv, "all_reduce");
        let mut at = 0;
        for p in bucket {
            let shape = p.shape().unwrap_or_default();
            let n: usize = shape.iter().product();
            let mean: Vec<f32> = recv[at..at + n].iter().map(|x| x * scale).collect();
            p.set_grad(Some(Tensor::from_vec(mean, &shape)?));
            at += n;
        }
        Ok(())
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

/// The bucket's tensors (from `get`) flattened and concatenated, on their device.
fn flatten(bucket: &[Param], get: impl Fn(&Param) -> Result<Tensor>) -> Result<Tensor> {
    let parts = bucket
        .iter()
        .map(|p| {
            let t = get(p)?;
            t.reshape(&[t.numel()])
        })
        .collect::<Result<Vec<_>>>()?;
    if parts.len() == 1 {
        return parts.into_iter().next().ok_or_else(|| Error::EmptyInput {
            op: "DistributedDataParallel",
            what: "a bucket".into(),
        });
    }
    Tensor::cat(&parts, 0)
}

/// Cuts `flat` back into the bucket's shapes and hands each piece to `put`.
fn unflatten(
    bucket: &[Param],
    flat: &Tensor,
    put: impl Fn(&Param, &Tensor) -> Result<()>,
) -> Result<()> {
    let mut at = 0;
    for p in bucket {
        let shape = p.shape().unwrap_or_default();
        let n: usize = shape.iter().product();
        let piece = flat.narrow(0, at, n)?.reshape(&shape)?;
        let piece = if piece.device() == p.device() {
            piece
        } else {
            piece.to_device(&p.device())?
        };
        put(p, &piece)?;
        at += n;
    }
    Ok(())
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
