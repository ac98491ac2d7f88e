"""PyTorch reference data for scaled_dot_product_attention (issue 26).

Writes tests/fixtures/sdpa.safetensors, read by tests/transformer_pytorch.rs
(`sdpa_matches_pytorch`). Pinned: torch==2.15.0, safetensors (CPU only). From the
repository root:

    /work/venv-torch/bin/python tools/make_sdpa_fixtures.py

Per case NAME: `NAME.q / .k / .v` inputs, `NAME.mask` (bool masks stored as int64 0/1,
1 = may attend, as PyTorch's SDPA reads a bool mask; f32 masks as they are),
`NAME.out` = F.scaled_dot_product_attention(q, k, v, ...), `NAME.upstream` and
`NAME.grad.q / .k / .v`, the gradients of sum(out * upstream). The options of each case
(is_causal, scale, mask dtype) are in CASES below and repeated in the Rust test.
"""
import json
import os
import struct

import torch
import torch.nn.functional as F

try:
    from safetensors.torch import save_file
except ImportError:  # the format is small enough to write by hand

    def save_file(tensors, path):
        dtypes = {torch.float32: "F32", torch.int64: "I64"}
        header, blobs, at = {}, [], 0
        for name in sorted(tensors):
            t = tensors[name].contiguous()
            data = t.numpy().tobytes()
            header[name] = {
                "dtype": dtypes[t.dtype],
                "shape": list(t.shape),
                "data_offsets": [at, at + len(data)],
            }
            blobs.append(data)
            at += len(data)
        head = json.dumps(header, separators=(",", ":")).encode()
        head += b" " * (-len(head) % 8)
        with open(path, "wb") as f:
            f.write(struct.pack("<Q", len(head)) + head + b"".join(blobs))

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures")

# name: (q shape, k shape, v shape, mask: None | ("bool" | "f32", shape), is_causal, scale)
CASES = {
    "plain": ((2, 3, 5, 8), (2, 3, 7, 8), (2, 3, 7, 4), None, False, None),
    "causal": ((2, 2, 6, 4), (2, 2, 4, 4), (2, 2, 4, 3), None, True, None),
    "scale": ((1, 2, 3, 4), (1, 2, 5, 4), (1, 2, 5, 4), None, False, 0.3),
    "bool_mask": ((2, 3, 5, 8), (2, 3, 7, 8), (2, 3, 7, 4), ("bool", (5, 7)), False, None),
    "f32_mask": ((2, 3, 5, 8), (2, 3, 7, 8), (2, 3, 7, 4), ("f32", (2, 1, 5, 7)), False, None),
    "unbatched": ((5, 6), (9, 6), (9, 2), ("bool", (5, 9)), False, None),
}


def main():
    g = torch.Generator().manual_seed(26)
    out = {}
    for name, (qs, ks, vs, mask, causal, scale) in CASES.items():
        q = torch.randn(qs, generator=g).requires_grad_(True)
        k = torch.randn(ks, generator=g).requires_grad_(True)
        v = torch.randn(vs, generator=g).requires_grad_(True)
        m = None
        if mask is not None:
            kind, shape = mask
            if kind == "bool":
                m = torch.rand(shape, generator=g) > 0.4
                m[1] = False  # a fully masked query row: 0 out, 0 gradient
                out[f"{name}.mask"] = m.to(torch.int64)
            else:
                m = torch.randn(shape, generator=g)
                m[..., 0, 2] = float("-inf")
                out[f"{name}.mask"] = m.clone()
        o = F.scaled_dot_product_attention(q, k, v, attn_mask=m, is_causal=causal, scale=scale)
        up = torch.randn(o.shape, generator=g)
        (o * up).sum().backward()
        out[f"{name}.q"], out[f"{name}.k"], out[f"{name}.v"] = q.detach(), k.detach(), v.detach()
        out[f"{name}.out"] = o.detach()
        out[f"{name}.upstream"] = up
        for t, key in ((q, "q"), (k, "k"), (v, "v")):
            out[f"{name}.grad.{key}"] = t.grad
    out = {k: v.contiguous() for k, v in out.items()}
    save_file(out, os.path.join(OUT, "sdpa.safetensors"))
    print(f"wrote {len(out)} tensors")


if __name__ == "__main__":
    main()
