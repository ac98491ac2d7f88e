"""PyTorch reference data for the sequence-model layers (issue 11).

Writes tests/fixtures/transformer.safetensors and tests/fixtures/transformer.json.

Pinned: torch==2.15.0, safetensors, numpy (CPU only; nothing is downloaded at run time).
From the repository root:

    python3 -m venv .venv-torch && .venv-torch/bin/pip install torch==2.15.0 safetensors numpy
    .venv-torch/bin/python tools/make_transformer_fixtures.py

Layout (read by tests/transformer_pytorch.rs):
- `act.NAME.in0 / .out / .upstream / .grad0`: activation ops, gradient of sum(out * upstream).
- `emb.*`, `ln.*`, `rms.*`, `mha.*`, `enc_post.*` / `enc_pre.*`: a layer's state dict under
  `PREFIX.sd.` (PyTorch's own key names), its inputs (`.x`, masks), its output `.out`, and
  `.grad.<key>` / `.grad.input`, the gradients of a loss with respect to every parameter
  and the input (a sum, or sum(out * upstream) where an upstream is stored).
- Masks are stored as int64 0/1 (PyTorch bool: 1 = masked) or f32 (additive).

The encoders are 2-layer nn.TransformerEncoder(d_model 64, 4 heads, ff 128, batch_first),
norm_first False (`enc_post`) and True (`enc_pre`), run in eval mode with a causal mask
and a key padding mask. The fast path (nested tensors, which zero padded positions'
outputs) is disabled with torch.backends.mha.set_fastpath_enabled(False) and
enable_nested_tensor=False, so every position is compared, padded ones included.

transformer.json holds each module's printed tree (with ModuleList's repeat-collapsing
`(0-1): 2 x` turned off, since our printer lists every layer) and its named_parameters()
order.
"""
import json
import os

import torch
from torch import nn
from safetensors.torch import save_file

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures")


def randomize(m, g, scale=0.2):
    """Distinct, nonzero values for every parameter (PyTorch's clones start equal, and
    its biases start at zero, which would hide mistakes)."""
    with torch.no_grad():
        for p in m.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * scale)


def grads(prefix, module, x, loss, tensors):
    names = [n for n, _ in module.named_parameters()]
    params = [p for _, p in module.named_parameters()]
    inputs = params + ([x] if x is not None else [])
    gs = torch.autograd.grad(loss, inputs, allow_unused=True)
    for n, gr in zip(names, gs):
        tensors[f"{prefix}.grad.{n}"] = gr if gr is not None else torch.zeros_like(dict(module.named_parameters())[n])
    if x is not None:
        tensors[f"{prefix}.grad.input"] = gs[-1]
    for n, p in module.state_dict().items():
        tensors[f"{prefix}.sd.{n}"] = p.detach()


def main():
    torch.backends.mha.set_fastpath_enabled(False)
    g = torch.Generator().manual_seed(20261211)
    r = lambda *s: torch.randn(*s, generator=g)
    tensors = {}
    meta = {"generator": f"torch {torch.__version__}", "trees": {}, "names": {}}

    # activations as ops
    acts = {
        "gelu": lambda x: nn.functional.gelu(x),
        "gelu_tanh": lambda x: nn.functional.gelu(x, approximate="tanh"),
        "silu": nn.functional.silu,
        "leaky_relu": lambda x: nn.functional.leaky_relu(x, 0.1),
        "softmax0": lambda x: torch.softmax(x, 0),
        "log_softmax": lambda x: torch.log_softmax(x, -1),
        "erf": torch.erf,
        "triu1": lambda x: torch.triu(x, 1),
        "tril0": lambda x: torch.tril(x),
    }
    for name, f in acts.items():
        x = (r(4, 5) * 2).requires_grad_(True)
        out = f(x)
        up = r(*out.shape)
        (gx,) = torch.autograd.grad((out * up).sum(), [x])
        tensors.update({f"act.{name}.in0": x.detach(), f"act.{name}.out": out.detach(),
                        f"act.{name}.upstream": up, f"act.{name}.grad0": gx})

    # Embedding with padding_idx and repeated indices
    emb = nn.Embedding(10, 6, padding_idx=2)
    with torch.no_grad():
        emb.weight.copy_(r(10, 6))
        emb.weight[2].zero_()
    idx = torch.tensor([[1, 2, 3, 1], [9, 1, 2, 0], [5, 5, 5, 7]])
    out = emb(idx)
    up = r(*out.shape)
    tensors.update({"emb.x": idx, "emb.out": out.detach(), "emb.upstream": up})
    grads("emb", emb, None, (out * up).sum(), tensors)
    meta["trees"]["emb"] = str(emb)

    # LayerNorm and RMSNorm alone
    for key, m in [("ln", nn.LayerNorm([6])), ("rms", nn.RMSNorm([2, 6], eps=1e-6))]:
        randomize(m, g)
        with torch.no_grad():
            m.weight.add_(1.0)
        x = r(3, 2, 6).requires_grad_(True)
        out = m(x)
        up = r(*out.shape)
        tensors.update({f"{key}.x": x.detach(), f"{key}.out": out.detach(), f"{key}.upstream": up})
        grads(key, m, x, (out * up).sum(), tensors)
        meta["trees"][key] = str(m)

    # MultiheadAttention with need_weights, masks, self-attention
    mha = nn.MultiheadAttention(16, 4, batch_first=True)
    randomize(mha, g)
    x = r(2, 5, 16).requires_grad_(True)
    causal = nn.Transformer.generate_square_subsequent_mask(5)
    kpm = torch.tensor([[False, False, False, True, True], [False] * 5])
    out, w = mha(x, x, x, key_padding_mask=kpm, attn_mask=causal, need_weights=True)
    up, upw = r(*out.shape), r(*w.shape)
    tensors.update({"mha.x": x.detach(), "mha.attn_mask": causal, "mha.key_padding_mask": kpm.long(),
                    "mha.out": out.detach(), "mha.weights": w.detach(), "mha.upstream": up,
                    "mha.upstream_weights": upw})
    grads("mha", mha, x, (out * up).sum() + (w * upw).sum(), tensors)
    meta["trees"]["mha"] = str(mha)
    meta["names"]["mha"] = [n for n, _ in mha.named_parameters()]

    # 2-layer encoders, both norm placements
    for key, norm_first in [("enc_post", False), ("enc_pre", True)]:
        layer = nn.TransformerEncoderLayer(64, 4, dim_feedforward=128, batch_first=True,
                                           norm_first=norm_first)
        enc = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
        randomize(enc, g)
        with torch.no_grad():
            for n, p in enc.named_parameters():
                if "norm" in n and n.endswith("weight"):
                    p.add_(1.0)
        enc.eval()
        x = r(3, 7, 64).requires_grad_(True)
        mask = nn.Transformer.generate_square_subsequent_mask(7)
        kpm = torch.zeros(3, 7, dtype=torch.bool)
        kpm[0, 5:] = True
        kpm[2, 6:] = True
        out = enc(x, mask=mask, src_key_padding_mask=kpm)
        tensors.update({f"{key}.x": x.detach(), f"{key}.mask": mask,
                        f"{key}.key_padding_mask": kpm.long(), f"{key}.out": out.detach()})
        grads(key, enc, x, out.sum(), tensors)
        meta["trees"][key] = str(enc)
        meta["names"][key] = [n for n, _ in enc.named_parameters()]

    tensors = {k: v.detach().contiguous() for k, v in tensors.items()}
    save_file(tensors, os.path.join(OUT, "transformer.safetensors"))
    with open(os.path.join(OUT, "transformer.json"), "w") as fh:
        json.dump(meta, fh, indent=1)
        fh.write("\n")


if __name__ == "__main__":
    main()
