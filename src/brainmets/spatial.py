"""Voxel grids and the transforms file of a preprocessed case (core layer).

The preprocess stage writes ``<ID>-transforms.json`` (:class:`CaseTransforms`); segmentation
import, the DICOM SEG export and the review app read it. This module is that file format's
one definition, so that no reader reaches into the preprocess stage.

Convention: every matrix is a 4x4 in world coordinates (RAS mm) that maps a point of the
*reference* space to the corresponding point of the *target* image's native world — the
direction in which images are resampled ("pull back"). ``atlas_to["flair"]`` takes an SRI24
world point to the FLAIR scanner world point showing the same anatomy; it is the
composition ``t1c_to["flair"] @ atlas_to["t1c"]`` of the two registrations.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np

from brainmets.fsutil import atomic_write_text

#: format tag of ``<ID>-transforms.json``
FORMAT = "brainmets.preprocess.transforms/1"


@dataclass
class Grid:
    """A voxel grid: array shape and voxel -> world (RAS mm) affine."""

    shape: tuple[int, int, int]
    affine: np.ndarray

    @property
    def spacing(self) -> np.ndarray:
        return np.sqrt((self.affine[:3, :3] ** 2).sum(axis=0))

    def same_as(self, other: Grid, tol: float = 1e-3) -> bool:
        return self.shape == other.shape and bool(np.allclose(self.affine, other.affine, atol=tol))

    def to_json(self) -> dict[str, object]:
        return {"shape": list(self.shape), "affine": np.round(self.affine, 8).tolist()}

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Grid:
        shape = cast("tuple[int, int, int]", tuple(int(v) for v in d["shape"]))
        return cls(shape, np.asarray(d["affine"], dtype=float))


@dataclass
class CaseTransforms:
    """Registrations and grids of one case (see the module docstring for conventions).

    Attributes:
        case_id: the case / patient identifier.
        atlas_grid: the SRI24 output grid.
        atlas_to: sequence -> composed atlas world -> native world matrix.
        t1c_to: sequence -> T1c world -> native world (co-registration; identity for t1c).
        native_grids: sequence -> native grid (as read, before any reorientation).
        inputs: sequence -> input file path.
        atlas_registration: "rigid", "rigid-direct" or "affine" (how atlas_to["t1c"] was
            estimated; see ``PreprocessOptions``).
        passthrough: the input was already in SRI24 space (``"world"`` or ``"index"``), or "".
    """

    case_id: str
    atlas_grid: Grid
    atlas_to: dict[str, np.ndarray] = field(default_factory=dict)
    t1c_to: dict[str, np.ndarray] = field(default_factory=dict)
    native_grids: dict[str, Grid] = field(default_factory=dict)
    inputs: dict[str, str] = field(default_factory=dict)
    atlas_registration: str = "rigid"
    passthrough: str = ""
    details: dict[str, Any] = field(default_factory=dict)

    # ------------------------------------------------------------------ geometry
    def native_to_atlas_matrix(self, sequence: str) -> np.ndarray:
        """Native world of ``sequence`` -> atlas world (the inverse of ``atlas_to``)."""
        return np.linalg.inv(self._atlas_to(sequence))

    def _atlas_to(self, sequence: str) -> np.ndarray:
        try:
            return self.atlas_to[sequence]
        except KeyError as exc:
            raise KeyError(
                f"{self.case_id}: no transform for {sequence!r}; have {sorted(self.atlas_to)}"
            ) from exc

    def index_map(self, sequence: str) -> np.ndarray | None:
        """For an index pass-through: atlas voxel -> native voxel (4x4), else None."""
        m = self.details.get("index_map", {}).get(sequence)
        return None if m is None else np.asarray(m, dtype=float)

    # ------------------------------------------------------------------ persistence
    def to_json(self) -> dict[str, Any]:
        def r(m: np.ndarray) -> list[list[float]]:
            return np.round(np.asarray(m, dtype=float), 10).tolist()

        return {
            "format": FORMAT,
            "case_id": self.case_id,
            "convention": (
                "4x4 matrices in world coordinates (RAS mm); atlas_to[s] maps an SRI24 world "
                "point to the native world point of sequence s (resampling direction); "
                "t1c_to[s] maps a T1c world point to sequence s; atlas_to[s] = t1c_to[s] @ "
                "atlas_to['t1c']"
            ),
            "atlas_registration": self.atlas_registration,
            "passthrough": self.passthrough,
            "atlas_grid": self.atlas_grid.to_json(),
            "atlas_to": {k: r(v) for k, v in self.atlas_to.items()},
            "t1c_to": {k: r(v) for k, v in self.t1c_to.items()},
            "native_grids": {k: g.to_json() for k, g in self.native_grids.items()},
            "inputs": dict(self.inputs),
            "details": self.details,
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> CaseTransforms:
        if d.get("format") != FORMAT:
            raise ValueError(f"not a brainmets transforms file (format {d.get('format')!r})")
        return cls(
            case_id=str(d["case_id"]),
            atlas_grid=Grid.from_json(d["atlas_grid"]),
            atlas_to={k: np.asarray(v, dtype=float) for k, v in d["atlas_to"].items()},
            t1c_to={k: np.asarray(v, dtype=float) for k, v in d.get("t1c_to", {}).items()},
            native_grids={k: Grid.from_json(v) for k, v in d.get("native_grids", {}).items()},
            inputs=dict(d.get("inputs", {})),
            atlas_registration=str(d.get("atlas_registration", "rigid")),
            passthrough=str(d.get("passthrough", "")),
            details=dict(d.get("details", {})),
        )

    def save(self, path: str | os.PathLike[str]) -> Path:
        return atomic_write_text(path, json.dumps(self.to_json(), indent=1))

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> CaseTransforms:
        return cls.from_json(json.loads(Path(path).read_text()))
