//! The reducer behind `DistributedDataParallel::backward`: gradients packed into bucket
//! buffers by post-accumulate-grad hooks, each bucket's all-reduce started as soon as it
//! is full (non-blocking or on a communication thread), all of them finished before
//! backward returns.

use super::super::group::SharedSlab;
use super::*;

pub(super) const SYNC_OP: &str = "DistributedDataParallel::backward";

/// Copies `p`'s gradient `g` (None: zeros, a parameter without gradient this step) into
/// `dst`, its place in a bucket's send buffer. Host memory is read in place; anything
/// else (a file mapping) is copied.
pub(super) fn pack(
    rank: usize,
    bucket: Option<usize>,
    p: &Param,
    g: Option<&Tensor>,
    dst: &mut [f32],
) -> Result<()> {
    let Some(g) = g else {
        dst.fill(0.0);
        return Ok(());
    };
    let wrong = |got: usize| {
        Error::bad_shape(
            SYNC_OP,
            g.shape(),
            format!(
                "rank {rank}{}: the gradient of `{}` holds {got} elements, the parameter {}",
                bucket.map(|b| format!(", bucket {b}")).unwrap_or_default(),
                p.name(),
                dst.len()
            ),
        )
    };
    match g.storage().as_host() {
        Some(h) => {
            let v = h.f32s(SYNC_OP)?;
            if v.len() != dst.len() {
                return Err(wrong(v.len()));
            }
            dst.copy_from_slice(v);
        }
        None => {
            let v = g.to_vec::<f32>()?;
            if v.len() != dst.len() {
                return Err(wrong(v.len()));
            }
            dst.copy_from_slice(&v);
        }
    }
    Ok(())
}

/// Each parameter of `bucket` gets its piece of the reduced sums `recv`, times `scale`,
/// as its gradient.
pub(super) fn unpack(bucket: &[Param], recv: &[f32], scale: f32) -> Result<()> {
    let mut at = 0;
    for p in bucket {
        let n = p.numel();
        let src = &recv[at..at + n];
        put_grad(p, |dst| {
            for (d, s) in dst.iter_mut().zip(src) {
                *d = s * scale;
            }
        })?;
        at += n;
    }
    Ok(())
}

/// Sets `p`'s gradient to what `fill` writes into a slice of its size: into the
/// gradient backward left there when nothing else holds it (no allocation, no fresh
/// pages: a new 4 MB buffer per parameter and step cost W8 ~1 ms in page faults), else
/// into a new tensor.
fn put_grad(p: &Param, fill: impl FnOnce(&mut [f32])) -> Result<()> {
    let shape = p.shape().unwrap_or_default();
    let n: usize = shape.iter().product();
    let mut old = p.grad();
    // the slot's handle goes first, so `old` may be the only one
    p.set_grad(None);
    let reusable = old
        .as_mut()
        .filter(|g| g.shape() == shape.as_slice())
        .and_then(Tensor::storage_mut)
        .and_then(|s| s.as_host_mut())
        .and_then(|h| match h {
            crate::HostData::F32(v) if v.len() == n => Some(v.as_mut_slice()),
            _ => None,
        });
    match reusable {
        Some(dst) => {
            fill(dst);
            p.set_grad(old);
        }
        None => {
            let mut v = vec![0.0; n];
            fill(&mut v);
            p.set_grad(Some(Tensor::from_vec(v, &shape)?));
        }
    }
    Ok(())
}

/// Each parameter of `bucket` gets its piece of the slab's reduced (already scaled) sums.
fn unpack_shared(bucket: &Bucket, slab: &SharedSlab) -> Result<()> {
    for (p, &at) in bucket.params.iter().zip(&bucket.offsets) {
        put_grad(p, |dst| slab.read(bucket.base + at, dst))?;
    }
    Ok(())
}

/// The overlapped path: the reducer and the hooks that feed it (removed on drop, which
/// also breaks the cycle parameter -> hook -> reducer -> parameter).
pub(super) struct Overlapped {
    pub(super) reducer: Arc<Reducer>,
    hooks: Vec<HookHandle>,
}

impl Overlapped {
    /// `shared`: sum through a node-shared slab when every rank runs on this host.
    pub(super) fn new(
        group: &ProcessGroup,
        buckets: &[Vec<Param>],
        mode: Overlap,
        shared: bool,
    ) -> Result<Self> {
        let reducer = Arc::new(Reducer::new(group, buckets, mode, shared)?);
        let mut hooks = Vec::new();
        for (b, bucket) in buckets.iter().enumerate() {
            for (k, p) in bucket.iter().enumerate() {
                let r = reducer.clone();
                hooks.push(p.register_post_accumulate_grad_hook(move |g| r.ready(b, k, g)));
            }
        }
        Ok(Overlapped { reducer, hooks })
    }
}

impl Drop for Overlapped {
    fn drop(&mut self) {
        for h in &self.hooks {
            h.remove();
        }
    }
}

/// One bucket of the overlapped path.
pub(super) struct Bucket {
    params: Vec<Param>,
    /// Where each parameter starts in the bucket's buffers.
    offsets: Vec<usize>,
    /// Send and receive buffers, allocated once (empty with a shared slab). While the
    /// bucket's all-reduce is in flight, nothing but MPI touches them (the invariant
    /// `start_all_reduce_sum` needs).
    bufs: Arc<Mutex<(Vec<f32>, Vec<f32>)>>,
    /// Where the bucket starts in the shared slab (buckets one after the other), and
    /// its elements.
    base: usize,
    len: usize,
}

/// One backward's progress.
pub(super) struct Step {
    /// Whether hooks pack gradients (only inside `DistributedDataParallel::backward`).
    armed: bool,
    /// Per bucket and parameter: packed this step.
    packed: Vec<Vec<bool>>,
    /// Per bucket: parameters not yet packed.
    missing: Vec<usize>,
    /// The next bucket to start: buckets start in order on every rank (MPI matches
    /// collectives by order), a ready bucket waits for the ones before it.
    next: usize,
    /// [`Overlap::Nonblocking`]: the all-reduces in flight, per bucket.
    flights: Vec<Option<InFlight>>,
    /// [`Overlap::Thread`]: buckets handed to the thread and not yet reported done.
    queued: usize,
    /// Ranks on one host: every bucket is packed into this slab, and one all-reduce
    /// through shared memory at the end of backward sums them all (no MPI messages).
    slab: Option<SharedSlab>,
}

/// The communication thread of [`Overlap::Thread`].
pub(super) struct CommThread {
    jobs: Option<Sender<usize>>,
    done: Receiver<usize>,
    handle: Option<JoinHandle<()>>,
}

/// Packs gradients as hooks report them and starts each bucket's all-reduce when the
/// bucket is complete.
pub(super) struct Reducer {
    group: ProcessGroup,
    pub(super) mode: Overlap,
    buckets: Vec<Bucket>,
    step: Mutex<Step>,
    thread: Option<Mutex<CommThread>>,
}

impl Reducer {
    fn new(
        group: &ProcessGroup,
        buckets: &[Vec<Param>],
        mode: Overlap,
        shared: bool,
    ) -> Result<Self> {
        let total: usize = buckets.iter().flatten().map(Param::numel).sum();
        // collective: every rank asks, and gets the same answer
        let slab = match shared {
            true => group.shared_slab(total)?,
            false => None,
        };
        let mut base = 0;
        let buckets: Vec<Bucket> = buckets
            .iter()
            .map(|params| {
                let mut offsets = Vec::with_capacity(params.len());
                let mut len = 0;
                for p in params {
                    offsets.push(len);
                    len += p.numel();
                }
                let n = if slab.is_some() { 0 } else { len };
                let bucket = Bucket {
                    params: params.clone(),
                    offsets,
                    bufs: Arc::new(Mutex::new((vec![0.0; n], vec![0.0; n]))),
                    base,
                    len,
                };
                base += len;
                bucket
            })
            .collect();
        let thread = match mode {
            Overlap::Thread if slab.is_none() => Some(Mutex::new(Self::spawn(group, &buckets)?)),
            _ => None,
        };
        Ok(Reducer {
            group: group.clone(),
            mode,
            step: Mutex::new(Step {
                armed: false,
                packed: buckets
                    .iter()
                    .map(|b| vec![false; b.params.len()])
                    .collect(),
                missing: buckets.iter().map(|b| b.params.len()).collect(),
                next: 0,
                flights: buckets.iter().map(|_| None).collect(),
                queued: 0,
                slab,
            }),
            buckets,
            thread,
        })
    }

    /// The communication thread: reduces each bucket index it is sent, in order, and
    /// reports it back; it ends when the job channel closes.
    fn spawn(group: &ProcessGroup, buckets: &[Bucket]) -> Result<CommThread> {
        let (jobs, rx) = channel::<usize>();
        let (tx, done) = channel::<usize>();
        let group = group.clone();
        let bufs: Vec<_> = buckets.iter().map(|b| b.bufs.clone()).collect();
        let handle = std::thread::Builder::new()
            .name("ddp-comm".into())
            .spawn(move || {
                for b in rx {
                    if let Some(buf) = bufs.get(b) {
                        let mut buf = buf.lock().unwrap_or_else(|e| e.into_inner());
                        let (send, recv) = &mut *buf;
                        group.all_reduce_sum_into(send, recv, "all_reduce");
                    }
                    if tx.send(b).is_err() {
                        break;
                    }
                }
            })
            .map_err(|e| {
                Error::custom(format!(
                    "DistributedDataParallel: starting the communication thread: {e}"
                ))
            })?;
        Ok(CommThread {
            jobs: Some(jobs),
            done,
            handle: Some(handle),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Step> {
        self.step.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether gradients are summed through a node-shared slab.
    pub(super) fn shared_memory(&self) -> bool {
        self.lock().slab.is_some()
    }

    /// Starts a step: every bucket empty, hooks on.
    pub(super) fn arm(&self) {
        let mut st = self.lock();
        for (packed, b) in st.packed.iter_mut().zip(&self.buckets) {
            packed.clear();
            packed.resize(b.params.len(), false);
        }
        st.missing = self.buckets.iter().map(|b| b.params.len()).collect();
        st.next = 0;
        st.armed = true;
    }

    /// The hook of parameter `k` of bucket `b`: its gradient `g` is complete.
    fn ready(&self, b: usize, k: usize, g: &Tensor) -> Result<()> {
        let mut st = self.lock();
        if !st.armed {
            return Ok(());
        }
        self.pack_param(&mut st, b, k, Some(g))?;
        self.start_ready(&mut st)?;
        if self.mode == Overlap::Nonblocking {
            // let the reductions in flight move on (Open MPI progresses them in calls)
            for f in st.flights.iter_mut().flatten() {
                self.group.test_all_reduce(f);
            }
        }
        Ok(())
    }

    fn pack_param(&self, st: &mut Step, b: usize, k: usize, g: Option<&Tensor>) -> Result<()> {
        let (Some(bucket), Some(packed)) = (self.buckets.get(b), st.packed.get_mut(b)) else {
            return Ok(());
        };
        let (Some(p), Some(&at), Some(seen)) = (
            bucket.params.get(k),
            bucket.offsets.get(k),
            packed.get_mut(k),
        ) else {
            return Ok(());
        };
        if *seen {
            return Ok(());
        }
        let misfit = || {
            Error::bad_shape(
                SYNC_OP,
                &[p.numel()],
                format!(
                    "rank {}, bucket {b}: `{}` does not fit its bucket (the parameter was resized after wrapping)",
                    self.group.rank(),
                    p.name()
                ),
            )
        };
        let end = at + p.numel();
        if end > bucket.len {
            return Err(misfit());
        }
        if let Some(slab) = st.slab.as_mut() {
            let dst = slab
                .mine()
                .get_mut(bucket.base + at..bucket.base + end)
                .ok_or_else(misfit)?;
            pack(self.group.rank(), Some(b), p, g, dst)?;
        } else {
            let mut bufs = bucket.bufs.lock().unwrap_or_else(|e| e.into_inner());
            let dst = bufs.0.get_mut(at..end).ok_or_else(misfit)?;
            pack(self.group.rank(), Some(b), p, g, dst)?;
        }
        *seen = true;
        if let Some(m) = st.missing.get_mut(b) {
            *m -= 1;
        }
        Ok(())
    }

    /// Starts every complete bucket from `next` on, in order.
    fn start_ready(&self, st: &mut Step) -> Result<()> {
        while st.next < self.buckets.len() && st.missing.get(st.next) == Some(&0) {
            self.start(st, st.next)?;
            st.next += 1;
        }
        Ok(())
    }

    fn start(&self, st: &mut Step, b: usize) -> Result<()> {
        let Some(bucket) = self.buckets.get(b) else {
            return Ok(());
        };
        if st.slab.is_some() {
            // summed all at once in `finish`: with ranks on one host there is no
            // message to start, and no idle core to sum on while backward runs
            return Ok(());
        }
        match &self.thread {
            Some(t) => {
                let t = t.lock().unwrap_or_else(|e| e.into_inner());
                let gone = || {
                    problem(
                        SYNC_OP,
                        DistributedProblem::CommThread {
                            rank: self.group.rank(),
                            bucket: b,
                        },
                    )
                };
                t.jobs
                    .as_ref()
                    .ok_or_else(gone)?
                    .send(b)
                    .map_err(|_| gone())?;
                st.queued += 1;
            }
            None => {
                let mut bufs = bucket.bufs.lock().unwrap_or_else(|e| e.into_inner());
                let (send, recv) = &mut *bufs;
                // SAFETY: the buffers live in `bucket.bufs`, are never resized, and are
                // not touched while `flights[b]` is Some: `finish` (and `Drop`) wait for
                // every flight before reading them or letting them go, and the
                // reducer's group handle keeps MPI initialized until then.
                let flight = unsafe { self.group.start_all_reduce_sum(send, recv) };
                if let Some(slot) = st.flights.get_mut(b) {
                    *slot = Some(flight);
                }
            }
        }
        Ok(())
    }

    /// Waits for every all-reduce started this step.
    fn wait_all(&self, st: &mut Step) -> Result<()> {
        for f in st.flights.iter_mut() {
            if let Some(mut flight) = f.take() {
                self.group.wait_all_reduce(&mut flight);
            }
        }
        if let Some(t) = &self.thread {
            let t = t.lock().unwrap_or_else(|e| e.into_inner());
            while st.queued > 0 {
                t.done.recv().map_err(|_| {
                    problem(
                        SYNC_OP,
                        DistributedProblem::CommThread {
                            rank: self.group.rank(),
                            bucket: st.next.saturating_sub(st.queued),
                        },
                    )
                })?;
                st.queued -= 1;
            }
        }
        Ok(())
    }

    /// Ends a step: `done` is the backward's result. On success, the parameters that
    /// got no gradient are packed (their gradient so far, or zeros), the remaining
    /// buckets start, all are waited for, and every parameter gets its mean. On failure
    /// the all-reduces in flight are waited for and the error is returned.
    pub(super) fn finish(&self, done: Result<()>, scale: f32) -> Result<()> {
        let mut st = self.lock();
        st.armed = false;
        let rest = match done {
            Err(e) => Err(e),
            Ok(()) => self.complete(&mut st),
        };
        let waited = self.wait_all(&mut st);
        if let Some(slab) = st.slab.as_mut() {
            // every rank comes here once per step, also after a failed backward (its
            // peers would wait at the barrier otherwise), and says whether its
            // gradients are all in: if one rank's are not, no rank sums or reads
            let summed = slab.all_reduce(scale, rest.is_ok());
            let read = match (rest, summed) {
                (Err(e), _) => Err(e),
                (Ok(()), Err(other_rank)) => Err(problem(
                    SYNC_OP,
                    DistributedProblem::PeerFailed {
                        rank: self.group.rank(),
                        other_rank,
                    },
                )),
                (Ok(()), Ok(())) => self
                    .buckets
                    .iter()
                    .try_for_each(|bucket| unpack_shared(bucket, slab)),
            };
            slab.flip();
            read?;
            return waited;
        }
        rest?;
        waited?;
        for bucket in &self.buckets {
            let bufs = bucket.bufs.lock().unwrap_or_else(|e| e.into_inner());
            unpack(&bucket.params, &bufs.1, scale)?;
        }
        Ok(())
    }

    /// Packs the parameters no hook reported and starts the remaining buckets.
    fn complete(&self, st: &mut Step) -> Result<()> {
        for (b, bucket) in self.buckets.iter().enumerate() {
            for (k, p) in bucket.params.iter().enumerate() {
                if st.packed.get(b).and_then(|v| v.get(k)) == Some(&false) {
                    self.pack_param(st, b, k, p.grad().as_ref())?;
                }
            }
        }
        self.start_ready(st)
    }
}

impl Drop for Reducer {
    fn drop(&mut self) {
        // nothing is in flight after `finish`; this covers a panic in between
        let mut st = self.step.lock().unwrap_or_else(|e| e.into_inner());
        for f in st.flights.iter_mut() {
            if let Some(mut flight) = f.take() {
                self.group.wait_all_reduce(&mut flight);
            }
        }
        drop(st);
        if let Some(t) = &mut self.thread {
            let t = t.get_mut().unwrap_or_else(|e| e.into_inner());
            t.jobs = None;
            if let Some(h) = t.handle.take() {
                let _ = h.join();
            }
        }
    }
}

/// The bucket's tensors (from `get`) flattened and concatenated, on their device.
pub(super) fn flatten(bucket: &[Param], get: impl Fn(&Param) -> Result<Tensor>) -> Result<Tensor> {
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
pub(super) fn unflatten(
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
