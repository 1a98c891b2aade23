"""One sweep over several processes (hosts) with JAX's own runtime, ``jax.distributed``.

Students are independent, so a multi-host sweep needs no array that spans hosts: process i of n
trains shard i of n (:func:`lrsweep.chunking.shard_mask`) on its own devices
(``jax.local_devices()``: the engine's mesh never leaves the process) and writes its own parts into
the one run directory on a shared filesystem. JAX's coordination service (started by
``jax.distributed.initialize``) provides the rest: process 0 makes the run id and publishes it in
the service's key-value store, and after training every process waits at a barrier, after which
process 0 merges (:func:`lrsweep.runner.merge`). Neither needs a collective, so this works on
the CPU as on GPU and TPU.

``initialize(None, None, None)`` lets JAX detect the cluster (TPU pods, Slurm, and the other
environments ``jax.distributed.initialize`` knows); otherwise give the coordinator address, the
number of processes and this process's id, as ``lrsweep run --coordinator HOST:PORT
--num-processes N --process-id I`` does.
"""

from __future__ import annotations

from lrsweep.errors import ConfigError

RUN_ID_KEY = "lrsweep/run_id"
BARRIER_TIMEOUT_MS = 7 * 24 * 3600 * 1000  # a barrier waits for the slowest shard: up to a week


def initialize(coordinator: str | None, num_processes: int | None, process_id: int | None) -> tuple[int, int]:
    """Start ``jax.distributed`` (before any other JAX call); returns (process index, process count).

    All three of ``coordinator``, ``num_processes``, ``process_id`` given: explicit; none: JAX's
    cluster auto-detection. ConfigError where only some are given or a value is out of range.
    """
    given = [v is not None for v in (coordinator, num_processes, process_id)]
    if any(given) and not all(given):
        raise ConfigError("--coordinator", "give --coordinator HOST:PORT, --num-processes N and --process-id I "
                                           "together (or --distributed auto to let JAX detect the cluster)")
    if all(given) and not 0 <= process_id < num_processes:
        raise ConfigError("--process-id", f"must be in 0..{num_processes - 1}, got {process_id}")
    import jax
    try:
        if all(given):
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
