"""The protocol engine (identity/oauth2) must not depend on the web framework or the storage layer."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import identity

PACKAGE_ROOT = Path(identity.__file__).resolve().parent
ENGINE = PACKAGE_ROOT / "oauth2"
FORBIDDEN = {"litestar", "sqlalchemy", "sqlmodel"}


def imported_modules(source: str, *, module: str = "identity.oauth2.x") -> set[str]:
    """Absolute names of every module a source file imports (anywhere in it, including inside functions)."""
    names: set[str] = set()
    package = module.rsplit(".", 1)[0]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                target = f"{base}.{node.module}" if node.module else base
            else:
                target = node.module or ""
            names.add(target)
            # `from identity.oauth2 import grants` may import a submodule.
            names.update(f"{target}.{alias.name}" for alias in node.names)
    return names


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE_ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def importing_name(path: Path) -> str:
    """The name relative imports of ``path`` resolve against (a package's ``__init__`` counts as inside it)."""
    parts = path.relative_to(PACKAGE_ROOT.parent).with_suffix("").parts
    return ".".join(parts)


def module_path(name: str) -> Path | None:
    base = PACKAGE_ROOT.parent.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def engine_files() -> list[Path]:
    return sorted(ENGINE.rglob("*.py"))


def forbidden(names: set[str]) -> set[str]:
    return {name for name in names if name.split(".")[0] in FORBIDDEN}


@pytest.mark.parametrize(
    "source",
    [
        "import litestar",
        "import sqlalchemy.orm as orm",
        "from sqlmodel import select",
        "from litestar.exceptions import HTTPException",
        "def f():\n    import sqlalchemy\n",
        "try:\n    from sqlmodel import Field\nexcept ImportError:\n    pass\n",
    ],
)
def test_the_checker_sees_forbidden_imports(source):
    assert forbidden(imported_modules(source))


def test_the_checker_resolves_relative_imports():
    assert "identity.oauth2.errors" in imported_modules("from .errors import X", module="identity.oauth2.endpoint")
    assert "identity.oauth2.store" in imported_modules("from ..store import x", module="identity.oauth2.grants.x")
    assert "identity.store" in imported_modules("from ...store import tenant", module="identity.oauth2.grants.x")
    assert "identity.oauth2.errors" in imported_modules("from .errors import X", module="identity.oauth2.__init__")


def test_engine_files_are_found():
    names = {path.name for path in engine_files()}
    assert {"requests.py", "client_auth.py", "endpoint.py", "password.py", "scopes.py", "errors.py"} <= names


@pytest.mark.parametrize("path", engine_files(), ids=lambda path: str(path.relative_to(PACKAGE_ROOT)))
def test_no_engine_module_imports_framework_or_storage(path):
    names = imported_modules(path.read_text(), module=importing_name(path))
    assert not forbidden(names), f"{path.relative_to(PACKAGE_ROOT)} imports {sorted(forbidden(names))}"


def test_no_engine_module_reaches_framework_or_storage_through_identity_modules():
    """Follow imports of identity.* modules transitively from the engine: none may lead to the forbidden packages."""
    seen: dict[str, str] = {}  # module -> the module that imported it
    queue = [module_name(path) for path in engine_files()]
    for name in queue:
        seen[name] = "(engine)"
    offenders = []
    while queue:
        name = queue.pop()
        path = module_path(name)
        if path is None:
            continue
        for imported in imported_modules(path.read_text(), module=importing_name(path)):
            if imported.split(".")[0] in FORBIDDEN:
                offenders.append(f"{name} imports {imported}")
            elif imported.startswith("identity") and imported not in seen and module_path(imported) is not None:
                seen[imported] = name
                queue.append(imported)
    assert not offenders, offenders
    assert "identity.crypto" in seen, "the walk follows identity modules (client_auth uses identity.crypto)"


def test_importing_the_engine_loads_neither_framework_nor_storage():
    code = (
        "import sys\n"
        "import identity.oauth2, identity.oauth2.grants, identity.oauth2.client_auth, identity.oauth2.scopes\n"
        f"print(sorted(name for name in sys.modules if name.split('.')[0] in {sorted(FORBIDDEN)!r}))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
