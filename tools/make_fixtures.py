"""The project's own reference data from PyTorch: cases added beyond ../shared's set.

Writes tests/fixtures/project.safetensors and tests/fixtures/project.json.

Pinned: torch==2.15.0, safetensors, numpy (CPU is enough; nothing is downloaded at run
time). From the repository root:

    python3 -m venv .venv-torch && .venv-torch/bin/pip install torch==2.15.0 safetensors numpy
    .venv-torch/bin/python tools/make_fixtures.py

Each op case NAME stores its inputs `NAME.in0`, `NAME.in1`, ..., its output `NAME.out`,
a random upstream gradient `NAME.upstream`, and `NAME.gradK`, the gradient of
sum(out * upstream) with respect to input K: the layout of ../shared/fixtures'
ops.safetensors, so tests read both the same way (tests/pytorch_ops.rs). To add a case,
add an entry to `op_cases`, rerun, commit both files, and add the case to the test.
Inputs that must tie (max/min gradients) are small integers, exact in float32.
"""
import json
import os

import torch
from safetensors.torch import save_file

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures")


def op_cases(g):
    r = lambda *s: torch.randn(*s, generator=g)
    # values in {0, 1, 2}: many ties per row
    ties = lambda *s: torch.randint(0, 3, s, generator=g).float()
    return {
        # gradient to the index PyTorch returns (the first maximum of each slice)
        "max_dim_ties": ([ties(4, 6)], lambda a: a.max(dim=1).values),
        "min_dim0_ties": ([ties(5, 3)], lambda a: a.min(dim=0).values),
        "max_dim_keepdim_ties": ([ties(2, 3, 4)], lambda a: a.max(dim=-1, keepdim=True).values),
        # gradient split evenly between ties
        "amax_ties": ([ties(4, 6)], lambda a: a.amax(dim=1)),
        "amin_dims_ties": ([ties(2, 3, 4)], lambda a: a.amin(dim=(0, 2))),
        "max_all_ties": ([ties(3, 4)], lambda a: a.max()),
        # operators with scalars on either side
        "scalar_left_ops": ([r(3, 4), r(4).abs() + 0.5], lambda a, b: (1.0 - a) / b + 2.0 / b),
    }


def main():
    g = torch.Generator().manual_seed(20261202)
    tensors, meta = {}, {"generator": f"torch {torch.__version__}", "ops": []}
    for name, (inputs, f) in op_cases(g).items():
        inputs = [x.clone().requires_grad_(True) for x in inputs]
        out = f(*inputs)
        upstream = torch.randn(out.shape, generator=g)
        grads = torch.autograd.grad((out * upstream).sum(), inputs)
        tensors.update({f"{name}.in{i}": x.detach() for i, x in enumerate(inputs)})
        tensors.update({f"{name}.grad{i}": d for i, d in enumerate(grads)})
        tensors[f"{name}.out"] = out.detach()
        tensors[f"{name}.upstream"] = upstream
        meta["ops"].append({"name": name, "inputs": len(inputs), "out_shape": list(out.shape)})
    tensors = {k: v.contiguous() for k, v in tensors.items()}
    save_file(tensors, os.path.join(OUT, "project.safetensors"))
    with open(os.path.join(OUT, "project.json"), "w") as fh:
        json.dump(meta, fh, indent=1)
        fh.write("\n")


if __name__ == "__main__":
    main()
