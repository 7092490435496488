"""HTTP route modules included by the ingress (each a FastAPI `APIRouter`)."""
