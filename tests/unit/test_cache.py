from __future__ import annotations

import errno
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from harness.errors import BuildError
from harness.preparation.cache import MANIFEST, ModelStore

# A child process that builds key "k" slowly, counting its builds in count.txt.
CHILD = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from harness.preparation.cache import ModelStore
    root, delay = Path(sys.argv[1]), float(sys.argv[2])
    def build(out):
        with open(root / "count.txt", "a") as f:
            f.write("x")
        (out / "half.bin").write_bytes(b"h")
        time.sleep(delay)
        (out / "model.onnx").write_bytes(b"m")
    result = ModelStore(root).get_or_build("onnx", "k", build, {})
    print("HIT" if result.hit else "BUILT", flush=True)
""")


def _child(root: Path, delay: float) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-c", CHILD, str(root), str(delay)],
                            stdout=subprocess.PIPE, text=True, encoding="utf-8")


def test_miss_then_hit(tmp_path: Path) -> None:
    store = ModelStore(tmp_path)
    calls: list[Path] = []

    def build(out: Path) -> None:
        calls.append(out)
        (out / "model.onnx").write_bytes(b"m")

    first = store.get_or_build("onnx", "k", build, {"precision": "int4"})
    second = store.get_or_build("onnx", "k", build, {"precision": "int4"})
    assert (first.hit, second.hit) == (False, True)
    assert len(calls) == 1 and first.path == second.path
    assert (first.path / "model.onnx").read_bytes() == b"m"
    assert (first.path / MANIFEST).is_file()


def test_failed_build_publishes_nothing(tmp_path: Path) -> None:
    store = ModelStore(tmp_path)

    def broken(out: Path) -> None:
        (out / "half.bin").write_bytes(b"h")
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        store.get_or_build("onnx", "k", broken, {})
    assert store.lookup("onnx", "k") is None
    assert list((tmp_path / "tmp").iterdir()) == []


def test_a_disk_too_small_for_the_build_stops_before_it_starts(tmp_path: Path) -> None:
    calls: list[Path] = []
    too_small = r"free at .*this build writes about 1073741824\.0 GiB: free disk space"
    with pytest.raises(BuildError, match=too_small) as info:
        ModelStore(tmp_path).get_or_build("onnx", "k", calls.append, {}, space_needed=2**60)
    assert calls == [] and "\n" not in str(info.value)


def test_a_disk_that_fills_up_mid_build_is_one_line_and_publishes_nothing(tmp_path: Path) -> None:
    store = ModelStore(tmp_path)

    def fills_the_disk(out: Path) -> None:
        (out / "half.bin").write_bytes(b"h")
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(BuildError, match=r"the disk filled up while building onnx/k in .*HARNESS_CACHE_DIR"):
        store.get_or_build("onnx", "k", fills_the_disk, {})
    assert store.lookup("onnx", "k") is None
    assert list((tmp_path / "tmp").iterdir()) == []


def test_killed_build_is_not_trusted_and_is_rebuilt(tmp_path: Path) -> None:
    child = _child(tmp_path, delay=60)
    deadline = time.monotonic() + 30
    while not list((tmp_path / "tmp").glob("onnx-k-*/half.bin")):
        assert time.monotonic() < deadline, "child never started building"
        time.sleep(0.05)
    child.kill()  # SIGKILL on POSIX, TerminateProcess on Windows (which has no SIGKILL)
    child.wait()
    store = ModelStore(tmp_path)
    assert store.lookup("onnx", "k") is None  # the half-built folder is not an entry
    rebuilt = _child(tmp_path, delay=0)
    assert rebuilt.communicate(timeout=60)[0].strip() == "BUILT"
    assert (tmp_path / "count.txt").read_text(encoding="utf-8") == "xx"
    assert store.lookup("onnx", "k") is not None
    assert list((tmp_path / "tmp").iterdir()) == []  # the killed build's leftovers are gone


def test_two_processes_build_once(tmp_path: Path) -> None:
    children = [_child(tmp_path, delay=1.5) for _ in range(2)]
    outputs = sorted(child.communicate(timeout=60)[0].strip() for child in children)
    assert outputs == ["BUILT", "HIT"]
    assert (tmp_path / "count.txt").read_text(encoding="utf-8") == "x"


def test_small_sizes_in_the_disk_line_read_in_mib(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shutil, "disk_usage", lambda _: shutil._ntuple_diskusage(2**30, 2**30 - 50 * 2**20, 50 * 2**20))
    with pytest.raises(BuildError, match=r"^50 MiB free at .*this build writes about 120 MiB: "):
        ModelStore(tmp_path).get_or_build("onnx", "k", lambda out: None, {}, space_needed=120 * 2**20)


def test_an_in_place_build_writes_its_final_folder_and_publishes_with_the_manifest(tmp_path: Path) -> None:
    store = ModelStore(tmp_path)
    seen: list[tuple[Path, bool]] = []

    def build(out: Path) -> None:
        seen.append((out, store.lookup("envs", "k") is None))  # not an entry while it builds
        (out / "pyvenv.cfg").write_text(f"home = {out}\n", encoding="utf-8")

    result = store.get_or_build("envs", "k", build, {"lock": "x"}, in_place=True)
    assert seen == [(store.entry("envs", "k"), True)] and result.path == store.entry("envs", "k")
    assert store.lookup("envs", "k") == result.path and (result.path / "pyvenv.cfg").is_file()
    assert not (tmp_path / "tmp").exists()  # no staging folder: the path a virtual environment records holds


def test_a_failed_or_killed_in_place_build_is_not_trusted_and_is_rebuilt(tmp_path: Path) -> None:
    store = ModelStore(tmp_path)

    def broken(out: Path) -> None:
        (out / "half.bin").write_bytes(b"h")
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        store.get_or_build("envs", "k", broken, {}, in_place=True)
    assert not store.entry("envs", "k").exists()
    store.entry("envs", "k").mkdir(parents=True)
    (store.entry("envs", "k") / "half.bin").write_bytes(b"h")  # as a killed build leaves it: no manifest
    assert store.lookup("envs", "k") is None
    result = store.get_or_build("envs", "k", lambda out: (out / "full.bin").write_bytes(b"f"), {}, in_place=True)
    assert not result.hit and sorted(p.name for p in result.path.iterdir()) == [MANIFEST, "full.bin"]
