"""How much memory a run may use: what the user states (``--harness-memory``), else what the machine has free.

The machine's free memory is the least of: the kernel's estimate of memory available without swapping (psutil's
``available``: free memory plus what the page cache can give back), the room left under the memory limit of the
process's control group (cgroup v2 ``memory.max``, v1 ``memory.limit_in_bytes``: a container, a CI job or a
``systemd-run -p MemoryMax=`` scope, which psutil does not see), and the address-space limit (``ulimit -v``,
``prlimit --as``), which caps any process's resident memory too.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from pathlib import Path

GIB = 1024**3
UNITS = {"": 1, "b": 1, "k": 1024, "kb": 1000, "kib": 1024, "m": 1024**2, "mb": 1000**2, "mib": 1024**2,
         "g": GIB, "gb": 1000**3, "gib": GIB, "t": 1024**4, "tb": 1000**4, "tib": 1024**4}
UNLIMITED = 2**62  # cgroup v1 reports "no limit" as a page-rounded 2**63 - 1


def parse_size(raw: str) -> int:
    """Bytes from ``8GiB``, ``8G`` (binary: 8 GiB), ``7.5GB`` (decimal), ``512MiB``, ``512M`` or plain bytes."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*", raw)
    unit = match.group(2).lower() if match else ""
    if match is None or unit not in UNITS or float(match.group(1)) <= 0:
        raise ValueError("is not a memory size above zero, e.g. 8GiB, 7.5GB or 512MiB")
    return int(float(match.group(1)) * UNITS[unit])


def format_size(count: float) -> str:
    """``7.8 GiB`` (one decimal), or MiB below one GiB: the units ``--harness-memory=8GiB`` is written in."""
    return f"{count / GIB:.1f} GiB" if count >= GIB else f"{count / 1024**2:.0f} MiB"


@dataclass(frozen=True)
class Available:
    bytes: int
    source: str  # where the figure comes from, for the header and the refusal line


def _read_int(path: Path) -> int | None:
    try:
        text = path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return int(text) if text.isdigit() else None


def _stat(path: Path, key: str) -> int:
    """One counter of a cgroup's ``memory.stat`` (0 when absent)."""
    try:
        for line in path.read_text(encoding="ascii").splitlines():
            name, _, value = line.partition(" ")
            if name == key and value.strip().isdigit():
                return int(value)
    except (OSError, UnicodeDecodeError):
        pass
    return 0


def _room(limit: int | None, usage: int | None, inactive_file: int) -> int | None:
    """Room under a limit, counting inactive page cache as free (the kernel reclaims it first, as ``docker stats``
    counts it)."""
    if limit is None or usage is None or limit >= UNLIMITED:
        return None
    return limit - max(usage - inactive_file, 0)


def cgroup_room(proc_self_cgroup: Path = Path("/proc/self/cgroup"), root: Path = Path("/sys/fs/cgroup")) -> int | None:
    """Bytes this process's control groups may still allocate under their memory limits (v2 or v1, and every
    ancestor's), None without a limit."""
    try:
        lines = proc_self_cgroup.read_text(encoding="utf-8").splitlines()
    except OSError:
        return None
    rooms: list[int] = []
    for line in lines:
        fields = line.split(":", 2)
        if len(fields) != 3:  # not a cgroup line (a kernel or sandbox that fills the file otherwise)
            continue
        _, controllers, path = fields
        if controllers == "":  # v2: the unified hierarchy (at the root, or under unified/ on a hybrid system)
            base = root if (root / "cgroup.controllers").is_file() else root / "unified"
            group = base / path.lstrip("/")
            folders = [group, *(parent for parent in group.parents if parent.is_relative_to(base))]
            rooms += [room for folder in folders
                      if (room := _room(_read_int(folder / "memory.max"), _read_int(folder / "memory.current"),
                                        _stat(folder / "memory.stat", "inactive_file"))) is not None]
        elif "memory" in controllers.split(","):  # v1: hierarchical limits show in the group's own file
            group = root / "memory" / path.lstrip("/")
            stat = group / "memory.stat"
            limits = [_read_int(group / "memory.limit_in_bytes"), _stat(stat, "hierarchical_memory_limit") or None]
            room = _room(min((limit for limit in limits if limit is not None), default=None),
                         _read_int(group / "memory.usage_in_bytes"), _stat(stat, "total_inactive_file"))
            if room is not None:
                rooms.append(room)
    return max(min(rooms), 0) if rooms else None


def address_space_limit() -> int | None:
    """``RLIMIT_AS`` (``ulimit -v``, ``prlimit --as``), None where it is unlimited or unknown (Windows)."""
    if sys.platform == "win32":  # no resource module (and mypy --platform win32 knows it)
        return None
    import resource

    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    return None if soft == resource.RLIM_INFINITY else int(soft)


def available_memory(stated: int | None = None, origin: str = "") -> Available:
    """What the run may hold in all (this process included, as the plan's needs are whole peaks): ``stated``
    (``--harness-memory``, from ``origin``), else the least of the machine's figures."""
    if stated is not None:
        return Available(stated, f"what --harness-memory allows{f', from {origin}' if origin else ''}")
    import psutil

    held = int(psutil.Process().memory_info().rss)  # what this process has already: part of every peak
    candidates = [Available(int(psutil.virtual_memory().available) + held, "available on this machine")]
    room = cgroup_room()
    if room is not None:
        candidates.append(Available(room + held, "the room under this control group's memory limit"))
    address = address_space_limit()
    if address is not None:
        candidates.append(Available(address, "the address-space limit (ulimit -v)"))
    return min(candidates, key=lambda candidate: candidate.bytes)
