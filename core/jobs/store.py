"""Jobs kept as JSON in the artifact store, under ``jobs/<id>.json``.

Writes are atomic (the store writes whole objects); `save` refuses a status
that goes backwards from what is stored, and keeps an empty marker under
``job-open/<id>`` while a job has not ended, so the supervisor's scan of the
unfinished jobs costs what is in flight, not the whole history. Listing reads the ids (which sort by
creation time) and then only the page asked for. An idempotency key maps to
the job it created under ``job-keys/<sha256>.json``, with the hash of the body
it came with. The first request with a key holds it (a conditional write) until it
names what it created, so two requests with one key never both create something.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterable

from pydantic import BaseModel, ValidationError

from core.errors import NotFoundError, RequestError
from core.jobs.model import Job, is_job_id
from core.store import ArtifactStore

__all__ = ["IdempotencyConflict", "IdempotencyInProgress", "JobPage", "JobStore", "body_hash"]

PREFIX = "jobs/"
KEYS_PREFIX = "job-keys/"
OPEN_PREFIX = "job-open/"  # one empty marker per job not yet ended
MAX_PAGE = 200
HELD_FOR_S = 900  # a key held longer, with nothing created, belonged to a request that died


class IdempotencyConflict(RequestError):
    """The idempotency key was used before with a different request body."""

    status_code = 409

    def __init__(self, key: str):
        super().__init__(
            "Idempotency-Key",
            f"{key!r} was already used with a different request body; use a new key",
        )
        self.args = (key,)
        self.key = key


class IdempotencyInProgress(RequestError):
    """Another request with this idempotency key and body has not finished yet."""

    status_code = 409
    retry_after_s = 1

    def __init__(self, key: str):
        super().__init__(
            "Idempotency-Key", f"a request with {key!r} is still in progress; retry shortly"
        )
        self.args = (key,)
        self.key = key


class JobPage(BaseModel):
    """One page of `GET /v1/jobs`."""

    jobs: list[Job]
    next_cursor: str | None = None


def body_hash(body: dict) -> str:
    """A stable hash of a request body (its JSON with sorted keys)."""
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


class JobStore:
    """Reads and writes jobs in one artifact store."""

    def __init__(self, store: ArtifactStore):
        self.store = store

    @staticmethod
    def key(job_id: str) -> str:
        return f"{PREFIX}{job_id}.json"

    def save(self, job: Job) -> Job:
        """Write `job`; `StatusWentBackwards` if the stored one is further along."""
        current = self.find(job.id)
        if current is not None and current.status != job.status:
            current.moved(status=job.status)  # raises when barred
        self.store.put_bytes(self.key(job.id), job.model_dump_json().encode())
        marker = f"{OPEN_PREFIX}{job.id}"
        if job.terminal:
            self.store.delete(marker)
        elif current is None or current.terminal != job.terminal:
            self.store.put_bytes(marker, b"")
        return job

    def find(self, job_id: str) -> Job | None:
        if not is_job_id(job_id) or not self.store.exists(self.key(job_id)):
            return None
        return Job.model_validate_json(self.store.get_bytes(self.key(job_id)))

    def get(self, job_id: str, owner: str | None = None) -> Job:
        """The job; `NotFoundError` if there is none (or it is another tenant's)."""
        job = self.find(job_id)
        if job is None or (owner is not None and job.owner != owner):
            raise NotFoundError("id", f"no job {job_id!r}")
        return job

    def ids(self) -> list[str]:
        """Every job id, oldest first."""
        names = (key.removeprefix(PREFIX) for key in self.store.list_keys(PREFIX))
        return sorted(
            name.removesuffix(".json")
            for name in names
            if "/" not in name and name.endswith(".json")
        )

    def unfinished(self) -> list[Job]:
        """Every job not yet done, failed or cancelled, oldest first.

        Read from the open-job markers, so the cost follows the jobs in flight, not
        the history.
        """
        ids = sorted(key.removeprefix(OPEN_PREFIX) for key in self.store.list_keys(OPEN_PREFIX))
        return [job for job in self._load(ids) if not job.terminal]

    def page(
        self,
        status: str | None = None,
        kind: str | None = None,
        owner: str | None = None,
        cursor: str | None = None,
        limit: int = 50,
    ) -> JobPage:
        """Jobs newest first, filtered; `cursor` is the last id of the previous page."""
        if not 1 <= limit <= MAX_PAGE:
            raise RequestError("limit", f"must be between 1 and {MAX_PAGE}, got {limit}")
        if cursor is not None and not is_job_id(cursor):
            raise RequestError("cursor", f"{cursor!r} is not a job id from a previous page")
        ids = [i for i in reversed(self.ids()) if cursor is None or i < cursor]
        found: list[Job] = []
        for job in self._load(ids):
            if not _matches(job, status, kind, owner):
                continue
            found.append(job)
            if len(found) == limit:
                return JobPage(jobs=found, next_cursor=job.id)
        return JobPage(jobs=found)

    def _load(self, ids: Iterable[str]) -> Iterable[Job]:
        for job_id in ids:
            try:
                job = self.find(job_id)
            except (ValidationError, ValueError):  # written by a newer version: skip it
                continue
            if job is not None:
                yield job

    # -- idempotency ------------------------------------------------------------------

    def _idempotency_key(self, key: str, owner: str | None) -> str:
        digest = hashlib.sha256(f"{owner or ''}\0{key}".encode()).hexdigest()
        return f"{KEYS_PREFIX}{digest}.json"

    def reserve(self, key: str, owner: str | None, body: dict, holder: str) -> str | None:
        """Hold `key` for `holder` (None), or the id it created before (same body).

        A key used with another body is a 409 (`IdempotencyConflict`), one held by a
        request still running a 409 with Retry-After (`IdempotencyInProgress`). The
        holder then `claim`s the key for what it created, or `release`s it.
        """
        location = self._idempotency_key(key, owner)
        digest = body_hash(body)
        held = {"body": digest, "holder": holder, "since": time.time()}
        for _ in range(3):
            if self.store.put_if_absent(location, json.dumps(held).encode()):
                return None
            try:
                entry = json.loads(self.store.get_bytes(location))
            except NotFoundError:
                continue  # released a moment ago
            if entry["body"] != digest:
                raise IdempotencyConflict(key)
            if "id" in entry:
                return str(entry["id"])
            if time.time() - entry["since"] < HELD_FOR_S:
                break
            if not self._take_over(location, entry["holder"]):
                break
        raise IdempotencyInProgress(key)

    def _take_over(self, location: str, dead_holder: str) -> bool:
        """Delete a hold whose request died, as the one request that won the takeover.

        Requests that found the same dead hold race for a marker named after its
        holder; only the winner deletes the hold, so none deletes a newer one.
        """
        holder_digest = hashlib.sha256(dead_holder.encode()).hexdigest()
        marker = f"{location.removesuffix('.json')}.taken-from-{holder_digest}"
        if not self.store.put_if_absent(marker, b""):
            return False
        self.store.delete(location)
        return True

    def _still_held(self, key: str, owner: str | None, holder: str) -> dict | None:
        """The hold on `key` if `holder` has it and has claimed nothing yet, else None."""
        try:
            entry = json.loads(self.store.get_bytes(self._idempotency_key(key, owner)))
        except NotFoundError:
            return None
        return entry if entry.get("holder") == holder and "id" not in entry else None

    def renew(self, key: str, owner: str | None, holder: str) -> None:
        """Keep `holder`'s hold on `key` from looking dead: a request that runs longer than
        `HELD_FOR_S` renews it while it runs (nothing changes once it claimed or let go)."""
        entry = self._still_held(key, owner, holder)
        if entry is not None:
            renewed = json.dumps({**entry, "since": time.time()}).encode()
            self.store.put_bytes(self._idempotency_key(key, owner), renewed)

    def release(self, key: str, owner: str | None, holder: str) -> None:
        """Let go of `key` if `holder` holds it still (it created nothing)."""
        if self._still_held(key, owner, holder) is not None:
            self.store.delete(self._idempotency_key(key, owner))

    def claim(self, key: str, owner: str | None, body: dict, created_id: str) -> None:
        """Remember that `key` (with `body`) created `created_id`."""
        entry = {"id": created_id, "body": body_hash(body)}
        self.store.put_bytes(self._idempotency_key(key, owner), json.dumps(entry).encode())


def _matches(job: Job, status: str | None, kind: str | None, owner: str | None) -> bool:
    return (
        (status is None or job.status == status)
        and (kind is None or job.kind == kind)
        and (owner is None or job.owner == owner)
    )
