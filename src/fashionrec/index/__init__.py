"""Catalog index: encode images with the target block, keep them in a catalog store (a folder with FAISS or
Qdrant, or a PostgreSQL database), search them.

`build_index` and `recommend` are the Python API behind `fashionrec index` / `fashionrec recommend`;
`Recommender` keeps a model and a catalog open for a server. `fashionrec.index.store` is the interface a
store implements, `fashionrec.index.registry` maps a location to one.
"""

from fashionrec.index.build import BuildReport, build_index
from fashionrec.index.recommend import MAX_K, MAX_TEXT_CHARS, Match, Recommender, recommend

__all__ = ["MAX_K", "MAX_TEXT_CHARS", "BuildReport", "Match", "Recommender", "build_index", "recommend"]
