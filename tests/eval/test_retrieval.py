"""The FashionIQ protocol on demo data: every gallery image and every query's reference goes through the
backbone once, and the ranking matches a brute-force computation."""

from __future__ import annotations

import torch

from fashionrec.data.cache import ImageCache
from fashionrec.data.fashioniq import caption_text, load_split
from fashionrec.data.images import image_paths
from fashionrec.data.preprocess import PreprocessConfig
from fashionrec.eval.retrieval import EvalSettings, evaluate
from fashionrec.model import create_model


def test_gallery_encoded_once_and_recall_matches_brute_force(demo_data, tmp_path):
    splits = load_split(demo_data, "val", ["dress", "shirt"])
    torch.manual_seed(0)
    model = create_model("tiny", ["is red", "has long sleeves"], pretrained=False).eval()
    cache = ImageCache(tmp_path / "cache", PreprocessConfig(image_size=model.config.image_size))
    cache.build(image_paths(splits.values(), demo_data / "images"))
    rows = []
    model.backbone.register_forward_hook(lambda m, inp, out: rows.append(inp[0].shape[0]))

    metrics = evaluate(model, splits, cache, EvalSettings(device=torch.device("cpu"), batch_size=16))

    images = sum(len(s.gallery) + len(s.triplets) for s in splits.values())
    assert sum(rows) == 2 * images  # whole image + crop, once per gallery image and per query reference
    assert set(metrics) == {"dress", "shirt", "average"}

    for name, split in splits.items():  # brute force, one sample at a time

        def item(i):
            x = cache.get(i)
            return (
                torch.from_numpy(x.image).permute(2, 0, 1)[None],
                torch.from_numpy(x.crop).permute(2, 0, 1)[None],
                torch.from_numpy(x.landmarks)[None],
                torch.from_numpy(x.landmark_mask)[None],
            )

        with torch.no_grad():
            gallery = torch.cat([model.encode_target(*item(i)) for i in split.gallery])
            hits10 = 0
            for t in split.triplets:
                ids, mask = model.tokenizer.encode_batch([caption_text(t.captions, None)])
                q = model.encode_reference(*item(t.candidate), ids, mask)
                scores = (q @ gallery.T)[0]
                if t.candidate != t.target:
                    scores[split.gallery.index(t.candidate)] = float("-inf")
                target_score = scores[split.gallery.index(t.target)]
                hits10 += int((scores >= target_score).sum().item() - 1 < 10)
        assert abs(metrics[name]["recall_at_10"] - hits10 / len(split.triplets)) < 1e-6
    avg = metrics["average"]["recall_at_10"]
    assert abs(avg - (metrics["dress"]["recall_at_10"] + metrics["shirt"]["recall_at_10"]) / 2) < 1e-9


def test_fast_validation_is_a_fixed_subset(demo_data, tmp_path):
    from fashionrec.eval.retrieval import select_queries

    split = load_split(demo_data, "val", ["dress"])["dress"]
    a = select_queries(split, EvalSettings(device=torch.device("cpu"), query_limit=10, seed=1))
    b = select_queries(split, EvalSettings(device=torch.device("cpu"), query_limit=10, seed=1))
    c = select_queries(split, EvalSettings(device=torch.device("cpu"), query_limit=10, seed=2))
    assert a == b and len(a) == 10 and a != c
