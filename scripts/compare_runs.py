"""Compare the tables of two result roots (before/after a refactor) on the columns they share."""
import sys
from pathlib import Path

import numpy as np
import pandas as pd

SKIP = {"run_id", "wall_time_s", "search_s", "git_revision"}


def runs(root: Path):
    return sorted(p.parent for p in root.rglob("meta.json") if "verify" not in p.parts)


def table(run: Path, name: str):
    p = run / name
    if p.is_dir():
        return pd.read_parquet(p)
    if p.with_suffix(".parquet").exists():
        return pd.read_parquet(p.with_suffix(".parquet"))
    return None


def keyed(df):
    keys = [k for k in ("student_id", "step", "T", "kind", "boundary", "seed", "theory", "check", "configuration", "lr_line", "lr_1", "lr_2") if k in df]
    cols = [c for c in df.columns if c not in SKIP]
    return df[cols].sort_values(keys, kind="stable").reset_index(drop=True) if keys else df[cols]


def same(a: pd.Series, b: pd.Series) -> bool:
    if a.dtype.kind in "fc" or b.dtype.kind in "fc":
        x, y = a.to_numpy(float), b.to_numpy(float)
        return bool(np.array_equal(x, y, equal_nan=True))
    na, nb = a.isna().to_numpy(), b.isna().to_numpy()
    if not (na == nb).all():
        return False
    return bool((a[~na].astype(str).to_numpy() == b[~nb].astype(str).to_numpy()).all())


before, after = Path(sys.argv[1]), Path(sys.argv[2])
ok = True
for rb in runs(before):
    rel = rb.relative_to(before)
    cands = [r for r in runs(after) if r.relative_to(after).parts[0] == rel.parts[0]]
    if not cands:
        print("MISSING", rel); ok = False; continue
    ra = cands[-1] if len(cands) > 1 and rel.parts[-1] not in [c.name for c in cands] else next((c for c in cands if c.name == rb.name), cands[-1])
    for name in ("students", "curves", "boundaries", "schedules", "schedule_summary", "comparison", "lines", "checks"):
        tb, ta = table(rb, name), table(ra, name)
        if tb is None and ta is None:
            continue
        if tb is None or ta is None:
            print(f"{rel}/{name}: only in {'after' if tb is None else 'before'}"); ok = False; continue
        tb, ta = keyed(tb), keyed(ta)
        shared = [c for c in tb.columns if c in ta.columns]
        only_b = [c for c in tb.columns if c not in ta.columns]
        only_a = [c for c in ta.columns if c not in tb.columns]
        if len(tb) != len(ta):
            print(f"{rel}/{name}: rows {len(tb)} vs {len(ta)}"); ok = False; continue
        diff = [c for c in shared if not same(tb[c], ta[c])]
        print(f"{rel}/{name}: {len(tb)} rows, {len(shared)} shared columns, differ: {diff or 'none'}; "
              f"only before: {only_b}; only after: {only_a}")
        ok &= not diff
print("ALL EQUAL" if ok else "DIFFERENCES")
