"""The transport's layout (issue 10): roles in their own modules, no database named outside
the backends and the statements, no class over about 300 lines."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import messenger_transport_sql

PACKAGE = Path(messenger_transport_sql.__file__).parent
ROLES = ("transport.py", "sender.py", "receiver.py", "acknowledgements.py", "connection.py")
MAX_CLASS_LINES = 300


def _classes() -> list[tuple[str, int]]:
    sizes = []
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef):
                end = node.end_lineno or node.lineno
                sizes.append((f"{path.relative_to(PACKAGE)}:{node.name}", end - node.lineno + 1))
    return sizes


def test_no_class_is_over_about_300_lines() -> None:
    sizes = _classes()
    assert any(name.endswith(":SqlTransport") for name, _ in sizes)  # the check itself works
    assert [(name, size) for name, size in sizes if size > MAX_CLASS_LINES] == []


def test_the_roles_name_no_database() -> None:
    pattern = re.compile(r"""(backend|dialect\.name)\s*[!=]=|["'](sqlite|postgresql|mysql)["']""")
    named = {role: pattern.findall((PACKAGE / role).read_text(encoding="utf-8")) for role in ROLES}
    assert {role: found for role, found in named.items() if found} == {}
