"""Catalog index: encode images with the target block, search them with FAISS or Qdrant.

`build_index` and `recommend` are the Python API behind `fashionrec index` / `fashionrec recommend`;
`Recommender` keeps a model and an index loaded for a server.
"""

from fashionrec.index.build import BuildReport, build_index
from fashionrec.index.recommend import MAX_K, MAX_TEXT_CHARS, Match, Recommender, recommend

__all__ = ["MAX_K", "MAX_TEXT_CHARS", "BuildReport", "Match", "Recommender", "build_index", "recommend"]
