"""Training fixtures for tests/optim_*.rs: PyTorch's parameter order, the learning-rate
sequences of every scheduler, and a run saved half-way that nn resumes.

Pinned: torch==2.15.0, safetensors (CPU is enough; nothing is downloaded). From the
repository root:

    .venv-torch/bin/python tools/make_training_fixtures.py   # writes tests/fixtures/training/

Files written (all small):
- order.json: `named_parameters()` and `state_dict()` key order of a module whose own
  parameter and buffer are declared after a child (`tok: Embedding, pos: Param`).
- schedules.safetensors: for each scheduler `<name>`, `<name>.lr` (f64, [301, 2]): the
  lrs of two parameter groups (SGD, momentum 0.9, lrs 0.1 and 0.02) after construction
  and after each of 300 steps (`get_last_lr()`); `<name>.momentum` the groups' momentum
  where the scheduler cycles it; `ReduceLROnPlateau.metric` the metric it is fed.
- optimizers.safetensors: `p0` (a parameter), `grads` (its gradient at each of 6
  steps) and, per optimizer configuration `<name>`, the parameter after the 6 steps.
- resume.pt: `torch.save({"model", "optimizer", "scheduler"})` after K=5 of N=12 AdamW
  steps on a tiny model with two parameter groups (decay / no decay) and a
  SequentialLR(LinearLR warmup, CosineAnnealingLR) schedule.
- resume.safetensors: the batch (`idx`, `targets`), the weights at the start
  (`init.<name>`) and after the N steps of the uninterrupted run (`final.<name>`).
"""
import json
import math
import os

import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import save_file

OUT = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "training")
STEPS = 300


class Order(nn.Module):
    def __init__(self):
        super().__init__()
        self.tok = nn.Embedding(5, 2)
        self.pos = nn.Parameter(torch.zeros(3, 2))
        self.head = nn.Linear(2, 2)
        self.register_buffer("scale", torch.ones(2))


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.tok = nn.Embedding(7, 4)
        self.pos = nn.Parameter(torch.randn(3, 4) * 0.1)
        self.norm = nn.LayerNorm(4)
        self.head = nn.Linear(4, 5)

    def forward(self, idx):
        x = self.norm(self.tok(idx) + self.pos)
        return self.head(x)


def order():
    m = Order()
    return {
        "named_parameters": [n for n, _ in m.named_parameters()],
        "state_dict": list(m.state_dict().keys()),
    }


def schedulers():
    """name -> (constructor of the scheduler over an optimizer, cycles momentum)."""
    S = torch.optim.lr_scheduler
    return {
        "StepLR": lambda o: S.StepLR(o, step_size=30, gamma=0.5),
        "MultiStepLR": lambda o: S.MultiStepLR(o, milestones=[50, 120, 120, 200], gamma=0.3),
        "ExponentialLR": lambda o: S.ExponentialLR(o, gamma=0.99),
        "CosineAnnealingLR": lambda o: S.CosineAnnealingLR(o, T_max=70, eta_min=0.001),
        "CosineAnnealingWarmRestarts": lambda o: S.CosineAnnealingWarmRestarts(
            o, T_0=20, T_mult=2, eta_min=0.0005
        ),
        "LinearLR": lambda o: S.LinearLR(o, start_factor=0.25, end_factor=0.9, total_iters=40),
        "ConstantLR": lambda o: S.ConstantLR(o, factor=0.5, total_iters=25),
        "PolynomialLR": lambda o: S.PolynomialLR(o, total_iters=150, power=2.0),
        "OneCycleLR": lambda o: S.OneCycleLR(o, max_lr=[0.5, 0.1], total_steps=STEPS),
        "OneCycleLR_linear3": lambda o: S.OneCycleLR(
            o, max_lr=0.4, total_steps=STEPS, pct_start=0.2, anneal_strategy="linear",
            three_phase=True, div_factor=10.0, final_div_factor=100.0,
        ),
        "CyclicLR_triangular2": lambda o: S.CyclicLR(
            o, base_lr=0.01, max_lr=[0.1, 0.05], step_size_up=25, step_size_down=15,
            mode="triangular2",
        ),
        "CyclicLR_exp_range": lambda o: S.CyclicLR(
            o, base_lr=[0.01, 0.002], max_lr=0.1, step_size_up=30, mode="exp_range",
            gamma=0.995, cycle_momentum=False,
        ),
        "LambdaLR": lambda o: S.LambdaLR(o, lambda e: 0.95 ** e + 0.01 * (e % 7)),
        "SequentialLR": lambda o: S.SequentialLR(
            o,
            [S.LinearLR(o, start_factor=0.1, total_iters=10), S.CosineAnnealingLR(o, T_max=290)],
            milestones=[10],
        ),
        "ChainedScheduler": lambda o: S.ChainedScheduler(
            [S.ConstantLR(o, factor=0.5, total_iters=20), S.ExponentialLR(o, gamma=0.99)]
        ),
        "ReduceLROnPlateau": lambda o: S.ReduceLROnPlateau(
            o, mode="min", factor=0.5, patience=5, threshold=1e-3, cooldown=3,
            min_lr=[0.001, 0.0005],
        ),
    }


def optimizers():
    torch.manual_seed(1)
    p0 = torch.randn(5)
    grads = torch.randn(6, 5)
    O = torch.optim
    configs = {
        "sgd_nesterov_maximize": lambda p: O.SGD(
            p, lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01, maximize=True
        ),
        "sgd_dampening": lambda p: O.SGD(p, lr=0.1, momentum=0.8, dampening=0.3, weight_decay=0.05),
        "adam_amsgrad_maximize": lambda p: O.Adam(
            p, lr=0.05, amsgrad=True, maximize=True, weight_decay=0.1
        ),
        "adamw": lambda p: O.AdamW(p, lr=0.05, weight_decay=0.1, betas=(0.8, 0.99)),
        "adamw_amsgrad": lambda p: O.AdamW(p, lr=0.02, amsgrad=True),
        "rmsprop": lambda p: O.RMSprop(p, lr=0.01),
        "rmsprop_centered_momentum": lambda p: O.RMSprop(
            p, lr=0.01, alpha=0.9, momentum=0.8, centered=True, weight_decay=0.05, maximize=True
        ),
        "adagrad": lambda p: O.Adagrad(
            p, lr=0.1, lr_decay=0.05, weight_decay=0.01, initial_accumulator_value=0.2
        ),
    }
    out = {"p0": p0, "grads": grads}
    for name, make in configs.items():
        w = nn.Parameter(p0.clone())
        opt = make([w])
        for g in grads:
            w.grad = g.clone()
            opt.step()
        out[name] = w.detach().clone()
    return out


def metric(e):
    """A loss with plateaus, for ReduceLROnPlateau."""
    return 1.0 / (1 + e // 20) + 0.001 * math.sin(e)


def schedules():
    out = {}
    for name, make in schedulers().items():
        w = [nn.Parameter(torch.zeros(1)), nn.Parameter(torch.zeros(1))]
        opt = torch.optim.SGD(
            [{"params": [w[0]], "lr": 0.1}, {"params": [w[1]], "lr": 0.02}], momentum=0.9
        )
        s = make(opt)
        lrs, moms = [list(map(float, s.get_last_lr()))], [[g["momentum"] for g in opt.param_groups]]
        for e in range(1, STEPS + 1):
            opt.step()
            if name == "ReduceLROnPlateau":
                s.step(metric(e))
            else:
                s.step()
            lrs.append(list(map(float, s.get_last_lr())))
            moms.append([g["momentum"] for g in opt.param_groups])
        out[f"{name}.lr"] = torch.tensor(lrs, dtype=torch.float64)
        if name.startswith(("OneCycleLR", "CyclicLR")):
            out[f"{name}.momentum"] = torch.tensor(moms, dtype=torch.float64)
    out["ReduceLROnPlateau.metric"] = torch.tensor(
        [0.0] + [metric(e) for e in range(1, STEPS + 1)], dtype=torch.float64
    )
    return out


def resume():
    torch.manual_seed(0)
    model = Tiny()
    idx = torch.randint(0, 7, (4, 3))
    targets = torch.randint(0, 5, (4, 3))
    init = {f"init.{k}": v.clone() for k, v in model.state_dict().items()}
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "norm" not in n]
    no_decay = [p for n, p in model.named_parameters() if not (p.ndim >= 2 and "norm" not in n)]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
        lr=0.05,
        betas=(0.8, 0.99),
    )
    S = torch.optim.lr_scheduler
    warm = S.LinearLR(opt, start_factor=0.2, total_iters=3)
    cos = S.CosineAnnealingLR(opt, T_max=9, eta_min=0.001)
    sched = S.SequentialLR(opt, [warm, cos], milestones=[3])
    for step in range(1, 13):
        opt.zero_grad()
        loss = F.cross_entropy(model(idx).reshape(-1, 5), targets.reshape(-1))
        loss.backward()
        opt.step()
        sched.step()
        if step == 5:
            torch.save(
                {"model": model.state_dict(), "optimizer": opt.state_dict(),
                 "scheduler": sched.state_dict()},
                os.path.join(OUT, "resume.pt"),
            )
    final = {f"final.{k}": v.detach().clone() for k, v in model.state_dict().items()}
    save_file({"idx": idx, "targets": targets, **init, **final},
              os.path.join(OUT, "resume.safetensors"))


def main():
    os.makedirs(OUT, exist_ok=True)
    with open(os.path.join(OUT, "order.json"), "w") as f:
        json.dump(order(), f, indent=1)
    save_file(schedules(), os.path.join(OUT, "schedules.safetensors"))
    save_file(optimizers(), os.path.join(OUT, "optimizers.safetensors"))
    resume()


if __name__ == "__main__":
    main()
