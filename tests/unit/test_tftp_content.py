"""Content providers: StaticRoot containment (traversal, symlinks, NUL, directories) and chaining."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ztp.tftp.content import ChainedContent, StaticRoot, TftpRefusal

PEER = ("10.77.0.2", 40000)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    top = tmp_path / "root"
    (top / "cfg").mkdir(parents=True)
    (top / "cfg" / "leaf01.cfg").write_bytes(b"hostname leaf01\n")
    (top / "boot.bin").write_bytes(b"\x7fELF")
    (tmp_path / "secret.txt").write_text("secret")
    (top / "escape").symlink_to(tmp_path / "secret.txt")
    (top / "escape_dir").symlink_to(tmp_path)
    (top / "inside").symlink_to(top / "cfg" / "leaf01.cfg")
    (top / "loop").symlink_to(top / "loop")
    os.mkfifo(top / "fifo")
    return top


def _refusal(provider: StaticRoot | ChainedContent, path: str) -> TftpRefusal:
    with pytest.raises(TftpRefusal) as info:
        provider.get(path, PEER)
    return info.value


def test_serves_files(root: Path) -> None:
    static = StaticRoot(root)
    assert static.get("cfg/leaf01.cfg", PEER) == b"hostname leaf01\n"
    assert static.get("boot.bin", PEER) == b"\x7fELF"
    assert static.get("inside", PEER) == b"hostname leaf01\n"  # a symlink that stays inside is fine
    assert static.get("cfg//leaf01.cfg", PEER) == b"hostname leaf01\n"
    assert static.get("./boot.bin", PEER) == b"\x7fELF"


@pytest.mark.parametrize(
    ("path", "code", "fragment"),
    [
        ("../secret.txt", 2, "'..'"),
        ("../../etc/passwd", 2, "'..'"),
        ("cfg/../../secret.txt", 2, "'..'"),
        ("cfg/..", 2, "'..'"),
        ("/etc/passwd", 2, "absolute"),
        ("escape", 2, "leaves the TFTP root"),
        ("escape_dir/secret.txt", 2, "leaves the TFTP root"),
        ("boot.bin\0.cfg", 2, "NUL"),
        ("cfg", 2, "directory"),
        (".", 2, "directory"),
        ("fifo", 2, "not a regular file"),
        ("missing.cfg", 1, "not found"),
        ("boot.bin/x", 1, "not found"),
        ("loop", 1, "not found"),
        ("", 1, "empty"),
        ("\udcff\udcfe.cfg", 1, "not found"),
    ],
)
def test_refusals(root: Path, path: str, code: int, fragment: str) -> None:
    refusal = _refusal(StaticRoot(root), path)
    assert refusal.code == code
    assert fragment in refusal.message


def test_non_ascii_name_is_served(root: Path) -> None:
    (root / "café.cfg").write_bytes(b"x")
    os.close(os.open(os.fsencode(root) + b"/\xff.bin", os.O_CREAT | os.O_WRONLY))
    static = StaticRoot(root)
    assert static.get("café.cfg", PEER) == b"x"
    assert static.get("\udcff.bin", PEER) == b""


def test_changed_file_is_reread(root: Path) -> None:
    static = StaticRoot(root)
    assert static.get("boot.bin", PEER) == b"\x7fELF"
    target = root / "boot.bin"
    target.write_bytes(b"new content")
    assert static.get("boot.bin", PEER) == b"new content"


class _Fixed:
    def __init__(self, files: dict[str, bytes], other: TftpRefusal | None = None) -> None:
        self.files = files
        self.other = other
        self.calls: list[str] = []

    def get(self, path: str, peer: tuple[str, int]) -> bytes:
        self.calls.append(path)
        if self.other is not None:
            raise self.other
        if path not in self.files:
            raise TftpRefusal(1, f"{path} not here")
        return self.files[path]


def test_chained_first_hit_wins_and_not_found_falls_through() -> None:
    first, second = _Fixed({"a": b"1"}), _Fixed({"a": b"2", "b": b"3"})
    chain = ChainedContent(first, second)
    assert chain.get("a", PEER) == b"1"
    assert chain.get("b", PEER) == b"3"
    assert second.calls == ["b"]
    refusal = _refusal(chain, "c")
    assert refusal.code == 1 and "c not here" in refusal.message


def test_chained_other_refusal_stops_the_chain() -> None:
    denied, fallback = _Fixed({}, TftpRefusal(2, "denied")), _Fixed({"a": b"1"})
    refusal = _refusal(ChainedContent(denied, fallback), "a")
    assert (refusal.code, refusal.message) == (2, "denied")
    assert fallback.calls == []


def test_empty_chain_is_not_found() -> None:
    assert _refusal(ChainedContent(), "x").code == 1
