"""Reading a config: YAML or a dict, ``--set`` overrides, every field checked, the grid's axes parsed
(:class:`SweepConfig`); nothing is expanded or computed here."""

from __future__ import annotations

import dataclasses
import difflib
from pathlib import Path
from typing import Any

from lrsweep import registry
from lrsweep.core.columns import LAYER_RATE
from lrsweep.core.config.schema import (FIELDS, _scheme_of, aliases,
                                        is_rate_axis, rate_axes, top_level)
from lrsweep.core.config.values import (ARRAY_INDEX, PATH_ALIASES, _CONFIG_DIR, _NAME_RE, _check_distinct,
                                        _read_text, _suggest, array_table, arrays_as_lists, check_rate, check_value,
                                        grid_values, parse_yaml)
from lrsweep.core.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class SweepConfig:
    """A validated config: ``base`` maps every field path to its value, ``axes`` the grid."""
    base: dict
    axes: tuple  # tuple of (names tuple, list of value tuples); names are field paths or lr keys
    raw: dict

    @property
    def name(self) -> str:
        return self.base["name"]

    def to_dict(self) -> dict:
        """The resolved config as nested plain data (what is written to config.yaml)."""
        return self.raw


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        path = f"{prefix}{k}"
        if isinstance(v, dict) and path in ("task", "model", "train"):
            out.update(_flatten(v, path + "."))
        else:
            out[path] = v
    return out


def _set_path(d: dict, path: str, value: Any) -> None:
    keys = path.split(".")
    for k in keys[:-1]:
        if not isinstance(d.get(k), dict):
            d[k] = {}
        d = d[k]
    d[keys[-1]] = value


def _with_path(raw: dict, path: str, value: Any) -> dict:
    """A copy of ``raw`` with ``path`` (dotted) set to ``value``."""
    import copy
    raw = copy.deepcopy(raw)
    for alias, target in PATH_ALIASES.items():
        if target == path and alias.split(".")[0] in raw:
            (raw[alias.split(".")[0]] or {}).pop(alias.split(".")[1], None)
    _set_path(raw, path, value)
    return raw


def apply_overrides(raw: dict, overrides: list[str] | None) -> dict:
    """Apply ``--set path=value`` overrides (values parsed as YAML) to raw config data.

    A field that is also a grid axis is removed from the grid (the override wins).
    """
    import copy
    raw = copy.deepcopy(raw)
    for item in overrides or []:
        if "=" not in item:
            raise ConfigError("--set", f"expected PATH=VALUE, got {item!r}")
        path, text = item.split("=", 1)
        path = path.strip()
        value = parse_yaml(text, "--set", f"{item}: ")
        if path in aliases() and path != "seeds":
            path = aliases()[path]
        if path.startswith("grid."):
            raw.setdefault("grid", {})
            raw["grid"][path[5:]] = value
            continue
        if path in ("seed", "seeds"):
            raw.pop("seed", None)
            raw["seeds"] = value
            for key in ("seed", "seeds"):
                (raw.get("grid") or {}).pop(key, None)
            continue
        for alias, target in PATH_ALIASES.items():  # the override replaces the field under either name
            section, key = alias.split(".")
            if target == path and isinstance(raw.get(section), dict):
                raw[section].pop(key, None)
        _set_path(raw, path, value)
        grid = raw.get("grid") or {}
        alias = {v: k for k, v in aliases().items()}.get(path)
        for key in (path, alias):
            if key and key in grid:
                del grid[key]
    return raw


def _axis_name(key: str, where: str) -> str:
    if is_rate_axis(key):
        return key
    path = aliases().get(key, key)
    if path == "seed" or path in FIELDS:
        if path == "name":
            raise ConfigError(where, "name cannot be a grid axis")
        if path in FIELDS and not FIELDS[path].axis:
            raise ConfigError(where, f"{path} cannot be a grid axis (it does not change the results); set it "
                                     f"once" + (" (train.mode or `lrsweep run --mode`)" if path == "train.mode" else ""))
        return path
    options = list(FIELDS) + list(aliases()) + list(rate_axes()) + ["lr_1", "lr_2", "zip"]
    raise ConfigError(where, f"unknown grid axis '{key}'{_suggest(key, options)}; axes are config fields "
                             f"(e.g. width, n_layers, init, noise_std, steps), lr_1..lr_L, "
                             f"{', '.join(rate_axes())}, or zip")


def _check_axis_values(name: str, values: list, where: str) -> list:
    if name in FIELDS or name == "seed":
        return [check_value(FIELDS[name], v, where) for v in values]
    scheme = _scheme_of(name)
    check = scheme.check_value if scheme is not None and scheme.check_value is not None else check_rate
    return [check(name, v, where) for v in values]


def load_config(source: str | Path | dict, overrides: list[str] | None = None,
                defaults: dict | None = None) -> SweepConfig:
    """Read (a YAML path or a dict), apply overrides, validate; raise ConfigError on bad input.
    ``defaults``: top-level sections taken where the config has none (a command's own section)."""
    if isinstance(source, (str, Path)):
        path = Path(source)
        raw = parse_yaml(_read_text(path), "config", f"{path}: ")
        if raw is None:
            raw = {}
        _CONFIG_DIR[0] = path.parent
        try:
            return _load(_with_defaults(raw, defaults), overrides)
        finally:
            _CONFIG_DIR[0] = None
    return _load(_with_defaults(source, defaults), overrides)


def _with_defaults(raw, defaults: dict | None):
    if not defaults or not isinstance(raw, dict):
        return raw
    return {**{k: v for k, v in defaults.items() if raw.get(k) is None}, **{k: v for k, v in raw.items()
                                                                             if v is not None or k not in defaults}}


def _load(raw, overrides: list[str] | None) -> SweepConfig:
    """:func:`load_config` of parsed data: the sections, every field's value, the grid's axes."""
    raw = _sections(raw, overrides)
    base = _base(raw)
    seeds, axes = _grid_axes(raw, base)
    _check_rate_axes(raw, axes)
    resolved = dict(raw)
    for path in ARRAY_INDEX:  # files read once: the run's config.yaml keeps the numbers
        if base[path] is not None:
            resolved = _with_path(resolved, path, arrays_as_lists(base[path]))
    resolved.pop("seed", None)
    if seeds is not None:
        resolved["seeds"] = seeds
    return SweepConfig(base=base, axes=tuple(axes), raw=resolved)


def _sections(raw, overrides: list[str] | None) -> dict:
    """The top level with overrides applied, each key a known section (a misplaced field suggests its path)."""
    if not isinstance(raw, dict):
        raise ConfigError("config", f"top level must be a mapping of {', '.join(top_level())}")
    raw = apply_overrides(raw, overrides)
    raw = {k: v for k, v in raw.items() if not (k in ("task", "model", "train") and v is None)}  # `model:` empty
    for key in raw:
        if key not in top_level():
            # a misplaced or misspelt field (`width:` at the top) suggests its full path
            options = {k: k for k in top_level()} | {a: p for a, p in aliases().items() if a != "seeds"} | {
                p.split(".")[-1]: p for p in FIELDS}
            close = difflib.get_close_matches(str(key), list(options), n=1, cutoff=0.5)
            hint = f" (did you mean '{options[close[0]]}'?)" if close else ""
            raise ConfigError(str(key), f"unknown key{hint}; allowed: {', '.join(top_level())}")
    if "seed" in raw and "seeds" in raw:
        raise ConfigError("seeds", "give either seed (one value) or seeds (a list), not both")
    for section in ("task", "model", "train", "grid"):
        if section in raw and raw[section] is not None and not isinstance(raw[section], dict):
            raise ConfigError(section, f"must be a mapping, got {raw[section]!r}")
    return raw


def _base(raw: dict) -> dict:
    """Every field's value (path -> value): the config's, checked, else the task's default, else the
    field's."""
    flat = _flatten({k: v for k, v in raw.items() if k not in ("grid", "seeds", *registry.SECTIONS)})
    for alias, path in PATH_ALIASES.items():
        if alias in flat:
            if path in flat:
                raise ConfigError(alias, f"is an alias of {path}; give one of them")
            flat[path] = flat.pop(alias)
    base = {}
    for key, value in flat.items():
        if key not in FIELDS:
            section = key.split(".")[0]
            options = [p for p in FIELDS if p.startswith(section + ".")] or list(FIELDS)
            raise ConfigError(key, f"unknown field{_suggest(key, options)}; allowed in '{section}': "
                                   f"{', '.join(p.split('.')[-1] for p in options)}")
        base[key] = check_value(FIELDS[key], value, key)
    if "name" in base and (not _NAME_RE.match(base["name"]) or base["name"] in (".", "..")):
        raise ConfigError("name", f"must be a plain directory name (letters, digits, '.', '_', '-'), "
                                  f"got {base['name']!r}")
    rules = registry.TASK_RULES.get(base.get("task.kind", FIELDS["task.kind"].default))
    for path, value in (rules.defaults.items() if rules is not None else ()):  # single_point: one input x = 1
        base.setdefault(path, value)
    if base.get("task.points") is not None:  # explicit points set the data's size unless given
        base.setdefault("task.n_train", len(base["task.points"]))
        base.setdefault("task.input_dim", len(base["task.points"][0]) - 1)
    for path, field in FIELDS.items():
        base.setdefault(path, field.default)
    return base


def _grid_axes(raw: dict, base: dict) -> tuple[list | None, list]:
    """(seeds, axes): the seeds (None where they are a grid axis) and every axis as (names, rows), in the
    config's order; several per-step arrays add an axis over their index."""
    axes = []
    grid = raw.get("grid") or {}
    zips = grid.get("zip") if isinstance(grid.get("zip"), list) else [grid.get("zip")]
    grid_keys = list(grid) + [k for z in zips if isinstance(z, dict) for k in z]
    seeds = None
    if "seeds" in raw or not any(aliases().get(str(k), k) == "seed" for k in grid_keys):  # else a grid axis
        seeds = raw.get("seeds", [base["seed"]])
        if not isinstance(seeds, (list, tuple, dict, int)) or isinstance(seeds, bool):
            raise ConfigError("seeds", f"expected a list of non-negative integers, got {seeds!r}")
        seeds = _check_distinct(_check_axis_values("seed", grid_values(seeds, "seeds"), "seeds"), "seeds")
        axes.append((("seed",), [(s,) for s in seeds]))
    for key, spec in grid.items():
        where = f"grid.{key}"
        if key == "zip":
            axes += [_zip_axis(group, f"{where}[{gi}]") for gi, group in
                     enumerate(spec if isinstance(spec, list) else [spec])]
            continue
        name = _axis_name(str(key), where)
        values = _check_distinct(_check_axis_values(name, grid_values(spec, where), where), where)
        axes.append(((name,), [(v,) for v in values]))
    names = [n for ns, _ in axes for n in ns]
    for path, index in ARRAY_INDEX.items():  # several arrays: a grid axis over their index
        if base[path] is not None and index not in names and len(array_table(base[path])) > 1:
            axes.append(((index,), [(i,) for i in range(len(array_table(base[path])))]))
            names.append(index)
    dup = {n for n in names if names.count(n) > 1}
    if dup:
        raise ConfigError("grid", f"axis given twice: {', '.join(sorted(dup))}")
    return seeds, axes


def _zip_axis(group, where: str) -> tuple[tuple, list]:
    """One ``zip`` group: axes of equal length that vary together."""
    if not isinstance(group, dict) or not group:
        raise ConfigError(where, "zip takes a mapping of axes with equal-length lists")
    names, columns = [], []
    for k, v in group.items():
        name = _axis_name(k, f"{where}.{k}")
        names.append(name)
        columns.append(_check_axis_values(name, grid_values(v, f"{where}.{k}"), f"{where}.{k}"))
    if len({len(c) for c in columns}) != 1:
        raise ConfigError(where, f"zip axes must have equal lengths, got {dict(zip(group, map(len, columns)))}")
    return tuple(names), _check_distinct(list(zip(*columns)), where, names)


def _check_rate_axes(raw: dict, axes: list) -> None:
    """The learning-rate axes combine as allowed (every scheme's rule too), and there is one; a section
    whose command finds the rates itself (``schedule_search``) gets its default ``lr`` axis (appended)."""
    names = [n for ns, _ in axes for n in ns]
    layer_axes = [n for n in names if LAYER_RATE.match(n)]
    for scheme in registry.RATE_SCHEMES.values():  # lr_line alone; head rates in pairs
        scheme.check_axes(names, axes)
    if "lr" in names and "lr_total" in names:
        raise ConfigError("grid.lr", "give a shared lr or an lr_total, not both")
    if "lr_1_fraction" in names and layer_axes:
        raise ConfigError("grid.lr_1_fraction", f"lr_1_fraction sets every layer's learning rate; do not "
                                                 f"combine it with {', '.join(layer_axes)}")
    if "lr_1_fraction" in names and "lr_total" not in names:
        raise ConfigError("grid.lr_1_fraction", "needs an lr_total axis (eta_1 = fraction * lr_total)")
    defaults = [s.default_lr for name, s in registry.SECTIONS.items() if raw.get(name) is not None
                and s.default_lr is not None]
    if defaults and not any(is_rate_axis(n) for n in names):
        axes.append((("lr",), [(defaults[0],)]))  # `lrsweep schedule` finds the rates; its verify runs use lr 1 x array
        names.append("lr")
    if not any(is_rate_axis(n) for n in names):
        raise ConfigError("grid", f"no learning rate given: add lr, lr_1..lr_L, lr_total (with lr_1_fraction) "
                                  f"or another rate axis ({', '.join(rate_axes()[3:])}) to the grid")
