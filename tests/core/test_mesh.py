"""The 2-D device mesh (instances x learning-rate points) and the columnar chunk plan: any grid fills
every device, and a student's numbers do not depend on the device count or the chunk size."""
import json
import math
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import reference
from conftest import device_env, numpy_instance
from lrsweep.core import chunking
from lrsweep.core import config
from lrsweep.core import runner
from lrsweep.core.spec import GroupSpec


@pytest.mark.parametrize("n_dev,n_inst,n_points,want", [
    (8, 1, 4000, (1, 8)),    # one seed, many rates: every device along the points
    (8, 64, 3, (8, 1)),      # many seeds, few rates: along the instances
    (8, 4, 6, (4, 2)),       # slots: (8,1) 8*6=48, (4,2) 4*6=24, (2,4) 4*8=32, (1,8) 4*8=32
    (8, 2, 2, (2, 4)),       # (8,1) 16, (4,2) 8, (2,4) 8 (tie: more along instances? no: (4,2) pads instances 2->4 = 8 too)
    (1, 5, 7, (1, 1)),
])
def test_mesh_shape_pads_least(n_dev, n_inst, n_points, want):
    a, b = chunking.mesh_shape(n_dev, n_inst, n_points)
    slots = lambda a, b: math.ceil(n_inst / a) * a * math.ceil(n_points / b) * b
    assert a * b == n_dev
    best = min(slots(x, n_dev // x) for x in range(1, n_dev + 1) if n_dev % x == 0)
    assert slots(a, b) == best
    if want != (2, 4):  # the tie case: checked by the slot count only
        assert (a, b) == want


def naive_plan(students, spec, u, p, mesh=(1, 1)):
    """The plan by hand: instances in order of first appearance (rows in order within each), cut into
    blocks of u instances x p points; a block with a real student is a chunk (ids -1 = pad). On an
    (a, b) mesh the block's rows and columns are dealt to the devices like cards: entry i of an axis
    of n split over k devices goes to device i mod k, slot i div k (position (i mod k) n/k + i div k)."""
    keys = [tuple(r[c] for c in spec.instance_columns) for r in students.to_dict("records")]
    order = list(dict.fromkeys(keys))
    members = [[i for i, k in enumerate(keys) if k == key] for key in order]
    ids = students["student_id"].to_numpy()
    lr = students[spec.traced_columns[0]].to_numpy(float)
    chunks = []
    for ib in range(0, len(order), u):
        for pb in range(0, max(map(len, members)), p):
            block = np.full((u, p), -1)
            values = np.zeros((u, p))
            for r in range(u):
                if ib + r < len(order):
                    sel = members[ib + r][pb:pb + p]
                    block[r, :len(sel)] = ids[sel]
                    values[r, :len(sel)] = lr[sel]
            if (block >= 0).any():
                dealt = lambda n, k: [(i % k) * (n // k) + i // k for i in range(n)]
                rows, cols = dealt(u, mesh[0]), dealt(p, mesh[1])
                b2, v2 = np.full((u, p), -1), np.zeros((u, p))
                for i in range(u):
                    for j in range(p):
                        b2[rows[i], cols[j]], v2[rows[i], cols[j]] = block[i, j], values[i, j]
                chunks.append((b2, v2))
    return chunks


@pytest.mark.parametrize("chunk_size,mesh", [(None, None), (4, None), (6, (2, 1)), (3, (4, 1)), (5, (1, 4)),
                                             (8, (2, 2))])
def test_columnar_plan_matches_a_hand_plan_on_an_irregular_grid(chunk_size, mesh):
    cfg = config.load_config({"name": "x", "seeds": [0, 1, 2, 3, 4], "task": {"input_dim": 4, "n_train": 4},
                              "model": {"n_layers": 2, "width": 3}, "train": {"steps": 2},
                              "grid": {"lr": [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7]}})
    students = config.expand_grid(cfg)
    students = students.iloc[np.random.default_rng(0).permutation(len(students))[:27]]  # ragged, shuffled
    spec = GroupSpec.from_row(students.iloc[0].to_dict())
    (u, p), chunks = chunking.plan_chunks(spec, students, max_memory=1 << 30, dtype_bytes=8,
                                          chunk_size=chunk_size, mesh=mesh)
    a, b = mesh or (1, 1)
    assert u % a == 0 and p % b == 0
    want = naive_plan(students, spec, u, p, (a, b))
    assert len(chunks) == len(want)
    lr_col = spec.traced_columns[0]
    for chunk, (ids, values) in zip(chunks, want):
        np.testing.assert_array_equal(chunk.student_ids, ids)
        real = ids >= 0
        np.testing.assert_array_equal(chunk.hparams[lr_col][real], values[real])
        first = {int(s): i for i, s in enumerate(students["student_id"])}
        for r in range(u):
            real = ids[r][ids[r] >= 0]
            if len(real):  # the row's instance values are its students' seed
                assert chunk.instance_hp["seed"][r] == students["seed"].iloc[first[int(real[0])]]
    got = np.sort(np.concatenate([c.student_ids[c.student_ids >= 0] for c in chunks]))
    np.testing.assert_array_equal(got, np.sort(students["student_id"].to_numpy()))  # each student once


@pytest.mark.parametrize("mesh", [(1, 1), (2, 2), (4, 1)])
def test_pads_train_a_real_point_of_their_instance(mesh):
    """A pad slot's traced values are those of a real student in its row (its instance), or of the
    chunk where the row is all pads: never 0, which is outside e.g. train.batch_start's range."""
    cfg = config.load_config({"name": "x", "seeds": [0, 1, 2], "task": {"input_dim": 4, "n_train": 4},
                              "model": {"n_layers": 3, "width": 3}, "train": {"steps": 2},
                              "grid": {"lr_1": [0.1, 0.2, 0.3, 0.4, 0.5], "lr_2": [1.5, 2.5]}})
    students = config.expand_grid(cfg).iloc[:-3]  # seed 2 has 7 points of 10
    spec = GroupSpec.from_row(students.iloc[0].to_dict())
    (u, p), chunks = chunking.plan_chunks(spec, students, max_memory=1 << 30, dtype_bytes=8, chunk_size=8,
                                          mesh=mesh)
    n_pads = 0
    for chunk in chunks:
        ids = chunk.student_ids
        n_pads += int((ids < 0).sum())
        for col in spec.traced_columns:
            values = chunk.hparams[col]
            for r in range(u):
                allowed = values[r][ids[r] >= 0] if (ids[r] >= 0).any() else values[ids >= 0]
                for v in values[r][ids[r] < 0]:  # NaN: a null field (e.g. batch_end), equal to itself
                    assert ((allowed == v) | (np.isnan(allowed) & np.isnan(v))).any(), (col, r, values, ids)
    assert n_pads > 0  # the grid must have pads for this to test anything


GRIDS = {  # name -> (seeds, lr_1_fraction points, lr_total values)
    "one_seed_many_rates": ([0], 40, [1.0]),
    "many_seeds_few_rates": (list(range(16)), 2, [1.0]),
    "mixed": ([0, 1, 2], 7, [1.0, 3.0]),
}

TESTS_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # conftest, reference
# The 8-device run: a process started with 8 simulated CPU devices (XLA reads the count at start-up).
SCRIPT = textwrap.dedent("""
    import json, sys
    import jax
    jax.config.update("jax_enable_x64", True)
    sys.path[:0] = [{tests!r}, {root!r}]
    from test_mesh import mesh_results
    print(json.dumps(mesh_results()))
""")


def mesh_results() -> dict:
    """Every GRIDS grid trained with and without a chunk cap on this process's devices (x64), each
    grid's chunk plan per device, and a float32 run: JSON-ready, for the test to compare across
    device counts."""
    import jax
    from conftest import train_config
    from lrsweep.core import engine
    n_dev = jax.local_device_count()
    listed = lambda res: {str(k): {c: np.asarray(v).tolist() for c, v in r.items()} for k, r in res.items()}
    out = {"n_dev": n_dev, "results": {}, "devices": {}}
    for name, (seeds, n_fracs, totals) in GRIDS.items():
        for chunk_size in (None, 16):
            cfg = grid_cfg(seeds, n_fracs, totals)
            _, res = train_config(cfg, chunk_size=chunk_size)
            out["results"][f"{name}/{chunk_size}"] = listed(res)
        students, specs = runner.prepare(config.load_config(cfg))
        (spec,) = specs.values()
        (u, p), chunks = chunking.plan_chunks(spec, students, max_memory=engine.default_max_memory(spec),
                                              dtype_bytes=8, n_devices=n_dev, mesh="auto")
        sharding = engine.chunk_sharding(chunks.mesh)
        per_device, slots = [], 0
        for chunk in chunks:
            slots += chunk.student_ids.size
            if sharding is None:
                per_device.append([int((chunk.student_ids >= 0).sum())])
                continue
            ids = jax.device_put(chunk.student_ids, sharding.students)
            per_device.append([int((np.asarray(s.data) >= 0).sum()) for s in ids.addressable_shards])
        out["devices"][name] = {"mesh": list(chunks.mesh), "real_per_device": per_device,
                                "fill": len(students) / slots}
    with jax.enable_x64(False):  # float32: 16 seeds x 3 rates, (1, 3) students per device
        _, res = train_config(grid_cfg(list(range(16)), 3, [1.0], formulation="autodiff"),
                              chunk_size=F32_CHUNK[n_dev])
        out["float32"] = listed(res)
    return out


F32_CHUNK = {1: 3, 8: 24}  # one device: (1, 3) chunks; 8 devices on an (8, 1) mesh: (8, 3) chunks


def grid_cfg(seeds, n_fracs, totals, formulation="auto"):
    return {"name": "mesh", "seeds": seeds, "task": {"input_dim": 6, "n_train": 6},
            "model": {"parameterization": "paper_deep", "n_layers": 3, "width": 4},
            "train": {"steps": 5, "formulation": formulation}, "grid": {"lr_total": totals, "lr_1_fraction": {"linspace": [0.0, 1.0, n_fracs]}}}


def test_eight_devices_equal_one_and_every_device_gets_real_students(x64):
    """8 simulated CPU devices on the 2-D mesh give the 1-device numbers (x64, 1e-12: every curve,
    reduction and divergence flag), for one seed of many rates, many seeds of few rates and a mix,
    with and without a chunk cap, and the numpy float64 reference's curves for one seed of many
    rates; no device of any chunk holds only pads (one seed of 40 rates fills >= 90% of the slots).
    float32: 8 devices holding (1, 3) students each are bit-identical to one device with (1, 3)
    chunks (the numbers depend on the chunk shape per device only; see lrsweep.core.engine)."""
    env = device_env(8)
    proc = subprocess.run([sys.executable, "-c", SCRIPT.format(tests=os.path.dirname(__file__), root=TESTS_ROOT)],
                          capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    # one device: this process (pytest's, one CPU device), through JSON like the 8-device run's
    out = {1: json.loads(json.dumps(mesh_results())), 8: json.loads(proc.stdout.strip().splitlines()[-1])}
    assert out[1]["n_dev"] == 1 and out[8]["n_dev"] == 8
    for key, results in out[1]["results"].items():
        assert results.keys() == out[8]["results"][key].keys()
        unchunked = out[1]["results"][key.split("/")[0] + "/None"]
        for sid, res in results.items():
            assert set(res) >= {"train_loss", "test_loss", "diverged", "diverged_step"}
            for column, v in res.items():
                np.testing.assert_allclose(out[8]["results"][key][sid][column], v, rtol=1e-12,
                                           err_msg=f"{key} student {sid} {column}")
                np.testing.assert_allclose(unchunked[sid][column], v, rtol=1e-12)
    assert out[1]["float32"].keys() == out[8]["float32"].keys()
    for sid, res in out[1]["float32"].items():
        for column, v in res.items():
            np.testing.assert_array_equal(out[8]["float32"][sid][column], v, err_msg=f"float32 {sid} {column}")
    # the independent reference: numpy float64, one student at a time
    seeds, n_fracs, totals = GRIDS["one_seed_many_rates"]
    students, _ = runner.prepare(config.load_config(grid_cfg(seeds, n_fracs, totals)))
    got = out[8]["results"]["one_seed_many_rates/None"]
    assert len(got) == len(students) == 40
    for sid in students["student_id"]:
        spec, row, params0, inst = numpy_instance(students, int(sid))
        ref = reference.reference_train(params0, inst["x"], inst["y"], steps=spec.steps,
                                        lrs=[row[f"lr_{i}"] for i in range(1, len(params0) + 1)],
                                        parameterization="paper_deep", activation="linear", readout=inst["readout"],
                                        beta=inst["beta"])
        for column in ("train_loss", "test_loss"):
            np.testing.assert_allclose(got[str(sid)][column], ref[column], rtol=1e-10, err_msg=f"{sid} {column}")
    devices = out[8]["devices"]
    assert devices["one_seed_many_rates"]["mesh"] == [1, 8]
    assert devices["many_seeds_few_rates"]["mesh"] == [8, 1]
    assert devices["one_seed_many_rates"]["fill"] >= 0.9
    for name, d in devices.items():
        for chunk in d["real_per_device"]:
            assert len(chunk) == 8 and min(chunk) > 0, (name, d)
