"""The HTTP API and web page over a `Recommender`; every client mistake is a 4xx JSON {"error": ...}."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

import torch
from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData, UploadFile
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException

from fashionrec.errors import UserError
from fashionrec.index.categories import MAX_NAME_CHARS
from fashionrec.index.images import ImageLimits, ImageTooLarge
from fashionrec.index.items import Item
from fashionrec.index.recommend import MAX_K, MAX_TEXT_CHARS, Match
from fashionrec.index.store import CatalogDamaged, DuplicateItem, StoreUnavailable, UnknownItem
from fashionrec.serve.admin import add_admin_routes
from fashionrec.serve.head import HeadAsGet
from fashionrec.serve.limits import BodyLimit
from fashionrec.serve.models import ERRORS, Categories, ItemPage, Results, error, item_json

STATIC = Path(__file__).parent / "static"
FORM_OVERHEAD = 64 * 1024  # multipart boundaries, headers and the text field, on top of the image
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' blob:; object-src 'none'; "
    "base-uri 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
}
MAX_PAGE = 100  # catalog items per GET /items
FORM_FIELDS = ("image", "text", "k", "item_id", "category")  # what POST /recommend reads; "image" first
log = logging.getLogger(__name__)
# Most specific first: the status each kind of UserError is answered with (the rest are 400).
STATUS = (
    (ImageTooLarge, 413),
    (UnknownItem, 404),
    (DuplicateItem, 409),
    (StoreUnavailable, 503),
    (CatalogDamaged, 503),
)


class RecommendService(Protocol):
    """What the app needs; `fashionrec.index.Recommender` is the real one."""

    limits: ImageLimits

    def recommend(
        self, image: bytes | None, text: str, k: int, *, item_id: str | None = None, category: str | None = None
    ) -> list[Match]: ...

    def image(self, item_id: str) -> tuple[bytes, str]: ...

    def categories(self) -> dict[str, int]: ...

    def items(self, category: str | None, offset: int, limit: int) -> tuple[int, list[Item]]: ...

    def health(self) -> dict[str, Any]: ...

    def add_item(self, fields: Mapping[str, str], image: bytes) -> Item: ...

    def update_item(self, item_id: str, fields: Mapping[str, str], image: bytes | None) -> Item: ...

    def remove_item(self, item_id: str) -> None: ...


# /recommend reads its form itself (to bound it and to answer in its own words), so its fields are
# described here for the OpenAPI document.
RECOMMEND_FORM = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["text"],
                    "properties": {
                        "image": {"type": "string", "format": "binary", "description": "reference photo (or item_id)"},
                        "item_id": {"type": "string", "description": "a catalog item as the reference (or image)"},
                        "text": {"type": "string", "maxLength": MAX_TEXT_CHARS, "description": "what should change"},
                        "k": {"type": "integer", "minimum": 1, "maximum": MAX_K, "default": 10},
                        "category": {"type": "string", "description": "only items of this category"},
                    },
                }
            }
        },
    }
}


def create_app(service: RecommendService, admin_token: str | None = None) -> FastAPI:
    """The app; `admin_token` enables the write routes under /admin (otherwise they answer 404)."""
    # FastAPI's own /docs loads Swagger UI from a CDN; ours is a static page reading /openapi.json.
    app = FastAPI(
        title="fashionrec",
        summary="Catalog items that look like a reference item, changed as the shopper says.",
        docs_url=None,
        redoc_url=None,
    )
    app.add_middleware(BodyLimit, max_bytes=service.limits.max_bytes + FORM_OVERHEAD)
    app.add_middleware(HeadAsGet)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        return error(exc.status_code, str(exc.detail))

    @app.exception_handler(UserError)
    async def user_error(request: Request, exc: UserError) -> JSONResponse:
        status = next((code for kind, code in STATUS if isinstance(exc, kind)), 400)
        if status == 503:
            log.warning("%s %s: %s", request.method, request.url.path, exc)
        return error(status, str(exc))

    @app.exception_handler(RequestValidationError)
    async def bad_parameter(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0]
        return error(400, f"{first['loc'][-1]}: {first['msg']}")

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception) -> JSONResponse:
        log.exception("error answering %s %s", request.method, request.url.path)
        return error(500, "internal server error")

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC / "index.html", headers=PAGE_HEADERS)

    @app.get("/docs", include_in_schema=False)
    async def docs() -> FileResponse:
        return FileResponse(STATIC / "docs.html", headers=PAGE_HEADERS)

    @app.get("/health")
    async def health() -> JSONResponse:
        """`status` "ok"; "degraded" while a newer catalog version failed its checks (`problems` says why;
        the one loaded before is still served); "unavailable" (503) while the store cannot be reached."""
        try:
            report = await run_in_threadpool(service.health)
        except StoreUnavailable as e:
            return JSONResponse({"status": "unavailable", "error": str(e)}, status_code=503)
        # `threads`: the OpenMP threads torch's CPU kernels use in this process (what `--threads` set).
        extra = {"max_page": MAX_PAGE, "threads": torch.get_num_threads(), "admin": admin_token is not None}
        return JSONResponse({**report, **extra})

    @app.get("/categories", response_model=Categories, responses=ERRORS)
    async def categories() -> dict[str, Any]:
        """The catalog's categories and how many items each holds (an item may be in several)."""
        found = await run_in_threadpool(service.categories)
        return {"categories": [{"name": name, "items": n} for name, n in found.items()]}

    @app.get("/items", response_model=ItemPage, responses=ERRORS)
    async def items(
        category: str | None = Query(None, max_length=MAX_NAME_CHARS, description="only this category (default: all)"),
        offset: int = Query(0, ge=0, description="items to skip"),
        limit: int = Query(24, ge=1, le=MAX_PAGE, description="items to return"),
    ) -> Any:
        """A page of catalog items in id order, to browse for a starting item."""
        total, page = await run_in_threadpool(service.items, category or None, offset, limit)
        return {"items": [item_json(i) for i in page], "total": total, "offset": offset, "limit": limit}

    @app.post("/recommend", response_model=Results, responses=ERRORS, openapi_extra=RECOMMEND_FORM)
    async def recommend(request: Request) -> JSONResponse:
        """Top-k catalog items for a reference (an uploaded `image` or a catalog `item_id`) changed as
        `text` says, optionally within a `category`. The reference item itself is never a result."""
        try:
            # A file in any field is read, so that a plain field sent as a file is named in the answer.
            async with request.form(max_files=len(FORM_FIELDS), max_fields=len(FORM_FIELDS) - 1) as form:
                parsed = await read_query(form, service.limits.max_bytes)
        except MultiPartException as e:
            return error(400, f"malformed multipart form: {e.message}")
        if isinstance(parsed, JSONResponse):
            return parsed
        image, text, k, fields = parsed
        matches = await run_in_threadpool(lambda: service.recommend(image, text, k, **fields))
        return JSONResponse({"results": [{**item_json(m.item), "score": m.score} for m in matches]})

    @app.get("/items/{item_id:path}/image", responses=ERRORS)
    async def item_image(item_id: str) -> Response:
        # The id is only ever a key into the catalog; where the bytes are is the store's business.
        data, media_type = await run_in_threadpool(service.image, item_id)
        # Not cached for long: an item's picture can change through the admin API.
        headers = {"X-Content-Type-Options": "nosniff", "Cache-Control": "public, max-age=60"}
        return Response(data, media_type=media_type, headers=headers)

    add_admin_routes(app, service, admin_token)
    return app


async def read_query(
    form: FormData, max_bytes: int
) -> tuple[bytes | None, str, int, dict[str, str | None]] | JSONResponse:
    """(image bytes or None, text, k, {item_id, category}) from the form, or the 400 response saying which
    field is wrong. Reads at most one byte past the limit, so the service can report an oversized image."""
    image, text, k = form.get("image"), form.get("text", ""), form.get("k", "10")
    item_id, category = form.get("item_id"), form.get("category")
    files = [name for name in FORM_FIELDS[1:] if isinstance(form.get(name), UploadFile)]
    if files:
        return error(400, f"'{files[0]}' was sent as a file; send it as a plain form field (only 'image' is a file)")
    if not (isinstance(image, UploadFile) or (image is None and item_id is not None)):
        return error(
            400,
            "send the reference image as a file in the multipart field 'image' or a catalog item's id in "
            "'item_id', with 'text', 'k' and 'category' as plain fields",
        )
    try:
        k_value = int(k)
    except ValueError:
        return error(400, f"k must be an integer, got {k[:20]!r}")
    data = None if image is None else await image.read(max_bytes + 1)
    return data, text, k_value, {"item_id": item_id, "category": category or None}
