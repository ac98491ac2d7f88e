//! nn-cuda's NCCL engine on the host-run CUDA backend: 2 and 3 ranks as threads of this
//! process (`NcclEngine::host_group`), each moving tensors of the `cuda:host` device
//! through the engine's collectives, the functions `ProcessGroup` and
//! `DistributedDataParallel` call on CUDA tensors with feature `nccl`. Results are
//! compared with the same reductions computed by the CPU backend; the calls NCCL would
//! hang on (ranks passing different lengths, a rank that never comes) must be errors.
//! No MPI and no libnccl are needed: this runs in the README's test command.

use nn::{functional as F, Device, Forward, Linear, ModuleExt, Reduction, Result, Tensor};
use nn_cuda::nccl::{NcclEngine, ReduceOp};
use std::sync::Arc;
use std::time::Duration;

/// Runs `f(engine, rank)` on one thread per rank of a new host group of `n`.
fn on_ranks<R: Send>(
    engines: &[Arc<NcclEngine>],
    f: impl Fn(&NcclEngine, usize) -> R + Sync,
) -> Vec<R> {
    std::thread::scope(|s| {
        let hs: Vec<_> = engines
            .iter()
            .enumerate()
            .map(|(r, e)| {
                let f = &f;
                s.spawn(move || f(e, r))
            })
            .collect();
        hs.into_iter()
            .map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
            .collect()
    })
}

/// Rank r's CPU tensor of `shape` (different on every rank, seeded).
fn input(r: usize, shape: &[usize]) -> Tensor {
    nn::rng::manual_seed(1000 + r as u64);
    Tensor::randn(shape)
}

fn close(got: &[f32], want: &[f32], tol: f32, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= tol * (1.0 + w.abs()),
            "{what}: element {i} is {g}, the CPU gives {w}"
        );
    }
}

#[test]
fn all_reduce_sum_and_avg_match_the_cpu_on_2_and_3_ranks() -> Result<()> {
    let shape = [3, 5];
    for world in [2usize, 3] {
        let engines = NcclEngine::host_group(world)?;
        let got = on_ranks(&engines, |e, r| -> Result<_> {
            assert_eq!((e.rank(), e.world_size()), (r, world));
            let x = input(r, &shape).to_device(e.device())?;
            let sum = e.all_reduce_sum(&x)?;
            let avg = e.all_reduce(&x, ReduceOp::Avg)?;
            let ids = Tensor::from_vec(vec![r as i64, 1, 10], &[3])?.to_device(e.device())?;
            let isum = e.all_reduce(&ids, ReduceOp::Sum)?;
            assert_eq!(sum.shape(), &shape);
            assert_eq!(sum.device(), *e.device());
            Ok((
                sum.to_vec::<f32>()?,
                avg.to_vec::<f32>()?,
                isum.to_vec::<i64>()?,
            ))
        });
        // the CPU backend's sum in rank order
        let mut want = input(0, &shape);
        for r in 1..world {
            want = want.add(&input(r, &shape))?;
        }
        let want_avg = want.div_scalar(world as f32)?.to_vec::<f32>()?;
        let want = want.to_vec::<f32>()?;
        let tri = (world * (world - 1) / 2) as i64;
        for (r, g) in got.into_iter().enumerate() {
            let (sum, avg, isum) = g?;
            assert_eq!(sum, want, "sum on rank {r} of {world}");
            close(
                &avg,
                &want_avg,
                1e-6,
                &format!("avg on rank {r} of {world}"),
            );
            assert_eq!(isum, vec![tri, world as i64, 10 * world as i64]);
        }
    }
    Ok(())
}

#[test]
fn broadcast_and_all_gather_match_the_cpu_on_2_and_3_ranks() -> Result<()> {
    for world in [2usize, 3] {
        let engines = NcclEngine::host_group(world)?;
        let root = world - 1;
        let got = on_ranks(&engines, |e, r| -> Result<_> {
            let x = input(r, &[2, 3]).to_device(e.device())?;
            let b = e.broadcast(&x, root)?;
            let g = e.all_gather(&x)?;
            assert_eq!(g.shape(), &[world, 2, 3]);
            Ok((b.to_vec::<f32>()?, g.to_vec::<f32>()?))
        });
        let cpu: Vec<Tensor> = (0..world).map(|r| input(r, &[2, 3])).collect();
        let want_g = Tensor::stack(&cpu, 0)?.to_vec::<f32>()?;
        for (r, g) in got.into_iter().enumerate() {
            let (b, all) = g?;
            assert_eq!(b, cpu[root].to_vec::<f32>()?, "broadcast on rank {r}");
            assert_eq!(all, want_g, "all_gather on rank {r}");
        }
    }
    Ok(())
}

/// A two-layer model, the same on every rank (seeded), on `dev`.
fn model(dev: &Device) -> Result<(Linear, Linear)> {
    nn::rng::manual_seed(7);
    let mut a = Linear::new(4, 6);
    let mut b = Linear::new(6, 2);
    a.to_device(dev)?;
    b.to_device(dev)?;
    Ok((a, b))
}

fn grad(p: &nn::Param) -> Result<Tensor> {
    p.grad()
        .ok_or_else(|| nn::Error::bad_shape("grad", &[], format!("`{}` got no gradient", p.name())))
}

fn loss(m: &(Linear, Linear), x: &Tensor, y: &Tensor) -> Result<Tensor> {
    let h = m.0.forward(x)?.relu()?;
    F::mse_loss(&m.1.forward(&h)?, y, Reduction::Mean)
}

/// Every rank's gradients averaged as `DistributedDataParallel::sync_gradients` does for
/// device parameters: last parameters first, packed into flat buckets (two parameters
/// each here), one `all_reduce_sum` per bucket, times 1 / world size, cut back per
/// parameter. Compared with the CPU gradient of the whole batch, which is the average
/// of the shards' gradients (equal shards, mean loss).
#[test]
fn ddp_bucketed_gradient_average_matches_the_cpu_on_2_and_3_ranks() -> Result<()> {
    let rows = 3;
    for world in [2usize, 3] {
        nn::rng::manual_seed(99);
        let x = Tensor::randn(&[rows * world, 4]);
        let y = Tensor::randn(&[rows * world, 2]);
        let engines = NcclEngine::host_group(world)?;
        let got = on_ranks(&engines, |e, r| -> Result<Vec<Vec<f32>>> {
            let dev = e.device();
            let m = model(dev)?;
            let xs = x.narrow(0, r * rows, rows)?.to_device(dev)?;
            let ys = y.narrow(0, r * rows, rows)?.to_device(dev)?;
            loss(&m, &xs, &ys)?.backward()?;
            let mut params = [&m.0, &m.1]
                .iter()
                .flat_map(|l| l.parameters())
                .collect::<Vec<_>>();
            params.reverse();
            let mut means = vec![Vec::new(); params.len()];
            for (bucket, out) in params.chunks(2).zip(means.chunks_mut(2)) {
                let flat: Vec<Tensor> = bucket
                    .iter()
                    .map(|p| grad(p)?.reshape(&[p.numel()]))
                    .collect::<Result<_>>()?;
                let flat = Tensor::cat(&flat, 0)?;
                assert_eq!(flat.device(), *dev, "the bucket stays on the device");
                let mean = e.all_reduce_sum(&flat)?.mul_scalar(1.0 / world as f32)?;
                let mut at = 0;
                for (p, o) in bucket.iter().zip(out.iter_mut()) {
                    *o = mean.narrow(0, at, p.numel())?.to_vec::<f32>()?;
                    at += p.numel();
                }
            }
            Ok(means)
        });
        let cpu = model(&Device::Cpu)?;
        loss(&cpu, &x, &y)?.backward()?;
        let mut want = [&cpu.0, &cpu.1]
            .iter()
            .flat_map(|l| l.parameters())
            .map(|p| grad(&p)?.to_vec::<f32>())
            .collect::<Result<Vec<_>>>()?;
        want.reverse();
        let mut first: Option<Vec<Vec<f32>>> = None;
        for (r, g) in got.into_iter().enumerate() {
            let g = g?;
            for (i, (gp, wp)) in g.iter().zip(&want).enumerate() {
                close(
                    gp,
                    wp,
                    1e-5,
                    &format!("parameter {i} on rank {r} of {world}"),
                );
            }
            // every rank holds the same bits (the replicas stay identical)
            match &first {
                None => first = Some(g),
                Some(f) => assert_eq!(f, &g, "rank {r} differs from rank 0"),
            }
        }
    }
    Ok(())
}

#[test]
fn ranks_passing_different_lengths_get_an_error_naming_them() -> Result<()> {
    let engines = NcclEngine::host_group(3)?;
    let got = on_ranks(&engines, |e, r| -> Result<String> {
        let n = if r == 1 { 7 } else { 6 };
        let x = Tensor::ones(&[n]).to_device(e.device())?;
        let msg = e.all_reduce_sum(&x).err().map(|e| e.to_string());
        // the group is still usable afterwards
        let ok = e.all_reduce_sum(&Tensor::ones(&[2]).to_device(e.device())?)?;
        assert_eq!(ok.to_vec::<f32>()?, vec![3.0, 3.0]);
        Ok(msg.unwrap_or_default())
    });
    for (r, m) in got.into_iter().enumerate() {
        let m = m?;
        assert!(
            m.contains("rank 1 passed 7 elements, rank 0 passed 6"),
            "rank {r}: {m}"
        );
    }
    Ok(())
}

#[test]
fn a_missing_rank_times_out_instead_of_hanging() -> Result<()> {
    let engines = NcclEngine::host_group_with_timeout(2, Duration::from_millis(200))?;
    let x = Tensor::ones(&[4]).to_device(engines[0].device())?;
    let m = engines[0]
        .broadcast(&x, 0)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        m.contains("ncclBroadcast") && m.contains("rank(s) [1] never joined"),
        "{m}"
    );
    Ok(())
}

#[test]
fn wrong_inputs_are_refused_before_any_rank_waits() -> Result<()> {
    let engines = NcclEngine::host_group_with_timeout(2, Duration::from_millis(100))?;
    let e = &engines[0];
    let cpu = e
        .all_reduce_sum(&Tensor::ones(&[2]))
        .err()
        .map(|e| e.to_string());
    assert!(cpu.is_some_and(|m| m.contains("cuda:host") && m.contains("cpu")));
    let ids = Tensor::from_vec(vec![1i64, 2], &[2])?.to_device(e.device())?;
    let avg = e
        .all_reduce(&ids, ReduceOp::Avg)
        .err()
        .map(|e| e.to_string());
    assert!(avg.is_some_and(|m| m.contains("all_reduce(avg)") && m.contains("I64")));
    let root = e.broadcast(&Tensor::ones(&[2]).to_device(e.device())?, 5);
    let root = root.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(
        root.contains("root rank 5 does not exist in a world of 2"),
        "{root}"
    );
    assert!(NcclEngine::host_group(0).is_err());
    Ok(())
}
