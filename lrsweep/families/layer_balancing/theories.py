"""Seed 000's closed forms as a table: which formula of :mod:`lrsweep.families.layer_balancing.theory`
covers which setting. Each entry names a function ``fn(eta_1, eta_2, h, steps, **extra)`` returning the
expected test loss (float64, numpy-broadcasting) and the setting it covers, in the config's vocabulary;
:mod:`lrsweep.families.layer_balancing.checks` registers them as theories.
"""
from functools import partial

from lrsweep.families.layer_balancing import theory as layer_balancing

_CITATION = "seed 000, arXiv 2606.00340 (Deng et al., ICML 2026)"


def _entry(fn, *, parameterization, n_layers, init, design, target, steps, exact, reference, extra=()):
    return {
        "fn": fn,
        "setting": {
            "model.parameterization": parameterization,
            "model.n_layers": n_layers,
            "init": init,
            "task.design": design,
            "task.target": target,
            "task.noise_std": 0.0,
            "train.gradient": "signal_only",
            "width": "h = n = d" if init == "orthogonal" else "h; n, d via extra args (default h)",
        },
        "steps": tuple(steps),
        "exact": exact,            # True: exact expectation (finite h); False: as published
        "extra_args": tuple(extra),
        "quantity": "expected population test loss ||W_eff - beta||_F^2 after `steps` updates",
        "reference": reference,
    }


def _gaussian_init(loss):
    """``loss(eta_1, eta_2, h, steps, init, n, d)`` with Gaussian init and design, n and d as extra args."""
    def fn(eta_1, eta_2, h, steps=1, n=None, d=None):
        return loss(eta_1, eta_2, h, steps, init="gaussian", n=n, d=d)
    return fn


_LB = layer_balancing
# name: (fn, parameterization, n_layers, init (= design), target, steps, exact, extra args, reference)
_TABLE = {
    "two_layer": (partial(_LB.two_layer_orthogonal_loss, target="gaussian"), "paper_2nn", 2, "orthogonal",
                  "gaussian", (1, 2), True, (), "Sec. 5 (derived here for the Gaussian target)"),
    "two_layer_orthonormal_target": (partial(_LB.two_layer_orthogonal_loss, target="orthonormal"), "paper_2nn", 2,
                                     "orthogonal", "orthonormal", (1, 2), True, (),
                                     "Sec. 5 (authors' experiment target Q/sqrt(d))"),
    "two_layer_published": (_LB.two_layer_loss_published, "paper_2nn", 2, "orthogonal", "orthonormal", (1, 2),
                            False, (), "Sec. 5, authors' theory code"),
    "two_layer_gaussian_init": (_gaussian_init(_LB.two_layer_loss), "paper_2nn", 2, "gaussian", "gaussian", (1,),
                                True, ("n", "d"), "App. E.2.1 (derived here)"),
    "three_layer": (_LB.three_layer_orthogonal_loss, "paper_deep", 3, "orthogonal", "gaussian", (1, 2), True, (),
                    "Sec. 5 three-layer theorems (exact in h, derived here)"),
    "three_layer_published": (_LB.three_layer_loss_published, "paper_deep", 3, "orthogonal", "gaussian", (1, 2),
                              False, (), "authors' theory code (leading order in 1/h)"),
    "three_layer_gaussian_init": (_gaussian_init(_LB.three_layer_loss), "paper_deep", 3, "gaussian", "gaussian",
                                  (1,), True, ("n", "d"), "App. E.2.2 (derived here)"),
}

THEORIES = {
    f"layer_balancing.{name}": _entry(fn, parameterization=par, n_layers=n_layers, init=init, design=init,
                                      target=target, steps=steps, exact=exact, extra=extra,
                                      reference=f"{_CITATION}, {ref}")
    for name, (fn, par, n_layers, init, target, steps, exact, extra, ref) in _TABLE.items()
}

__all__ = ["THEORIES"]
