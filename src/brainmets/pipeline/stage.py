"""The stage model: what a pipeline stage is, what it receives and what it returns.

A stage is a pure-ish function ``run(ctx: StageContext) -> StageResult`` of one patient
(or of the whole cohort) and its parameters. It reads the catalog (read-only) and files,
writes its files atomically into its own output folder, and returns the paths it wrote
plus the catalog rows it wants recorded. It never writes the catalog itself: the runner
does, in one transaction per stage, so that a killed run never leaves half-recorded work.
"""

from __future__ import annotations

import datetime as _dt
import importlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, Literal, Protocol, TypeVar

from brainmets.catalog import COHORT

if TYPE_CHECKING:
    from brainmets.catalog import Catalog
    from brainmets.pipeline.inputs import InputContext
    from brainmets.workspace import Workspace

Scope = Literal["patient", "cohort"]


@dataclass
class StageContext:
    """Everything a stage run may use. Picklable: it travels to worker processes."""

    patient_id: str
    stage: str
    params: dict[str, Any]
    root: Path
    config: dict[str, Any]
    inputs: dict[str, dict[str, str]] = field(default_factory=dict)
    run_id: int | None = None
    logs: list[dict[str, Any]] = field(default_factory=list)
    #: this patient's catalog rows (:meth:`Catalog.patient_snapshot`), given to stages that
    #: may run on another machine (Dask): :meth:`catalog` reads them instead of the file
    catalog_snapshot: bytes | None = None

    # ----------------------------------------------------------------- reading
    @property
    def is_cohort(self) -> bool:
        return self.patient_id == COHORT

    def workspace(self) -> Workspace:
        from brainmets.workspace import Workspace

        return Workspace.open(self.root)

    def catalog(self) -> Catalog:
        """The catalog, read-only (only the runner writes it): on a Dask worker, this
        patient's rows as the runner took them when it submitted the task."""
        from brainmets.catalog import Catalog
        from brainmets.workspace import CATALOG_NAME

        if self.catalog_snapshot is not None:
            return Catalog.from_snapshot(self.catalog_snapshot, self.root / CATALOG_NAME)
        return Catalog.open(self.root / CATALOG_NAME, readonly=True)

    def input(self, stage: str, role: str) -> Path:
        """Absolute path of an output of an earlier stage for this patient."""
        try:
            rel = self.inputs[stage][role]
        except KeyError as exc:
            have = {s: sorted(r) for s, r in self.inputs.items()}
            raise KeyError(f"no input {stage}/{role} for {self.patient_id}; have {have}") from exc
        return self.root / rel

    # ----------------------------------------------------------------- writing
    @property
    def out_dir(self) -> Path:
        """This stage's own folder for this patient (created on demand)."""
        from brainmets.config import Config

        base = Config(root=self.root, data=self.config).path("derivatives")
        d = base / ("_cohort" if self.is_cohort else self.patient_id) / self.stage
        d.mkdir(parents=True, exist_ok=True)
        return d

    def log(self, level: str, message: str, **fields: Any) -> None:
        """Queue a log record; the runner emits it with the patient and stage attached."""
        self.logs.append(
            {
                "time": _dt.datetime.now(_dt.UTC).isoformat(timespec="milliseconds"),
                "level": level.upper(),
                "message": message,
                **fields,
            }
        )

    def info(self, message: str, **fields: Any) -> None:
        self.log("INFO", message, **fields)

    def warning(self, message: str, **fields: Any) -> None:
        self.log("WARNING", message, **fields)


@dataclass
class StageResult:
    """What a stage returns.

    Attributes:
        outputs: role -> file written (inside the workspace). Hashed and recorded; a later
            run is skipped only while these files are intact.
        records: catalog table -> rows to upsert (patients, studies, series, instances,
            source_files).
        metrics: small JSON-able numbers worth keeping (counts, timings, QC values).
        tools: tool name -> version used, beyond brainmets itself.
        exclude: a reason to exclude this patient from the following stages (e.g. a
            missing pretreatment sequence), or None.
        waiting: what the stage waits for (e.g. ``"awaiting annotation: ..."``), or None.
            The stage cannot run for this patient yet, through nobody's fault: the run is
            recorded ``waiting`` with this reason, is not a failure, ends the patient's
            chain there (later stages are not run) and is tried again by the next run.
            ``outputs`` and ``records`` are not recorded.
    """

    outputs: dict[str, Path] = field(default_factory=dict)
    records: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    tools: dict[str, str] = field(default_factory=dict)
    exclude: str | None = None
    waiting: str | None = None


StageFunc = Callable[[StageContext], StageResult]
#: ``(InputContext) -> JSON-able``: see :mod:`brainmets.pipeline.inputs`
FingerprintInputs = Callable[["InputContext"], Any]


@dataclass(frozen=True)
class Stage:
    """A pipeline stage.

    Attributes:
        name: the stage's name (also its CLI command and config table).
        func: the stage function.
        scope: ``"patient"`` (runs once per patient, in parallel) or ``"cohort"``.
        version: bump when the stage's output changes for the same inputs and parameters;
            it is part of the fingerprint, so existing results are redone.
        defaults: parameters and their defaults; ``[stages.<name>]`` overrides them. Taken
            from ``options`` when that is given and ``defaults`` is not.
        options: the stage's typed options: a frozen dataclass whose fields are the
            parameters (see :mod:`brainmets.pipeline.options`); without one, a dataclass
            typed by the defaults' types is made. :meth:`check_params` builds it.
        summary: one line for ``--help`` and ``brainmets stages``.
        fingerprint_inputs: optional ``(InputContext) -> JSON-able`` (the context carries
            the workspace, the catalog, the patient and the merged parameters) that
            describes inputs not produced by earlier stages (e.g. source files), so that a
            change to them re-runs the stage.
        tools: optional callable returning tool versions (recorded in the catalog).
    """

    name: str
    func: StageFunc
    scope: Scope = "patient"
    version: str = "1"
    defaults: Mapping[str, Any] = field(default_factory=dict)
    summary: str = ""
    fingerprint_inputs: FingerprintInputs | None = None
    tools: Callable[[], dict[str, str]] | None = None
    options: type | None = None

    def __post_init__(self) -> None:
        if self.options is not None and not self.defaults:
            from brainmets.pipeline.options import option_defaults

            object.__setattr__(self, "defaults", option_defaults(self.options))

    @property
    def options_class(self) -> type:
        """The typed options (declared, or made from the defaults)."""
        if self.options is not None:
            return self.options
        from brainmets.pipeline.options import options_class

        return options_class(f"{self.name.title()}Options", self.defaults)

    def check_params(self, params: Mapping[str, Any]) -> Any:
        """The stage's options object from ``params`` (parameters not given take their
        defaults); :class:`brainmets.pipeline.options.ParamError` names an unknown
        parameter or a value of the wrong type or a refused value."""
        from brainmets.pipeline.options import build_options

        return build_options(self.options_class, params, self.name)

    def check_param(self, key: str, value: Any, current: Mapping[str, Any] | None = None) -> Any:
        """Check that ``key = value`` may be set, beside the ``current`` ``[stages.<name>]``
        values (what ``brainmets config set`` writes); returns the options object."""
        from brainmets.pipeline.options import ParamError

        if key not in self.defaults:
            raise ParamError(
                f"stage {self.name} has no parameter {key!r}; known: {sorted(self.defaults)}"
            )
        return self.check_params({**(current or {}), key: value})


class _Named(Protocol):
    @property
    def name(self) -> str: ...


_S = TypeVar("_S", bound=_Named)


class _StageSequence(Generic[_S]):
    """Stages in order, found by name (what :class:`Pipeline` and :class:`PipelineOutline`
    share)."""

    stages: tuple[_S, ...]

    @property
    def names(self) -> list[str]:
        return [s.name for s in self.stages]

    def get(self, name: str) -> _S:
        for s in self.stages:
            if s.name == name:
                return s
        raise KeyError(f"unknown stage {name!r}; stages are {self.names}")

    def index(self, name: str) -> int:
        return self.names.index(name)


@dataclass(frozen=True)
class Pipeline(_StageSequence[Stage]):
    """An ordered sequence of stages; data flows one way, from first to last."""

    stages: tuple[Stage, ...]

    def __post_init__(self) -> None:
        names = [s.name for s in self.stages]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate stage names in pipeline: {names}")

    def outline(self) -> PipelineOutline:
        """The stages by name and scope."""
        return PipelineOutline(tuple(StageOutline(s.name, s.scope) for s in self.stages))


@dataclass(frozen=True)
class StageOutline:
    """What a stage is without its code: its name and scope (for ``brainmets status``,
    which must not import the stages' imaging libraries)."""

    name: str
    scope: Scope = "patient"


@dataclass(frozen=True)
class PipelineOutline(_StageSequence[StageOutline]):
    """The stages of a pipeline by name and scope, in order: what
    :func:`brainmets.pipeline.states.stage_states` and ``brainmets status`` read.
    :meth:`Pipeline.outline` makes one from a loaded pipeline;
    :func:`brainmets.stages.default_outline` is the default pipeline's, without importing it.
    """

    stages: tuple[StageOutline, ...]


def load_pipeline(spec: str) -> Pipeline:
    """Load ``module:attribute`` naming a :class:`Pipeline` or a function returning one."""
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise ValueError(f"pipeline spec {spec!r} must look like 'package.module:name'")
    obj: Any = getattr(importlib.import_module(module_name), attr)
    if callable(obj) and not isinstance(obj, Pipeline):
        obj = obj()
    if not isinstance(obj, Pipeline):
        raise TypeError(f"{spec} is not a brainmets Pipeline")
    return obj


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def module_version(module: Any) -> str:
    """A tool's version for the provenance: ``__version__``, else the version of the
    installed distribution that provides the module (cc3d: ``connected-components-3d``),
    else ``"?"``."""
    v = getattr(module, "__version__", None)
    if v:
        return str(v)
    import importlib.metadata as md

    for name in md.packages_distributions().get(module.__name__.split(".")[0], []):
        try:
            return md.version(name)
        except md.PackageNotFoundError:
            continue
    return "?"
