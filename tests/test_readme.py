"""The README's Python example runs as written, with one change: the pretrained CLIP it names is swapped for a
tiny open_clip model registered here (no weights can be fetched offline), built with random weights."""

from __future__ import annotations

import re
import shutil
import sys
from pathlib import Path

import pytest

from fashionrec.data.demo import make_demo_data

sys.path.insert(0, str(Path(__file__).resolve().parent / "model"))  # the tiny CLIP models of the model tests
from clip_models import register_open_clip  # noqa: E402

README = Path(__file__).resolve().parents[1] / "README.md"
NAMED_MODEL = 'pretrained=True, model="ViT-B-32/openai"'


def python_example() -> str:
    (block,) = re.findall(r"^## From Python\n.*?```python\n(.*?)```", README.read_text(), flags=re.S | re.M)
    return block


@pytest.mark.slow  # builds a CLIP model, an index and a query end to end
def test_the_python_example_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    code = python_example()
    assert NAMED_MODEL in code
    name = register_open_clip(tmp_path)
    code = code.replace(NAMED_MODEL, f"pretrained=False, model={name!r}")
    data = make_demo_data(tmp_path / "demo", images=24, image_size=64)
    shutil.copytree(data / "images", tmp_path / "work" / "catalog")
    shutil.copy(sorted((data / "images").glob("*.png"))[0], tmp_path / "work" / "photo.jpg")
    monkeypatch.chdir(tmp_path / "work")

    exec(compile(code, str(README), "exec"), {"__name__": "readme_example"})

    summary, *matches = capsys.readouterr().out.splitlines()
    assert summary.startswith("24 items (24 encoded, 0 unchanged, 0 removed)")
    assert len(matches) == 5 and all(len(line.split()) == 2 for line in matches)  # score, id (the demo has no titles)
    assert (tmp_path / "work" / "models" / "clip" / "model.safetensors").is_file()
