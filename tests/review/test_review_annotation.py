"""Annotation through the review app's API (issue 13): click-to-segment, grow / shrink,
accept, undo / redo, proposals, the draft label map, saving a version; roles and CSRF."""

from __future__ import annotations

import gzip
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

pytest.importorskip("starlette")
pytest.importorskip("httpx")
from starlette.testclient import TestClient  # noqa: E402

from brainmets.catalog import Catalog  # noqa: E402
from brainmets.fsutil import sha256_file  # noqa: E402
from brainmets.review import add_user  # noqa: E402
from brainmets.review.app import create_app  # noqa: E402
from brainmets.workspace import Workspace  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "annotate"))
from phantoms import Phantom  # noqa: E402

PW = "correct horse battery"
PID = "BM-AAAAAAAA"
ORIGIN = {"origin": "http://testserver"}
BIG, SMALL = (60, 60, 50), (85, 45, 40)


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    ws = Workspace.init(tmp_path / "ws")
    ph = Phantom(seed=11)
    ph.lesion(BIG, radius=8, necrosis=4, edema=13)
    ph.lesion(SMALL, radius=3)
    rng = np.random.default_rng(0)
    der = ws.root / "data" / "derivatives" / PID / "preprocess"
    der.mkdir(parents=True)
    outputs = {}
    for role, data in (("t1c", ph.t1c), ("t1n", ph.t1), ("t2f", ph.flair)):
        noisy = np.where(ph.brain, data + rng.normal(0, 4, data.shape), 0).astype(np.float32)
        p = der / f"{PID}-{role}.nii.gz"
        nib.save(nib.Nifti1Image(noisy, np.eye(4)), str(p))
        outputs[role] = (str(p.relative_to(ws.root)), sha256_file(p), p.stat().st_size)
    with ws.lock(), ws.catalog() as cat:
        cat.ensure_patient(PID)
        add_user(cat, "ann", "annotator", PW)
        common = {"status": "done", "fingerprint": "x", "started_at": None, "duration_s": 0.1}
        cat.finish_stage_run(PID, "preprocess", **common, outputs=outputs)
    return Workspace.open(ws.root)


def _client(ws: Workspace) -> tuple[TestClient, dict[str, str]]:
    c = TestClient(create_app(ws), base_url="http://testserver")
    r = c.post("/api/login", json={"username": "ann", "password": PW}, headers=ORIGIN)
    assert r.status_code == 200, r.text
    return c, {**ORIGIN, "x-csrf-token": r.json()["csrf"]}


def _act(c: TestClient, h: dict[str, str], **body) -> dict:
    r = c.post(f"/api/patients/{PID}/annotation", json=body, headers=h)
    assert r.status_code == 200, r.text
    return r.json()


def test_click_grow_accept_undo_redo_save(ws: Workspace) -> None:
    c, h = _client(ws)  # an annotator may annotate (not decide)
    assert c.get(f"/api/patients/{PID}/annotation").json()["lesions"] == []
    d = _act(c, h, action="grow", voxel=list(BIG))
    core = d["pending"]["core"]
    assert abs(core - 4 / 3 * np.pi * 8**3) < 0.25 * 4 / 3 * np.pi * 8**3
    assert d["pending"]["necrosis"] > 0 and d["pending"]["whole"] > core
    bigger = _act(c, h, action="larger")["pending"]["core"]
    smaller = _act(c, h, action="smaller")["pending"]["core"]
    assert bigger >= smaller and _act(c, h, action="smaller")["pending"]["core"] <= smaller
    d = _act(c, h, action="accept")
    assert len(d["lesions"]) == 1 and d["pending"] is None and d["can_undo"]
    # the draft label map: necrosis 1, edema 2, enhancing 3; the pending lesion 4
    _act(c, h, action="grow", voxel=list(SMALL))
    r = c.get(f"/api/patients/{PID}/annotation/draft.nii.gz")
    assert r.status_code == 200 and r.headers["content-type"] == "application/gzip"
    img = nib.Nifti1Image.from_bytes(gzip.decompress(r.content))
    lab = np.asarray(img.dataobj)
    assert set(np.unique(lab)) == {0, 1, 2, 3, 4}
    assert lab[BIG] == 1 and lab[SMALL] == 4
    d = _act(c, h, action="accept")
    assert len(d["lesions"]) == 2
    assert _act(c, h, action="undo")["lesions"][0]["lesion"] == 1
    assert len(_act(c, h, action="redo")["lesions"]) == 2
    d = _act(c, h, action="save")
    assert d["saved"] == 1 and not d["changed"] and len(d["lesions"]) == 2
    with Catalog.open(ws.catalog_path, readonly=True) as cat:
        (v,) = cat.annotation_versions(PID)
    assert v.user_name == "ann" and v.tool == "grow" and v.lesions == 2
    assert (ws.root / "annotations" / PID / "Necrosis1_PGGE.nii.gz").is_file()


def test_proposals_pick_and_errors(ws: Workspace) -> None:
    c, h = _client(ws)
    d = _act(c, h, action="propose")
    assert len(d["candidates"]) == 2, d["candidates"]
    d = _act(c, h, action="pick", candidate=1)
    assert d["pending"] is not None
    assert len(_act(c, h, action="accept")["lesions"]) == 1
    for body, code, text in (
        ({"action": "grow", "voxel": [100, 100, 95]}, 422, "no enhancing lesion"),  # plain brain
        ({"action": "grow", "voxel": [1, 2]}, 422, "three"),
        ({"action": "pick", "candidate": 9}, 422, "no candidate"),
        ({"action": "fly"}, 422, "action must be one of"),
    ):
        r = c.post(f"/api/patients/{PID}/annotation", json=body, headers=h)
        assert r.status_code == code and text in r.json()["error"], (body, r.text)
    # state-changing requests need the CSRF token; unknown patients are 404
    r = c.post(f"/api/patients/{PID}/annotation", json={"action": "undo"}, headers=ORIGIN)
    assert r.status_code == 403
    r = c.post("/api/patients/BM-ZZZZZZZZ/annotation", json={"action": "undo"}, headers=h)
    assert r.status_code == 404
    anon = TestClient(create_app(ws), base_url="http://testserver")
    assert anon.get(f"/api/patients/{PID}/annotation/draft.nii.gz").status_code == 401


def test_brush_paints_and_erases_with_undo(ws: Workspace) -> None:
    c, h = _client(ws)
    d = _act(c, h, action="paint", voxel=[30, 60, 50], radius=3, region="core", lesion=0)
    assert [x["core"] for x in d["lesions"]] == [123]  # a new lesion: a 3-voxel sphere
    d = _act(c, h, action="paint", voxel=[34, 60, 50], radius=2, brush="disc", lesion=1)
    grown = d["lesions"][0]["core"]
    assert grown > 123
    d = _act(c, h, action="erase", voxel=[30, 60, 50], radius=1.5, region="core", lesion=1)
    assert d["lesions"][0]["core"] < grown
    d = _act(c, h, action="paint", voxel=[30, 60, 50], radius=6, region="whole", lesion=1)
    assert d["lesions"][0]["whole"] > d["lesions"][0]["core"]
    d = _act(c, h, action="paint", voxel=[30, 60, 50], radius=1, region="necrosis", lesion=1)
    assert d["lesions"][0]["necrosis"] > 0
    for _ in range(3):
        d = _act(c, h, action="undo")
    assert d["lesions"][0]["core"] == grown  # back before the erase
    d = _act(c, h, action="erase", voxel=[32, 60, 50], radius=12, region="core", lesion=1)
    assert d["lesions"] == []  # erased away: the lesion is gone
    d = _act(c, h, action="undo")
    saved = _act(c, h, action="save")
    assert saved["saved"] == 1
    with Catalog.open(ws.catalog_path, readonly=True) as cat:
        assert cat.annotation_versions(PID)[-1].tool == "brush"
    for body, text in (
        ({"action": "paint", "voxel": [30, 60, 50], "region": "edema"}, "region must be"),
        ({"action": "paint", "voxel": [30, 60, 50], "radius": 99}, "radius"),
        ({"action": "erase", "voxel": [30, 60, 50], "lesion": 0}, "choose the lesion"),
        ({"action": "paint", "voxel": [30, 60, 50], "lesion": 7}, "no lesion 7"),
    ):
        r = c.post(f"/api/patients/{PID}/annotation", json=body, headers=h)
        assert r.status_code == 422 and text in r.json()["error"], (body, r.text)


def test_fill_split_and_merge(ws: Workspace) -> None:
    c, h = _client(ws)
    _act(c, h, action="paint", voxel=[30, 60, 50], radius=3, lesion=0)  # 123 voxels
    d = _act(c, h, action="erase", voxel=[30, 60, 50], radius=1, brush="disc", lesion=1)
    assert d["lesions"][0]["core"] == 118  # a hole of 5 voxels in slice 50
    d = _act(c, h, action="fill", voxel=[30, 60, 50], region="core", lesion=1, brush="disc")
    assert d["lesions"][0]["core"] == 123 and d["lesions"][0]["necrosis"] == 0
    d = _act(c, h, action="undo")
    assert d["lesions"][0]["core"] == 118
    d = _act(c, h, action="fill", voxel=[30, 60, 50], region="necrosis", lesion=1, brush="sphere")
    assert d["lesions"][0]["core"] == 123 and d["lesions"][0]["necrosis"] == 5
    for body, text in (
        ({"voxel": [50, 60, 50], "lesion": 1}, "nothing to fill here"),  # outside the lesion
        ({"voxel": [30, 60, 50], "lesion": 1}, "nothing to fill here"),  # filled already
        ({"voxel": [30, 60, 50], "lesion": 2}, "choose the lesion to fill"),
        ({"voxel": [30, 60, 50], "lesion": 1, "region": "edema"}, "region must be"),
    ):
        r = c.post(f"/api/patients/{PID}/annotation", json={"action": "fill", **body}, headers=h)
        assert r.status_code == 422 and text in r.json()["error"], (body, r.text)
    d = _act(c, h, action="paint", voxel=[42, 60, 50], radius=3, lesion=0)
    assert [x["core"] for x in d["lesions"]] == [123, 123]
    d = _act(c, h, action="merge", lesions=[2, 1])
    assert [(x["core"], x["necrosis"]) for x in d["lesions"]] == [(246, 5)]
    d = _act(c, h, action="split", lesion=1)
    assert [(x["core"], x["necrosis"]) for x in d["lesions"]] == [(123, 5), (123, 0)]
    # two touching spheres in one mask split on their neck
    d = _act(c, h, action="paint", voxel=[60, 60, 58], radius=6, lesion=0)
    d = _act(c, h, action="paint", voxel=[60, 60, 69], radius=6, lesion=3)
    assert len(d["lesions"]) == 3
    touching = d["lesions"][2]["core"]
    d = _act(c, h, action="split", lesion=3)
    assert len(d["lesions"]) == 4 and d["lesions"][2]["core"] + d["lesions"][3]["core"] == touching
    assert abs(d["lesions"][2]["core"] - d["lesions"][3]["core"]) < 0.1 * touching
    for body, text in (
        ({"action": "merge", "lesions": [1]}, "at least two"),
        ({"action": "merge", "lesions": [1, 9]}, "lesions 1 to 4"),
        ({"action": "merge", "lesions": "1,2"}, "list of lesion numbers"),
        ({"action": "split", "lesion": 1}, "one piece"),
    ):
        r = c.post(f"/api/patients/{PID}/annotation", json=body, headers=h)
        assert r.status_code == 422 and text in r.json()["error"], (body, r.text)
    saved = _act(c, h, action="save")
    with Catalog.open(ws.catalog_path, readonly=True) as cat:
        v = cat.annotation_versions(PID)[-1]
    assert saved["saved"] == v.version and v.lesions == 4
