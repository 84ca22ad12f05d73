"""``--harness-shard=I/N``: the shares partition the checks, whatever their order, and bad values are refused."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from harness.shard import Shard, parse_shard


@given(st.sets(st.text(min_size=1, max_size=12), max_size=60), st.integers(1, 9), st.randoms())
def test_the_shards_partition_the_checks_evenly_whatever_their_order(ids: set[str], count: int,
                                                                     rng: random.Random) -> None:
    shuffled = list(ids)
    rng.shuffle(shuffled)  # as pytest-randomly hands them over
    shares = [Shard(index, count).selects(shuffled) for index in range(1, count + 1)]
    assert set().union(*shares) == ids and sum(len(share) for share in shares) == len(ids)
    assert max(map(len, shares)) - min(map(len, shares)) <= 1
    assert shares == [Shard(index, count).selects(sorted(ids)) for index in range(1, count + 1)]


@pytest.mark.parametrize(("text", "shard"), [("1/1", Shard(1, 1)), (" 2/4 ", Shard(2, 4)), ("4/4", Shard(4, 4))])
def test_a_shard_is_read(text: str, shard: Shard) -> None:
    assert parse_shard(text) == shard and str(shard) == text.strip()


@pytest.mark.parametrize(("text", "problem"), [
    ("2", "is not I/N"), ("a/b", "is not I/N"), ("-1/2", "is not I/N"), ("0/2", "I runs from 1 to N"),
    ("3/2", "I runs from 1 to N"), ("1/0", "is not a shard of 0"),
])
def test_a_bad_shard_says_what_to_write(text: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        parse_shard(text)
