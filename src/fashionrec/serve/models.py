"""What the API answers, for FastAPI's OpenAPI document and for every route that shows items."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from fashionrec.index.items import Item


class CatalogItem(BaseModel):
    id: str
    categories: list[str]
    image_url: str | None = Field(description="its picture; null for an item imported without one")
    title: str | None = Field(None, description="product name")
    price: str | None = Field(None, description="a decimal as text, exact: '19.90'")
    currency: str | None = None
    url: str | None = Field(None, description="the product page (http or https)")
    attributes: dict[str, str] = Field(default_factory=dict, description="any other product detail")


class Result(CatalogItem):
    score: float


class Results(BaseModel):
    results: list[Result]


class ItemPage(BaseModel):
    items: list[CatalogItem]
    total: int  # items in the category (or catalog) in all
    offset: int
    limit: int


class Category(BaseModel):
    name: str
    items: int


class Categories(BaseModel):
    categories: list[Category]


class Error(BaseModel):
    error: str


ERRORS = {status: {"model": Error} for status in (400, 404, 413, 503)}


def error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def image_url(item_id: str) -> str:
    return f"/items/{quote(item_id)}/image"


def item_json(item: Item) -> dict[str, Any]:
    """An item as the API shows it: no file paths, its image by URL (None when it has none)."""
    details = item.product.to_json()
    url = image_url(item.id) if item.has_image else None
    return {"id": item.id, "categories": list(item.categories), "image_url": url, **details}
