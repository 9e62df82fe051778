"""Check a workspace's results against the truth of the synthetic cohort it was built from.

The synthetic cohort (:func:`brainmets.synth.generate_cohort`) knows what every patient's
dataset row should say (``truth.json``: counts and volumes per label, infratentorial) and
carries the true label and lesion-instance maps on the template grid. :func:`check_truth`
reads what the pipeline published for each expected-included patient — the ``features``
stage's ``features.json`` and the ``segment`` stage's label map — and compares:

* **counts**: ``ET_num``, ``Nec_num``, ``Edema_num`` (connected components per label, the
  published definition), exact, per patient and label;
* **volumes**, per lesion and label (enhancing, necrosis, edema): the pipeline's voxels are
  given to the nearest true lesion; within 5 % for lesions of at least 5 mm
  (:data:`LARGE_LESION_MM`), 15 % for smaller ones;
* **infratentorial**: the patient's flag, exact;
* **core Dice** per lesion (enhancing + necrosis, same assignment).

The truth lives on the template grid; a pipeline that registers rigidly to the atlas (the
BraTS convention: the head keeps its size) publishes a different space. For each patient
the truth is therefore brought into the published space first: ``truth_to_output[pid]``
maps a published world point to the template world (for the workspace:
``inverse(template_to_scanner of the T1c) @ atlas_to["t1c"]``, the true geometry after
the pipeline's own registration), the truth maps are resampled through it (nearest
neighbour, for the lesion assignment and Dice) and the true volumes, counted on the
template grid, scaled by its determinant. What is compared is then what
the import and the measurement did, on the pipeline's registration; the registration itself
is checked by ``benchmarks/preprocess.py``.

:attr:`TruthCheck.ok` applies the targets (:data:`TARGETS`); :meth:`TruthCheck.table` is
what ``brainmets demo`` and ``benchmarks/segment_truth.py`` print.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from brainmets.ids import patient_pseudonym
from brainmets.vocab import EDEMA, ENHANCING, NECROSIS

#: a lesion at least this large (max diameter, mm) gets the tight volume tolerance
LARGE_LESION_MM = 5.0
#: volume tolerance (relative) for lesions >= LARGE_LESION_MM and for smaller ones
VOLUME_TOLERANCE = (0.05, 0.15)
#: what a good pipeline run achieves on the synthetic cohort
TARGETS = {
    "counts_exact": 0.95,  # fraction of patient x label cells
    "volumes_within": 0.95,  # fraction of lesion x label volumes within tolerance
    "core_dice_median": 0.9,
    "infratentorial_exact": 1.0,
}
COUNT_NAMES = ("ET_num", "Nec_num", "Edema_num")
VOLUME_LABELS = {"enhancing": ENHANCING, "necrosis": NECROSIS, "edema": EDEMA}


@dataclass(frozen=True)
class VolumeCheck:
    """One lesion's volume of one label, true and measured (mm^3)."""

    lesion: int
    label: str
    diameter_mm: float
    truth_mm3: float
    got_mm3: float

    @property
    def tolerance(self) -> float:
        large, small = VOLUME_TOLERANCE
        return large if self.diameter_mm >= LARGE_LESION_MM else small

    @property
    def error(self) -> float:
        """Relative error (``inf`` when the truth is 0 and something was measured)."""
        if self.truth_mm3 == 0:
            return 0.0 if self.got_mm3 == 0 else float("inf")
        return abs(self.got_mm3 - self.truth_mm3) / self.truth_mm3

    @property
    def ok(self) -> bool:
        return self.error <= self.tolerance


@dataclass
class PatientCheck:
    """One expected-included patient (by pseudonym) against its truth."""

    patient_id: str
    counts_truth: dict[str, int]
    counts_got: dict[str, int]
    infratentorial_truth: int
    infratentorial_got: int | None
    volumes: list[VolumeCheck] = field(default_factory=list)
    core_dice: dict[int, float] = field(default_factory=dict)

    @property
    def counts_exact(self) -> int:
        return sum(self.counts_truth[k] == self.counts_got.get(k) for k in COUNT_NAMES)


@dataclass
class TruthCheck:
    """The comparison over the cohort; ``missing``: expected-included patients the
    workspace has no published result for (each a failure of its own)."""

    patients: list[PatientCheck] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)

    @property
    def count_cells(self) -> int:
        return len(COUNT_NAMES) * (len(self.patients) + len(self.missing))

    @property
    def counts_exact(self) -> int:
        return sum(p.counts_exact for p in self.patients)

    @property
    def volume_checks(self) -> list[VolumeCheck]:
        return [v for p in self.patients for v in p.volumes]

    @property
    def core_dice_median(self) -> float | None:
        d = [x for p in self.patients for x in p.core_dice.values()]
        return statistics.median(d) if d else None

    @property
    def infratentorial_exact(self) -> int:
        return sum(p.infratentorial_truth == p.infratentorial_got for p in self.patients)

    def measures(self) -> dict[str, float | None]:
        """Each target's measured value (fractions; the median Dice)."""
        n_pat = len(self.patients) + len(self.missing)
        vols = self.volume_checks
        return {
            "counts_exact": self.counts_exact / self.count_cells if self.count_cells else None,
            "volumes_within": sum(v.ok for v in vols) / len(vols) if vols else None,
            "core_dice_median": self.core_dice_median,
            "infratentorial_exact": self.infratentorial_exact / n_pat if n_pat else None,
        }

    def failed_targets(self) -> list[str]:
        m = self.measures()
        return [k for k, goal in TARGETS.items() if m[k] is None or float(m[k] or 0) < goal]

    @property
    def ok(self) -> bool:
        return bool(self.patients) and not self.missing and not self.failed_targets()

    def table(self) -> list[list[str]]:
        """Rows (header first): per patient the counts (truth -> measured), infratentorial,
        volumes within tolerance and the median core Dice; then the totals."""
        rows = [["patient", *COUNT_NAMES, "Infratentorial", "volumes ok", "core Dice"]]
        for p in self.patients:
            ok = sum(v.ok for v in p.volumes)
            dice = statistics.median(p.core_dice.values()) if p.core_dice else None
            rows.append(
                [
                    p.patient_id,
                    *(_pair(p.counts_truth[k], p.counts_got.get(k)) for k in COUNT_NAMES),
                    _pair(p.infratentorial_truth, p.infratentorial_got),
                    f"{ok}/{len(p.volumes)}",
                    "-" if dice is None else f"{dice:.3f}",
                ]
            )
        for pid in self.missing:
            rows.append([pid, "no result", *(["-"] * (len(rows[0]) - 2))])
        return rows

    def summary_lines(self) -> list[str]:
        m = self.measures()
        vols = self.volume_checks
        lines = [
            f"counts exact: {self.counts_exact}/{self.count_cells} patient x label cells "
            f"(target >= {TARGETS['counts_exact']:.0%})",
            f"volumes within tolerance: {sum(v.ok for v in vols)}/{len(vols)} lesion x label "
            f"(5 % for lesions >= {LARGE_LESION_MM:g} mm, 15 % smaller; target >= "
            f"{TARGETS['volumes_within']:.0%})",
        ]
        for label in VOLUME_LABELS:
            sel = [v for v in vols if v.label == label]
            if sel:
                lines.append(f"  {label}: {sum(v.ok for v in sel)}/{len(sel)}")
        dice = m["core_dice_median"]
        lines.append(
            "median per-lesion core Dice: "
            + ("-" if dice is None else f"{dice:.3f}")
            + f" (target >= {TARGETS['core_dice_median']})"
        )
        lines.append(
            f"infratentorial exact: {self.infratentorial_exact}/"
            f"{len(self.patients) + len(self.missing)}"
        )
        failed = self.failed_targets()
        lines.append("all targets met" if self.ok else f"targets not met: {', '.join(failed)}")
        return lines


def _pair(truth: int, got: int | None) -> str:
    return f"{truth}" if truth == got else f"{truth} -> {'?' if got is None else got}"


def load_truth(cohort_dir: str | Path) -> dict[str, Any]:
    """The cohort's ``truth.json`` (raises ``FileNotFoundError`` naming it)."""
    path = Path(cohort_dir) / "truth.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no synthetic-cohort truth here")
    return dict(json.loads(path.read_text()))


def check_truth(
    cohort_dir: str | Path,
    workspace_root: str | Path,
    key: bytes,
    results: Mapping[str, Mapping[str, Path]],
    truth_to_output: Mapping[str, np.ndarray] | None = None,
) -> TruthCheck:
    """Compare the workspace's published results with the cohort's truth.

    ``results``: pseudonymous patient ID -> ``{"features": features.json, "seg": label map}``
    (absolute paths) as the workspace recorded them; ``key`` the workspace's key (to find
    each truth patient's pseudonym); ``truth_to_output``: per patient, published world ->
    template world (4x4; absent: the same world, see the module docstring).
    """
    cohort_dir = Path(cohort_dir)
    truth = load_truth(cohort_dir)
    out = TruthCheck()
    for rec in truth["patients"]:
        if not rec.get("expected_included"):
            continue
        pid = patient_pseudonym(key, str(rec["mrn"]))
        got = results.get(pid, {})
        if "features" not in got or "seg" not in got:
            out.missing.append(pid)
            continue
        features = json.loads(Path(got["features"]).read_text())["features"]
        summary = rec["summary"]
        files = rec["truth_files"]
        true_img = _nifti(cohort_dir / files["label_map"])
        labels_t = np.asarray(true_img.dataobj).astype(np.uint8)
        inst = np.asarray(_nifti(cohort_dir / files["instance_map"]).dataobj)
        seg_img = _nifti(Path(got["seg"]))
        labels_g = np.asarray(seg_img.dataobj).astype(np.uint8)
        vox_mm3 = float(abs(np.linalg.det(np.asarray(seg_img.affine)[:3, :3])))
        # true volumes from the template grid, in the published space (scaled by 1/|det m|)
        m = (truth_to_output or {}).get(pid)
        scale = 1.0 if m is None else 1.0 / abs(float(np.linalg.det(np.asarray(m)[:3, :3])))
        t_vox = float(abs(np.linalg.det(np.asarray(true_img.affine)[:3, :3]))) * scale
        true_volumes = {
            (int(les["id"]), label): float(((labels_t == value) & (inst == int(les["id"]))).sum())
            * t_vox
            for les in rec["lesions"]
            for label, value in VOLUME_LABELS.items()
        }
        if m is not None or labels_g.shape != labels_t.shape:
            m = np.eye(4) if m is None else np.asarray(m, float)
            labels_t, inst = _resample_truth(
                [labels_t, inst], np.asarray(true_img.affine), m, seg_img
            )
        pc = PatientCheck(
            patient_id=pid,
            counts_truth={k: int(summary[k]) for k in COUNT_NAMES},
            counts_got={k: int(features[k]) for k in COUNT_NAMES if k in features},
            infratentorial_truth=int(summary["Infratentorial"]),
            infratentorial_got=None
            if features.get("Infratentorial") is None
            else int(features["Infratentorial"]),
        )
        _per_lesion(pc, rec["lesions"], labels_t, inst, labels_g, vox_mm3, true_volumes)
        out.patients.append(pc)
    return out


def _resample_truth(
    maps: list[np.ndarray], truth_affine: np.ndarray, out_to_template: np.ndarray, out_img: Any
) -> list[np.ndarray]:
    """Truth maps resampled (nearest) onto the published grid through ``out_to_template``."""
    from scipy import ndimage

    vox = np.linalg.inv(truth_affine) @ out_to_template @ np.asarray(out_img.affine, float)
    shape = tuple(int(s) for s in out_img.shape[:3])
    return [
        ndimage.affine_transform(
            a, vox[:3, :3], offset=vox[:3, 3], output_shape=shape, order=0, cval=0
        )
        for a in maps
    ]


def _nifti(path: Path) -> Any:
    import nibabel as nib

    img = nib.load(str(path))
    if not isinstance(img, nib.Nifti1Image):
        raise ValueError(f"{path}: not a NIfTI-1 image")
    return img


def _per_lesion(
    pc: PatientCheck,
    lesions: list[dict[str, Any]],
    labels_t: np.ndarray,
    inst: np.ndarray,
    labels_g: np.ndarray,
    vox_mm3: float,
    true_volumes: Mapping[tuple[int, str], float],
) -> None:
    """Per lesion: volumes (``true_volumes[(lesion, label)]`` against the measured voxels
    given to the nearest true lesion, within the bounding box of both maps' lesion voxels)
    and core Dice."""
    from scipy import ndimage

    from brainmets.labelmaps.arrays import nonzero_box

    box = nonzero_box((labels_t > 0) | (labels_g > 0) | (inst > 0))
    if box is None:
        return
    t, g, i = labels_t[box], labels_g[box], inst[box]
    if not (i > 0).any():
        return
    _, nearest = ndimage.distance_transform_edt(i == 0, return_indices=True)
    owner = i[tuple(nearest)]
    for les in lesions:
        n = int(les["id"])
        mine_t = i == n
        mine_g = owner == n
        diameter = float(les.get("max_diameter_mm") or 0.0)
        for label, value in VOLUME_LABELS.items():
            tv = true_volumes[(n, label)]
            gv = float(((g == value) & mine_g).sum()) * vox_mm3
            if tv or gv:
                pc.volumes.append(VolumeCheck(n, label, diameter, tv, gv))
        core_t = mine_t & ((t == ENHANCING) | (t == NECROSIS))
        core_g = mine_g & ((g == ENHANCING) | (g == NECROSIS))
        total = int(core_t.sum() + core_g.sum())
        if core_t.any():
            pc.core_dice[n] = 2.0 * float((core_t & core_g).sum()) / total


def check_workspace(cohort_dir: str | Path, workspace_root: str | Path) -> TruthCheck:
    """:func:`check_truth` for a workspace: its key, the ``features`` (role ``features``)
    and ``segment`` (role ``seg``) outputs of its runs that are done, and each patient's
    truth brought into the published space through the preprocess transforms (role
    ``transforms``, ``atlas_to["t1c"]``) and the true T1c geometry."""
    from brainmets.workspace import Workspace

    ws = Workspace.open(workspace_root)
    cat = ws.catalog(readonly=True)
    try:
        results: dict[str, dict[str, Path]] = {}
        for stage, role in (
            ("features", "features"),
            ("segment", "seg"),
            ("preprocess", "transforms"),
        ):
            for f in cat.output_files(stage=stage, role=role, status="done", cohort=False):
                results.setdefault(f.patient_id, {})[role] = ws.root / f.path
    finally:
        cat.close()
    key = ws.key()
    mapping: dict[str, np.ndarray] = {}
    for rec in load_truth(cohort_dir).get("patients", []):
        pid = patient_pseudonym(key, str(rec["mrn"]))
        tf = results.get(pid, {}).get("transforms")
        t1c = next((s for s in rec["studies"][0]["series"] if s["kind"] == "T1c"), None)
        if tf is None or t1c is None:
            continue
        atlas_to = json.loads(Path(tf).read_text()).get("atlas_to", {})
        if "t1c" in atlas_to:
            true = np.asarray(t1c["template_to_scanner"], float)
            mapping[pid] = np.linalg.inv(true) @ np.asarray(atlas_to["t1c"], float)
    return check_truth(cohort_dir, ws.root, key, results, mapping)
