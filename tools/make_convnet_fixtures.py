"""Reference data from PyTorch for the convolutional layers and ResNet-18 (tests/conv.rs,
tests/resnet.rs, examples/07_convnet.rs).

Pinned: torch==2.15.0, torchvision==0.29.2, safetensors (CPU only; nothing is
downloaded: every model is randomly initialized here). From the repository root:

    python3 -m venv .venv-torch
    .venv-torch/bin/pip install torch==2.15.0 torchvision==0.29.2 safetensors numpy
    .venv-torch/bin/python tools/make_convnet_fixtures.py          # the committed files
    .venv-torch/bin/python tools/make_convnet_fixtures.py --full DIR   # full ResNet-18

Writes (committed, small):
- tests/fixtures/conv_ops.safetensors: op cases NAME.in0.., NAME.out, NAME.upstream,
  NAME.gradK (gradient of sum(out * upstream) w.r.t. input K), the layout of
  tools/make_fixtures.py; and BatchNorm/GroupNorm cases (see `norm_cases`).
- tests/fixtures/resnet_narrow.safetensors + resnet_narrow.txt: a ResNet-18 with
  torchvision's own classes and names (torchvision.models.resnet.ResNet with BasicBlock,
  [2, 2, 2, 2]) and channel widths 4/8/16/32 instead of 64/128/256/512 (the full model's
  45 MB stay out of the repository). Keys: `sd.*` its state dict (random BN statistics,
  num_batches_tracked = 3), `x` an input [2, 3, 32, 32], `eval_out` the eval-mode output,
  `train_out` one train-mode output, `after.*` the buffers after that forward, `grad.*`
  the gradients of train_out.sum(); the .txt is print(model), the _keys.txt the state
  dict's keys in PyTorch's order (safetensors does not keep an order).

With `--full DIR`: DIR/resnet18.safetensors from torchvision.models.resnet18(weights=None,
num_classes=10) (`sd.*`, `x` [1, 3, 64, 64], `eval_out`), DIR/resnet18.txt and
DIR/resnet18_keys.txt, which
`cargo run --release --example 07_convnet -- DIR` checks.
"""
import os
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision
from safetensors.torch import save_file
import torchvision.models.resnet as tvr
from torchvision.models.resnet import BasicBlock

assert torch.__version__.startswith("2.15.0"), torch.__version__
assert torchvision.__version__.startswith("0.29.2"), torchvision.__version__

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures")


import warnings

# padding="same" with an even kernel: PyTorch pads a copy, which is what we compare with
warnings.filterwarnings("ignore", message="Using padding='same'")


def op_cases(g):
    r = lambda *s: torch.randn(*s, generator=g)
    return {
        "conv2d_basic": ([r(2, 3, 6, 5), r(4, 3, 3, 3), r(4)], lambda x, w, b: F.conv2d(x, w, b)),
        "conv2d_stride_pad": (
            [r(2, 2, 7, 8), r(3, 2, 3, 2), r(3)],
            lambda x, w, b: F.conv2d(x, w, b, stride=(2, 3), padding=(1, 2)),
        ),
        "conv2d_dilation_groups": (
            [r(1, 4, 9, 7), r(6, 2, 3, 2)],
            lambda x, w: F.conv2d(x, w, None, stride=1, padding=2, dilation=(2, 1), groups=2),
        ),
        "conv2d_depthwise": (
            [r(2, 3, 6, 6), r(6, 1, 3, 3), r(6)],
            lambda x, w, b: F.conv2d(x, w, b, stride=2, padding=1, groups=3),
        ),
        "conv2d_same_even_kernel": (
            [r(1, 2, 5, 6), r(3, 2, 4, 2)],
            lambda x, w: F.conv2d(x, w, None, padding="same", dilation=(1, 2)),
        ),
        "conv2d_1x1_stride2": ([r(2, 4, 6, 6), r(5, 4, 1, 1)], lambda x, w: F.conv2d(x, w, stride=2)),
        "conv1d": (
            [r(2, 4, 11), r(6, 2, 3), r(6)],
            lambda x, w, b: F.conv1d(x, w, b, stride=2, padding=1, dilation=2, groups=2),
        ),
        "max_pool2d": ([r(2, 3, 7, 6)], lambda x: F.max_pool2d(x, 3, 2, 1)),
        "max_pool2d_dilation_ceil": (
            [r(1, 2, 8, 9)],
            lambda x: F.max_pool2d(x, (2, 3), (2, 2), (1, 1), dilation=(2, 1), ceil_mode=True),
        ),
        "avg_pool2d_include_pad": ([r(2, 2, 7, 6)], lambda x: F.avg_pool2d(x, 3, 2, 1)),
        "avg_pool2d_exclude_pad_ceil": (
            [r(1, 3, 7, 6)],
            lambda x: F.avg_pool2d(x, (3, 2), (2, 2), (1, 1), ceil_mode=True, count_include_pad=False),
        ),
        "adaptive_avg_pool2d": ([r(2, 3, 7, 5)], lambda x: F.adaptive_avg_pool2d(x, (3, 2))),
        "adaptive_avg_pool2d_1": ([r(2, 3, 4, 5)], lambda x: F.adaptive_avg_pool2d(x, 1)),
    }


def norm_cases(g, out):
    """`bn2d.*`: BatchNorm2d(3, momentum=0.2) with random affine and running stats:
    `x`, two train forwards `train_out0/1` (the second on `x2`) with buffers
    `after.*`, the eval output `eval_out`, and the gradients `grad.*` / `grad.x` of
    sum(train_out0 * upstream). `bn1d_cma.*`: BatchNorm1d(4, momentum=None) on [5, 4] and
    [5, 4, 3] inputs, buffers after both. `gn.*`: GroupNorm(2, 6) on [2, 6, 3, 4] with
    random affine, output and gradients."""
    r = lambda *s: torch.randn(*s, generator=g)
    bn = nn.BatchNorm2d(3, momentum=0.2)
    with torch.no_grad():
        bn.weight.copy_(r(3))
        bn.bias.copy_(r(3))
        bn.running_mean.copy_(r(3))
        bn.running_var.copy_(r(3).abs() + 0.5)
    for k, v in bn.state_dict().items():
        out[f"bn2d.sd.{k}"] = v.clone()
    x, x2, up = r(4, 3, 5, 6) * 2 + 1, r(2, 3, 3, 3), r(4, 3, 5, 6)
    xg = x.clone().requires_grad_(True)
    y = bn(xg)
    (y * up).sum().backward()
    out["bn2d.x"], out["bn2d.x2"], out["bn2d.upstream"] = x, x2, up
    out["bn2d.train_out0"] = y.detach()
    out["bn2d.train_out1"] = bn(x2).detach()
    out["bn2d.grad.x"], out["bn2d.grad.weight"], out["bn2d.grad.bias"] = xg.grad, bn.weight.grad, bn.bias.grad
    for k, v in bn.state_dict().items():
        out[f"bn2d.after.{k}"] = v.clone()
    bn.eval()
    out["bn2d.eval_out"] = bn(x).detach()

    bn1 = nn.BatchNorm1d(4, momentum=None)
    a, b = r(5, 4), r(5, 4, 3)
    out["bn1d_cma.x"], out["bn1d_cma.x2"] = a, b
    out["bn1d_cma.train_out0"] = bn1(a).detach()
    out["bn1d_cma.train_out1"] = bn1(b).detach()
    for k, v in bn1.state_dict().items():
        out[f"bn1d_cma.after.{k}"] = v.clone()

    gn = nn.GroupNorm(2, 6)
    with torch.no_grad():
        gn.weight.copy_(r(6))
        gn.bias.copy_(r(6))
    x, up = r(2, 6, 3, 4), r(2, 6, 3, 4)
    xg = x.clone().requires_grad_(True)
    y = gn(xg)
    (y * up).sum().backward()
    out["gn.x"], out["gn.upstream"], out["gn.out"] = x, up, y.detach()
    out["gn.sd.weight"], out["gn.sd.bias"] = gn.weight.detach().clone(), gn.bias.detach().clone()
    out["gn.grad.x"], out["gn.grad.weight"], out["gn.grad.bias"] = xg.grad, gn.weight.grad, gn.bias.grad


class ResNet(tvr.ResNet):
    """torchvision's ResNet with narrow stages: the same classes, names and forward
    (ResNet.__init__ hard-codes 64..512, so its body is repeated with `widths`)."""

    def __init__(self, widths=(4, 8, 16, 32), layers=(2, 2, 2, 2), num_classes=10):
        nn.Module.__init__(self)
        self._norm_layer = nn.BatchNorm2d
        self.inplanes, self.dilation, self.groups, self.base_width = widths[0], 1, 1, 64
        self.conv1 = nn.Conv2d(3, widths[0], kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(BasicBlock, widths[0], layers[0])
        self.layer2 = self._make_layer(BasicBlock, widths[1], layers[1], stride=2)
        self.layer3 = self._make_layer(BasicBlock, widths[2], layers[2], stride=2)
        self.layer4 = self._make_layer(BasicBlock, widths[3], layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(widths[3] * BasicBlock.expansion, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")


def randomize_stats(model, g):
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                c = m.num_features
                m.weight.copy_(1 + 0.2 * torch.randn(c, generator=g))
                m.bias.copy_(0.2 * torch.randn(c, generator=g))
                m.running_mean.copy_(0.2 * torch.randn(c, generator=g))
                m.running_var.copy_(1 + 0.3 * torch.rand(c, generator=g))
                m.num_batches_tracked.fill_(3)


def resnet_case(model, x, out):
    for k, v in model.state_dict().items():
        out[f"sd.{k}"] = v.clone()
    out["x"] = x
    model.eval()
    with torch.no_grad():
        out["eval_out"] = model(x)
    model.train()
    y = model(x)
    out["train_out"] = y.detach()
    y.sum().backward()
    for k, v in model.named_buffers():
        out[f"after.{k}"] = v.clone()
    for k, p in model.named_parameters():
        out[f"grad.{k}"] = p.grad.clone()


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "--full":
        g = torch.Generator().manual_seed(18)
        torch.manual_seed(18)
        model = torchvision.models.resnet18(weights=None, num_classes=10)
        randomize_stats(model, g)
        out = {f"sd.{k}": v.clone() for k, v in model.state_dict().items()}
        x = torch.randn(1, 3, 64, 64, generator=g)
        model.eval()
        with torch.no_grad():
            out["x"], out["eval_out"] = x, model(x)
        os.makedirs(sys.argv[2], exist_ok=True)
        save_file(out, os.path.join(sys.argv[2], "resnet18.safetensors"))
        with open(os.path.join(sys.argv[2], "resnet18.txt"), "w") as f:
            f.write(repr(model) + "\n")
        with open(os.path.join(sys.argv[2], "resnet18_keys.txt"), "w") as f:
            f.write("".join(k + "\n" for k in model.state_dict()))
        return
    g = torch.Generator().manual_seed(10)
    out = {}
    for name, (inputs, f) in op_cases(g).items():
        xs = [t.clone().requires_grad_(True) for t in inputs]
        y = f(*xs)
        up = torch.randn(*y.shape, generator=g)
        (y * up).sum().backward()
        for i, t in enumerate(inputs):
            out[f"{name}.in{i}"] = t
            out[f"{name}.grad{i}"] = xs[i].grad
        out[f"{name}.out"], out[f"{name}.upstream"] = y.detach(), up
    norm_cases(g, out)
    save_file({k: v.contiguous() for k, v in out.items()}, os.path.join(OUT, "conv_ops.safetensors"))

    torch.manual_seed(10)
    model = ResNet()
    randomize_stats(model, g)
    out = {}
    resnet_case(model, torch.randn(2, 3, 32, 32, generator=g), out)
    save_file(out, os.path.join(OUT, "resnet_narrow.safetensors"))
    with open(os.path.join(OUT, "resnet_narrow.txt"), "w") as f:
        f.write(repr(model) + "\n")
    with open(os.path.join(OUT, "resnet_narrow_keys.txt"), "w") as f:
        f.write("".join(k + "\n" for k in model.state_dict()))


if __name__ == "__main__":
    main()
