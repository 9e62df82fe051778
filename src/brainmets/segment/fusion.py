"""Fusing per-lesion region masks into one label map (1 necrosis, 2 edema, 3 enhancing).

Per lesion (masks on the target grid):

* necrosis ``N``; core ``C`` = core mask | enhancing mask; whole ``W`` = whole mask | edema
  mask (without a whole/edema mask: ``W = C | N``);
* label 1 = ``N``, label 3 = ``C - N``, label 2 = ``W - C - N``.

Conflicts, each reported per lesion with its voxel count and resolution (:class:`FusionRules`):

* **necrosis outside the core** (``N - C``): ``"keep"`` (default; the voxels stay necrosis and
  count as core) or ``"drop"`` (they are not necrosis; edema if inside the whole tumour);
* **core outside the whole tumour** (``(C | N) - W``, only when a whole-tumour mask exists):
  ``"keep"`` (default; the core stands, the whole tumour grows) or ``"drop"`` (those core
  voxels become background);
* **overlapping lesions with different labels**: the label earlier in ``overlap_priority``
  wins (default necrosis, enhancing, edema). Overlaps with the same label are not conflicts.
* a lesion with a whole-tumour but no core mask is reported (``"whole without core"``): its
  voxels are edema.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from brainmets.vocab import EDEMA, ENHANCING, NECROSIS

RULE_CHOICES = ("keep", "drop")


@dataclass(frozen=True)
class FusionRules:
    """How fusion resolves conflicts (see the module docstring)."""

    necrosis_outside_core: str = "keep"
    core_outside_whole: str = "keep"
    overlap_priority: tuple[int, ...] = (NECROSIS, ENHANCING, EDEMA)

    def __post_init__(self) -> None:
        for name in ("necrosis_outside_core", "core_outside_whole"):
            if getattr(self, name) not in RULE_CHOICES:
                raise ValueError(
                    f"{name} must be one of {RULE_CHOICES}, not {getattr(self, name)!r}"
                )
        if sorted(self.overlap_priority) != [NECROSIS, EDEMA, ENHANCING]:
            raise ValueError(
                "overlap_priority must order the labels 1, 2, 3 "
                f"(got {list(self.overlap_priority)})"
            )

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> FusionRules:
        kw = {f.name: values[f.name] for f in dataclasses.fields(cls) if f.name in values}
        if "overlap_priority" in kw:
            kw["overlap_priority"] = tuple(int(v) for v in kw["overlap_priority"])
        return cls(**kw)


@dataclass
class RegionMask:
    """One region of one lesion on the target grid: a boolean box at ``box``."""

    region: str  # core, necrosis, whole, enhancing, edema
    lesion: str
    box: tuple[slice, ...]
    mask: np.ndarray
    source: str = ""


@dataclass
class Conflict:
    lesion: str
    kind: str
    voxels: int
    resolution: str
    other_lesion: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class FusionResult:
    labels: np.ndarray
    conflicts: list[Conflict] = field(default_factory=list)
    lesions: dict[str, dict[str, int]] = field(default_factory=dict)

    def report(self) -> dict[str, Any]:
        return {
            "voxels": {
                "necrosis": int((self.labels == NECROSIS).sum()),
                "edema": int((self.labels == EDEMA).sum()),
                "enhancing": int((self.labels == ENHANCING).sum()),
            },
            "lesions": self.lesions,
            "conflicts": [c.as_dict() for c in self.conflicts],
        }


def _union_box(boxes: Sequence[tuple[slice, ...]]) -> tuple[slice, ...]:
    return tuple(
        slice(min(b[a].start for b in boxes), max(b[a].stop for b in boxes)) for a in range(3)
    )


def _lesion_sort_key(name: str) -> tuple[int, int, str]:
    return (0, int(name), "") if name.isdigit() else (1, 0, name)


def fuse(
    masks: Sequence[RegionMask],
    shape: tuple[int, int, int],
    rules: FusionRules | None = None,
    base: np.ndarray | None = None,
) -> FusionResult:
    """Fuse region masks into a ``uint8`` label map of ``shape``.

    ``base`` (optional) is a label map already on the grid (e.g. an imported combined label
    map) that the masks are fused into, as the lesion named ``"labels"``.
    """
    rules = rules or FusionRules()
    rank = {lab: i for i, lab in enumerate(rules.overlap_priority)}
    rank_lut = np.array([len(rank)] + [rank[v] for v in (1, 2, 3)], dtype=np.int16)
    out = np.zeros(shape, np.uint8) if base is None else np.asarray(base, np.uint8).copy()
    owner = np.full(shape, -1, np.int16)
    names: list[str] = []
    result = FusionResult(out)
    if base is not None:
        names.append("labels")
        owner[out > 0] = 0
        result.lesions["labels"] = {
            "necrosis": int((out == NECROSIS).sum()),
            "enhancing": int((out == ENHANCING).sum()),
            "edema": int((out == EDEMA).sum()),
        }
    by_lesion: dict[str, list[RegionMask]] = {}
    for m in masks:
        by_lesion.setdefault(m.lesion, []).append(m)
    for lesion in sorted(by_lesion, key=_lesion_sort_key):
        group = by_lesion[lesion]
        name = lesion or "(all)"
        box = _union_box([m.box for m in group])
        bshape = tuple(s.stop - s.start for s in box)
        reg: dict[str, np.ndarray] = {}
        for m in group:
            arr = reg.setdefault(m.region, np.zeros(bshape, bool))
            local = tuple(
                slice(ms.start - bs.start, ms.stop - bs.start)
                for ms, bs in zip(m.box, box, strict=True)
            )
            arr[local] |= m.mask
        core = reg.get("core", np.zeros(bshape, bool)) | reg.get(
            "enhancing", np.zeros(bshape, bool)
        )
        nec = reg.get("necrosis", np.zeros(bshape, bool))
        has_whole = "whole" in reg or "edema" in reg
        whole = reg.get("whole", np.zeros(bshape, bool)) | reg.get("edema", np.zeros(bshape, bool))
        outside = nec & ~core
        if outside.any():
            n = int(outside.sum())
            if rules.necrosis_outside_core == "keep":
                core |= outside
                res = "kept as necrosis (core extended)"
            else:
                nec &= ~outside
                res = "dropped (edema where inside the whole tumour, else background)"
            result.conflicts.append(Conflict(name, "necrosis outside core", n, res))
        if "whole" in reg:
            out_w = (core | nec) & ~whole
            if out_w.any():
                n = int(out_w.sum())
                if rules.core_outside_whole == "keep":
                    res = "kept (whole tumour extended)"
                else:
                    core &= whole
                    nec &= whole
                    res = "dropped (background)"
                result.conflicts.append(Conflict(name, "core outside whole tumour", n, res))
        if has_whole and not (core.any() or nec.any()) and whole.any():
            result.conflicts.append(
                Conflict(name, "whole without core", int(whole.sum()), "labelled edema")
            )
        lab = np.zeros(bshape, np.uint8)
        lab[whole] = EDEMA
        lab[core] = ENHANCING
        lab[nec] = NECROSIS
        result.lesions[name] = {
            "necrosis": int((lab == NECROSIS).sum()),
            "enhancing": int((lab == ENHANCING).sum()),
            "edema": int((lab == EDEMA).sum()),
        }
        idx = len(names)
        names.append(name)
        g = out[box]
        o = owner[box]
        new = lab > 0
        clash = new & (g > 0) & (g != lab)
        wins = new & ((g == 0) | (clash & (rank_lut[lab] < rank_lut[g])))
        if clash.any():
            others = o[clash]
            for other in np.unique(others):
                sel = clash & (o == other)
                n = int(sel.sum())
                won = int((sel & wins).sum())
                labels_here = sorted(
                    {(int(a), int(b)) for a, b in zip(lab[sel], g[sel], strict=True)}
                )
                res = ", ".join(
                    f"{_NAMES[a]} vs {_NAMES[b]} -> {_NAMES[a if rank[a] < rank[b] else b]}"
                    for a, b in labels_here
                )
                result.conflicts.append(
                    Conflict(
                        name,
                        "overlapping lesions with different labels",
                        n,
                        f"{res} ({won} voxel(s) to this lesion)",
                        names[int(other)] if other >= 0 else None,
                    )
                )
        g[wins] = lab[wins]
        o[wins] = idx
    return result


_NAMES = {NECROSIS: "necrosis", EDEMA: "edema", ENHANCING: "enhancing"}
