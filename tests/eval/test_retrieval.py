"""The FashionIQ protocol on demo data: every gallery image and every query's reference goes through the
backbone once, and the ranking matches a brute-force computation, with and without the reference image."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from fashionrec.cli.main import main
from fashionrec.data.cache import ImageCache
from fashionrec.data.fashioniq import caption_text, load_split
from fashionrec.data.images import image_paths
from fashionrec.data.preprocess import PreprocessConfig
from fashionrec.errors import UserError
from fashionrec.eval.retrieval import EvalSettings, evaluate
from fashionrec.model import create_model, save_pretrained


def _model():
    torch.manual_seed(0)
    return create_model("tiny", ["is red", "has long sleeves"], pretrained=False).eval()


@pytest.mark.slow
@pytest.mark.parametrize("exclude_reference", [False, True])
def test_gallery_encoded_once_and_recall_matches_brute_force(demo_data, tmp_path, exclude_reference):
    splits = load_split(demo_data, "val", ["dress", "shirt"])
    model = _model()
    cache = ImageCache(tmp_path / "cache", PreprocessConfig(image_size=model.config.image_size))
    cache.build(image_paths(splits.values(), demo_data / "images"))
    rows = []
    model.backbone.register_forward_hook(lambda m, inp, out: rows.append(inp[0].shape[0]))

    settings = EvalSettings(device=torch.device("cpu"), batch_size=16, exclude_reference=exclude_reference)
    metrics = evaluate(model, splits, cache, settings)

    images = sum(len(s.gallery) + len(s.triplets) for s in splits.values())
    assert sum(rows) == 2 * images  # whole image + crop, once per gallery image and per query reference
    assert set(metrics) == {"protocol", "dress", "shirt", "average"}
    assert metrics["protocol"] == ("fashioniq-exclude-reference" if exclude_reference else "fashioniq-standard")

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
                if exclude_reference and t.candidate != t.target:
                    scores[split.gallery.index(t.candidate)] = float("-inf")
                target_score = scores[split.gallery.index(t.target)]
                hits10 += int((scores >= target_score).sum().item() - 1 < 10)
        assert abs(metrics[name]["recall_at_10"] - hits10 / len(split.triplets)) < 1e-6
        assert metrics[name]["missing_targets"] == 0
    avg = metrics["average"]["recall_at_10"]
    assert abs(avg - (metrics["dress"]["recall_at_10"] + metrics["shirt"]["recall_at_10"]) / 2) < 1e-9


def test_fast_validation_is_a_fixed_subset(demo_data, tmp_path):
    from fashionrec.eval.retrieval import select_queries

    split = load_split(demo_data, "val", ["dress"])["dress"]
    a = select_queries(split, EvalSettings(device=torch.device("cpu"), query_limit=10, seed=1))
    b = select_queries(split, EvalSettings(device=torch.device("cpu"), query_limit=10, seed=1))
    c = select_queries(split, EvalSettings(device=torch.device("cpu"), query_limit=10, seed=2))
    assert a == b and len(a) == 10 and a != c


def test_queries_with_a_target_outside_the_gallery_stay_in_the_denominator(demo_data, tmp_path):
    split = load_split(demo_data, "val", ["dress"])["dress"]
    model = _model()
    cache = ImageCache(tmp_path / "cache", PreprocessConfig(image_size=model.config.image_size))
    cache.build(image_paths([split], demo_data / "images"))
    settings = EvalSettings(device=torch.device("cpu"), batch_size=16)
    gone = split.triplets[0].target
    lost = sum(t.target == gone for t in split.triplets)
    smaller = dataclasses.replace(split, gallery=[i for i in split.gallery if i != gone])
    assert len(smaller.gallery) < 50  # so every target still in the gallery is in the top 50
    cut = evaluate(model, {"dress": smaller}, cache, settings)["dress"]
    assert cut["missing_targets"] == lost >= 1
    assert cut["recall_at_50"] == pytest.approx((len(split.triplets) - lost) / len(split.triplets))


def test_a_gallery_with_a_duplicate_id_is_refused_before_encoding(demo_data, tmp_path):
    split = load_split(demo_data, "val", ["dress"])["dress"]
    twice = dataclasses.replace(split, gallery=[*split.gallery, split.gallery[3]])
    model = _model()
    cache = ImageCache(tmp_path / "cache", PreprocessConfig(image_size=model.config.image_size))
    with pytest.raises(UserError, match=f"dress gallery lists 1 image id.*{split.gallery[3]}"):
        evaluate(model, {"dress": twice}, cache, EvalSettings(device=torch.device("cpu")))


def test_evaluate_json_names_its_protocol(demo_data, tmp_path, capsys):
    save_pretrained(_model(), tmp_path / "model")
    args = ["evaluate", "--checkpoint", str(tmp_path / "model"), "--path-file", str(demo_data)]
    args += ["--path-folder", str(demo_data / "images"), "--categories", "dress", "--cache-dir", str(tmp_path / "c")]
    args += ["--num-workers", "0", "--device", "cpu", "--json"]
    results = {}
    for extra in ([], ["--exclude-reference"]):
        assert main([*args, *extra]) == 0
        out = json.loads(capsys.readouterr().out)
        results[out.pop("protocol")] = out
    standard, excluded = results["fashioniq-standard"], results["fashioniq-exclude-reference"]
    assert set(standard) == set(excluded) == {"dress", "average"}
    assert standard["dress"]["missing_targets"] == 0
    # Removing the reference can only lift each target's rank.
    assert excluded["dress"]["recall_at_10"] >= standard["dress"]["recall_at_10"]
