"""Seed 002's config: the head rule's fields, the head/body rate axes ``lr_body``, ``lr_head``, ``lr_ratio``
(eta_head / eta_body; ``.inf`` is the best-response head) and the checks that a student has a head.

A student with a head is ``standard`` or ``ntk`` with n_layers >= 2: the last layer W_m is the head, the
layers before it the body. ``lr_body`` sets every body layer; with ``lr_total`` and ``lr_ratio`` the
budget is equal: (m - 1) eta_body + eta_head = C.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from lrsweep import registry
from lrsweep.core import config
from lrsweep.core.config import ConfigError, Field

HEAD_AXES = ("lr_body", "lr_head", "lr_ratio")
BODY_METRICS = ("phi_sharpness", "body_sharpness", "body_sketch")


def head_run(table) -> np.ndarray:
    """(n,) bool: students of seed 002's kind: a head rule other than simultaneous gd, a head rate axis
    (lr_body, lr_head, lr_ratio) or a metric of the body. A plain per-layer GD run stores no head field."""
    rule = config.equals(table["head"], "best_response") | ~config.equals(table["update"], "simultaneous")
    axes = any(axis in table for axis in HEAD_AXES)
    return rule | axes | np.logical_or.reduce([config.has_metric(table, m) for m in BODY_METRICS])


FIELDS = [
    Field("train.head", "str", "gd",
          "The head: the last layer W_m of a standard or ntk student with n_layers >= 2 (the layers before it are the "
          "body; seed 002, lrsweep.families.stackelberg.heads). `gd`: moved by the optimizer at rate lr_m (lr_head); "
          "`best_response`: set to its exact minimiser w*(body) before every body step (ridge least squares for mse, "
          "Newton for logistic and exponential), so the body descends Phi(body) = loss(body, w*(body)); "
          "`lr_ratio: .inf` in the grid selects it.", choices=("gd", "best_response"), applies=head_run),
    Field("train.update", "str", "simultaneous",
          "With train.head gd: `simultaneous` (body and head gradients at the same weights: per-layer GD, the seed's "
          "algorithm) or `alternating` (train.head_steps gradient steps of the head at the current body, then the "
          "body's step at the moved head).", choices=("simultaneous", "alternating"), applies=head_run),
    Field("train.head_steps", "int", 1, "k: head steps per body step of `alternating` (k -> infinity: the best "
          "response).", positive=True, applies=lambda t: config.equals(t["update"], "alternating")),
    Field("train.head_ridge", "float", 0.0, "lambda of the best response: w* minimises loss + lambda/2 ||w||^2 "
          "(> 0 needed for logistic and exponential, whose minimiser is at infinity on separable features, and "
          "for mse when model.width > task.n_train).", minimum=0.0,
          applies=lambda t: config.equals(t["head"], "best_response") | config.has_metric(t, "phi_sharpness")),
    Field("train.newton_steps", "int", 8, "At most this many damped Newton steps (each with a line search) per "
          "Newton phase of the logistic / exponential best response (4x at step 0), warm-started from the previous head; "
          "chord steps on the last Newton Hessian finish it to round-off. On the whole training set Newton runs every "
          "16th step (and where a chord stalls); between, chord steps from the carried inverse Hessian.", positive=True,
          applies=lambda t: config.equals(t["head"], "best_response") | config.has_metric(t, "phi_sharpness")),
    Field("train.sketch_dim", "int", 64, "k of `body_sketch`: the body's weights themselves when they number at "
          "most k, else k Gaussian projections of them (a Johnson-Lindenstrauss sketch, the same for every "
          "student of an instance).", positive=True, applies=lambda t: config.has_metric(t, "body_sketch")),
]

FIELDS_BY_PATH = {field.path: field for field in FIELDS}


def check_ratio(axis: str, v, where: str) -> float:
    """A rate of a head axis: finite and >= 0; ``lr_ratio`` a number > 0 or .inf (the best response)."""
    if axis != "lr_ratio":
        return config.check_rate(axis, v, where)
    if isinstance(v, str) and v.strip().lstrip("+.").lower() == "inf":
        v = math.inf  # `--set grid.lr_ratio=[1,inf]`
    elif isinstance(v, str) and config.is_float_text(v):
        v = float(v)
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0:
        raise ConfigError(where, f"lr_ratio (eta_head / eta_body) must be a number > 0, or .inf for the "
                                 f"best-response head; got {v!r}")
    return float(v)


def check_axes(names: list, axes: list) -> None:
    """The head's rate axes combine as lr_body + lr_head, lr_body + lr_ratio, lr_head + lr_ratio or
    lr_total + lr_ratio, and with no other rate axis."""
    head = [n for n in HEAD_AXES if n in names]
    if not head:
        return
    others = [n for n in names if config.is_rate_axis(n) and n not in HEAD_AXES and n != "lr_total"]
    if others:
        raise ConfigError(f"grid.{head[0]}", f"{head[0]} sets the body's and the head's rates; do not combine it "
                                             f"with {', '.join(others)}")
    allowed = "lr_body with lr_head or lr_ratio, lr_head with lr_ratio, or lr_total with lr_ratio"
    if "lr_total" in names:
        if head != ["lr_ratio"]:
            raise ConfigError(f"grid.{head[0]}", f"with lr_total give only lr_ratio (an equal budget "
                                                 f"(m - 1) eta_body + eta_head = lr_total); allowed: {allowed}")
    elif len(head) != 2:
        raise ConfigError(f"grid.{head[0]}", f"give two of lr_body, lr_head, lr_ratio; allowed: {allowed}")
    if "lr_body" not in names and any(math.isinf(r) for r in _ratios(axes)):  # eta_body = lr_total / inf = 0
        why = ("has no share of an lr_total budget" if "lr_total" in names else
               "with lr_head leaves the body the rate lr_head / lr_ratio = 0")
        raise ConfigError("grid.lr_ratio", f"lr_ratio .inf (the best-response head) {why}; give lr_body with "
                                           f"lr_ratio instead")


def _ratios(axes) -> list:
    return [v for ns, values in axes for j, n in enumerate(ns) if n == "lr_ratio" for v in (r[j] for r in values)]


def resolve(point: dict, m: int):
    """[eta_body] * (m - 1) + [eta_head] from lr_body, lr_head, lr_ratio = eta_head / eta_body (inf: the
    best response) or lr_total = (m - 1) eta_body + eta_head; None without a head axis."""
    if not any(k in point for k in HEAD_AXES):
        return None
    ratio = point.get("lr_ratio")
    if "lr_total" in point:
        body = point["lr_total"] / (m - 1 + ratio)
        body, head = body, ratio * body
    elif "lr_body" in point and "lr_head" in point:
        body, head = point["lr_body"], point["lr_head"]
    elif "lr_body" in point:
        body = point["lr_body"]
        body, head = body, np.where(np.isinf(ratio), np.inf, body * ratio)
    else:
        body, head = np.where(np.isinf(ratio), point["lr_head"] * 0.0, point["lr_head"] / ratio), point["lr_head"]
    return [body] * (m - 1) + [head]


def columns(point: dict, lrs: dict, m_row: np.ndarray) -> dict:
    """``lr_body``, ``lr_head`` and ``lr_ratio`` of every student with a head axis (every student has a
    head: checked per static combination)."""
    if not any(k in point for k in HEAD_AXES):
        return {}
    out = {"lr_body": lrs["lr_1"].copy(),
           "lr_head": np.choose(m_row - 1, [lrs[f"lr_{l}"] for l in range(1, len(lrs) + 1)])}
    with np.errstate(divide="ignore", invalid="ignore"):  # a ratio on the grid stays as given (lr_body 0)
        ratio = point["lr_ratio"].astype(float) if "lr_ratio" in point else out["lr_head"] / out["lr_body"]
        out["lr_ratio"] = np.where(np.isinf(out["lr_head"]), np.inf, ratio)
    return out


def variants(axes) -> list[dict]:
    """lr_ratio .inf: those students take the best-response head (checked with the others)."""
    if not any(math.isinf(r) for r in _ratios(axes)):
        return []
    return [{"train.head": "best_response", "train.update": "simultaneous", "train.head_steps": 1}]


def derived(on_axes: set) -> set:
    """An lr_ratio axis may set head, update and head_steps (its .inf entries: the best response)."""
    return {"head", "update", "head_steps"} if "lr_ratio" in on_axes else set()


def resolve_best_response(table: dict) -> None:
    """``lr_ratio`` .inf is ``train.head: best_response`` (with ``train.update`` simultaneous and one head step:
    the best response leaves nothing to alternate); a best-response student's head rate (lr_m, ``lr_head``,
    ``lr_ratio``, so ``lr_total``) is stored as inf: the head is never moved by the optimizer."""
    ratio = table.get("lr_ratio")
    best = config.equals(table["head"], "best_response")
    if ratio is not None:  # an infinite head rate; not a finite head over a frozen body (lr_body 0)
        best = best | (np.isinf(ratio) & np.isinf(table["lr_head"]))
    if not best.any():
        return
    table["head"] = np.where(best, "best_response", table["head"]).astype(object)
    table["update"] = np.where(best, "simultaneous", table["update"]).astype(object)
    table["head_steps"] = np.where(best, 1, table["head_steps"])
    m_row = table["n_trainable"]
    for m in pd.unique(m_row[best]):
        table[f"lr_{m}"] = np.where(best & (m_row == m), np.inf, table[f"lr_{m}"])
    for column in ("lr_total", "lr_head", "lr_ratio"):
        if column in table:
            table[column] = np.where(best, np.inf, table[column])


def check_head(p: dict, arch) -> None:
    """train.head, train.update and the head's rate axes need a student with a trained head and a body
    (standard or ntk, n_layers >= 2); the head rules other than simultaneous gd run under gd on a fixed
    training set."""
    head_axes = [k for k in HEAD_AXES if k in p]
    rule = p["train.head"] != "gd" or p["train.update"] != "simultaneous"
    needs = [m for m in BODY_METRICS if m in (p["train.metrics"] or ())]
    if rule or head_axes or needs:
        what = ("train.head" if p["train.head"] != "gd" else "train.update" if rule else
                "train.metrics" if needs and not head_axes else f"grid.{head_axes[0]}")
        if arch.parameterization not in ("standard", "ntk") or arch.n_trainable < 2:
            raise ConfigError(what, f"needs a student with a trained head and a body: model.parameterization "
                                    f"standard or ntk with n_layers >= 2 (got {arch.parameterization}, n_layers "
                                    f"{p['model.n_layers']})")
    if p["train.update"] == "alternating" and p["train.head"] != "gd":
        raise ConfigError("train.update", "best_response sets the head exactly before every body step; allowed "
                                          "with train.head best_response: simultaneous")
    if p["train.head_steps"] != 1 and p["train.update"] != "alternating":
        raise ConfigError("train.head_steps", "only read by train.update: alternating (k head steps per body step)")
    newton = FIELDS_BY_PATH["train.newton_steps"].default
    if p["train.newton_steps"] != newton and (p["train.loss"] == "mse" or (
            p["train.head"] != "best_response" and "phi_sharpness" not in needs and "lr_ratio" not in p)):
        raise ConfigError("train.newton_steps", f"only read by the Newton best response of train.loss logistic or "
                                                f"exponential (with train.head: best_response, lr_ratio .inf or the "
                                                f"phi_sharpness metric); got {p['train.newton_steps']} with "
                                                f"train.loss {p['train.loss']}, train.head {p['train.head']}")
    if rule and p["train.optimizer"] != "gd":
        raise ConfigError("train.optimizer", f"train.head {p['train.head']} with train.update {p['train.update']} "
                                             f"runs under full-batch gd; allowed: gd")
    if p["train.head"] == "best_response" or "phi_sharpness" in needs:
        where = "train.head" if p["train.head"] == "best_response" else "train.metrics"
        if config.online(p):
            raise ConfigError(where, "the best response is a minimiser over a fixed training set; task.online "
                                     "draws fresh samples (allowed: task.online false)")
        if p["train.head_ridge"] == 0 and p["train.loss"] != "mse":
            raise ConfigError("train.head_ridge", f"must be > 0 for train.loss {p['train.loss']}: on separable "
                                                  f"features its minimiser over the head is at infinity")
        if p["train.head_ridge"] == 0 and arch.width > p["task.n_train"]:
            raise ConfigError("train.head_ridge", f"must be > 0 when model.width ({arch.width}) > task.n_train "
                                                  f"({p['task.n_train']}): the head's least squares has no unique "
                                                  f"minimiser")


def register() -> None:
    for field in FIELDS:
        registry.register_field(field)
    registry.register_rate_scheme(registry.RateScheme(
        "head", HEAD_AXES, resolve, check_axes=check_axes, check_value=check_ratio, columns=columns,
        derived=derived, variants=variants))
    registry.register_validator(check_head)
    registry.register_grid_hook(resolve_best_response)
