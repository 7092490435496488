"""The HTML contact sheet: thumbnails grouped by item and size, failures listed first.

Every piece of user text (prompts, copy, ids, errors) and every URL is escaped.
Each done render links its full image (``a.image``) and its run record
(``a.record``); the page is self-contained (inline CSS, no scripts).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from html import escape
from itertools import groupby

from core.campaign.ledger import JobOutcome
from core.remote.record import total_cost

__all__ = ["render_contact_sheet"]

_CAPTION_ERROR_CHARS = 160
_STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#222;background:#fafafa}
h1{margin:0 0 4px}h2{margin:32px 0 4px;font-size:18px}h3{margin:16px 0 8px;font-size:14px}
.summary{color:#555}.summary b{color:#222}
.prompt{margin:4px 0;max-width:80ch}.meta{margin:4px 0;color:#666;font-size:13px}
.sizes{display:flex;flex-wrap:wrap;gap:0 32px;align-items:flex-start}
.grid{display:flex;flex-wrap:wrap;gap:12px}
figure{margin:0;padding:8px;background:#fff;border:1px solid #ddd;border-radius:6px}
figure img{display:block;background:#eee}
figcaption{font-size:12px;color:#555;margin-top:6px;max-width:256px;overflow-wrap:anywhere}
.placeholder{display:flex;align-items:center;justify-content:center;text-align:center;
 background:#eee;color:#777}
.failed{border-color:#d33}.failed .placeholder{background:#fdecec;color:#b00}
.review{border-color:#e90;border-width:3px}.review figcaption{color:#a50}
table{border-collapse:collapse;background:#fff}
td,th{border:1px solid #ddd;padding:4px 8px;text-align:left;vertical-align:top}
pre{margin:0;white-space:pre-wrap;max-width:80ch;font-size:12px}
""".strip()


def render_contact_sheet(
    campaign: str,
    outcomes: Sequence[JobOutcome],
    thumbs: Mapping[str, str | None],
    *,
    url_for: Callable[[str], str],
    record_url: Callable[[str], str],
    thumb_px: int,
    generated_at: datetime,
) -> str:
    """The whole HTML page; `thumbs` maps job keys to thumbnail keys (None: no preview)."""
    statuses = ("done", "review", "failed", "pending")
    counts = {s: sum(o.status == s for o in outcomes) for s in statuses}
    summary = " · ".join(f"<b>{n}</b> {status}" for status, n in counts.items())
    cost = total_cost([o.done.cost_usd for o in outcomes if o.done is not None])
    if cost is not None:
        summary += f' · hosted calls <b class="cost">${cost:.4f}</b>'
    parts = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>Campaign {escape(campaign)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>Campaign {escape(campaign)}</h1>",
        f'<p class="summary"><b>{len(outcomes)}</b> renders: {summary} · generated '
        f"{generated_at:%Y-%m-%d %H:%M} UTC</p>",
        _failures(outcomes, record_url),
    ]
    for _, item_outcomes in groupby(outcomes, key=lambda o: o.job.item_index):
        parts.append(_item(list(item_outcomes), thumbs, url_for, record_url, thumb_px))
    parts.append("</body></html>\n")
    return "\n".join(parts)


def _attr(url: str) -> str:
    return escape(url, quote=True)


def _failures(outcomes: Sequence[JobOutcome], record_url: Callable[[str], str]) -> str:
    failed = [o for o in outcomes if o.failed is not None]
    if not failed:
        return ""
    rows = []
    for outcome in failed:
        job, entry = outcome.job, outcome.failed
        assert entry is not None
        record = (
            f'<a class="failure-record" href="{_attr(record_url(entry.run_id))}">record</a>'
            if entry.run_id
            else ""
        )
        rows.append(
            f'<tr><td><a href="#item-{_attr(job.item_id)}">{escape(job.item_id)}</a></td>'
            f"<td>{escape(job.size)} ({job.width}×{job.height})</td><td>{job.seed}</td>"
            f"<td>{entry.attempts}</td><td><pre>{escape(entry.error)}</pre></td>"
            f"<td>{record}</td></tr>"
        )
    return (
        f'<section id="failures"><h2>Failures ({len(failed)})</h2><table><thead><tr>'
        "<th>Item</th><th>Size</th><th>Seed</th><th>Attempts</th><th>Error</th>"
        f"<th>Record</th></tr></thead><tbody>{''.join(rows)}</tbody></table></section>"
    )


def _item(
    outcomes: list[JobOutcome],
    thumbs: Mapping[str, str | None],
    url_for: Callable[[str], str],
    record_url: Callable[[str], str],
    thumb_px: int,
) -> str:
    job = outcomes[0].job
    request = job.request
    route = [
        f"{name} {escape(str(value))}"
        for name, value in (
            ("style", request.get("style")),
            ("model", request.get("model") or job.model),
            ("pipeline", job.pipeline),
        )
        if value
    ]
    meta = route
    if "negative_prompt" in request:
        meta.append(f"negative: {escape(str(request['negative_prompt']))}")
    parts = [
        f'<section class="item" id="item-{_attr(job.item_id)}">',
        f"<h2>{escape(job.item_id)}</h2>",
        f'<p class="prompt">{escape(str(request["prompt"]))}</p>',
        f'<p class="meta">{" · ".join(meta)}</p>',
    ]
    if job.copy_text:
        parts.append(f'<p class="meta">copy: “{escape(job.copy_text)}”</p>')
    parts.append('<div class="sizes">')
    for _, size_outcomes in groupby(outcomes, key=lambda o: o.job.size):
        group = list(size_outcomes)
        first = group[0].job
        figures = "".join(_figure(o, thumbs, url_for, record_url, thumb_px) for o in group)
        parts.append(
            f'<div class="size"><h3>{escape(first.size)} <small>{first.width}×{first.height}'
            f'</small></h3><div class="grid">{figures}</div></div>'
        )
    parts.append("</div></section>")
    return "\n".join(parts)


def _figure(
    outcome: JobOutcome,
    thumbs: Mapping[str, str | None],
    url_for: Callable[[str], str],
    record_url: Callable[[str], str],
    thumb_px: int,
) -> str:
    job = outcome.job
    scale = min(1.0, thumb_px / max(job.width, job.height))
    width, height = max(1, round(job.width * scale)), max(1, round(job.height * scale))
    box = f'style="width:{width}px;height:{height}px"'
    if outcome.image_key is not None:
        entry = outcome.done or outcome.failed
        assert entry is not None and entry.run_id is not None
        thumb = thumbs.get(job.key)
        alt = escape(f"{job.item_id} {job.size} seed {job.seed}")
        preview = (
            f'<img src="{_attr(url_for(thumb))}" alt="{alt}" width="{width}" '
            f'height="{height}" loading="lazy">'
            if thumb
            else f'<span class="placeholder" {box}>no preview</span>'
        )
        record = f'<a class="record" href="{_attr(record_url(entry.run_id))}">record</a>'
        note = ""
        if outcome.status == "review":  # rendered, not delivered: a person must look
            note = f" · needs review: {escape(_short(outcome.failed.error))}"
        return (
            f'<figure class="{outcome.status}"><a class="image" '
            f'href="{_attr(url_for(outcome.image_key))}">{preview}</a>'
            f"<figcaption>seed {job.seed} · {record}{note}</figcaption></figure>"
        )
    if outcome.failed is not None:
        return (
            f'<figure class="failed"><div class="placeholder" {box}>failed after '
            f"{outcome.failed.attempts} attempt(s)</div><figcaption>seed {job.seed} · "
            f"{escape(_short(outcome.failed.error))}</figcaption></figure>"
        )
    return (
        f'<figure class="pending"><div class="placeholder" {box}>{outcome.status}</div>'
        f"<figcaption>seed {job.seed}</figcaption></figure>"
    )


def _short(error: str) -> str:
    return error if len(error) <= _CAPTION_ERROR_CHARS else error[:_CAPTION_ERROR_CHARS] + "…"
