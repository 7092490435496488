"""The torch upscaler backend: the shipped ncnn Real-ESRGAN graphs rebuilt in torch.

Each variant runs on both backends on a crop of the demo photo and must agree
to 45 dB PSNR (measured: 91-96 dB, at most 1 level apart); the whole photo
takes minutes for x4plus on a CPU, `bench/bench_upscaler_backends.py` measures it.
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from skimage.data import astronaut

from core.errors import ModelLoadError
from core.largeformat.upscaling import Box
from core.upscaler_variants import REALESRGAN_VARIANTS
from serve.ncnn_model import read_model
from serve.upscaler import Upscaler, choose_backend, load_upscaler, model_files

MIN_PSNR_DB = 45.0
ANIME = "realesrgan:animevideov3-x4"


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255**2 / mse)


def both(source: str, scale: int, threads: int = 2) -> tuple[Upscaler, Upscaler]:
    """The (ncnn, torch) engines of one source, both on the CPU."""
    ncnn_engine = load_upscaler(source, scale, threads=threads, backend="ncnn")
    torch_engine = load_upscaler(source, scale, threads=threads, backend="torch")
    assert (ncnn_engine.backend, torch_engine.backend) == ("ncnn", "torch")
    assert torch_engine.device == "cpu"
    return ncnn_engine, torch_engine


@pytest.fixture(scope="module")
def anime() -> tuple[Upscaler, Upscaler]:
    return both(ANIME, 4)


@pytest.mark.parametrize("variant", sorted(REALESRGAN_VARIANTS))
def test_torch_and_ncnn_agree_on_the_demo_photo(variant):
    scale = REALESRGAN_VARIANTS[variant].scale
    ncnn_engine, torch_engine = both(f"realesrgan:{variant}", scale)
    photo = astronaut()[40:88, 180:244]  # the face and the flag's edge: 64x48
    expected, got = ncnn_engine.upscale(photo), torch_engine.upscale(photo)
    assert got.shape == expected.shape == (48 * scale, 64 * scale, 3)
    assert got.dtype == np.uint8
    assert psnr(got, expected) >= MIN_PSNR_DB
    # Not two blank images agreeing: the result is the photo, enlarged.
    assert got.std() > 20 and psnr(got[::scale, ::scale], photo) > 20


def test_crops_and_tiles_behave_as_with_ncnn(anime):
    _, torch_engine = anime
    photo = astronaut()[200:230, 300:340]
    whole = torch_engine.upscale(photo)
    crop = Box(8, 4, 100, 64)
    assert np.array_equal(torch_engine.upscale(photo, crop), crop.cut(whole))
    assert np.array_equal(torch_engine.upscale(photo.copy()), whole)
    with pytest.raises(ValueError, match="outside the 160x120 result"):
        torch_engine.upscale(photo, Box(0, 0, 161, 120))
    with pytest.raises(ValueError, match="uint8 \\(H, W, 3\\)"):
        torch_engine.upscale(photo.astype(np.float32))


@pytest.mark.parametrize(
    ("requested", "cuda", "runs"),
    [
        ("auto", True, "torch"),
        ("auto", False, "ncnn"),
        ("ncnn", True, "ncnn"),
        ("torch", False, "torch"),
    ],
)
def test_auto_picks_torch_on_cuda_and_ncnn_on_the_cpu(requested, cuda, runs):
    assert choose_backend(requested, cuda) == runs


def test_auto_without_cuda_loads_ncnn():
    engine = load_upscaler(ANIME, 4, threads=1)
    assert (engine.backend, engine.device) == ("ncnn", "cpu")


def copy_model(tmp_path, source: str = ANIME):
    param, weights = model_files(source)
    target = tmp_path / "model.param"
    shutil.copy(param, target)
    shutil.copy(weights, target.with_suffix(".bin"))
    return target


def test_a_user_param_path_runs_on_torch(tmp_path, anime):
    param = copy_model(tmp_path)
    engine = load_upscaler(str(param), 4, threads=2, backend="torch")
    photo = astronaut()[0:24, 0:32]
    assert np.array_equal(engine.upscale(photo), anime[1].upscale(photo))


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda text: text.replace("PReLU ", "Swish ", 1), "has type Swish, which the torch"),
        (lambda text: text.replace("7767517", "7767518", 1), "not an ncnn .param file"),
        (lambda text: text.replace("0=64 1=3", "0=64 1=x3", 1), "bad param '1=x3'"),
        (lambda text: text.replace("41 42", "44 42", 1), "declares 44 layers but holds 41"),
        (lambda text: text.replace("6=36864", "6=36860", 1), "Conv_4: weight tag 0x.* neither"),
    ],
)
def test_a_bad_param_file_gives_a_clear_error(tmp_path, edit, message):
    param = copy_model(tmp_path, "realesrgan:animevideov3-x2")
    param.write_text(edit(param.read_text()))
    with pytest.raises(ModelLoadError, match=message) as caught:
        load_upscaler(str(param), 2, backend="torch")
    assert str(param) in str(caught.value)


def test_weights_that_do_not_fit_the_graph_are_refused(tmp_path):
    param = copy_model(tmp_path)
    weights = param.with_suffix(".bin")
    weights.write_bytes(weights.read_bytes()[:-8])
    with pytest.raises(ModelLoadError, match="ends inside layer Conv_34"):
        read_model(param, weights)
    weights.write_bytes(model_files(ANIME)[1].read_bytes() + b"\0" * 4)
    with pytest.raises(ModelLoadError, match="holds 1247372 bytes but .* reads 1247368"):
        load_upscaler(str(param), 4, backend="torch")


def test_a_wrong_scale_is_refused_at_load(tmp_path):
    with pytest.raises(ModelLoadError, match="not 16x16 \\(scale 2\\)"):
        load_upscaler(ANIME, 2, backend="torch")
