"""Training data plumbing: splits, the preprocessing cache, and a data order that can resume mid-epoch."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch.utils.data import DataLoader, DistributedSampler

from fashionrec.data.cache import ImageCache
from fashionrec.data.datasets import TripletDataset
from fashionrec.data.fashioniq import CategorySplit, caption_text
from fashionrec.data.images import image_paths, load_split_with_images
from fashionrec.data.preprocess_config import PreprocessConfig
from fashionrec.eval.retrieval import check_gallery
from fashionrec.model.config import ModelConfig
from fashionrec.train.params import TrainConfig


class ResumableSampler(DistributedSampler):
    """torch's DistributedSampler (shuffle seeded by seed + epoch, one shard per rank; world size 1 on a
    single device) that can start `start` samples into this rank's shard, so a run resumed mid-epoch sees
    exactly the batches an uninterrupted run would have seen next."""

    def __init__(self, dataset: TripletDataset, seed: int, rank: int = 0, world_size: int = 1):
        super().__init__(dataset, num_replicas=world_size, rank=rank, shuffle=True, seed=seed, drop_last=False)
        self.start = 0

    def set_position(self, epoch: int, start: int) -> None:
        self.set_epoch(epoch)
        self.start = start

    def __iter__(self) -> Iterator[int]:
        return itertools.islice(super().__iter__(), self.start, None)

    def __len__(self) -> int:
        return self.num_samples - self.start


@dataclass
class TrainingData:
    train_splits: dict[str, CategorySplit]
    val_splits: dict[str, CategorySplit]

    def train_texts(self) -> list[str]:
        """Caption texts for training a WordPiece vocabulary (random-init text models)."""
        return [caption_text(t.captions, None) for s in self.train_splits.values() for t in s.triplets]

    def triplets(self) -> list:
        return [t for s in self.train_splits.values() for t in s.triplets]

    def image_paths(self, folder: str) -> dict:
        """id -> file of every image training and validation use."""
        return image_paths([*self.train_splits.values(), *self.val_splits.values()], folder)


def load_training_data(cfg: TrainConfig, log=print) -> TrainingData:
    train, val = (
        load_split_with_images(
            cfg.path_file, cfg.path_folder, split, cfg.categories, cfg.skip_missing, log, cfg.text_model
        )
        for split in ("train", cfg.val_split)
    )
    for split in val.values():
        check_gallery(split)  # before training, not at the first validation
    return TrainingData(train, val)


def run_preprocessing(cfg: TrainConfig, config: ModelConfig) -> PreprocessConfig:
    """The run's preprocessing: the model's own, with the run's crop, landmark, detector and resize settings.
    It is recorded in the model's config, which travels in every checkpoint."""
    settings = config.preprocess_config(
        crop=cfg.crop, landmarks=cfg.landmarks, yolo_weights=cfg.yolo_weights, resize=cfg.resize
    )
    config.preprocess = settings.model_settings()
    return settings


def build_cache(cfg: TrainConfig, data: TrainingData, preprocess: PreprocessConfig) -> ImageCache:
    """Preprocess every image the run needs, once (`preprocess`: the model's); later epochs and runs only
    read the cache."""
    cache = ImageCache(cfg.cache_dir, preprocess)
    cache.build(data.image_paths(cfg.path_folder))
    return cache


def make_loader(dataset: TripletDataset, sampler: ResumableSampler, cfg: TrainConfig, epoch: int) -> DataLoader:
    """A loader whose own generator is seeded per epoch: creating it never draws from the global RNG,
    which belongs to the model (dropout) and is saved in checkpoints."""
    return DataLoader(
        dataset,
        batch_size=cfg.batch,
        sampler=sampler,
        num_workers=cfg.num_workers,
        pin_memory=torch.cuda.is_available(),
        drop_last=False,
        generator=torch.Generator().manual_seed(cfg.seed * 100_003 + epoch),
        persistent_workers=False,
    )
