"""The write routes: add, change and remove catalog items while serving.

They exist only when an admin token is configured (`FASHIONREC_ADMIN_TOKEN`, or `fashionrec serve
--admin-token-file FILE`); otherwise they answer 404 like any unknown path. A request carries the token as
`Authorization: Bearer TOKEN`, compared in constant time: 401 without it, 403 when it is wrong."""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException

from fashionrec.credentials import read_secret
from fashionrec.errors import UserError
from fashionrec.index.images import ImageLimits
from fashionrec.index.items import Item
from fashionrec.serve.models import ERRORS, CatalogItem, error, item_json

TOKEN_ENV = "FASHIONREC_ADMIN_TOKEN"
MIN_TOKEN_CHARS = 16
MAX_FIELDS = 32  # form fields of one request, the image included
FIELD_NOTE = "id, category (several as several fields or one '|'-separated), title, price, currency, url"


class CatalogAdmin(Protocol):
    limits: ImageLimits

    def add_item(self, fields: Mapping[str, str], image: bytes) -> Item: ...

    def update_item(self, item_id: str, fields: Mapping[str, str], image: bytes | None) -> Item: ...

    def remove_item(self, item_id: str) -> None: ...


def read_admin_token(path: Path | None) -> str | None:
    """The token in `path`, else in FASHIONREC_ADMIN_TOKEN, else None (the admin routes are off)."""
    token = read_secret(path, TOKEN_ENV)
    if token is not None and (len(token) < MIN_TOKEN_CHARS or any(c.isspace() for c in token)):
        where = path or TOKEN_ENV
        raise UserError(f"the admin token in {where} must be at least {MIN_TOKEN_CHARS} characters, without spaces")
    return token


def _form(fields: dict[str, Any], required: list[str]) -> dict[str, Any]:
    """The OpenAPI description of an admin form (the routes read their forms themselves)."""
    schema = {"type": "object", "required": required, "properties": fields}
    return {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": schema}}}}


PRODUCT_FORM = {
    "category": {"type": "string", "description": "categories, '|'-separated"},
    "title": {"type": "string"},
    "price": {"type": "string", "description": "digits with a '.' decimal point: 19.90"},
    "currency": {"type": "string"},
    "url": {"type": "string", "description": "the product page, http(s)://"},
}
ADD_FORM = _form(
    {"image": {"type": "string", "format": "binary"}, "id": {"type": "string"}, **PRODUCT_FORM}, ["image", "id"]
)
UPDATE_FORM = _form({"image": {"type": "string", "format": "binary"}, **PRODUCT_FORM}, [])
# Declares the scheme in the OpenAPI document; the routes answer a missing or wrong token themselves.
BEARER = Depends(HTTPBearer(auto_error=False, scheme_name="adminToken", description="the admin token"))
Credentials = HTTPAuthorizationCredentials | None
ADMIN_ERRORS = {**ERRORS, **{status: ERRORS[400] for status in (401, 403, 409)}}


def add_admin_routes(app: FastAPI, service: CatalogAdmin, token: str | None) -> None:
    expected = None if token is None else token.encode()

    def refused(credentials: HTTPAuthorizationCredentials | None) -> JSONResponse | None:
        """The answer to a request without the right token, or None to go on."""
        if expected is None:
            return error(404, "Not Found")
        if credentials is None:
            answer = error(401, "this route needs the admin token: send 'Authorization: Bearer TOKEN'")
            answer.headers["WWW-Authenticate"] = "Bearer"
            return answer
        if not hmac.compare_digest(credentials.credentials.encode(), expected):
            return error(403, "the admin token is wrong")
        return None

    @app.post(
        "/admin/items", status_code=201, response_model=CatalogItem, responses=ADMIN_ERRORS, openapi_extra=ADD_FORM
    )
    async def add_item(request: Request, credentials: Credentials = BEARER) -> JSONResponse:
        """Add an item: its `image` and `id`, with its categories and product fields; other fields become
        attributes. The image is encoded with the catalog's model; 409 when the id is taken."""
        if (answer := refused(credentials)) is not None:
            return answer
        fields, image = await read_item_form(request, service.limits.max_bytes)
        if image is None:
            raise UserError("send the item's picture as a file in the multipart field 'image'")
        item = await run_in_threadpool(service.add_item, fields, image)
        return JSONResponse(item_json(item), status_code=201)

    @app.patch(
        "/admin/items/{item_id:path}", response_model=CatalogItem, responses=ADMIN_ERRORS, openapi_extra=UPDATE_FORM
    )
    async def update_item(item_id: str, request: Request, credentials: Credentials = BEARER) -> JSONResponse:
        """Change the fields given (a blank one is cleared) and, with an `image`, the picture."""
        if (answer := refused(credentials)) is not None:
            return answer
        fields, image = await read_item_form(request, service.limits.max_bytes)
        item = await run_in_threadpool(service.update_item, item_id, fields, image)
        return JSONResponse(item_json(item))

    @app.delete("/admin/items/{item_id:path}", responses=ADMIN_ERRORS)
    async def remove_item(item_id: str, credentials: Credentials = BEARER) -> JSONResponse:
        """Remove an item from the catalog."""
        if (answer := refused(credentials)) is not None:
            return answer
        await run_in_threadpool(service.remove_item, item_id)
        return JSONResponse({"removed": item_id})


async def read_item_form(request: Request, max_bytes: int) -> tuple[dict[str, str], bytes | None]:
    """(text fields, image bytes or None); repeated `category` fields are joined. Reads at most one byte
    past the limit, so the image check can report an oversized one."""
    fields: dict[str, str] = {}
    image = None
    try:
        async with request.form(max_files=1, max_fields=MAX_FIELDS) as form:
            for name, value in form.multi_items():
                if isinstance(value, UploadFile) != (name == "image"):
                    raise UserError(f"send 'image' as a file and the other fields ({FIELD_NOTE}) as text")
                if isinstance(value, UploadFile):
                    image = await value.read(max_bytes + 1)
                elif name in fields and name != "category":
                    raise UserError(f"the field {name[:100]!r} is given twice")
                else:
                    fields[name] = f"{fields[name]}|{value}" if name in fields else value
    except MultiPartException as e:
        raise UserError(f"malformed multipart form: {e.message}") from None
    return fields, image
