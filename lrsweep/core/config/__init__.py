"""Sweep configs: schema, validation and grid expansion (no jax here).

A config is plain data (a YAML file or a dict). :func:`load_config` validates it against
:data:`FIELDS` and returns a :class:`SweepConfig`; :func:`expand_grid` turns it into a
pandas DataFrame with one row per student. Every check happens here, before any compute,
and raises :class:`ConfigError` naming the field and the allowed values.

Learning rates are given per trainable layer (``lr_1 .. lr_m``, eta_l), shared (``lr``), or as
``lr_total`` (C = eta_1 + ... + eta_m) times ``lr_1_fraction`` (eta_1 = f C, the other layers share
the rest equally); families add their own rate axes (:class:`lrsweep.registry.RateScheme`: seed
000's line grid ``lr_line``, seed 002's ``lr_body``, ``lr_head``, ``lr_ratio``).

The package: :mod:`.schema` (fields), :mod:`.values` (one field's values), :mod:`.load` (a config),
:mod:`.validate` (cross-field checks), :mod:`.grid` (expansion), :mod:`.columnar` (broadcast columns).
"""

from lrsweep.core.errors import ConfigError  # noqa: F401  (re-exported: lrsweep.core.config.ConfigError)
from lrsweep.core.config.columnar import (  # noqa: F401
    equals, has_metric, select_rows, _first_duplicate)
from lrsweep.core.config.schema import (  # noqa: F401
    Field, ROLES, FIELDS, columns, field_columns, EXTRA_ALIASES, aliases, CORE_RATE_AXES, CORE_SECTIONS, top_level, rate_axes, is_rate_axis,
    describe_schema, stored_columns, path_of, static_columns)
from lrsweep.core.config.values import (  # noqa: F401
    check_value, ARRAYS, register_arrays, array_table, arrays_as_lists, ARRAY_INDEX, ARRAY_KIND, PATH_ALIASES, grid_values, parse_yaml, is_float_text, check_rate)
from lrsweep.core.config.validate import (  # noqa: F401
    online, log_steps, default_target_std)
from lrsweep.core.config.load import (  # noqa: F401
    SweepConfig, apply_overrides, load_config)
from lrsweep.core.config.grid import (  # noqa: F401
    resolve_lrs, grid_size, DEFAULT_MAX_STUDENTS, check_grid_size, expand_grid, student_columns, axis_columns)
