"""A catalog in PostgreSQL with pgvector: the database holds everything (model fingerprint,
preprocessing, items, product fields, image bytes, vectors), so any number of servers can share it and
see each change at their next request.

Needs PostgreSQL 13+ with pgvector 0.8+ (`pip install 'fashionrec[postgres]'` for the client side);
`fashionrec.index.postgres.embedded` starts one in a data folder.
"""

from fashionrec.index.postgres.build import Build, BuildResult, Content
from fashionrec.index.postgres.errors import ItemExists, NoSuchItem, StoreUnavailable
from fashionrec.index.postgres.files import build_from_files
from fashionrec.index.postgres.records import CatalogInfo, ItemRecord, ModelStamp, StoredImage
from fashionrec.index.postgres.schema import DEFAULT_CATALOG
from fashionrec.index.postgres.store import PostgresCatalog

__all__ = [
    "DEFAULT_CATALOG",
    "Build",
    "BuildResult",
    "CatalogInfo",
    "Content",
    "ItemExists",
    "ItemRecord",
    "ModelStamp",
    "NoSuchItem",
    "PostgresCatalog",
    "StoreUnavailable",
    "StoredImage",
    "build_from_files",
]
