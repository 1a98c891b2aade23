"""Phase counts of catapult runs per width: how many students are lazy, catapult, divergent, over which
range of eta lambda_0, and eta lambda_final over the catapults (the README's Theorem 2 table).

    python scripts/catapult_phase_table.py results/theorem2_exponential_cpu/<run_id> results/theorem2_logistic_cpu/<run_id>
"""
from __future__ import annotations

import argparse

import lrsweep

PHASES = ("lazy", "catapult", "oscillating", "divergent")


def rows(run: str):
    students = lrsweep.load(run, table="students")
    curves = lrsweep.load(run)
    ntk0 = curves[curves["step"] == 0].set_index("student_id")["ntk_eig"]
    students["rate_ntk0"] = students["lr_1"] * students["student_id"].map(ntk0)
    for (loss, width), g in students.groupby(["loss", "width"]):
        cells = []
        for phase in PHASES:
            p = g[g["phase"] == phase]
            cells.append(f"{len(p)} ({p.rate_ntk0.min():.3g}-{p.rate_ntk0.max():.3g})" if len(p) else "0")
        cat = g[g["phase"] == "catapult"]
        final = cat["lr_1"] * cat["final_ntk_eig"]
        bound = f"{final.min():.3g}-{final.max():.3g}" if len(cat) else "-"
        yield [loss, str(width), *cells, bound]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+")
    args = parser.parse_args(argv)
    head = ["loss", "m", *(f"{p}: n (eta lambda_0)" for p in PHASES), "eta lambda_final, catapults"]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for run in args.runs:
        for row in rows(run):
            print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
