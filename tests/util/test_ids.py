"""Hot-path tokens: unique in a process, and across a fork."""

from __future__ import annotations

import os

from cloudgate.util.ids import TokenSource, new_token


def test_tokens_are_unique_and_share_the_process_prefix() -> None:
    tokens = [new_token() for _ in range(10_000)]
    assert len(set(tokens)) == len(tokens)
    prefixes = {t.split("-")[0] for t in tokens}
    assert len(prefixes) == 1 and len(prefixes.pop()) == 16


def test_two_sources_do_not_collide() -> None:
    a, b = TokenSource(), TokenSource()
    assert {a() for _ in range(100)}.isdisjoint({b() for _ in range(100)})


def test_a_forked_child_draws_a_new_prefix() -> None:
    parent = new_token().split("-")[0]
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report its prefix and leave at once
        os.write(write, new_token().split("-")[0].encode())
        os._exit(0)
    os.close(write)
    child = os.read(read, 64).decode()
    os.close(read)
    os.waitpid(pid, 0)
    assert child and child != parent
