"""How much the preprocessing cache speeds up a DataLoader: samples/s reading the cache versus decoding
and preprocessing the image files on every access, on the same demo images and settings.

    venv/bin/python benchmarks/bench_cache.py [--images 2000] [--source-size 256] [--format png|jpg]

Prints the median of a few full passes for each, and their ratio, after the time a run takes to open the
built cache (checking its checksums). Data and cache go under --workdir
(outside the repository by default, in the temp folder).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset

from fashionrec.data.cache import ImageCache
from fashionrec.data.datasets import GalleryDataset, image_tensors
from fashionrec.data.demo import make_demo_data
from fashionrec.data.fashioniq import load_split
from fashionrec.data.images import image_paths, load_image
from fashionrec.data.preprocess import PreprocessConfig, Preprocessor


class DecodingDataset(Dataset):
    """The same items as `GalleryDataset`, made from the image file each time (no cache)."""

    def __init__(self, paths: list[Path], config: PreprocessConfig) -> None:
        self.paths, self.config = paths, config
        self._preprocessor: Preprocessor | None = None  # made in each worker

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        if self._preprocessor is None:
            self._preprocessor = Preprocessor(self.config)
        item = self._preprocessor.process(load_image(self.paths[index]))
        return {**image_tensors(item), "index": torch.tensor(index, dtype=torch.long)}


def samples_per_second(dataset: Dataset, batch_size: int, workers: int) -> float:
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=workers, shuffle=True)
    start = time.perf_counter()
    count = sum(len(batch["index"]) for batch in loader)
    return count / (time.perf_counter() - start)


def main() -> None:
    raw = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=raw)
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--source-size", type=int, default=256, help="side of the demo image files")
    parser.add_argument("--format", choices=("png", "jpg"), default="png")
    parser.add_argument("--image-size", type=int, default=224, help="model input side")
    parser.add_argument("--crop", default="foreground")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2], help="DataLoader workers to try")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "fashionrec-bench-cache")
    args = parser.parse_args()
    # One thread, as DataLoader workers use: with workers=0 the collate's OpenMP threads would otherwise
    # spin against the loading on a busy machine and measure contention, not loading.
    torch.set_num_threads(1)

    data = args.workdir / f"demo-{args.images}-{args.source_size}-{args.format}"
    if not (data / "attributes.json").exists():
        make_demo_data(data, args.images, seed=0, image_size=args.source_size, image_format=args.format)
    splits = [*load_split(data, "train").values(), *load_split(data, "val").values()]
    paths = image_paths(splits, data / "images")
    config = PreprocessConfig(image_size=args.image_size, crop=args.crop)

    cache = ImageCache(args.workdir / "cache", config)
    start = time.perf_counter()
    built = cache.build(paths)
    print(f"cache build: {built} images processed in {time.perf_counter() - start:.1f} s")
    opened = []
    for _ in range(args.repeats):  # what every later run pays at start: checking each chunk's checksums
        start = time.perf_counter()
        ImageCache(args.workdir / "cache", config).build(paths, progress=False)
        opened.append(time.perf_counter() - start)
    size = sum(p.stat().st_size for p in cache.root.glob("chunks/*")) / 2**20
    print(f"cache open of {size:.0f} MB (checksums checked): median {statistics.median(opened):.2f} s")

    ids = sorted(paths)
    contenders = {
        "decode files": DecodingDataset([paths[i] for i in ids], config),
        "cache": GalleryDataset(ids, cache),
    }
    print(
        f"{len(ids)} {args.format} images of {args.source_size}px -> {args.image_size}px, crop {args.crop}, "
        f"batch {args.batch_size}, median of {args.repeats} passes, {os.cpu_count()} CPUs, "
        f"load average {os.getloadavg()[0]:.1f}"
    )
    for workers in args.workers:
        runs: dict[str, list[float]] = {name: [] for name in contenders}
        for _ in range(args.repeats):  # alternate, so load from other processes hits both alike
            for name, dataset in contenders.items():
                runs[name].append(samples_per_second(dataset, args.batch_size, workers))
        medians = {name: statistics.median(r) for name, r in runs.items()}
        for name, median in medians.items():
            shown = ", ".join(f"{r:.0f}" for r in runs[name])
            print(f"  workers {workers}  {name:<12} {median:7.0f} samples/s  (passes: {shown})")
        print(f"  workers {workers}  cache is {medians['cache'] / medians['decode files']:.1f}x faster")


if __name__ == "__main__":
    main()
