"""Reading text back with tesseract, run as a subprocess with a timeout.

Tesseract runs as its own process (Debian's `tesseract-ocr`, which brings the
English model `tesseract-ocr-eng`): tesseract 5.3 has been seen to crash with
SIGFPE on clean crops, so a crash or a timeout is retried and, when every
attempt fails, reported as a failure, never as a reading. One thread per run
(`OMP_THREAD_LIMIT=1`): several gates in parallel would otherwise oversubscribe
the CPU.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
from dataclasses import dataclass

import numpy as np
from PIL import Image

from core.typography.geometry import PixelBox

__all__ = ["OcrRead", "Word", "find_words", "read_line", "tesseract_available"]

_TESSERACT = "tesseract"


@dataclass(frozen=True)
class Word:
    """A word tesseract found, with its confidence (0-100) and box in image pixels."""

    text: str
    confidence: float
    box: PixelBox


@dataclass(frozen=True)
class OcrRead:
    """What tesseract read; `text` is None when every attempt crashed or timed out."""

    text: str | None
    attempts: int
    failure: str | None = None
    words: tuple[Word, ...] = ()


def tesseract_available() -> bool:
    """Whether the tesseract executable is on PATH."""
    return shutil.which(_TESSERACT) is not None


def read_line(image: np.ndarray, timeout_s: float = 20.0, attempts: int = 3) -> OcrRead:
    """Read one line of text (`--psm 7`) from a uint8 greyscale image, dark text on light."""
    result = _run(image, ["--psm", "7"], timeout_s, attempts)
    if isinstance(result, OcrRead):
        return result
    text, tries = result
    return OcrRead(" ".join(text.split()), tries)


def find_words(
    image: np.ndarray, min_confidence: float = 80.0, timeout_s: float = 60.0, attempts: int = 3
) -> OcrRead:
    """Words read anywhere in a uint8 image (`--psm 11`) with at least `min_confidence`."""
    result = _run(image, ["--psm", "11", "tsv"], timeout_s, attempts)
    if isinstance(result, OcrRead):
        return result
    tsv, tries = result
    words = []
    for row in tsv.splitlines()[1:]:
        cells = row.split("\t")
        if len(cells) < 12 or not cells[11].strip() or float(cells[10]) < min_confidence:
            continue
        left, top, width, height = (int(c) for c in cells[6:10])
        box = PixelBox(left, top, left + width, top + height)
        words.append(Word(cells[11].strip(), float(cells[10]), box))
    return OcrRead(" ".join(w.text for w in words), tries, words=tuple(words))


def _run(
    image: np.ndarray, options: list[str], timeout_s: float, attempts: int
) -> tuple[str, int] | OcrRead:
    """Tesseract's stdout and the attempts it took, or the failure after `attempts` tries."""
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    command = [_TESSERACT, "stdin", "stdout", "-l", "eng", *options]
    env = {**os.environ, "OMP_THREAD_LIMIT": "1"}
    failure = ""
    for attempt in range(1, attempts + 1):
        try:
            done = subprocess.run(
                command, input=buffer.getvalue(), capture_output=True, timeout=timeout_s, env=env
            )
        except subprocess.TimeoutExpired:
            failure = f"tesseract timed out after {timeout_s:g} s"
            continue
        if done.returncode == 0:
            return done.stdout.decode("utf-8", errors="replace"), attempt
        if done.returncode < 0:
            failure = f"tesseract crashed with signal {-done.returncode}"
        else:
            message = done.stderr.decode("utf-8", errors="replace").strip()[-200:]
            failure = f"tesseract exited {done.returncode}: {message}"
    return OcrRead(None, attempts, failure)
