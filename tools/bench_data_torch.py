"""PyTorch's side of benches/bench_data.rs (D1, D2): torch.utils.data.DataLoader on the
same shapes, median of 5 epochs after one warm-up, one JSON line per variant.

Pinned: torch==2.15.0 (torchvision==0.29.2 for D2's transforms when importable; the same
ops written in torch otherwise). Usage: python tools/bench_data_torch.py d1|d2
"""
import json
import sys
import time

import torch
from torch.utils.data import DataLoader, Dataset, TensorDataset


def median_epoch(loader):
    times = []
    for epoch in range(6):
        t = time.perf_counter()
        for _ in loader:
            pass
        times.append(time.perf_counter() - t)
    times = sorted(times[1:])
    return times[len(times) // 2], times[0]


def emit(workload, variant, med, best):
    print(json.dumps({"workload": workload, "variant": variant, "median_s": med, "best_s": best}))


def d1():
    torch.manual_seed(0)
    ds = TensorDataset(torch.rand(60000, 784), torch.randint(0, 10, (60000,)))
    loader = DataLoader(ds, batch_size=128, shuffle=True, num_workers=0)
    emit("D1", "workers0", *median_epoch(loader))


class Augmented(Dataset):
    def __init__(self, x, y):
        self.x, self.y = x, y
        try:
            from torchvision.transforms import v2 as T

            self.t = T.Compose([
                T.RandomCrop(32, padding=4),
                T.RandomHorizontalFlip(),
                T.Normalize([0.49, 0.48, 0.45], [0.25, 0.24, 0.26]),
            ])
        except ImportError:
            mean = torch.tensor([0.49, 0.48, 0.45]).view(3, 1, 1)
            std = torch.tensor([0.25, 0.24, 0.26]).view(3, 1, 1)

            def t(img):
                p = torch.nn.functional.pad(img, (4, 4, 4, 4))
                i, j = torch.randint(0, 9, (2,)).tolist()
                img = p[:, i:i + 32, j:j + 32]
                if torch.rand(1) < 0.5:
                    img = img.flip(-1)
                return (img - mean) / std

            self.t = t

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        return self.t(self.x[i]), self.y[i]


def d2():
    torch.manual_seed(0)
    ds = Augmented(torch.rand(5000, 3, 32, 32), torch.randint(0, 10, (5000,)))
    for workers in (0, 2):
        loader = DataLoader(ds, batch_size=128, shuffle=True, num_workers=workers,
                            persistent_workers=workers > 0)
        emit("D2", f"workers{workers}", *median_epoch(loader))


if __name__ == "__main__":
    {"d1": d1, "d2": d2}[sys.argv[1]]()
