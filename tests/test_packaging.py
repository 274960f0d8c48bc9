"""Every source package is listed in pyproject.toml, so wheels carry what editable installs find."""

from __future__ import annotations

import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_every_package_dir_is_listed():
    cfg = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(cfg["packages"])
    found = set()
    for prefix, folder in cfg["package-dir"].items():
        root = REPO / folder
        for init in root.rglob("__init__.py"):
            rel = init.parent.relative_to(root)
            found.add(".".join([prefix, *rel.parts]) if rel.parts else prefix)
    assert found - listed == set(), f"add to [tool.setuptools] packages: {sorted(found - listed)}"
