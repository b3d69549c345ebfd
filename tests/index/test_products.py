"""The products CSV: categories, product details and attributes per id, and one clear error per bad row."""

from __future__ import annotations

from pathlib import Path

import pytest

from fashionrec.errors import UserError
from fashionrec.index.items import Product
from fashionrec.index.products import read_products


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "products.csv"
    path.write_text(text, encoding="utf-8")
    return path


def test_details_categories_and_attributes(tmp_path: Path) -> None:
    """Several categories as several rows or a `|` cell; other columns become attributes (named as the
    header writes them); blank cells are absent; a repeated row may leave details out."""
    path = write(
        tmp_path,
        "ID,Category,Title,Price,Currency,URL,Material\n"
        'B001,dress|coat,"Red dress, long",19.90,EUR,https://shop.example/b001,cotton\n'
        "B001,sale,,,,,\n"
        "B002,shirt,Plain shirt,5,,http://shop.example/b002,\n"
        "B003,,No category,,,,\n",
    )
    listing = read_products(path)
    assert listing.categories == {"B001": ("coat", "dress", "sale"), "B002": ("shirt",)}
    assert listing.products == {
        "B001": Product("Red dress, long", "19.90", "EUR", "https://shop.example/b001", {"Material": "cotton"}),
        "B002": Product("Plain shirt", "5", None, "http://shop.example/b002"),
        "B003": Product("No category"),
    }


@pytest.mark.parametrize(
    "text, message",
    [
        ("id,title\n,Red dress\n", "line 2: an item id must be 1 to 256 characters"),
        ("id,title\nB001,Red\nB001,Blue\n", "line 3: item 'B001' has title 'Blue' here but 'Red' on line 2"),
        ("id,price\nB001,12.50\nB001,12.5\n", "line 3: item 'B001' has price '12.5' here but '12.50' on line 2"),
        ("id,price\nB001,12,50\n", "line 2: expected 2 cells (id,price)"),
        ("id,price\nB001,twelve\n", "line 2: unparsable price 'twelve'"),
        ("id,price\nB001,-3\n", "line 2: unparsable price '-3'"),
        ("id,price\nB001,1e3\n", "line 2: unparsable price '1e3'"),
        ("id,url\nB001,javascript:alert(1)\n", "line 2: the url must be an http:// or https:// address"),
        ("id,url\nB001,ftp://shop.example/x\n", "line 2: the url must be an http:// or https://"),
        ("id,url\nB001,https://\n", "line 2: the url must be an http:// or https://"),
        ("id,category\nB001," + "x" * 101 + "\n", "line 2: a category must be 1 to 100 characters"),
        ("id,,title\nB001,x,y\n", "line 1: every column needs a name of its own"),
        ("id,title,Title\nB001,x,y\n", "line 1: every column needs a name of its own"),
        ("B001,dress,extra\n", "line 1: expected 2 cells (id,category)"),
        ("id,title\nB\x01,x\n", "line 2: an item id must not hold control characters"),
    ],
)
def test_a_bad_row_is_one_error_naming_the_line(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(UserError) as caught:
        read_products(path)
    assert str(caught.value).startswith(f"{path}: ") and message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_missing_or_binary_file_is_a_user_error(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="products file not found"):
        read_products(tmp_path / "missing.csv")
    (tmp_path / "bin.csv").write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(UserError, match="cannot read the products file"):
        read_products(tmp_path / "bin.csv")


def test_an_update_replaces_the_fields_given_and_a_blank_one_clears(tmp_path: Path) -> None:
    product = Product("Red dress", "19.90", "EUR", "https://shop.example/a", {"material": "cotton", "fit": "slim"})
    changed = product.updated({"price": "17.50", "title": "", "material": "", "colour": "red"})
    assert changed == Product(None, "17.50", "EUR", "https://shop.example/a", {"fit": "slim", "colour": "red"})
    with pytest.raises(UserError, match="unparsable price"):
        product.updated({"price": "cheap"})
