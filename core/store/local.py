"""Artifacts as files under a local directory (the embedded default)."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import BinaryIO

from core.errors import NotFoundError, RequestError, StorageError
from core.store.base import ARTIFACTS_ROUTE, ArtifactStore, check_key


@contextmanager
def _written_temp(dest: Path, write: Callable[[BinaryIO], object]) -> Iterator[str]:
    """A hidden temp file beside `dest` holding what `write` wrote, synced; removed after."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as out:
            write(out)
            out.flush()
            os.fsync(out.fileno())
        yield tmp
    finally:
        Path(tmp).unlink(missing_ok=True)


def _atomic_write(dest: Path, write: Callable[[BinaryIO], object]) -> None:
    """Write `dest` through a hidden temp file in its directory, then rename it into place."""
    with _written_temp(dest, write) as tmp:
        os.replace(tmp, dest)


class LocalStore(ArtifactStore):
    """Artifacts as files under `root` (the embedded default)."""

    def __init__(self, root: Path):
        self.root = Path(root).expanduser().resolve()

    def uri(self, key: str) -> str:
        return self._path(check_key(key)).as_uri()

    def _path(self, key: str) -> Path:
        """The file of `key`; a symlink anywhere below the root reads as a missing artifact."""
        path = self.root
        for segment in key.split("/"):
            path = path / segment
            if path.is_symlink():
                raise NotFoundError("key", f"no artifact {key!r}")
        return path

    @contextmanager
    def _errors(self, key: str) -> Iterator[None]:
        try:
            yield
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError) as exc:
            raise NotFoundError("key", f"no artifact {key!r}") from exc
        except OSError as exc:
            raise StorageError(key, f"{type(exc).__name__}: {exc.strerror or exc}") from exc

    @contextmanager
    def _write_errors(self, key: str) -> Iterator[None]:
        try:
            yield
        except OSError as exc:
            reason = f"write failed ({type(exc).__name__}): {exc.strerror or exc}"
            raise StorageError(key, reason) from exc

    def _put_bytes(self, key: str, data: bytes) -> None:
        with self._write_errors(key):
            _atomic_write(self._path(key), lambda out: out.write(data))

    def _put_if_absent(self, key: str, data: bytes) -> bool:
        dest = self._path(key)
        with self._write_errors(key), _written_temp(dest, lambda out: out.write(data)) as tmp:
            try:
                os.link(tmp, dest)  # never replaces: fails when `dest` exists
            except FileExistsError:
                return False
        return True

    def _put_file(self, key: str, source: Path | BinaryIO) -> None:
        with self._write_errors(key):
            if isinstance(source, str | os.PathLike):
                with open(source, "rb") as src:
                    _atomic_write(self._path(key), lambda out: shutil.copyfileobj(src, out))
            else:
                _atomic_write(self._path(key), lambda out: shutil.copyfileobj(source, out))

    def _get_bytes(self, key: str) -> bytes:
        with self._errors(key):
            return self._path(key).read_bytes()

    def _open(self, key: str) -> BinaryIO:
        with self._errors(key):
            return open(self._path(key), "rb")

    def _download(self, key: str, dest: Path) -> None:
        with self._errors(key), open(self._path(key), "rb") as src:
            _atomic_write(dest, lambda out: shutil.copyfileobj(src, out))

    def _exists(self, key: str) -> bool:
        with suppress(NotFoundError):
            return self._path(key).is_file()
        return False  # a symlink

    def _list_keys(self, prefix: str) -> list[str]:
        start = self.root / prefix.rpartition("/")[0]
        keys = []
        for folder, dirs, files in os.walk(start):
            dirs[:] = [d for d in dirs if not d.startswith(".")]
            for name in files:
                if name.startswith(".") or os.path.islink(os.path.join(folder, name)):
                    continue  # temp files of writes in flight; links are never followed
                key = Path(folder, name).relative_to(self.root).as_posix()
                if key.startswith(prefix):
                    keys.append(key)
        return keys

    def _delete(self, key: str) -> None:
        with self._errors(key):
            self._path(key).unlink(missing_ok=True)

    def _url(self, key: str, base_url: str | None) -> str:
        if not base_url:
            raise RequestError(
                "base_url", "a local store serves artifacts through the API: pass its base URL"
            )
        return f"{base_url.rstrip('/')}{ARTIFACTS_ROUTE}/{key}"
