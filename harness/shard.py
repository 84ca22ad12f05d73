"""``--harness-shard=I/N``: run one of N deterministic shares of a session's checks.

For a model too slow for one runner: N jobs of one host kind each run ``--harness-shard=I/N`` (I = 1..N), and
``harness merge`` joins their results.json into the verdict one unsharded run would give. The share depends only
on the set of collected checks, never on their order (pytest-randomly shuffles it) nor on the host: the node ids
are sorted and dealt out in turn, so the shares differ in size by at most one check and every check is in exactly
one of them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class Shard:
    index: int  # 1-based
    count: int

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    def selects(self, nodeids: Iterable[str]) -> set[str]:
        """The node ids of ``nodeids`` that are this shard's."""
        ordered = sorted(set(nodeids))
        return {nodeid for position, nodeid in enumerate(ordered) if position % self.count == self.index - 1}


def parse_shard(raw: str) -> Shard:
    """``I/N`` with 1 <= I <= N; a ValueError that says what to write otherwise."""
    index_text, slash, count_text = raw.strip().partition("/")
    if not slash or not index_text.strip().isdigit() or not count_text.strip().isdigit():
        raise ValueError("is not I/N (e.g. 1/4: the first of 4 shards)")
    index, count = int(index_text), int(count_text)
    if count < 1 or not 1 <= index <= count:
        raise ValueError(f"is not a shard of {count}: I runs from 1 to N, and N is 1 or more")
    return Shard(index, count)
