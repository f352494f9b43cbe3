"""``bus.query`` is typed for user code checked with ``mypy --strict``: run mypy on snippets.

``typing_snippets/query_ok.py`` uses both typed forms and must pass without a cast;
``typing_snippets/query_wrong.py`` returns their results as the wrong type and must be flagged,
which shows that the results are really typed (not ``Any``).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from mypy import api as mypy_api

import messenger_core

pytestmark = pytest.mark.slow

SNIPPETS = Path(__file__).parent / "typing_snippets"


def run_mypy(snippet: Path, tmp_path: Path) -> tuple[str, int]:
    # The core may be installed in editable mode through an import hook mypy cannot follow:
    # point mypy at the source tree holding the package instead.
    config = tmp_path / "mypy.ini"
    config.write_text(f"[mypy]\nmypy_path = {Path(messenger_core.__file__).parent.parent}\n")
    out, err, status = mypy_api.run(
        [
            "--strict",
            "--config-file",
            str(config),
            "--cache-dir",
            str(tmp_path / "cache"),
            "--no-error-summary",
            "--hide-error-context",
            str(snippet),
        ]
    )
    return out + err, status


def test_both_typed_forms_pass_mypy_strict_without_a_cast(tmp_path: Path) -> None:
    output, status = run_mypy(SNIPPETS / "query_ok.py", tmp_path)

    assert status == 0, output
    assert output.strip() == ""


def test_a_wrong_result_type_is_flagged_by_mypy(tmp_path: Path) -> None:
    output, status = run_mypy(SNIPPETS / "query_wrong.py", tmp_path)

    assert status == 1, output
    errors = [line for line in output.splitlines() if ": error:" in line]
    text = (SNIPPETS / "query_wrong.py").read_text().splitlines()
    expected = [n for n, line in enumerate(text, 1) if "# error:" in line]
    assert [int(line.split(":")[1]) for line in errors] == expected, output
    assert 'Incompatible return value type (got "int", expected "str")' in errors[0]
    assert 'Incompatible return value type (got "str", expected "int")' in errors[1]
