"""Review board: sign-in, the gallery of runs, one run, and the diff of two runs."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from core.errors import AuthError, NotFoundError
from core.records import RunRecord
from serve import gate
from serve.routes import runs as runs_api
from serve.ui import data, deepzoom, thumbs
from serve.ui.pages import (
    UiRoute,
    checked_form,
    ingress_context,
    keys_on,
    off_loop,
    page,
    redirect,
    set_session,
)
from serve.ui.session import ANONYMOUS, make_token

router = APIRouter(route_class=UiRoute, include_in_schema=False)


@router.get("/ui/")
async def index(request: Request):
    return redirect(request, "/ui/runs")


@router.get("/ui/login")
async def login_form(request: Request):
    return page(request, "login.html", keys_on=keys_on())


@router.post("/ui/login")
async def login(request: Request):
    """Exchange an API key for a session cookie (the key itself is never stored)."""
    form = await checked_form(request)
    keys = gate.SETTINGS.api_keys
    if not keys_on():
        return redirect(request, "/ui/runs")
    try:
        caller = await off_loop(keys.check, None, form.get("api_key", "").strip())
    except AuthError:
        return page(request, "login.html", 401, error="that API key is not valid")
    ctx = ingress_context(request)
    response = redirect(request, "/ui/runs")
    set_session(request, response, make_token(ctx.links.secret(), caller.key_hash))
    return response


@router.post("/ui/logout")
async def logout(request: Request):
    await checked_form(request)
    response = redirect(request, "/ui/login")
    set_session(request, response, make_token(ingress_context(request).links.secret(), ANONYMOUS))
    return response


@router.get("/ui/runs")
async def gallery(request: Request, q: str = "", cursor: str | None = None):
    """Recent runs with thumbnails, filters, prompt search and cursor paging."""
    ctx = ingress_context(request)
    filters = {name: request.query_params.get(name, "") for name in data.FILTERS}
    tenant = request.state.tenant
    found = await off_loop(data.gallery, ctx.registry, tenant, filters, q[:500], cursor)
    options = {
        "model": sorted(ctx.config.models),
        "style": sorted(ctx.config.styles),
        "pipeline": sorted(ctx.config.pipelines),
        "status": [
            "done",
            "failed",
            "running",
            "queued",
            "awaiting_approval",
            "rejected",
            "cancelled",
        ],
    }
    return page(
        request,
        "runs.html",
        found=found,
        q=q,
        filters=filters,
        options=options,
        thumb=thumbs.image_output,
    )


@router.get("/ui/runs/{run_id}")
async def run_page(run_id: str, request: Request):
    """One run: its picture, its full record, its lineage and "compare with…"."""
    ctx = ingress_context(request)
    record = await ctx.renders.visible_record(run_id)
    chain, stages, others = await off_loop(_about, ctx, record, request.state.tenant)
    return page(
        request,
        "run.html",
        record=record,
        view=runs_api.public_record(record),
        lineage=chain,
        stages=stages,
        others=others,
        gate=data.typography_gate(record),
        thumb=thumbs.image_output,
    )


def _about(ctx, record: RunRecord, tenant: str | None) -> tuple[list, list, list]:
    return (
        data.lineage(ctx.registry, record),
        data.stage_rows(ctx.registry, record, ctx.config),
        data.compare_candidates(ctx.registry, tenant, record.id),
    )


@router.get("/ui/compare")
async def compare(request: Request, a: str, b: str):
    return redirect(request, f"/ui/diff/{quote(a, safe='')}/{quote(b, safe='')}")


@router.get("/ui/diff/{run_a}/{run_b}")
async def diff_page(run_a: str, run_b: str, request: Request):
    """Both images side by side (wipe and difference views), the changed fields marked."""
    ctx = ingress_context(request)
    changes = (await runs_api.diff_runs(run_a, run_b, ctx))["changes"]
    a = await ctx.renders.visible_record(run_a)
    b = await ctx.renders.visible_record(run_b)
    changed = {change["field"] for change in changes}
    rows = _diff_rows(runs_api.public_record(a), runs_api.public_record(b), changed)
    return page(
        request, "diff.html", a=a, b=b, changes=changes, rows=rows, thumb=thumbs.image_output
    )


def _diff_rows(a: dict[str, Any], b: dict[str, Any], changed: set[str]) -> list[dict]:
    """Every top-level parameter of both runs, changed ones flagged."""
    rows = []
    for name in ("model", "model_revision", "style", "prompt", "negative_prompt", "seed"):
        rows.append({"field": name, "a": a.get(name), "b": b.get(name), "changed": name in changed})
    for name in sorted(set(a.get("params", {})) | set(b.get("params", {}))):
        field = f"params.{name}"
        values = {"a": a["params"].get(name), "b": b["params"].get(name)}
        flagged = any(c == field or c.startswith(field + ".") for c in changed)
        rows.append({"field": field, **values, "changed": flagged})
    return rows


@router.get("/ui/thumbs/{run_id}/{output}")
async def thumbnail(run_id: str, output: str, request: Request):
    """A run's downscaled picture, made once, kept beside the artifact."""
    ctx = ingress_context(request)
    key = await _picture_key(request, run_id, output)
    preview = await off_loop(thumbs.ensure_thumbnail, ctx.store, key)
    if preview is None:
        raise NotFoundError("output", f"run {run_id} has no picture to show")
    return Response(preview, media_type="image/jpeg", headers=_PRIVATE)


@router.get("/ui/tiles/{run_id}/{output}/info.json")
async def pyramid_info(run_id: str, output: str, request: Request):
    """The deep-zoom pyramid of a run's picture (cut on first use): size, tile, levels."""
    ctx = ingress_context(request)
    key = await _picture_key(request, run_id, output)
    pyramid = await off_loop(deepzoom.ensure_pyramid, ctx.store, key)
    if pyramid is None:
        raise NotFoundError("output", f"run {run_id} has no picture to show")
    return JSONResponse(pyramid.as_dict(), headers=_PRIVATE)


@router.get("/ui/tiles/{run_id}/{output}/{level}/{col}_{row}.jpg")
async def pyramid_tile(run_id: str, output: str, level: int, col: int, row: int, request: Request):
    """One 256 px tile of a run's picture at one level (the deepest: full resolution)."""
    ctx = ingress_context(request)
    key = await _picture_key(request, run_id, output)
    tile = await off_loop(deepzoom.read_tile, ctx.store, key, level, col, row)
    if tile is None:
        raise NotFoundError("tile", f"run {run_id} has no tile {level}/{col}_{row}")
    return Response(tile, media_type="image/jpeg", headers=_PRIVATE)


_PRIVATE = {"Cache-Control": "private, max-age=3600"}


async def _picture_key(request: Request, run_id: str, output: str) -> str:
    """The artifact key of a picture of a run the caller may see (else a 404)."""
    record = await ingress_context(request).renders.visible_record(run_id)
    if output not in thumbs.IMAGE_OUTPUTS or output not in record.outputs:
        raise NotFoundError("output", f"run {run_id} has no {output!r}")
    return record.outputs[output]
