"""What the command line prints: tables, times, the live status line, log lines and questions.

Everything written here goes through :func:`~messenger_core.dsn.mask_dsn` where it may quote
configuration (log lines, errors), so a DSN's password never reaches the terminal.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import TextIO

from messenger_core.dsn import mask_dsn
from messenger_core.worker_limits import peak_memory  # one copy: what --memory-limit checks

__all__ = [
    "LogHandler",
    "StatusLine",
    "ask",
    "format_time",
    "is_terminal",
    "one_line",
    "peak_memory",
    "table",
    "terminal_width",
    "truncate",
]

_ELLIPSIS = "..."


def is_terminal(stream: object) -> bool:
    """Whether ``stream`` is an interactive terminal."""
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty()) if isatty is not None else False
    except ValueError:  # a closed stream
        return False


def terminal_width(stream: TextIO | None = None) -> int:
    """The width of the terminal ``stream`` is attached to (80 if it is none)."""
    if stream is not None:
        try:
            columns = os.get_terminal_size(stream.fileno()).columns
        except (AttributeError, ValueError, OSError):
            columns = 0
        if columns > 0:  # a terminal whose size was never set says 0
            return columns
    return shutil.get_terminal_size((80, 24)).columns or 80


def one_line(text: str) -> str:
    """``text`` with every run of whitespace (newlines included) turned into one space."""
    return " ".join(text.split())


def truncate(text: str, width: int) -> str:
    """``text`` on one line, cut to ``width`` characters with an ellipsis if it is longer."""
    text = one_line(text)
    if width <= len(_ELLIPSIS) or len(text) <= width:
        return text[: max(width, 0)] if len(text) > width else text
    return text[: width - len(_ELLIPSIS)] + _ELLIPSIS


def format_time(moment: datetime | None) -> str:
    """A moment in the local time zone, to the second; ``-`` for none (naive means UTC)."""
    if moment is None:
        return "-"
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone().strftime("%Y-%m-%d %H:%M:%S")


def table(
    headers: Sequence[str], rows: Sequence[Sequence[str]], *, max_width: int | None = None
) -> str:
    """Rows in aligned columns under a header line; the last column is cut to ``max_width``."""
    cells = [[one_line(str(cell)) for cell in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in cells:
        for index, cell in enumerate(row):
            widths[index] = max(widths[index], len(cell))
    if max_width is not None and len(widths) > 1:
        # Only the last column (an error, a status) gives way: the others identify the row.
        room = max_width - sum(widths[:-1]) - 2 * (len(widths) - 1)
        last = max(room, len(headers[-1]), 12)
        if widths[-1] > last:
            widths[-1] = last
            for row in cells:
                row[-1] = truncate(row[-1], last)

    def line(values: Sequence[str]) -> str:
        return "  ".join(v.ljust(w) for v, w in zip(values, widths, strict=True)).rstrip()

    out = [line(headers), line(["-" * w for w in widths])]
    out += [line(row) for row in cells]
    return "\n".join(out)


def ask(stdin: TextIO, stdout: TextIO, question: str, answers: Mapping[str, str]) -> str:
    """Ask until one of ``answers`` (``{"y": "yes", ...}``) is given; return its key.

    An answer is accepted by its key or its full word; end of input counts as the last answer
    (``quit`` by convention).
    """
    keys = list(answers)
    prompt = f"{question} [{'/'.join(f'{k}={w}' for k, w in answers.items())}] "
    while True:
        stdout.write(prompt)
        stdout.flush()
        reply = stdin.readline()
        if not reply:
            stdout.write("\n")
            return keys[-1]
        reply = reply.strip().lower()
        for key, word in answers.items():
            if reply in (key, word):
                return key


class StatusLine:
    """One line at the bottom of a terminal, redrawn in place (``\\r``) at most every
    ``interval`` seconds; log lines are written above it (see :class:`LogHandler`)."""

    def __init__(self, stream: TextIO, interval: float = 0.25) -> None:
        self.stream = stream
        self.interval = interval
        self._text = ""
        self._shown = False
        self._drawn_at = float("-inf")

    def due(self) -> bool:
        """Whether the interval since the last redraw has passed."""
        return time.monotonic() - self._drawn_at >= self.interval

    def update(self, text: str, *, force: bool = False) -> None:
        """Show ``text`` now if the last redraw is older than the interval (or ``force``)."""
        self._text = text
        now = time.monotonic()
        if force or now - self._drawn_at >= self.interval:
            self._drawn_at = now
            self.redraw()

    def redraw(self) -> None:
        """Draw the current text over the line (cut to the terminal's width: no wrapping)."""
        if not self._text:
            return
        width = terminal_width(self.stream) - 1
        self.stream.write("\r" + truncate(self._text, width) + "\x1b[K")
        self.stream.flush()
        self._shown = True

    def clear(self) -> None:
        """Blank the line, so that something else can be written from its start."""
        if self._shown:
            self.stream.write("\r\x1b[K")
            self._shown = False

    def finish(self) -> None:
        """Leave the last text on screen and move to the next line."""
        if not self._shown:
            self.redraw()
        if self._shown:
            self.stream.write("\n")
            self.stream.flush()
            self._shown = False
        self._text = ""


class LogHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Log lines on stderr, with DSN passwords masked, written above the status line if any."""

    def __init__(self, stream: TextIO, *, terminal: bool) -> None:
        super().__init__(stream)
        self.status: StatusLine | None = None
        if terminal:
            self.setFormatter(
                _MaskingFormatter("%(asctime)s %(levelname)s %(message)s", "%H:%M:%S")
            )
        else:
            self.setFormatter(_MaskingFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        status = self.status
        if status is not None:
            status.clear()
        super().emit(record)
        if status is not None:
            status.redraw()


class _MaskingFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return mask_dsn(super().format(record))
