"""Compare two results roots run by two versions of lrsweep (e.g. before and after a refactor) table by
table, on the columns they share, bit for bit (NaN equals NaN; rows matched by student, step, horizon,
kind, boundary, theory or check).

    python scripts/compare_runs.py BEFORE_ROOT AFTER_ROOT

Each run of BEFORE is paired with the run of AFTER under the same sweep name (and run id where both
used --run-id). Prints, per table, the rows, the shared columns, those that differ, and the columns
only one side has; exits 1 if any shared column differs or a table is missing. A table whose float columns differ also
prints the largest relative difference among them.
"""
import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

SKIP = {"run_id", "wall_time_s", "search_s", "git_revision"}  # differ between any two runs
TABLES = ("students", "curves", "boundaries", "schedules", "schedule_summary", "comparison", "lines", "checks")
KEYS = ("student_id", "step", "T", "schedule", "kind", "boundary", "seed", "theory", "check", "configuration", "lr_line",
        "lr_1", "lr_2")


def runs(root: Path) -> list[Path]:
    return sorted(p.parent for p in root.rglob("meta.json") if "verify" not in p.parts)


def table(run: Path, name: str) -> pd.DataFrame | None:
    path = run / name
    if path.is_dir():
        return pd.read_parquet(path)
    return pd.read_parquet(path.with_suffix(".parquet")) if path.with_suffix(".parquet").exists() else None


def keyed(df: pd.DataFrame) -> pd.DataFrame:
    keys = [k for k in KEYS if k in df]
    df = df[[c for c in df.columns if c not in SKIP]]
    return df.sort_values(keys, kind="stable").reset_index(drop=True) if keys else df


def same(a: pd.Series, b: pd.Series) -> bool:
    if a.dtype.kind in "fc" or b.dtype.kind in "fc":
        return bool(np.array_equal(a.to_numpy(float), b.to_numpy(float), equal_nan=True))
    na, nb = a.isna().to_numpy(), b.isna().to_numpy()
    return bool((na == nb).all() and (a[~na].astype(str).to_numpy() == b[~nb].astype(str).to_numpy()).all())


def max_relative_difference(a: pd.Series, b: pd.Series) -> str:
    """The largest |a - b| / |a| of two float columns where both are finite, and whether the same entries
    are finite: how far a column that is not bit-equal moved."""
    if a.dtype.kind not in "fc" or b.dtype.kind not in "fc":
        return "not float"
    x, y = a.to_numpy(float), b.to_numpy(float)
    both = np.isfinite(x) & np.isfinite(y)
    rel = np.abs(x[both] - y[both]) / np.maximum(np.abs(x[both]), np.finfo(float).tiny) if both.any() else [0.0]
    return f"{np.max(rel):.1e}" + ("" if (np.isfinite(x) == np.isfinite(y)).all() else ", finiteness differs")


def partner(run: Path, before: Path, after: Path) -> Path | None:
    rel = run.relative_to(before)
    cands = [r for r in runs(after) if r.relative_to(after).parts[0] == rel.parts[0]]
    return next((c for c in cands if c.name == run.name), cands[-1] if cands else None)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("before", type=Path)
    parser.add_argument("after", type=Path)
    args = parser.parse_args(argv)
    ok = True
    for run in runs(args.before):
        rel, other = run.relative_to(args.before), partner(run, args.before, args.after)
        if other is None:
            print(f"{rel}: no run of that name in {args.after}")
            ok = False
            continue
        for name in TABLES:
            tb, ta = table(run, name), table(other, name)
            if tb is None and ta is None:
                continue
            if tb is None or ta is None:
                print(f"{rel}/{name}: only {'after' if tb is None else 'before'}")
                ok = False
                continue
            tb, ta = keyed(tb), keyed(ta)
            if len(tb) != len(ta):
                print(f"{rel}/{name}: {len(tb)} rows before, {len(ta)} after")
                ok = False
                continue
            shared = [c for c in tb.columns if c in ta.columns]
            differ = [c for c in shared if not same(tb[c], ta[c])]
            ok &= not differ
            print(f"{rel}/{name}: {len(tb)} rows, {len(shared)} shared columns equal"
                  + (f" except {differ}" if differ else "")
                  + (f" (max relative difference: "
                     f"{max((max_relative_difference(tb[c], ta[c]) for c in differ), key=lambda r: (r[0] != 'n', r))})"
                     if differ else "")
                  + f"; only before: {[c for c in tb.columns if c not in ta]}; only after: "
                    f"{[c for c in ta.columns if c not in tb]}")
    print("ALL EQUAL on the shared columns" if ok else "DIFFERENCES")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
