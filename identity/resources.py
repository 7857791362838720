"""Files the service ships besides its code: migrations, templates, static files, the demo tenant.

The source tree keeps them at the top level (``alembic/``, ``alembic.ini``, ``templates/``, ``static/``,
``examples/``), where developers expect them. The wheel carries them inside the package, under ``identity/_data/``
(mapped in at build time: ``[tool.hatch.build.targets.wheel.force-include]`` in pyproject.toml), and they are found
with `importlib.resources`, so an installed release never looks for a source checkout.

A source checkout (the editable install of ``scripts/_venv.sh``) has no ``identity/_data/``; there the files are read
from the checkout itself. That fallback is only taken when the package really lives in identity's checkout: its parent
directory holds a ``pyproject.toml`` naming the project ``identity`` and the top-level ``alembic.ini``, and it is not an
installation directory (``site-packages``: any of the interpreter's install paths or site directories). So an
installed wheel whose ``_data/`` went missing fails loudly instead of reading files from wherever it happens to be,
and never resolves into a checkout.
"""

from __future__ import annotations

import site
import sys
import sysconfig
import tomllib
from functools import cache
from importlib.resources import files
from pathlib import Path

__all__ = ["data_root", "resource", "source_checkout"]

_DATA = "_data"


@cache
def data_root() -> Path:
    """The directory holding ``alembic/``, ``alembic.ini``, ``templates/``, ``static/`` and ``examples/``."""
    package = files("identity")
    if not isinstance(package, Path):  # zipimport and the like: Alembic and Jinja need real files
        raise RuntimeError("identity must be installed as files on disk (not imported from a zip archive)")
    shipped = package / _DATA
    if shipped.is_dir():
        return shipped
    checkout = source_checkout(package)
    if checkout is not None:
        return checkout
    raise RuntimeError(f"identity's data files are missing: {shipped} does not exist (a broken installation?)")


def source_checkout(package: Path) -> Path | None:
    """The checkout holding ``package`` when it is identity's source tree (an editable install), else ``None``."""
    checkout = package.parent
    if checkout.resolve() in _install_dirs():
        return None  # an installed package: its data ship in _data/, never beside it
    try:
        project = tomllib.loads((checkout / "pyproject.toml").read_text(encoding="utf-8")).get("project", {})
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return None
    if project.get("name") != "identity" or not (checkout / "alembic.ini").is_file():
        return None
    return checkout


def _install_dirs() -> set[Path]:
    """Where packages get installed for this interpreter: a package there is an installation, not a checkout."""
    dirs = {sysconfig.get_paths().get(key) for key in ("purelib", "platlib")}
    dirs.update(site.getsitepackages() if hasattr(site, "getsitepackages") else [])
    dirs.add(site.getusersitepackages() if hasattr(site, "getusersitepackages") else None)
    dirs.update(path for path in sys.path if path.rstrip("/").endswith(("site-packages", "dist-packages")))
    return {Path(path).resolve() for path in dirs if path}


def resource(*parts: str) -> Path:
    """A shipped file or directory, e.g. ``resource("templates")``; fails clearly when it is missing."""
    path = data_root().joinpath(*parts)
    if not path.exists():
        raise RuntimeError(f"identity's data file {'/'.join(parts)} is missing from {data_root()}")
    return path
