"""Read a diffusers pipeline's configs and its safetensors headers, never its weights.

A safetensors file starts with an 8-byte little-endian header length and a JSON
header giving every tensor's dtype and shape; that is all a memory plan needs.
Three places hold pipelines: a local directory (`LocalFiles`), an `s3://` prefix
(`S3Files`: the header read by two ranged GETs) and a Hugging Face repository at a
pinned revision (`HubFiles`: the local cache when it holds the snapshot, else the
Hub's header-only metadata calls).
"""

from __future__ import annotations

import json
import os
import struct
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Protocol

from core.errors import ModelLoadError

__all__ = [
    "HubFiles",
    "LocalFiles",
    "S3Files",
    "Tensor",
    "WeightFiles",
    "component_tensors",
    "hub_or_cache",
    "parse_header",
    "weight_files",
]

MAX_HEADER_BYTES = 100_000_000  # the safetensors format's own limit


@dataclass(frozen=True)
class Tensor:
    """One tensor of a header: its name, stored dtype and element count."""

    name: str
    dtype: str
    numel: int


class WeightFiles(Protocol):
    """The files of one pipeline, by path relative to its root ('vae/config.json')."""

    where: str

    def files(self) -> list[str]: ...

    def read_json(self, path: str) -> dict[str, Any]: ...

    def header(self, path: str) -> list[Tensor]: ...


def parse_header(header: dict[str, Any]) -> list[Tensor]:
    """The tensors of a decoded safetensors JSON header (its `__metadata__` left out)."""
    tensors = []
    for name, info in header.items():
        if name == "__metadata__":
            continue
        numel = 1
        for side in info["shape"]:
            numel *= int(side)
        tensors.append(Tensor(name, info["dtype"], numel))
    return tensors


def _header_length(first8: bytes, where: str) -> int:
    if len(first8) < 8:
        raise ModelLoadError(f"{where} is not a safetensors file (shorter than 8 bytes)")
    (length,) = struct.unpack("<Q", first8)
    if length > MAX_HEADER_BYTES:
        raise ModelLoadError(f"{where} is not a safetensors file (header of {length} bytes)")
    return length


def _decode(raw: bytes, where: str) -> list[Tensor]:
    try:
        return parse_header(json.loads(raw))
    except (ValueError, KeyError, TypeError) as exc:
        raise ModelLoadError(f"{where}: unreadable safetensors header ({exc})") from None


class LocalFiles:
    """A pipeline directory on this machine."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root).expanduser()
        self.where = str(self.root)
        if not (self.root / "model_index.json").is_file():
            raise ModelLoadError(
                f"{self.root} is not a diffusers pipeline directory (no model_index.json)"
            )

    def files(self) -> list[str]:
        return sorted(p.relative_to(self.root).as_posix() for p in self.root.rglob("*"))

    def read_json(self, path: str) -> dict[str, Any]:
        return json.loads((self.root / path).read_text())

    def header(self, path: str) -> list[Tensor]:
        where = str(self.root / path)
        with open(self.root / path, "rb") as handle:
            raw = handle.read(_header_length(handle.read(8), where))
        return _decode(raw, where)


class S3Files:
    """A pipeline under `s3://bucket/prefix`: headers by ranged GETs, no weights fetched."""

    def __init__(self, uri: str, client: Any = None) -> None:
        import boto3

        self.where = uri
        self.bucket, _, prefix = uri.removeprefix("s3://").partition("/")
        self.prefix = f"{prefix.strip('/')}/" if prefix.strip("/") else ""
        self.client = client or boto3.client("s3")  # endpoint from AWS_ENDPOINT_URL(_S3)
        self._files = sorted(
            obj["Key"][len(self.prefix) :]
            for page in self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=self.prefix
            )
            for obj in page.get("Contents", [])
        )
        if "model_index.json" not in self._files:
            raise ModelLoadError(f"no model_index.json under {uri}")

    def files(self) -> list[str]:
        return list(self._files)

    def _range(self, path: str, first: int, last: int) -> bytes:
        answer = self.client.get_object(
            Bucket=self.bucket, Key=self.prefix + path, Range=f"bytes={first}-{last}"
        )
        return answer["Body"].read()

    def read_json(self, path: str) -> dict[str, Any]:
        body = self.client.get_object(Bucket=self.bucket, Key=self.prefix + path)["Body"]
        return json.loads(body.read())

    def header(self, path: str) -> list[Tensor]:
        where = f"s3://{self.bucket}/{self.prefix}{path}"
        length = _header_length(self._range(path, 0, 7), where)
        return _decode(self._range(path, 8, 8 + length - 1), where)


class HubFiles:
    """A Hugging Face repository at a pinned revision, read through `huggingface_hub`."""

    def __init__(self, repo: str, revision: str) -> None:
        import huggingface_hub

        self.hub = huggingface_hub
        self.repo, self.revision = repo, revision
        self.where = f"hf:{repo}@{revision}"
        self.cache_dir = os.environ.get("HF_HUB_CACHE")  # read at call time, as the loader
        self._files = self.hub.list_repo_files(repo, revision=revision)

    def files(self) -> list[str]:
        return list(self._files)

    def read_json(self, path: str) -> dict[str, Any]:
        local = self.hub.hf_hub_download(
            self.repo, path, revision=self.revision, cache_dir=self.cache_dir
        )
        return json.loads(Path(local).read_text())

    def header(self, path: str) -> list[Tensor]:
        meta = self.hub.HfApi().parse_safetensors_file_metadata(
            self.repo, path, revision=self.revision
        )
        return [
            Tensor(name, info.dtype, info.parameter_count) for name, info in meta.tensors.items()
        ]


def hub_or_cache(repo: str, revision: str) -> WeightFiles:
    """The local Hugging Face cache's snapshot when it holds one, else the Hub."""
    import huggingface_hub

    try:
        snapshot = huggingface_hub.snapshot_download(
            repo,
            revision=revision,
            local_files_only=True,
            cache_dir=os.environ.get("HF_HUB_CACHE"),
        )
    except (huggingface_hub.errors.LocalEntryNotFoundError, OSError):
        return HubFiles(repo, revision)
    if not (Path(snapshot) / "model_index.json").is_file():
        return HubFiles(repo, revision)
    return LocalFiles(Path(snapshot))


def _variant(name: str) -> bool:
    """`x.fp16.safetensors` or `x.fp16-00001-of-00002.safetensors`: a dtype variant."""
    stem = name.removesuffix(".index.json").removesuffix(".safetensors")
    return "." in stem


def weight_files(source: WeightFiles, component: str) -> list[str]:
    """The safetensors files that hold `component`'s weights, chosen as `from_pretrained`
    chooses without a variant: a sharded index before a single file, plain names before
    dtype variants (`.fp16.`); [] when it has none."""
    names = [
        PurePosixPath(f).name
        for f in source.files()
        if PurePosixPath(f).parent == PurePosixPath(component)
        and f.endswith((".safetensors", ".safetensors.index.json"))
    ]
    if not names:
        return []
    chosen = min(names, key=lambda n: (_variant(n), not n.endswith(".index.json"), n))
    if chosen.endswith(".index.json"):
        shards = source.read_json(f"{component}/{chosen}")["weight_map"].values()
        return [f"{component}/{shard}" for shard in sorted(set(shards))]
    return [f"{component}/{chosen}"]


def component_tensors(source: WeightFiles, component: str) -> list[Tensor]:
    """Every tensor of `component`, read from its safetensors headers."""
    return [t for path in weight_files(source, component) for t in source.header(path)]
