"""A build from image files with an `Encoder`: encode only the contents the database lacks, a batch at
a time, each batch committed, so a killed build loses at most one batch of work."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from fashionrec.errors import UserError
from fashionrec.index.postgres.build import BuildResult, Content
from fashionrec.index.postgres.records import ItemRecord, ModelStamp

if TYPE_CHECKING:
    from fashionrec.index.encoder import Encoder
    from fashionrec.index.postgres.store import PostgresCatalog

STAGE_SIZE = 512  # images encoded and committed together


def build_from_files(
    catalog: PostgresCatalog,
    records: Sequence[ItemRecord],
    files: Mapping[str, Path],
    encoder: Encoder,
    checkpoint: str = "",
    *,
    rebuild: bool = False,
    images_root: str | None = None,
    approx_threshold: int | None = None,
    batch_size: int = 64,
    stage_size: int = STAGE_SIZE,
) -> BuildResult:
    """Make `catalog` hold exactly `records`, whose images are the files `files[record.id]` (with the
    sha256 each record states). Images whose content already has a vector of this encoder in the
    database (a live item's, or staged by a killed build) are not encoded again."""
    model = ModelStamp(encoder.fingerprint, encoder.preprocess, str(checkpoint))
    with catalog.build(model, rebuild=rebuild, images_root=images_root, approx_threshold=approx_threshold) as build:
        todo: dict[str, ItemRecord] = {}
        for record in records:
            if record.sha256 not in build.stored:
                todo.setdefault(record.sha256, record)
        chunks = list(todo.values())
        for start in range(0, len(chunks), stage_size):
            chunk = chunks[start : start + stage_size]
            vectors = encoder.encode_catalog({r.id: files[r.id] for r in chunk}, batch_size)
            build.stage(
                [Content(r.sha256, _read(files[r.id], r.sha256), v) for r, v in zip(chunk, vectors, strict=True)]
            )
        return build.commit(records)


def _read(path: Path, sha256: str) -> bytes:
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise UserError(f"cannot read {path}: {e.strerror}") from None
    if hashlib.sha256(data).hexdigest() != sha256:
        raise UserError(f"{path} changed while the catalog was being built; run the build again")
    return data
