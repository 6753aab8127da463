"""pyproject.toml installs every package of dqnviz/ and the templates, so that a wheel works too."""

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_every_package_folder_is_listed_in_pyproject():
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    on_disk = {
        ".".join(init.parent.relative_to(ROOT).parts) for init in (ROOT / "dqnviz").rglob("__init__.py")
    }
    listed = set(setuptools["packages"])
    assert on_disk - listed == set(), "packages a wheel would leave out"
    assert listed - on_disk == {"dqnviz.templates"}
    assert setuptools["package-dir"] == {"dqnviz.templates": "templates"}
    templates = {path.name for path in (ROOT / "templates").iterdir()}
    assert templates and all(name.endswith(".j2") for name in templates), templates
    assert setuptools["package-data"]["dqnviz.templates"] == ["*.j2"]
