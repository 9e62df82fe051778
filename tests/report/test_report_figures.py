"""The report's per-patient figures on the small workspace (``rx_workspace``): the patient
figure, the lesion montage and the registration QC figure exist with the expected size, show
the label colours where the lesions are and the template outline; a patient without a lesion
gets no montage and the report says so; lesions beyond ``montage_max_lesions`` are left out
and named."""

from __future__ import annotations

import dataclasses
import io
import json
import sqlite3
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pytest
from PIL import Image
from rx_workspace import LESIONS

from brainmets.atlas import atlas_file
from brainmets.catalog import COHORT
from brainmets.cohort import DEFAULTS, build_document, cohort_for
from brainmets.cohort.figures import (
    LABEL_COLOURS,
    MONTAGE_PANEL_IN,
    PANEL_IN,
    TEMPLATE_COLOUR,
    lesion_montage,
    patient_figure,
    registration_figure,
)
from brainmets.cohort.model import Cohort, PatientRecord
from brainmets.cohort.patient_figures import qc_figure_patients, registration_figures
from brainmets.cohort.planes import Volume
from brainmets.workspace import Workspace

DPI = int(DEFAULTS["figure_dpi"])


def _figures_dir(root: Path) -> Path:
    return root / "data" / "derivatives" / "_cohort" / "report" / "figures"


def _rgb(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)


def _size(png: bytes) -> tuple[int, int]:
    return Image.open(io.BytesIO(png)).size


def _label_mask(rgb: np.ndarray, label: int) -> np.ndarray:
    """Pixels where the label's colour dominates (overlay blended with grey)."""
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    if label == 3:  # enhancing, blue
        return (b - r > 50) & (b - g > 30)
    if label == 2:  # edema, green
        return (g - r > 50) & (g - b > 50)
    return (r - g > 50) & (r - b > 50)  # necrosis, red


def _cyan(rgb: np.ndarray) -> np.ndarray:
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    return (r < 90) & (g > 160) & (b > 180)


def _crop(rgb: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    left, top, right, bottom = box
    return rgb[top:bottom, left:right]


def _centroid(mask: np.ndarray) -> tuple[float, float]:
    rows, cols = np.nonzero(mask)
    return float(cols.mean()), float(rows.mean())


def _cohort(rx, **params: Any) -> tuple[Cohort, dict[str, Any]]:
    ws = Workspace.open(rx.root)
    p = {**DEFAULTS, **params}
    return cohort_for(rx.root, ws.config.data, p), p


def _patient(rx, letter: str) -> PatientRecord:
    cohort, _ = _cohort(rx)
    return cohort.get(rx.pids[letter])


def test_figures_recorded_with_the_expected_sizes(rx) -> None:
    folder = _figures_dir(rx.root)
    con = sqlite3.connect(f"file:{rx.root / 'catalog.sqlite'}?mode=ro", uri=True)
    with con:
        roles = {r[0] for r in con.execute("SELECT role FROM stage_outputs WHERE stage='report'")}
        metrics = json.loads(
            con.execute(
                "SELECT metrics_json FROM stage_runs WHERE stage='report' AND patient_id=?",
                (COHORT,),
            ).fetchone()[0]
        )
    assert metrics["patient_figures"] == metrics["lesion_montages"] == 2
    assert metrics["registration_figures"] == 2
    for letter in "ab":
        pid = rx.pids[letter]
        for kind in ("patient", "montage", "registration"):
            assert f"figure_{kind}_{pid}" in roles
        # patient figure: 2 rows of 3 panels of PANEL_IN inches (>= 400 px at the default dpi)
        w, h = _size((folder / f"patient_{pid}.png").read_bytes())
        assert (w, h) == (round(3 * PANEL_IN * DPI), round((2 * PANEL_IN + 0.8) * DPI))
        assert w / 3 >= 400
        # montage: per lesion two rows (T1c, FLAIR) of three planes
        n = len(LESIONS[letter])
        w, h = _size((folder / f"montage_{pid}.png").read_bytes())
        assert w == round(3 * MONTAGE_PANEL_IN * DPI) and w / 3 >= 400
        assert h == round((n * (2 * MONTAGE_PANEL_IN + 0.6) + 0.5) * DPI)
        w, h = _size((folder / f"registration_{pid}.png").read_bytes())
        assert (w, h) == (round(3 * PANEL_IN * DPI), round((PANEL_IN + 0.9) * DPI))
    md = (folder.parent / "report.md").read_text()
    html = (folder.parent / "report.html").read_text()
    for pid in rx.pids["a"], rx.pids["b"]:
        for kind in ("patient", "montage", "registration"):
            assert f"](figures/{kind}_{pid}.png)" in md
            assert f'id="fig-{kind}_{pid}"' in html
    qc = html[html.index('<section id="quality-control">') :]
    assert f'id="fig-registration_{rx.pids["a"]}"' in qc  # in the QC section
    assert "no lesion was left out" in md


def _inputs(p: PatientRecord) -> tuple[dict[str, Volume], Volume]:
    assert p.seg is not None
    return {r: Volume.load(f) for r, f in p.images().items()}, Volume.load(p.seg)


def test_montage_shows_each_lesion_in_its_colours_at_the_centre(rx) -> None:
    p = _patient(rx, "a")
    images, seg = _inputs(p)
    got = lesion_montage(images, seg, p.lesions, p.id, int(DEFAULTS["montage_max_lesions"]))
    assert got is not None
    # the stage wrote the same bytes (deterministic, same parameters)
    assert got.png == (_figures_dir(rx.root) / f"montage_{p.id}.png").read_bytes()
    rgb = _rgb(got.png)
    assert rgb.shape[1::-1] == got.size
    assert len(got.panels) == 2 * 2 * 3  # 2 lesions x (T1c, FLAIR) x 3 planes
    for name, box in got.panels.items():
        lesion = int(name.split("/")[0])
        panel = _crop(rgb, box)
        cx, cy = (panel.shape[1] - 1) / 2, (panel.shape[0] - 1) / 2
        for label in (3, 2):
            mask = _label_mask(panel, label)
            assert mask.sum() > 200, (name, label)
            x, y = _centroid(mask)  # the panel is centred on the lesion's centroid
            assert abs(x - cx) < 0.06 * panel.shape[1] and abs(y - cy) < 0.06 * panel.shape[0], (
                name,
                label,
                (x, y),
                (cx, cy),
            )
        necrosis = _label_mask(panel, 1).sum()
        if lesion == 1:  # lesion 1 of patient a is necrotic, lesion 2 is not
            assert necrosis > 50, name
        else:
            assert necrosis == 0, name
    assert not _cyan(rgb).any()  # no template outline in the montage


def test_patient_figure_shows_the_lesion_on_the_patients_left_and_anterior(rx) -> None:
    p = _patient(rx, "a")
    images, seg = _inputs(p)
    centre = seg.stored_world([p.lesions[0][f"centroid_{a}"] for a in "ijk"])
    got = patient_figure(images, seg, p.id, centre)
    assert got.png == (_figures_dir(rx.root) / f"patient_{p.id}.png").read_bytes()
    rgb = _rgb(got.png)
    # lesion 1 of patient a: voxel (150, 150) of the SRI24 grid (x = -i: the patient's left;
    # anterior of the head's centre at voxel (120, 125)) -> radiological display: right of
    # the panel's centre, above it
    for name in ("t1c+labels", "t2f+labels"):
        panel = _crop(rgb, got.panels[name])
        mask = _label_mask(panel, 3)
        assert mask.sum() > 100
        x, y = _centroid(mask)
        assert x > 0.6 * panel.shape[1] and y < 0.45 * panel.shape[0], (name, x, y)
    for name in ("t1n", "t1c", "t2w", "t2f"):  # the plain panels have no overlay
        panel = _crop(rgb, got.panels[name])
        assert not any(_label_mask(panel, lab).sum() > 20 for lab in LABEL_COLOURS), name


def test_registration_figure_draws_the_template_outline(rx, sri24_atlas: Path) -> None:
    p = _patient(rx, "b")
    template = Volume.load(atlas_file("t1_brain.nii.gz", sri24_atlas))
    got = registration_figure(p.images()["t1c"], template, p.id)
    assert got.png == (_figures_dir(rx.root) / f"registration_{p.id}.png").read_bytes()
    assert TEMPLATE_COLOUR[2] > 0.8 > TEMPLATE_COLOUR[0]
    rgb = _rgb(got.png)
    assert set(got.panels) == {"axial", "coronal", "sagittal"}
    inside = 0
    for name, box in got.panels.items():
        panel = _crop(rgb, box)
        cyan = _cyan(panel)
        assert cyan.sum() > 300, name
        rows, cols = np.nonzero(cyan)
        # one outline around the brain: it spans most of the (tightly framed) panel, and the
        # panel's centre (inside the brain) is not on it
        assert cols.max() - cols.min() > 0.6 * panel.shape[1], name
        assert rows.max() - rows.min() > 0.5 * panel.shape[0], name
        h, w = panel.shape[:2]
        assert not cyan[h // 2 - 20 : h // 2 + 20, w // 2 - 20 : w // 2 + 20].any(), name
        inside += int(cyan.sum())
    assert _cyan(rgb).sum() - inside < 0.2 * inside  # only the legend's line elsewhere
    # no label colours in the QC figure
    assert _label_mask(rgb, 3).sum() < 50


def test_montage_cap_and_the_patient_without_lesion(rx, tmp_path: Path) -> None:
    cohort, params = _cohort(rx, montage_max_lesions=1, qc_figures="none")
    a, b = cohort.get(rx.pids["a"]), cohort.get(rx.pids["b"])
    # patient b without lesions: an empty label map and no lesion in features.json
    assert b.seg is not None and b.features_doc is not None
    empty = tmp_path / "empty-seg.nii.gz"
    img = nib.load(str(b.seg))
    nib.save(nib.Nifti1Image(np.zeros(img.shape, np.uint8), img.affine), str(empty))
    outputs = {**b.outputs, "segment": {**b.outputs["segment"], "seg": empty}}
    b2 = dataclasses.replace(b, outputs=outputs, _features={**b.features_doc, "lesions": []})
    cohort.patients = [b2 if x.id == b.id else x for x in cohort.patients]
    doc = build_document(cohort, params)
    names = {f.name for f in doc.figures}
    assert f"patient_{a.id}" in names and f"patient_{b.id}" in names
    assert f"montage_{a.id}" in names and f"montage_{b.id}" not in names
    assert not any(n.startswith("registration_") for n in names)  # qc_figures = "none"
    section = next(s for s in doc.sections if s.title == "Patient figures")
    text = " ".join(section.paragraphs)
    assert f"No lesion montage (no lesion in the label map): {b.id}." in text
    assert f"lesions were left out for {a.id} (1 of 2 shown)" in text
    fig_b = next(f for f in doc.figures if f.name == f"patient_{b.id}")
    assert "no lesion montage" in fig_b.caption
    montage = next(f for f in doc.figures if f.name == f"montage_{a.id}")
    assert "Lesion(s) 2 left out (montage_max_lesions = 1)" in montage.caption
    # one lesion: the montage's height is one lesion's
    assert _size(montage.png)[1] == round((2 * MONTAGE_PANEL_IN + 0.6 + 0.5) * DPI)
    # the montage function itself: no lesion, no montage
    images, seg = _inputs(b2)
    assert lesion_montage(images, seg, [], b.id) is None


def test_registration_figure_patients_and_missing_template(rx, tmp_path: Path) -> None:
    cohort, params = _cohort(rx)
    a, b = cohort.get(rx.pids["a"]), cohort.get(rx.pids["b"])
    assert b.qc_flags and not a.qc_flags
    inc = cohort.included
    assert qc_figure_patients(inc, [a], "figures") == [a]
    assert {x.id for x in qc_figure_patients(inc, [a], "figures+flagged")} == {a.id, b.id}
    assert {x.id for x in qc_figure_patients(inc, [], "all")} == {a.id, b.id}
    assert qc_figure_patients(inc, [a, b], "none") == []
    with pytest.raises(ValueError, match="qc_figures"):
        qc_figure_patients(inc, [a], "flagged")
    empty = tmp_path / "atlas"
    empty.mkdir()
    figs, notes = registration_figures([a], str, params, atlas_dir=empty)
    assert figs == [] and notes and notes[0].startswith("Registration figures left out:")
    assert "t1_brain.nii.gz" in notes[0]
