"""Where the Hugging Face hub cache is and whether downloads are off, read from the environment at call time
(not when a library was imported), so that every file fetched by name (text models, the bert-base-uncased
vocabulary) follows one rule: the cache first, then a download unless `HF_HUB_OFFLINE=1` (or
`TRANSFORMERS_OFFLINE=1`). Lives beside `errors` so that data and model can both import it."""

from __future__ import annotations

import os
from pathlib import Path


def offline() -> bool:
    """True when the user turned downloads off (the Hugging Face variables, which fashionrec honours for all
    pretrained weights)."""
    flags = (os.environ.get("HF_HUB_OFFLINE", ""), os.environ.get("TRANSFORMERS_OFFLINE", ""))
    return any(f.strip().lower() in ("1", "true", "yes", "on") for f in flags)


def hf_cache_dir() -> Path:
    """The Hugging Face hub cache, found as huggingface_hub finds it (HF_HUB_CACHE, HF_HOME, XDG_CACHE_HOME)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    xdg = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return Path(os.environ.get("HF_HOME") or xdg / "huggingface").expanduser() / "hub"
