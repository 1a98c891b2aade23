"""What families register, and where the core and the front ends find it.

A leaf: this module imports nothing of lrsweep, so every layer (core, compare, plots, cli) and every
family can import it without a cycle. A family (``lrsweep/families/<paper>/__init__.py``, or a
package outside lrsweep named in ``LRSWEEP_FAMILIES``) fills these tables when
:func:`lrsweep.families.load` imports it; nothing else writes them.

Tables:
  FIELDS       config path -> ``Field`` (:mod:`lrsweep.core.config`): the schema. Core fields are
               registered by the core itself, family fields by their family.
  TASK_RULES   task name -> :class:`TaskRules`: what the config knows of a task (``task.kind`` choices).
  SECTIONS     top-level config sections a family's command reads (``schedule_search``).
  VALIDATORS   ``fn(point, arch)`` cross-field checks of one static combination (raise ConfigError).
  RATE_SCHEMES learning-rate grid axes beyond the core's (``lr``, ``lr_total``, ``lr_1_fraction``,
               ``lr_1..lr_m``): :class:`RateScheme` (seed 000's ``lr_line``, seed 002's head rates).
  GRID_HOOKS   ``fn(table)`` on the expanded student columns after the rates are resolved.
  TASKS        task name -> ``Task`` (:mod:`lrsweep.core.tasks`).
  METRICS      metric name -> ``Metric`` / ``Reduction`` (:mod:`lrsweep.core.metrics`).
  STEP_HOOKS   :class:`StepHook`: what moves weights before every optimizer step (seed 002's
               head rule moves the last layer there).
  THEORIES, CHECKS, SUMMARIES (and their options): what ``lrsweep compare`` runs.
  FIGURES      ``fn(run, name, curves) -> [(stem, Figure)]``: what ``lrsweep plot`` draws.
  RUN_KINDS    kind -> :class:`RunKind`: runs that are not a student grid (a schedule search).
  STAGES       name -> :class:`Stage`: work a family's command adds to a run (a bisection, a Monte
               Carlo verification), which the run's status includes.
  COMMANDS     name -> :class:`Command`: extra CLI subcommands (``boundary``, ``schedule``).
  SHOW_LINES   ``fn(run, meta) -> [str]``: what ``lrsweep show`` adds for a run a family extended.
"""

from __future__ import annotations

import dataclasses
import importlib
from typing import Any, Callable

_PENDING: list[str] = []  # modules whose registrations come in on the first read of an on-demand table


def load_later(module: str) -> None:
    """Import ``module`` (a family's training side: tasks, metrics, step hooks, which import jax) when a
    table it fills is first read, not when the family is loaded: the config, comparison and figures
    of every family load without jax."""
    _PENDING.append(module)


def _complete() -> None:
    while _PENDING:
        importlib.import_module(_PENDING.pop(0))


class _OnDemand(dict):
    """A table that first imports the pending modules (:func:`load_later`) whenever it is read."""
    def __getitem__(self, key):
        _complete()
        return super().__getitem__(key)

    def __contains__(self, key):
        _complete()
        return super().__contains__(key)

    def __iter__(self):
        _complete()
        return super().__iter__()

    def __len__(self):
        _complete()
        return super().__len__()

    def get(self, key, default=None):
        _complete()
        return super().get(key, default)

    def keys(self):
        _complete()
        return super().keys()

    def values(self):
        _complete()
        return super().values()

    def items(self):
        _complete()
        return super().items()

FIELDS: dict[str, Any] = {}
TASK_RULES: dict[str, "TaskRules"] = {}
SECTIONS: dict[str, "Section"] = {}  # top-level config sections a family reads (``schedule_search``) -> its command
VALIDATORS: list[Callable] = []
RATE_SCHEMES: dict[str, "RateScheme"] = {}
GRID_HOOKS: list[Callable] = []
TASKS: dict[str, Any] = _OnDemand()
METRICS: dict[str, Any] = _OnDemand()
STEP_HOOKS: dict[str, "StepHook"] = _OnDemand()
FIGURES: list[Callable] = []
FIGURE_CLAIMS: dict[str, list[Callable]] = {"loss": [], "rate": []}  # see register_figures
RUN_KINDS: dict[str, "RunKind"] = {}
STAGES: dict[str, "Stage"] = {}
COMMANDS: dict[str, "Command"] = {}
SHOW_LINES: list[Callable] = []

THEORIES: dict[str, "Theory"] = {}
SUMMARIES: dict[str, Callable] = {}  # table name -> fn(comparison table, run) -> DataFrame
SUMMARY_TEXT: dict[str, Callable] = {}  # table name -> fn(frame, run) -> a line for `lrsweep compare`
CHECKS: dict[str, Callable] = {}     # check name -> fn(students, curves) -> DataFrame of CHECK_COLUMNS
REPORTED: set = set()                # checks of informal statements: shown, never failing the verdict
TABLE_CHECKS: dict[str, str] = {}    # check name -> the run table it reads instead (``boundaries``)
CHECK_CURVE_COLUMNS: dict[str, tuple] = {}  # check name -> the curve metrics it reads (fnmatch patterns)
CHECK_COLUMNS = ("configuration", "n", "passed", "detail")


@dataclasses.dataclass(frozen=True)
class Theory:
    """A registered prediction of a seed mean.

    Attributes:
      name: registry key, e.g. ``layer_balancing.two_layer``.
      matches: ``students -> bool mask`` of the students the theory covers (any gradient).
      predict: ``(frame, step) -> predictions`` for rows of the students table at a logged step.
      steps: the logged steps it predicts (a tuple, or a ``range`` where it covers many).
      exact_for: ``students -> bool mask`` where the prediction is an exact expectation (so the
        Monte Carlo residual must be within standard errors); elsewhere it is an approximation and
        only the relative gap is reported.
      reference: where the formula comes from.
      title: what it predicts in plain words, for figure titles; the registry name when empty.
      judge_means: ``(points, samples) -> DataFrame`` (one row per point, same index) with a bool
        column ``reliable``: whether each point's seed mean can be trusted at all (a heavy-tailed loss
        near a stability bound: its standard error is no error bar), plus the columns it was decided
        from; ``samples``: per point, its seeds' values. An exact point whose mean is not reliable is
        reported, not judged by z. None: every mean is judged.
    """
    name: str
    matches: Callable
    predict: Callable
    steps: tuple | range
    exact_for: Callable
    reference: str = ""
    title: str = ""
    judge_means: Callable | None = None


@dataclasses.dataclass(frozen=True)
class TaskRules:
    """The config's view of a task (no jax): ``online``: fresh samples every step unless ``task.online``
    says otherwise; ``defaults``: field path -> value where the config gives none (``single_point``:
    one input); ``check(point, arch)``: its cross-field checks (ConfigError)."""
    online: bool = False
    defaults: dict = dataclasses.field(default_factory=dict)
    check: Callable | None = None


@dataclasses.dataclass(frozen=True)
class Section:
    """A top-level config section read by a family's CLI subcommand ``command``; ``default_lr``: the
    grid's ``lr`` where it gives no rate (the command finds the rates itself)."""
    command: str
    default_lr: float | None = None


@dataclasses.dataclass(frozen=True)
class RateScheme:
    """Grid axes that set the per-layer learning rates eta_1..eta_m another way.

    Attributes:
      name: e.g. ``head``.
      axes: the grid axis names it owns (``lr_body``, ``lr_head``, ``lr_ratio``).
      check_value: ``(axis, value, where) -> float``, or None for the core's check (a finite rate >= 0).
      check_axes: ``(names, axes) -> None``: the axis names of the grid combine as allowed (ConfigError).
      settings: axes whose every value is a setting of its own (``lr_line``: one line C), not a rate that
        ``lrsweep run``'s best-rates table optimises.
      resolve: ``(point, m) -> [eta_1..eta_m]`` or None where the point has none of its axes; the values
        may be numpy columns (one entry per student).
      columns: ``(point, lrs, m_row) -> {column: (n,)}``: label columns stored beside lr_1..lr_m.
      expand: ``(names, values) -> (names, values)``: an axis whose one value stands for several points
        (``lr_line``: C -> the authors' (eta_1, rest) points), or None.
      size: ``(names, values) -> number of students`` of an expanded axis (None: not the scheme's).
      label: ``(names, entry) -> str``: one entry as the config writes it (None: not the scheme's).
      derived: ``axes on the grid -> columns`` the scheme's axes set (``lr_ratio`` .inf sets ``head``).
      variants: ``axes -> [overrides]``: other settings some students of the grid take (checked too).
    """
    name: str
    axes: tuple
    resolve: Callable
    check_axes: Callable = lambda names, axes: None
    check_value: Callable | None = None
    columns: Callable = lambda point, lrs, m_row: {}
    expand: Callable | None = None
    size: Callable | None = None
    label: Callable | None = None
    derived: Callable = lambda on_axes: set()
    variants: Callable = lambda axes: []
    settings: tuple = ()


@dataclasses.dataclass(frozen=True)
class StepHook:
    """What moves some layers before every optimizer step, outside it (seed 002's head rules).

    Attributes:
      fn: ``(spec, hparams, params, inst, ctx) -> params``.
      applies: ``spec -> bool``, static: a group it does not apply to compiles no trace of it.
      moves: ``spec -> layer names`` it moves: the optimizer leaves them (their rate may be inf).
      why: ``spec -> str``, why such a group is not a plain optimizer step (poly mode refuses it).
      summary: ``spec -> str``, a few words for ``run --dry-run``.
      init_state: None, or ``(spec, params, inst) -> pytree``: a per-student state the engine carries
        from step to step (and checkpoints with the weights; frozen with a diverged student); ``fn`` is
        then ``(spec, hparams, params, inst, ctx, state) -> (params, state)``.
      state_elements: ``spec -> int``, the elements of that state per student (the chunk planner's
        memory estimate, :func:`lrsweep.core.chunking.bytes_per_student`); 0 without state.
    """
    fn: Callable
    applies: Callable
    moves: Callable
    why: Callable
    summary: Callable
    init_state: Callable | None = None
    state_elements: Callable = lambda spec: 0


@dataclasses.dataclass(frozen=True)
class RunKind:
    """A kind of run other than a student grid, recognised by the files it writes.

    Attributes:
      name: e.g. ``schedule_search``.
      detect: ``run_dir -> bool``.
      figures: ``run_dir -> [(stem, Figure)]`` (replaces the student-grid figures).
      show: ``run_dir -> exit code``: what ``lrsweep show`` prints of it.
      tables: the files of RUN/ it writes: the run is complete when they are readable, else corrupt.
      resume: the command that finishes or repairs such a run, ``{run}`` for its directory.
    ``lrsweep compare`` runs its table checks (:func:`register_check` with ``table=``).
    Its ``meta.json`` carries ``status`` (running, interrupted, failed, complete) as a student run's does.
    """
    name: str
    detect: Callable
    figures: Callable | None = None
    show: Callable | None = None
    tables: tuple = ()
    resume: str | None = None


@dataclasses.dataclass(frozen=True)
class Stage:
    """Work a family's command adds to a run after its students (``lrsweep boundary``'s bisection, the
    Monte Carlo verification of ``lrsweep schedule --verify``), part of the run's status.

    The command records ``meta.json[name] = {"status": "running", ...}`` before it starts and
    ``"complete"`` (with ``rows``: table file -> row count) once its tables are written; a run whose
    stage is not complete is ``incomplete`` (:func:`lrsweep.core.runstate.run_state`), and one whose
    stage table is unreadable or not the size recorded is ``corrupt``; either way ``resume`` repairs it.

    Attributes:
      name: the key in meta.json (``boundary``, ``verify``).
      what: what it is, for messages (``the bisection``).
      tables: the files of RUN/ it writes (``boundaries.parquet``).
      resume: the command that finishes or repairs it, ``{run}`` for the run directory.
    """
    name: str
    what: str
    tables: tuple
    resume: str


@dataclasses.dataclass(frozen=True)
class Command:
    """A CLI subcommand: ``add_arguments(parser)`` fills its argparse parser, ``run(args) -> exit code``;
    ``epilog``: examples shown by ``--help`` after the options, as written (lines kept)."""
    name: str
    help: str
    description: str
    add_arguments: Callable
    run: Callable
    epilog: str = ""


def register_field(field) -> None:
    """Add a config field (a ``Field`` of :mod:`lrsweep.core.config`); its path must be new."""
    assert field.path not in FIELDS, f"field {field.path} registered twice"
    FIELDS[field.path] = field


def register_task_rules(name: str, rules: TaskRules) -> None:
    """Add a task's config rules (its name becomes a ``task.kind`` choice)."""
    TASK_RULES[name] = rules


def register_section(name: str, section: Section) -> None:
    """Allow a top-level config section ``name`` (:class:`Section`)."""
    SECTIONS[name] = section


def register_validator(fn: Callable) -> None:
    """Add a cross-field check ``fn(point, arch)`` of one static combination (raises ConfigError)."""
    VALIDATORS.append(fn)


def register_rate_scheme(scheme: RateScheme) -> None:
    """Add learning-rate grid axes (:class:`RateScheme`)."""
    RATE_SCHEMES[scheme.name] = scheme


def register_grid_hook(fn: Callable) -> None:
    """Add ``fn(table)``, applied to the expanded student columns ({column: (n,)}) after the rates."""
    GRID_HOOKS.append(fn)


def register_task(task) -> None:
    """Add a task (a ``Task`` of :mod:`lrsweep.core.tasks`) under its ``name``."""
    dict.__setitem__(TASKS, task.name, task)


def register_metric(name: str, metric) -> None:
    """Add a logged metric or a running reduction (:mod:`lrsweep.core.metrics`) under ``name``."""
    dict.__setitem__(METRICS, name, metric)


def register_step_hook(name: str, hook: StepHook) -> None:
    """Add a :class:`StepHook`: its ``fn`` runs before every optimizer step (and before the final
    evaluation) of the groups where ``applies(spec)``."""
    dict.__setitem__(STEP_HOOKS, name, hook)


def register_theory(theory: Theory) -> Theory:
    """Add a theory (a family calls this when loaded); returns it."""
    THEORIES[theory.name] = theory
    return theory


def register_summary(name: str, fn: Callable, text: Callable | None = None) -> None:
    """Add a per-family summary of the comparison table, written to ``<run>/<name>.parquet``; ``text(frame,
    run) -> str``: what ``lrsweep compare`` prints of it."""
    SUMMARIES[name] = fn
    if text is not None:
        SUMMARY_TEXT[name] = text


def register_check(name: str, fn: Callable, *, strict: bool = True, table: str | None = None,
                   curve_columns: tuple | None = None) -> None:
    """Add a check: ``fn(students, curves) -> DataFrame`` with one row per configuration it covers,
    columns :data:`CHECK_COLUMNS` (``configuration`` text, ``n`` students, ``passed`` bool,
    ``detail`` text); an empty frame when it covers no student. ``students``: one row per student;
    ``curves``: one row per student and logged step, joined with the student columns.
    ``strict=False``: a paper's informal statement, tested and reported (``HOLDS`` / ``DOES NOT
    HOLD``) but never failing the verdict. ``table``: the check reads ``RUN/<table>.parquet``
    instead, as ``fn(frame)`` (run only where the run has that table). ``curve_columns``: the curve
    metrics ``fn`` reads (names or fnmatch patterns); when every check of a comparison declares them,
    the others are never read."""
    CHECKS[name] = fn
    if curve_columns is not None:
        CHECK_CURVE_COLUMNS[name] = tuple(curve_columns)
    if table is not None:
        TABLE_CHECKS[name] = table
    if not strict:
        REPORTED.add(name)


def register_figures(fn: Callable, *, claims: Callable | None = None, replaces: str = "loss") -> None:
    """Add ``fn(run, name, curves) -> [(stem, Figure)]``: a family's figures of a student run (an
    empty list where the run is not the family's). ``claims(curves) -> bool``: the runs whose generic
    figures the family's replace: ``replaces="loss"`` every test-loss figure, ``"rate"`` the loss
    against the learning rate only (:mod:`lrsweep.plots.loss`)."""
    FIGURES.append(fn)
    if claims is not None:
        FIGURE_CLAIMS[replaces].append(claims)


def claimed(curves, replaces: str) -> bool:
    """Whether a registered family draws ``replaces`` figures of this run itself."""
    return any(claims(curves) for claims in FIGURE_CLAIMS[replaces])


def register_run_kind(kind: RunKind) -> None:
    """Add a kind of run other than a student grid."""
    RUN_KINDS[kind.name] = kind


def register_stage(stage: Stage) -> None:
    """Add work a family's command adds to a run (:class:`Stage`)."""
    assert stage.name not in STAGES, f"stage {stage.name} registered twice"
    STAGES[stage.name] = stage


def register_command(command: Command) -> None:
    """Add a CLI subcommand."""
    assert command.name not in COMMANDS, f"command {command.name} registered twice"
    COMMANDS[command.name] = command


def register_show_lines(fn: Callable) -> None:
    """Add ``fn(run, meta) -> [str]``: lines ``lrsweep show`` prints for a run (none where it does not apply)."""
    SHOW_LINES.append(fn)


def run_kind(run) -> RunKind | None:
    """The registered kind of the run directory ``run``, None for a student grid."""
    return next((kind for kind in RUN_KINDS.values() if kind.detect(run)), None)
