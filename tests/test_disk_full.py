"""A full disk during de-identification, preprocessing and export (issue 15).

Each scenario runs in a child process inside its own user and mount namespace
(``unshare -rm``, no root needed) where a small tmpfs is mounted: the writes really fail
with ``ENOSPC``. Then the tmpfs is remounted larger ("space is freed") and the same step
runs again. Checked: the error names the file being written and says what to do, nothing
half-written is left (no temporary, no partial file under a final name: every file there
is complete), and the run after space is freed completes.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve()


def _namespaces_work() -> str | None:
    if shutil.which("unshare") is None:
        return "unshare (util-linux) not installed"
    probe = subprocess.run(
        ["unshare", "-rm", "sh", "-c", "mount -t tmpfs -o size=1m tmpfs /mnt && umount /mnt"],
        capture_output=True,
        text=True,
    )
    if probe.returncode != 0:
        return f"user/mount namespaces unavailable: {probe.stderr.strip()}"
    return None


_WHY_NOT = _namespaces_work()
pytestmark = pytest.mark.skipif(_WHY_NOT is not None, reason=str(_WHY_NOT))


def _in_namespace(scenario: str, small: Path, **args: str) -> dict:
    """Run ``scenario`` of this module in a new user+mount namespace with a tmpfs at
    ``small``; return the JSON it prints."""
    small.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(
        ["unshare", "-rm", sys.executable, str(HERE), scenario, str(small), json.dumps(args)],
        capture_output=True,
        text=True,
        timeout=900,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ------------------------------------------------------------ run inside the namespace
def _mount(small: Path, size: str, remount: bool = False) -> None:
    opts = f"remount,size={size}" if remount else f"size={size}"
    subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(small)], check=True)


def _leftovers(root: Path) -> list[str]:
    from brainmets.fsutil import TMP_PREFIX

    return sorted(str(p) for p in root.rglob("*") if p.name.startswith(TMP_PREFIX))


def _incomplete_dicom(root: Path) -> list[str]:
    import pydicom

    bad = []
    for p in root.rglob("*.dcm"):
        try:
            ds = pydicom.dcmread(p)
            ds.PixelData  # noqa: B018 - read to the end
        except Exception as exc:
            bad.append(f"{p}: {exc}")
    return bad


def _incomplete_nifti(root: Path) -> list[str]:
    import nibabel as nib
    import numpy as np

    bad = []
    for p in root.rglob("*.nii.gz"):
        try:
            np.asarray(nib.load(str(p)).dataobj)
        except Exception as exc:
            bad.append(f"{p}: {exc}")
    return bad


def _brainmets(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "brainmets", *argv], capture_output=True, text=True, timeout=600
    )


def scenario_deid(small: Path, args: dict) -> dict:
    src, key, reports = Path(args["src"]), args["key"], Path(args["reports"])
    out = small / "deid"
    _mount(small, args["size"])
    first = _brainmets("deid", str(src), str(out), "--key", key, "--report",
                       str(reports / "first.csv"), "-j", "2")  # fmt: skip
    written = sorted(str(p.relative_to(out)) for p in out.rglob("*.dcm"))
    state = {
        "rc": first.returncode,
        "stderr": first.stderr,
        "leftovers": _leftovers(small),
        "incomplete": _incomplete_dicom(out),
        "written": len(written),
    }
    _mount(small, "512m", remount=True)
    second = _brainmets("deid", str(src), str(out), "--key", key, "--report",
                        str(reports / "second.csv"), "-j", "2")  # fmt: skip
    state.update(
        rc2=second.returncode,
        stderr2=second.stderr,
        written2=len(list(out.rglob("*.dcm"))),
        incomplete2=_incomplete_dicom(out),
        leftovers2=_leftovers(small),
    )
    return state


def scenario_preprocess(small: Path, args: dict) -> dict:
    from bm_testutil import brats_met_inputs, preprocess_context
    from brainmets.fsutil import DiskFullError
    from brainmets.preprocess.stage import STAGE

    _mount(small, args["size"])
    inputs = {r: str(p) for r, p in brats_met_inputs(Path(args["case"])).items()}
    ctx = preprocess_context(small, inputs, args["atlas"])
    state: dict = {}
    try:
        STAGE.func(ctx)
        state["raised"] = None
    except DiskFullError as exc:
        state.update(raised="DiskFullError", message=str(exc), filename=exc.filename)
    except Exception as exc:  # noqa: BLE001 - reported to the test
        state.update(raised=type(exc).__name__, message=str(exc))
    state.update(leftovers=_leftovers(small), incomplete=_incomplete_nifti(small))
    _mount(small, "512m", remount=True)
    res = STAGE.func(ctx)
    state.update(
        outputs2=sorted(res.outputs),
        complete2=all(Path(p).is_file() for p in res.outputs.values()),
        incomplete2=_incomplete_nifti(small),
        leftovers2=_leftovers(small),
        out_dir=str(ctx.out_dir),
    )
    return state


def scenario_export(small: Path, args: dict) -> dict:
    ws = args["workspace"]
    _mount(small, args["size"])
    dest = small / "dataset"
    first = _brainmets("export", "-w", ws, "--layout", "nnunet", "--out", str(dest))
    state = {
        "rc": first.returncode,
        "stderr": first.stderr + first.stdout,
        "leftovers": _leftovers(small),
        "in_place": sorted(str(p.relative_to(small)) for p in small.rglob("*")),
    }
    _mount(small, "512m", remount=True)
    second = _brainmets("export", "-w", ws, "--layout", "nnunet", "--out", str(dest))
    state.update(
        rc2=second.returncode,
        stderr2=second.stderr + second.stdout,
        leftovers2=_leftovers(small),
        in_place2=sorted(p.name for p in dest.iterdir()),
        incomplete2=_incomplete_nifti(small),
    )
    valid = _brainmets("validate", str(next(dest.iterdir())))
    state.update(validate_rc=valid.returncode, validate=valid.stdout + valid.stderr)
    return state


# ------------------------------------------------------------------------- the tests
@pytest.fixture(scope="module")
def rx(tmp_path_factory: pytest.TempPathFactory):
    """The small workspace of ``tests/report/rx_workspace.py`` (run to its report)."""
    from brainmets.atlas import AtlasError, atlas_file

    try:
        atlas_file("t1_brain.nii.gz")
    except AtlasError as exc:
        pytest.skip(str(exc))
    sys.path.insert(0, str(HERE.parent / "report"))
    from rx_workspace import make_workspace

    return make_workspace(tmp_path_factory.mktemp("rx"))


def test_disk_full_during_folder_deid(tmp_path: Path, testdata: Path) -> None:
    src = tmp_path / "in"
    shutil.copytree(testdata / "dicom" / "siemens_trio_epi_orientation" / "dicom", src)
    for p in src.rglob("*.nii"):  # the folder's reference conversion: not DICOM
        p.unlink()
    n = sum(1 for p in src.rglob("*") if p.is_file())
    key = tmp_path / "k.key"
    key.write_bytes(os.urandom(32))
    key.chmod(0o600)
    reports = tmp_path / "reports"
    reports.mkdir()
    r = _in_namespace(
        "deid", tmp_path / "small", src=str(src), key=str(key), reports=str(reports), size="2m"
    )
    assert r["rc"] not in (0, None), r
    assert "no space left on device while writing" in r["stderr"], r["stderr"]
    assert str(tmp_path / "small" / "deid") in r["stderr"]  # the file is named
    assert "Traceback" not in r["stderr"]
    assert r["leftovers"] == [] and r["incomplete"] == [], r
    assert 0 < r["written"] < n  # it did run out part-way
    assert r["rc2"] == 0, r["stderr2"]
    assert r["written2"] == n and r["incomplete2"] == [] and r["leftovers2"] == []


def test_disk_full_during_preprocess(tmp_path: Path, testdata: Path) -> None:
    from brainmets.atlas import AtlasError, atlas_file

    try:
        atlas = atlas_file("t1_brain.nii.gz").parent
    except AtlasError as exc:
        pytest.skip(str(exc))
    from bm_testutil import BRATS_MET_CASE

    case = testdata / BRATS_MET_CASE
    r = _in_namespace("preprocess", tmp_path / "small", case=str(case), atlas=str(atlas),
                      size="3m")  # fmt: skip
    assert r["raised"] == "DiskFullError", r
    assert r["message"].startswith("no space left on device while writing "), r
    assert r["filename"].startswith(r["out_dir"]) and r["filename"].endswith(".nii.gz"), r
    assert "free some space and run again" in r["message"]
    assert r["leftovers"] == [] and r["incomplete"] == [], r
    assert r["complete2"] and r["incomplete2"] == [] and r["leftovers2"] == []
    assert {"t1c", "t2f", "mask", "transforms", "qc"} <= set(r["outputs2"])


def test_disk_full_during_export(rx, tmp_path: Path) -> None:
    r = _in_namespace("export", tmp_path / "small", workspace=str(rx.root), size="1m")
    assert r["rc"] != 0, r
    text = " ".join(r["stderr"].split())
    assert "no space left on device while writing" in text, r["stderr"]
    assert str(tmp_path / "small") in text and ".tmp-export-" not in text, text
    assert "Traceback" not in r["stderr"]
    # nothing of the failed export is left: no staging folder, no partial dataset
    assert r["leftovers"] == [] and r["in_place"] == ["dataset"], r  # the --out folder
    assert r["rc2"] == 0, r["stderr2"]
    assert r["leftovers2"] == [] and r["incomplete2"] == [] and len(r["in_place2"]) == 1, r
    assert r["validate_rc"] == 0, r["validate"]


if __name__ == "__main__":
    _name, _small, _args = sys.argv[1], Path(sys.argv[2]), json.loads(sys.argv[3])
    print(json.dumps(globals()[f"scenario_{_name}"](_small, _args)))
