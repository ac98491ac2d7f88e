"""Reference values and gradients of PyTorch's losses, for nn-core's loss functions.

Writes tests/fixtures/losses/losses.safetensors. Each case NAME stores its differentiable
inputs `NAME.in0`, `NAME.in1` (input, and the target where it is differentiable), the
other arguments under their own names (`NAME.target` int64 classes, `NAME.weight`,
`NAME.pos_weight`), the loss `NAME.out`, a random upstream gradient `NAME.upstream`, and
`NAME.gradK`, the gradient of sum(out * upstream) with respect to input K. The options
(ignore_index, label_smoothing, reduction, beta ...) are in the Rust test, one line per
case, next to the call below.

Pinned: torch==2.15.0, safetensors, numpy (CPU). From the repository root:

    .venv-torch/bin/python tools/make_loss_fixtures.py
"""
import os
import warnings

import torch
import torch.nn.functional as F
from safetensors.torch import save_file

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "losses")


def cases(g):
    r = lambda *s: torch.randn(*s, generator=g)
    u = lambda *s: torch.rand(*s, generator=g)
    cls = lambda n, *s: torch.randint(0, n, s, generator=g)
    # targets with some entries ignored (-100, or the class 2 for a custom ignore_index)
    y = torch.tensor([0, 4, -100, 2, 1, -100])
    y2 = torch.tensor([0, 2, 2, 3, 1, 4])
    w5 = u(5) + 0.5
    y3 = torch.tensor([[0, 3, -100], [2, 1, 1]])
    w4 = u(4) + 0.5
    probs = lambda *s: torch.softmax(r(*s) * 2, dim=1)
    ce = lambda **kw: (lambda x, target, **e: F.cross_entropy(x, target, **e, **kw))
    nll = lambda **kw: (lambda x, target, **e: F.nll_loss(x, target, **e, **kw))
    return {
        # name: (differentiable inputs, other arguments, function)
        "ce_plain": ([r(6, 5)], {"target": cls(5, 6)}, ce()),
        "ce_weight": ([r(6, 5)], {"target": cls(5, 6), "weight": w5}, ce()),
        "ce_ignore": ([r(6, 5)], {"target": y}, ce()),
        "ce_ignore_custom_weight": ([r(6, 5)], {"target": y2, "weight": w5}, ce(ignore_index=2)),
        "ce_ls": ([r(6, 5)], {"target": cls(5, 6)}, ce(label_smoothing=0.1)),
        "ce_ls_weight_ignore": ([r(6, 5)], {"target": y, "weight": w5}, ce(label_smoothing=0.2)),
        "ce_ls_weight_ignore_sum": ([r(6, 5)], {"target": y, "weight": w5},
                                    ce(label_smoothing=0.2, reduction="sum")),
        "ce_ls_weight_ignore_none": ([r(6, 5)], {"target": y, "weight": w5},
                                     ce(label_smoothing=0.2, reduction="none")),
        "ce_3d_weight_ignore": ([r(2, 4, 3)], {"target": y3, "weight": w4}, ce(label_smoothing=0.1)),
        "ce_3d_none": ([r(2, 4, 3)], {"target": y3}, ce(reduction="none")),
        "ce_1d": ([r(5)], {"target": torch.tensor(3)}, ce()),
        "ce_probs": ([r(6, 5), probs(6, 5)], {}, lambda x, t: F.cross_entropy(x, t)),
        "ce_probs_weight_ls": ([r(6, 5), probs(6, 5)], {"weight": w5},
                               lambda x, t, weight: F.cross_entropy(x, t, weight=weight, label_smoothing=0.1)),
        "ce_probs_3d_none": ([r(2, 4, 3), probs(2, 4, 3)], {},
                             lambda x, t: F.cross_entropy(x, t, reduction="none")),
        "nll_weight_ignore": ([r(6, 5)], {"target": y, "weight": w5}, nll()),
        "nll_weight_ignore_sum": ([r(6, 5)], {"target": y, "weight": w5}, nll(reduction="sum")),
        "nll_3d_none": ([r(2, 4, 3)], {"target": y3}, nll(reduction="none")),
        "bce": ([u(4, 3) * 0.9 + 0.05, u(4, 3)], {}, lambda x, t: F.binary_cross_entropy(x, t)),
        "bce_weight_sum": ([u(4, 3) * 0.9 + 0.05, u(4, 3)], {"weight": u(3) + 0.5},
                           lambda x, t, weight: F.binary_cross_entropy(x, t, weight=weight, reduction="sum")),
        "bce_none": ([u(4, 3) * 0.9 + 0.05, u(4, 3)], {}, lambda x, t: F.binary_cross_entropy(x, t, reduction="none")),
        "bce_logits": ([r(4, 3) * 3, u(4, 3)], {}, lambda x, t: F.binary_cross_entropy_with_logits(x, t)),
        "bce_logits_pos_weight": ([r(4, 3) * 3, u(4, 3)], {"pos_weight": u(3) * 3, "weight": u(4, 1) + 0.5},
                                  lambda x, t, pos_weight, weight: F.binary_cross_entropy_with_logits(
                                      x, t, weight=weight, pos_weight=pos_weight)),
        "bce_logits_none": ([r(4, 3) * 3, u(4, 3)], {"pos_weight": u(3) * 3},
                            lambda x, t, pos_weight: F.binary_cross_entropy_with_logits(
                                x, t, pos_weight=pos_weight, reduction="none")),
        "l1": ([r(4, 3), r(4, 3)], {}, lambda x, t: F.l1_loss(x, t)),
        "l1_none": ([r(4, 3), r(4, 3)], {}, lambda x, t: F.l1_loss(x, t, reduction="none")),
        "mse_sum": ([r(4, 3), r(4, 3)], {}, lambda x, t: F.mse_loss(x, t, reduction="sum")),
        "mse": ([r(4, 3), r(4, 3)], {}, lambda x, t: F.mse_loss(x, t)),
        "smooth_l1": ([r(4, 3), r(4, 3)], {}, lambda x, t: F.smooth_l1_loss(x, t, beta=0.5)),
        "smooth_l1_none": ([r(4, 3), r(4, 3)], {}, lambda x, t: F.smooth_l1_loss(x, t, reduction="none")),
        "huber": ([r(4, 3), r(4, 3)], {}, lambda x, t: F.huber_loss(x, t, delta=0.7)),
        "huber_sum": ([r(4, 3) * 2, r(4, 3)], {}, lambda x, t: F.huber_loss(x, t, reduction="sum", delta=1.5)),
        "kl_batchmean": ([torch.log_softmax(r(4, 5), 1), probs(4, 5)], {},
                         lambda x, t: F.kl_div(x, t, reduction="batchmean")),
        "kl_mean": ([torch.log_softmax(r(4, 5), 1), probs(4, 5)], {}, lambda x, t: F.kl_div(x, t)),
        "kl_none_zero_target": ([torch.log_softmax(r(2, 3), 1), torch.tensor([[0.0, 0.3, 0.7], [1.0, 0.0, 0.0]])], {},
                                lambda x, t: F.kl_div(x, t, reduction="none")),
        "kl_log_target_sum": ([torch.log_softmax(r(4, 5), 1), torch.log_softmax(r(4, 5), 1)], {},
                              lambda x, t: F.kl_div(x, t, reduction="sum", log_target=True)),
        # the target is not differentiable: stored as `target`, a float of 1 / -1
        "cosine": ([r(5, 4), r(5, 4)], {"target": torch.tensor([1.0, -1.0, 1.0, -1.0, -1.0])},
                   lambda a, b, target: F.cosine_embedding_loss(a, b, target, margin=0.1)),
        "cosine_none": ([r(5, 4), r(5, 4)], {"target": torch.tensor([1.0, -1.0, -1.0, 1.0, -1.0])},
                        lambda a, b, target: F.cosine_embedding_loss(a, b, target, margin=-0.2, reduction="none")),
    }


def main():
    # kl_div's reduction='mean' warns that it is not the KL divergence; the case is on purpose
    warnings.filterwarnings("ignore", message="reduction: 'mean'")
    g = torch.Generator().manual_seed(20261207)
    tensors = {}
    for name, (inputs, extra, f) in cases(g).items():
        inputs = [x.clone().requires_grad_(True) for x in inputs]
        out = f(*inputs, **extra)
        upstream = torch.randn(out.shape, generator=g)
        grads = torch.autograd.grad((out * upstream).sum(), inputs)
        tensors.update({f"{name}.in{i}": x.detach() for i, x in enumerate(inputs)})
        tensors.update({f"{name}.grad{i}": d for i, d in enumerate(grads)})
        tensors.update({f"{name}.{k}": v for k, v in extra.items()})
        tensors[f"{name}.out"] = out.detach()
        tensors[f"{name}.upstream"] = upstream
    os.makedirs(OUT, exist_ok=True)
    save_file({k: v.clone().contiguous() for k, v in tensors.items()}, os.path.join(OUT, "losses.safetensors"))


if __name__ == "__main__":
    main()
