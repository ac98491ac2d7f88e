"""Reference files for `nn::data`'s readers and transforms (tests/data_readers.rs,
tests/data_transforms.rs), written by numpy, Pillow and torchvision themselves.

Pinned: torch==2.15.0, torchvision==0.29.2 (the project's other generators pin the same;
it runs against torch 2.15's Python API), numpy, pillow. From the repository root:

    .venv-torch/bin/python tools/make_data_fixtures.py

Writes tests/fixtures/data/ (small, committed):
- npy_*.npy by `np.save`: every array is `np.arange(n)` reshaped (and cast), so a test
  knows its values from its name; `_f` ones are Fortran order, `_be` big-endian.
- arrays.npz (`np.savez`, stored) and arrays_z.npz (`np.savez_compressed`, deflate):
  x = arange(6, f32).reshape(2, 3), y = arange(4, i64), flags = [True, False, True].
- images-idx3-ubyte(.gz), labels-idx1-ubyte(.gz): 5 images 4x3, pixel (n, r, c) =
  (n*12 + r*3 + c) * 7 % 256, label n % 10 (plain and gzip).
- cifar10.bin (3 records: label n, pixel k = (n + k) % 256) and cifar100.bin (coarse
  n + 1, fine 10 n + 5).
- folder/: an ImageFolder tree (classes `Zebra`, `cat`, `dog`; nested folders; PNG in
  both cases of extension, smooth JPEGs, a .txt that is skipped) and folder.json: torchvision's
  `ImageFolder(root).classes` and `.samples` (paths relative to folder/), plus each
  image's RGB pixels as Pillow decodes them (`pix_<k>.npy`).
- resized_crop.npy + resized_crop.json: `F.resized_crop(x, i, j, h, w, size,
  antialias=False)` (bilinear) of x = `resized_crop_in.npy` for each case.
- table.csv: a header and 4 rows (features a, b; label class).
"""
import gzip
import json
import os
import shutil

import numpy as np
import torch
from PIL import Image
from torchvision.datasets import ImageFolder
from torchvision.transforms import functional as F

OUT = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "data")


def npy():
    a = lambda n, dt: np.arange(n).astype(dt)
    np.save(f"{OUT}/npy_f32.npy", a(6, np.float32).reshape(2, 3))
    np.save(f"{OUT}/npy_f64_f.npy", np.asfortranarray(a(12, np.float64).reshape(3, 4)))
    np.save(f"{OUT}/npy_i64.npy", a(5, np.int64))
    np.save(f"{OUT}/npy_u8.npy", a(24, np.uint8).reshape(2, 3, 4))
    np.save(f"{OUT}/npy_i32_f.npy", np.asfortranarray(a(24, np.int32).reshape(2, 3, 4)))
    np.save(f"{OUT}/npy_f32_be.npy", a(6, ">f4").reshape(3, 2))
    np.save(f"{OUT}/npy_bool.npy", a(4, np.int64) % 2 == 1)
    arrays = dict(
        x=a(6, np.float32).reshape(2, 3), y=a(4, np.int64), flags=np.array([True, False, True])
    )
    np.savez(f"{OUT}/arrays.npz", **arrays)
    np.savez_compressed(f"{OUT}/arrays_z.npz", **arrays)


def idx():
    n, h, w = 5, 4, 3
    pix = ((np.arange(n * h * w) * 7) % 256).astype(np.uint8)
    img = bytes([0, 0, 8, 3]) + np.array([n, h, w], ">u4").tobytes() + pix.tobytes()
    lab = bytes([0, 0, 8, 1]) + np.array([n], ">u4").tobytes() + bytes(i % 10 for i in range(n))
    for name, data in [("images-idx3-ubyte", img), ("labels-idx1-ubyte", lab)]:
        open(f"{OUT}/{name}", "wb").write(data)
        with open(f"{OUT}/{name}.gz", "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as g:
            g.write(data)


def cifar():
    k = np.arange(3072)
    ten = b"".join(bytes([n]) + ((n + k) % 256).astype(np.uint8).tobytes() for n in range(3))
    hundred = b"".join(bytes([n + 1, 10 * n + 5]) + ((n + k) % 256).astype(np.uint8).tobytes() for n in range(3))
    open(f"{OUT}/cifar10.bin", "wb").write(ten)
    open(f"{OUT}/cifar100.bin", "wb").write(hundred)


def folder():
    root = f"{OUT}/folder"
    shutil.rmtree(root, ignore_errors=True)
    rng = np.random.default_rng(0)
    files = ["Zebra/z1.png", "cat/b.PNG", "cat/a.jpg", "cat/sub/c.png", "cat/sub-x/d.png", "cat/sub/deep/e.png", "dog/x.jpeg"]
    for f in files:
        os.makedirs(os.path.dirname(f"{root}/{f}"), exist_ok=True)
        if f.lower().endswith(("jpg", "jpeg")):
            # smooth, so that two conforming JPEG decoders agree within a few steps
            y, x = np.mgrid[0:16, 0:12]
            base = rng.integers(0, 100, size=3)
            arr = np.stack([base[c] + 4 * x + 5 * y for c in range(3)], -1).astype(np.uint8)
            Image.fromarray(arr).save(f"{root}/{f}", format="JPEG", quality=95)
        else:
            arr = rng.integers(0, 256, size=(5, 4, 3), dtype=np.uint8)
            Image.fromarray(arr).save(f"{root}/{f}", format="PNG")
    open(f"{root}/dog/notes.txt", "w").write("not an image\n")
    ds = ImageFolder(root)
    samples = []
    for k, (path, cls) in enumerate(ds.samples):
        pix = np.asarray(Image.open(path).convert("RGB"))
        np.save(f"{OUT}/pix_{k}.npy", pix)
        samples.append([os.path.relpath(path, root).replace(os.sep, "/"), cls])
    json.dump({"classes": ds.classes, "samples": samples}, open(f"{OUT}/folder.json", "w"), indent=1)


def resized_crop():
    x = torch.rand(3, 9, 11, generator=torch.Generator().manual_seed(0))
    np.save(f"{OUT}/resized_crop_in.npy", x.numpy())
    cases = [[1, 2, 6, 7, [4, 5]], [0, 0, 9, 11, [13, 17]], [2, 3, 5, 4, [5, 4]], [3, 1, 4, 9, [8, 3]]]
    outs = [F.resized_crop(x, i, j, h, w, size, antialias=False).numpy().ravel() for i, j, h, w, size in cases]
    np.save(f"{OUT}/resized_crop.npy", np.concatenate(outs))
    json.dump(cases, open(f"{OUT}/resized_crop.json", "w"))


def csv():
    rows = [[0.5, -1.0, 0], [1.25, 2.0, 2], [3.0, 0.0, 1], [-4.5, 8.0, 2]]
    with open(f"{OUT}/table.csv", "w") as f:
        f.write("a,b,class\n")
        for r in rows:
            f.write(f"{r[0]},{r[1]},{r[2]}\n")


if __name__ == "__main__":
    os.makedirs(OUT, exist_ok=True)
    npy()
    idx()
    cifar()
    folder()
    resized_crop()
    csv()
    print("wrote", OUT)
