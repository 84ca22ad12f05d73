"""Find text I/O that leaves the encoding to the platform (``locale.getpreferredencoding``: cp1252 on most
Windows hosts, UTF-8 on Linux and macOS), so a file written on one reads back garbled or fails on another.

Used by the project's own tests (``tests/unit/test_text_encoding.py``) over every Python file of the project.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

_SUBPROCESS_TEXT = {"run", "Popen", "check_output", "check_call", "call"}


@dataclass(frozen=True)
class Unencoded:
    path: Path
    line: int
    call: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.call} without encoding="


def _has_keyword(call: ast.Call, *names: str) -> bool:
    return any(keyword.arg in names or keyword.arg is None for keyword in call.keywords)  # None: **kwargs


def _is_true(call: ast.Call, name: str) -> bool:
    return any(keyword.arg == name and isinstance(keyword.value, ast.Constant) and keyword.value.value is True
               for keyword in call.keywords)


def _open_mode(call: ast.Call, position: int) -> str | None:
    """The mode an ``open`` call gives (None when it is not a literal)."""
    for keyword in call.keywords:
        if keyword.arg == "mode":
            value = keyword.value
            return value.value if isinstance(value, ast.Constant) and isinstance(value.value, str) else None
    if len(call.args) > position:
        argument = call.args[position]
        return argument.value if isinstance(argument, ast.Constant) and isinstance(argument.value, str) else None
    return "r"


def unencoded_calls(path: Path) -> list[Unencoded]:
    """Each call in ``path`` that reads or writes text without naming its encoding."""
    found: list[Unencoded] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if not isinstance(node, ast.Call) or _has_keyword(node, "encoding"):
            continue
        function = node.func
        name = function.attr if isinstance(function, ast.Attribute) else getattr(function, "id", "")
        owner = function.value if isinstance(function, ast.Attribute) else None
        if (name == "read_text" and isinstance(function, ast.Attribute) and not node.args) or (
            name == "write_text" and isinstance(function, ast.Attribute) and len(node.args) < 2
        ):
            found.append(Unencoded(path, node.lineno, name))
        elif name == "open" and (owner is None or not isinstance(owner, ast.Name) or owner.id != "os"):
            mode = _open_mode(node, 1 if owner is None else 0)
            if mode is not None and "b" not in mode:
                found.append(Unencoded(path, node.lineno, "open"))
        elif (name in _SUBPROCESS_TEXT and isinstance(owner, ast.Name) and owner.id == "subprocess"
              and (_is_true(node, "text") or _is_true(node, "universal_newlines"))):
            found.append(Unencoded(path, node.lineno, f"subprocess.{name}(text=True)"))
    return found
