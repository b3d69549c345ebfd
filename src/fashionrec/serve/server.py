"""`fashionrec serve`: load the model once, then answer HTTP until interrupted."""

from __future__ import annotations

from pathlib import Path

from fashionrec.index.recommend import Recommender
from fashionrec.serve.app import create_app

# Requests beyond this many in flight get a 503 at once instead of queueing without bound.
MAX_IN_FLIGHT = 64


def serve(checkpoint: Path, index_dir: Path, host: str = "127.0.0.1", port: int = 8000,
          device: str = "auto") -> None:
    import uvicorn

    recommender = Recommender.open(Path(checkpoint), Path(index_dir), device=device)
    try:
        print(f"serving {len(recommender.catalog)} items on http://{host}:{port}/ (Ctrl-C stops)", flush=True)
        uvicorn.run(create_app(recommender), host=host, port=port, limit_concurrency=MAX_IN_FLIGHT,
                    log_level="info")
    finally:
        recommender.close()
