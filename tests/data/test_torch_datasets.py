"""Triplet and gallery datasets: item keys, dtypes and shapes, and the caption order contract."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader

from fashionrec.data.cache import ImageCache
from fashionrec.data.datasets import GalleryDataset, TripletDataset, caption_order_seed
from fashionrec.data.fashioniq import Triplet, caption_text, load_split
from fashionrec.data.images import image_paths
from fashionrec.data.preprocess import PreprocessConfig
from fashionrec.errors import UserError

SIZE, LENGTH = 32, 12
DressVal = tuple[list[Triplet], list[str], ImageCache]


class WordLengthTokenizer:
    """Stands in for the model's tokenizer: one id per word (its length), padded to LENGTH."""

    def encode(self, text: str) -> tuple[list[int], list[int]]:
        ids = [len(w) for w in text.split()][:LENGTH]
        pad = LENGTH - len(ids)
        return ids + [0] * pad, [1] * len(ids) + [0] * pad


@pytest.fixture(scope="module")
def dress_val(demo_data: Path, tmp_path_factory: pytest.TempPathFactory) -> DressVal:
    split = load_split(demo_data, "val", ["dress"])["dress"]
    cache = ImageCache(tmp_path_factory.mktemp("cache"), PreprocessConfig(image_size=SIZE))
    cache.build(image_paths([split], demo_data / "images"), progress=False)
    return split.triplets, split.gallery, cache


def test_triplet_item_contract(dress_val) -> None:
    triplets, _, cache = dress_val
    item = TripletDataset(triplets, cache, WordLengthTokenizer(), train=False)[3]
    expected = {
        **{f"{p}_{k}": torch.uint8 for p in ("ref", "tgt") for k in ("image", "crop")},
        **{f"{p}_landmarks": torch.float32 for p in ("ref", "tgt")},
        **{f"{p}_landmark_mask": torch.bool for p in ("ref", "tgt")},
        "input_ids": torch.long, "attention_mask": torch.long, "index": torch.long,
    }  # fmt: skip
    assert {k: v.dtype for k, v in item.items()} == expected
    for key in ("ref_image", "ref_crop", "tgt_image", "tgt_crop"):
        assert item[key].shape == (3, SIZE, SIZE)
    assert item["ref_landmarks"].shape == (14, 2) and item["tgt_landmark_mask"].shape == (14,)
    assert item["input_ids"].shape == item["attention_mask"].shape == (LENGTH,)
    assert item["index"].item() == 3
    reference, target = cache.get(triplets[3].candidate), cache.get(triplets[3].target)
    assert torch.equal(item["ref_image"], torch.from_numpy(reference.image).permute(2, 0, 1))
    assert torch.equal(item["tgt_crop"], torch.from_numpy(target.crop).permute(2, 0, 1))
    text = caption_text(triplets[3].captions, None)
    assert item["input_ids"].tolist() == WordLengthTokenizer().encode(text)[0]


def test_training_caption_order_is_a_function_of_seed_epoch_index(dress_val) -> None:
    triplets, _, cache = dress_val
    index = next(i for i, t in enumerate(triplets) if len(set(t.captions)) == 2)
    a = TripletDataset(triplets, cache, WordLengthTokenizer(), train=True, seed=7)
    b = TripletDataset(triplets, cache, WordLengthTokenizer(), train=True, seed=7)
    seen = set()
    for epoch in range(12):
        a.set_epoch(epoch)
        b.set_epoch(epoch)
        assert a.text(index) == b.text(index)
        assert a.text(index) == caption_text(triplets[index].captions, caption_order_seed(7, epoch, index))
        seen.add(a.text(index))
    assert len(seen) == 2  # both orders turn up across epochs
    other = TripletDataset(triplets, cache, WordLengthTokenizer(), train=True, seed=8)
    assert [other.text(i) for i in range(len(triplets))] != [a.text(i) for i in range(len(triplets))]


def test_evaluation_caption_order_is_fixed(dress_val) -> None:
    triplets, _, cache = dress_val
    ds = TripletDataset(triplets, cache, WordLengthTokenizer(), train=False, seed=7)
    fixed = [caption_text(t.captions, None) for t in triplets]
    for epoch in (0, 5):
        ds.set_epoch(epoch)
        assert [ds.text(i) for i in range(len(ds))] == fixed


def test_gallery_items_batch(dress_val) -> None:
    _, gallery, cache = dress_val
    batch = next(iter(DataLoader(GalleryDataset(gallery, cache), batch_size=4)))
    assert set(batch) == {"image", "crop", "landmarks", "landmark_mask", "index"}
    assert batch["image"].shape == batch["crop"].shape == (4, 3, SIZE, SIZE)
    assert batch["image"].dtype == torch.uint8 and batch["landmark_mask"].dtype == torch.bool
    assert batch["landmarks"].shape == (4, 14, 2) and batch["index"].tolist() == [0, 1, 2, 3]


def test_datasets_refuse_images_not_built(dress_val, tmp_path: Path) -> None:
    triplets, gallery, _ = dress_val
    empty = ImageCache(tmp_path, PreprocessConfig(image_size=SIZE))
    with pytest.raises(UserError, match=f"images are not in the cache .*first: {triplets[0].candidate}"):
        TripletDataset(triplets, empty, WordLengthTokenizer(), train=True)
    with pytest.raises(UserError, match=f"{len(gallery)} images are not in the cache"):
        GalleryDataset(gallery, empty)
