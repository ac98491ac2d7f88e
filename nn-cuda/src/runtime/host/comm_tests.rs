//! The host group's collectives at the runtime seam: NCCL's results (sum, average,
//! broadcast, gather, in place or not) for 2 and 3 ranks, identical on every rank, and
//! the calls NCCL would hang or corrupt memory on made errors.

use super::*;
use crate::error::Result;
use crate::runtime::{Comm, Driver, Runtime};
use std::time::Duration;

fn rt() -> Runtime {
    Runtime::Host(super::super::HostRt::new(false))
}

/// Runs `f(comm, rank)` on one thread per rank of a new group of `n`.
fn ranks<R: Send>(n: usize, timeout: Duration, f: impl Fn(&Comm, usize) -> R + Sync) -> Vec<R> {
    let comms: Vec<Comm> = group(n, timeout).into_iter().map(Comm::Host).collect();
    std::thread::scope(|s| {
        let hs: Vec<_> = comms
            .iter()
            .enumerate()
            .map(|(r, c)| {
                let f = &f;
                s.spawn(move || f(c, r))
            })
            .collect();
        hs.into_iter()
            .map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
            .collect()
    })
}

/// Rank r's input: values no two ranks share, with fractions that round differently
/// in another summation order.
fn input(r: usize, n: usize) -> Vec<f32> {
    (0..n)
        .map(|i| 0.1 * (i as f32 + 1.0) * (r as f32 + 1.0) + 1e-3 * r as f32)
        .collect()
}

/// The sum over ranks, added in rank order (what every rank must get, bit for bit).
fn rank_order_sum(world: usize, n: usize) -> Vec<f32> {
    let mut acc = input(0, n);
    for r in 1..world {
        for (a, b) in acc.iter_mut().zip(input(r, n)) {
            *a += b;
        }
    }
    acc
}

#[test]
fn all_reduce_sums_and_averages_in_rank_order() -> Result<()> {
    for world in [2usize, 3] {
        let n = 5;
        let got = ranks(world, DEFAULT_TIMEOUT, |c, r| -> Result<_> {
            let rt = rt();
            let x = rt.htod(&input(r, n))?;
            let mut sum = rt.alloc::<f32>(n, false)?;
            c.all_reduce(&x, &mut sum, n, RedOp::Sum)?;
            let mut avg = rt.htod(&input(r, n))?;
            c.all_reduce_in_place(&mut avg, n, RedOp::Avg)?;
            // integers: the sum of the ranks, and a truncating average as NCCL's
            let mut ints = rt.htod(&[r as i64, 7, -(r as i64)])?;
            c.all_reduce_in_place(&mut ints, 3, RedOp::Sum)?;
            Ok((
                rt.dtoh(&sum, n)?,
                rt.dtoh(&avg, n)?,
                rt.dtoh(&ints, 3)?,
                rt.dtoh(&x, n)?,
            ))
        });
        let want = rank_order_sum(world, n);
        let want_avg: Vec<f32> = want.iter().map(|s| s / world as f32).collect();
        let tri = (world * (world - 1) / 2) as i64;
        for (r, g) in got.into_iter().enumerate() {
            let (sum, avg, ints, x) = g?;
            assert_eq!(sum, want, "sum on rank {r} of {world}");
            assert_eq!(avg, want_avg, "avg on rank {r} of {world}");
            assert_eq!(
                ints,
                vec![tri, 7 * world as i64, -tri],
                "i64 sum on rank {r}"
            );
            assert_eq!(x, input(r, n), "the send buffer of rank {r} is unchanged");
        }
    }
    Ok(())
}

#[test]
fn broadcast_and_all_gather_move_the_right_rank() -> Result<()> {
    for world in [2usize, 3] {
        let root = world - 1;
        let got = ranks(world, DEFAULT_TIMEOUT, |c, r| -> Result<_> {
            let rt = rt();
            let x = rt.htod(&input(r, 4))?;
            let mut b = rt.alloc::<f32>(4, false)?;
            c.broadcast(&x, &mut b, 4, root)?;
            let mut inplace = rt.htod(&input(r, 4))?;
            c.broadcast_in_place(&mut inplace, 4, 0)?;
            let mut all = rt.alloc::<f32>(4 * world, false)?;
            c.all_gather(&x, &mut all, 4)?;
            Ok((
                rt.dtoh(&b, 4)?,
                rt.dtoh(&inplace, 4)?,
                rt.dtoh(&all, 4 * world)?,
            ))
        });
        let gathered: Vec<f32> = (0..world).flat_map(|r| input(r, 4)).collect();
        for (r, g) in got.into_iter().enumerate() {
            let (b, inplace, all) = g?;
            assert_eq!(b, input(root, 4), "broadcast from {root} on rank {r}");
            assert_eq!(inplace, input(0, 4), "in-place broadcast on rank {r}");
            assert_eq!(all, gathered, "all_gather on rank {r}");
        }
    }
    Ok(())
}

#[test]
fn mismatched_counts_are_an_error_on_every_rank_then_the_group_goes_on() {
    let got = ranks(3, DEFAULT_TIMEOUT, |c, r| {
        let rt = rt();
        let n = if r == 2 { 5 } else { 4 };
        let x = rt.htod(&input(r, n)).map_err(|e| e.to_string())?;
        let mut y = rt.alloc::<f32>(n, false).map_err(|e| e.to_string())?;
        let first = c
            .all_reduce(&x, &mut y, n, RedOp::Sum)
            .err()
            .map(|e| e.to_string());
        // the failed round is over for everyone: the next collective works
        c.all_reduce(&x, &mut y, 4, RedOp::Sum)
            .map_err(|e| e.to_string())?;
        Ok::<_, String>((first, rt.dtoh(&y, 4).map_err(|e| e.to_string())?))
    });
    let want = rank_order_sum(3, 4);
    for (r, g) in got.into_iter().enumerate() {
        let (first, y) = g.unwrap_or_else(|e| panic!("rank {r}: {e}"));
        let msg = first.unwrap_or_default();
        assert!(
            msg.contains("ncclAllReduce")
                && msg.contains("rank 2 passed 5 elements, rank 0 passed 4"),
            "rank {r}: {msg}"
        );
        assert_eq!(y, want, "rank {r} after the failed round");
    }
    // other disagreements: the reduction and the root
    let got = ranks(2, DEFAULT_TIMEOUT, |c, r| {
        let rt = rt();
        let mut x = rt.htod(&[1.0f32, 2.0]).map_err(|e| e.to_string())?;
        let op = if r == 0 { RedOp::Sum } else { RedOp::Avg };
        let a = c
            .all_reduce_in_place(&mut x, 2, op)
            .err()
            .map(|e| e.to_string());
        let b = c
            .broadcast_in_place(&mut x, 2, r)
            .err()
            .map(|e| e.to_string());
        Ok::<_, String>((a.unwrap_or_default(), b.unwrap_or_default()))
    });
    for g in got {
        let (a, b) = g.unwrap_or_else(|e| panic!("{e}"));
        assert!(
            a.contains("rank 1 asked for Some(Avg), rank 0 for Some(Sum)"),
            "{a}"
        );
        assert!(
            b.contains("rank 1 named root Some(1), rank 0 root Some(0)"),
            "{b}"
        );
    }
}

#[test]
fn a_rank_that_never_comes_is_a_timeout_error_not_a_hang() {
    let got = ranks(3, Duration::from_millis(200), |c, r| {
        let rt = rt();
        let mut x = rt.htod(&[1.0f32]).map_err(|e| e.to_string())?;
        if r == 1 {
            return Ok(String::new()); // rank 1 skips the collective
        }
        let first = c
            .all_reduce_in_place(&mut x, 1, RedOp::Sum)
            .err()
            .map(|e| e.to_string());
        let later = c
            .all_reduce_in_place(&mut x, 1, RedOp::Sum)
            .err()
            .map(|e| e.to_string());
        Ok::<_, String>(format!(
            "{}\n{}",
            first.unwrap_or_default(),
            later.unwrap_or_default()
        ))
    });
    for r in [0usize, 2] {
        let msg = got[r].clone().unwrap_or_else(|e| panic!("{e}"));
        assert!(
            msg.contains("never joined") && msg.contains("[1]"),
            "rank {r}: {msg}"
        );
        assert_eq!(msg.matches("unusable").count(), 2, "rank {r}: {msg}");
    }
}

#[test]
fn short_buffers_and_bad_roots_are_refused_before_the_rendezvous() -> Result<()> {
    let comms: Vec<Comm> = group(2, Duration::from_millis(50))
        .into_iter()
        .map(Comm::Host)
        .collect();
    let rt = rt();
    let x = rt.htod(&[1.0f32, 2.0])?;
    let mut y = rt.alloc::<f32>(3, false)?;
    let e = comms[0]
        .all_reduce(&x, &mut y, 3, RedOp::Sum)
        .err()
        .map(|e| e.to_string());
    assert!(e.is_some_and(|m| m.contains("send buffer holds 2 elements, the call moves 3")));
    let e = comms[0]
        .all_gather(&x, &mut y, 2)
        .err()
        .map(|e| e.to_string());
    assert!(e.is_some_and(|m| m.contains("receive buffer holds 3 elements, the call moves 4")));
    let e = comms[1]
        .broadcast(&x, &mut y, 2, 2)
        .err()
        .map(|e| e.to_string());
    assert!(e.is_some_and(|m| m.contains("root rank 2 does not exist in a world of 2")));
    Ok(())
}
