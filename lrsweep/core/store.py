"""Storage: atomic Parquet/JSON/YAML writes and loading runs into pandas.

Layout of a run (``results/<name>/<run_id>/``)::

    config.yaml        the resolved config
    meta.json          versions, device, status (running | interrupted | failed | complete), pid, host,
                       heartbeat, error, wall time, students/s, row counts of the merged tables
    .lock              the write lock (:mod:`lrsweep.core.runstate`): one writer per run
    students/group_id=<g>/<chunk>.parquet
                       one row per student (hyperparameters, final metrics, divergence): a Parquet
                       dataset, hive partitioned by shape group, one file per trained chunk
    curves/group_id=<g>/<chunk>.parquet
                       one row per student per logged step (in both tables group_id is the folder,
                       not a column of the files: read with hive partitioning, or lrsweep.load)
    poly.parquet       loss-polynomial coefficients of the groups run in poly mode (lrsweep.core.poly)
    parts/             while running: one students/curves file pair per chunk (crash-safe; plus a
                       poly file for poly chunks); moved into the datasets above at completion,
                       each student once, checked against the plan (:func:`merge_parts`)
    shards/            a sharded run's per-shard records (lrsweep run --shard i/n)

Runs merged before results were partitioned hold students.parquet / curves.parquet; every reader
here reads both layouts.

Every file is written to a temporary name in the same directory and renamed, so a killed run
never leaves a truncated file. Readers unify the schemas of all files, so columns added by a
later version or another family are kept (missing ones become null).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import shutil
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import yaml

from lrsweep import registry
from lrsweep.core.errors import StoreError

# Columns with a fixed type whatever the data (the rest are inferred, and unified on read): a table's
# schema comes from its columns, so a metric a family adds is stored as it is.
COLUMN_TYPES = {"run_id": pa.string(), "mode": pa.string(), "student_id": pa.int64(), "group_id": pa.int64(),
                "step": pa.int64(), "seed": pa.int64(), "n_layers": pa.int64(), "width": pa.int64(),
                "input_dim": pa.int64(), "n_train": pa.int64(), "steps": pa.int64(), "init": pa.string(),
                "activation": pa.string(), "lr_total": pa.float64(), "train_loss": pa.float64(),
                "test_loss": pa.float64(), "final_train_loss": pa.float64(), "final_test_loss": pa.float64(),
                "diverged": pa.bool_(), "diverged_step": pa.int64(), "target_std": pa.float64(),
                "noise_std": pa.float64(), "log_steps": pa.string()}


WRITE_ERRNOS = frozenset({errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT})  # not the user's input


def _atomic(path: Path, write) -> None:
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write(tmp)
        os.replace(tmp, path)
    except OSError as e:
        if e.errno in WRITE_ERRNOS:  # name the file meant, not its temporary (pyarrow names neither)
            raise OSError(e.errno, os.strerror(e.errno), str(path)) from None
        raise
    finally:
        with contextlib.suppress(OSError):
            if tmp.exists():
                tmp.unlink()


def write_table(df: pd.DataFrame, path: Path, schema: pa.Schema | None = None) -> None:
    """Write a DataFrame as Parquet atomically, with the fixed types of known columns."""
    if schema is None:
        fields = []
        inferred = pa.Schema.from_pandas(df, preserve_index=False)
        for f in inferred:
            fields.append(pa.field(f.name, COLUMN_TYPES.get(f.name, f.type)))
        schema = pa.schema(fields)
    table = pa.Table.from_pandas(df, schema=schema, preserve_index=False)
    _atomic(path, lambda tmp: pq.write_table(table, tmp))


def lists_as_text(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` with list-valued columns (log_steps, metrics, points) as comma-separated text."""
    df = df.copy()
    for col in df.columns:
        if df[col].map(lambda v: isinstance(v, (list, tuple))).any():
            df[col] = df[col].map(lambda v: ",".join(map(str, v)) if isinstance(v, (list, tuple)) else None)
    return df


def write_json(obj: dict, path: Path) -> None:
    _atomic(path, lambda tmp: Path(tmp).write_text(json.dumps(obj, indent=2, default=str) + "\n"))


def write_yaml(obj: dict, path: Path) -> None:
    _atomic(path, lambda tmp: Path(tmp).write_text(yaml.safe_dump(obj, sort_keys=False)))


def read_json(path: Path) -> dict:
    return json.loads(Path(path).read_text())


def is_run(path: Path) -> bool:
    return (Path(path) / "meta.json").exists()


def find_runs(path: str | Path) -> list[Path]:
    """A run directory, or every run below a sweep / results directory (sorted)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no such run or sweep directory: {path}")
    if is_run(path):
        return [path]
    return sorted(p.parent for p in path.rglob("meta.json"))


def select_runs(path: str | Path, runs: str | list = "latest") -> list[Path]:
    """The runs :func:`load` reads under ``path``: a run directory is itself; above runs,
    ``"latest"`` is the newest run of each sweep (by start time, then run id), ``"all"`` every run,
    a list names runs by id or path."""
    found = find_runs(path)
    if isinstance(runs, str) and runs not in ("latest", "all"):
        runs = [runs]
    if runs == "all" or is_run(path):
        return found
    if runs == "latest":
        newest = {}
        for run in found:
            key = (_started(run), run.name)
            if run.parent not in newest or key > newest[run.parent][0]:
                newest[run.parent] = (key, run)
        return sorted(run for _, run in newest.values())
    by_name = {r.name: r for r in found} | {str(r): r for r in found}
    missing = [str(r) for r in runs if str(r) not in by_name and not is_run(Path(r))]
    if missing:
        raise FileNotFoundError(f"runs: no run {', '.join(missing)} under {path}; "
                                f"there are: {', '.join(r.name for r in found) or 'none'}")
    return [by_name.get(str(r), Path(r)) for r in runs]


def _started(run: Path) -> str:
    try:
        return str(read_json(run / "meta.json").get("started") or "")
    except (OSError, ValueError):
        return ""


def _stem(part: Path, table: str) -> str:
    return part.name[: -len(f".{table}.parquet")]


PARTITIONED = ("students", "curves")  # merged as Parquet datasets: RUN/<table>/group_id=<g>/<chunk>.parquet


def _group_of(path: Path) -> int:
    return int(path.parent.name.split("=", 1)[1])


def table_files(run: Path, table: str, groups=None) -> list[Path]:
    """While parts exist they are the truth (a merge cut short may have left a stale merged table);
    after the merge, the files of the table's dataset (``RUN/<table>/group_id=<g>/*.parquet``, in group
    order; only ``groups`` if given), or the single ``RUN/<table>.parquet`` of runs merged before results
    were partitioned (and of poly coefficients)."""
    run = Path(run)
    if (run / "parts").is_dir():
        return sorted((run / "parts").glob(f"*.{table}.parquet"))
    folder = run / table
    if table in PARTITIONED and folder.is_dir():
        files = sorted(folder.glob("group_id=*/*.parquet"), key=lambda f: (_group_of(f), f.name))
        return [f for f in files if groups is None or _group_of(f) in set(groups)]
    merged = run / f"{table}.parquet"
    return [merged] if merged.exists() else []


def dataset(run: str | Path, table: str = "curves"):
    """A merged table of a run as a :class:`pyarrow.dataset.Dataset` (hive partitioned by ``group_id``,
    int64; the schema unified over the files, where plain ``pyarrow.parquet.read_table(dir)`` takes the
    first file's and drops a metric only later groups log), for filtered or column-wise reads of
    tables larger than memory::

        store.dataset(run, "curves").to_table(columns=["student_id", "step", "test_loss"],
                                              filter=pyarrow.dataset.field("group_id") == 3)

    Its schema unifies every file's (footers only): a metric logged by one group only is a column,
    null elsewhere (plain ``pyarrow.dataset.dataset(dir)`` would take the first file's schema).
    """
    import pyarrow.dataset as ds
    run = Path(run)
    files = table_files(run, table)
    # one schema for all files (a metric only some groups log is a column, null elsewhere): footers only
    schema = pa.unify_schemas([read_schema(f) for f in files], promote_options="permissive") if files else None
    if (run / table).is_dir() and table in PARTITIONED:
        if schema is not None and "group_id" not in schema.names:
            schema = schema.append(pa.field("group_id", pa.int64()))
        return ds.dataset(run / table, format="parquet", schema=schema,
                          partitioning=ds.partitioning(pa.schema([("group_id", pa.int64())]), flavor="hive"))
    return ds.dataset(files, format="parquet", schema=schema)


def marked_parts(run: Path, table: str) -> list[Path]:
    """Files of ``table``: the merged table, or the parts whose chunk finished (its students part exists).

    A part written before the crash of its chunk (no students part, the done marker) is left out,
    so a resumed chunk is never counted twice.
    """
    run = Path(run)
    files = table_files(run, table)
    if table == "students" or not (run / "parts").is_dir():
        return files
    return [f for f in files if f.with_name(_stem(f, table) + ".students.parquet").exists()]


SHARD_FILE = re.compile(r"^s(\d+)of(\d+)-|^(\d+)-of-(\d+)\.json$")  # a shard's parts, its record


def repair_command(run: Path, file: Path | None = None) -> str:
    """The command that finishes or repairs the run ``run``: the resume of the work a family's command
    added to it (:class:`lrsweep.registry.Stage`: it finishes the students first), of its kind
    (:class:`lrsweep.registry.RunKind`), else ``lrsweep run --resume``. A sharded run not yet merged:
    the resume of the shard that wrote ``file`` (a part ``s<i>of<n>-...``, a record
    ``shards/<i>-of-<n>.json``), else ``lrsweep merge``."""
    run = Path(run)
    if run.parent.name in registry.STAGES and is_run(run.parent.parent):  # a stage's run (RUN/verify/<id>)
        return repair_command(run.parent.parent)                       # is finished by its parent's command
    try:
        meta = read_json(run / "meta.json")
    except (OSError, ValueError):
        meta = {}
    if meta.get("shards") and meta.get("status") != "complete":
        m = SHARD_FILE.match(Path(file).name) if file is not None and Path(file).parent.name in ("parts", "shards") \
            else None
        if m is not None:
            i, n = (m.group(1), m.group(2)) if m.group(1) is not None else (m.group(3), m.group(4))
            return f"lrsweep run --resume {run} --shard {i}/{n}"
        return f"lrsweep merge {run}"
    stage = next((s for s in registry.STAGES.values() if isinstance(meta.get(s.name), dict)), None)
    kind = next((k for k in registry.RUN_KINDS.values() if k.resume and k.detect(run)), None) if meta else None
    if kind is not None:
        return kind.resume.format(run=run)
    if stage is not None:
        return stage.resume.format(run=run)
    return f"lrsweep run --resume {run}"


def run_of(path: Path) -> Path:
    """The run directory a stored file belongs to (a part, a partition of a merged table, a run table,
    a file of a sub-run's ``verify/``...): the nearest directory above it with a meta.json."""
    path = Path(path)
    for parent in path.parents:
        if (parent / "meta.json").is_file():
            return parent
    return path.parent


def _unreadable(path: Path, err: BaseException) -> StoreError:
    path = Path(path)
    reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return StoreError(path, f"unreadable Parquet file ({reason}); repair with: {repair_command(run_of(path), path)}")


def file_problem(path: Path, rows: int | None = None) -> str | None:
    """Why the Parquet file ``path`` cannot be trusted (missing, unreadable, or not the ``rows`` rows
    its writer recorded), or None; reads the footer only."""
    path = Path(path)
    if not path.exists():
        return f"{path}: missing"
    try:
        have = pq.ParquetFile(path).metadata.num_rows
    except (pa.ArrowException, OSError) as e:
        return str(_unreadable(path, e)).split(";")[0]
    if rows is not None and have != rows:
        return f"{path}: {have} rows, expected {rows}"
    return None


def read_parquet(path: Path, columns: list[str] | None = None) -> pa.Table:
    """One Parquet file; an unreadable one raises :class:`StoreError` naming it and what to do."""
    try:
        return pq.read_table(path, columns=columns)
    except (pa.ArrowException, OSError) as e:
        raise _unreadable(path, e) from None


def read_schema(path: Path) -> pa.Schema:
    try:
        return pq.read_schema(path)
    except (pa.ArrowException, OSError) as e:
        raise _unreadable(path, e) from None


def read_table(files: list[Path], columns: list[str] | None = None) -> pd.DataFrame:
    """Read Parquet files with one unified schema (columns missing in some files become null);
    ``columns``: only those (where a file has them)."""
    tables = [read_parquet(f) if columns is None else read_parquet(f, [c for c in columns if c in read_schema(f).names])
              for f in files]
    return _to_pandas(_concat([_with_group(t, f) for t, f in zip(tables, files)]))


def _with_group(table: pa.Table, path: Path) -> pa.Table:
    """A merged students file keeps its group in its folder (``group_id=<g>``): put the column back."""
    if path.parent.name.startswith("group_id=") and path.parent.parent.name == "students" \
            and "group_id" not in table.column_names:
        g = pa.array(np.full(table.num_rows, _group_of(path), np.int64))
        return table.add_column(min(2, table.num_columns), "group_id", g)  # where the parts have it
    return table


def _concat(tables: list[pa.Table]) -> pa.Table | None:
    if not tables:
        return None
    schema = pa.unify_schemas([t.schema for t in tables], promote_options="permissive")
    tables = [_add_missing(t.cast(_fit(t.schema, schema)), schema) for t in tables]
    return pa.concat_tables(tables)


def _fit(schema: pa.Schema, unified: pa.Schema) -> pa.Schema:
    return pa.schema([unified.field(name) for name in schema.names])


def _add_missing(table: pa.Table, schema: pa.Schema) -> pa.Table:
    for field in schema:
        if field.name not in table.column_names:
            table = table.append_column(field, pa.nulls(len(table), field.type))
    return table.select(schema.names)


def _to_pandas(table: pa.Table | None) -> pd.DataFrame:
    if table is None:
        return pd.DataFrame()
    df = table.to_pandas()
    if "diverged_step" in df:
        df["diverged_step"] = df["diverged_step"].astype("Int64")
    return df


def _check_unique(run: Path, students: pd.DataFrame) -> None:
    """Refuse a students table in which a student appears twice, naming the file(s)."""
    if students.empty:
        return
    dup = students["student_id"].duplicated(keep=False)
    if dup.any():
        files = table_files(run, "students")
        if len(files) > 1:  # parts: name the ones holding the repeats
            ids = set(students.loc[dup, "student_id"].tolist())
            files = [f for f in files if ids & set(read_parquet(f, ["student_id"]).column(0).to_pylist())]
        n = int(students.loc[dup, "student_id"].nunique())
        raise StoreError(", ".join(map(str, files)), f"{n} student ids appear more than once (e.g. "
                         f"{int(students.loc[dup, 'student_id'].iloc[0])}): the run was written by two "
                         f"processes at once; `lrsweep run --resume {run}` rebuilds it with each student once")


def load(path: str | Path, table: str = "curves", runs: str | list = "latest", *, groups=None,
         columns: list[str] | None = None) -> pd.DataFrame:
    """Load a run, or the runs of a sweep, into pandas.

    Args:
      path: a run directory (``results/<name>/<run_id>``) or a directory above runs.
      table: ``"curves"`` (default): one row per student per logged step, joined with every
        student column; ``"students"``: one row per student; or a table a family's command writes
        (:func:`registered_tables`: ``"boundaries"``, ``"schedules"``...), read from the runs that
        have it, with a ``run_id`` column.
      runs: below a sweep directory, ``"latest"`` (default) loads the newest run of each sweep,
        ``"all"`` every run (tell them apart by ``run_id``), or a list of run ids / paths.
      groups: only these shape groups (``group_id``; a merged run reads only their partitions).
      columns: only these columns (``run_id``, ``student_id`` and, for curves, ``step`` always come);
        curve columns not asked for are never read.
    Returns:
      A DataFrame ready for ``groupby`` / ``pivot_table``.
    Raises:
      StoreError naming the file when a table is unreadable or holds a student twice, or a family's
      table is missing, unreadable or not the size its writer recorded (with the command that
      repairs it).
    """
    if table not in ("curves", "students"):
        files = registered_tables()
        if table not in files:
            raise ValueError(f"table: unknown '{table}'; allowed: {', '.join(['curves', 'students', *files])}")
        return _load_registered(path, table, files[table], runs, columns)
    keys = ["run_id", "student_id"] + (["step"] if table == "curves" else [])
    keep = None if columns is None else list(dict.fromkeys([*keys, *columns]))
    frames = []
    for run in select_runs(path, runs):
        kind = registry.run_kind(run)
        if kind is not None:  # a run of tables has no students: name the tables it has
            stems = ", ".join(Path(t).stem for t in kind.tables)
            raise StoreError(run, f"a {kind.name.replace('_', ' ')} run has no {table} table; its tables: {stems} "
                                  f"(lrsweep.load(run, table=...))")
        students = read_table(table_files(run, "students", groups))
        _check_unique(run, students)
        if groups is not None and not students.empty:
            students = students[students["group_id"].isin(list(groups))]
        if table == "students" or students.empty:
            frames.append(students if keep is None else students[[c for c in keep if c in students]])
            continue
        files = marked_parts(run, "curves") if (Path(run) / "parts").is_dir() else table_files(run, "curves", groups)
        curves = read_table(files, columns=keep)
        if groups is not None:
            curves = curves[curves["student_id"].isin(students["student_id"])]
        if keep is not None:  # join only the student columns asked for (not every one onto every row)
            curves = curves[[c for c in keep if c in curves]]
            students = students[[c for c in keep if c in students and (c not in curves or c in keys)]]
        joined = curves.merge(students, on=["run_id", "student_id"], how="left")
        frames.append(joined if keep is None else joined[[c for c in keep if c in joined]])
    frames = [f for f in frames if not f.empty]
    if not frames:
        return pd.DataFrame()
    return pd.concat(frames, ignore_index=True)


def registered_tables() -> dict[str, str]:
    """Table name -> file of the tables a family's command writes into a run: every
    :class:`lrsweep.registry.Stage`'s and :class:`lrsweep.registry.RunKind`'s ``tables``, named by
    their file stem (``boundaries.parquet`` -> ``boundaries``)."""
    owners = [*registry.STAGES.values(), *registry.RUN_KINDS.values()]
    return {Path(name).stem: name for owner in owners for name in owner.tables}


def _table_record(run: Path, name: str, meta: dict) -> tuple[bool, dict | None, int | None]:
    """(whether the run should have the table file ``name``, the record of the stage writing it if
    it is a stage's, the row count its writer recorded)."""
    for stage in registry.STAGES.values():
        if name in stage.tables and isinstance(meta.get(stage.name), dict):
            record = meta[stage.name]
            return True, record, (record.get("rows") or {}).get(name)
    kind = next((k for k in registry.RUN_KINDS.values() if name in k.tables and k.detect(run)), None)
    if kind is not None:
        return True, None, (meta.get("rows") or {}).get(name)
    return False, None, None


def _load_registered(path, table: str, name: str, runs, columns) -> pd.DataFrame:
    """A family's table ``name`` of every selected run that has it (see :func:`load`)."""
    frames, selected = [], select_runs(path, runs)
    for run in selected:
        meta = read_json(run / "meta.json")
        has, record, rows = _table_record(run, name, meta)
        if not has:
            continue
        file = run / name
        if record is not None and record.get("status", "complete") != "complete":
            raise StoreError(file, f"not written: the run's {table} are not complete "
                                   f"({record.get('status')}); finish it with: {repair_command(run)}")
        problem = file_problem(file, rows)
        if problem:
            reason = problem[len(f"{file}: "):] if problem.startswith(f"{file}: ") else problem
            raise StoreError(file, f"{reason}; repair with: {repair_command(run)}")
        df = read_table([file], columns)
        if "run_id" not in df:
            df.insert(0, "run_id", run.name)
        frames.append(df)
    if not frames and len(selected) == 1 and is_run(Path(path)):
        raise StoreError(Path(path) / name, f"the run has no {table} table (no command that writes it ran on it)")
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


# --------------------------------------------------------------------------------------
# Parts: committing, checking and merging chunks
# --------------------------------------------------------------------------------------

def _chunk_files(run: Path, prefix: str = "") -> dict[str, list[Path]]:
    """Part files by chunk stem (those whose stem starts with ``prefix``: one shard's)."""
    chunks: dict[str, list[Path]] = {}
    for f in sorted((Path(run) / "parts").glob(f"{prefix}*.parquet")):
        stem = f.name.split(".", 1)[0]
        chunks.setdefault(stem, []).append(f)
    return chunks


def scrub_parts(run: Path, prefix: str = "") -> list[str]:
    """Before resuming: delete the parts of every chunk that cannot be trusted and return a line per
    chunk removed. A chunk is kept only when its students part (the done marker) and every other
    part of it read whole, and its curves hold the same students. Parts of a chunk cut short by a
    crash (no students part) are removed too. The caller holds the run's write lock; a shard holds
    only its own and scrubs only its own chunks (stems starting with ``prefix``), never a chunk
    another shard is writing."""
    removed = []
    for stem, files in _chunk_files(run, prefix).items():
        names = {f.name.split(".")[1]: f for f in files}
        problem = None
        if "students" not in names:
            problem = "unfinished chunk (no students part)"
        else:
            try:
                tables = {name: read_parquet(f) for name, f in names.items()}
            except StoreError as e:
                problem = str(e).split(" (")[0] + " unreadable"
            else:
                ids = set(tables["students"].column("student_id").to_pylist())
                if "curves" in tables and set(tables["curves"].column("student_id").to_pylist()) != ids:
                    problem = "curves and students parts hold different students"
        if problem is not None:
            for f in files:
                f.unlink(missing_ok=True)
            if problem != "unfinished chunk (no students part)":
                removed.append(f"{stem}: {problem}")
    return removed


def has_merged(run: Path) -> bool:
    """Whether a run holds merged tables (either layout)."""
    return bool(table_files(run, "students") or table_files(run, "curves")) and not (Path(run) / "parts").is_dir()


def merged_problem(run: Path) -> str | None:
    """Why the merged students and curves of a run (no parts left) cannot be trusted, or None (footers
    only; the side tables the merge recorded are checked by :func:`verify_complete`)."""
    run = Path(run)
    for table in PARTITIONED:
        files = table_files(run, table)
        if not files:
            return f"{run / table}: missing"
        for path in files:
            try:
                pq.ParquetFile(path).metadata
            except (pa.ArrowException, OSError) as e:
                return str(_unreadable(path, e)).split(";")[0]
    return None


def discard_merged(run: Path, side=()) -> None:
    """Remove the merged tables of a run whose merged tables are damaged, so it is trained afresh:
    students, curves and the side tables ``side`` (those the merge recorded: ``meta["rows"]``)."""
    run = Path(run)
    for table in (*PARTITIONED, *side):
        (run / f"{table}.parquet").unlink(missing_ok=True)
        if table in PARTITIONED and (run / table).is_dir():
            shutil.rmtree(run / table)


def _place(src: Path, dst: Path) -> None:
    """``dst`` names the same bytes as ``src`` (a hard link; a copy where the filesystem has none)."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


BATCH_ROWS = 1 << 16  # rows per batch where a merge rewrites a file (bounded memory whatever the file's size)


def _copy_rows(src: Path, dst: Path, student_ids: np.ndarray | None, drop: tuple = ()) -> int:
    """Write to ``dst`` (atomically) the rows of ``src`` whose student is in ``student_ids`` (all if
    None), without the columns ``drop``, batch by batch; return the row count written."""
    try:
        source = pq.ParquetFile(src)
        schema = source.schema_arrow
        for name in drop:
            if name in schema.names:
                schema = schema.remove(schema.get_field_index(name))
        rows = 0

        def write(tmp):
            nonlocal rows
            with pq.ParquetWriter(tmp, schema) as writer:
                for batch in source.iter_batches(batch_size=BATCH_ROWS):
                    t = pa.Table.from_batches([batch]).select(schema.names)
                    if student_ids is not None:
                        t = t.filter(pa.array(np.isin(t.column("student_id").to_numpy(), student_ids)))
                    writer.write_table(t.cast(schema))
                    rows += t.num_rows
        _atomic(dst, write)
    except (pa.ArrowException, OSError) as e:
        if isinstance(e, OSError) and e.filename == str(dst):  # dst cannot be written: not src's fault
            raise
        raise _unreadable(src, e) from None
    return rows


SIDE_VALUES = b"lrsweep.values"  # schema metadata of a side table: its value columns (JSON list)


def side_table_schema(schema: pa.Schema, values) -> pa.Schema:
    """The schema of a *side table*: a table a driver writes beside a chunk's students and curves
    (``parts/<stem>.<name>.parquet``, e.g. the poly driver's coefficients), declaring which of its
    columns are values; the others are a row's key. :func:`merge_parts` merges the side tables it
    finds into ``RUN/<name>.parquet``, keeping of the rows equal in the key the last (a resumed chunk
    recomputed whole)."""
    return schema.with_metadata({**(schema.metadata or {}), SIDE_VALUES: json.dumps(list(values)).encode()})


def merge_parts(run: Path, expected_ids: np.ndarray | None = None, expected_curves: int | None = None) -> dict:
    """Fold the per-chunk parts into the run's datasets ``RUN/students/`` and ``RUN/curves/``
    (hive partitioned by group: ``group_id=<g>/<chunk>.parquet``; each side table a driver wrote,
    small, into ``RUN/<name>.parquet``: :func:`side_table_schema`), verify them, then remove the parts.

    Streaming: only student ids (one column) and Parquet footers are read; a chunk's curves are
    hard-linked into place, never rewritten (its students part, one row per student, is copied
    without group_id), except where two chunks hold the same student (two writers at once, or a
    chunk trained again): the first chunk (in stem order) keeps its rows, and only the later chunk's
    files are rewritten without them, :data:`BATCH_ROWS` rows at a time. Parts of several processes
    (``--shard``: distinct stems in one ``parts/``) merge alike. With ``expected_ids`` /
    ``expected_curves`` (the plan) the merged tables must hold exactly these students and this
    many curve rows, else :class:`StoreError` and the parts stay.

    Crash-safe, in this order: (1) the datasets are built in ``RUN/.merging/`` (links, so the parts
    are untouched); (2) each is renamed over ``RUN/<table>/``; (3) the side tables are written;
    (4) ``parts/`` is renamed away in one step (the commit) and deleted. Until (4) ``parts/`` exists
    and is the truth for every reader (:func:`table_files`), so a crash anywhere before it loses and
    doubles nothing, and the next merge (``lrsweep run --resume`` or ``lrsweep merge``) redoes it
    from the parts; after (4) the datasets are whole. Hard links rather than moves keep the parts
    whole until the commit, so no marker of half-moved chunks is needed. Returns the row count
    of each table.
    """
    run = Path(run)
    for trash in run.glob(".parts-merged-*"):  # parts of a merge that was cut short after it had finished
        shutil.rmtree(trash, ignore_errors=True)
    chunks = _chunk_files(run)
    stems = [stem for stem, files in chunks.items()
             if any(f.name.endswith(".students.parquet") for f in files)]  # finished chunks only
    all_ids, owner, groups = _part_students(run, stems)
    unique, first = np.unique(all_ids, return_index=True)  # the first chunk (in stem order) holding each student
    kept = np.zeros(len(all_ids), bool)
    kept[first] = True
    if expected_ids is not None:
        _check_planned_students(run, unique, expected_ids)
    staging = run / ".merging"
    shutil.rmtree(staging, ignore_errors=True)
    counts = _stage_partitioned(run, staging, stems, groups, all_ids, owner, kept)
    if expected_curves is not None and counts["curves"] != expected_curves:
        shutil.rmtree(staging, ignore_errors=True)
        raise StoreError(run / "parts", f"the parts hold {counts['curves']} curve rows, the plan {expected_curves}; "
                         f"`lrsweep run --resume {run}` retrains the chunks that are short")
    kept_stems = {stems[k] for k in np.unique(owner[kept])}
    for table in PARTITIONED:  # a dataset of an earlier, cut-short merge is replaced
        (staging / table).mkdir(parents=True, exist_ok=True)
        if (run / table).is_dir():
            shutil.rmtree(run / table)
        (run / f"{table}.parquet").unlink(missing_ok=True)
        os.replace(staging / table, run / table)
    shutil.rmtree(staging, ignore_errors=True)
    side: dict[str, list[Path]] = {}
    for f in sorted(f for stem in kept_stems for f in chunks[stem]):
        name = f.name.split(".")[1]
        if name not in PARTITIONED:
            side.setdefault(name, []).append(f)
    for name, parts in side.items():
        counts[name] = _merge_side_table(parts, run / f"{name}.parquet")
    # the parts go as one rename, so a crash leaves either all of them (the truth) or none
    trash = run / f".parts-merged-{uuid.uuid4().hex[:6]}"
    os.replace(run / "parts", trash)
    shutil.rmtree(trash, ignore_errors=True)
    return counts


def _part_students(run: Path, stems: list[str]) -> tuple[np.ndarray, np.ndarray, dict]:
    """(student ids of every chunk's students part, in stem order; the chunk (index in ``stems``) of
    each; the group of each stem), reading only the ids (and a group id) of each part."""
    ids, owner_of, groups = [], [], {}
    for k, stem in enumerate(stems):
        path = run / "parts" / f"{stem}.students.parquet"
        t = read_parquet(path, [c for c in ("student_id", "group_id") if c in read_schema(path).names])
        ids.append(t.column("student_id").to_numpy())
        owner_of.append(np.full(t.num_rows, k, np.int64))
        named = re.search(r"(?:^|-)g(\d+)-", stem)  # runner part names: [s<i>of<n>-]g<group>-<attempt>-c<chunk>
        groups[stem] = (int(t.column("group_id")[0].as_py()) if "group_id" in t.column_names and t.num_rows
                        else int(named.group(1)) if named else 0)
    all_ids = np.concatenate(ids) if ids else np.zeros(0, np.int64)
    owner = np.concatenate(owner_of) if owner_of else np.zeros(0, np.int64)
    return all_ids, owner, groups


def _check_planned_students(run: Path, unique: np.ndarray, expected_ids) -> None:
    """StoreError unless the parts hold exactly the planned students."""
    want = np.unique(np.asarray(expected_ids, np.int64))
    if not np.array_equal(unique, want):
        missing, extra = np.setdiff1d(want, unique), np.setdiff1d(unique, want)
        raise StoreError(run / "parts", f"the parts hold {len(unique)} students, the plan {len(want)} "
                         f"({len(missing)} missing, {len(extra)} not in the plan); "
                         f"`lrsweep run --resume {run}` trains the missing ones")


def _stage_partitioned(run: Path, staging: Path, stems, groups, all_ids, owner, kept) -> dict:
    """Step (1) of :func:`merge_parts`: every kept chunk's students and curves into
    ``staging/<table>/group_id=<g>/<stem>.parquet``; returns the row count of each table."""
    counts = {"students": 0, "curves": 0}
    for k, stem in enumerate(stems):
        keep = kept[owner == k]
        if not keep.any():
            continue
        group = f"group_id={groups[stem]}"
        for table in PARTITIONED:
            src = run / "parts" / f"{stem}.{table}.parquet"
            dst = staging / table / group / f"{stem}.parquet"
            if not src.exists():
                continue
            if keep.all() and table == "curves":
                _place(src, dst)
                counts[table] += pq.ParquetFile(src).metadata.num_rows
            else:  # students (one row each: small) lose group_id, now the folder; repeats are dropped
                counts[table] += _copy_rows(src, dst, None if keep.all() else all_ids[owner == k][keep],
                                            drop=("group_id",))
    return counts


def _merge_side_table(parts: list[Path], path: Path) -> int:
    """The side table's parts (:func:`side_table_schema`) as one file ``path``: of the rows equal in
    the key the last kept, sorted by the key; integer columns nullable (a column some parts lack is
    null there). Returns its row count."""
    schema = pa.unify_schemas([read_schema(f) for f in parts], promote_options="permissive")
    values = json.loads((schema.metadata or {}).get(SIDE_VALUES, b"[]"))
    df = read_table(parts)
    key = [c for c in df.columns if c not in values]
    df = df.drop_duplicates(subset=key, keep="last").sort_values(key, kind="stable")
    for f in schema:
        if pa.types.is_integer(f.type):
            df[f.name] = df[f.name].astype("Int64")
    write_table(df, path, schema)
    return len(df)


def verify_complete(run: Path, meta: dict) -> str | None:
    """Why a run whose meta says complete is not (a table missing, unreadable, or not the size the
    merge recorded, or a student twice), or None. Reads only footers and the student ids."""
    run = Path(run)
    if (run / "parts").is_dir():
        return "parts not merged"
    problem = merged_problem(run)
    if problem:
        return problem
    rows = meta.get("rows") or {"students": int(meta.get("n_students", 0))}
    for table, n in rows.items():
        files = table_files(run, table)
        try:
            have = sum(pq.ParquetFile(f).metadata.num_rows for f in files)
        except (pa.ArrowException, OSError) as e:
            return str(e)
        if have != n:
            where = run / table if (run / table).is_dir() else run / f"{table}.parquet"
            return f"{where}: {have} rows, expected {n}"
    ids = done_student_ids(run)
    if len(np.unique(ids)) != len(ids):
        return f"{run / 'students'}: {len(ids) - len(np.unique(ids))} duplicate student ids"
    return None


def done_student_ids(run: Path) -> np.ndarray:
    """Student ids already written in a run (merged or in parts), for resuming; raises
    :class:`StoreError` on an unreadable file (:func:`scrub_parts` first)."""
    files = table_files(run, "students")
    if not files:
        return np.zeros(0, np.int64)
    return np.concatenate([read_parquet(f, ["student_id"]).column(0).to_numpy() for f in files])


def count_done(run: Path) -> tuple[int, list[Path]]:
    """(distinct students with readable results, the unreadable files of the run) for ``ls``."""
    ids, bad = [], []
    for f in table_files(run, "students"):
        try:
            ids.append(pq.read_table(f, columns=["student_id"]).column(0).to_numpy())
        except (pa.ArrowException, OSError):
            bad.append(f)
    for f in marked_parts(run, "curves"):
        try:
            pq.ParquetFile(f).metadata
        except (pa.ArrowException, OSError):
            bad.append(f)
    return (len(np.unique(np.concatenate(ids))) if ids else 0), bad


def run_size(run: Path) -> int:
    return sum(f.stat().st_size for f in Path(run).rglob("*") if f.is_file())
