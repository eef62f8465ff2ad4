import multiprocessing as mp

import pytest

from ifdd_bench import results
from ifdd_bench.errors import DataError


def _writer(path, k):
    for i in range(10):
        results.append_rows(path, [{"run_id": f"w{k}-{i}", "uar": 0.1 * i}])


def test_append_extends_header(tmp_path):
    path = tmp_path / "runs.csv"
    results.append_rows(path, [{"run_id": "a", "uar": 0.5}])
    results.append_rows(path, [{"run_id": "b", "uar": 0.25, "war": 0.75}])
    frame = results.load(path, required=["run_id"])
    assert list(frame.run_id) == ["a", "b"] and frame.war.isna().iloc[0]
    assert results.finished_run_ids(tmp_path) == {"a", "b"}


def test_concurrent_writers_never_lose_rows(tmp_path):
    path = tmp_path / "runs.csv"
    procs = [mp.get_context("spawn").Process(target=_writer, args=(path, k)) for k in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    assert len(results.load(path)) == 30


def test_failed_write_keeps_old_file(tmp_path):
    path = tmp_path / "runs.csv"
    results.append_rows(path, [{"run_id": "a"}])
    before = path.read_text()

    class Boom:
        def __repr__(self):
            raise RuntimeError("disk full")

        __str__ = __repr__

    with pytest.raises(RuntimeError):
        results.append_rows(path, [{"run_id": Boom()}])
    assert path.read_text() == before
    assert not list(tmp_path.glob(".runs.csv.*.tmp"))


def test_load_errors(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        results.load(tmp_path / "none.csv")
    (tmp_path / "x.csv").write_text("a,b\n1,2\n")
    with pytest.raises(DataError, match="lacks column"):
        results.load(tmp_path / "x.csv", required=["run_id"])


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_written_file_mode_follows_umask(tmp_path, umask):
    # mkstemp's 0600 must not leak into runs.csv: other users/group read shared results folders
    import os
    import stat

    path = tmp_path / "runs.csv"
    old = os.umask(umask)
    try:
        results.append_rows(path, [{"run_id": "a"}])
        results.append_rows(path, [{"run_id": "b"}])
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask
