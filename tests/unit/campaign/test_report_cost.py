"""Hosted calls' cost: kept in the ledger per job, summed by the report, one CSV column."""

from __future__ import annotations

import csv
import io

from core.campaign import claim_run_id, mark_done, write_report
from core.campaign.ledger import load_ledger
from core.records import RunRecord, RunRegistry
from core.store import LocalStore


def test_the_report_sums_what_hosted_calls_cost(tmp_path, jobs):
    store = LocalStore(tmp_path)
    for index, job in enumerate(jobs[:5]):
        run_id = claim_run_id(store, job)
        image = store.put_bytes(f"campaigns/{job.campaign}/renders/{job.key}.png", b"x")
        cost = None if index == 4 else 0.08  # the last one rendered locally
        RunRegistry(store).save(
            RunRecord(id=run_id, kind="campaign-item", status="done", model=job.model,
                      model_source="tiny:0", campaign=job.campaign, cost_usd=cost)
        )  # fmt: skip
        mark_done(store, job, run_id, {"image": image}, cost_usd=cost)
    assert load_ledger(store, "spring-sale").done[jobs[0].key].cost_usd == 0.08
    keys = write_report(store, "spring-sale", jobs)
    assert 'hosted calls <b class="cost">$0.3200</b>' in store.get_bytes(keys.html).decode()
    rows = list(csv.DictReader(io.StringIO(store.get_bytes(keys.csv).decode())))
    assert [row["cost_usd"] for row in rows[:6]] == ["0.08"] * 4 + ["", ""]


def test_a_campaign_without_hosted_calls_shows_no_cost(tmp_path, jobs):
    store = LocalStore(tmp_path)
    job = jobs[0]
    mark_done(store, job, claim_run_id(store, job), {"image": "x.png"})
    keys = write_report(store, "spring-sale", jobs)
    assert "hosted calls" not in store.get_bytes(keys.html).decode()
