"""Values of one field: YAML parsing, type and range checks naming the field and the allowed values,
per-step arrays (inline or files, registered by digest), grid value specs (lists, ranges, geomspace)."""

from __future__ import annotations

import difflib
import hashlib
import math
import re
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from lrsweep.core.config.schema import Field
from lrsweep.core.errors import ConfigError


_NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]*$")


def _suggest(name: str, options) -> str:
    close = difflib.get_close_matches(name, list(options), n=1, cutoff=0.5)
    return f" (did you mean '{close[0]}'?)" if close else ""


_FLOAT_RE = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")


def check_value(field: Field, value: Any, where: str) -> Any:
    """Validate and coerce one value of ``field``; ``where`` names it in the error."""
    if value is None:
        if field.nullable:
            return None
        raise ConfigError(where, f"must not be null ({_allowed(field)})")
    kind = field.value_type
    if kind == "int":
        if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) \
                or (isinstance(value, float) and not float(value).is_integer()):
            raise ConfigError(where, f"expected an integer, got {value!r} ({_allowed(field)})")
        value = int(value)
    elif kind == "float":
        if isinstance(value, str) and _FLOAT_RE.match(value.strip()):
            value = float(value)  # YAML 1.1 reads 1e-3 as a string
        if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
            raise ConfigError(where, f"expected a number, got {value!r} ({_allowed(field)})")
        value = float(value)
        if not math.isfinite(value):
            raise ConfigError(where, f"must be finite, got {value!r}")
    elif kind == "str":
        if not isinstance(value, str):
            raise ConfigError(where, f"expected a string, got {value!r} ({_allowed(field)})")
    elif kind == "bool":
        if not isinstance(value, bool):
            raise ConfigError(where, f"expected true or false, got {value!r}")
    elif kind == "str_list":
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
            raise ConfigError(where, f"expected a list of names, got {value!r} ({_allowed(field)})")
        for v in value:
            if v not in field.choices:
                raise ConfigError(where, f"{v!r} is not allowed; allowed values: {', '.join(field.choices)}"
                                  + _suggest(v, field.choices))
        if len(set(value)) != len(value):
            raise ConfigError(where, f"{value!r} names a metric twice")
        return tuple(value)
    elif kind == "points":
        rows = value if isinstance(value, (list, tuple)) else None
        if not rows or any(not isinstance(r, (list, tuple)) or len(r) < 2 for r in rows):
            raise ConfigError(where, f"expected a non-empty list of rows [x_1, ..., x_d, y], got {value!r}")
        if len({len(r) for r in rows}) != 1:
            raise ConfigError(where, "every row needs the same length [x_1, ..., x_d, y]")
        for r in rows:
            if any(isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) for v in r):
                raise ConfigError(where, f"entries must be finite numbers, got {list(r)!r}")
            if r[-1] not in (-1, 1):
                raise ConfigError(where, f"the label (last entry) must be -1 or +1, got {r[-1]!r}")
        return tuple(tuple(float(v) for v in r) for r in rows)
    elif kind == "arrays":
        return register_arrays(_read_arrays(value, where), where)
    elif kind == "int_list":
        if isinstance(value, dict):  # {geomspace: [a, b, k]}: k log-spaced steps, rounded, deduplicated
            if list(value) != ["geomspace"]:
                raise ConfigError(where, f"expected a list of steps or {{geomspace: [first, last, k]}}, got {value!r}")
            args = value["geomspace"]
            if (not isinstance(args, (list, tuple)) or len(args) != 3
                    or any(isinstance(v, bool) or not isinstance(v, int) for v in args)):
                raise ConfigError(where, f"geomspace takes three integers [first, last, k], got {args!r}")
            first, last, k = args
            if not 1 <= first <= last or k < 1:
                raise ConfigError(where, f"geomspace needs 1 <= first <= last and k >= 1, got {list(args)!r}")
            return tuple(int(v) for v in np.unique(np.rint(np.geomspace(first, last, k)).astype(np.int64)))
        if not isinstance(value, (list, tuple)) or not value:
            raise ConfigError(where, f"expected a non-empty list of integers, got {value!r}")
        value = tuple(sorted({check_value(Field(field.path, "int", 0, "", minimum=0), v, where)
                              for v in value}))
        return value
    if field.choices is not None and value not in field.choices:
        raise ConfigError(where, f"{value!r} is not allowed; allowed values: {', '.join(map(str, field.choices))}"
                          + (_suggest(value, field.choices) if isinstance(value, str) else ""))
    if field.positive and value <= 0:
        raise ConfigError(where, f"must be > 0, got {value!r}")
    if field.above is not None and not value > field.above:
        raise ConfigError(where, f"must be > {field.above:g}, got {value!r}")
    if field.minimum is not None and value < field.minimum:
        raise ConfigError(where, f"must be >= {field.minimum:g}, got {value!r}")
    if field.maximum is not None and value > field.maximum:
        raise ConfigError(where, f"must be <= {field.maximum:g}, got {value!r} ({_allowed(field)})")
    return value


def _allowed(field: Field) -> str:
    if field.choices:
        return "allowed values: " + ", ".join(map(str, field.choices))
    if field.above is not None:
        return f"a {field.value_type} > {field.above:g}"
    if field.positive:
        return f"a {field.value_type} > 0"
    if field.minimum is not None and field.maximum is not None:
        return f"a {field.value_type} in [{field.minimum:g}, {field.maximum:g}]"
    if field.minimum is not None:
        return f"a {field.value_type} >= {field.minimum:g}"
    return f"a {field.value_type}"


ARRAYS: dict[str, np.ndarray] = {}


def _read_arrays(value: Any, where: str) -> list[np.ndarray]:
    """One array (a list of numbers, or a .npy / .csv file of one array or one per row), or a list of
    such, as a list of 1-D float arrays."""
    def one_file(path: str) -> list[np.ndarray]:
        file = Path(path).expanduser()
        if not file.is_absolute() and _CONFIG_DIR[0] is not None and (_CONFIG_DIR[0] / file).is_file():
            file = _CONFIG_DIR[0] / file  # relative to the config file first, then to the working directory
        if not file.is_file():
            raise ConfigError(where, f"file not found: {path} (give a list of numbers, or a .npy or .csv file)")
        try:
            with warnings.catch_warnings():  # an empty file: numpy warns, then the size check below says so
                warnings.simplefilter("ignore", UserWarning)
                data = np.load(file) if file.suffix == ".npy" else np.loadtxt(file, delimiter=",", ndmin=1)
        except (ValueError, OSError) as e:
            raise ConfigError(where, f"cannot read {path} as numbers: {str(e).splitlines()[0]}") from None
        data = np.asarray(data, float)
        if data.size == 0:
            raise ConfigError(where, f"{path} holds no numbers (expected one array of per-step values, or one "
                                     f"per row)")
        if data.ndim not in (1, 2):
            raise ConfigError(where, f"{path}: expected one array or one array per row, got shape {data.shape}")
        return [data] if data.ndim == 1 else list(data)

    def numbers(v) -> bool:
        return isinstance(v, (list, tuple)) and len(v) > 0 and all(
            isinstance(x, (int, float)) and not isinstance(x, bool) for x in v)

    if isinstance(value, str):
        arrays = one_file(value)
    elif numbers(value):
        arrays = [np.asarray(value, float)]
    elif isinstance(value, (list, tuple)) and value and all(isinstance(v, str) or numbers(v) for v in value):
        arrays = [a for v in value for a in (one_file(v) if isinstance(v, str) else [np.asarray(v, float)])]
    else:
        raise ConfigError(where, f"expected a list of numbers (one per step), a .npy or .csv file, or a list of "
                                 f"those, got {value!r:.80}")
    for i, a in enumerate(arrays):
        if not np.all(np.isfinite(a)) or (a < 0).any():
            raise ConfigError(where, f"array {i}: entries must be finite and >= 0")
    return arrays


_CONFIG_DIR: list = [None]  # the directory of the config file being loaded (relative array files)


def register_arrays(arrays: list[np.ndarray], where: str = "") -> str:
    """Store a list of per-step arrays in :data:`ARRAYS`; returns its digest (the column value)."""
    t_max = max(len(a) for a in arrays)
    table = np.full((len(arrays), t_max), np.nan)
    for i, a in enumerate(arrays):
        table[i, :len(a)] = a
    digest = hashlib.sha1(table.tobytes() + str(table.shape).encode()).hexdigest()[:12]
    key = f"{digest} ({len(arrays)} x {t_max})"
    ARRAYS[key] = table
    return key


def array_table(key: str) -> np.ndarray:
    """The (K, T_max) table of a digest from :func:`register_arrays`."""
    if key not in ARRAYS:
        raise ConfigError("train", f"per-step arrays {key} are not loaded; load the run's config first")
    return ARRAYS[key]


def arrays_as_lists(key: str) -> list[list[float]]:
    """The arrays of a digest as plain lists (what a resolved config stores)."""
    return [[float(x) for x in row[~np.isnan(row)]] for row in array_table(key)]


ARRAY_INDEX = {"train.schedule_array": "train.schedule_index", "train.batch_array": "train.batch_index",
               "train.momentum_array": "train.momentum_index"}


ARRAY_KIND = {"train.schedule_array": ("train.schedule", "array"), "train.batch_array": ("train.batch_schedule", "array"),
              "train.momentum_array": ("train.momentum_schedule", "array")}


PATH_ALIASES = {"task.n_features": "task.input_dim"}


def grid_values(spec: Any, where: str) -> list:
    """Parse one grid axis: a scalar, a list, or {linspace|logspace|geomspace: [a, b, n]},
    {range: [start, stop, step]} (stop inclusive), {values: [...]}."""
    if isinstance(spec, dict):
        if len(spec) != 1:
            raise ConfigError(where, f"a generated axis has exactly one key of linspace, logspace, geomspace, "
                                     f"range, values; got {sorted(spec)}")
        (kind, args), = spec.items()
        if kind == "values":
            return grid_values(list(args), where)
        if kind not in ("linspace", "logspace", "geomspace", "range"):
            raise ConfigError(where, f"unknown generator '{kind}'; allowed: linspace, logspace, geomspace, range, "
                                     f"values" + _suggest(kind, ("linspace", "logspace", "geomspace", "range")))
        if not isinstance(args, (list, tuple)) or len(args) != 3 or any(
                isinstance(a, bool) or not isinstance(a, (int, float)) for a in args):
            raise ConfigError(where, f"{kind} takes three numbers [start, stop, num_or_step], got {args!r}")
        a, b, c = args
        if kind == "range":
            if c <= 0 or b < a:
                raise ConfigError(where, f"range needs step > 0 and stop >= start, got {args!r}")
            n = int(math.floor((b - a) / c + 1e-9)) + 1
            vals = [a + i * c for i in range(n)]
            return [int(v) if all(isinstance(x, int) for x in args) else float(v) for v in vals]
        if not float(c).is_integer() or c < 1:
            raise ConfigError(where, f"{kind} needs a positive integer count, got {c!r}")
        fn = {"linspace": np.linspace, "logspace": np.logspace, "geomspace": np.geomspace}[kind]
        if kind == "geomspace" and (a <= 0 or b <= 0):
            raise ConfigError(where, f"geomspace needs positive endpoints, got {args!r}")
        return [float(v) for v in fn(a, b, int(c))]
    if isinstance(spec, (list, tuple)):
        if len(spec) == 0:
            raise ConfigError(where, "empty axis: give at least one value")
        return list(spec)
    return [spec]


def _check_distinct(values: list, where: str, names: tuple | None = None) -> list:
    """``values`` of one axis (rows of a zip over ``names``); ConfigError(where) for a value given twice:
    it would train the same students twice."""
    first = {}
    for i, v in enumerate(values):
        if v in first:
            what = f"value {v!r}" if names is None else "row " + ", ".join(f"{n}={x!r}" for n, x in zip(names, v))
            raise ConfigError(where, f"{what} appears twice (entries {first[v] + 1} and {i + 1}): the same "
                                     f"students would be trained twice")
        first[v] = i
    return values


class _UniqueKeyLoader(yaml.SafeLoader):
    """yaml.SafeLoader that refuses a key given twice in one mapping (PyYAML keeps the last one silently)."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *base` may be overridden by the keys after it
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                repeated = key in seen
            except TypeError:  # an unhashable key: SafeLoader reports it
                continue
            if repeated:
                raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep)


def parse_yaml(text: str, field: str, prefix: str = "") -> Any:
    """YAML text -> data; ConfigError(field, prefix + one line) for invalid YAML or a duplicate key."""
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark
        where = "" if mark is None else f" (line {mark.line + 1}, column {mark.column + 1})" if "\n" in text.strip() \
            else f" (column {mark.column + 1})"
        raise ConfigError(field, f"{prefix}{'' if 'duplicate key' in str(e.problem) else 'not valid YAML: '}"
                                 f"{' '.join(str(e.problem).split())}{where}") from None
    except yaml.YAMLError as e:
        raise ConfigError(field, f"{prefix}not valid YAML: {' '.join(str(e).split())}") from None


def _read_text(path: Path) -> str:
    """A config file's text; ConfigError("config") where it is missing, a directory or unreadable."""
    if not path.exists():
        raise ConfigError("config", f"file not found: {path}")
    if path.is_dir():
        raise ConfigError("config", f"{path} is a directory; give a YAML file (e.g. configs/quickstart.yaml)")
    try:
        return path.read_text()
    except UnicodeDecodeError:
        raise ConfigError("config", f"{path} is not a text (YAML) file") from None
    except OSError as e:
        raise ConfigError("config", f"cannot read {path}: {e.strerror or e}") from None


def is_float_text(text: str) -> bool:
    return _FLOAT_RE.match(text.strip()) is not None


def check_rate(name: str, v, where: str) -> float:
    """One value of a learning-rate axis: a finite number >= 0 (``lr_1_fraction`` in [0, 1])."""
    if isinstance(v, str) and is_float_text(v):
        v = float(v)
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise ConfigError(where, f"learning rates must be finite numbers, got {v!r}")
    if name == "lr_1_fraction" and not 0.0 <= v <= 1.0:
        raise ConfigError(where, f"lr_1_fraction must be in [0, 1], got {v!r}")
    if name != "lr_1_fraction" and v < 0:
        raise ConfigError(where, f"learning rates must be >= 0, got {v!r}")
    return float(v)
