"""fashionrec: find the catalog item that matches a product photo plus a text change."""

__version__ = "0.1.0"
