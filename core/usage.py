"""Per-key rate limits and per-tenant daily pixel quotas (pure; the store holds the tallies).

`RateWindow` counts requests in a rolling minute, in memory (so the limit holds per
ingress replica). `PixelLedger` keeps each tenant's admitted output pixels per UTC
day in the artifact store (``usage/<tenant>/<yyyy-mm-dd>.json``), so every replica
and a restart see the same tally.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from datetime import UTC, datetime, timedelta

from core.errors import NotFoundError, QuotaExceeded
from core.store import ArtifactStore

WINDOW_S = 60.0


class RateWindow:
    """Requests per rolling minute for each key."""

    def __init__(self) -> None:
        self._seen: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def hit(self, key: str, limit: int | None, now: float | None = None) -> None:
        """Count one request for `key`; `QuotaExceeded` (nothing counted) beyond `limit`."""
        now = time.monotonic() if now is None else now
        with self._lock:
            seen = self._seen.setdefault(key, deque())
            while seen and seen[0] <= now - WINDOW_S:
                seen.popleft()
            if limit is not None and len(seen) >= limit:
                retry = max(1, int(seen[0] + WINDOW_S - now + 0.999))
                raise QuotaExceeded("requests_per_minute", limit, retry)
            seen.append(now)

    def count(self, key: str, now: float | None = None) -> int:
        now = time.monotonic() if now is None else now
        with self._lock:
            return sum(1 for at in self._seen.get(key, ()) if at > now - WINDOW_S)


def _seconds_to_midnight(now: datetime) -> int:
    tomorrow = (now + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    return max(1, int((tomorrow - now).total_seconds()))


class PixelLedger:
    """Output pixels admitted per tenant and UTC day."""

    def __init__(self, store: ArtifactStore):
        self.store = store
        self._lock = threading.Lock()

    @staticmethod
    def key(tenant: str, day: datetime) -> str:
        return f"usage/{tenant}/{day:%Y-%m-%d}.json"

    def today(self, tenant: str, now: datetime | None = None) -> int:
        now = now or datetime.now(UTC)
        try:
            return int(json.loads(self.store.get_bytes(self.key(tenant, now)))["pixels"])
        except NotFoundError:
            return 0

    def spend(
        self, tenant: str, pixels: int, limit: int | None, now: datetime | None = None
    ) -> int:
        """Add `pixels` to today's tally; `QuotaExceeded` (nothing added) past `limit`."""
        now = now or datetime.now(UTC)
        with self._lock:
            used = self.today(tenant, now)
            if limit is not None and used + pixels > limit:
                detail = f"{used} used today, this request needs {pixels}"
                raise QuotaExceeded("max_pixels_per_day", limit, _seconds_to_midnight(now), detail)
            self.store.put_bytes(
                self.key(tenant, now), json.dumps({"pixels": used + pixels}).encode()
            )
            return used + pixels
