"""Key material: format, prefix, hash, and the plaintext kept out of reprs."""

from __future__ import annotations

import hashlib
import re

from cloudgate.store.keys import generate_key, hash_key, key_prefix


def test_generated_key_format_prefix_and_hash() -> None:
    new = generate_key()
    assert re.fullmatch(r"cg-[0-9A-Za-z]{40}", new.plaintext)
    assert new.prefix == new.plaintext[:10] == key_prefix(new.plaintext)
    assert new.key_hash == hashlib.sha256(new.plaintext.encode()).hexdigest() == hash_key(new.plaintext)


def test_keys_are_unique() -> None:
    assert len({generate_key().plaintext for _ in range(1000)}) == 1000


def test_repr_leaves_the_plaintext_out() -> None:
    new = generate_key()
    assert new.plaintext not in repr(new)
    assert new.prefix in repr(new)
