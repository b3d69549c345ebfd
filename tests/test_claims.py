"""Every promise tagged in README.md and docs/*.md names a test that exists (scripts/claims.py)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("claims", ROOT / "scripts" / "claims.py")
claims = importlib.util.module_from_spec(spec)
sys.modules["claims"] = claims
spec.loader.exec_module(claims)


@pytest.mark.slow
def test_every_tagged_promise_in_the_docs_has_a_real_test(capsys):
    assert claims.main(["--check"]) == 0, capsys.readouterr().out
    assert len([c for doc in claims.documents(ROOT) for c in claims.claims_in(doc)]) >= 20


def test_a_promise_without_a_test_or_with_a_wrong_one_fails(tmp_path, capsys):
    (tmp_path / "docs").mkdir()
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_x.py").write_text("def test_real():\n    pass\n")
    (tmp_path / "README.md").write_text(
        "It works. <!-- claim: tests/test_x.py::test_real -->\n"
        "It is fast. <!-- claim: -->\n"
        "It is safe. <!-- claim: tests/test_x.py::test_imaginary -->\n"
        "It runs on GPUs. <!-- claim: none (no GPU on these machines) -->\n"
    )
    assert claims.main(["--check", "--root", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "4 promises, 2 without a real test" in out
    assert "no test named" in out and "test_imaginary: no such test" in out
