"""Lesion proposers: a model's label map turned into candidates, the "run this command on
the case" adapter (with a stand-in model), and the configuration's errors."""

from __future__ import annotations

import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from phantoms import SHAPE, Phantom

from brainmets.annotate.proposers import (
    CommandProposer,
    ImageAnalysisProposer,
    ProposerError,
    candidates_from_label_map,
    proposer_from_config,
)

MODEL = """
import sys
import nibabel as nib
import numpy as np
img = nib.load(sys.argv[1])
lab = np.zeros(img.shape, np.uint8)
g = np.ogrid[tuple(slice(0, n) for n in img.shape)]
d = np.sqrt(sum((a - c) ** 2 for a, c in zip(g, (40, 40, 50))))
lab[d <= 9] = 2
lab[d <= 5] = 3
lab[d <= 2] = 1
d2 = np.sqrt(sum((a - c) ** 2 for a, c in zip(g, (80, 70, 40))))
lab[d2 <= 3] = 3
nib.save(nib.Nifti1Image(lab, img.affine), sys.argv[2])
"""


def _files(tmp_path: Path, ph: Phantom) -> dict[str, Path]:
    p = tmp_path / "t1c.nii.gz"
    nib.save(nib.Nifti1Image(ph.t1c.astype(np.float32), np.eye(4)), str(p))
    return {"t1c": p}


def test_a_label_map_becomes_one_candidate_per_core() -> None:
    ph = Phantom(seed=1)
    case = ph.case()
    lab = np.zeros(SHAPE, np.uint8)
    lab[30:40, 30:40, 30:40] = 2
    lab[33:37, 33:37, 33:37] = 3
    lab[34:36, 34:36, 34:36] = 1
    lab[70:73, 70:73, 70:73] = 3
    cands = candidates_from_label_map(lab, case)
    assert [c.voxels for c in cands] == [64, 27]
    big = cands[0].masks
    assert big.counts() == {"core": 64, "enhancing": 56, "necrosis": 8, "whole": 1000}
    with pytest.raises(ProposerError, match="shape"):
        candidates_from_label_map(lab[:-1], case)


def test_the_command_adapter_runs_a_model(tmp_path: Path) -> None:
    script = tmp_path / "predict.py"
    script.write_text(MODEL)
    ph = Phantom(seed=2)
    config = {
        "annotate": {
            "proposer": "command",
            "command": [sys.executable, str(script), "{t1c}", "{out}"],
        }
    }
    proposer = proposer_from_config(config)
    assert isinstance(proposer, CommandProposer)
    cands = proposer.propose(ph.case(), _files(tmp_path, ph))
    assert len(cands) == 2 and all(c.confidence == 1.0 for c in cands)
    assert np.allclose(cands[0].centre, (40, 40, 50), atol=0.5)
    assert cands[0].masks.counts()["necrosis"] > 0
    assert cands[0].masks.counts()["whole"] > cands[0].masks.counts()["core"]


def test_proposer_errors_are_named(tmp_path: Path) -> None:
    ph = Phantom(seed=3)
    files = _files(tmp_path, ph)
    fail = CommandProposer([sys.executable, "-c", "import sys; sys.exit('model crashed')"])
    with pytest.raises(ProposerError, match="model crashed"):
        fail.propose(ph.case(), files)
    silent = CommandProposer([sys.executable, "-c", "pass", "{out}"])
    with pytest.raises(ProposerError, match="wrote no"):
        silent.propose(ph.case(), files)
    with pytest.raises(ProposerError, match="only"):
        CommandProposer(["model", "{t1ce}"]).argv(files, tmp_path / "o.nii.gz")
    for section, text in (
        ({"proposer": "nnunet"}, "must be 'image-analysis' or 'command'"),
        ({"proposer": "command"}, "command must be a list"),
        ({"proposer": "command", "command": "predict.sh"}, "command must be a list"),
    ):
        with pytest.raises(ProposerError, match=text):
            proposer_from_config({"annotate": section})
    assert isinstance(proposer_from_config({}), ImageAnalysisProposer)
