"""The review board under `/ui/`: server-rendered pages over the API's own logic.

`router` holds every page; the ingress includes it once. Importing this package
lets the gate accept the board's session cookie on `/ui/` paths (`serve.ui.session`).
"""

from fastapi import APIRouter

from serve import api_app, gate
from serve.ui import review, routes
from serve.ui.session import SessionCheck

__all__ = ["router"]


def _link_secret() -> bytes:
    """The link secret of the running ingress (read when it started)."""
    context = getattr(api_app.api.state, "context", None) or api_app._INSTALLED["context"]
    return context.links.secret()


router = APIRouter()
router.include_router(routes.router)
router.include_router(review.router)
gate.SETTINGS.sessions = SessionCheck(_link_secret)
