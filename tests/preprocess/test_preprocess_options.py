"""Parameters, extractor choice without the optional packages, the SimpleITK backend."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from brainmets.preprocess import PreprocessOptions, skullstrip
from brainmets.preprocess.images import Volume
from brainmets.preprocess.registration import RegistrationOptions, register, resample_array
from brainmets.preprocess.stage import DEFAULTS, STAGE
from brainmets.preprocess.transforms import apply


def test_stage_defaults_round_trip() -> None:
    assert STAGE.name == "preprocess" and callable(STAGE.func)
    opts = PreprocessOptions.from_params(DEFAULTS)
    assert opts == PreprocessOptions()
    assert DEFAULTS["atlas_registration"] == "rigid"
    assert DEFAULTS["iterations"] == [100, 50, 10]
    assert all(v is not None for v in DEFAULTS.values())  # TOML-safe


def test_options_are_validated() -> None:
    assert PreprocessOptions.from_params({"iterations": "60x30x0"}).iterations == (60, 30, 0)
    with pytest.raises(ValueError, match="atlas_registration"):
        PreprocessOptions.from_params({"atlas_registration": "deformable"})
    with pytest.raises(ValueError, match="unknown preprocess parameter"):
        PreprocessOptions.from_params({"skullstripper": "atlas"})


def test_auto_extractor_without_deepbet(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(skullstrip, "deepbet_available", lambda: False)
    name, why = skullstrip.resolve_extractor("auto")
    assert name == "atlas" and "deepbet is not installed" in why
    with pytest.raises(RuntimeError, match=r"brainmets\[skullstrip\]"):
        skullstrip.resolve_extractor("deepbet")


def test_sitk_backend_recovers_a_rigid_motion(head_4mm: Volume) -> None:
    motion = np.eye(4)
    a = np.radians(6.0)
    motion[:3, :3] = [[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]]
    motion[:3, 3] = (5.0, -4.0, 3.0)
    moved = resample_array(head_4mm.data, head_4mm.affine, head_4mm.grid, np.linalg.inv(motion))
    fixed = (head_4mm.data, head_4mm.affine)
    opts = RegistrationOptions(dof=6, iterations=(100, 50, 20), backend="sitk", threads=1)
    res = register(fixed, (moved, head_4mm.affine), opts)
    assert res.backend == "sitk"
    idx = np.argwhere(head_4mm.data > np.percentile(head_4mm.data, 60))[::7]
    pts = apply(head_4mm.affine, idx.astype(float))
    err = np.linalg.norm(apply(res.matrix, pts) - apply(motion, pts), axis=1).mean()
    assert err < 2.0, err


def test_standalone_set_parameters_are_checked(tmp_path: Path) -> None:
    from bm_testutil import run_cli

    f = tmp_path / "x.nii.gz"
    files = ["--t1", str(f), "--t1c", str(f), "--t2", str(f), "--flair", str(f)]
    r = run_cli("preprocess", *files, "--out", str(tmp_path / "o"), "--set", "bogus=1")
    assert r.returncode == 2 and "bogus" in r.stderr + r.stdout
    r = run_cli("preprocess", *files, "--out", str(tmp_path / "o"), "--set", "fixed_image=x")
    assert r.returncode == 2 and "fixed_image" in r.stderr + r.stdout
    r = run_cli("preprocess", *files, "--out", str(tmp_path / "o"), "--set", "novalue")
    assert r.returncode != 0 and "KEY=VALUE" in r.stderr + r.stdout


def test_default_registration_gives_the_same_matrix_on_every_run(head_4mm: Volume) -> None:
    """Issue 15: the same inputs must give the same bytes, whichever process or executor
    runs them (greedy with several threads does not: its transforms vary in the last
    digits), so the stage's default is one registration thread."""
    assert PreprocessOptions().threads == 1
    motion = np.eye(4)
    a = np.radians(4.0)
    motion[:3, :3] = [[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]]
    motion[:3, 3] = (3.0, 2.0, -4.0)
    moved = resample_array(head_4mm.data, head_4mm.affine, head_4mm.grid, np.linalg.inv(motion))
    opts = RegistrationOptions(dof=6, iterations=(60, 30, 10), threads=PreprocessOptions().threads)
    runs = [
        register((head_4mm.data, head_4mm.affine), (moved, head_4mm.affine), opts).matrix
        for _ in range(3)
    ]
    assert all(np.array_equal(runs[0], m) for m in runs[1:]), runs
