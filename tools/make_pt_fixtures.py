"""PyTorch checkpoint fixtures for tests/torch_files.rs, and the check that `.pt` files
written by nn load in PyTorch.

Pinned: torch==2.15.0, safetensors (CPU is enough; nothing is downloaded). From the
repository root:

    python3 -m venv .venv-torch && .venv-torch/bin/pip install torch==2.15.0 safetensors
    .venv-torch/bin/python tools/make_pt_fixtures.py            # writes tests/fixtures/pt/
    cargo run --example 09_checkpoints -- /tmp/nn-written       # nn writes .pt files
    .venv-torch/bin/python tools/make_pt_fixtures.py --verify /tmp/nn-written

`--verify DIR` loads every DIR/*.pt written by nn with torch.load(weights_only=True),
then load_state_dict(strict=True) into the same PyTorch MLP, compares the values with
DIR/<name>.expect.safetensors, and writes tests/fixtures/pt/verified.json (committed:
the record, with each file's sha256, that PyTorch accepted our files). Copy
DIR/mlp_*.pt to tests/fixtures/pt/written/: tests/torch_files.rs checks that nn still
writes exactly those bytes.

Files written (all small):
- mlp_f32.pt, mlp_f16.pt, mlp_bf16.pt: the state dict of Sequential(Linear(4, 8), ReLU,
  Linear(8, 3)) in three dtypes; mlp.expect.safetensors holds the f32 values.
- mlp_dataparallel.pt: the same, saved from nn.DataParallel (keys `module.0.weight`...).
- checkpoint.pt: {"model": state dict, "optimizer": Adam state after one step,
  "epoch": 3, "loss": 0.25}.
- tied.pt: a model whose two Linear layers share one weight (saved once by PyTorch).
- views.pt: non-contiguous views (a transpose, a slice with an offset) of one storage,
  views.expect.safetensors their contiguous values; dtypes.pt one tensor per dtype.
- legacy.pt: the pre-1.6 format (`_use_new_zipfile_serialization=False`).
- scripted.pt: a TorchScript archive (torch.jit.script(model).save).
- hostile_*.pt: crafted files each of which must be refused (see `hostile`).
"""
import hashlib
import json
import os
import pickle
import struct
import sys
import zipfile

import torch
from safetensors.torch import save_file, load_file

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "pt")


def mlp():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))


class Tied(torch.nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(1)
        self.a = torch.nn.Linear(4, 4)
        self.b = torch.nn.Linear(4, 4)
        self.b.weight = self.a.weight


def p(name):
    return os.path.join(OUT, name)


def replace_pickle(src, pkl, dst):
    """A copy of the zip `src` whose data.pkl is `pkl` (stored, as torch writes)."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_STORED) as zout:
        for info in zin.infolist():
            data = zin.read(info.filename)
            if info.filename.endswith("/data.pkl"):
                data = pkl
            zout.writestr(info.filename, data)


class Global:
    """Pickles as GLOBAL module name (nothing is imported)."""

    def __init__(self, module, name):
        self.module, self.name = module, name


def proto2(*ops):
    return b"\x80\x02" + b"".join(ops) + b"."


def glob(module, name):
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def s(text):  # BINUNICODE
    b = text.encode()
    return b"X" + struct.pack("<I", len(b)) + b


def tensor_pickle(key, storage, numel, offset, size, stride):
    """{ "w": _rebuild_tensor_v2(storage(key), offset, size, stride, False, OrderedDict()) }"""
    def tup(items):
        return b"(" + b"".join(items) + b"t"
    def intv(v):
        if -(1 << 31) <= v < (1 << 31):
            return b"J" + struct.pack("<i", v)
        b = v.to_bytes(9, "little", signed=True)  # LONG1
        return b"\x8a" + bytes([len(b)]) + b
    pid = tup([s("storage"), glob("torch", storage), s(key), s("cpu"), intv(numel)])
    args = tup([pid + b"Q", intv(offset), tup([intv(v) for v in size]),
                tup([intv(v) for v in stride]), b"\x89",
                glob("collections", "OrderedDict") + b")R"])
    return proto2(b"}", s("w"), glob("torch._utils", "_rebuild_tensor_v2"), args, b"R", b"s")


def hostile(base):
    """Crafted files; each must be an error naming what is wrong."""
    # code execution through a global (what weights_only exists to stop)
    replace_pickle(base, proto2(glob("os", "system"), b"(", s("echo pwned"), b"tR"), p("hostile_os_system.pt"))
    replace_pickle(base, proto2(glob("builtins", "eval"), b"(", s("1+1"), b"tR"), p("hostile_eval.pt"))
    # a storage claiming far more elements than the file holds
    replace_pickle(base, tensor_pickle("0", "FloatStorage", 1 << 40, 0, [1 << 20, 1 << 20], [1 << 20, 1]),
                   p("hostile_storage_too_large.pt"))
    # strides that walk backwards; a view whose elements overlap; a dim product overflowing
    replace_pickle(base, tensor_pickle("0", "FloatStorage", 32, 31, [4, 8], [-8, 1]), p("hostile_negative_stride.pt"))
    replace_pickle(base, tensor_pickle("0", "FloatStorage", 32, 0, [4, 8], [1, 1]), p("hostile_overlap.pt"))
    replace_pickle(base, tensor_pickle("0", "FloatStorage", 32, 0, [1 << 31 - 1, 1 << 31 - 1, 1 << 31 - 1, 1 << 31 - 1],
                                       [1, 1, 1, 1]), p("hostile_huge_dims.pt"))
    # 5000 nested lists (nn refuses more than 1000 levels; PyTorch loads this one)
    replace_pickle(base, proto2(b"]" * 5000 + b"a" * 4999), p("hostile_deep.pt"))
    # a zip bomb: a deflated entry of 64 MiB of zeros (64 KiB on disk) (torch writes stored entries only)
    with zipfile.ZipFile(p("hostile_zip_bomb.pt"), "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("archive/data.pkl", pickle.dumps({}, protocol=2))
        with z.open("archive/data/0", "w", force_zip64=True) as f:
            chunk = b"\0" * (1 << 24)
            for _ in range(4):
                f.write(chunk)
        z.writestr("archive/version", "3\n")


def make():
    os.makedirs(OUT, exist_ok=True)
    net = mlp()
    sd = net.state_dict()
    torch.save(sd, p("mlp_f32.pt"))
    torch.save({k: v.half() for k, v in sd.items()}, p("mlp_f16.pt"))
    torch.save({k: v.bfloat16() for k, v in sd.items()}, p("mlp_bf16.pt"))
    save_file({k: v.contiguous() for k, v in sd.items()}, p("mlp.expect.safetensors"))
    torch.save(torch.nn.DataParallel(net).state_dict(), p("mlp_dataparallel.pt"))

    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    net(torch.ones(2, 4)).sum().backward()
    opt.step()
    torch.save({"model": net.state_dict(), "optimizer": opt.state_dict(), "epoch": 3, "loss": 0.25},
               p("checkpoint.pt"))
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, p("checkpoint.expect.safetensors"))

    tied = Tied()
    torch.save(tied.state_dict(), p("tied.pt"))

    base = torch.arange(24, dtype=torch.float32).reshape(4, 6)
    views = {"base": base, "t": base.t(), "slice": base[1:3, 2:5], "row": base[2]}
    torch.save(views, p("views.pt"))
    save_file({k: v.clone().contiguous() for k, v in views.items()}, p("views.expect.safetensors"))
    x = torch.tensor([0.0, 1.0, -3.0, 7.5, 2.0, 0.5])
    dtypes = {str(d).removeprefix("torch."): x.to(d) for d in
              [torch.float32, torch.float16, torch.bfloat16, torch.float64, torch.int32, torch.int64,
               torch.uint8, torch.bool]}
    torch.save(dtypes, p("dtypes.pt"))

    torch.save(sd, p("legacy.pt"), _use_new_zipfile_serialization=False)
    torch.jit.script(net).save(p("scripted.pt"))
    hostile(p("mlp_f32.pt"))
    print("wrote", sorted(os.listdir(OUT)))


def verify(d):
    """Loads each nn-written .pt in PyTorch, strictly, and records the result."""
    results = {}
    for name in sorted(os.listdir(d)):
        if not name.endswith(".pt"):
            continue
        path = os.path.join(d, name)
        sd = torch.load(path, weights_only=True)
        net = Tied() if name.startswith("tied") else mlp()
        if name.startswith("tied"):
            # written once, loaded as one storage
            assert sd["a.weight"].data_ptr() == sd["b.weight"].data_ptr(), name
        if name.startswith("mlp_f16") or name.startswith("mlp_bf16"):
            net = net.to(next(iter(sd.values())).dtype)
        net.load_state_dict(sd, strict=True)
        want = load_file(os.path.join(d, name.removesuffix(".pt") + ".expect.safetensors"))
        for k, v in want.items():
            assert torch.equal(sd[k], v.to(sd[k].dtype)), (name, k)
        with open(path, "rb") as f:
            digest = hashlib.sha256(f.read()).hexdigest()
        results[name] = {"sha256": digest,
                         "tensors": {k: [str(v.dtype).removeprefix("torch."), list(v.shape)] for k, v in sd.items()}}
        print("ok", name, "loaded with weights_only=True and load_state_dict(strict=True)")
    with open(p("verified.json"), "w") as f:
        json.dump({"torch": torch.__version__, "files": results}, f, indent=1, sort_keys=True)
        f.write("\n")


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--verify":
        verify(sys.argv[2])
    else:
        make()
