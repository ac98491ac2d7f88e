//! NCCL on the host runtime (nn's tests only): N ranks are N threads of one process,
//! each holding a [`HostComm`] of one shared [`HostGroup`]. A collective is a
//! rendezvous: each rank deposits its send buffer, the last to arrive checks that every
//! rank made the same call (count, dtype, reduction, root) and combines the buffers in
//! rank order (so every rank gets the same bits, run after run), and each rank copies
//! the result into its receive buffer. Calls that disagree are an error naming the
//! ranks and both values on every rank; a rank that never comes makes the others fail
//! after the group's timeout instead of hanging, and breaks the group (as an NCCL
//! communicator is unusable after an abort).

use super::{host, host_mut, DevBuf};
use crate::error::Result;
use crate::runtime::comm::{comm_err, Collectives, CommElem, RedOp};
use std::any::Any;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// How long a rank waits for the others by default.
pub(crate) const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// What one rank asked for; every rank of a round must ask for the same.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Desc {
    call: &'static str,
    dtype: &'static str,
    count: usize,
    op: Option<RedOp>,
    root: Option<usize>,
}

/// One rank's part of a round: what it asked for and its send data (a `Vec<T>`).
struct Entry {
    desc: Desc,
    data: Box<dyn Any + Send>,
}

type Shared = Arc<dyn Any + Send + Sync>;

#[derive(Default)]
struct State {
    /// Each rank's entry in the current round.
    slots: Vec<Option<Entry>>,
    arrived: usize,
    /// The round's result, once every rank arrived (a `Vec<T>`, or the error text).
    result: Option<std::result::Result<Shared, String>>,
    /// Ranks that took the result.
    left: usize,
    /// Why the group is unusable (a timeout).
    broken: Option<String>,
}

/// The communicator all ranks of one in-process group share.
pub(crate) struct HostGroup {
    world_size: usize,
    timeout: Duration,
    state: Mutex<State>,
    cv: Condvar,
}

impl HostGroup {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits on the condition variable until `deadline`; `false` once it has passed.
    fn wait<'a>(
        &self,
        st: MutexGuard<'a, State>,
        deadline: Instant,
    ) -> (MutexGuard<'a, State>, bool) {
        let now = Instant::now();
        if now >= deadline {
            return (st, false);
        }
        let (st, _) = self
            .cv
            .wait_timeout(st, deadline - now)
            .unwrap_or_else(|e| e.into_inner());
        (st, true)
    }

    /// One round: deposits `rank`'s entry, waits for every rank, returns the result.
    fn round(
        &self,
        rank: usize,
        desc: Desc,
        data: Box<dyn Any + Send>,
        combine: Combine,
    ) -> Result<Shared> {
        let call = desc.call;
        let deadline = Instant::now() + self.timeout;
        let mut st = self.lock();
        // the previous round must have been taken by every rank first
        loop {
            if let Some(why) = &st.broken {
                return Err(comm_err(call, why.clone()));
            }
            if st.result.is_none() {
                if st.slots[rank].is_some() {
                    return Err(comm_err(
                        call,
                        format!("rank {rank} entered a collective twice at once (two threads share one rank)"),
                    ));
                }
                break;
            }
            let (s, alive) = self.wait(st, deadline);
            st = s;
            if !alive {
                return Err(self.time_out(st, rank, call));
            }
        }
        st.slots[rank] = Some(Entry { desc, data });
        st.arrived += 1;
        if st.arrived == self.world_size {
            let out = combine(&st.slots, self.world_size);
            st.result = Some(out);
            self.cv.notify_all();
        }
        loop {
            if let Some(why) = &st.broken {
                return Err(comm_err(call, why.clone()));
            }
            if st.result.is_some() {
                break;
            }
            let (s, alive) = self.wait(st, deadline);
            st = s;
            if !alive {
                return Err(self.time_out(st, rank, call));
            }
        }
        let out = st.result.clone();
        st.left += 1;
        if st.left == self.world_size {
            st.slots.iter_mut().for_each(|s| *s = None);
            st.arrived = 0;
            st.left = 0;
            st.result = None;
            self.cv.notify_all();
        }
        match out {
            Some(Ok(v)) => Ok(v),
            Some(Err(msg)) => Err(comm_err(call, msg)),
            None => Err(comm_err(call, "no result".into())),
        }
    }

    /// Marks the group broken after `rank` waited too long, and says who was missing.
    fn time_out(
        &self,
        mut st: MutexGuard<'_, State>,
        rank: usize,
        call: &'static str,
    ) -> crate::error::Error {
        let who = if st.result.is_some() {
            // still draining the previous round: some rank never took its result
            format!("the previous collective was not finished by every rank before this {call}")
        } else {
            let missing: Vec<usize> = (0..self.world_size)
                .filter(|&r| st.slots[r].is_none())
                .collect();
            format!("rank(s) {missing:?} never joined this {call}")
        };
        let msg = format!(
            "rank {rank} waited {:?} for the other ranks; {who} (the group is unusable from now on)",
            self.timeout
        );
        st.broken = Some(msg.clone());
        self.cv.notify_all();
        comm_err(call, msg)
    }
}

/// Combines a full round's entries into the result every rank copies.
type Combine = fn(&[Option<Entry>], usize) -> std::result::Result<Shared, String>;

/// The first way rank `r`'s call differs from rank 0's, in words.
fn disagreement(r: usize, a: &Desc, z: &Desc) -> Option<String> {
    let what = if a.call != z.call {
        format!("rank {r} called {}, rank 0 called {}", a.call, z.call)
    } else if a.count != z.count {
        format!(
            "rank {r} passed {} elements, rank 0 passed {}",
            a.count, z.count
        )
    } else if a.dtype != z.dtype {
        format!("rank {r} passed {}, rank 0 passed {}", a.dtype, z.dtype)
    } else if a.op != z.op {
        format!("rank {r} asked for {:?}, rank 0 for {:?}", a.op, z.op)
    } else if a.root != z.root {
        format!("rank {r} named root {:?}, rank 0 root {:?}", a.root, z.root)
    } else {
        return None;
    };
    Some(format!(
        "{what}; every rank must make the same call (on a GPU, NCCL would hang or corrupt memory)"
    ))
}

/// Every rank's send data as `&[T]`, in rank order, after checking the calls agree.
fn inputs<T: CommElem>(slots: &[Option<Entry>]) -> std::result::Result<(Desc, Vec<&[T]>), String> {
    let entries: Vec<&Entry> = slots.iter().flatten().collect();
    let first = entries.first().ok_or("an empty round")?.desc;
    let mut out = Vec::with_capacity(entries.len());
    for (r, e) in entries.iter().enumerate() {
        if let Some(msg) = disagreement(r, &e.desc, &first) {
            return Err(msg);
        }
        let v = e
            .data
            .downcast_ref::<Vec<T>>()
            .ok_or_else(|| format!("rank {r}'s data is not {}", T::NAME))?;
        out.push(v.as_slice());
    }
    Ok((first, out))
}

fn reduce<T: CommElem>(slots: &[Option<Entry>], n: usize) -> std::result::Result<Shared, String> {
    let (desc, ins) = inputs::<T>(slots)?;
    let mut acc: Vec<T> = ins[0].to_vec();
    for v in &ins[1..] {
        for (a, &b) in acc.iter_mut().zip(v.iter()) {
            *a = T::add(*a, b);
        }
    }
    if desc.op == Some(RedOp::Avg) {
        acc.iter_mut().for_each(|a| *a = a.div_ranks(n));
    }
    Ok(Arc::new(acc))
}

fn pick_root<T: CommElem>(
    slots: &[Option<Entry>],
    _: usize,
) -> std::result::Result<Shared, String> {
    let (desc, ins) = inputs::<T>(slots)?;
    let root = desc.root.unwrap_or(0);
    let v = ins.get(root).ok_or_else(|| format!("no rank {root}"))?;
    Ok(Arc::new(v.to_vec()))
}

fn gather<T: CommElem>(slots: &[Option<Entry>], _: usize) -> std::result::Result<Shared, String> {
    let (_, ins) = inputs::<T>(slots)?;
    Ok(Arc::new(ins.concat()))
}

/// One rank of a [`HostGroup`].
pub(crate) struct HostComm {
    group: Arc<HostGroup>,
    rank: usize,
}

/// `n` ranks of one new group, rank r at index r; a rank waits at most `timeout` for
/// the others in each collective.
pub(crate) fn group(n: usize, timeout: Duration) -> Vec<HostComm> {
    let group = Arc::new(HostGroup {
        world_size: n,
        timeout,
        state: Mutex::new(State {
            slots: (0..n).map(|_| None).collect(),
            ..State::default()
        }),
        cv: Condvar::new(),
    });
    (0..n)
        .map(|rank| HostComm {
            group: group.clone(),
            rank,
        })
        .collect()
}

impl HostComm {
    /// Runs one round with `count` elements of `src`, returns the combined `Vec<T>`.
    fn run<T: CommElem>(&self, desc: Desc, send: Vec<T>, combine: Combine) -> Result<Arc<Vec<T>>> {
        let out = self.group.round(self.rank, desc, Box::new(send), combine)?;
        out.downcast::<Vec<T>>()
            .map_err(|_| comm_err(desc.call, format!("the result is not {}", T::NAME)))
    }

    fn desc<T: CommElem>(
        call: &'static str,
        count: usize,
        op: Option<RedOp>,
        root: Option<usize>,
    ) -> Desc {
        Desc {
            call,
            dtype: T::NAME,
            count,
            op,
            root,
        }
    }
}

fn put<T: CommElem>(call: &'static str, dst: &mut DevBuf<T>, v: &[T]) -> Result<()> {
    let d = host_mut(call, dst)?.as_mut_slice();
    let have = d.len();
    let part = d.get_mut(..v.len()).ok_or_else(|| {
        comm_err(
            call,
            format!("{} elements into a buffer of {have}", v.len()),
        )
    })?;
    part.copy_from_slice(v);
    Ok(())
}

fn take<T: CommElem>(call: &'static str, src: &DevBuf<T>, count: usize) -> Result<Vec<T>> {
    let s = host(call, src)?.as_slice();
    s.get(..count).map(<[T]>::to_vec).ok_or_else(|| {
        comm_err(
            call,
            format!("{count} elements from a buffer of {}", s.len()),
        )
    })
}

impl Collectives for HostComm {
    fn rank(&self) -> usize {
        self.rank
    }
    fn world_size(&self) -> usize {
        self.group.world_size
    }
    fn all_reduce<T: CommElem>(
        &self,
        src: &DevBuf<T>,
        dst: &mut DevBuf<T>,
        count: usize,
        op: RedOp,
    ) -> Result<()> {
        const CALL: &str = "ncclAllReduce";
        host_mut(CALL, dst)?;
        let send = take(CALL, src, count)?;
        let out = self.run(
            Self::desc::<T>(CALL, count, Some(op), None),
            send,
            reduce::<T>,
        )?;
        put(CALL, dst, &out)
    }
    fn all_reduce_in_place<T: CommElem>(
        &self,
        buf: &mut DevBuf<T>,
        count: usize,
        op: RedOp,
    ) -> Result<()> {
        const CALL: &str = "ncclAllReduce";
        let send = take(CALL, buf, count)?;
        let out = self.run(
            Self::desc::<T>(CALL, count, Some(op), None),
            send,
            reduce::<T>,
        )?;
        put(CALL, buf, &out)
    }
    fn broadcast<T: CommElem>(
        &self,
        src: &DevBuf<T>,
        dst: &mut DevBuf<T>,
        count: usize,
        root: usize,
    ) -> Result<()> {
        const CALL: &str = "ncclBroadcast";
        host_mut(CALL, dst)?;
        // only the root's data travels (NCCL reads `src` on the root only)
        let send = if self.rank == root {
            take(CALL, src, count)?
        } else {
            Vec::new()
        };
        let out = self.run(
            Self::desc::<T>(CALL, count, None, Some(root)),
            send,
            pick_root::<T>,
        )?;
        put(CALL, dst, &out)
    }
    fn broadcast_in_place<T: CommElem>(
        &self,
        buf: &mut DevBuf<T>,
        count: usize,
        root: usize,
    ) -> Result<()> {
        const CALL: &str = "ncclBroadcast";
        let send = if self.rank == root {
            take(CALL, buf, count)?
        } else {
            host(CALL, buf).map(|_| Vec::new())?
        };
        let out = self.run(
            Self::desc::<T>(CALL, count, None, Some(root)),
            send,
            pick_root::<T>,
        )?;
        put(CALL, buf, &out)
    }
    fn all_gather<T: CommElem>(
        &self,
        src: &DevBuf<T>,
        dst: &mut DevBuf<T>,
        count: usize,
    ) -> Result<()> {
        const CALL: &str = "ncclAllGather";
        host_mut(CALL, dst)?;
        let send = take(CALL, src, count)?;
        let out = self.run(Self::desc::<T>(CALL, count, None, None), send, gather::<T>)?;
        put(CALL, dst, &out)
    }
}

#[cfg(test)]
#[path = "comm_tests.rs"]
mod tests;
