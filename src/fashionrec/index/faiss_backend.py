"""The embedded default store: exact inner product for small catalogs, IVF above a size threshold."""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from fashionrec.atomic import atomic_write
from fashionrec.errors import UserError
from fashionrec.index.items import Item
from fashionrec.index.manifest import content_name, name_hash, read_verified
from fashionrec.index.store import CatalogDamaged, Hit, StoreOptions

# A flat scan of 100k x 768 takes ~27 ms per query on one core (benchmarks/bench_search.py); above
# that, IVF is tried and kept when it reaches TARGET_RECALL probing at most MAX_PROBE_FRACTION of its lists.
APPROX_THRESHOLD = 100_000
TARGET_RECALL = 0.95
MAX_PROBE_FRACTION = 0.25
TRAIN_POINTS_PER_LIST = 64
RECALL_QUERIES = 256
RECALL_K = 10


def _faiss() -> Any:
    """faiss is an optional dependency (the `serve` extra): import it only when a FAISS index is used."""
    try:
        import faiss
    except ImportError as e:
        raise UserError("the FAISS backend needs faiss-cpu: pip install 'fashionrec[serve]'") from e
    return faiss


class FaissBackend:
    """Rebuilt from the full vector matrix on every sync: simple and always consistent, and retraining
    keeps IVF lists fitted to the catalog as it changes. A flat index rebuilds in well under a second;
    IVF over a million items takes about a minute (see benchmarks/bench_search.py)."""

    def __init__(
        self, index_dir: Path, approx_threshold: int = APPROX_THRESHOLD, target_recall: float = TARGET_RECALL
    ) -> None:
        self.index_dir = Path(index_dir)
        self.location: dict[str, Any] = {"kind": "faiss"}
        self.approx_threshold = approx_threshold
        self.target_recall = target_recall
        self._built: tuple[str, Any] | None = None  # (sha256, index) of the last sync: its searcher reads no file

    @classmethod
    def location_from(cls, options: StoreOptions) -> dict[str, Any]:
        return {"kind": "faiss"}

    @classmethod
    def connect(cls, location: dict[str, Any], index_dir: Path, options: StoreOptions) -> FaissBackend:
        """A later sync keeps the threshold the index was built with, unless the options give one."""
        threshold = options.approx_threshold or location.get("approx_threshold") or APPROX_THRESHOLD
        return cls(index_dir, approx_threshold=threshold)

    def sync(
        self,
        items: Sequence[Item],
        vectors: np.ndarray,
        changed: Collection[str] = (),
        removed: Collection[str] = (),
        reset: bool = False,
    ) -> dict[str, Any]:
        faiss = _faiss()
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        entry = dict(self.location)
        if self.approx_threshold != APPROX_THRESHOLD:
            entry["approx_threshold"] = self.approx_threshold
        index = None
        if len(items) > self.approx_threshold:
            ivf = train_ivf(vectors)
            nprobe, recall = tune_nprobe(ivf, vectors, self.target_recall)
            tuned = {"nlist": ivf.nlist, "nprobe": nprobe, f"recall_at_{RECALL_K}": round(recall, 4)}
            if recall >= self.target_recall:
                index = ivf
                entry.update(type="ivf", **tuned)
            else:  # the target needs most lists scanned: an exact search is as fast
                entry["ivf_rejected"] = tuned
        if index is None:
            index = faiss.IndexFlatIP(vectors.shape[1])
            index.add(vectors)
            entry["type"] = "flat"
        blob = faiss.serialize_index(index).tobytes()
        entry["file"], entry["sha256"] = content_name("faiss", blob, ".index")
        atomic_write(self.index_dir / entry["file"], lambda f: f.write(blob))
        self._built = (entry["sha256"], index)
        return entry

    def searcher(self, entry: dict[str, Any], items: Sequence[Item]) -> FaissSearcher:
        """The index file is checked against its sha256 before FAISS parses a byte of it."""
        path = self.index_dir / entry["file"]
        if self._built is not None and self._built[0] == entry.get("sha256"):
            index = self._built[1]
        else:
            blob = read_verified(path, entry.get("sha256") or name_hash(entry["file"]))
            try:
                index = _faiss().deserialize_index(np.frombuffer(blob, dtype=np.uint8))
            except RuntimeError as e:
                raise CatalogDamaged(f"{path} is not a FAISS index ({str(e).splitlines()[0]})") from None
        if index.ntotal != len(items):
            raise CatalogDamaged(f"{path} holds {index.ntotal} vectors for {len(items)} items")
        if entry.get("nprobe"):
            index.nprobe = entry["nprobe"]
        return FaissSearcher(index, items)

    def close(self) -> None:
        self._built = None


class FaissSearcher:
    """One version of the index with its items; never changed, so searches need no lock."""

    def __init__(self, index: Any, items: Sequence[Item]) -> None:
        self.index = index
        self.items = list(items)
        self._by_id = {item.id: item for item in self.items}
        rows: dict[str, list[int]] = {}
        for row, item in enumerate(self.items):
            for name in item.categories:
                rows.setdefault(name, []).append(row)
        faiss = _faiss()
        # Rows by category, as FAISS selectors: a filtered search scans only the category's rows.
        self._selectors = {
            name: (len(members), faiss.IDSelectorBatch(np.asarray(members, np.int64))) for name, members in rows.items()
        }

    def search(
        self, queries: np.ndarray, k: int, exclude: Collection[str] = (), category: str | None = None
    ) -> list[list[Hit]]:
        queries = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        size, selector = (len(self.items), None) if category is None else self._selectors.get(category, (0, None))
        fetch = min(k + len(exclude), size)
        if fetch == 0:
            return [[] for _ in queries]
        scores, rows = self.index.search(queries, fetch, params=self._params(selector))
        if selector is not None and hasattr(self.index, "nprobe") and (rows < 0).any():
            # The probed lists held too few of the category's items: scan every list rather than return
            # fewer results than the category has.
            scores, rows = self.index.search(queries, fetch, params=self._params(selector, self.index.nlist))
        results = []
        for score_row, id_row in zip(scores, rows, strict=True):
            hits = [Hit(self.items[r], float(s)) for s, r in zip(score_row, id_row, strict=True) if r >= 0]
            results.append([h for h in hits if h.item.id not in exclude][:k])
        return results

    def get(self, item_id: str) -> Item | None:
        return self._by_id.get(item_id)

    def health(self) -> None:
        """An index in memory is always there."""

    def _params(self, selector: Any, nprobe: int | None = None) -> Any:
        if selector is None:
            return None
        faiss = _faiss()
        if hasattr(self.index, "nprobe"):  # IVF: per-search parameters replace the index's own nprobe
            return faiss.SearchParametersIVF(sel=selector, nprobe=nprobe or self.index.nprobe)
        return faiss.SearchParameters(sel=selector)


def train_ivf(vectors: np.ndarray) -> Any:
    """IVF-Flat with ~sqrt(N) lists, trained on at most 64 points per list (k-means cost, not quality,
    grows beyond that), holding every vector."""
    faiss = _faiss()
    n, dim = vectors.shape
    index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, max(1, int(math.sqrt(n))), faiss.METRIC_INNER_PRODUCT)
    index.cp.max_points_per_centroid = TRAIN_POINTS_PER_LIST
    index.train(vectors)
    index.add(vectors)
    return index


def tune_nprobe(index: Any, vectors: np.ndarray, target_recall: float) -> tuple[int, float]:
    """The smallest power-of-two nprobe whose recall@10 against the exact ranking, measured with a sample
    of catalog items as queries, reaches `target_recall`; it stops at MAX_PROBE_FRACTION of the lists,
    past which IVF saves too little. Returns (nprobe, recall) where it stopped."""
    rng = np.random.default_rng(0)
    sample = rng.choice(len(vectors), size=min(RECALL_QUERIES, len(vectors)), replace=False)
    queries = vectors[sample]
    exact = _exact_top(vectors, queries, RECALL_K + 1)
    limit = max(1, int(index.nlist * MAX_PROBE_FRACTION))
    nprobe = 1
    while True:
        index.nprobe = nprobe
        _, approx = index.search(queries, RECALL_K + 1)
        recall = _recall(exact, approx, sample)
        if recall >= target_recall or nprobe >= limit:
            return nprobe, recall
        nprobe = min(nprobe * 2, limit)


def _exact_top(vectors: np.ndarray, queries: np.ndarray, k: int, chunk: int = 65536) -> np.ndarray:
    """Exact top-k rows by inner product, scanning the matrix in chunks to bound memory."""
    best_scores = np.full((len(queries), 0), -np.inf, dtype=np.float32)
    best_rows = np.zeros((len(queries), 0), dtype=np.int64)
    for start in range(0, len(vectors), chunk):
        scores = queries @ vectors[start : start + chunk].T
        rows = np.broadcast_to(np.arange(start, start + scores.shape[1]), scores.shape)
        all_scores = np.concatenate([best_scores, scores], axis=1)
        all_rows = np.concatenate([best_rows, rows], axis=1)
        keep = np.argsort(-all_scores, axis=1, kind="stable")[:, :k]
        best_scores = np.take_along_axis(all_scores, keep, axis=1)
        best_rows = np.take_along_axis(all_rows, keep, axis=1)
    return best_rows


def _recall(exact: np.ndarray, approx: np.ndarray, self_rows: np.ndarray) -> float:
    """Mean overlap of the top-RECALL_K neighbours other than the query item itself."""
    total = 0.0
    for truth, found, me in zip(exact, approx, self_rows, strict=True):
        want = [r for r in truth if r != me][:RECALL_K]
        got = [r for r in found if r != me and r >= 0][:RECALL_K]
        total += len(set(got).intersection(want)) / len(want)
    return total / len(exact)
