"""atomic_write: all-or-nothing replacement and actionable errors."""
import errno
import os
import stat

import pytest

from maskclip.atomic import FileWriteError, atomic_write
from maskclip.errors import MaskCLIPError


def test_writes_binary_and_text(tmp_path):
    with atomic_write(tmp_path / "a.bin") as f:
        f.write(b"\x00\x01")
    assert (tmp_path / "a.bin").read_bytes() == b"\x00\x01"
    with atomic_write(tmp_path / "a.txt", "w") as f:
        f.write("héllo\n")
    assert (tmp_path / "a.txt").read_text(encoding="utf-8") == "héllo\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.bin", "a.txt"]


def test_exception_keeps_destination_and_removes_temp(tmp_path):
    dest = tmp_path / "out.png"
    dest.write_bytes(b"old")
    with pytest.raises(RuntimeError, match="boom"):
        with atomic_write(dest) as f:
            f.write(b"half-written")
            raise RuntimeError("boom")
    assert dest.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.png"]


def test_new_file_nothing_left_on_failure(tmp_path):
    with pytest.raises(ValueError):
        with atomic_write(tmp_path / "new.json", "w") as f:
            f.write("{")
            raise ValueError("bad")
    assert list(tmp_path.iterdir()) == []


def test_existing_permissions_are_kept(tmp_path):
    dest = tmp_path / "x"
    dest.write_bytes(b"1")
    os.chmod(dest, 0o640)
    with atomic_write(dest) as f:
        f.write(b"2")
    assert stat.S_IMODE(os.stat(dest).st_mode) == 0o640


def test_new_file_gets_umask_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        with atomic_write(tmp_path / "n") as f:
            f.write(b"1")
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(tmp_path / "n").st_mode) == 0o644


@pytest.mark.parametrize("code, reason", [(errno.ENOSPC, "no space left"), (errno.EACCES, "permission denied"),
                                          (errno.EROFS, "read-only"), (errno.EPERM, "operation not permitted")])
def test_actionable_os_errors_become_maskclip_errors(tmp_path, monkeypatch, code, reason):
    dest = tmp_path / "labels.png"
    dest.write_bytes(b"old")

    def failing_replace(src, dst):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(FileWriteError, match=f"cannot write .*labels.png: {reason}") as info:
        with atomic_write(dest) as f:
            f.write(b"new")
    assert isinstance(info.value, MaskCLIPError)
    assert dest.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["labels.png"]


def test_disk_full_while_writing(tmp_path):
    class FullDisk:
        def write(self, f):
            raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(FileWriteError, match="no space left on device"):
        with atomic_write(tmp_path / "big.bin") as f:
            FullDisk().write(f)
    assert list(tmp_path.iterdir()) == []


def test_unwritable_folder(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    os.chmod(folder, 0o500)
    try:
        if os.access(folder, os.W_OK):
            pytest.skip("running with privileges that ignore folder permissions")
        with pytest.raises(FileWriteError, match="ro/x.png: permission denied"):
            with atomic_write(folder / "x.png") as f:
                f.write(b"1")
    finally:
        os.chmod(folder, 0o700)


def test_missing_folder_and_folder_destination(tmp_path):
    with pytest.raises(FileWriteError, match="does not exist"):
        with atomic_write(tmp_path / "nope" / "x.png") as f:
            f.write(b"1")
    (tmp_path / "d").mkdir()
    with pytest.raises(FileWriteError, match="destination is a folder"):
        with atomic_write(tmp_path / "d") as f:
            f.write(b"1")
    assert [p.name for p in tmp_path.iterdir()] == ["d"]


def test_other_file_errors_pass_through(tmp_path):
    with pytest.raises(PermissionError) as info:
        with atomic_write(tmp_path / "y") as f:
            f.write(b"1")
            raise PermissionError(errno.EACCES, "Permission denied", "/some/other/input.png")
    assert info.value.filename == "/some/other/input.png"
    assert list(tmp_path.iterdir()) == []


def test_bad_mode():
    with pytest.raises(ValueError, match="mode"):
        with atomic_write("x", "a"):
            pass
