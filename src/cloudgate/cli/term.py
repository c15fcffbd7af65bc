"""Terminal output shared by the commands: colour, tables and a spinner for people at a terminal,
the same text without decoration when the output goes to a pipe or a file.

rich decides what the terminal can do (colour depth, width, NO_COLOR, FORCE_COLOR, TERM=dumb);
when the stream is not a terminal nothing but plain text is written: no escape codes, no
spinner frames, no wrapping at an invented width.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator, Sequence
from typing import Any, TextIO

from rich.console import Console
from rich.table import Table

from cloudgate.cli.output import Column, table
from cloudgate.cli.output import _cell as cell


def is_terminal(stream: TextIO) -> bool:
    """Whether `stream` is an interactive terminal."""
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # a closed or exotic stream
        return False


class Terminal:
    """Writes lines to one stream, styled only when it is a terminal."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stdout
        self.interactive = is_terminal(self.stream)
        self.console = Console(file=self.stream, highlight=False, emoji=False)

    def line(self, text: str = "", style: str | None = None, *, indent: int = 0) -> None:
        """Write one line (wrapped to the terminal's width, with `indent` on continuation lines)."""
        if not self.interactive:
            self.stream.write(" " * indent + text + "\n")
            return
        from rich.padding import Padding
        from rich.text import Text

        body = Text(text, style=style or "")
        self.console.print(Padding(body, (0, 0, 0, indent)) if indent else body)

    def table(self, rows: Sequence[dict[str, Any]], columns: Sequence[Column]) -> None:
        """An aligned table: rich's (fitted to the terminal) at a terminal, plain text otherwise."""
        if not self.interactive or not rows:
            self.stream.write(table(rows, columns) + "\n")
            return
        grid = Table(show_edge=False, header_style="bold", pad_edge=False, box=None)
        for header, _, kind in columns:
            grid.add_column(header, justify="right" if kind in ("usd", "int") else "left")
        for row in rows:
            # The plain table's cell rendering, so both forms show values the same way.
            grid.add_row(*(cell(row.get(field), kind) for _, field, kind in columns))
        self.console.print(grid)


class Spinner:
    """A spinner with a status text on stderr while slow work runs; silent off a terminal."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        self._status: Any = None

    def update(self, text: str) -> None:
        """Change the text next to the spinner."""
        if self._status is not None:
            self._status.update(text)

    @contextlib.contextmanager
    def running(self, text: str) -> Iterator[Spinner]:
        """Show the spinner for the duration of the block."""
        if not is_terminal(self.stream):
            yield self
            return
        console = Console(file=self.stream, highlight=False)
        with console.status(text) as status:
            self._status = status
            try:
                yield self
            finally:
                self._status = None
