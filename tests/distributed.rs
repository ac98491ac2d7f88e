//! Data-parallel training on 2 MPI ranks (`nn::distributed`, feature `mpi`).
//!
//! Each test launches this same test binary under
//! `mpirun --allow-run-as-root --oversubscribe -np 2` (shared memory on this host only)
//! with `NN_DIST_WORKER=<test name>`; in the ranks the test runs its body instead of
//! launching. Without the feature the tests are compiled as ignored; with it but without
//! `mpirun` on the PATH they print why and pass, unless `NN_MPI_REQUIRE=1`, which makes
//! that a failure (CI sets it).
//!
//! ```text
//! NN_MPI_REQUIRE=1 cargo test --features mpi --test distributed
//! ```

const NO_MPI: &str = "built without the mpi feature (cargo test --features mpi --test distributed)";

#[test]
#[cfg_attr(
    not(feature = "mpi"),
    ignore = "built without the mpi feature (cargo test --features mpi --test distributed)"
)]
fn collectives_on_two_ranks() {
    #[cfg(feature = "mpi")]
    ranks::run("collectives_on_two_ranks", &[], ranks::collectives);
}

#[test]
#[cfg_attr(
    not(feature = "mpi"),
    ignore = "built without the mpi feature (cargo test --features mpi --test distributed)"
)]
fn ddp_matches_one_process_and_ranks_stay_bit_identical() {
    #[cfg(feature = "mpi")]
    ranks::run(
        "ddp_matches_one_process_and_ranks_stay_bit_identical",
        &[],
        ranks::ddp_equivalence,
    );
}

#[test]
#[cfg_attr(
    not(feature = "mpi"),
    ignore = "built without the mpi feature (cargo test --features mpi --test distributed)"
)]
fn ddp_reduces_tied_parameters_once() {
    #[cfg(feature = "mpi")]
    ranks::run("ddp_reduces_tied_parameters_once", &[], ranks::tied);
}

#[test]
#[cfg_attr(
    not(feature = "mpi"),
    ignore = "built without the mpi feature (cargo test --features mpi --test distributed)"
)]
fn ddp_no_sync_accumulates_with_one_all_reduce_per_step() {
    #[cfg(feature = "mpi")]
    ranks::run(
        "ddp_no_sync_accumulates_with_one_all_reduce_per_step",
        &[],
        ranks::no_sync,
    );
}

#[test]
#[cfg_attr(
    not(feature = "mpi"),
    ignore = "built without the mpi feature (cargo test --features mpi --test distributed)"
)]
fn ddp_overlapped_buckets_match_the_blocking_path_bit_for_bit() {
    #[cfg(feature = "mpi")]
    ranks::run(
        "ddp_overlapped_buckets_match_the_blocking_path_bit_for_bit",
        &[],
        ranks::overlap,
    );
}

#[test]
#[cfg_attr(
    not(feature = "mpi"),
    ignore = "built without the mpi feature (cargo test --features mpi --test distributed)"
)]
fn ddp_step_failing_on_one_rank_fails_on_every_rank_and_the_next_step_works() {
    #[cfg(feature = "mpi")]
    ranks::run(
        "ddp_step_failing_on_one_rank_fails_on_every_rank_and_the_next_step_works",
        &[],
        ranks::one_rank_fails,
    );
}

#[test]
#[cfg_attr(
    not(feature = "mpi"),
    ignore = "built without the mpi feature (cargo test --features mpi --test distributed)"
)]
fn ddp_overlapped_buckets_on_a_world_of_one() {
    #[cfg(feature = "mpi")]
    ranks::run_on(
        "ddp_overlapped_buckets_on_a_world_of_one",
        1,
        &[],
        ranks::overlap,
    );
}

#[test]
#[cfg_attr(
    not(feature = "mpi"),
    ignore = "built without the mpi feature (cargo test --features mpi --test distributed)"
)]
fn checkpoint_of_two_ranks_resumes_identically_and_world_size_is_checked() {
    #[cfg(feature = "mpi")]
    ranks::run(
        "checkpoint_of_two_ranks_resumes_identically_and_world_size_is_checked",
        &[],
        ranks::resume,
    );
}

#[test]
#[cfg_attr(
    not(feature = "mpi"),
    ignore = "built without the mpi feature (cargo test --features mpi --test distributed)"
)]
fn a_killed_rank_stops_the_job_in_bounded_time() {
    #[cfg(feature = "mpi")]
    ranks::expect_failure(
        "a_killed_rank_stops_the_job_in_bounded_time",
        "KILL",
        "exited on signal 9",
    );
}

#[test]
#[cfg_attr(
    not(feature = "mpi"),
    ignore = "built without the mpi feature (cargo test --features mpi --test distributed)"
)]
fn a_hung_rank_trips_the_collective_timeout() {
    #[cfg(feature = "mpi")]
    ranks::expect_failure(
        "a_hung_rank_trips_the_collective_timeout",
        "STOP",
        "did not complete within 3.0 s (a peer rank died or hangs)",
    );
}

#[test]
#[cfg_attr(
    not(feature = "mpi"),
    ignore = "built without the mpi feature (cargo test --features mpi --test distributed)"
)]
fn train_distributed_resumes_exactly_on_two_ranks() {
    #[cfg(feature = "mpi")]
    ranks::run(
        "train_distributed_resumes_exactly_on_two_ranks",
        &[],
        ranks::train_job,
    );
}

#[test]
#[cfg_attr(
    not(feature = "nccl"),
    ignore = "built without the nccl feature (cargo test --features nccl --test distributed)"
)]
#[cfg_attr(
    all(feature = "nccl", not(nn_gpu_found)),
    ignore = "no GPU on the machine that built this (NN_CUDA_REQUIRE=1 or --include-ignored runs it)"
)]
fn nccl_collectives_on_a_world_of_one() {
    #[cfg(feature = "nccl")]
    ranks::run_on(
        "nccl_collectives_on_a_world_of_one",
        1,
        &[],
        ranks::nccl_collectives,
    );
}

#[test]
#[cfg_attr(
    not(feature = "nccl"),
    ignore = "built without the nccl feature (cargo test --features nccl --test distributed)"
)]
#[cfg_attr(
    all(feature = "nccl", not(nn_gpu_found)),
    ignore = "no GPU on the machine that built this (NN_CUDA_REQUIRE=1 or --include-ignored runs it)"
)]
fn nccl_collectives_on_two_ranks() {
    #[cfg(feature = "nccl")]
    ranks::run_on(
        "nccl_collectives_on_two_ranks",
        2,
        &[],
        ranks::nccl_collectives,
    );
}

// the training example's modules (for `train --distributed`), as tests/train.rs does
#[cfg(feature = "mpi")]
#[allow(dead_code)]
#[path = "../examples/train/digits.rs"]
mod digits;
#[cfg(feature = "mpi")]
#[allow(dead_code)]
#[path = "../examples/train/distributed.rs"]
mod distributed;
#[cfg(feature = "mpi")]
#[allow(dead_code)]
#[path = "../examples/train/history.rs"]
mod history;
#[cfg(feature = "mpi")]
#[allow(dead_code)]
#[path = "../examples/train/job.rs"]
mod job;
#[cfg(feature = "mpi")]
#[allow(dead_code)]
#[path = "../examples/train/model.rs"]
mod model;
#[cfg(feature = "mpi")]
#[allow(dead_code)]
#[path = "../examples/train/plot.rs"]
mod plot;
#[cfg(feature = "mpi")]
#[allow(dead_code)]
#[path = "../examples/train/recipe.rs"]
mod recipe;

#[test]
fn the_skip_reason_names_the_feature() {
    assert!(NO_MPI.contains("--features mpi"));
}

#[cfg(feature = "mpi")]
mod ranks {
    use nn::distributed::{
        check_world_size, resume_checkpoint, save_checkpoint, Backend, DistributedDataParallel,
        DistributedProblem, DistributedSampler, ProcessGroup, ReduceOp, WORLD_SIZE_KEY,
    };
    use nn::io::TrainingCheckpoint;
    use nn::optim::{Adam, Optimizer};
    use nn::{Error, Forward, Linear, Module, ModuleExt, ReLU, Result, Sequential, Tensor};
    use std::path::PathBuf;
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};

    const WORLD: usize = 2;
    /// A whole mpirun job may take this long before the launcher kills it.
    const JOB_LIMIT: Duration = Duration::from_secs(120);

    fn mpirun_available() -> bool {
        Command::new("mpirun")
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    struct Job {
        ok: bool,
        code: Option<i32>,
        output: String,
        elapsed: Duration,
    }

    /// Runs this test binary's `name` under mpirun on `WORLD` ranks; `None` (after saying
    /// why) when mpirun is missing and `NN_MPI_REQUIRE` is not 1.
    fn launch(name: &str, env: &[(&str, &str)]) -> Option<Job> {
        launch_np(name, WORLD, env)
    }

    /// [`launch`] on `np` ranks.
    fn launch_np(name: &str, np: usize, env: &[(&str, &str)]) -> Option<Job> {
        if !mpirun_available() {
            let msg = format!("{name}: skipped: no `mpirun` on the PATH (apt-get install openmpi-bin libopenmpi-dev)");
            assert!(
                std::env::var("NN_MPI_REQUIRE").as_deref() != Ok("1"),
                "{msg}, and NN_MPI_REQUIRE=1"
            );
            eprintln!("{msg}");
            return None;
        }
        let exe = std::env::current_exe().expect("the test binary's path");
        let dir = std::env::temp_dir().join(format!("nn-dist-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a scratch directory");
        let mut cmd = Command::new("mpirun");
        cmd.args([
            "--allow-run-as-root",
            "--oversubscribe",
            "-np",
            &np.to_string(),
        ])
        // shared memory on this host only; no single-copy (ptrace) in containers
        .args([
            "--mca",
            "btl",
            "self,vader",
            "--mca",
            "btl_vader_single_copy_mechanism",
            "none",
        ])
        .args(["-x", &format!("NN_DIST_WORKER={name}")])
        .args(["-x", &format!("NN_DIST_DIR={}", dir.display())]);
        let mut has_timeout = false;
        for (k, v) in env {
            has_timeout |= *k == "NN_DIST_TIMEOUT_S";
            cmd.args(["-x", &format!("{k}={v}")]);
        }
        if !has_timeout {
            // a hang in a test becomes a failure long before JOB_LIMIT
            cmd.args(["-x", "NN_DIST_TIMEOUT_S=60"]);
        }
        cmd.arg(&exe)
            .args(["--exact", name, "--nocapture", "--test-threads=1"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let start = Instant::now();
        let mut child = cmd.spawn().expect("mpirun starts");
        let (mut out, mut err) = (child.stdout.take(), child.stderr.take());
        let readers = [
            std::thread::spawn(move || read_all(out.as_mut())),
            std::thread::spawn(move || read_all(err.as_mut())),
        ];
        let status = loop {
            if let Ok(Some(s)) = child.try_wait() {
                break Some(s);
            }
            if start.elapsed() > JOB_LIMIT {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let output: String = readers
            .into_iter()
            .map(|r| r.join().unwrap_or_default())
            .collect();
        let _ = std::fs::remove_dir_all(&dir);
        let elapsed = start.elapsed();
        assert!(
            status.is_some(),
            "{name}: the mpirun job was still running after {JOB_LIMIT:?} (a hang); output:\n{output}"
        );
        let status = status.expect("checked");
        Some(Job {
            ok: status.success(),
            code: status.code(),
            output,
            elapsed,
        })
    }

    fn read_all(r: Option<&mut impl std::io::Read>) -> String {
        let mut s = String::new();
        if let Some(r) = r {
            let _ = r.read_to_string(&mut s);
        }
        s
    }

    fn is_worker(name: &str) -> bool {
        std::env::var("NN_DIST_WORKER").as_deref() == Ok(name)
    }

    /// In a rank: the body; otherwise: the 2-rank job, which must succeed.
    pub fn run(name: &str, env: &[(&str, &str)], body: fn(&ProcessGroup) -> Result<()>) {
        run_on(name, WORLD, env, body)
    }

    /// [`run`] on `np` ranks.
    pub fn run_on(
        name: &str,
        np: usize,
        env: &[(&str, &str)],
        body: fn(&ProcessGroup) -> Result<()>,
    ) {
        if is_worker(name) {
            let group = ProcessGroup::init().expect("MPI initializes");
            if let Err(e) = body(&group) {
                panic!("rank {}: {e}", group.rank());
            }
            return;
        }
        if let Some(job) = launch_np(name, np, env) {
            assert!(
                job.ok,
                "{name}: the {np}-rank job failed ({:?}):\n{}",
                job.code, job.output
            );
            eprintln!(
                "{name}: {np} rank(s) passed in {:.1} s",
                job.elapsed.as_secs_f64()
            );
        }
    }

    /// In a rank: training in which rank 1 kills (`KILL`) or stops (`STOP`) itself at
    /// the third step; otherwise: the job must fail within a bounded time, saying `want`.
    pub fn expect_failure(name: &str, signal: &str, want: &str) {
        if is_worker(name) {
            let group = ProcessGroup::init().expect("MPI initializes");
            if let Err(e) = doomed(&group, signal) {
                panic!("rank {}: {e}", group.rank());
            }
            return;
        }
        let Some(job) = launch(name, &[("NN_DIST_TIMEOUT_S", "3")]) else {
            return;
        };
        assert!(
            !job.ok,
            "{name}: the job succeeded although a rank was gone:\n{}",
            job.output
        );
        assert!(
            job.elapsed < Duration::from_secs(60),
            "{name}: took {:?}",
            job.elapsed
        );
        assert!(
            job.output.contains(want),
            "{name}: no `{want}` in:\n{}",
            job.output
        );
        eprintln!(
            "{name}: the job failed after {:.1} s as expected (status {:?})",
            job.elapsed.as_secs_f64(),
            job.code
        );
    }

    fn doomed(group: &ProcessGroup, signal: &str) -> Result<()> {
        let (ddp, x, y) = small_job(group)?;
        let mut opt = Adam::with_lr(ddp.parameters(), 1e-2)?;
        for step in 0..1000 {
            if step == 2 && group.rank() == 1 {
                let pid = std::process::id().to_string();
                // this process stops here: killed, or stopped until mpirun kills it
                let _ = Command::new("kill")
                    .args([&format!("-{signal}"), &pid])
                    .status();
                std::thread::sleep(Duration::from_secs(120));
            }
            let loss = ddp.forward(&x)?.cross_entropy(&y)?;
            opt.zero_grad();
            ddp.backward(&loss)?;
            opt.step()?;
        }
        Err(Error::custom(format!(
            "rank {} trained 1000 steps although its peer was gone",
            group.rank()
        )))
    }

    type Mlp = Sequential<(Linear, ReLU, Linear)>;

    fn mlp() -> Mlp {
        Sequential::new((Linear::new(16, 32), ReLU, Linear::new(32, 10)))
    }

    fn small_job(group: &ProcessGroup) -> Result<(DistributedDataParallel<Mlp>, Tensor, Tensor)> {
        nn::manual_seed(1);
        let x = Tensor::randn(&[8, 16]);
        let y = Tensor::randint(&[8], 0, 10)?;
        Ok((DistributedDataParallel::new(mlp(), group)?, x, y))
    }

    fn flat_weights(m: &impl Module) -> Result<Vec<f32>> {
        let mut out = Vec::new();
        for (_, t) in m.state_dict()?.iter() {
            out.extend(t.to_vec::<f32>()?);
        }
        Ok(out)
    }

    /// Every rank's weights, bit for bit, are rank 0's.
    fn assert_ranks_identical(group: &ProcessGroup, m: &impl Module, when: &str) -> Result<()> {
        let mine = flat_weights(m)?;
        let all = group.all_gather(&Tensor::from_vec(mine.clone(), &[mine.len()])?)?;
        let all = all.to_vec::<f32>()?;
        for (r, w) in all.chunks(mine.len()).enumerate() {
            let same = w.iter().zip(&mine).all(|(a, b)| a.to_bits() == b.to_bits());
            assert!(
                same,
                "{when}: rank {r}'s weights differ from rank {}'s",
                group.rank()
            );
        }
        Ok(())
    }

    fn max_diff(a: &[f32], b: &[f32]) -> f32 {
        a.iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f32::max)
    }

    pub fn collectives(group: &ProcessGroup) -> Result<()> {
        assert_eq!(group.world_size(), WORLD);
        assert_eq!(group.backend(), Backend::Mpi);
        assert_eq!(group.backend_for(&nn::Device::Cpu), Backend::Mpi);
        let r = group.rank() as f32;
        let t = Tensor::from_vec(vec![r + 1.0, 10.0 * r, -r], &[3])?;
        let sum = group.all_reduce(&t, ReduceOp::Sum)?;
        assert_eq!(sum.to_vec::<f32>()?, vec![3.0, 10.0, -1.0]);
        assert_eq!(sum.shape(), &[3]);
        let mean = group.all_reduce(&t.reshape(&[3, 1])?, ReduceOp::Mean)?;
        assert_eq!(
            (mean.shape(), mean.to_vec::<f32>()?),
            (&[3, 1][..], vec![1.5, 5.0, -0.5])
        );
        let ints = Tensor::from_vec(vec![group.rank() as i64 + 40], &[1])?;
        assert_eq!(
            group.all_reduce(&ints, ReduceOp::Sum)?.to_vec::<i64>()?,
            vec![81]
        );
        assert!(
            group.all_reduce(&ints, ReduceOp::Mean).is_err(),
            "mean of ints"
        );

        let b = group.broadcast(&Tensor::full(&[2, 2], r + 5.0), 1)?;
        assert_eq!(b.to_vec::<f32>()?, vec![6.0; 4]);
        let g = group.all_gather(&Tensor::full(&[2], r))?;
        assert_eq!(
            (g.shape(), g.to_vec::<f32>()?),
            (&[2, 2][..], vec![0.0, 0.0, 1.0, 1.0])
        );
        let mut bytes = if group.is_root() {
            b"nccl id".to_vec()
        } else {
            Vec::new()
        };
        group.broadcast_bytes(&mut bytes, 0)?;
        assert_eq!(bytes, b"nccl id");
        group.barrier()?;

        // ranks that disagree all get the same clear error, and nobody hangs
        let odd = Tensor::zeros(&[2 + group.rank()]);
        match group.all_reduce(&odd, ReduceOp::Sum) {
            Err(Error::Distributed {
                op: "all_reduce",
                problem: DistributedProblem::RanksDisagree { .. },
            }) => {}
            other => panic!("disagreeing shapes: {other:?}"),
        }
        let msg = group
            .broadcast(&odd, 0)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(msg.contains("every rank must pass the same shape"), "{msg}");
        let msg = group
            .broadcast(&t, 2)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            msg.contains("root rank 2 does not exist in a world of 2"),
            "{msg}"
        );
        // and the group still works afterwards
        assert_eq!(
            group.all_reduce(&t, ReduceOp::Sum)?.to_vec::<f32>()?[0],
            3.0
        );
        Ok(())
    }

    pub fn ddp_equivalence(group: &ProcessGroup) -> Result<()> {
        const N: usize = 96;
        const LOCAL_BATCH: usize = 8;
        nn::manual_seed(7);
        let x = Tensor::randn(&[N, 16]);
        let y = Tensor::randint(&[N], 0, 10)?;
        // every rank draws other initial weights: the wrapper must broadcast rank 0's
        nn::manual_seed(100 + group.rank() as u64);
        let local = mlp();
        nn::manual_seed(100);
        let reference = mlp();
        let differ_before = flat_weights(&local)? != flat_weights(&reference)?;
        assert_eq!(differ_before, group.rank() != 0);
        // small buckets: three gradient messages per step instead of one
        let ddp = DistributedDataParallel::with_bucket_bytes(local, group, 340 * 4)?;
        assert_eq!(ddp.bucket_count(), 3);
        assert_eq!(flat_weights(&ddp)?, flat_weights(&reference)?, "broadcast");
        let names: Vec<String> = ddp.state_dict()?.keys().map(String::from).collect();
        assert_eq!(
            names,
            ["0.weight", "0.bias", "2.weight", "2.bias"],
            "no `module.` prefix"
        );
        assert_eq!(ddp.module().num_parameters(), reference.num_parameters());

        let mut opt = Adam::with_lr(ddp.parameters(), 1e-2)?;
        let mut ref_opt = Adam::with_lr(reference.parameters(), 1e-2)?;
        let samplers = (0..WORLD)
            .map(|r| DistributedSampler::new(N, WORLD, r, Some(3)))
            .collect::<Result<Vec<_>>>()?;
        let mut steps = 0;
        for epoch in 0..2 {
            let shards: Vec<Vec<usize>> = samplers.iter().map(|s| s.indices(epoch)).collect();
            for k in 0..shards[0].len() / LOCAL_BATCH {
                let part = |r: usize| shards[r][k * LOCAL_BATCH..(k + 1) * LOCAL_BATCH].to_vec();
                let idx = |v: Vec<usize>| {
                    Tensor::from_vec(v.iter().map(|&i| i as i64).collect(), &[v.len()])
                };
                // this rank: its part of the global batch
                let mine = idx(part(group.rank()))?;
                let before = group.stats().all_reduces;
                let loss = ddp
                    .forward(&x.index_select(0, &mine)?)?
                    .cross_entropy(&y.index_select(0, &mine)?)?;
                opt.zero_grad();
                ddp.backward(&loss)?;
                opt.step()?;
                // ranks on one host: one sum through shared memory per step
                let per_step = if ddp.shared_memory() { 1 } else { 3 };
                assert_eq!(
                    group.stats().all_reduces - before,
                    per_step,
                    "one all-reduce per bucket"
                );
                // one process: the whole global batch
                let all = idx((0..WORLD).flat_map(part).collect())?;
                let loss = reference
                    .forward(&x.index_select(0, &all)?)?
                    .cross_entropy(&y.index_select(0, &all)?)?;
                ref_opt.zero_grad();
                loss.backward()?;
                ref_opt.step()?;
                steps += 1;

                let d = max_diff(&flat_weights(&ddp)?, &flat_weights(&reference)?);
                assert!(d <= 1e-5, "step {steps}: DDP and one process differ by {d}");
                assert_ranks_identical(group, &ddp, &format!("step {steps}"))?;
            }
        }
        assert_eq!(steps, 12);
        let moved = max_diff(&flat_weights(&ddp)?, &flat_weights(&mlp_at(100))?);
        assert!(moved > 1e-2, "training moved the weights ({moved})");
        Ok(())
    }

    fn mlp_at(seed: u64) -> Mlp {
        nn::manual_seed(seed);
        mlp()
    }

    /// `b` is `a` (tied): one parameter set used twice.
    #[derive(Module)]
    struct Tied {
        a: Linear,
        b: Linear,
    }

    impl Forward for Tied {
        fn forward(&self, x: &Tensor) -> Result<Tensor> {
            self.b.forward(&self.a.forward(x)?.relu()?)
        }
    }

    pub fn tied(group: &ProcessGroup) -> Result<()> {
        nn::manual_seed(5);
        let a = Linear::new(4, 4);
        let ddp = DistributedDataParallel::new(Tied { b: a.clone(), a }, group)?;
        assert_eq!(ddp.parameters().len(), 2, "weight and bias, once each");
        nn::manual_seed(50 + group.rank() as u64);
        let x = Tensor::randn(&[3, 4]);
        let loss = ddp.forward(&x)?.square()?.mean()?;
        loss.backward()?;
        let local: Vec<Tensor> = ddp
            .parameters()
            .iter()
            .map(|p| p.grad().ok_or_else(|| Error::custom("no grad")))
            .collect::<Result<_>>()?;
        let before = group.stats();
        ddp.sync_gradients()?;
        let after = group.stats();
        assert_eq!(after.all_reduces - before.all_reduces, 1, "one bucket");
        assert_eq!(
            after.bytes - before.bytes,
            (16 + 4) * 4,
            "each tied parameter once"
        );
        for (p, g) in ddp.parameters().iter().zip(&local) {
            let want = group.all_reduce(g, ReduceOp::Mean)?.to_vec::<f32>()?;
            let got = p
                .grad()
                .map(|g| g.to_vec::<f32>())
                .transpose()?
                .unwrap_or_default();
            assert!(
                max_diff(&got, &want) <= 1e-7,
                "{}: {got:?} vs {want:?}",
                p.name()
            );
        }
        Ok(())
    }

    /// Two linear layers and one that `forward` never uses (its gradient is a zero).
    #[derive(Module, Clone)]
    struct Branchy {
        a: Linear,
        skipped: Linear,
        b: Linear,
    }

    impl Forward for Branchy {
        fn forward(&self, x: &Tensor) -> Result<Tensor> {
            self.b.forward(&self.a.forward(x)?.relu()?)
        }
    }

    fn branchy() -> Branchy {
        Branchy {
            a: Linear::new(16, 32),
            skipped: Linear::new(16, 8),
            b: Linear::new(32, 10),
        }
    }

    fn grads_bits(m: &impl Module) -> Vec<Option<Vec<u32>>> {
        m.parameters()
            .iter()
            .map(|p| {
                p.grad()
                    .map(|g| {
                        g.to_vec::<f32>()
                            .map(|v| v.iter().map(|x| x.to_bits()).collect())
                    })
                    .transpose()
                    .unwrap_or_default()
            })
            .collect()
    }

    /// Each overlap mode (MPI messages, then the sums through shared memory) against
    /// `Overlap::Off` on the same replica and data: gradients after every backward and
    /// weights after every step equal bit for bit, one all-reduce per bucket (one per
    /// step through shared memory), the unused layer's gradient a zero, a no_sync
    /// micro-batch included; the hooks are gone with the wrapper.
    pub fn overlap(group: &ProcessGroup) -> Result<()> {
        use nn::distributed::{DdpOptions, Overlap};
        let options = |overlap, shared_memory| DdpOptions {
            bucket_bytes: 200 * 4,
            first_bucket_bytes: 100 * 4,
            overlap,
            shared_memory,
        };
        for (mode, shared) in [
            (Overlap::Nonblocking, false),
            (Overlap::Thread, false),
            (Overlap::Nonblocking, true),
            (Overlap::Thread, true),
        ] {
            nn::manual_seed(11);
            let base = branchy();
            let fast = DistributedDataParallel::with_options(
                base.deep_copy(),
                group,
                options(mode, shared),
            )?;
            let slow =
                DistributedDataParallel::with_options(base, group, options(Overlap::Off, shared))?;
            assert_eq!((fast.overlap(), slow.overlap()), (mode, Overlap::Off));
            // ranks on one host (every test job): shared memory whenever asked for
            assert_eq!(fast.shared_memory(), shared && group.world_size() > 1);
            assert!(!slow.shared_memory(), "Overlap::Off sends messages");
            let messages = !fast.shared_memory();
            // b.bias | b.weight (320) | skipped.* + a.bias | a.weight (512)
            assert_eq!(fast.bucket_count(), slow.bucket_count());
            assert!(fast.bucket_count() >= 4, "{}", fast.bucket_count());
            let mut opt_f = Adam::with_lr(fast.parameters(), 1e-2)?;
            let mut opt_s = Adam::with_lr(slow.parameters(), 1e-2)?;
            nn::manual_seed(70 + group.rank() as u64);
            for step in 0..4 {
                let x = Tensor::randn(&[6, 16]);
                let y = Tensor::randint(&[6], 0, 10)?;
                opt_f.zero_grad();
                opt_s.zero_grad();
                if step == 2 {
                    // a micro-batch without communication first
                    let _f = fast.no_sync();
                    let _s = slow.no_sync();
                    fast.backward(&fast.forward(&x)?.cross_entropy(&y)?)?;
                    slow.backward(&slow.forward(&x)?.cross_entropy(&y)?)?;
                }
                let before = group.stats().all_reduces;
                // when backward reaches the first layer, the last layer's buckets
                // (b.bias, b.weight) are on their way already
                let seen = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
                let (g, at) = (group.clone(), seen.clone());
                let probe = fast
                    .module()
                    .a
                    .weight
                    .register_post_accumulate_grad_hook(move |_| {
                        at.store(g.stats().all_reduces, std::sync::atomic::Ordering::Relaxed);
                        Ok(())
                    });
                fast.backward(&fast.forward(&x)?.cross_entropy(&y)?)?;
                probe.remove();
                if mode == Overlap::Nonblocking || !messages {
                    // (the thread counts its all-reduces when it gets to them; shared
                    // memory sums every bucket at the end of backward)
                    assert_eq!(
                        seen.load(std::sync::atomic::Ordering::Relaxed) - before,
                        if messages { 2 } else { 0 },
                        "{mode:?} shared {shared}: buckets started during backward"
                    );
                }
                assert_eq!(
                    group.stats().all_reduces - before,
                    if messages { fast.bucket_count() as u64 } else { 1 },
                    "{mode:?} shared {shared}: one all-reduce per bucket, or one sum in shared memory"
                );
                slow.backward(&slow.forward(&x)?.cross_entropy(&y)?)?;
                assert_eq!(
                    grads_bits(&fast),
                    grads_bits(&slow),
                    "{mode:?} shared {shared} step {step}"
                );
                let zero = fast.module().skipped.weight.grad();
                assert_eq!(
                    zero.map(|g| g.to_vec::<f32>()).transpose()?,
                    Some(vec![0.0; 16 * 8]),
                    "the unused layer's gradient"
                );
                opt_f.step()?;
                opt_s.step()?;
                assert_eq!(
                    flat_weights(&fast)?,
                    flat_weights(&slow)?,
                    "{mode:?} shared {shared}"
                );
            }
            assert_ranks_identical(group, &fast, &format!("{mode:?} shared {shared}"))?;
            // a plain backward (not through the wrapper) starts no all-reduce
            let before = group.stats().all_reduces;
            let x = Tensor::randn(&[2, 16]);
            fast.forward(&x)?.sum()?.backward()?;
            assert_eq!(
                group.stats().all_reduces,
                before,
                "{mode:?} shared {shared}: hooks unarmed"
            );
            // the hooks go with the wrapper (no all-reduce, no cycle keeping it alive)
            let inner = fast.into_inner();
            inner.forward(&x)?.sum()?.backward()?;
            assert_eq!(group.stats().all_reduces, before);
        }
        Ok(())
    }

    /// Gradients summed through shared memory (the default on one host): rank 1's
    /// backward fails at the second step (a hook's error); rank 1 gets its own error,
    /// rank 0 a `PeerFailed` naming rank 1, neither takes half-summed gradients, and the
    /// steps after it train as if the failed one never happened (replicas identical).
    pub fn one_rank_fails(group: &ProcessGroup) -> Result<()> {
        nn::manual_seed(12);
        let ddp = DistributedDataParallel::new(branchy(), group)?;
        assert!(ddp.shared_memory(), "ranks on one host");
        let mut opt = Adam::with_lr(ddp.parameters(), 1e-2)?;
        nn::manual_seed(80 + group.rank() as u64);
        for step in 0..4 {
            let x = Tensor::randn(&[6, 16]);
            let y = Tensor::randint(&[6], 0, 10)?;
            opt.zero_grad();
            let trap = (step == 1 && group.rank() == 1).then(|| {
                ddp.module()
                    .a
                    .weight
                    .register_post_accumulate_grad_hook(|_| Err(nn::Error::custom("trap")))
            });
            let got = ddp.backward(&ddp.forward(&x)?.cross_entropy(&y)?);
            if let Some(h) = trap {
                h.remove();
            }
            if step != 1 {
                got?;
                opt.step()?;
                continue;
            }
            let e = match got {
                Ok(()) => panic!("rank {}: the failed step succeeded", group.rank()),
                Err(e) => e.to_string(),
            };
            let want = match group.rank() {
                1 => "trap".to_string(),
                r => format!("rank {r}: the step failed on rank 1"),
            };
            assert!(e.contains(&want), "rank {}: {e}", group.rank());
        }
        assert_ranks_identical(group, &ddp, "after a failed step")
    }

    /// Three micro-batches per rank, two inside `no_sync`: no message until the last
    /// backward, then one all-reduce, and the gradients are the rank mean of each
    /// rank's summed micro-batch gradients (PyTorch's accumulation under DDP).
    pub fn no_sync(group: &ProcessGroup) -> Result<()> {
        nn::manual_seed(6);
        let ddp = DistributedDataParallel::new(Linear::new(4, 3), group)?;
        let reference = ddp.module().deep_copy();
        nn::manual_seed(60 + group.rank() as u64);
        let xs: Vec<Tensor> = (0..3).map(|_| Tensor::randn(&[5, 4])).collect();
        let loss = |m: &dyn Fn(&Tensor) -> Result<Tensor>, x: &Tensor| m(x)?.square()?.mean();
        let before = group.stats();
        {
            let _guard = ddp.no_sync();
            assert!(!ddp.require_backward_grad_sync());
            for x in &xs[..2] {
                ddp.backward(&loss(&|x| ddp.forward(x), x)?)?;
            }
        }
        assert!(ddp.require_backward_grad_sync());
        assert_eq!(
            group.stats().all_reduces,
            before.all_reduces,
            "no message in no_sync"
        );
        ddp.backward(&loss(&|x| ddp.forward(x), &xs[2])?)?;
        assert_eq!(
            group.stats().all_reduces - before.all_reduces,
            1,
            "one all-reduce"
        );
        for x in &xs {
            loss(&|x| reference.forward(x), x)?.backward()?;
        }
        for (p, r) in ddp.parameters().iter().zip(reference.parameters()) {
            let local = r.grad().ok_or_else(|| Error::custom("no grad"))?;
            let want = group.all_reduce(&local, ReduceOp::Mean)?.to_vec::<f32>()?;
            let got = p
                .grad()
                .map(|g| g.to_vec::<f32>())
                .transpose()?
                .unwrap_or_default();
            assert!(
                max_diff(&got, &want) <= 1e-6,
                "{}: {got:?} vs {want:?}",
                p.name()
            );
        }
        Ok(())
    }

    /// `train --distributed`: 3 epochs straight, and 1 epoch then `--resume` to 3, end
    /// with bit-identical weights; the test accuracy is the single-process job's class.
    pub fn train_job(group: &ProcessGroup) -> Result<()> {
        use crate::job::Config;
        let job = |cfg: &Config| {
            crate::distributed::run_in(group, cfg, &mut ()).map_err(Error::from_source)
        };
        let cfg = |epochs: usize, resume: bool, dir: &str| Config {
            epochs,
            resume,
            out_dir: scratch(dir),
            ..Config::default()
        };
        let straight = job(&cfg(3, false, "a"))?;
        job(&cfg(1, false, "b"))?;
        let resumed = job(&cfg(3, true, "b"))?;
        assert_eq!(resumed.start_epoch, 1);
        assert_eq!(
            straight.history,
            resumed
                .history
                .iter()
                .map(|s| crate::job::EpochStats {
                    time: s.time,
                    ..s.clone()
                })
                .collect::<Vec<_>>()
                .iter()
                .zip(&straight.history)
                .map(|(r, s)| crate::job::EpochStats {
                    time: s.time,
                    ..r.clone()
                })
                .collect::<Vec<_>>()
        );
        for ((n, a), (m, b)) in straight.weights.iter().zip(resumed.weights.iter()) {
            assert_eq!(n, m);
            let same = a
                .to_vec::<f32>()?
                .iter()
                .zip(b.to_vec::<f32>()?)
                .all(|(x, y)| x.to_bits() == y.to_bits());
            assert!(same, "{n} differs after the resume");
        }
        assert!(
            straight.test_accuracy.fraction() > 0.8,
            "{}",
            straight.test_accuracy
        );
        assert_ranks_identical(
            group,
            &{
                let m = crate::model::Mlp::new();
                m.load_state_dict(&resumed.weights, &nn::io::LoadOptions::strict())?;
                m
            },
            "train --distributed",
        )?;
        // a global batch the world cannot split is a clear error on every rank
        let err = job(&Config {
            batch_size: 63,
            ..cfg(1, false, "c")
        })
        .err()
        .map(|e| e.to_string());
        assert!(
            err.as_deref()
                .is_some_and(|e| e.contains("not a multiple of the world size 2")),
            "{err:?}"
        );
        Ok(())
    }

    fn scratch(file: &str) -> PathBuf {
        PathBuf::from(std::env::var("NN_DIST_DIR").unwrap_or_else(|_| ".".into())).join(file)
    }

    /// `epochs` epochs of the sampler's shard, batch 8 per rank, from epoch `from`.
    fn train(
        ddp: &DistributedDataParallel<Mlp>,
        opt: &mut Adam,
        group: &ProcessGroup,
        from: u64,
        to: u64,
        data: &(Tensor, Tensor),
    ) -> Result<()> {
        let sampler = DistributedSampler::new(data.0.shape()[0], WORLD, group.rank(), Some(9))?;
        for epoch in from..to {
            for part in sampler.indices(epoch).chunks(8) {
                let idx =
                    Tensor::from_vec(part.iter().map(|&i| i as i64).collect(), &[part.len()])?;
                let loss = ddp
                    .forward(&data.0.index_select(0, &idx)?)?
                    .cross_entropy(&data.1.index_select(0, &idx)?)?;
                opt.zero_grad();
                ddp.backward(&loss)?;
                opt.step()?;
            }
        }
        Ok(())
    }

    pub fn resume(group: &ProcessGroup) -> Result<()> {
        nn::manual_seed(11);
        let data = (Tensor::randn(&[60, 16]), Tensor::randint(&[60], 0, 10)?);
        let path = scratch("checkpoint.nn");

        nn::manual_seed(1);
        let ddp = DistributedDataParallel::new(mlp(), group)?;
        let mut opt = Adam::with_lr(ddp.parameters(), 1e-2)?;
        train(&ddp, &mut opt, group, 0, 1, &data)?;
        save_checkpoint(group, TrainingCheckpoint::capture(1, &ddp, &opt)?, &path)?;
        train(&ddp, &mut opt, group, 1, 3, &data)?;
        let straight = flat_weights(&ddp)?;

        // a fresh replica of other initial weights, resumed from the file on every rank
        nn::manual_seed(2 + group.rank() as u64);
        let again = DistributedDataParallel::new(mlp(), group)?;
        let mut opt2 = Adam::with_lr(again.parameters(), 1e-2)?;
        let ck = resume_checkpoint(group, &path, &again, &mut opt2)?;
        assert_eq!(ck.epoch, 1);
        train(&again, &mut opt2, group, ck.epoch, 3, &data)?;
        let resumed = flat_weights(&again)?;
        let same = straight
            .iter()
            .zip(&resumed)
            .all(|(a, b)| a.to_bits() == b.to_bits());
        assert!(same, "the resumed run ends with other weights");
        assert_ranks_identical(group, &again, "after the resumed run")?;

        // a checkpoint of another world size, and one of no world size at all
        let other = scratch("other.nn");
        let plain = scratch("plain.nn");
        if group.is_root() {
            TrainingCheckpoint::capture(1, &ddp, &opt)?
                .with_meta(WORLD_SIZE_KEY, 3)
                .save(&other)?;
            TrainingCheckpoint::capture(1, &ddp, &opt)?.save(&plain)?;
        }
        group.barrier()?;
        let err = resume_checkpoint(group, &other, &again, &mut opt2)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            err.contains("written by a run of 3 ranks, resumed with 2")
                && err.contains("mpirun -np 3"),
            "{err}"
        );
        let ck = TrainingCheckpoint::load(&plain)?;
        let err = check_world_size(group, &ck, &plain)
            .err()
            .map(|e| e.to_string());
        assert!(
            err.as_deref().is_some_and(|e| e.contains(WORLD_SIZE_KEY)),
            "{err:?}"
        );
        group.barrier()
    }

    /// NCCL's collectives on CUDA tensors, through the group's API (one GPU per rank;
    /// ranks that would share a GPU must all get NCCL's error, none may hang).
    #[cfg(feature = "nccl")]
    pub fn nccl_collectives(group: &ProcessGroup) -> Result<()> {
        use nn::cuda::nccl::NcclEngine;
        let gpus = nn::cuda::device_count();
        let gpu = nn::cuda::device(group.rank() % gpus.max(1))?;
        let engine = NcclEngine::install(group, &gpu);
        if group.world_size() > gpus {
            let msg = engine.err().map(|e| e.to_string()).unwrap_or_default();
            assert!(msg.contains("nccl"), "ranks sharing a GPU: {msg}");
            eprintln!(
                "rank {}: {gpus} GPU(s) for {} ranks: NCCL refused as it should: {msg}",
                group.rank(),
                group.world_size()
            );
            return Ok(());
        }
        let engine = engine?;
        assert_eq!(group.backend(), Backend::Nccl);
        assert_eq!(group.backend_for(&gpu), Backend::Nccl);
        assert_eq!(group.backend_for(&nn::Device::Cpu), Backend::Mpi);
        assert_eq!(engine.world_size(), group.world_size());
        let w = group.world_size() as f32;
        let r = group.rank() as f32;
        let ranks: Vec<f32> = (0..group.world_size()).map(|i| i as f32).collect();
        let before = group.stats();
        let t = Tensor::from_vec(vec![r + 1.0, 10.0 * r, -r], &[3])?.to_device(&gpu)?;
        let sum = group.all_reduce(&t, ReduceOp::Sum)?;
        assert_eq!(sum.device(), gpu);
        let s: f32 = ranks.iter().sum();
        assert_eq!(sum.to_vec::<f32>()?, vec![s + w, 10.0 * s, -s]);
        let mean = group.all_reduce(&t.reshape(&[3, 1])?, ReduceOp::Mean)?;
        assert_eq!(mean.shape(), &[3, 1]);
        assert!(max_diff(&mean.to_vec::<f32>()?, &[(s + w) / w, 10.0 * s / w, -s / w]) < 1e-6);
        let ints = Tensor::from_vec(vec![group.rank() as i64 + 40], &[1])?.to_device(&gpu)?;
        let n = group.world_size() as i64;
        assert_eq!(
            group.all_reduce(&ints, ReduceOp::Sum)?.to_vec::<i64>()?,
            vec![40 * n + n * (n - 1) / 2]
        );
        let root = group.world_size() - 1;
        let b = group.broadcast(&Tensor::full(&[2, 2], r + 5.0).to_device(&gpu)?, root)?;
        assert_eq!(
            (b.device(), b.to_vec::<f32>()?),
            (gpu.clone(), vec![root as f32 + 5.0; 4])
        );
        let g = group.all_gather(&Tensor::full(&[2], r).to_device(&gpu)?)?;
        let want: Vec<f32> = ranks.iter().flat_map(|&i| [i, i]).collect();
        assert_eq!(
            (g.shape(), g.to_vec::<f32>()?),
            (&[group.world_size(), 2][..], want)
        );
        // empty tensors move nothing and still come back shaped
        let e = group.all_reduce(&Tensor::zeros(&[0, 3]).to_device(&gpu)?, ReduceOp::Sum)?;
        assert_eq!(e.shape(), &[0, 3]);
        assert!(group.stats().all_reduces > before.all_reduces);

        // DDP on the GPU: gradients averaged by NCCL, ranks stay bit-identical
        nn::manual_seed(1);
        let mut model = mlp();
        model.to_device(&gpu)?;
        let ddp = DistributedDataParallel::new(model, group)?;
        let x = Tensor::randn(&[8, 16]).to_device(&gpu)?;
        let y = Tensor::randint(&[8], 0, 10)?.to_device(&gpu)?;
        let mut opt = Adam::with_lr(ddp.parameters(), 1e-2)?;
        for step in 0..3 {
            let loss = ddp.forward(&x)?.cross_entropy(&y)?;
            opt.zero_grad();
            ddp.backward(&loss)?;
            opt.step()?;
            assert_ranks_identical(group, ddp.module(), &format!("NCCL step {step}"))?;
        }
        Ok(())
    }
}
