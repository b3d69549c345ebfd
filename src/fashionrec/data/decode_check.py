"""Find the image files that would stop a run: each is decoded exactly as training loads it."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tqdm import tqdm

from fashionrec.data.images import DECODE_THREADS, load_image
from fashionrec.errors import UserError


def corrupt_images(paths: Mapping[str, Path]) -> dict[str, str]:
    """id -> why, for every file in `paths` that does not decode; a progress bar on stderr."""

    def problem(path: Path) -> str | None:
        try:
            load_image(path)
        except UserError as e:
            return str(e)
        return None

    found: dict[str, str] = {}
    bar = tqdm(total=len(paths), desc="decoding images", unit="img", file=sys.stderr)
    with bar, ThreadPoolExecutor(DECODE_THREADS) as pool:
        for image_id, why in zip(paths, pool.map(problem, paths.values()), strict=True):
            bar.update()
            if why is not None:
                found[image_id] = why
    return found
