"""Storage: atomic Parquet/JSON/YAML writes and loading runs into pandas.

Layout of a run (``results/<name>/<run_id>/``)::

    config.yaml        the resolved config
    meta.json          versions, device, status (running | interrupted | complete), wall time, students/s
    students.parquet   one row per student (hyperparameters, final metrics, divergence)
    curves.parquet     one row per student per logged step
    poly.parquet       loss-polynomial coefficients of the groups run in poly mode (lrsweep.poly)
    parts/             while running: one students/curves file pair per chunk (crash-safe; plus a
                       poly file for poly chunks); merged into the tables above at completion

Every file is written to a temporary name in the same directory and renamed, so a killed run
never leaves a truncated file. Readers unify the schemas of all files, so columns added by a
later version or another family are kept (missing ones become null).
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import yaml

# Columns with a fixed type whatever the data (the rest are inferred, and unified on read): a table's
# schema comes from its columns, so a metric a family adds is stored as it is.
COLUMN_TYPES = {"run_id": pa.string(), "mode": pa.string(), "student_id": pa.int64(), "group_id": pa.int64(),
                "step": pa.int64(), "seed": pa.int64(), "n_layers": pa.int64(), "width": pa.int64(),
                "input_dim": pa.int64(), "n_train": pa.int64(), "steps": pa.int64(), "init": pa.string(),
                "activation": pa.string(), "lr_total": pa.float64(), "train_loss": pa.float64(),
                "test_loss": pa.float64(), "final_train_loss": pa.float64(), "final_test_loss": pa.float64(),
                "diverged": pa.bool_(), "diverged_step": pa.int64(), "target_std": pa.float64(),
                "noise_std": pa.float64(), "log_steps": pa.string()}


def _atomic(path: Path, write) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
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


def _table_files(run: Path, table: str) -> list[Path]:
    merged = run / f"{table}.parquet"
    if merged.exists():
        return [merged]
    return sorted((run / "parts").glob(f"*.{table}.parquet"))


def marked_parts(run: Path, table: str) -> list[Path]:
    """Files of ``table``: the merged table, or the parts whose chunk finished (its students part exists).

    A part written before the crash of its chunk (no students part, the done marker) is left out,
    so a resumed chunk is never counted twice.
    """
    run = Path(run)
    files = _table_files(run, table)
    if table == "students" or (run / f"{table}.parquet").exists():
        return files
    return [f for f in files if f.with_name(f.name[: -len(f".{table}.parquet")] + ".students.parquet").exists()]


def read_table(files: list[Path]) -> pd.DataFrame:
    """Read Parquet files with one unified schema (columns missing in some files become null)."""
    files = [str(f) for f in files]
    if not files:
        return pd.DataFrame()
    schema = pa.unify_schemas([pq.read_schema(f) for f in files], promote_options="permissive")
    tables = [pq.read_table(f).cast(_fit(pq.read_schema(f), schema)) for f in files]
    tables = [_add_missing(t, schema) for t in tables]
    return _to_pandas(pa.concat_tables(tables))


def _fit(schema: pa.Schema, unified: pa.Schema) -> pa.Schema:
    return pa.schema([unified.field(name) for name in schema.names])


def _add_missing(table: pa.Table, schema: pa.Schema) -> pa.Table:
    for field in schema:
        if field.name not in table.column_names:
            table = table.append_column(field, pa.nulls(len(table), field.type))
    return table.select(schema.names)


def _to_pandas(table: pa.Table) -> pd.DataFrame:
    df = table.to_pandas()
    if "diverged_step" in df:
        df["diverged_step"] = df["diverged_step"].astype("Int64")
    return df


def load(path: str | Path, table: str = "curves") -> pd.DataFrame:
    """Load one run or every run of a sweep into pandas.

    Args:
      path: a run directory (``results/<name>/<run_id>``) or a directory above runs.
      table: ``"curves"`` (default): one row per student per logged step, joined with every
        student column; ``"students"``: one row per student.
    Returns:
      A DataFrame ready for ``groupby`` / ``pivot_table``.
    """
    if table not in ("curves", "students"):
        raise ValueError(f"table: unknown '{table}'; allowed: curves, students")
    frames = []
    for run in find_runs(path):
        students = read_table(_table_files(run, "students"))
        if table == "students" or students.empty:
            frames.append(students)
            continue
        curves = read_table(marked_parts(run, "curves"))
        frames.append(curves.merge(students, on=["run_id", "student_id"], how="left"))
    frames = [f for f in frames if not f.empty]
    if not frames:
        return pd.DataFrame()
    return pd.concat(frames, ignore_index=True)


def merge_parts(run: Path) -> None:
    """Fold the per-chunk parts into students.parquet / curves.parquet (and poly.parquet, the
    coefficients of poly-mode groups, where there are any), then remove them."""
    for table in ("students", "curves"):
        parts = marked_parts(run, table)  # a curves part whose chunk crashed before its students part: dropped
        df = read_table(parts)
        if table == "students" and not df.empty:
            df = df.sort_values("student_id", kind="stable")
        elif not df.empty:
            df = df.sort_values(["student_id", "step"], kind="stable")
        write_table(df, run / f"{table}.parquet")
    poly_parts = marked_parts(run, "poly")
    if poly_parts:
        schema = pa.unify_schemas([pq.read_schema(f) for f in poly_parts], promote_options="permissive")
        df = read_table(poly_parts)
        # a resumed instance is recomputed whole: keep one copy of each (instance, step, monomial)
        key = [c for c in df.columns if c not in ("run_id", "lr_scale", "train_coef", "test_coef")]
        df = df.drop_duplicates(subset=key, keep="last").sort_values(key, kind="stable")
        for f in schema:
            if pa.types.is_integer(f.type):  # e_k of groups with fewer layers are null
                df[f.name] = df[f.name].astype("Int64")
        write_table(df, run / "poly.parquet", schema)
    for f in (run / "parts").glob("*.parquet"):
        f.unlink()
    (run / "parts").rmdir()


def done_student_ids(run: Path) -> np.ndarray:
    """Student ids already written in a run (merged or in parts), for resuming."""
    files = _table_files(run, "students")
    if not files:
        return np.zeros(0, np.int64)
    return np.concatenate([pq.read_table(f, columns=["student_id"]).column(0).to_numpy() for f in files])


def run_size(run: Path) -> int:
    return sum(f.stat().st_size for f in Path(run).rglob("*") if f.is_file())
