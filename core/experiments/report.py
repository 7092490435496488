"""The HTML report of an experiment: the models side by side, case by case, with figures.

Self-contained (images inline as data URIs, no script): it opens from the API, the
review board or a file. Every value is escaped by Jinja's autoescape.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Mapping

import numpy as np
from jinja2 import Environment
from PIL import Image

from core.experiments.metrics import HIGHER_IS_BETTER
from core.experiments.record import ExperimentRecord

__all__ = ["Thumbs", "report_html", "thumbnail_uri"]

THUMB_PX = 192
Thumbs = Mapping[tuple[str, str, int], str]
"""(case, model, seed) -> the image as a data URI."""

_TEMPLATE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>Experiment {{ e.id }} ({{ e.suite }})</title>
<style>
body{font:14px system-ui,sans-serif;margin:1.5em;color:#222}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:4px 8px;
vertical-align:top}th{background:#f3f3f3}img{display:block;max-width:{{ px }}px}
.bad{color:#b00020;font-weight:bold}.seeds{display:flex;gap:4px}.bar{fill:#4a7bd0}
figure{display:inline-block;margin:0 1.5em 1em 0}figcaption{font-weight:bold}
</style></head><body>
<h1>Experiment <code>{{ e.id }}</code></h1>
<p id="about">Suite <b>{{ e.suite }}</b> (sha256 {{ e.suite_sha256[:12] }}), scorer
<b>{{ e.scorer }}</b>, made {{ e.created_at.strftime("%Y-%m-%d %H:%M:%S UTC") }}
{%- if e.owner %} by {{ e.owner }}{% endif %}.
{%- if e.baseline %} Baseline: <code>{{ e.baseline }}</code>.{% endif %}</p>
{% if e.regressions %}<ul id="regressions">{% for line in e.regressions %}
<li class="bad">{{ line }}</li>{% endfor %}</ul>{% endif %}
<h2>Models</h2>
<table id="models"><tr><th>model</th><th>source</th><th>revision</th>
{% for m in metrics %}<th>{{ m }} {{ "&uarr;" if better[m] else "&darr;" }}</th>{% endfor %}</tr>
{% for model in e.models %}<tr><td>{{ model.name }}</td><td>{{ model.source or "-" }}</td>
<td>{{ model.revision or "-" }}</td>{% for m in metrics %}
<td>{{ fmt(e.summary.get(model.name, {}).get(m)) }}</td>{% endfor %}</tr>{% endfor %}
</table>
<h2>Figures</h2>
<div id="figures">{% for m in metrics %}<figure><figcaption>{{ m }}</figcaption>
<svg width="260" height="{{ 24 * e.models|length + 4 }}" role="img" aria-label="{{ m }}">
{% for model in e.models %}{% set v = e.summary.get(model.name, {}).get(m) %}
<text x="0" y="{{ 24 * loop.index0 + 17 }}">{{ model.name[:12] }}</text>
{% if v is not none %}<rect class="bar" x="90" y="{{ 24 * loop.index0 + 4 }}" height="16"
width="{{ bar(m, v) }}"></rect><text x="{{ 94 + bar(m, v) }}" y="{{ 24 * loop.index0 + 17 }}">
{{ fmt(v) }}</text>{% endif %}{% endfor %}</svg></figure>{% endfor %}</div>
<h2>Cases</h2>
<table id="cases"><tr><th>case</th>{% for model in e.models %}<th>{{ model.name }}</th>
{% endfor %}</tr>
{% for case in cases %}<tr class="case"><td><b>{{ case.id }}</b><br>{{ case.prompt }}</td>
{% for model in e.models %}<td>{% set r = results.get((case.id, model.name)) %}
<div class="seeds">{% for s in samples.get((case.id, model.name), []) %}<div>
{% set uri = thumbs.get((case.id, model.name, s.seed)) %}
{% if uri %}<img src="{{ uri }}" alt="{{ case.id }} {{ model.name }} seed {{ s.seed }}">
{% endif %}seed {{ s.seed }}{% if s.status != "done" %} <span class="bad">{{ s.status }}</span>
{% endif %}{% if s.adherence is not none %} &middot; {{ fmt(s.adherence) }}{% endif %}
{% if s.hires_lost %}<br><span class="bad lost">hires lost {{ s.hires_lost|join(", ") }}</span>
{% endif %}</div>
{% endfor %}</div>
{% if r %}<small>{% for k, v in r.metrics.items() %}{{ k }} {{ fmt(v) }}{{ "; " if not loop.last }}
{% endfor %}</small>{% endif %}</td>{% endfor %}</tr>{% endfor %}
</table></body></html>
"""
_ENV = Environment(autoescape=True, trim_blocks=True, lstrip_blocks=True)


def thumbnail_uri(image: np.ndarray | bytes, px: int = THUMB_PX) -> str:
    """An image (array or encoded bytes) shrunk to fit `px` and encoded as a PNG data URI."""
    picture = Image.open(io.BytesIO(image)) if isinstance(image, bytes) else Image.fromarray(image)
    picture = picture.convert("RGB")
    picture.thumbnail((px, px))
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3g}"


def report_html(record: ExperimentRecord, thumbs: Thumbs) -> str:
    """The report page of `record`, with `thumbs` as the renders' pictures."""
    metrics = [m for m in HIGHER_IS_BETTER if any(m in s for s in record.summary.values())]
    peaks = {
        m: max((abs(s.get(m, 0.0)) for s in record.summary.values()), default=0.0) or 1.0
        for m in metrics
    }
    samples: dict[tuple[str, str], list] = {}
    for sample in record.samples:
        samples.setdefault((sample.case, sample.model), []).append(sample)
    cases = record.suite_content.get("cases", [])
    return _ENV.from_string(_TEMPLATE).render(
        e=record,
        px=THUMB_PX,
        metrics=metrics,
        better=HIGHER_IS_BETTER,
        fmt=_fmt,
        bar=lambda m, v: round(120 * abs(v) / peaks[m], 1),
        cases=cases,
        samples=samples,
        results={(r.case, r.model): r for r in record.cases},
        thumbs=thumbs,
    )
