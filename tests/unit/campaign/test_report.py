"""The report: a contact sheet whose every link resolves in the store, and a CSV summary."""

from __future__ import annotations

import csv
import io
import posixpath
from html.parser import HTMLParser

from PIL import Image

from core.campaign import (
    RenderJob,
    claim_run_id,
    expand_manifest,
    mark_done,
    mark_failed,
    parse_manifest,
    write_report,
)
from core.records import RunRecord, RunRegistry
from core.store import ArtifactStore


class Page(HTMLParser):
    """Every tag with its attributes, and the page's text."""

    def __init__(self, html: str):
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)

    def hrefs(self, cls: str) -> list[str]:
        return [str(a["href"]) for t, a in self.tags if t == "a" and a.get("class") == cls]

    def srcs(self) -> list[str]:
        return [str(a["src"]) for t, a in self.tags if t == "img"]


def png(job: RenderJob) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (job.width, job.height), (30 + 9 * job.item_index, 90, 160)).save(out, "PNG")
    return out.getvalue()


def finish(store: ArtifactStore, job: RenderJob) -> str:
    """Render stand-in: store the image and a record, mark the job done; return the run id."""
    run_id = claim_run_id(store, job)
    image = store.put_bytes(f"campaigns/{job.campaign}/renders/{job.key}.png", png(job))
    RunRegistry(store).save(
        RunRecord(
            id=run_id,
            kind="campaign-item",
            status="done",
            model=job.model,
            model_source="tiny:0",
            campaign=job.campaign,
            outputs={"image": image},
        )
    )
    mark_done(store, job, run_id, {"image": image})
    return run_id


def resolve(href: str) -> str:
    """The store key a link relative to campaigns/spring-sale/report.html points at."""
    return posixpath.normpath(posixpath.join("campaigns/spring-sale", href))


def test_the_report_links_all_24_images_and_records_and_stores_thumbnails(
    store: ArtifactStore, jobs
):
    run_ids = {job.key: finish(store, job) for job in jobs}
    keys = write_report(store, "spring-sale", jobs)
    assert (keys.html, keys.csv) == (
        "campaigns/spring-sale/report.html",
        "campaigns/spring-sale/summary.csv",
    )
    page = Page(store.get_bytes(keys.html).decode())
    images, records, thumbs = page.hrefs("image"), page.hrefs("record"), page.srcs()
    assert len(images) == len(records) == len(thumbs) == 24
    registry = RunRegistry(store)
    assert [resolve(h) for h in images] == [
        f"campaigns/spring-sale/renders/{j.key}.png" for j in jobs
    ]
    assert [resolve(h) for h in records] == [registry.key(run_ids[j.key]) for j in jobs]
    assert [resolve(s) for s in thumbs] == [
        f"campaigns/spring-sale/thumbs/{j.key}.jpg" for j in jobs
    ]
    for src, job in zip(thumbs, jobs, strict=True):
        with Image.open(io.BytesIO(store.get_bytes(resolve(src)))) as thumb:
            assert thumb.format == "JPEG" and max(thumb.size) <= 256
            assert thumb.size[0] > thumb.size[1] if job.size == "16:9" else thumb.size[0] == 256
    sections = [a["id"] for t, a in page.tags if t == "section"]
    assert sections == [f"item-{job.item_id}" for job in jobs[::2]]  # grouped by item
    assert "Spring sale: 50% off" in "".join(page.text)

    rows = list(csv.DictReader(io.StringIO(store.get_bytes(keys.csv).decode())))
    assert len(rows) == 24
    assert [row["key"] for row in rows] == [job.key for job in jobs]
    assert {row["status"] for row in rows} == {"done"}
    assert rows[1]["copy"] == "Spring sale: 50% off" and rows[1]["size"] == "16:9"
    assert rows[1]["run_id"] == run_ids[jobs[1].key]


def test_links_come_from_the_functions_passed_in(store: ArtifactStore, jobs):
    for job in jobs[:2]:
        finish(store, job)
    keys = write_report(
        store, "spring-sale", jobs, url_for=lambda key: f"https://cdn.example/{key}?sig=a&b=1"
    )
    html = store.get_bytes(keys.html).decode()
    page = Page(html)
    assert all(h.startswith("https://cdn.example/campaigns/") for h in page.hrefs("image"))
    assert all(h.startswith("https://cdn.example/runs/") for h in page.hrefs("record"))
    assert "?sig=a&amp;b=1" in html and "?sig=a&b=1" not in html
    assert len(page.hrefs("image")) == 2
    assert sum(1 for t, a in page.tags if t == "figure" and a["class"] == "pending") == 22


def test_failures_are_listed_with_their_errors_and_user_text_is_escaped(
    store: ArtifactStore, config
):
    manifest = parse_manifest(
        """
campaign: spring-sale
items:
  - id: xss
    prompt: "<script>alert('prompt')</script> a cat"
    copy: '"Quoted" & <b>bold</b>'
    sizes: [1:1, 2:3]
  - id: plain
    prompt: a dog
""",
        "yaml",
    )
    jobs = expand_manifest(manifest, config)
    finish(store, jobs[0])
    mark_failed(store, jobs[1], "first try")
    mark_failed(store, jobs[1], "CUDA out of memory in <img src=x onerror=alert(1)> tile 3")
    mark_failed(store, jobs[2], "replica died", run_id=claim_run_id(store, jobs[2]))
    html = store.get_bytes(write_report(store, "spring-sale", jobs).html).decode()
    page = Page(html)

    assert "script" not in [t for t, _ in page.tags] and "<b>bold</b>" not in html
    assert [t for t, a in page.tags if t == "img"] == ["img"]  # only the one thumbnail
    text = "".join(page.text)
    assert "<script>alert('prompt')</script> a cat" in text
    assert '"Quoted" & <b>bold</b>' in text
    assert "&lt;script&gt;" in html and "&lt;b&gt;bold&lt;/b&gt;" in html

    table = html[html.index('<section id="failures">') : html.index("</section>")]
    assert "Failures (2)" in table
    assert "CUDA out of memory in &lt;img src=x onerror=alert(1)&gt; tile 3" in table
    assert "replica died" in table and "first try" not in table
    assert "<td>2</td>" in table  # attempts of the OOM job
    assert len(Page(table).hrefs("failure-record")) == 1
    figures = [a["class"] for t, a in page.tags if t == "figure"]
    assert figures == ["done", "failed", "failed"]

    rows = list(
        csv.DictReader(io.StringIO(store.get_bytes("campaigns/spring-sale/summary.csv").decode()))
    )
    assert [row["status"] for row in rows] == ["done", "failed", "failed"]
    assert rows[0]["prompt"] == "<script>alert('prompt')</script> a cat"
    assert rows[1]["attempts"] == "2" and rows[1]["error"].startswith("CUDA out of memory")


def test_an_unreadable_image_gets_a_placeholder_not_a_broken_thumbnail(store: ArtifactStore, jobs):
    job = jobs[0]
    run_id = claim_run_id(store, job)
    store.put_bytes("campaigns/spring-sale/renders/bad.png", b"not an image")
    mark_done(store, job, run_id, {"image": "campaigns/spring-sale/renders/bad.png"})
    page = Page(store.get_bytes(write_report(store, "spring-sale", jobs).html).decode())
    assert page.srcs() == [] and len(page.hrefs("image")) == 1
    assert "no preview" in "".join(page.text)
