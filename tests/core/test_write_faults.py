"""A run whose directory stops being writable mid-run (permission, read-only file system, full disk):
one stderr line naming the file and the command that finishes the run, a status that is failed or
dead (never complete), and that command, once the directory is writable, gives the results of a
clean run bit for bit (float64). Faults are simulated in-process: the store's writers raise the
OSError the operating system would."""
import errno
import json
from pathlib import Path

import pandas as pd
import pytest
import yaml
from conftest import cli_main, run_tables

import lrsweep
from lrsweep.core import store

CFG = {"name": "faults", "seeds": [0, 1],
       "task": {"input_dim": 6, "n_train": 6},
       "model": {"parameterization": "standard", "n_layers": 2, "activation": "relu", "width": 3},
       "train": {"steps": 3},
       "grid": {"lr": [0.05, 0.1, 0.2, 0.4]}}
ARGS = ["--quiet", "--x64", "--chunk-size", "2"]  # 8 students, 4 chunks


def write_cfg(folder: Path) -> Path:
    path = Path(folder) / "faults.yaml"
    path.write_text(yaml.safe_dump(CFG, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def clean(tmp_path_factory):
    out = tmp_path_factory.mktemp("clean")
    rc, _, err = cli_main(["run", write_cfg(out), "--out", out, "--run-id", "clean", *ARGS])
    assert rc == 0, err
    return out / "faults" / "clean"




def assert_same_results(run: Path, clean: Path) -> None:
    got, want = run_tables(run), run_tables(clean)
    for table in ("students", "curves"):
        pd.testing.assert_frame_equal(got[table], want[table], check_exact=True)


def denied(path) -> PermissionError:
    return PermissionError(errno.EACCES, "Permission denied", str(path))


def ls_line(root: Path, run: Path) -> str:
    rc, out, err = cli_main(["ls", root])
    assert rc == 0, err
    return next(line for line in out.splitlines() if line.startswith(str(run) + " "))


@pytest.mark.parametrize("where,resumed", [("part", "4 trained now, 4 already stored"),
                                           ("meta.json", "0 trained now, 8 already stored")])
def test_unwritable_mid_run_is_one_line_never_complete_and_resumes_bit_for_bit(tmp_path, monkeypatch, clean, where,
                                                                               resumed):
    """The fifth part written (``part``: chunk 3's curves) or meta.json once chunks are stored (the
    status ``complete`` at the end cannot be written) raises EACCES: exit 2, one line naming that file
    and ``lrsweep run --resume RUN``; ls says failed (``part``) or dead (``meta.json``: it still says
    running, nobody holds the lock), never complete; once writable, the command finishes the run
    equal to a clean run, and says what it trained and what it found."""
    run = tmp_path / "faults" / "R"
    real_table, real_json = store.write_table, store.write_json
    calls, failed = [], []

    def write_table(df, path, *a, **k):
        calls.append(path)
        if where == "part" and len(calls) == 5:  # chunk 3's curves part (each chunk: curves, students)
            failed.append(path)
            raise denied(path)
        return real_table(df, path, *a, **k)

    def write_json(obj, path):
        if where == "meta.json" and len(calls) >= 4 and Path(path).name == "meta.json":
            failed.append(path)
            raise denied(path)
        return real_json(obj, path)

    monkeypatch.setattr(store, "write_table", write_table)
    monkeypatch.setattr(store, "write_json", write_json)
    rc, _, err = cli_main(["run", write_cfg(tmp_path), "--out", tmp_path, "--run-id", "R", *ARGS])
    monkeypatch.undo()
    assert rc == 2 and len(err.strip().splitlines()) == 1, err
    assert err.strip() == (f"lrsweep: cannot write {failed[0]}: Permission denied; once it is writable, "
                           f"finish with: lrsweep run --resume {run}")
    line = ls_line(tmp_path, run)
    assert ("failed: PermissionError" if where == "part" else "dead (resumable") in line, line
    assert json.loads((run / "meta.json").read_text())["status"] != "complete"
    rc, out, err = cli_main(["run", "--resume", run, "--quiet"])
    assert rc == 0, err
    assert f"students: 8 ({resumed}) in 1 shape group(s)" in out, out
    assert ls_line(tmp_path, run).endswith("complete")
    assert_same_results(run, clean)


@pytest.mark.parametrize("table", ["curves", "students"])
def test_unwritable_merged_tables_leave_the_parts_and_resume(tmp_path, monkeypatch, clean, table):
    """The merge at the end of a run cannot write its tables in RUN/.merging (``curves``: the hard link
    denied; ``students``: the copy's writer denied, which was reported as the part being unreadable):
    one line naming the file, the parts kept, status failed; the resume merges them, nothing retrained."""
    run = tmp_path / "faults" / "M"

    def place(src, dst):
        raise denied(dst)

    def writer(where, *a, **k):
        raise PermissionError(errno.EPERM, f"Failed to open local file '{where}'")

    import pyarrow.parquet as pq
    monkeypatch.setattr(*((store, "_place", place) if table == "curves" else (pq, "ParquetWriter", writer)))
    rc, _, err = cli_main(["run", write_cfg(tmp_path), "--out", tmp_path, "--run-id", "M", *ARGS])
    monkeypatch.undo()
    assert rc == 2 and len(err.strip().splitlines()) == 1, err
    assert err.startswith(f"lrsweep: cannot write {run / '.merging' / table}") and \
        err.strip().endswith(f"finish with: lrsweep run --resume {run}"), err
    assert (run / "parts").is_dir() and "failed" in ls_line(tmp_path, run)
    rc, out, err = cli_main(["run", "--resume", run, "--quiet"])
    assert rc == 0 and "(0 trained now, 8 already stored)" in out, out + err
    assert_same_results(run, clean)


def test_a_write_error_outside_a_run_names_the_file_and_says_run_again(tmp_path, monkeypatch):
    """No run around the file (config.yaml of a run not yet made): the line says to run the command again."""
    from lrsweep import cli
    err = denied(tmp_path / "x" / "config.yaml")
    import contextlib
    import io
    buf = io.StringIO()
    with contextlib.redirect_stderr(buf):
        assert cli._write_error(err) == 2
    assert buf.getvalue() == (f"lrsweep: cannot write {tmp_path / 'x' / 'config.yaml'}: Permission denied; "
                              f"once it is writable, run the command again\n")


def test_atomic_write_names_the_file_not_its_temporary(tmp_path, monkeypatch):
    """pyarrow's PermissionError names the temporary file (or nothing): the store names the file meant."""
    import pyarrow.parquet as pq

    def refuse(table, where, *a, **k):
        raise PermissionError(errno.EROFS, f"Failed to open local file '{where}'")

    monkeypatch.setattr(pq, "write_table", refuse)
    with pytest.raises(OSError) as caught:
        store.write_table(pd.DataFrame({"a": [1]}), tmp_path / "t.parquet")
    assert caught.value.errno == errno.EROFS and caught.value.filename == str(tmp_path / "t.parquet")
    assert list(tmp_path.iterdir()) == []
