"""W8 reference: PyTorch's DDP on the Gloo backend for the W2 train step.

The W2 step (784-1024-1024-10 ReLU MLP, cross-entropy, SGD lr 0.01, global batch 128)
in one process on the whole batch (`--world 1`, plain module, no DDP), or data-parallel
over `--world N` processes (torch.multiprocessing, Gloo over loopback TCP), each with
1 thread and 128 / N rows, DDP averaging the gradients. Timed as benches/bench_distributed
times ours (10 warm-up steps, then 7 batches of 10 steps, median and best per step), plus a
lone all_reduce of the gradients' bytes. Prints one JSON object per line (rank 0 only),
with the same fields as `bench_distributed --json`. benches/bench_w8.sh runs both.

    /work/venv-torch/bin/python tools/bench_ddp_torch.py --world 2
"""
import argparse
import json
import os
import socket
import time

ap = argparse.ArgumentParser()
ap.add_argument("--world", type=int, default=2)
ap.add_argument("--threads", type=int, default=1, help="threads per process")
args = ap.parse_args()
for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[k] = str(args.threads)

import torch  # noqa: E402
import torch.distributed as dist  # noqa: E402
import torch.multiprocessing as mp  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

GLOBAL_BATCH = 128
REPS, INNER, WARM = 7, 10, 10


def mlp():
    return nn.Sequential(nn.Linear(784, 1024), nn.ReLU(), nn.Linear(1024, 1024), nn.ReLU(),
                         nn.Linear(1024, 10))


def timed(f, sync=lambda: None):
    # a count, not a time: every rank must make the same collective calls
    for _ in range(WARM):
        f()
    v = []
    for _ in range(REPS):
        sync()
        t = time.perf_counter()
        for _ in range(INNER):
            f()
        v.append((time.perf_counter() - t) / INNER)
    v.sort()
    return v[len(v) // 2], v[0]


def emit(variant, world, **fields):
    line = {"workload": "W8", "impl": "torch", "variant": variant, "world": world,
            "global_batch": GLOBAL_BATCH, "threads_per_rank": args.threads}
    line.update(fields)
    print(json.dumps(line), flush=True)


def step_fn(model, opt, x, t):
    def step():
        opt.zero_grad()
        F.cross_entropy(model(x), t).backward()
        opt.step()
    return step


def single():
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = mlp()
    x, t = torch.rand(GLOBAL_BATCH, 784), torch.randint(0, 10, (GLOBAL_BATCH,))
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    med, best = timed(step_fn(model, opt, x, t))
    emit("1proc", 1, median_s=med, best_s=best)


def rank_main(rank, world, port):
    torch.set_num_threads(args.threads)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                            world_size=world)
    torch.manual_seed(0)
    local = GLOBAL_BATCH // world
    x = torch.rand(GLOBAL_BATCH, 784)[rank * local:(rank + 1) * local]
    t = torch.randint(0, 10, (GLOBAL_BATCH,))[rank * local:(rank + 1) * local]
    ddp = nn.parallel.DistributedDataParallel(mlp())
    opt = torch.optim.SGD(ddp.parameters(), lr=0.01)
    med, best = timed(step_fn(ddp, opt, x, t), dist.barrier)
    nbytes = sum(p.numel() * 4 for p in ddp.parameters())
    flat = torch.rand(nbytes // 4)
    ar, ar_best = timed(lambda: dist.all_reduce(flat), dist.barrier)
    if rank == 0:
        emit(f"{world}ranks", world, median_s=med, best_s=best, allreduce_s=ar,
             allreduce_best_s=ar_best, allreduce_bytes=nbytes, allreduce_gbps=nbytes / ar / 1e9)
    dist.barrier()
    dist.destroy_process_group()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


if __name__ == "__main__":
    if args.world == 1:
        single()
    else:
        mp.spawn(rank_main, args=(args.world, free_port()), nprocs=args.world, join=True)
