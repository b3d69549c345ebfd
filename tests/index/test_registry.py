"""Where a catalog location leads, and the index package's shape: no module imports one that imports it back."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import fashionrec.index
from fashionrec.errors import UserError
from fashionrec.index.registry import STORES, StoreKind, check_url, local_folder, redact, store_kind

PACKAGE = Path(fashionrec.index.__file__).parent


def imports_within_the_package(path: Path) -> set[str]:
    """The modules of fashionrec.index that `path` imports, at module level or inside functions."""
    found = set()
    modules = {p.stem for p in PACKAGE.glob("*.py")}
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module == "fashionrec.index":
            found |= {alias.name for alias in node.names if alias.name in modules}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("fashionrec.index."):
            found.add(node.module.split(".")[2])
        elif isinstance(node, ast.Import):
            found |= {a.name.split(".")[2] for a in node.names if a.name.startswith("fashionrec.index.")}
    return found - {path.stem}


def test_the_index_package_has_no_import_cycle() -> None:
    graph = {path.stem: imports_within_the_package(path) for path in PACKAGE.glob("*.py") if path.stem != "__init__"}
    assert graph["faiss_backend"].isdisjoint({"backends", "folder_store"})  # the loop Hit once made
    done: set[str] = set()

    def visit(module: str, path: tuple[str, ...]) -> None:
        if module in path:
            pytest.fail(f"import cycle: {' -> '.join((*path[path.index(module) :], module))}")
        if module in done:
            return
        for imported in graph.get(module, ()):
            visit(imported, (*path, module))
        done.add(module)

    for module in graph:
        visit(module, ())


def test_a_folder_path_is_a_folder_store_and_a_url_needs_a_registered_scheme(tmp_path: Path) -> None:
    assert store_kind(tmp_path / "index").name == "folder" and store_kind("relative/index").name == "folder"
    assert local_folder("relative/index") == Path("relative/index")
    assert store_kind("postgresql://shop:secret@db.example/catalog").name == "postgres"
    assert store_kind("POSTGRES://db.example/catalog").name == "postgres"
    with pytest.raises(UserError) as caught:
        store_kind("mysql://shop:secret@db.example/catalog")
    assert "no catalog store takes 'mysql://shop:***@db.example/catalog'" in str(caught.value)
    assert "give a folder, or a URL of: postgresql://, postgres://" in str(caught.value)
    assert "secret" not in str(caught.value)
    with pytest.raises(UserError, match="invalid catalog URL 'postgresql://shop:\\*\\*\\*@db:port/x'") as caught:
        check_url("postgresql://shop:secret@db:port/x")
    assert "secret" not in str(caught.value)


def test_a_registered_scheme_selects_its_store(monkeypatch: pytest.MonkeyPatch) -> None:
    """Registering a store is one entry: its schemes select it."""
    entry = StoreKind("example", "fashionrec.index.folder_store:FolderStore", ("example", "example+tls"))
    monkeypatch.setattr("fashionrec.index.registry.STORES", (*STORES, entry))
    assert store_kind("EXAMPLE+tls://host/db").name == "example" and local_folder("example://host/db") is None
    assert store_kind("index").name == "folder"


def test_passwords_never_appear_in_a_shown_location() -> None:
    assert redact("postgresql://u:p%40ss@db:5432/x?sslmode=require") == "postgresql://u:***@db:5432/x?sslmode=require"
    assert redact("postgresql://db/x") == "postgresql://db/x" and redact("/srv/index") == "/srv/index"
    assert redact("postgresql://u:secret@db:port/x") == "postgresql://u:***@db:port/x"
