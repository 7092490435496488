"""Will a model's replica fit on a GPU? Weights counted from safetensors headers, no loading.

A replica's GPU memory is the weights it keeps on the GPU plus working memory. The
weights are exact: every component's parameter count from its headers, times the
bytes of the dtype the replica runs at. The working memory (`reserve`) is an
ESTIMATE, per family and per megapixel, not a measurement: the CUDA context and
allocator slack, the denoiser's activations for each image of a batch (twice with
classifier-free guidance), and the VAE decoder's activations, which dominate at high
resolution. `vae_tiling` caps the VAE's share at one tile (the VAE's `sample_size`),
`vae_slicing` at one image of the batch, `attention_slicing` trims the UNet's share.
What stays on the GPU by option: everything (`none`); everything but SD3's T5
(`drop_t5`); the largest component (`offload: model`); the largest single module,
one layer's weights (`offload: sequential`).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from core.config import ModelConfig
from core.errors import ModelLoadError
from core.memory_options import MemoryOptions, gpu_auto_dtype
from core.weights_headers import WeightFiles, component_tensors

__all__ = [
    "GIB",
    "GPU_SIZES_GB",
    "ComponentWeights",
    "ModelPlan",
    "OptionFit",
    "plan_model",
    "read_components",
    "reserve_gib",
]

GIB = 1024**3
GPU_SIZES_GB = (16, 24, 40, 80)  # nominal sizes, counted as GiB (an 80 GB card has 80 GiB)
DTYPE_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2}

# Working-memory estimates (GiB), for 16-bit activations; float32 doubles them.
CONTEXT_GIB = 0.75  # CUDA context, cuBLAS workspace, allocator slack
DENOISER_GIB_PER_MP = {"sd": 1.2, "sdxl": 1.0, "sd3": 0.8, "flux": 0.8}  # per image
GUIDED_COPIES = {"sd": 2, "sdxl": 2, "sd3": 2, "flux": 1}  # CFG runs two; Flux-dev is distilled
VAE_GIB_PER_MP = 2.0  # the decoder's activations per image
ATTENTION_SLICED = 0.6  # share of the UNet's activations left with attention slicing


@dataclass(frozen=True)
class ComponentWeights:
    """One weighted component of a pipeline, as its headers describe it."""

    name: str
    class_name: str
    params: int
    largest_module_params: int  # the module (one layer) with the most weights of its own


@dataclass(frozen=True)
class OptionFit:
    """What a replica needs on the GPU with one memory option, and where it fits."""

    option: str
    weights_bytes: int
    reserve_bytes: int
    fits: dict[int, bool]

    @property
    def need_bytes(self) -> int:
        return self.weights_bytes + self.reserve_bytes


@dataclass(frozen=True)
class ModelPlan:
    """A model's components at its dtype and how each memory option fits each GPU size."""

    name: str
    family: str
    source: str
    dtype: str
    resolution: int
    batch: int
    components: list[ComponentWeights]
    options: list[OptionFit]

    def component_bytes(self, component: ComponentWeights) -> int:
        return component.params * DTYPE_BYTES[self.dtype]


def read_components(files: WeightFiles) -> tuple[list[ComponentWeights], int | None]:
    """Every weighted component in `model_index.json` (tokenizers and schedulers have no
    weights) and the VAE's tile side (its `sample_size`), from headers and configs only."""
    index = files.read_json("model_index.json")
    components = []
    for name, spec in index.items():
        if name.startswith("_") or not isinstance(spec, list) or spec[-1] is None:
            continue
        tensors = component_tensors(files, name)
        if not tensors:
            others = [f for f in files.files() if f.startswith(f"{name}/") and _weights(f)]
            if others:
                raise ModelLoadError(
                    f"{files.where}: {name} has no safetensors weights to read "
                    f"(only {', '.join(sorted(others))})"
                )
            continue
        modules: dict[str, int] = defaultdict(int)
        for tensor in tensors:
            modules[tensor.name.rpartition(".")[0]] += tensor.numel
        params = sum(t.numel for t in tensors)
        components.append(ComponentWeights(name, spec[-1], params, max(modules.values())))
    if not components:
        raise ModelLoadError(f"no safetensors weights under {files.where}")
    tile = None
    if "vae/config.json" in files.files():
        size = files.read_json("vae/config.json").get("sample_size")
        tile = size[0] if isinstance(size, list) else size
    return sorted(components, key=lambda c: -c.params), tile


def _weights(path: str) -> bool:
    return path.endswith((".bin", ".pt", ".pth", ".ckpt", ".gguf"))


def reserve_gib(
    family: str,
    resolution: int,
    batch: int,
    dtype: str,
    options: MemoryOptions,
    vae_tile: int | None,
) -> float:
    """The working-memory ESTIMATE of one replica's call (see the module's docstring)."""
    megapixels = resolution * resolution / 1e6
    scale = DTYPE_BYTES[dtype] / 2
    denoiser = DENOISER_GIB_PER_MP[family] * megapixels * batch * GUIDED_COPIES[family]
    if options.attention_slicing and family in ("sd", "sdxl"):
        denoiser *= ATTENTION_SLICED
    vae_side = min(resolution, vae_tile) if options.vae_tiling and vae_tile else resolution
    vae = VAE_GIB_PER_MP * vae_side * vae_side / 1e6 * (1 if options.vae_slicing else batch)
    return CONTEXT_GIB + scale * (denoiser + vae)


def _option_sets(family: str, configured: MemoryOptions) -> list[tuple[str, MemoryOptions]]:
    """The options the plan weighs: each alone, then the model's own combination."""
    sets = [
        ("none", MemoryOptions()),
        ("vae_tiling", MemoryOptions(vae_tiling=True)),
        ("vae_slicing", MemoryOptions(vae_slicing=True)),
    ]
    if family in ("sd", "sdxl"):
        sets.append(("attention_slicing", MemoryOptions(attention_slicing=True)))
    if family == "sd3":
        sets.append(("drop_t5", MemoryOptions(drop_t5=True)))
    sets += [
        ("offload=model", MemoryOptions(offload="model")),
        ("offload=sequential", MemoryOptions(offload="sequential")),
    ]
    if not configured.is_default:
        sets.append(("configured", configured))
    return sets


def _gpu_weights(components: list[ComponentWeights], options: MemoryOptions) -> int:
    """Parameters on the GPU at the peak of a call with `options`."""
    kept = [c for c in components if not (options.drop_t5 and c.name == "text_encoder_3")]
    if options.offload == "model":
        return max(c.params for c in kept)
    if options.offload == "sequential":
        return max(c.largest_module_params for c in kept)
    return sum(c.params for c in kept)


def plan_model(
    name: str,
    model: ModelConfig,
    files: WeightFiles,
    resolution: int | None = None,
    gpu_sizes_gb: tuple[int, ...] = GPU_SIZES_GB,
) -> ModelPlan:
    """The memory plan of config entry `name` on a GPU, from `files`' headers."""
    components, vae_tile = read_components(files)
    dtype = gpu_auto_dtype(model.family) if model.dtype == "auto" else model.dtype
    side = resolution or model.native_resolution
    batch = model.batching.max_batch_size
    options = []
    for label, chosen in _option_sets(model.family, model.memory):
        weights = _gpu_weights(components, chosen) * DTYPE_BYTES[dtype]
        reserve = round(reserve_gib(model.family, side, batch, dtype, chosen, vae_tile) * GIB)
        fits = {gb: weights + reserve <= gb * GIB for gb in gpu_sizes_gb}
        options.append(OptionFit(label, weights, reserve, fits))
    return ModelPlan(name, model.family, model.source, dtype, side, batch, components, options)
