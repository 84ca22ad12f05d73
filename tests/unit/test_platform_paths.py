"""File-system portability, with Windows and macOS simulated at run time: hard links that the file system refuses
become copies (``harness.fsutil``), and the cache's default folder follows each platform's convention
(``harness.locations``)."""

from __future__ import annotations

import errno
import os
import sys
from pathlib import Path

import pytest

from harness import fsutil
from harness.config.settings import resolve
from harness.locations import default_cache_dir

# What CreateHardLinkW fails with where a copy works, and the errno CPython gives it (PC/errmap.h: EINVAL is its
# default). FAT and exFAT: ERROR_INVALID_FUNCTION; SMB shares without hard links: ERROR_NOT_SUPPORTED.
WINDOWS_LINK_ERRORS = {
    "ERROR_INVALID_FUNCTION": (1, errno.EINVAL),
    "ERROR_ACCESS_DENIED": (5, errno.EACCES),
    "ERROR_NOT_SAME_DEVICE": (17, errno.EXDEV),
    "ERROR_NOT_SUPPORTED": (50, errno.EINVAL),
    "ERROR_INVALID_PARAMETER": (87, errno.EINVAL),
    "ERROR_TOO_MANY_LINKS": (1142, errno.EINVAL),
    "ERROR_PRIVILEGE_NOT_HELD": (1314, errno.EINVAL),
}
# And on POSIX: another file system, too many links, no hard links there (vfat: EPERM; macOS: ENOTSUP or
# EOPNOTSUPP; FUSE without link: ENOSYS), Linux's protected_hardlinks (EPERM), no right to link (EACCES).
POSIX_LINK_ERRORS = (errno.EXDEV, errno.EMLINK, errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENOSYS,
                     errno.EACCES)


def _refusing_link(monkeypatch: pytest.MonkeyPatch, error: OSError) -> list[tuple[str, str]]:
    calls: list[tuple[str, str]] = []

    def link(source: str, target: str) -> None:
        calls.append((str(source), str(target)))
        raise error

    monkeypatch.setattr(os, "link", link)
    return calls


def _link_or_copy(tmp_path: Path) -> tuple[Path, Path]:
    source, target = tmp_path / "weights.bin", tmp_path / "copy" / "weights.bin"
    source.write_bytes(os.urandom(4096))
    target.parent.mkdir()
    fsutil.link_or_copy(source, target)
    return source, target


@pytest.mark.parametrize("name", sorted(WINDOWS_LINK_ERRORS))
def test_a_hard_link_windows_refuses_becomes_a_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                    name: str) -> None:
    winerror, code = WINDOWS_LINK_ERRORS[name]
    if sys.platform == "win32":  # there, the errno the table assumes is the one CPython gives
        assert OSError(0, name, None, winerror).errno == code
    calls = _refusing_link(monkeypatch, OSError(code, f"[WinError {winerror}] {name}"))
    source, target = _link_or_copy(tmp_path)
    assert calls == [(str(source), str(target))]
    assert target.read_bytes() == source.read_bytes() and not target.samefile(source)


@pytest.mark.parametrize("code", POSIX_LINK_ERRORS, ids=[errno.errorcode[code] for code in POSIX_LINK_ERRORS])
def test_a_hard_link_posix_refuses_becomes_a_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                  code: int) -> None:
    calls = _refusing_link(monkeypatch, OSError(code, os.strerror(code)))
    source, target = _link_or_copy(tmp_path)
    assert len(calls) == 1 and target.read_bytes() == source.read_bytes() and not target.samefile(source)


@pytest.mark.parametrize("code", [errno.ENOENT, errno.EEXIST, errno.ENOSPC])
def test_other_link_errors_are_raised_not_hidden_by_a_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                           code: int) -> None:
    _refusing_link(monkeypatch, OSError(code, os.strerror(code)))
    with pytest.raises(OSError) as info:
        _link_or_copy(tmp_path)
    assert info.value.errno == code and not (tmp_path / "copy" / "weights.bin").exists()


def test_a_hard_link_is_made_where_the_file_system_allows_one(tmp_path: Path) -> None:
    source, target = _link_or_copy(tmp_path)
    assert target.samefile(source)


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A home folder, and no cache variables unless a test sets them."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("USERPROFILE", str(tmp_path / "home"))
    for name in ("XDG_CACHE_HOME", "LOCALAPPDATA"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path / "home"


@pytest.mark.parametrize("system", ["linux", "freebsd14"])
def test_the_default_cache_on_linux_and_other_unix_is_xdg(home: Path, monkeypatch: pytest.MonkeyPatch,
                                                          system: str) -> None:
    monkeypatch.setattr(sys, "platform", system)
    assert default_cache_dir() == home / ".cache" / "onnx-slm-harness"
    monkeypatch.setenv("XDG_CACHE_HOME", "/var/cache/me")
    assert default_cache_dir() == Path("/var/cache/me/onnx-slm-harness")
    monkeypatch.setenv("LOCALAPPDATA", "/ignored")
    monkeypatch.setenv("XDG_CACHE_HOME", "")  # empty: unset, as before
    assert default_cache_dir() == home / ".cache" / "onnx-slm-harness"


def test_the_default_cache_on_windows_is_local_app_data(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "platform", "win32")
    monkeypatch.setenv("XDG_CACHE_HOME", "/ignored")  # e.g. set by Git Bash or MSYS2: not Windows' convention
    assert default_cache_dir() == home / "AppData" / "Local" / "onnx-slm-harness"
    monkeypatch.setenv("LOCALAPPDATA", r"D:\Profiles\me\AppData\Local")
    assert str(default_cache_dir()).replace("/", "\\") == r"D:\Profiles\me\AppData\Local\onnx-slm-harness"


def test_the_default_cache_on_macos_is_library_caches(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "platform", "darwin")
    monkeypatch.setenv("XDG_CACHE_HOME", "/ignored")  # as platformdirs: XDG is not macOS's convention
    assert default_cache_dir() == home / "Library" / "Caches" / "onnx-slm-harness"


@pytest.mark.parametrize(("system", "expected"), [
    ("linux", ".cache/onnx-slm-harness"),
    ("win32", "AppData/Local/onnx-slm-harness"),
    ("darwin", "Library/Caches/onnx-slm-harness"),
])
def test_the_settings_default_is_the_platform_s(home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                system: str, expected: str) -> None:
    """--harness-cache-dir's default (harness.config.settings) is default_cache_dir's, decided when settings resolve."""
    monkeypatch.setattr(sys, "platform", system)
    assert resolve({}, env={}, rootdir=tmp_path).cache_dir == home / expected
