import os
import stat

import pytest

from keras_guided import _atomic


def _mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def test_result_has_the_permissions_of_a_plain_open(tmp_path):
    plain = tmp_path / "plain.bin"
    plain.write_bytes(b"x")
    target = tmp_path / "out.bin"
    with _atomic.atomic_path(str(target)) as temporary:
        assert os.path.exists(temporary) and temporary != str(target)
        with open(temporary, "wb") as handle:
            handle.write(b"data")
    assert target.read_bytes() == b"data"
    assert _mode(target) == _mode(plain)
    assert sorted(os.listdir(tmp_path)) == ["out.bin", "plain.bin"]


def test_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError, match="boom"):
        with _atomic.atomic_path(str(target)) as temporary:
            with open(temporary, "wb") as handle:
                handle.write(b"half")
            raise RuntimeError("boom")
    assert target.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["out.bin"]


def test_umask_is_left_alone(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(os, "umask", lambda *a: calls.append(a))
    with _atomic.atomic_path(str(tmp_path / "out.bin")) as temporary:
        open(temporary, "wb").close()
    assert calls == []
