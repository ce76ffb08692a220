"""rayrag.io: writes become visible whole or not at all, and leave no temporaries behind."""
import hashlib
import json
import os

import numpy as np
import pytest

from rayrag.io import (atomic_dir, atomic_open, atomic_path, atomic_write_bytes, atomic_write_json, read_manifest,
                       sha256_file, sha256_folder)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_atomic_write_json_and_bytes(tmp_path):
    atomic_write_json(tmp_path / "a.json", {"b": 1, "a": [1, 2]})
    assert json.loads((tmp_path / "a.json").read_text()) == {"a": [1, 2], "b": 1}
    atomic_write_bytes(tmp_path / "a.json", b"replaced")
    assert (tmp_path / "a.json").read_bytes() == b"replaced"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json"]
    # the umask decides permissions, as for open(); mkstemp would have made it 0600
    assert (tmp_path / "a.json").stat().st_mode & 0o777 == 0o666 & ~_umask()


def test_failed_write_keeps_the_old_file_and_leaves_no_temp(tmp_path):
    path = tmp_path / "run.trec"
    path.write_text("old\n")
    with pytest.raises(RuntimeError, match="boom"):
        with atomic_open(path) as f:
            f.write("half of a new file")
            raise RuntimeError("boom")
    assert path.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["run.trec"]


def test_failed_write_of_a_new_file_leaves_nothing(tmp_path):
    with pytest.raises(ValueError):
        with atomic_path(tmp_path / "x.parquet"):
            raise ValueError
    assert list(tmp_path.iterdir()) == []


def test_atomic_path_keeps_the_suffix_for_writers_that_choose_by_it(tmp_path):
    import scipy.sparse as sp

    m = sp.csr_matrix(np.eye(3, dtype=np.float32))
    with atomic_path(tmp_path / "postings.npz") as tmp:
        assert tmp.parent == tmp_path and tmp.suffix == ".npz" and tmp.name.startswith(".postings.npz.")
        sp.save_npz(tmp, m)  # would append ".npz" to a name without it
    assert [p.name for p in tmp_path.iterdir()] == ["postings.npz"]
    assert (sp.load_npz(tmp_path / "postings.npz") != m).nnz == 0


def test_atomic_open_refuses_append():
    with pytest.raises(ValueError, match="mode"):
        with atomic_open("x", "a"):
            pass


def test_atomic_dir_publishes_a_complete_folder(tmp_path):
    dest = tmp_path / "sub" / "model"
    with atomic_dir(dest) as tmp:
        assert tmp.parent == dest.parent and not dest.exists()
        (tmp / "config.json").write_text("{}")
    assert [p.name for p in dest.iterdir()] == ["config.json"]
    assert [p.name for p in dest.parent.iterdir()] == ["model"]
    assert dest.stat().st_mode & 0o777 == 0o777 & ~_umask()


def test_failed_atomic_dir_leaves_no_folder(tmp_path):
    dest = tmp_path / "model"
    with pytest.raises(OSError):
        with atomic_dir(dest) as tmp:
            (tmp / "weights").write_bytes(b"x")
            raise OSError("disk full")
    assert list(tmp_path.iterdir()) == []


def test_atomic_dir_replace(tmp_path):
    dest = tmp_path / "model"
    dest.mkdir()
    (dest / "old").write_text("old")
    with atomic_dir(dest, replace=True) as tmp:
        (tmp / "new").write_text("new")
    assert [p.name for p in dest.iterdir()] == ["new"]
    assert [p.name for p in tmp_path.iterdir()] == ["model"]


def test_atomic_dir_loses_a_race_gracefully(tmp_path):
    """Two processes filling the same cache entry: the first one's folder stays, the second's goes."""
    dest = tmp_path / "cache-entry"
    with atomic_dir(dest) as tmp:
        (tmp / "mine").write_text("second")
        dest.mkdir()
        (dest / "theirs").write_text("first")
    assert [p.name for p in dest.iterdir()] == ["theirs"]
    assert [p.name for p in tmp_path.iterdir()] == ["cache-entry"]


def test_sha256_file_and_folder(tmp_path):
    (tmp_path / "model.safetensors").write_bytes(b"w" * 3_000_000)  # more than one read chunk
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "README.md").write_text("about")
    assert sha256_file(tmp_path / "config.json") == hashlib.sha256(b"{}").hexdigest()
    weights = lambda p: p.suffix != ".md"  # noqa: E731
    expected = hashlib.sha256()
    for name in ("config.json", "model.safetensors"):  # sorted names, each followed by its checksum
        expected.update(name.encode())
        expected.update(hashlib.sha256((tmp_path / name).read_bytes()).hexdigest().encode())
    digest = sha256_folder(tmp_path, weights)
    assert digest == expected.hexdigest()
    (tmp_path / "README.md").write_text("changed")
    assert sha256_folder(tmp_path, weights) == digest
    (tmp_path / "config.json").write_text('{"a": 1}')
    assert sha256_folder(tmp_path, weights) != digest


def test_the_fault_tests_leftover_check_sees_a_temp_file_and_folder(tmp_path):
    from rayrag.io import atomic_dir, atomic_path
    from tests.fault_checks import temp_leftovers

    with atomic_path(tmp_path / "a.json") as tmp_file, atomic_dir(tmp_path / "folder") as tmp_dir:
        tmp_file.write_text("{}")
        (tmp_dir / "x").write_text("x")
        assert set(temp_leftovers(tmp_path)) == {tmp_file, tmp_dir}
    assert temp_leftovers(tmp_path) == []


def test_a_folder_without_a_readable_manifest_is_no_finished_output(tmp_path):
    from rayrag.encode.store import load_manifest
    from rayrag.errors import DataError
    from rayrag.index.store import read_manifest as read_index_manifest

    for read, what in ((load_manifest, "encode output"), (read_index_manifest, "rayrag index")):
        with pytest.raises(DataError, match=f"is not a finished {what} \\(no manifest.json\\)"):
            read(tmp_path)
    (tmp_path / "manifest.json").write_text('{"kind": "dense", ')  # cut off mid-write by hand
    with pytest.raises(DataError, match="manifest.json: malformed JSON"):
        read_manifest(tmp_path, "encode output")
    atomic_write_json(tmp_path / "manifest.json", {"kind": "dense", "count": 3})
    assert read_manifest(tmp_path, "encode output") == {"kind": "dense", "count": 3}
