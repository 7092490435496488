"""What every review-board page shares: templates, the session cookie, CSRF, errors.

Templates autoescape everything (a prompt can hold ``<script>``). A failure that the
API answers as JSON (404, 422, ...) becomes an HTML page with the same public message,
never a path or a traceback.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import jinja2
from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.routing import APIRoute
from fastapi.templating import Jinja2Templates
from starlette.exceptions import HTTPException

from core.errors import OverloadedError, RenderClusterError, RequestError
from core.redact import public_message
from serve import api_app, gate
from serve.api_app import IngressContext, tenant_of
from serve.ui.session import (
    ANONYMOUS,
    COOKIE,
    SESSION_TTL_S,
    Session,
    csrf_ok,
    csrf_token,
    make_token,
    parse_token,
)

logger = logging.getLogger("ray.serve")
_ENV = jinja2.Environment(
    loader=jinja2.FileSystemLoader(str(Path(__file__).parent / "templates")), autoescape=True
)
TEMPLATES = Jinja2Templates(env=_ENV)
TEMPLATES.env.filters["public"] = public_message


def root_of(request: Request) -> str:
    """The application's route prefix, for links (empty at the root)."""
    return str(request.scope.get("root_path", "")).rstrip("/")


def keys_on() -> bool:
    keys = gate.SETTINGS.api_keys
    return keys is not None and keys.enabled


def ingress_context(request: Request) -> IngressContext:
    return api_app.context(request)


def session_of(request: Request, ctx: IngressContext) -> Session | None:
    return parse_token(ctx.links.secret(), request.cookies.get(COOKIE))


def set_session(request: Request, response, token: str) -> None:
    response.set_cookie(
        COOKIE,
        token,
        max_age=SESSION_TTL_S,
        path=(root_of(request) or "") + "/ui/",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )


def page(request: Request, template: str, status_code: int = 200, **values: Any) -> HTMLResponse:
    """Render `template` with the session's CSRF token (a fresh anonymous session if none)."""
    ctx = ingress_context(request)
    secret = ctx.links.secret()
    session, token = session_of(request, ctx), None
    if session is None:
        token = make_token(secret, ANONYMOUS)
        session = parse_token(secret, token)
    context = {
        "root": root_of(request),
        "csrf": csrf_token(secret, session),
        "tenant": tenant_of(request),
        "keys_on": keys_on(),
        "signed_in": session.signed_in,
        **values,
    }
    response = TEMPLATES.TemplateResponse(request, template, context, status_code=status_code)
    if token is not None:
        set_session(request, response, token)
    response.headers["Cache-Control"] = "no-store"
    return response


async def checked_form(request: Request) -> dict[str, str]:
    """The POSTed form when its CSRF token is this session's; a 403 page otherwise."""
    form = await request.form()
    ctx = ingress_context(request)
    offered = form.get("csrf")
    if not csrf_ok(ctx.links.secret(), session_of(request, ctx), offered):
        raise RequestError("csrf", "the form expired or did not come from this board; reload")
    return {name: value for name, value in form.items() if isinstance(value, str)}


def redirect(request: Request, path: str) -> RedirectResponse:
    return RedirectResponse(root_of(request) + path, status_code=303)


async def off_loop(fn, *args, **kwargs):
    return await asyncio.to_thread(fn, *args, **kwargs)


class UiRoute(APIRoute):
    """The route class of the board: failures become an HTML page (status kept)."""

    def get_route_handler(self):
        handler = super().get_route_handler()

        async def route(request: Request):
            try:
                return await handler(request)
            except RequestError as exc:
                status = 403 if exc.field == "csrf" else exc.status_code
                message = public_message(exc.message)
                return page(request, "error.html", status, message=message, field=exc.field)
            except HTTPException as exc:
                return page(request, "error.html", exc.status_code, message=str(exc.detail))
            except OverloadedError as exc:
                return page(request, "error.html", 503, message=public_message(str(exc)))
            except RenderClusterError:
                logger.exception("review board request failed")
                return page(request, "error.html", 502, message="the request failed; retry")

        return route
