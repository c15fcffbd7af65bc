"""Unique tokens for the hot path, without a system call each.

Rate-limit admissions and budget holds need ids that no other process (another worker, another
gateway sharing Redis) will ever use: `uuid4()` gives that, but reads the kernel's random source
on every call (~2-3 us). A token here is 64 random bits drawn once per process (again after a
fork) followed by a counter: unique within the process by the counter, and across processes
unless two draw the same 64 bits.
"""

from __future__ import annotations

import itertools
import os


class TokenSource:
    """Makes `<16 hex digits of process randomness>-<counter in hex>` tokens."""

    def __init__(self) -> None:
        self._reseed()
        os.register_at_fork(after_in_child=self._reseed)

    def _reseed(self) -> None:
        self._prefix = os.urandom(8).hex() + "-"
        self._count = itertools.count(1)

    def __call__(self) -> str:
        """A new token."""
        return f"{self._prefix}{next(self._count):x}"


new_token = TokenSource()
