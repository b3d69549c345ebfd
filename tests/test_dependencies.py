"""The rule for missing test dependencies (tests/conftest.py): a skip on a developer's machine, a failure
in CI, where a skip would silently hide the tests that need them."""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType

import pytest

ABSENT = "fashionrec_no_such_module"


@pytest.mark.parametrize("value", ["true", "1", "yes"])
def test_a_missing_module_fails_when_ci_is_set(
    require: Callable[[str], ModuleType], monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("CI", value)
    with pytest.raises(pytest.fail.Exception, match=f"needs {ABSENT}.*CI is set"):
        require(ABSENT)


@pytest.mark.parametrize("value", [None, "", "0", "false"])
def test_a_missing_module_skips_outside_ci(
    require: Callable[[str], ModuleType], monkeypatch: pytest.MonkeyPatch, value: str | None
) -> None:
    if value is None:
        monkeypatch.delenv("CI", raising=False)
    else:
        monkeypatch.setenv("CI", value)
    with pytest.raises(pytest.skip.Exception, match=f"needs {ABSENT}"):
        require(ABSENT)


def test_a_present_module_is_returned(require: Callable[[str], ModuleType], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    assert require("json.decoder").JSONDecoder is not None


def test_a_missing_resource_fails_in_ci(missing_resource, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="no annotations"):
        missing_resource("no annotations")
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception, match="no annotations"):
        missing_resource("no annotations")


def test_mediapipe_is_required_exactly_where_it_has_a_wheel() -> None:
    """pyproject.toml's marker and `mediapipe_installable` draw the same line: the newest Python it has."""
    import re
    from pathlib import Path

    from packaging.requirements import Requirement

    from fashionrec.data.landmarks import MEDIAPIPE_NEWEST_PYTHON

    pyproject = (Path(__file__).resolve().parents[1] / "pyproject.toml").read_text()
    found = [Requirement(text) for text in re.findall(r"\"(mediapipe[^\"]*)\"", pyproject)]
    newest = "{}.{}".format(*MEDIAPIPE_NEWEST_PYTHON)
    after = f"{MEDIAPIPE_NEWEST_PYTHON[0]}.{MEDIAPIPE_NEWEST_PYTHON[1] + 1}"
    assert len(found) == 2  # the landmarks and test extras
    for requirement in found:
        assert requirement.marker.evaluate({"python_version": newest})
        assert not requirement.marker.evaluate({"python_version": after})
