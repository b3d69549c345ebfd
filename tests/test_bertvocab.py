"""Where bert-base-uncased's vocab.txt is found: a folder as given, else the Hugging Face cache (located from the
environment at call time) before any download, and a clear line when downloads are off and it is absent."""

from __future__ import annotations

from pathlib import Path

import pytest

from fashionrec.bertvocab import find_vocab
from fashionrec.errors import UserError


def test_a_folder_is_used_as_given(tmp_path):
    (tmp_path / "vocab.txt").write_text("[PAD]\n")
    assert find_vocab(str(tmp_path)) == tmp_path / "vocab.txt"


def test_the_hugging_face_cache_is_read_first(bert_uncased_cache):
    assert find_vocab(None).resolve() == bert_uncased_cache.resolve()
    assert find_vocab("bert-base-uncased").read_text() == bert_uncased_cache.read_text()


def test_absent_and_offline_is_one_line_naming_what_to_fetch(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(UserError, match=r"not in the Hugging Face cache .*empty.* downloads are off") as info:
        find_vocab(None)
    assert "resolve/main/vocab.txt" in str(info.value) and "--text-model FOLDER" in str(info.value)
