"""One sweep over several jobs or processes: the shard partition, and JAX's own multi-host runtime.

A sweep is split into ``n`` shards by :func:`shard_mask`, a rule of the plan alone (never of
devices, memory or chunking), so independent jobs (``lrsweep run --shard i/n``: a Slurm array,
machines sharing a filesystem and no coordinator) agree on it without talking to each other.

Students are independent, so a multi-host sweep needs no array that spans hosts: under
``jax.distributed`` process i of n trains shard i of n on its own devices (``jax.local_devices()``:
the engine's mesh never leaves the process) and writes its own parts into the one run directory on
a shared filesystem. JAX's coordination service (started by ``jax.distributed.initialize``)
provides the rest: process 0 makes the run id and publishes it in the service's key-value store,
and after training every process waits at a barrier, after which process 0 merges
(:func:`lrsweep.core.runner.merge`). Neither needs a collective, so this works on the CPU as on GPU and
TPU.

``initialize(None, None, None)`` lets JAX detect the cluster (TPU pods, Slurm, and the other
environments ``jax.distributed.initialize`` knows); otherwise give the coordinator address, the
number of processes and this process's id, as ``lrsweep run --coordinator HOST:PORT
--num-processes N --process-id I`` does.
"""

from __future__ import annotations

import numpy as np

from lrsweep.core.errors import ConfigError

RUN_ID_KEY = "lrsweep/run_id"
BARRIER_TIMEOUT_MS = 7 * 24 * 3600 * 1000  # a barrier waits for the slowest shard: up to a week


def shard_index(students, specs: dict, count: int) -> np.ndarray:
    """The shard (0 .. ``count`` - 1) of every student of a sweep split into ``count`` shards
    (``lrsweep run --shard i/n``, or process i of n).

    Within each group the students, in (instance, point) order (instances in order of first
    appearance in the plan, an instance's points in plan order), are cut into ``count`` contiguous
    ranges of near-equal size: shard i takes places [k i / n, k (i + 1) / n) (rounded down) of the
    group's k, so each shard gets floor(k / n) or ceil(k / n) students of every group, and whole
    runs of an instance's points (few instances to build). The rule depends on the plan alone, not
    on devices, memory or chunking, so independent jobs agree without talking to each other.

    Args:
      students: the plan (:func:`lrsweep.core.runner.prepare`), with ``group_id``.
      specs: {group_id: GroupSpec}: which columns make an instance.
    Returns:
      (len(students),) int64.
    """
    from lrsweep.core import config as config_lib
    from lrsweep.core.chunking import instance_index
    shard = np.zeros(len(students), np.int64)
    gids = students["group_id"].to_numpy()
    for gid, spec in specs.items():
        in_group = gids == gid
        rows = np.flatnonzero(in_group)
        inst, _, _ = instance_index(config_lib.select_rows(students, in_group), spec.instance_columns)
        ordered = rows[np.argsort(inst, kind="stable")]
        place = np.arange(len(rows), dtype=np.int64)
        shard[ordered] = ((place + 1) * count - 1) // len(rows)  # the last i with floor(k i / n) <= place
    return shard


def shard_mask(students, specs: dict, index: int, count: int) -> np.ndarray:
    """(len(students),) bool: the students of shard ``index`` of ``count`` (:func:`shard_index`)."""
    return shard_index(students, specs, count) == index


def check_options(coordinator: str | None, num_processes: int | None, process_id: int | None,
                  auto: bool = False) -> None:
    """ConfigError, before ``jax.distributed`` is touched, unless the options name one job: ``auto``
    (``--distributed auto``: JAX detects the cluster) alone, or all three of ``coordinator`` (HOST:PORT, the
    port an integer in 1..65535), ``num_processes`` (>= 1) and ``process_id`` (in [0, num_processes))."""
    given = [v is not None for v in (coordinator, num_processes, process_id)]
    if auto and any(given):
        raise ConfigError("--distributed", "auto lets JAX detect the cluster; give either --distributed auto or "
                                           "--coordinator HOST:PORT --num-processes N --process-id I, not both")
    if any(given) and not all(given):
        missing = [o for o, g in zip(("--coordinator", "--num-processes", "--process-id"), given) if not g]
        raise ConfigError(missing[0], "give --coordinator HOST:PORT, --num-processes N and --process-id I "
                                      "together (or --distributed auto to let JAX detect the cluster)")
    if not all(given):
        return
    host, sep, port = coordinator.rpartition(":")
    if not sep or not host.strip("[]") or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ConfigError("--coordinator", f"expected HOST:PORT with PORT an integer in 1..65535, got "
                                           f"{coordinator!r}")
    if not num_processes >= 1:
        raise ConfigError("--num-processes", f"must be >= 1, got {num_processes}")
    if not 0 <= process_id < num_processes:
        raise ConfigError("--process-id", f"must be in 0..{num_processes - 1} (--num-processes {num_processes}), "
                                          f"got {process_id}")


def initialize(coordinator: str | None, num_processes: int | None, process_id: int | None) -> tuple[int, int]:
    """Start ``jax.distributed`` (before any other JAX call); returns (process index, process count).

    All three of ``coordinator``, ``num_processes``, ``process_id`` given: explicit; none: JAX's
    cluster auto-detection. ConfigError where only some are given or a value is out of range
    (:func:`check_options`).
    """
    check_options(coordinator, num_processes, process_id)
    explicit = coordinator is not None
    import jax
    try:
        if explicit:
            jax.distributed.initialize(coordinator_address=coordinator, num_processes=num_processes,
                                       process_id=process_id)
        else:
            jax.distributed.initialize()
    except (RuntimeError, ValueError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ConfigError("--distributed", f"jax.distributed.initialize failed: {first}") from None
    return jax.process_index(), jax.process_count()


def _client():
    from jax._src import distributed  # the coordination service's client (key-value store, barriers)
    client = distributed.global_state.client
    if client is None:
        raise RuntimeError("jax.distributed is not initialized")
    return client


def share_run_id(run_id: str | None, make) -> str:
    """The run id every process uses: process 0's (``run_id`` or ``make()``), read by the others from
    the coordination service's key-value store."""
    import jax
    client = _client()
    if jax.process_index() == 0:
        run_id = run_id or make()
        client.key_value_set(RUN_ID_KEY, run_id)
        return run_id
    return client.blocking_key_value_get(RUN_ID_KEY, BARRIER_TIMEOUT_MS)


def barrier(name: str) -> None:
    """Wait until every process reaches the barrier ``name``."""
    _client().wait_at_barrier(f"lrsweep/{name}", BARRIER_TIMEOUT_MS)
