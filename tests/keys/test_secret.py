"""Key secrets: well-formed, unguessable, stored as hashes, garbage refused without a lookup."""

from __future__ import annotations

import pytest

from server.keys import secret


def test_a_secret_has_a_public_prefix_and_256_random_bits() -> None:
    new = secret.generate()
    assert new.secret.startswith(new.prefix + "_")
    assert len(new.secret) == len("tw_") + 12 + 1 + 43
    assert secret.handle_of(new.secret) == new.handle
    assert new.hash == secret.digest(new.secret) and new.secret not in new.hash
    assert secret.generate().secret != new.secret


def test_only_the_exact_secret_matches_its_hash() -> None:
    new = secret.generate()
    assert secret.matches(new.secret, new.hash)
    assert not secret.matches(new.secret[:-1] + ("A" if new.secret[-1] != "A" else "B"), new.hash)


@pytest.mark.parametrize(
    "garbage",
    ["", "sk-test", "tw_", "tw_zzzzzzzzzzzz_" + "a" * 43, "tw_0123456789ab_" + "a" * 42,
     "tw_0123456789ab_" + "a" * 44, "tw_0123456789ab_" + "a" * 42 + "!", "x" * 10_000,
     "tw_0123456789ab_" + "é" * 43],
)  # fmt: skip
def test_garbage_has_no_handle(garbage: str) -> None:
    assert secret.handle_of(garbage) is None


def test_a_trailing_newline_is_garbage_too() -> None:
    assert secret.handle_of(secret.generate().secret + "\n") is None
