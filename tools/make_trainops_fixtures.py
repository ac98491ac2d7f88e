"""Reference data from PyTorch for the training toolkit: clamp, gradient clipping, EMA.

Writes tests/fixtures/trainops/ops.safetensors (clamp cases, in the op-case layout of
tools/make_fixtures.py: NAME.in0, NAME.out, NAME.upstream, NAME.grad0), clip.safetensors
(gradient clipping) and ema.safetensors (AveragedModel / update_bn).

Pinned: torch==2.15.0, safetensors, numpy (CPU). From the repository root:

    .venv-torch/bin/python tools/make_trainops_fixtures.py
"""
import os

import torch
from safetensors.torch import save_file

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "trainops")


def op_cases(g):
    # half the entries on a 0.5 grid, so some sit exactly on the bounds
    def mixed(*s):
        x = torch.randn(*s, generator=g)
        grid = torch.round(x * 2) / 2
        pick = torch.rand(*s, generator=g) < 0.5
        return torch.where(pick, grid, x)

    return {
        "clamp": ([mixed(4, 6)], lambda a: a.clamp(-0.5, 0.5)),
        "clamp_min": ([mixed(4, 6)], lambda a: a.clamp_min(0.0)),
        "clamp_max": ([mixed(4, 6)], lambda a: a.clamp_max(0.0)),
        "clamp_crossed": ([mixed(3, 4)], lambda a: a.clamp(0.5, -0.5)),
    }


def ops(g):
    tensors = {}
    for name, (inputs, f) in op_cases(g).items():
        inputs = [x.clone().requires_grad_(True) for x in inputs]
        out = f(*inputs)
        upstream = torch.randn(out.shape, generator=g)
        grads = torch.autograd.grad((out * upstream).sum(), inputs)
        tensors.update({f"{name}.in{i}": x.detach() for i, x in enumerate(inputs)})
        tensors.update({f"{name}.grad{i}": d for i, d in enumerate(grads)})
        tensors[f"{name}.out"] = out.detach()
        tensors[f"{name}.upstream"] = upstream
    save_file({k: v.contiguous() for k, v in tensors.items()}, os.path.join(OUT, "ops.safetensors"))


def clip(g):
    """Gradients `grads.K`; per case NAME: `NAME.total` (the returned norm) and
    `NAME.gradK` (the clipped gradients)."""
    base = [torch.randn(4, 3, generator=g), torch.randn(3, generator=g) * 3, torch.randn(2, 2, generator=g)]
    tensors = {f"grads.{k}": t for k, t in enumerate(base)}
    cases = {
        # name: (max_norm, norm_type)
        "norm2": (1.0, 2.0),
        "norm2_no_clip": (100.0, 2.0),
        "norm_inf": (0.5, float("inf")),
        "norm1": (2.0, 1.0),
        "norm3_5": (0.7, 3.5),
    }
    for name, (max_norm, norm_type) in cases.items():
        params = [torch.nn.Parameter(torch.zeros_like(t)) for t in base]
        for p, t in zip(params, base):
            p.grad = t.clone()
        total = torch.nn.utils.clip_grad_norm_(params, max_norm, norm_type=norm_type)
        tensors[f"{name}.total"] = total.reshape(1)
        tensors.update({f"{name}.grad{k}": p.grad for k, p in enumerate(params)})
    params = [torch.nn.Parameter(torch.zeros_like(t)) for t in base]
    for p, t in zip(params, base):
        p.grad = t.clone()
    torch.nn.utils.clip_grad_value_(params, 0.5)
    tensors.update({f"value.grad{k}": p.grad for k, p in enumerate(params)})
    save_file({k: v.contiguous() for k, v in tensors.items()}, os.path.join(OUT, "clip.safetensors"))


def ema(g):
    """A Linear-BatchNorm1d-Linear model (`init.*`, PyTorch's keys), its state after each
    of 3 SGD steps (`step{k}.*`); the state dicts of an EMA average (decay 0.9, buffers
    averaged) and an SWA average (buffers copied) updated after each step (`ema.*`,
    `swa.*`), and of the SWA average after `update_bn` over `bn_batches` (`swa_bn.*`)."""
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn, update_bn

    torch.manual_seed(7)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4), torch.nn.Linear(4, 2))
    tensors = {f"init.{k}": v.clone() for k, v in model.state_dict().items()}
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    ema_model = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(0.9), use_buffers=True)
    swa_model = AveragedModel(model)
    for k in range(3):
        x = torch.randn(5, 3, generator=g)
        loss = model(x).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        tensors.update({f"step{k}.{n}": v.clone() for n, v in model.state_dict().items()})
        ema_model.update_parameters(model)
        swa_model.update_parameters(model)
    tensors.update({f"ema.{n}": v.clone() for n, v in ema_model.state_dict().items()})
    tensors.update({f"swa.{n}": v.clone() for n, v in swa_model.state_dict().items()})
    batches = [torch.randn(6, 3, generator=g) for _ in range(2)]
    tensors["bn_batches"] = torch.stack(batches)
    update_bn(batches, swa_model)
    tensors.update({f"swa_bn.{n}": v.clone() for n, v in swa_model.state_dict().items()})
    save_file({k: v.contiguous() for k, v in tensors.items()}, os.path.join(OUT, "ema.safetensors"))


def main():
    g = torch.Generator().manual_seed(20261207)
    os.makedirs(OUT, exist_ok=True)
    ops(g)
    clip(g)
    ema(g)


if __name__ == "__main__":
    main()
