"""Workspace configuration (``brainmets.toml``).

The configuration is a TOML file at the workspace root. It names the workspace's folders,
the atlas location, the de-identification key file, the runner's defaults and one table of
parameters per stage (``[stages.<name>]``). Parameters not given in the file take the
stage's documented defaults; the merged parameters of a stage are part of that stage's
fingerprint, so changing one re-runs that stage and every stage after it.
"""

from __future__ import annotations

import copy
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomli_w

from brainmets.fsutil import atomic_write_text

CONFIG_NAME = "brainmets.toml"
CONFIG_FORMAT = 1

DEFAULT_CONFIG: dict[str, Any] = {
    "brainmets": {"config_format": CONFIG_FORMAT},
    "paths": {
        # Folders of the workspace, relative to its root unless absolute.
        "sources": [],  # input DICOM folders registered by `brainmets ingest`
        "dicom": "data/dicom",  # de-identified DICOM
        "received": "data/received",  # de-identified on receipt by `brainmets receive`
        "derivatives": "data/derivatives",  # per-patient stage outputs
        "quarantine": "private/quarantine",  # inputs withheld from the dataset
        "exports": "exports",
        "logs": "logs",
        "private": "private",  # never exported: key, mapping files
    },
    "atlas": {"dir": ""},  # empty: BRAINMETS_ATLAS_DIR, user data dir, ../shared
    "deid": {"key_file": "private/deid.key"},
    "runner": {"workers": 0, "scheduler": "", "pipeline": "brainmets.stages:default_pipeline"},
    "stages": {},
}


class ConfigError(ValueError):
    """The configuration file is missing, unreadable or invalid."""


def _merge(base: dict[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for k, v in override.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


@dataclass
class Config:
    """A workspace's configuration, merged over :data:`DEFAULT_CONFIG`."""

    root: Path
    data: dict[str, Any] = field(default_factory=lambda: copy.deepcopy(DEFAULT_CONFIG))

    @classmethod
    def load(cls, root: Path) -> Config:
        path = root / CONFIG_NAME
        try:
            raw = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise ConfigError(f"{path}: no configuration file") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: invalid TOML: {exc}") from exc
        fmt = raw.get("brainmets", {}).get("config_format", CONFIG_FORMAT)
        if not isinstance(fmt, int) or fmt > CONFIG_FORMAT:
            raise ConfigError(
                f"{path}: config_format {fmt} is newer than this brainmets understands "
                f"({CONFIG_FORMAT}); upgrade brainmets"
            )
        for section in ("paths", "atlas", "deid", "runner", "stages"):
            if section in raw and not isinstance(raw[section], dict):
                raise ConfigError(f"{path}: [{section}] must be a table")
        return cls(root=root, data=_merge(DEFAULT_CONFIG, raw))

    def save(self) -> Path:
        return atomic_write_text(self.root / CONFIG_NAME, self.dumps())

    def dumps(self) -> str:
        header = (
            "# brainmets workspace configuration.\n"
            "# [stages.<name>] tables override stage parameters; `brainmets stages` lists them.\n"
        )
        return header + tomli_w.dumps(self.data)

    # ----------------------------------------------------------------- accessors
    def path(self, name: str) -> Path:
        """A workspace folder from ``[paths]``, resolved against the root."""
        value = self.data["paths"].get(name)
        if not isinstance(value, str) or not value:
            raise ConfigError(f"[paths].{name} is not set")
        p = Path(value).expanduser()
        return p if p.is_absolute() else self.root / p

    @property
    def sources(self) -> list[Path]:
        return [Path(s) for s in self.data["paths"].get("sources", [])]

    def add_source(self, folder: Path) -> bool:
        folder = folder.resolve()
        sources = self.data["paths"].setdefault("sources", [])
        if str(folder) in sources:
            return False
        sources.append(str(folder))
        return True

    @property
    def key_file(self) -> Path:
        p = Path(self.data["deid"]["key_file"]).expanduser()
        return p if p.is_absolute() else self.root / p

    @property
    def evaluations_dir(self) -> Path:
        """Where ``brainmets evaluate --workspace`` keeps evaluations (one folder per name),
        read by the report."""
        return self.path("derivatives") / "_cohort" / "evaluations"

    @property
    def atlas_dir(self) -> Path | None:
        d = self.data["atlas"].get("dir") or ""
        if not d:
            return None
        p = Path(d).expanduser()
        return p if p.is_absolute() else self.root / p

    def stage_params(self, stage: str, defaults: Mapping[str, Any]) -> dict[str, Any]:
        """The stage's defaults overridden by ``[stages.<stage>]``; unknown keys are errors."""
        given = self.data.get("stages", {}).get(stage, {})
        unknown = sorted(set(given) - set(defaults))
        if unknown:
            raise ConfigError(
                f"[stages.{stage}] has unknown parameter(s) {unknown}; known: {sorted(defaults)}"
            )
        return _merge(dict(defaults), given)

    def set_stage_param(self, stage: str, key: str, value: Any) -> None:
        self.data.setdefault("stages", {}).setdefault(stage, {})[key] = value
