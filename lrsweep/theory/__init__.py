"""Closed-form learning-rate theory: pure numpy functions of hyperparameters, one module per paper.

Never imports the engine (or jax). ``THEORIES`` is the registry the comparison module reads: each
entry names a function ``fn(eta_1, eta_2, h, steps, **extra)`` returning the expected test loss
(float64, numpy-broadcasting) and the setting it covers, in the config's vocabulary.
"""
from functools import partial

from . import layer_balancing

_SEED = "seed 000, arXiv 2606.00340 (Deng et al., ICML 2026)"


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


THEORIES = {
    "layer_balancing.two_layer": _entry(
        partial(layer_balancing.two_layer_orthogonal_loss, target="gaussian"),
        parameterization="paper_2nn", n_layers=2, init="orthogonal", design="orthogonal",
        target="gaussian", steps=(1, 2), exact=True,
        reference=f"{_SEED}, Sec. 5 (derived here for the Gaussian target)"),
    "layer_balancing.two_layer_orthonormal_target": _entry(
        partial(layer_balancing.two_layer_orthogonal_loss, target="orthonormal"),
        parameterization="paper_2nn", n_layers=2, init="orthogonal", design="orthogonal",
        target="orthonormal", steps=(1, 2), exact=True,
        reference=f"{_SEED}, Sec. 5 (authors' experiment target Q/sqrt(d))"),
    "layer_balancing.two_layer_published": _entry(
        layer_balancing.two_layer_loss_published,
        parameterization="paper_2nn", n_layers=2, init="orthogonal", design="orthogonal",
        target="orthonormal", steps=(1, 2), exact=False,
        reference=f"{_SEED}, Sec. 5, authors' theory code"),
    "layer_balancing.two_layer_gaussian_init": _entry(
        _gaussian_init(layer_balancing.two_layer_loss),
        parameterization="paper_2nn", n_layers=2, init="gaussian", design="gaussian",
        target="gaussian", steps=(1,), exact=True, extra=("n", "d"),
        reference=f"{_SEED}, App. E.2.1 (derived here)"),
    "layer_balancing.three_layer": _entry(
        layer_balancing.three_layer_orthogonal_loss,
        parameterization="paper_deep", n_layers=3, init="orthogonal", design="orthogonal",
        target="gaussian", steps=(1, 2), exact=True,
        reference=f"{_SEED}, Sec. 5 three-layer theorems (exact in h, derived here)"),
    "layer_balancing.three_layer_published": _entry(
        layer_balancing.three_layer_loss_published,
        parameterization="paper_deep", n_layers=3, init="orthogonal", design="orthogonal",
        target="gaussian", steps=(1, 2), exact=False,
        reference=f"{_SEED}, authors' theory code (leading order in 1/h)"),
    "layer_balancing.three_layer_gaussian_init": _entry(
        _gaussian_init(layer_balancing.three_layer_loss),
        parameterization="paper_deep", n_layers=3, init="gaussian", design="gaussian",
        target="gaussian", steps=(1,), exact=True, extra=("n", "d"),
        reference=f"{_SEED}, App. E.2.2 (derived here)"),
}

__all__ = ["THEORIES", "layer_balancing"]
