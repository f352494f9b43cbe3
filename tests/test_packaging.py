"""Packaging: every distribution of the project carries its license, project URLs and
classifiers; ``messenger --version`` and ``messenger_core.__version__`` give the version; the
command line imports only the code of the command that runs."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest

import messenger_core
from messenger_core.cli import BUILTINS, Commands, builtin_commands

ROOT = Path(__file__).parent.parent
DISTRIBUTIONS = sorted([ROOT, *(p.parent for p in (ROOT / "plugins").glob("*/pyproject.toml"))])
REPOSITORY = "https://github.com/messenger-py/messenger"
REQUIRED_CLASSIFIERS = {
    "Development Status :: 3 - Alpha",
    "License :: OSI Approved :: MIT License",
    "Programming Language :: Python :: 3.11",
    "Programming Language :: Python :: 3.12",
    "Programming Language :: Python :: 3.13",
    "Topic :: System :: Distributed Computing",
    "Typing :: Typed",
}


def _project(directory: Path) -> dict[str, Any]:
    with (directory / "pyproject.toml").open("rb") as stream:
        project: dict[str, Any] = tomllib.load(stream)["project"]
    return project


def test_every_plugin_directory_is_checked() -> None:
    names = {directory.name for directory in DISTRIBUTIONS}
    assert {"_template", "messenger-transport-sql", "messenger-transport-redis"} <= names


@pytest.mark.parametrize("directory", DISTRIBUTIONS, ids=lambda d: d.name)
def test_a_distribution_declares_license_urls_and_classifiers(directory: Path) -> None:
    project = _project(directory)

    assert project["license"] == {"text": "MIT"}
    assert (directory / "LICENSE").read_text() == (ROOT / "LICENSE").read_text()
    urls = project.get("urls", {})
    assert set(urls) >= {"Homepage", "Source", "Issues", "Documentation"}
    assert all(url.startswith(REPOSITORY) for url in urls.values()), urls
    missing = REQUIRED_CLASSIFIERS - set(project.get("classifiers", []))
    assert not missing, f"{directory / 'pyproject.toml'} lacks the classifiers {sorted(missing)}"
    if "Typing :: Typed" in project["classifiers"]:
        assert list(directory.glob("*/py.typed")), "Typing :: Typed without a py.typed marker"


def test_the_license_is_mit_by_the_messenger_authors() -> None:
    text = (ROOT / "LICENSE").read_text()
    assert text.startswith("MIT License\n")
    assert "the messenger authors" in text


def test_the_version_is_that_of_the_installed_metadata() -> None:
    assert messenger_core.__version__ == metadata.version("messenger-core")
    assert messenger_core.__version__ == _project(ROOT)["version"]


def test_messenger_version_prints_it(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "messenger_core", "--version"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"messenger {metadata.version('messenger-core')}\n"


def test_the_lazy_built_in_commands_match_their_modules() -> None:
    lazy = builtin_commands()
    for name, module, help in BUILTINS:
        real = Commands()
        __import__(f"messenger_core.cli.{module}", fromlist=["register"]).register(real)
        assert real.names() == [name]
        assert real[name].help == help == lazy[name].help


CHECK_IMPORTS = """
import sys
from messenger_core.cli import main

commands = ("consume", "failed", "setup_transports", "stats", "debug", "stop_workers", "plugins")

def loaded():
    return {c for c in commands if f"messenger_core.cli.{c}" in sys.modules}

assert loaded() == set(), loaded()
assert "stevedore" not in sys.modules
try:
    main(["--help"])
except SystemExit:
    pass
assert loaded() == set(), loaded()
main(["plugins", "--help"])
assert loaded() == {"plugins"}, loaded()
main(["stop-workers"])
assert loaded() == {"plugins", "stop_workers"}, loaded()
print("ok")
"""


def test_the_command_line_imports_only_the_command_that_runs(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-c", CHECK_IMPORTS],
        cwd=tmp_path,
        env={"TMPDIR": str(tmp_path), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip().endswith("ok")
