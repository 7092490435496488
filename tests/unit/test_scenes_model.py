"""The scenes model: its offline tokenizer, its size, and a short training run that the
project's loader loads and renders with (the full run is `make scenes-model`)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import torch
from transformers import CLIPTextModel

from core.config import ModelConfig
from core.scenes.grammar import WORDS
from serve.loader import load_model
from serve.scenes_pipeline import MAX_TOKENS, build_scenes_pipeline, scenes_tokenizer

ROOT = Path(__file__).resolve().parents[2]
LONGEST = (
    "a small orange triangle at the bottom right and a large purple circle at the top left "
    "on a yellow background"
)


def test_every_grammar_word_is_one_token_and_other_text_still_tokenizes():
    tokenizer = scenes_tokenizer()
    assert all(len(tokenizer.tokenize(word)) == 1 for word in WORDS)
    assert len(tokenizer(LONGEST).input_ids) <= MAX_TOKENS
    inner = tokenizer("a mauve hexagon, please!").input_ids[1:-1]  # no unknown (= end) token
    assert len(inner) > 5 and tokenizer.unk_token_id not in inner


def test_the_untrained_pipeline_is_within_budget_and_seeded():
    a, b = build_scenes_pipeline(3), build_scenes_pipeline(3)
    parameters = sum(p.numel() for m in (a.vae, a.unet, a.text_encoder) for p in m.parameters())
    assert parameters * 4 / 1e6 < 30
    assert torch.equal(next(a.unet.parameters()), next(b.unet.parameters()))


def _train(out: Path, *extra: str) -> str:
    command = [sys.executable, str(ROOT / "scripts" / "train_scenes.py"), "--out", str(out)]
    command += ["--steps", "2", "--batch-size", "2", "--vae-batch-size", "2", *extra]
    command += ["--eval-prompts", "1", "--default-steps", "2", "--threads", "1"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def test_a_short_training_run_is_reproducible_and_the_loader_renders_with_it(tmp_path):
    # float32 runs where the precision does not matter: on a CPU without native bfloat16
    # (AVX2 only) the VAE's bfloat16 phase makes a run 4x longer (79 s against 19 s);
    # one mixed run trains it
    first, second = tmp_path / "first", tmp_path / "second"
    _train(first, "--precision", "float32")
    _train(second, "--precision", "float32")
    weights = Path("unet") / "diffusion_pytorch_model.safetensors"
    trained = (first / weights).read_bytes()
    assert trained == (second / weights).read_bytes()
    work = tmp_path / ".second-work"
    assert (work / "vae-phase.pt").exists() and (work / "unet-phase.pt").exists()
    again = _train(second, "--precision", "float32")  # both phases taken from the work folder
    assert "vae: kept from" in again and "unet: kept from" in again
    assert (second / weights).read_bytes() == trained
    # the joint phase trained the text encoder from its seeded weights
    untrained = build_scenes_pipeline(0).text_encoder.state_dict()
    kept = CLIPTextModel.from_pretrained(first / "text_encoder").state_dict()
    assert not all(torch.equal(kept[name], value) for name, value in untrained.items())
    card = (first / "MODEL_CARD.md").read_text()
    assert "## Held-out figures" in card and "| background |" in card
    assert "forward passes in float32" in card
    # phases kept by a float32 run are not taken for a mixed run (the default), which
    # trains other weights
    mixed = _train(second)
    assert "kept from" not in mixed
    assert (second / weights).read_bytes() != trained
    unet_phase = torch.load(work / "unet-phase.pt", weights_only=False)
    assert len(unet_phase["losses"]) == 2 and len(unet_phase["settings"]["vae"]) == 6
    assert unet_phase["settings"]["precision"] == "mixed"  # the default
    assert unet_phase["settings"]["vae"]["precision"] == "bfloat16"
    card = (second / "MODEL_CARD.md").read_text()
    assert "forward passes in bfloat16 for the VAE and float32 for the UNet" in card
    # a bfloat16 run takes the VAE phase the mixed run kept and trains its own UNet
    autocast = _train(second, "--precision", "bfloat16")
    assert "vae: kept from" in autocast and "unet: kept from" not in autocast
    assert "forward passes in bfloat16," in (second / "MODEL_CARD.md").read_text()
    model = ModelConfig(source=str(first), native_resolution=128, default_steps=2)
    loaded = load_model(model, tmp_path / "cache")
    image = loaded.txt2img(
        "a red circle on a white background", num_inference_steps=2, output_type="np"
    ).images[0]
    assert image.shape == (128, 128, 3)
