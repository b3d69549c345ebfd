"""Find the image files that would stop a run: each is decoded exactly as training loads it."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tqdm import tqdm

from fashionrec.data.images import load_image
from fashionrec.errors import UserError


def corrupt_images(paths: Mapping[str, Path], *, workers: int | None = None, progress: bool = True) -> dict[str, str]:
    """id -> why, for every file in `paths` that does not decode; a progress bar on stderr."""

    def problem(path: Path) -> str | None:
        try:
            load_image(path)
        except UserError as e:
            return str(e)
        return None

    found: dict[str, str] = {}
    threads = workers or min(8, os.cpu_count() or 1)  # PIL decodes without the GIL
    bar = tqdm(total=len(paths), desc="decoding images", unit="img", file=sys.stderr, disable=not progress)
    with bar, ThreadPoolExecutor(threads) as pool:
        for image_id, why in zip(paths, pool.map(problem, paths.values()), strict=True):
            bar.update()
            if why is not None:
                found[image_id] = why
    return found
