"""The pure pieces of tenancy: record stamping, link signatures, rate windows, pixel ledger."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from core.errors import QuotaExceeded
from core.links import check_signature, signature, signed_url
from core.records import RunRecord, RunRegistry
from core.store import LocalStore
from core.tenants import current_request_id, current_tenant, visible
from core.usage import PixelLedger, RateWindow


def test_records_saved_in_a_request_carry_its_tenant_and_id(tmp_path):
    registry = RunRegistry(LocalStore(tmp_path))
    record = RunRecord(kind="render", status="done", model="m", model_source="tiny")
    tenant, request = current_tenant.set("acme"), current_request_id.set("req_1")
    try:
        registry.save(record)
    finally:
        current_tenant.reset(tenant)
        current_request_id.reset(request)
    saved = registry.get(record.id)
    assert (saved.owner, saved.request_id) == ("acme", "req_1")
    assert [r.id for r in registry.list(owner="acme")] == [record.id]
    assert registry.list(owner="globex") == []
    old = RunRecord.model_validate_json(saved.model_dump_json(exclude={"owner", "request_id"}))
    assert old.owner is None  # records from before tenants still load


def test_visibility():
    assert visible("acme", None) and visible(None, None)
    assert visible("acme", "acme") and not visible("acme", "globex")
    assert not visible(None, "acme")


def test_a_signature_binds_key_and_expiry():
    secret = b"s" * 32
    url = signed_url(secret, "renders/a/image.png", 60, "http://h", now=1000)
    assert url.startswith("http://h/v1/artifacts/renders/a/image.png?expires=1060&sig=")
    sig = signature(secret, "renders/a/image.png", 1060)
    assert check_signature(secret, "renders/a/image.png", "1060", sig, now=1000) is None
    assert check_signature(secret, "renders/a/image.png", "1060", sig, now=2000) == "expired"
    assert check_signature(secret, "renders/b/image.png", "1060", sig, now=1000)
    assert check_signature(secret, "renders/a/image.png", "1061", sig, now=1000)
    assert check_signature(secret, "renders/a/image.png", "1e9", sig, now=1000)
    assert check_signature(b"x" * 32, "renders/a/image.png", "1060", sig, now=1000)


def test_the_rate_window_rolls():
    window = RateWindow()
    for at in (0.0, 1.0, 2.0):
        window.hit("k", 3, now=at)
    with pytest.raises(QuotaExceeded) as refused:
        window.hit("k", 3, now=30.0)
    assert refused.value.limit == "requests_per_minute" and refused.value.retry_after_s == 30
    window.hit("k", 3, now=60.5)  # the first one left the window
    assert window.count("k", now=60.5) == 3


def test_the_pixel_ledger_is_per_tenant_and_day(tmp_path):
    ledger = PixelLedger(LocalStore(tmp_path))
    noon = datetime(2026, 1, 1, 12, tzinfo=UTC)
    ledger.spend("acme", 600, 1000, now=noon)
    with pytest.raises(QuotaExceeded) as refused:
        ledger.spend("acme", 600, 1000, now=noon)
    assert refused.value.retry_after_s == 12 * 3600
    assert ledger.today("acme", now=noon) == 600
    ledger.spend("globex", 600, 1000, now=noon)
    ledger.spend("acme", 600, 1000, now=datetime(2026, 1, 2, 1, tzinfo=UTC))
