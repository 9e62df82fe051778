"""The published collection reader and the workbook comparison (brainmets features
--collection, brainmets compare)."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from openpyxl import load_workbook
from rich.console import Console

from brainmets.atlas import AtlasError
from brainmets.features.cli import run_collection, run_compare
from brainmets.lesions import analyse_case, compare_workbooks, find_cases, load_atlas_labels

# the BraTS-METS header: RAS, origin (0, 239, 0), array-aligned with SRI24
MET_AFFINE = np.array([[1.0, 0, 0, 0], [0, 1, 0, 239], [0, 0, 1, 0], [0, 0, 0, 1]])
SHAPE = (240, 240, 155)


@pytest.fixture(scope="module")
def atlas_ok() -> None:
    try:
        load_atlas_labels()
    except AtlasError as exc:
        pytest.skip(str(exc))


def _case(
    root: Path, n: int, seg: np.ndarray | None, images: bool = True, bad_image: bool = False
) -> Path:
    case = f"BraTS-MET-{n:05d}-000"
    d = root / "training" / case
    d.mkdir(parents=True)
    if seg is not None:
        nib.save(nib.Nifti1Image(seg, MET_AFFINE), str(d / f"{case}-seg.nii.gz"))
    if images:
        # one image file per shape, linked into every case (only headers are read)
        shape = (8, 8, 8) if bad_image else SHAPE
        src = root / f"image-{shape[0]}.nii.gz"
        if not src.exists():
            nib.save(nib.Nifti1Image(np.zeros(shape, np.int16), MET_AFFINE), str(src))
        for s in ("t1n", "t1c", "t2w", "t2f"):
            (d / f"{case}-{s}.nii.gz").symlink_to(src)
    return d


def _seg(dtype: type = np.uint8) -> np.ndarray:
    lab = np.zeros(SHAPE, dtype)
    lab[100:110, 150:160, 100:110] = 2
    lab[103:107, 153:157, 103:107] = 3
    lab[104:106, 154:156, 104:106] = 1
    return lab


@pytest.fixture(scope="module")
def collection(tmp_path_factory: pytest.TempPathFactory, atlas_ok: None) -> Path:
    root = tmp_path_factory.mktemp("collection")
    _case(root, 86, _seg())
    _case(root, 2, _seg(np.float64))  # stored as float: cast after checking
    _case(root, 5, np.zeros(SHAPE, np.uint8))  # empty: valid, all zero
    bad = _seg(np.float32)
    bad[0, 0, 0] = 0.5
    _case(root, 7, bad)  # non-integral
    _case(root, 9, _seg(), bad_image=True)  # grid differs from the images
    _case(root, 11, None)  # no seg
    return root


def test_find_cases(collection: Path) -> None:
    cases = find_cases(collection)
    assert [c.met_id for c in cases] == [2, 5, 7, 9, 11, 86]
    assert cases[-1].workbook_id == 86 and set(cases[-1].images) == {"t1n", "t1c", "t2w", "t2f"}
    assert cases[-2].seg is None


def test_analyse_case_errors_name_the_file(collection: Path) -> None:
    by_id = {c.met_id: c for c in find_cases(collection)}
    assert "non-integral" in (analyse_case(by_id[7]).error or "")
    assert "BraTS-MET-00007-000-seg.nii.gz" in (analyse_case(by_id[7]).error or "")
    err9 = analyse_case(by_id[9]).error or ""
    assert "grid differs" in err9 and "BraTS-MET-00009-000-seg.nii.gz" in err9
    assert "no segmentation" in (analyse_case(by_id[11]).error or "")
    r2 = analyse_case(by_id[2])
    assert r2.error is None and any("float64" in n for n in r2.notes)
    empty = analyse_case(by_id[5])
    assert empty.error is None and empty.analysis is not None
    assert empty.analysis.features.et_num == 0 and empty.analysis.features.infratentorial == 0
    r86 = analyse_case(by_id[86])
    assert r86.analysis is not None and r86.analysis.placement is not None
    assert r86.analysis.placement.mode == "array"  # the BraTS-METS header is off the atlas
    f = r86.analysis.features
    assert (f.et_num, f.nec_num, f.edema_num) == (1, 1, 1)
    assert (f.et_vol, f.nec_vol, f.edema_vol) == (0.056, 0.008, 0.936)


def test_run_collection_writes_the_workbook_and_reports_failures(
    collection: Path, tmp_path: Path
) -> None:
    out = tmp_path / "features.xlsx"
    console = Console(record=True, width=200)
    rc = run_collection(collection, out, workers=2, console=console)
    text = console.export_text()
    assert rc == 1  # three cases failed, the others are in the workbook
    assert "failed BraTS-MET-00007-000" in text and "3/6 cases analysed" in text
    assert "3 case(s) placed on the atlas by array index" in text
    wb = load_workbook(out)
    rows = list(wb["Data"].iter_rows(values_only=True))
    assert [r[0] for r in rows[1:]] == [2, 5, 7, 9, 11, 86]
    by_id = {r[0]: dict(zip(rows[0], r, strict=True)) for r in rows[1:]}
    assert by_id[86]["ET_vol"] == 0.056 and by_id[86]["Infratentorial"] == 0
    assert by_id[2]["ET_num"] == 1
    assert by_id[7]["ET_num"] is None  # failed case: empty
    assert by_id[5]["ET_num"] == 0
    lesion_rows = list(wb["Lesions"].iter_rows(values_only=True))
    assert len(lesion_rows) == 1 + 2  # cases 2 and 86, one lesion each
    prov = dict(wb["Provenance"].iter_rows(values_only=True))
    assert "BraTS-MET-00007-000" in prov["cases failed"]

    # compare: a workbook with itself, then with an edited copy
    assert run_compare(out, out, console=Console(record=True)) == 0
    wb2 = load_workbook(out)
    ws = wb2["Data"]
    col = [c.value for c in ws[1]].index("ET_vol") + 1
    for row in ws.iter_rows(min_row=2):
        if row[0].value == 86:
            row[col - 1].value = 0.06
    ws.delete_rows(3)  # drop patient 5
    edited = tmp_path / "edited.xlsx"
    wb2.save(edited)
    cmp = compare_workbooks(out, edited)
    assert cmp.only_a == ["5"] and not cmp.only_b
    assert [(d.patient, d.column, d.a, d.b) for d in cmp.differences] == [
        ("86", "ET_vol", 0.056, 0.06)
    ]
    console = Console(record=True, width=200)
    assert run_compare(out, edited, console=console) == 1
    assert "ET_vol" in console.export_text()
    assert (
        run_compare(out, edited, tolerance=0.01, console=Console(record=True)) == 1
    )  # still 5 missing


def test_compare_normalises_ids(tmp_path: Path) -> None:
    from openpyxl import Workbook

    paths = []
    for name, ids in (("a", [86, 2.0]), ("b", ["BraTS-MET-00086-000", "2"])):
        wb = Workbook()
        ws = wb.active
        ws.title = "Data"
        ws.append(["BraTS_MET_ID", "ET_num", "Smoke"])
        ws.append([ids[0], 1, None])
        ws.append([ids[1], 2, ""])
        wb.save(tmp_path / f"{name}.xlsx")
        paths.append(tmp_path / f"{name}.xlsx")
    assert compare_workbooks(*paths).identical


def test_real_brats_files_are_placed_on_the_atlas(testdata: Path, atlas_ok: None) -> None:
    """The orientation trap (docs/conventions.md) on the real reference files: BraTS-METS by
    array index, the BraTS glioma case (flipped, LPS header) through its header."""
    from brainmets.atlas import atlas_file
    from brainmets.lesions import (
        FeatureParams,
        LabelMapError,
        analyse,
        load_label_map,
        parse_mapping,
    )
    from brainmets.lesions.atlas import place_on_atlas

    atlas = load_atlas_labels()
    t1 = np.asarray(nib.load(str(atlas_file("t1_brain.nii.gz"))).dataobj).astype(float)
    met = nib.load(
        str(testdata / "nifti" / "brats_met_00110_000" / "BraTS-MET-00110-000-t1c.nii.gz")
    )
    assert place_on_atlas(met.shape, met.affine, atlas).mode == "array"
    r = np.corrcoef(np.asarray(met.dataobj).astype(float).ravel(), t1.ravel())[0, 1]
    assert r > 0.5  # really array-aligned with the template

    gli = testdata / "nifti" / "brats_gli_00001_000"
    seg = load_label_map(gli / "seg-BraTS23_1.nii.gz")
    a = analyse(seg, atlas=atlas)
    assert a.placement is not None and a.placement.mode == "world"
    # the same labels put on the atlas grid by hand give the same features and lesions
    on_atlas = seg.data[:, ::-1, :]
    b = analyse(on_atlas, atlas.affine, FeatureParams(), atlas)
    assert a.features.row() == b.features.row() and a.features.et_num > 0
    assert [x.centroid_y_mm for x in a.lesions] == [x.centroid_y_mm for x in b.lesions]
    with pytest.raises(LabelMapError, match="seg-bratstoolkit_isen"):
        load_label_map(gli / "seg-bratstoolkit_isen.nii.gz")
    old = load_label_map(gli / "seg-bratstoolkit_isen.nii.gz", parse_mapping("brats-2021"))
    assert set(np.unique(old.data)) <= {0, 1, 2, 3}
