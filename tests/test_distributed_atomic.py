"""dldna_lite.distributed.atomic_write: a write that fails in any way (an exception, Ctrl-C, a failed replace) leaves
the old file and no temporary; temporaries left by killed writers are swept once stale, never a live writer's."""
import os
import time

import pytest

from dldna_lite import distributed


@pytest.mark.parametrize("error", [RuntimeError("disk full"), KeyboardInterrupt()])
def test_a_write_failing_midway_leaves_the_old_file_and_no_temporary(tmp_path, error):
    target = tmp_path / "cache.npz"
    target.write_bytes(b"old")

    def fails(f):
        f.write(b"x" * 100_000)                           # half a file on disk, then the failure
        assert len(list(tmp_path.glob("cache.npz.*.tmp"))) == 1
        raise error

    with pytest.raises(type(error)):
        distributed.atomic_write(target, fails)
    assert target.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["cache.npz"]


def test_a_failed_replace_leaves_no_temporary(tmp_path):
    folder = tmp_path / "out"
    (folder / "inner").mkdir(parents=True)               # os.replace of a file onto a non-empty folder fails
    with pytest.raises(OSError):
        distributed.atomic_write(folder, lambda f: f.write(b"new"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_stale_temporaries_of_killed_writers_are_swept_fresh_ones_kept(tmp_path):
    target = tmp_path / "cache.npz"
    stale = tmp_path / "cache.npz.0123456789abcdef.tmp"  # what a SIGKILL during a write leaves
    live = tmp_path / "cache.npz.fedcba9876543210.tmp"   # another process writing right now
    other = tmp_path / "cache.npz.mine.tmp"              # not a name atomic_write makes
    for path in (stale, live, other):
        path.write_bytes(b"partial")
    old = time.time() - distributed.STALE_TMP - 60
    os.utime(stale, (old, old))
    os.utime(other, (old, old))
    distributed.atomic_write(target, lambda f: f.write(b"new"))
    assert target.read_bytes() == b"new"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([target.name, live.name, other.name])
