"""PyTorch's own printed trees, for tests/printing.rs: `repr()` of torchvision's
resnet18(), of 2-layer TransformerEncoders as tests/transformer_pytorch.rs builds them,
and of one (or a few) of every layer type nn has, each written to
tests/fixtures/repr/<case>.txt with a final newline.

PyTorch's printer is used as shipped: nothing here patches `__repr__` or `extra_repr`
(the point is that nn prints what PyTorch prints, `(0-1): 2 x ...` collapsing included).

    python3 tools/make_repr_fixtures.py   # torch 2.15, torchvision 0.29 (CPU is enough)
"""

import os

import torch
import torchvision
from torch import nn

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "repr")


def encoder(norm_first):
    layer = nn.TransformerEncoderLayer(64, 4, dim_feedforward=128, batch_first=True,
                                       norm_first=norm_first)
    return nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)


def cases():
    return {
        "resnet18": torchvision.models.resnet18(),
        "transformer_encoder": encoder(False),
        "transformer_encoder_norm_first": encoder(True),
        "transformer_encoder_layer": nn.TransformerEncoderLayer(16, 2, dim_feedforward=32,
                                                                dropout=0.0, activation="gelu"),
        "multihead_attention": nn.MultiheadAttention(16, 4, batch_first=True),
        "linear": nn.Linear(4, 8),
        "linear_no_bias": nn.Linear(4, 8, bias=False),
        "conv1d": nn.Conv1d(3, 8, 3),
        "conv2d": nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False),
        "conv2d_same": nn.Conv2d(3, 8, 3, padding="same", dilation=2, groups=1),
        "conv2d_groups": nn.Conv2d(4, 8, 3, padding=1, groups=2),
        "batchnorm1d": nn.BatchNorm1d(8),
        "batchnorm2d": nn.BatchNorm2d(64),
        "batchnorm2d_plain": nn.BatchNorm2d(4, momentum=None, affine=False,
                                            track_running_stats=False),
        "layernorm": nn.LayerNorm(64),
        "layernorm_plain": nn.LayerNorm([2, 3], eps=1e-6, elementwise_affine=False, bias=False),
        "rmsnorm": nn.RMSNorm([2, 6], eps=1e-6),
        "rmsnorm_default": nn.RMSNorm(6),
        "groupnorm": nn.GroupNorm(2, 8),
        "dropout": nn.Dropout(),
        "dropout_0": nn.Dropout(0.0),
        "dropout_01": nn.Dropout(0.1),
        "embedding": nn.Embedding(10, 4),
        "embedding_padding": nn.Embedding(10, 4, padding_idx=0),
        "flatten": nn.Flatten(),
        "maxpool2d": nn.MaxPool2d(3, stride=2, padding=1),
        "avgpool2d": nn.AvgPool2d((2, 3), ceil_mode=True),
        "adaptive_avgpool2d": nn.AdaptiveAvgPool2d((1, 1)),
        "relu": nn.ReLU(),
        "relu_inplace": nn.ReLU(inplace=True),
        "silu": nn.SiLU(),
        "silu_inplace": nn.SiLU(inplace=True),
        "leaky_relu": nn.LeakyReLU(),
        "leaky_relu_inplace": nn.LeakyReLU(0.2, inplace=True),
        "gelu": nn.GELU(),
        "gelu_tanh": nn.GELU(approximate="tanh"),
        "sigmoid": nn.Sigmoid(),
        "tanh": nn.Tanh(),
        "softmax": nn.Softmax(dim=-1),
        "log_softmax": nn.LogSoftmax(dim=1),
        "identity": nn.Identity(),
        # Sequential lists every child; only ModuleList collapses repeats
        "sequential": nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.ReLU(), nn.Linear(8, 2)),
        "sequential_empty": nn.Sequential(),
        "module_list": nn.ModuleList([nn.ReLU(), nn.ReLU(), nn.Tanh(), nn.ReLU(),
                                      nn.Linear(2, 2), nn.Linear(2, 2), nn.Linear(2, 2)]),
        "module_list_empty": nn.ModuleList(),
    }


def main():
    os.makedirs(OUT, exist_ok=True)
    for name, m in cases().items():
        with open(os.path.join(OUT, f"{name}.txt"), "w") as f:
            f.write(repr(m) + "\n")
    print(f"wrote {len(cases())} trees to {os.path.normpath(OUT)} "
          f"(torch {torch.__version__}, torchvision {torchvision.__version__})")


if __name__ == "__main__":
    main()
