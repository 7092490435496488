"""Error text fit for a client: no traceback, file path, pid, IP address or host:port.

Errors raised deep in a job (a Ray actor's failure, an OS error) carry where they
happened; the server log keeps that, the API answers with the reason only.
"""

from __future__ import annotations

import re

MAX_PUBLIC_CHARS = 1000
_TRACEBACK = re.compile(r"(Traceback \(most recent call last\)|\n\s+File \").*", re.S)
_RAY_CONTEXT = re.compile(r"\bray::\S+|\(pid=\d+[^)]*\)")
_PID = re.compile(r"\b(pid|PID|Pid)[=: ]+\d+")
_IP = re.compile(r"\b\d{1,3}(\.\d{1,3}){3}(:\d+)?\b|\[[0-9a-fA-F:]{3,}\](:\d+)?")
_NODE_ID = re.compile(r"\b(node|worker|actor)[_ ]id[=: ]+[0-9a-f]{16,}", re.I)
_PATH = re.compile(r"(?<![\w:/.])(/(?!v1/)(?:[\w.@+-]+/)+[\w.@+-]*|[A-Za-z]:\\[^\s'\"]+)")


def _last_line(traceback: str) -> str:
    lines = [line.strip() for line in traceback.splitlines() if line.strip()]
    return lines[-1] if lines and not lines[-1].startswith("File ") else ""


def public_message(text: str | None) -> str | None:
    """`text` without the parts that say where it failed (kept in the server log)."""
    if text is None:
        return None
    text = _TRACEBACK.sub(lambda m: " " + _last_line(m.group(0)), text)
    text = _RAY_CONTEXT.sub("", text)
    text = _PID.sub("pid", text)
    text = _NODE_ID.sub(r"\1 id", text)
    text = _IP.sub("<address>", text)
    text = _PATH.sub("<path>", text)
    text = re.sub(r"[ \t]{2,}", " ", text).strip()
    if len(text) > MAX_PUBLIC_CHARS:
        text = text[: MAX_PUBLIC_CHARS - 1] + "…"
    return text
