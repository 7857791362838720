"""Files the service ships besides its code: migrations, templates, static files, the demo tenant.

The source tree keeps them at the top level (``alembic/``, ``alembic.ini``, ``templates/``, ``static/``,
``examples/``), where developers expect them. The wheel carries them inside the package, under ``identity/_data/``
(mapped in at build time: ``[tool.hatch.build.targets.wheel.force-include]`` in pyproject.toml), and they are found
with `importlib.resources`, so an installed release never looks for a source checkout.

A source checkout (the editable install of ``scripts/_venv.sh``) has no ``identity/_data/``; there the files are read
from the checkout itself, recognised by its ``pyproject.toml`` beside the package.
"""

from __future__ import annotations

from functools import cache
from importlib.resources import files
from pathlib import Path

__all__ = ["data_root", "resource"]

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
    checkout = package.parent
    if (checkout / "pyproject.toml").is_file() and (checkout / "alembic.ini").is_file():
        return checkout
    raise RuntimeError(f"identity's data files are missing: {shipped} does not exist (a broken installation?)")


def resource(*parts: str) -> Path:
    """A shipped file or directory, e.g. ``resource("templates")``; fails clearly when it is missing."""
    path = data_root().joinpath(*parts)
    if not path.exists():
        raise RuntimeError(f"identity's data file {'/'.join(parts)} is missing from {data_root()}")
    return path
