"""Running an external model on an exported dataset (``brainmets evaluate --predict-cmd``).

The model is any command that reads a folder of nnU-Net-style input images
(``<case>_0000.nii.gz`` ... ``<case>_0003.nii.gz``: T1, T1c, T2, FLAIR, as
``brainmets export --layout nnunet`` writes them) and writes one label map per case
(``<case>.nii.gz``) into an output folder, e.g.
``nnUNetv2_predict -i {input_dir} -o {output_dir} -d 501 -c 3d_fullres``. The command is
split like a shell would split it, but no shell runs it: ``{input_dir}`` and
``{output_dir}`` are replaced by the folders, nothing else is interpreted.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from brainmets.evaluate.pairing import nifti_stem


class PredictionError(RuntimeError):
    """The model command could not run, failed, or wrote nothing usable."""


@dataclass
class Prediction:
    command: list[str]
    input_dir: Path
    output_dir: Path
    reference_dir: Path
    seconds: float
    written: int
    log_tail: str


def dataset_folders(dataset: Path) -> tuple[Path, Path]:
    """``(images, labels)`` of an nnU-Net raw dataset folder: ``imagesTr``/``labelsTr``."""
    images, labels = dataset / "imagesTr", dataset / "labelsTr"
    if not images.is_dir() or not labels.is_dir():
        raise PredictionError(
            f"{dataset}: not an nnU-Net raw dataset (no imagesTr/ and labelsTr/); write one "
            "with: brainmets export --layout nnunet"
        )
    return images, labels


def build_command(template: str, input_dir: Path, output_dir: Path) -> list[str]:
    """The argument list of ``template`` with the two folders filled in."""
    if "{input_dir}" not in template or "{output_dir}" not in template:
        raise PredictionError(
            "--predict-cmd must contain {input_dir} and {output_dir}, e.g. "
            "'nnUNetv2_predict -i {input_dir} -o {output_dir} -d 501 -c 3d_fullres'"
        )
    try:
        parts = shlex.split(template)
    except ValueError as exc:
        raise PredictionError(f"--predict-cmd: cannot split {template!r}: {exc}") from None
    return [
        p.replace("{input_dir}", str(input_dir)).replace("{output_dir}", str(output_dir))
        for p in parts
    ]


def run_prediction(
    template: str, dataset: Path, output_dir: Path, timeout_s: float | None = None
) -> Prediction:
    """Run the model on ``dataset``'s images, writing into ``output_dir`` (new or empty)."""
    images, labels = dataset_folders(dataset)
    output_dir = Path(output_dir)
    if output_dir.exists() and any(output_dir.iterdir()):
        raise PredictionError(
            f"{output_dir}: the predictions folder must be new or empty, so that only this "
            "run's label maps are evaluated"
        )
    output_dir.mkdir(parents=True, exist_ok=True)
    cmd = build_command(template, images.resolve(), output_dir.resolve())
    start = time.perf_counter()
    try:
        proc = subprocess.run(
            cmd,
            capture_output=True,
            text=True,
            timeout=timeout_s,
            env={**os.environ},
            check=False,
        )
    except FileNotFoundError:
        raise PredictionError(f"--predict-cmd: no such program {cmd[0]!r}") from None
    except subprocess.TimeoutExpired:
        raise PredictionError(f"--predict-cmd timed out after {timeout_s:g} s") from None
    seconds = time.perf_counter() - start
    tail = (proc.stdout[-2000:] + proc.stderr[-2000:]).strip()
    if proc.returncode != 0:
        raise PredictionError(
            f"the model command exited with status {proc.returncode}: {' '.join(cmd)}\n{tail}"
        )
    written = [p for p in output_dir.iterdir() if nifti_stem(p.name) is not None]
    if not written:
        raise PredictionError(f"the model command wrote no label map into {output_dir}\n{tail}")
    return Prediction(cmd, images, output_dir, labels, seconds, len(written), tail)
