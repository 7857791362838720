"""Where identity finds its data files: in the wheel's _data/, or in its own checkout, never elsewhere."""

from __future__ import annotations

import sysconfig
from pathlib import Path

import pytest

from identity import resources
from identity.resources import data_root, source_checkout


def fake_checkout(root: Path, name: str = "identity") -> Path:
    (root / "identity").mkdir(parents=True)
    (root / "pyproject.toml").write_text(f'[project]\nname = "{name}"\nversion = "0"\n')
    (root / "alembic.ini").write_text("[alembic]\n")
    return root / "identity"


def test_a_checkout_of_identity_is_recognised(tmp_path: Path) -> None:
    assert source_checkout(fake_checkout(tmp_path)) == tmp_path


def test_another_projects_checkout_is_not(tmp_path: Path) -> None:
    assert source_checkout(fake_checkout(tmp_path, name="something-else")) is None
    (tmp_path / "pyproject.toml").write_text("not toml [")
    assert source_checkout(tmp_path / "identity") is None


def test_a_checkout_needs_its_alembic_ini(tmp_path: Path) -> None:
    package = fake_checkout(tmp_path)
    (tmp_path / "alembic.ini").unlink()
    assert source_checkout(package) is None


def test_an_installed_package_never_falls_back_to_its_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Even a site-packages that happens to hold identity's pyproject.toml and alembic.ini is not a checkout."""
    package = fake_checkout(tmp_path / "site-packages")
    monkeypatch.setattr(resources, "_install_dirs", lambda: {(tmp_path / "site-packages").resolve()})
    assert source_checkout(package) is None


def test_the_interpreters_install_directories_count_as_installations() -> None:
    purelib = Path(sysconfig.get_paths()["purelib"]).resolve()
    assert purelib in resources._install_dirs()
    assert source_checkout(purelib / "identity") is None


def test_this_test_run_reads_the_checkout_or_the_shipped_data() -> None:
    root = data_root()
    assert (root / "alembic.ini").is_file() and (root / "templates").is_dir()
    assert root.name == "_data" or source_checkout(root / "identity") == root
