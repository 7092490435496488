"""`models plan`: weights counted from safetensors headers (local, S3, Hub), fits, the CLI."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import boto3
import huggingface_hub
import pytest
import torch
from diffusers import DiffusionPipeline
from safetensors.torch import save_file
from typer.testing import CliRunner

from cli.main import app
from core.config import ModelConfig
from core.errors import ModelLoadError
from core.memory_options import MemoryOptions
from core.memory_plan import GIB, plan_model, read_components, reserve_gib
from core.weights_headers import HubFiles, LocalFiles, S3Files, hub_or_cache
from serve.tiny_pipeline import tiny_pipeline_dir
from tests.unit.conftest import BUCKET, DUMMY_CREDENTIALS, REGION

runner = CliRunner()


@pytest.fixture(scope="module")
def tiny_sd3(tmp_path_factory) -> Path:
    return tiny_pipeline_dir(tmp_path_factory.mktemp("cache"), seed=0, family="sd3")


def stored_counts(directory: Path) -> dict[str, tuple[int, int]]:
    """Each weighted component's (elements, largest module's elements), from loaded modules."""
    pipe = DiffusionPipeline.from_pretrained(directory)
    counts = {}
    for name, module in pipe.components.items():
        if isinstance(module, torch.nn.Module):
            tied: set[int] = set()  # a tied weight (T5's embedding) is stored once
            state = {
                key: tensor
                for key, tensor in module.state_dict().items()
                if not (tensor.data_ptr() in tied or tied.add(tensor.data_ptr()))
            }
            per_module: dict[str, int] = {}
            for key, tensor in state.items():
                owner = key.rpartition(".")[0]
                per_module[owner] = per_module.get(owner, 0) + tensor.numel()
            counts[name] = (sum(t.numel() for t in state.values()), max(per_module.values()))
    return counts


def test_header_counts_equal_the_loaded_modules_elements(tiny_sd3):
    components, tile = read_components(LocalFiles(tiny_sd3))
    counted = {c.name: (c.params, c.largest_module_params) for c in components}
    assert counted == stored_counts(tiny_sd3)
    assert set(counted) == {
        "transformer",
        "vae",
        "text_encoder",
        "text_encoder_2",
        "text_encoder_3",
    }
    assert tile == 256  # the tiny VAE's sample_size
    assert [c.params for c in components] == sorted((c.params for c in components), reverse=True)


def test_the_plan_weighs_each_option_with_exact_weights(tiny_sd3):
    model = ModelConfig(source=str(tiny_sd3), family="sd3", native_resolution=256)
    plan = plan_model("m", model, LocalFiles(tiny_sd3), gpu_sizes_gb=(1, 80))
    params = {c.name: c.params for c in plan.components}
    assert plan.dtype == "bfloat16" and plan.resolution == 256 and plan.batch == 4
    by_option = {o.option: o for o in plan.options}
    assert list(by_option) == [
        "none",
        "vae_tiling",
        "vae_slicing",
        "drop_t5",
        "offload=model",
        "offload=sequential",
    ]
    assert by_option["none"].weights_bytes == 2 * sum(params.values())
    without_t5 = sum(params.values()) - params["text_encoder_3"]
    assert by_option["drop_t5"].weights_bytes == 2 * without_t5
    assert by_option["offload=model"].weights_bytes == 2 * max(params.values())
    largest_module = max(c.largest_module_params for c in plan.components)
    assert by_option["offload=sequential"].weights_bytes == 2 * largest_module
    # batch 4: slicing decodes one image at a time; 256 px is one VAE tile, so tiling saves nothing
    assert by_option["vae_slicing"].reserve_bytes < by_option["none"].reserve_bytes
    assert by_option["vae_tiling"].reserve_bytes == by_option["none"].reserve_bytes
    for option in plan.options:
        assert option.fits == {1: option.need_bytes <= GIB, 80: True}


def test_the_plan_uses_a_pinned_dtype_and_adds_the_configured_combination(tiny_sd3):
    memory = {"offload": "model", "drop_t5": True}
    model = ModelConfig(source=str(tiny_sd3), family="sd3", dtype="float32", memory=memory)
    plan = plan_model("m", model, LocalFiles(tiny_sd3))
    configured = plan.options[-1]
    params = {c.name: c.params for c in plan.components}
    assert configured.option == "configured"
    assert configured.weights_bytes == 4 * max(
        v for k, v in params.items() if k != "text_encoder_3"
    )
    assert plan.component_bytes(plan.components[0]) == 4 * plan.components[0].params


def test_the_reserve_estimate_follows_resolution_batch_dtype_and_options():
    none = MemoryOptions()
    base = reserve_gib("sdxl", 1024, 1, "float16", none, 1024)
    assert reserve_gib("sdxl", 2048, 1, "float16", none, 1024) > 3 * base - 3  # ~4x activations
    assert reserve_gib("sdxl", 1024, 1, "float32", none, 1024) > base  # 4-byte activations
    tiled = reserve_gib("sdxl", 2048, 1, "float16", MemoryOptions(vae_tiling=True), 1024)
    assert tiled < reserve_gib("sdxl", 2048, 1, "float16", none, 1024)
    sliced = reserve_gib("sdxl", 1024, 4, "float16", MemoryOptions(vae_slicing=True), 1024)
    assert sliced < reserve_gib("sdxl", 1024, 4, "float16", none, 1024)
    attention = reserve_gib("sdxl", 1024, 1, "float16", MemoryOptions(attention_slicing=True), 1)
    assert attention < base
    assert reserve_gib("flux", 1024, 1, "bfloat16", none, 1024) < reserve_gib(
        "sd3", 1024, 1, "bfloat16", none, 1024
    )  # Flux-dev is guidance-distilled: one denoiser pass, SD3 runs two (CFG)


def write_pipeline(root: Path, files: dict[str, dict[str, torch.Tensor] | str]) -> Path:
    """A pipeline directory: `model_index.json` for its components, then the given files."""
    components = {path.split("/")[0] for path in files}
    index = {"_class_name": "StableDiffusionPipeline", "_diffusers_version": "0.42.1"}
    index |= {name: ["diffusers", "UNet2DConditionModel"] for name in components}
    index["tokenizer"] = ["transformers", "CLIPTokenizer"]  # no weights: not counted
    index["safety_checker"] = [None, None]
    root.mkdir(parents=True)
    (root / "model_index.json").write_text(json.dumps(index))
    for path, content in files.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, str):
            (root / path).write_text(content)
        else:
            save_file(content, str(root / path))
    return root


def test_sharded_weights_are_read_through_their_index_and_plain_files_win_over_variants(tmp_path):
    shard = {"down.0.weight": torch.zeros(4, 8), "down.0.bias": torch.zeros(4)}
    other = {"up.proj.weight": torch.zeros(16, 8, dtype=torch.float16)}
    index = {
        "weight_map": {
            "down.0.weight": "m-1.safetensors",
            "down.0.bias": "m-1.safetensors",
            "up.proj.weight": "m-2.safetensors",
        }
    }
    root = write_pipeline(
        tmp_path / "p",
        {
            "unet/m-1.safetensors": shard,
            "unet/m-2.safetensors": other,
            "unet/m.safetensors.index.json": json.dumps(index),
            "vae/diffusion_pytorch_model.safetensors": {"a.w": torch.zeros(3, 3)},
            "vae/diffusion_pytorch_model.fp16.safetensors": {"a.w": torch.zeros(99)},
        },
    )
    components, tile = read_components(LocalFiles(root))
    counted = {c.name: (c.params, c.largest_module_params) for c in components}
    assert counted == {"unet": (36 + 128, 128), "vae": (9, 9)} and tile is None


def test_a_source_without_safetensors_headers_is_an_error_naming_it(tmp_path):
    root = write_pipeline(tmp_path / "bin", {"unet/diffusion_pytorch_model.bin": "pickled"})
    with pytest.raises(ModelLoadError, match="unet has no safetensors weights to read"):
        read_components(LocalFiles(root))
    empty = write_pipeline(tmp_path / "empty", {"unet/config.json": "{}"})
    with pytest.raises(ModelLoadError, match="no safetensors weights under"):
        read_components(LocalFiles(empty))
    (tmp_path / "broken").mkdir()
    broken = write_pipeline(tmp_path / "broken/p", {"unet/x.safetensors": "{not a header"})
    with pytest.raises(ModelLoadError, match="not a safetensors file"):
        read_components(LocalFiles(broken))
    with pytest.raises(ModelLoadError, match="no model_index.json"):
        LocalFiles(tmp_path)


def test_s3_headers_are_read_by_ranged_gets_and_match_the_local_ones(
    tiny_sd3, aws_env, s3_endpoint
):
    client = boto3.client("s3", endpoint_url=s3_endpoint, region_name=REGION, **DUMMY_CREDENTIALS)
    for path in tiny_sd3.rglob("*"):
        if path.is_file():
            key = f"plans/sd3/{path.relative_to(tiny_sd3).as_posix()}"
            client.upload_file(str(path), BUCKET, key)
    ranges: list[str] = []
    client.meta.events.register(
        "provide-client-params.s3.GetObject",
        lambda params, **_: ranges.append(params.get("Range", "all")),
    )
    remote = read_components(S3Files(f"s3://{BUCKET}/plans/sd3", client=client))
    assert remote == read_components(LocalFiles(tiny_sd3))
    headers = [r for r in ranges if r != "all"]
    assert headers and all(r.startswith("bytes=") for r in headers)
    assert len(headers) == 2 * 5  # length, then header, of each component's one file
    with pytest.raises(ModelLoadError, match="no model_index.json under"):
        S3Files(f"s3://{BUCKET}/plans/nothing", client=client)


def test_hub_sources_use_the_local_cache_when_it_holds_the_snapshot(tiny_sd3, monkeypatch):
    def cached(repo, revision, local_files_only, cache_dir):
        assert (repo, revision, local_files_only) == ("org/model", "abc123", True)
        return str(tiny_sd3)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", cached)
    files = hub_or_cache("org/model", "abc123")
    assert isinstance(files, LocalFiles) and files.root == tiny_sd3


def test_hub_sources_otherwise_read_headers_over_http_never_weights(tiny_sd3, monkeypatch):
    """The Hub's calls faked from the local files: listing, small JSON files, headers."""

    def not_cached(*args, **kwargs):
        raise huggingface_hub.errors.LocalEntryNotFoundError("not cached")

    def download(repo, path, revision, cache_dir):
        assert not path.endswith(".safetensors"), "a weights file was downloaded"
        return str(tiny_sd3 / path)

    class FakeApi:
        def parse_safetensors_file_metadata(self, repo, path, revision):
            with open(tiny_sd3 / path, "rb") as handle:
                header = json.loads(handle.read(int.from_bytes(handle.read(8), "little")))
            header.pop("__metadata__", None)
            tensors = {
                name: huggingface_hub.utils.TensorInfo(
                    dtype=info["dtype"], shape=info["shape"], data_offsets=info["data_offsets"]
                )
                for name, info in header.items()
            }
            return huggingface_hub.utils.SafetensorsFileMetadata(metadata={}, tensors=tensors)

    local = LocalFiles(tiny_sd3)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", not_cached)
    monkeypatch.setattr(huggingface_hub, "list_repo_files", lambda repo, revision: local.files())
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", download)
    monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi)
    files = hub_or_cache("org/model", "abc123")
    assert isinstance(files, HubFiles) and files.where == "hf:org/model@abc123"
    assert read_components(files) == read_components(local)


# -- the command ------------------------------------------------------------------------


def write_config(tmp_path: Path, models: str) -> Path:
    path = tmp_path / "cluster.yaml"
    path.write_text(f"model_cache_dir: {tmp_path / 'cache'}\nmodels:\n{models}")
    return path


def test_models_plan_prints_components_and_fits_per_gpu_size(tiny_sd3, tmp_path):
    config = write_config(
        tmp_path,
        f"  art: {{source: {tiny_sd3}, family: sd3}}\n"
        "  up: {source: 'realesrgan:animevideov3-x4', family: upscaler, upscaler: {scale: 4}}\n",
    )
    result = runner.invoke(app, ["models", "plan", "--config", str(config)], env={"COLUMNS": "120"})
    assert result.exit_code == 0, result.output
    for text in (
        "art: sd3",
        "text_encoder_3",
        "T5EncoderModel",
        "drop_t5",
        "offload=sequential",
        "16 GB",
        "80 GB",
        "fits",
        "ESTIMATE",
        "not planned (no diffusers weights): up",
    ):
        assert text in result.output
    answer = runner.invoke(
        app, ["models", "plan", "-c", str(config), "--json", "--gpu-gb", "24", "-m", "art"]
    )
    plan = json.loads(answer.stdout)
    (art,) = plan["models"]
    read, _ = read_components(LocalFiles(tiny_sd3))
    assert {c["name"]: c["parameters"] for c in art["components"]} == {
        c.name: c.params for c in read
    }
    assert all(c["bytes"] == 2 * c["parameters"] for c in art["components"])
    assert all(set(o["fits_gb"]) == {"24"} for o in art["options"])


def test_models_plan_builds_a_tiny_source_in_the_model_cache(tmp_path):
    config = write_config(tmp_path, "  fast: {source: 'tiny:3', family: sd}\n")
    result = runner.invoke(app, ["models", "plan", "-c", str(config), "--json"])
    assert result.exit_code == 0, result.output
    names = {c["name"] for c in json.loads(result.stdout)["models"][0]["components"]}
    assert names == {"unet", "vae", "text_encoder"}
    assert (tmp_path / "cache" / "tiny-v1-seed3" / "model_index.json").exists()


@pytest.mark.parametrize(
    ("models", "code", "message"),
    [
        (None, 2, "cannot read file"),
        ("  m: {source: tiny, family: sd, memory: {drop_t5: true}}\n", 2, "memory.drop_t5"),
        ("  m: {source: BIN, family: sd}\n", 1, "unet has no safetensors weights"),
        ("  m: {source: tiny, family: sd}\n", 3, "no nope in"),
    ],
)
def test_models_plan_fails_in_one_readable_line(tmp_path, models, code, message):
    if models is None:
        config = tmp_path / "missing.yaml"
    else:
        source = write_pipeline(tmp_path / "bin", {"unet/diffusion_pytorch_model.bin": "x"})
        config = write_config(tmp_path, models.replace("BIN", str(source)))
    result = runner.invoke(
        app, ["models", "plan", "-c", str(config), "-m", "nope" if code == 3 else "m"]
    )
    assert result.exit_code == code
    assert message in result.output and "Traceback" not in result.output
    assert result.output.startswith("error: ")


def test_the_published_layouts_give_their_published_sizes(tmp_path):
    """scripts/published_model_headers.py: header-only files, sparse, at the published counts."""
    import importlib.util

    script = Path(__file__).resolve().parents[2] / "scripts" / "published_model_headers.py"
    spec = importlib.util.spec_from_file_location("published", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.write_model(tmp_path, "sdxl")
    components, tile = read_components(LocalFiles(tmp_path / "sdxl"))
    assert {c.name: c.params for c in components} == {
        "unet": 2_567_463_684,
        "text_encoder_2": 694_659_840,
        "text_encoder": 123_060_480,
        "vae": 83_653_863,
    }
    assert tile == 1024
    on_disk = sum(p.stat().st_blocks * 512 for p in (tmp_path / "sdxl").rglob("*") if p.is_file())
    assert on_disk < 10 * 2**20  # the 6.9 GB of weights are holes
    shutil.rmtree(tmp_path / "sdxl")
