"""An ncnn graph (read by `serve.ncnn_model`) rebuilt as a torch module.

Each ncnn layer becomes the torch operation that computes the same thing (a
Convolution with its fused activation, PReLU, PixelShuffle, Interp, Concat,
Eltwise, BinaryOp, Split); the module runs them in the file's order and drops
each intermediate as soon as its last reader has run.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from core.errors import ModelLoadError
from serve.ncnn_model import NcnnLayer

__all__ = ["NcnnGraph"]

_INTERP_MODES = {1: "nearest", 2: "bilinear", 3: "bicubic"}


def _unsupported(layer: NcnnLayer, what: str) -> ModelLoadError:
    return ModelLoadError(f"layer {layer.name} ({layer.kind}): {what} is not supported")


class _Conv(nn.Module):
    """ncnn Convolution: a Conv2d, then its fused activation (none, ReLU or leaky ReLU)."""

    def __init__(self, layer: NcnnLayer):
        super().__init__()
        out_ch, kernel_w = int(layer.param(0, 0)), int(layer.param(1, 0))
        kernel = (int(layer.param(11, kernel_w)), kernel_w)
        pad_w = int(layer.param(4, 0))
        pad = (int(layer.param(14, pad_w)), pad_w)
        if min(pad) < 0:
            raise _unsupported(layer, f"padding {pad}")
        in_ch, rest = divmod(int(layer.param(6, 0)), out_ch * kernel[0] * kernel[1])
        if rest or not in_ch:
            raise ModelLoadError(f"layer {layer.name}: weight size does not fit its shape")
        dilation_w, stride_w = int(layer.param(2, 1)), int(layer.param(3, 1))
        self.conv = nn.Conv2d(
            in_ch,
            out_ch,
            kernel,
            stride=(int(layer.param(13, stride_w)), stride_w),
            padding=pad,
            dilation=(int(layer.param(12, dilation_w)), dilation_w),
            bias=bool(layer.param(5, 0)),
        )
        self.conv.weight.data = torch.from_numpy(layer.weights[0]).reshape(self.conv.weight.shape)
        if self.conv.bias is not None:
            self.conv.bias.data = torch.from_numpy(layer.weights[1])
        activation, args = int(layer.param(9, 0)), layer.array(10)
        if activation == 0:
            self.act: nn.Module = nn.Identity()
        elif activation == 1:
            self.act = nn.ReLU()
        elif activation == 2:
            self.act = nn.LeakyReLU(args[0] if args else 0.0)
        else:
            raise _unsupported(layer, f"activation type {activation}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.conv(x))


class _Interp(nn.Module):
    """ncnn Interp by scale factors (half-pixel centres, edge pixels repeated)."""

    def __init__(self, layer: NcnnLayer):
        super().__init__()
        if layer.param(3, 0) or layer.param(4, 0) or layer.param(5, 0) or layer.param(6, 0):
            raise _unsupported(layer, "a fixed output size or align_corner")
        mode = _INTERP_MODES.get(int(layer.param(0, 0)))
        if mode is None:
            raise _unsupported(layer, f"resize type {layer.param(0, 0)}")
        self.mode = mode
        self.scale = (float(layer.param(1, 1.0)), float(layer.param(2, 1.0)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = (int(x.shape[2] * self.scale[0]), int(x.shape[3] * self.scale[1]))
        if size == tuple(x.shape[2:]):
            return x
        if self.mode == "nearest":
            return F.interpolate(x, size=size, mode="nearest")
        return F.interpolate(x, size=size, mode=self.mode, align_corners=False)


class _Eltwise(nn.Module):
    """ncnn Eltwise: product, sum (with per-input coefficients when given) or maximum."""

    def __init__(self, layer: NcnnLayer):
        super().__init__()
        self.op = int(layer.param(0, 0))
        if self.op not in (0, 1, 2):
            raise _unsupported(layer, f"operation {self.op}")
        self.coeffs = layer.array(1)

    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        if self.op == 1 and self.coeffs:
            xs = tuple(x * c for x, c in zip(xs, self.coeffs, strict=True))
        combine = (torch.mul, torch.add, torch.maximum)[self.op]
        result = xs[0]
        for x in xs[1:]:
            result = combine(result, x)
        return result


class _BinaryOp(nn.Module):
    """ncnn BinaryOp on two blobs: add, subtract or multiply."""

    def __init__(self, layer: NcnnLayer):
        super().__init__()
        op = int(layer.param(0, 0))
        if layer.param(1, 0) or len(layer.inputs) != 2 or op not in (0, 1, 2):
            raise _unsupported(layer, f"operation {op} (or a scalar operand)")
        self.combine = (torch.add, torch.sub, torch.mul)[op]

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return self.combine(a, b)


class _Concat(nn.Module):
    def __init__(self, layer: NcnnLayer):
        super().__init__()
        if int(layer.param(0, 0)) != 0:
            raise _unsupported(layer, f"axis {layer.param(0, 0)}")

    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        return torch.cat(xs, 1)


def _prelu(layer: NcnnLayer) -> nn.Module:
    prelu = nn.PReLU(layer.weights[0].size)
    prelu.weight.data = torch.from_numpy(layer.weights[0])
    return prelu


def _pixel_shuffle(layer: NcnnLayer) -> nn.Module:
    if int(layer.param(1, 0)) != 0:
        raise _unsupported(layer, f"mode {layer.param(1, 0)}")
    return nn.PixelShuffle(int(layer.param(0, 1)))


_BUILDERS = {
    "Convolution": _Conv,
    "Interp": _Interp,
    "Eltwise": _Eltwise,
    "BinaryOp": _BinaryOp,
    "Concat": _Concat,
    "PReLU": _prelu,
    "PixelShuffle": _pixel_shuffle,
    "Split": lambda layer: nn.Identity(),
}


class NcnnGraph(nn.Module):
    """Runs the layers of one ncnn graph with one input blob and one output blob."""

    def __init__(self, layers: list[NcnnLayer]):
        super().__init__()
        inputs = [blob for layer in layers if layer.kind == "Input" for blob in layer.outputs]
        read = {blob for layer in layers for blob in layer.inputs}
        outputs = [blob for layer in layers for blob in layer.outputs if blob not in read]
        if len(inputs) != 1 or len(outputs) != 1:
            raise ModelLoadError(
                f"the graph must have one input and one output blob, has {inputs} and {outputs}"
            )
        self.input, self.output = inputs[0], outputs[0]
        self.steps = [layer for layer in layers if layer.kind != "Input"]
        self.ops = nn.ModuleList(_BUILDERS[layer.kind](layer) for layer in self.steps)
        last_use = {blob: i for i, layer in enumerate(self.steps) for blob in layer.inputs}
        self.drop = [
            [blob for blob in layer.inputs if last_use[blob] == i]
            for i, layer in enumerate(self.steps)
        ]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        blobs = {self.input: x}
        for layer, op, drop in zip(self.steps, self.ops, self.drop, strict=True):
            result = op(*(blobs[blob] for blob in layer.inputs))
            for blob in drop:
                del blobs[blob]
            for blob in layer.outputs:
                blobs[blob] = result
        return blobs[self.output]
