"""Documentation addresses outside `/docs`: `/redoc`, where clients of FastAPI-style gateways look for ReDoc, leads
to the ReDoc page the server serves at `/docs/redoc` (the pages themselves: `app.py`'s OpenAPI config)."""

from __future__ import annotations

from litestar import get
from litestar.response import Redirect

REDOC_PAGE = "/docs/redoc"


@get("/redoc", include_in_schema=False, status_code=307)
async def redoc_redirect() -> Redirect:
    return Redirect(REDOC_PAGE, status_code=307)
