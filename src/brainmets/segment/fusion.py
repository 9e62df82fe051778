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

Cleaning the edema. The whole tumour is usually drawn on a FLAIR of 5-7 mm slices, the core
on a 1 mm T1c; brought onto one 1 mm grid, ``W - C`` leaves slivers, caps and islands where
the two outlines disagree by less than a FLAIR voxel (partial volume, not edema), and each
would count as an edema lesion (the published count is the number of connected components
per label, which stays the definition). Per lesion, an edema component (26-connected) is
removed (background) when

* it has fewer than ``min_edema_voxels`` target voxels (default 30);
* ``detached_edema``: it touches no core voxel of its lesion (an island left by the thick
  slices; peritumoral edema surrounds its tumour): ``"join"`` (default) joins an island kept
  by the other rules to its lesion by a one-voxel line when the gap is at most one voxel of
  the grid the whole tumour was drawn on (a lobe the slices cut off) and removes it when
  farther; ``"drop"`` removes every island; ``"keep"`` keeps them;
* ``edema_shell = "drop"`` (default): no voxel of it lies farther from the core than half the
  largest voxel dimension of the grid the whole tumour was drawn on (a shell thinner than the
  partial-volume margin of that grid's 0.5 threshold);
Lesions drawn apart stay apart (``apart_contact = "drop"``, default; applied by the importer,
:func:`separate_drawn_apart`): where the cores (or the oedema) of two lesions that do not
touch on the grid they were drawn on touch after resampling, the contact layer of the larger
lesion is dropped (core voxels become oedema, oedema voxels background), so that the count
(connected components) sees two lesions, as drawn.

* ``edema_support = "drop"`` (default): none of its voxels is in the lesion's edema support
  (region :data:`SUPPORT`, computed by the importer: where the whole tumour exceeds the core
  on the grid the whole tumour was drawn on). Lesions without a support mask are not checked.

What was removed is recorded per lesion (``FusionResult.removed``: components and voxels).
``min_edema_voxels = 0`` and ``"keep"`` for the others turn the cleaning off. The defaults were
chosen by measurement against synthetic truth (docs/lesions.md,
``benchmarks/segment_truth.py``)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from brainmets.vocab import EDEMA, ENHANCING, NECROSIS

RULE_CHOICES = ("keep", "drop")
#: ``detached_edema``: ``join`` joins an island to its lesion by a one-voxel line when the gap
#: is at most one voxel of the grid the whole tumour was drawn on, and drops it otherwise
DETACHED_CHOICES = ("keep", "drop", "join")
#: edema components of fewer voxels than this are removed per lesion (see the module docstring)
DEFAULT_MIN_EDEMA_VOXELS = 30


@dataclass(frozen=True)
class FusionRules:
    """How fusion resolves conflicts (see the module docstring)."""

    necrosis_outside_core: str = "keep"
    core_outside_whole: str = "keep"
    overlap_priority: tuple[int, ...] = (NECROSIS, ENHANCING, EDEMA)
    min_edema_voxels: int = DEFAULT_MIN_EDEMA_VOXELS
    detached_edema: str = "join"
    edema_shell: str = "drop"
    edema_support: str = "drop"
    apart_contact: str = "drop"

    def __post_init__(self) -> None:
        if not isinstance(self.min_edema_voxels, int) or self.min_edema_voxels < 0:
            raise ValueError(
                f"min_edema_voxels must be an integer >= 0, not {self.min_edema_voxels!r}"
            )
        if self.detached_edema not in DETACHED_CHOICES:
            raise ValueError(
                f"detached_edema must be one of {DETACHED_CHOICES}, not {self.detached_edema!r}"
            )
        for name in (
            "necrosis_outside_core",
            "core_outside_whole",
            "edema_shell",
            "edema_support",
            "apart_contact",
        ):
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
        if "min_edema_voxels" in kw:
            kw["min_edema_voxels"] = int(kw["min_edema_voxels"])
        return cls(**kw)


#: the region name of a lesion's edema support (see :func:`fuse`): where its whole tumour
#: exceeds its core on the grid the whole tumour was drawn on
SUPPORT = "edema_support"


@dataclass
class RegionMask:
    """One region of one lesion on the target grid: a boolean box at ``box``."""

    region: str  # core, necrosis, whole, enhancing, edema
    lesion: str
    box: tuple[slice, ...]
    mask: np.ndarray
    source: str = ""
    #: the largest voxel dimension (mm) of the grid the mask was drawn on (0: unknown)
    drawn_voxel_mm: float = 0.0


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
    #: per lesion, the edema fragments removed by ``min_edema_voxels``: (components, voxels)
    removed: dict[str, tuple[int, int]] = field(default_factory=dict)
    #: the annotated lesion of every labelled voxel: ``instances[v] = i`` means lesion
    #: ``instance_names[i - 1]`` (``uint16``, 0 where the label map is 0)
    instances: np.ndarray | None = None
    instance_names: list[str] = field(default_factory=list)

    def report(self) -> dict[str, Any]:
        return {
            "voxels": {
                "necrosis": int((self.labels == NECROSIS).sum()),
                "edema": int((self.labels == EDEMA).sum()),
                "enhancing": int((self.labels == ENHANCING).sum()),
            },
            "lesions": self.lesions,
            "conflicts": [c.as_dict() for c in self.conflicts],
            "edema_fragments_removed": {
                name: {"components": n, "voxels": v} for name, (n, v) in self.removed.items()
            },
            "instances": {str(i): name for i, name in enumerate(self.instance_names, start=1)},
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
    voxel_mm: Sequence[float] = (1.0, 1.0, 1.0),
) -> FusionResult:
    """Fuse region masks into a ``uint8`` label map of ``shape``.

    ``base`` (optional) is a label map already on the grid (e.g. an imported combined label
    map) that the masks are fused into, as the lesion named ``"labels"``. ``voxel_mm``: the
    target grid's voxel size (for the edema shell rule).
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
        shell_mm = 0.0
        if rules.edema_shell == "drop":
            drawn = [m.drawn_voxel_mm for m in group if m.region in ("whole", "edema")]
            shell_mm = max(drawn, default=0.0) / 2.0
        support = reg.get(SUPPORT) if rules.edema_support == "drop" else None
        n_removed, v_removed = _remove_edema_fragments(
            lab,
            rules.min_edema_voxels,
            rules.detached_edema != "keep",
            shell_mm,
            voxel_mm,
            support,
            join_mm=2.0 * shell_mm if rules.detached_edema == "join" else 0.0,
        )
        if n_removed:
            result.removed[name] = (n_removed, v_removed)
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
    result.instances = np.where(out > 0, owner + 1, 0).astype(np.uint16)
    result.instance_names = names
    return result


_NAMES = {NECROSIS: "necrosis", EDEMA: "edema", ENHANCING: "enhancing"}


def _remove_edema_fragments(
    lab: np.ndarray,
    min_voxels: int,
    detached: bool = False,
    shell_mm: float = 0.0,
    voxel_mm: Sequence[float] = (1.0, 1.0, 1.0),
    support: np.ndarray | None = None,
    join_mm: float = 0.0,
) -> tuple[int, int]:
    """Set to background, in place, the edema components (26-connected) of one lesion that
    have fewer than ``min_voxels`` voxels, or (``detached``) touch no core voxel, or lie
    entirely within ``shell_mm`` of the core (a shell thinner than half a voxel of the grid
    the whole tumour was drawn on), or (``support`` given) have no voxel in ``support``.
    With ``join_mm`` a detached component kept by the other rules is joined instead to the
    lesion (its core and the edema touching it) by a one-voxel line between their nearest
    voxels, when that gap is at most ``join_mm``; dropped when farther.
    Returns (components removed, voxels removed)."""
    if min_voxels <= 0 and not detached and shell_mm <= 0 and support is None:
        return 0, 0
    edema = lab == EDEMA
    if not edema.any():
        return 0, 0
    import cc3d

    cc = cc3d.connected_components(edema.astype(np.uint8), connectivity=26)
    sizes = np.bincount(cc.ravel())
    drop = sizes < min_voxels
    core = (lab == ENHANCING) | (lab == NECROSIS)
    if shell_mm > 0 and core.any():
        from scipy import ndimage

        dist = ndimage.distance_transform_edt(~core, sampling=tuple(voxel_mm))
        deepest = ndimage.maximum(dist, cc, np.arange(len(sizes)))
        drop |= np.asarray(deepest) <= shell_mm
    if support is not None:
        held = np.zeros(len(sizes), bool)
        held[np.unique(cc[support])] = True
        drop |= ~held
    if detached and core.any():
        from scipy import ndimage

        near_core = ndimage.binary_dilation(core, np.ones((3, 3, 3), bool))
        touching = np.zeros(len(sizes), bool)
        touching[np.unique(cc[near_core])] = True
        detached_ids = ~touching
        if join_mm > 0:
            detached_ids &= ~_join_islands(
                lab, cc, touching & ~drop, detached_ids & ~drop, join_mm, voxel_mm
            )
        drop |= detached_ids
    small = np.nonzero(drop)[0]
    small = small[small > 0]
    if not small.size:
        return 0, 0
    gone = np.isin(cc, small)
    lab[gone] = 0
    return int(small.size), int(gone.sum())


def _join_islands(
    lab: np.ndarray,
    cc: np.ndarray,
    touching: np.ndarray,
    candidates: np.ndarray,
    join_mm: float,
    voxel_mm: Sequence[float],
) -> np.ndarray:
    """Join, in place, each candidate edema component to the lesion body (core and the edema
    components touching it) by a straight 26-connected line of edema between their nearest
    voxels, when the gap is at most ``join_mm``. Returns the components joined (bool per id)."""
    from scipy import ndimage

    joined = np.zeros(len(candidates), bool)
    ids = np.nonzero(candidates)[0]
    ids = ids[ids > 0]
    if not ids.size:
        return joined
    kept = np.nonzero(touching)[0]
    body = (lab == ENHANCING) | (lab == NECROSIS) | np.isin(cc, kept[kept > 0])
    dist, nearest = ndimage.distance_transform_edt(
        ~body, sampling=tuple(voxel_mm), return_indices=True
    )
    for i in ids:
        piece = np.argwhere(cc == i)
        k = int(np.argmin(dist[tuple(piece.T)]))
        if float(dist[tuple(piece[k])]) > join_mm:
            continue
        start, end = piece[k], nearest[(slice(None), *piece[k])]
        steps = int(np.abs(end - start).max()) + 1
        line = tuple(np.rint(np.linspace(start, end, steps)).astype(int).T)
        gap = lab[line] == 0
        lab[tuple(a[gap] for a in line)] = EDEMA
        joined[i] = True
    return joined


#: the labels of each kind of contact between lesions (:func:`separate_drawn_apart`)
CONTACT_LABELS = {"core": (ENHANCING, NECROSIS), "whole": (EDEMA,)}


def touching_lesions(result: FusionResult, kind: str) -> list[tuple[str, str]]:
    """Pairs of lesions (names) whose ``kind`` voxels (``"core"``: enhancing + necrosis,
    ``"whole"``: oedema) touch (26-connected) in the fused label map."""
    if result.instances is None:
        return []
    from scipy import ndimage

    sel = np.isin(result.labels, CONTACT_LABELS[kind])
    inst = np.where(sel, result.instances, 0)
    pairs: set[tuple[int, int]] = set()
    boxes = ndimage.find_objects(inst.astype(np.int32))
    for i, box in enumerate(boxes, start=1):
        if box is None:
            continue
        pad = tuple(slice(max(b.start - 1, 0), b.stop + 1) for b in box)
        ring = ndimage.binary_dilation(inst[pad] == i, np.ones((3, 3, 3), bool))
        for j in np.unique(inst[pad][ring]):
            if j and j != i:
                pairs.add((min(i, int(j)), max(i, int(j))))
    names = result.instance_names
    return [(names[a - 1], names[b - 1]) for a, b in sorted(pairs)]


def separate_drawn_apart(result: FusionResult, apart: Sequence[tuple[str, str, str]]) -> None:
    """Drop, in place, the contact layer between lesions drawn apart: ``apart`` lists
    ``(lesion, lesion, kind)`` (kind ``"core"`` or ``"whole"``) that touch in the label map but
    not on their native grid. The larger lesion's voxels of that kind touching the smaller's
    become oedema (core) or background (oedema); recorded as conflicts. Cores first, then
    oedema (a core voxel turned oedema may touch the other lesion's oedema)."""
    if result.instances is None or not apart:
        return
    from scipy import ndimage

    index = {n: i for i, n in enumerate(result.instance_names, start=1)}
    labels, inst = result.labels, result.instances
    for kind in ("core", "whole"):
        for a, b, k in apart:
            if k != kind or a not in index or b not in index:
                continue
            ia, ib = index[a], index[b]
            sel = np.isin(labels, CONTACT_LABELS[kind])
            sa, sb = (int((inst == i).sum()) for i in (ia, ib))
            big, small = (ia, ib) if sa >= sb else (ib, ia)
            small_mask = sel & (inst == small)
            near = ndimage.binary_dilation(small_mask, np.ones((3, 3, 3), bool))
            contact = near & sel & (inst == big)
            n = int(contact.sum())
            if not n:
                continue
            if kind == "core":
                labels[contact] = EDEMA
                res = "contact layer of the larger lesion's core set to edema"
            else:
                labels[contact] = 0
                inst[contact] = 0
                res = "contact layer of the larger lesion's edema set to background"
            names = result.instance_names
            result.conflicts.append(
                Conflict(
                    names[big - 1],
                    f"{kind} touching a lesion drawn apart",
                    n,
                    res,
                    names[small - 1],
                )
            )
