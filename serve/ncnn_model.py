"""Reads an ncnn model (`.param` text graph, `.bin` weights) into numpy arrays, without ncnn.

Only the layers Real-ESRGAN's ncnn exports use are read (`LAYER_WEIGHTS`); any other
layer is refused by name. The `.bin` layout follows ncnn's `src/modelbin.cpp`: blobs
lie back to back in layer order; a blob loaded with type 0 (a Convolution's kernel)
starts with a 4-byte tag, 0 for float32 or 0x01306B47 for float16 (padded to 4
bytes); int8 and quantised-table blobs are refused. Type-1 blobs (biases, PReLU
slopes) are raw float32.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from core.errors import ModelLoadError

__all__ = ["LAYER_WEIGHTS", "NcnnLayer", "ParamValue", "read_model", "read_param"]

ParamValue = int | float | tuple[float, ...]

_MAGIC = 7767517
_ARRAY_KEY = -23300  # a key k <= -23300 holds an array for param -k - 23300
_TAG_FLOAT32 = 0
_TAG_FLOAT16 = 0x01306B47


@dataclass(frozen=True)
class NcnnLayer:
    """One line of a `.param` file and, once read, its weight blobs."""

    kind: str
    name: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    params: dict[int, ParamValue]
    weights: tuple[np.ndarray, ...] = ()

    def param(self, key: int, default: ParamValue) -> ParamValue:
        return self.params.get(key, default)

    def array(self, key: int) -> tuple[float, ...]:
        """An array param (empty when absent; a single value as one item)."""
        value = self.params.get(key, ())
        return value if isinstance(value, tuple) else (float(value),)


def _conv_blobs(layer: NcnnLayer) -> list[tuple[int, bool]]:
    if layer.param(8, 0):
        raise ModelLoadError(f"layer {layer.name}: int8 Convolution is not supported")
    blobs = [(int(layer.param(6, 0)), True)]
    if layer.param(5, 0):
        blobs.append((int(layer.param(0, 0)), False))
    return blobs


def _no_blobs(layer: NcnnLayer) -> list[tuple[int, bool]]:
    return []


# layer type -> its weight blobs in .bin order: (element count, whether type 0, i.e. tagged)
LAYER_WEIGHTS = {
    "Input": _no_blobs,
    "Split": _no_blobs,
    "Concat": _no_blobs,
    "Eltwise": _no_blobs,
    "BinaryOp": _no_blobs,
    "Interp": _no_blobs,
    "PixelShuffle": _no_blobs,
    "PReLU": lambda layer: [(int(layer.param(0, 1)), False)],
    "Convolution": _conv_blobs,
}


def _value(text: str) -> int | float:
    return float(text) if any(c in text for c in ".eE") else int(text)


def _parse_params(fields: list[str], where: str) -> dict[int, ParamValue]:
    params: dict[int, ParamValue] = {}
    for field in fields:
        key_text, sep, value = field.partition("=")
        try:
            key = int(key_text)
            if not sep:
                raise ValueError(field)
            if key <= _ARRAY_KEY:
                count, *items = value.split(",")
                if int(count) != len(items):
                    raise ValueError(field)
                params[-key + _ARRAY_KEY] = tuple(float(_value(item)) for item in items)
            else:
                params[key] = _value(value)
        except ValueError:
            raise ModelLoadError(f"{where}: bad param {field!r}") from None
    return params


def _parse_line(line: str, where: str) -> NcnnLayer:
    fields = line.split()
    try:
        n_in, n_out = int(fields[2]), int(fields[3])
    except (IndexError, ValueError):
        raise ModelLoadError(f"{where}: not an ncnn layer line: {line.strip()!r}") from None
    blobs = fields[4 : 4 + n_in + n_out]
    if len(blobs) != n_in + n_out:
        raise ModelLoadError(f"{where}: layer {fields[1]} names fewer blobs than it declares")
    if fields[0] not in LAYER_WEIGHTS:
        raise ModelLoadError(
            f"{where}: layer {fields[1]} has type {fields[0]}, which the torch upscaler "
            f"does not implement (known: {', '.join(sorted(LAYER_WEIGHTS))})"
        )
    return NcnnLayer(
        kind=fields[0],
        name=fields[1],
        inputs=tuple(blobs[:n_in]),
        outputs=tuple(blobs[n_in:]),
        params=_parse_params(fields[4 + n_in + n_out :], f"{where} layer {fields[1]}"),
    )


def read_param(path: Path) -> list[NcnnLayer]:
    """The layers of a text `.param` file; `ModelLoadError` saying where it is malformed."""
    lines = [line for line in path.read_text(errors="replace").splitlines() if line.strip()]
    if not lines or lines[0].strip() != str(_MAGIC):
        raise ModelLoadError(f"{path} is not an ncnn .param file (no magic {_MAGIC} first)")
    try:
        layer_count = int(lines[1].split()[0])
    except (IndexError, ValueError):
        raise ModelLoadError(f"{path}: line 2 must hold the layer and blob counts") from None
    body = lines[2:]
    if len(body) != layer_count:
        raise ModelLoadError(f"{path}: declares {layer_count} layers but holds {len(body)}")
    return [_parse_line(line, f"{path}:{number}") for number, line in enumerate(body, 3)]


def _read_blob(data: memoryview, offset: int, count: int, tagged: bool) -> tuple[np.ndarray, int]:
    if tagged:
        tag = int(np.frombuffer(data, "<u4", 1, offset)[0])
        offset += 4
        if tag == _TAG_FLOAT16:
            blob = np.frombuffer(data, "<f2", count, offset).astype(np.float32)
            return blob, offset + (count * 2 + 3) // 4 * 4
        if tag != _TAG_FLOAT32:
            raise ModelLoadError(
                f"weight tag {tag:#010x} is neither float32 nor float16 (int8 and quantised "
                "weights are not supported), or the .bin does not belong to the .param"
            )
    return np.frombuffer(data, "<f4", count, offset).copy(), offset + count * 4


def read_model(param: Path, weights: Path) -> list[NcnnLayer]:
    """The layers of `param` with their weight blobs from `weights`, which must fit exactly."""
    layers = read_param(param)
    data = memoryview(weights.read_bytes())
    offset, loaded = 0, []
    for layer in layers:
        blobs = []
        for count, tagged in LAYER_WEIGHTS[layer.kind](layer):
            try:
                blob, offset = _read_blob(data, offset, count, tagged)
            except ValueError:
                raise ModelLoadError(f"{weights} ends inside layer {layer.name}") from None
            except ModelLoadError as exc:
                raise ModelLoadError(f"{weights}, layer {layer.name}: {exc}") from None
            blobs.append(blob)
        loaded.append(replace(layer, weights=tuple(blobs)))
    if offset != len(data):
        raise ModelLoadError(
            f"{weights} holds {len(data)} bytes but {param} reads {offset}: not its weights"
        )
    return loaded
