"""The HTTP API and web page over a `Recommender`; every client mistake is a 4xx JSON {"error": ...}."""

from __future__ import annotations

import logging
import mimetypes
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData, UploadFile
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException

from fashionrec.errors import UserError
from fashionrec.index.images import ImageLimits, ImageTooLarge
from fashionrec.index.recommend import Match
from fashionrec.serve.head import HeadAsGet
from fashionrec.serve.limits import BodyLimit

STATIC = Path(__file__).parent / "static"
FORM_OVERHEAD = 64 * 1024  # multipart boundaries, headers and the text field, on top of the image
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' blob:; object-src 'none'; "
    "base-uri 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
}
log = logging.getLogger(__name__)


class RecommendService(Protocol):
    """What the app needs; `fashionrec.index.Recommender` is the real one."""

    limits: ImageLimits

    def recommend(self, image: bytes, text: str, k: int) -> list[Match]: ...

    def image_path(self, item_id: str) -> Path: ...

    def health(self) -> dict[str, Any]: ...


def error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def create_app(service: RecommendService) -> FastAPI:
    app = FastAPI(title="fashionrec", docs_url=None, redoc_url=None)
    app.add_middleware(BodyLimit, max_bytes=service.limits.max_bytes + FORM_OVERHEAD)
    app.add_middleware(HeadAsGet)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        return error(exc.status_code, str(exc.detail))

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception) -> JSONResponse:
        log.exception("error answering %s %s", request.method, request.url.path)
        return error(500, "internal server error")

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC / "index.html", headers=PAGE_HEADERS)

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", **service.health()}

    @app.post("/recommend")
    async def recommend(request: Request) -> JSONResponse:
        try:
            async with request.form(max_files=1, max_fields=2) as form:
                parsed = await read_query(form, service.limits.max_bytes)
        except MultiPartException as e:
            return error(400, f"malformed multipart form: {e.message}")
        if isinstance(parsed, JSONResponse):
            return parsed
        try:
            matches = await run_in_threadpool(service.recommend, *parsed)
        except ImageTooLarge as e:
            return error(413, str(e))
        except UserError as e:
            return error(400, str(e))
        return JSONResponse(
            {"results": [{"id": m.id, "score": m.score, "image_url": f"/items/{quote(m.id)}/image"} for m in matches]}
        )

    @app.get("/items/{item_id:path}/image")
    async def item_image(item_id: str) -> FileResponse:
        # The id is only ever a key into the catalog's table; the path comes from the index.
        try:
            path = service.image_path(item_id)
        except KeyError:
            raise HTTPException(404, f"no catalog item with id {item_id[:200]!r}") from None
        if not path.is_file():
            raise HTTPException(404, f"the image of item {item_id!r} is no longer on disk")
        media_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        return FileResponse(
            path,
            media_type=media_type,
            headers={"X-Content-Type-Options": "nosniff", "Cache-Control": "public, max-age=3600"},
        )

    return app


async def read_query(form: FormData, max_bytes: int) -> tuple[bytes, str, int] | JSONResponse:
    """(image bytes, text, k) from the form, or the 400 response saying which field is wrong.
    Reads at most one byte past the limit, so the service can report an oversized image."""
    image, text, k = form.get("image"), form.get("text", ""), form.get("k", "10")
    if not isinstance(image, UploadFile) or not isinstance(text, str) or not isinstance(k, str):
        return error(
            400,
            "send the reference image as a file in the multipart field 'image', with 'text' and 'k' as plain fields",
        )
    try:
        k_value = int(k)
    except ValueError:
        return error(400, f"k must be an integer, got {k[:20]!r}")
    return await image.read(max_bytes + 1), text, k_value
