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
