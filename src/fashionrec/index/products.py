"""The products CSV of `fashionrec index --products FILE`: each item's categories and product details.

A header names the columns: `id` (required), `category` (several categories as several rows, or one
`|`-separated cell), `title`, `price`, `currency`, `url`; any other column is kept as an attribute. A file
of bare `id,category` rows without a header (what `--categories` took) is read as before. Rows repeating an
id add categories; their other fields must agree with the first row that gave them."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from fashionrec.errors import UserError
from fashionrec.index.categories import Categories
from fashionrec.index.items import PRODUCT_FIELDS, Product, check_id, parse_categories, parse_product


@dataclass(frozen=True)
class Listing:
    categories: Categories  # id -> categories, for ids given any
    products: dict[str, Product]  # id -> details; empty for a file of id and category only


def read_products(path: Path) -> Listing:
    """The file's items, or a UserError naming the file, the line and what is wrong with it."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            rows = list(csv.reader(f))
    except FileNotFoundError:
        raise UserError(f"products file not found: {path}") from None
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise UserError(f"cannot read the products file {path}: {e}") from None
    columns = [_column(cell) for cell in rows[0]] if rows else []
    header = "id" in columns
    if not header:
        columns = ["id", "category"]  # the categories file of earlier releases: no header, two columns
    elif "" in columns or len(set(columns)) != len(columns):
        raise UserError(f"{path}: line 1: every column needs a name of its own, got {','.join(rows[0])[:120]!r}")
    with_details = any(name not in ("id", "category") for name in columns)
    grouped: dict[str, set[str]] = {}
    fields: dict[str, dict[str, tuple[str, int]]] = {}  # id -> field -> (value, line that gave it)
    products: dict[str, Product] = {}
    for line, row in enumerate(rows[header:], 1 + header):
        if not "".join(row).strip():
            continue
        where = f"{path}: line {line}"
        if len(row) != len(columns):
            expected = ",".join(columns)
            raise UserError(f"{where}: expected {len(columns)} cells ({expected}), got {','.join(row)[:120]!r}")
        cells = dict(zip(columns, row, strict=True))
        try:
            item_id = check_id(cells["id"])
            names = parse_categories(cells.get("category", ""))
            parse_product(cells)  # this row's price, url and lengths
        except UserError as e:
            raise UserError(f"{where}: {e}") from None
        grouped.setdefault(item_id, set()).update(names)
        seen = fields.setdefault(item_id, {})
        for name, value in _given(cells).items():
            first = seen.setdefault(name, (value, line))
            if first[0] != value:
                raise UserError(
                    f"{where}: item {item_id!r} has {name} {value[:80]!r} here but {first[0][:80]!r} on line {first[1]}"
                )
        if with_details:
            products[item_id] = parse_product({name: value for name, (value, _) in seen.items()})
    return Listing({i: tuple(sorted(names)) for i, names in grouped.items() if names}, products)


def _column(cell: str) -> str:
    """Known column names in any case; attribute names as the file writes them."""
    name = cell.strip()
    return name.lower() if name.lower() in ("id", "category", *PRODUCT_FIELDS) else name


def _given(cells: dict[str, str]) -> dict[str, str]:
    """The non-blank detail cells of a row (product fields and attributes)."""
    return {name: value.strip() for name, value in cells.items() if name not in ("id", "category") and value.strip()}
