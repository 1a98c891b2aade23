"""What the benchmark scripts share: --quick defaults and the device header line."""
import time

import jax
import jax.numpy as jnp


def quick_defaults(args, **defaults) -> None:
    """``name=(quick, full)``: set each unset ``args.name`` by ``args.quick``."""
    for name, (quick, full) in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, quick if args.quick else full)


def device_header(x64: bool):
    """Switch float64 on or off, print the device line; returns the float dtype."""
    jax.config.update("jax_enable_x64", x64)
    dtype = jnp.result_type(float)
    dev = jax.devices()[0]
    print(f"device: {dev.device_kind} ({dev.platform}, {jax.device_count()} device(s))  jax {jax.__version__}  "
          f"dtype {jnp.dtype(dtype).name}")
    return dtype


def timed(fn, repeats: int) -> float:
    """Best wall time of ``fn()`` (which must block on its result) over ``repeats`` calls."""
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best
