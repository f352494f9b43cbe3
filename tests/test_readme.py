"""Every code block of the READMEs (and CONTRIBUTING.md) works as written.

- ``python`` blocks are saved as a file in a temporary directory and run with ``python file``;
- ``toml`` blocks are loaded with the project's configuration loader, and the DSN schemes,
  middleware names and stop signals they name must be installed;
- ``sh`` / ``console`` blocks are not run (they install things): each command must name what
  exists (a tox environment of tox.ini, a distribution of this repository and its extras, a
  path, a ``messenger`` command).

A block that cannot work alone is marked just before it in the Markdown with
``<!-- test: fragment (why) -->`` (a python block is then only compiled, a toml block only
parsed) or ``<!-- test: skip (why) -->``. Keep them few.
"""

from __future__ import annotations

import configparser
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path

import attrs
import pytest

from messenger_core import Messenger
from messenger_core.cli import builtin_commands
from messenger_core.config import load_config
from messenger_core.dsn import Dsn
from messenger_core.plugins import MIDDLEWARE_GROUP, TRANSPORTS_GROUP

ROOT = Path(__file__).resolve().parent.parent
DOCUMENTS = [
    ROOT / "README.md",
    ROOT / "CONTRIBUTING.md",
    *sorted(ROOT.glob("plugins/*/README.md")),
    ROOT / "examples" / "shop" / "README.md",
]
_FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.MULTILINE | re.DOTALL)
_MARK = re.compile(r"<!--\s*test:\s*(skip|fragment)\b(.*?)-->\s*$")


@attrs.frozen
class Block:
    """One fenced code block."""

    document: Path
    line: int
    language: str
    code: str
    mark: str | None
    """``skip`` or ``fragment`` when the Markdown marks it so."""

    @property
    def id(self) -> str:
        return f"{self.document.relative_to(ROOT)}:{self.line}:{self.language}"


def blocks() -> Iterator[Block]:
    for document in DOCUMENTS:
        text = document.read_text(encoding="utf-8")
        for match in _FENCE.finditer(text):
            before = text[: match.start()].rstrip("\n").rsplit("\n", 1)[-1]
            mark = _MARK.search(before)
            yield Block(
                document=document,
                line=text.count("\n", 0, match.start()) + 1,
                language=match.group(1),
                code=match.group(2),
                mark=mark.group(1) if mark else None,
            )


ALL = list(blocks())


def of(*languages: str) -> list[pytest.param]:  # type: ignore[valid-type]
    return [
        pytest.param(
            b, id=b.id, marks=[pytest.mark.skip(reason="marked skip")] * (b.mark == "skip")
        )
        for b in ALL
        if b.language in languages
    ]


def test_every_block_has_a_checked_language() -> None:
    # ``text`` is for what is not code (a directory tree).
    checked = ("python", "toml", "sh", "console", "text", "yaml", "php")
    unchecked = [b.id for b in ALL if b.language not in checked]
    assert unchecked == [], f"give these blocks a language this test checks: {checked}"
    assert len([b for b in ALL if b.mark]) <= 3, "keep the blocks marked skip/fragment few"


# -- the PHP side of the Symfony guide -----------------------------------------------------------
@pytest.mark.parametrize("block", of("yaml"))
def test_yaml_blocks_parse(block: Block) -> None:
    yaml = pytest.importorskip("yaml")

    assert isinstance(yaml.safe_load(block.code), dict), block.id


@pytest.mark.parametrize("block", of("php"))
def test_php_blocks_are_valid_php(block: Block, tmp_path: Path) -> None:
    php = shutil.which("php")
    if php is None:
        pytest.skip("php is not installed (the symfony serializer's interop tests install it)")
    source = tmp_path / "block.php"
    source.write_text("<?php\n" + block.code, encoding="utf-8")

    result = subprocess.run([php, "-l", str(source)], capture_output=True, text=True, check=False)

    assert result.returncode == 0, f"{block.id}: {result.stdout}{result.stderr}"


# -- python -------------------------------------------------------------------------------------
def run_python(
    code: str, directory: Path, name: str = "readme_block.py"
) -> subprocess.CompletedProcess[str]:
    (directory / name).write_text(code, encoding="utf-8")
    environment = {k: v for k, v in os.environ.items() if not k.startswith("MESSENGER_")}
    environment["TMPDIR"] = str(directory)  # the default stop-signal file, among others
    return subprocess.run(
        [sys.executable, name],
        cwd=directory,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize("block", of("python"))
def test_python_blocks_run(block: Block, tmp_path: Path) -> None:
    if block.mark == "fragment":
        compile(block.code, block.id, "exec")
        return
    result = run_python(block.code, tmp_path)

    assert result.returncode == 0, f"{block.id} failed:\n{result.stdout}{result.stderr}"


def test_the_ten_lines_send_then_consume_when_run_as_a_script(tmp_path: Path) -> None:
    ten_lines = next(b for b in ALL if b.document == ROOT / "README.md" and b.language == "python")
    # A line after the dispatch shows the handler has not run yet at that point.
    code = ten_lines.code.replace(
        "messenger.worker(", 'print("dispatched", flush=True)\nmessenger.worker(', 1
    )

    result = run_python(code, tmp_path, name="shop.py")

    assert result.returncode == 0, result.stderr
    assert result.stdout == "dispatched\norder 1 confirmed\n"
    assert (tmp_path / "var" / "messenger.db").is_file()
    assert "WARNING" not in result.stderr


# -- toml ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("block", of("toml"))
def test_toml_blocks_are_valid_configuration(block: Block, tmp_path: Path) -> None:
    if block.mark == "fragment":
        tomllib.loads(block.code)
        return
    path = tmp_path / "messenger.toml"
    path.write_text(block.code, encoding="utf-8")

    config = load_config(path)

    factories = Messenger(autoload=True).factories
    schemes = factories.names(TRANSPORTS_GROUP)
    for name, transport in config.transports.items():
        scheme = Dsn.parse(transport.dsn).scheme
        assert scheme in schemes, f"{block.id}: transport {name}: no plugin for {scheme}://"
    if config.stop_signal is not None:
        scheme = Dsn.parse(config.stop_signal).scheme
        assert scheme == "file" or scheme in schemes, f"{block.id}: stop_signal {scheme}://"
    middleware = factories.names(MIDDLEWARE_GROUP)
    for bus, bus_config in config.buses.items():
        for each in bus_config.middleware:
            assert each.name in middleware, f"{block.id}: bus {bus}: middleware {each.name}"


# -- sh -----------------------------------------------------------------------------------------
def distributions() -> dict[str, tuple[Path, set[str]]]:
    """Every distribution of this repository: its directory and its extras."""
    found = {}
    for pyproject in [ROOT / "pyproject.toml", *ROOT.glob("plugins/*/pyproject.toml")]:
        project = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]
        extras = set(project.get("optional-dependencies", {}))
        found[project["name"]] = (pyproject.parent, extras)
    return found


def tox_environments() -> set[str]:
    parser = configparser.ConfigParser(interpolation=None)
    parser.read(ROOT / "tox.ini")
    listed = {e.strip() for e in parser.get("tox", "envlist").split(",")}
    sections = {s.removeprefix("testenv:") for s in parser.sections() if s.startswith("testenv:")}
    return listed | sections


EXTERNAL_TOOLS = {"tox", "tox-uv"}
"""What a README may tell pip to install besides this repository's distributions."""


def check_pip(words: list[str]) -> None:
    assert words[0] == "install", words
    known = distributions()
    arguments = iter(words[1:])
    for word in arguments:
        if word in ("-q", "-U", "--upgrade"):
            continue
        editable = word == "-e"
        target = next(arguments) if editable else word
        name, _, extras_text = target.partition("[")
        extras = {e.strip() for e in extras_text.rstrip("]").split(",") if e.strip()}
        if editable or name.startswith("."):
            directory = (ROOT / name).resolve()
            assert (directory / "pyproject.toml").is_file(), f"pip install -e {target}"
            have = next(e for d, e in known.values() if d == directory)
        else:
            requirement = re.split(r"[<>=!~ ]", name, maxsplit=1)[0]
            if requirement in EXTERNAL_TOOLS:
                continue
            assert requirement in known, f"pip install {target}: not a distribution here"
            have = known[requirement][1]
        assert extras <= have, f"pip install {target}: extras {extras - have} do not exist"


def check_command(text: str) -> None:
    for part in re.split(r"\s*&&\s*", text):
        words = shlex.split(part)
        head = Path(words[0]).name
        rest = words[1:]
        if head in ("python", "python3") and rest[:2] == ["-m", "venv"]:
            continue
        if head in ("python", "python3"):
            assert (ROOT / rest[0]).is_file(), f"{part}: no file {rest[0]}"
        elif head == "pip":
            check_pip(rest)
        elif head == "tox":
            environments = tox_environments()
            if "-e" in rest:
                for environment in rest[rest.index("-e") + 1].split(","):
                    assert environment in environments, f"{part}: no tox env {environment}"
        elif head == "pytest":
            paths = [w for w in rest if not w.startswith("-")]
            for path in paths:
                assert (ROOT / path).exists(), f"{part}: no {path}"
        elif head == "messenger":
            command = next(w for w in rest if not w.startswith("-"))
            assert command in builtin_commands(), f"{part}: no command {command}"
        elif head not in ("touch", "source", "cd"):
            raise AssertionError(f"{part}: tests/test_readme.py does not know {head}; add a check")


@pytest.mark.parametrize("block", of("sh", "console"))
def test_shell_blocks_name_what_exists(block: Block) -> None:
    for line in block.code.splitlines():
        command = re.sub(r"\s+#.*$", "", line).strip()
        if command:
            check_command(command)
