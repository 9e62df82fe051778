"""Lesion proposers: where candidate lesions come from, so that a trained model can replace
the image-analysis method.

A proposer is anything with a ``name`` and ``propose(case, files) -> list[Candidate]``
(:class:`Proposer`): ``case`` is the normalised :class:`~brainmets.annotate.images.
CaseImages`, ``files`` the preprocessed NIfTI files (roles ``t1c``, ``t1n``, ``t2w``, ``t2f``,
``mask``; all on the SRI24 grid). Two come with brainmets:

* :class:`ImageAnalysisProposer` — :func:`~brainmets.annotate.propose.propose_lesions`;
* :class:`CommandProposer` — runs a command on the case (e.g. an nnU-Net or other model's
  predict script) and turns the label map it writes into candidates.

Configured in ``brainmets.toml``::

    [annotate]
    proposer = "command"     # or "image-analysis" (the default)
    command = ["python", "/opt/model/predict.py", "--t1c", "{t1c}", "--flair", "{t2f}",
               "--out", "{out}"]
    lesion_labels = [1, 3]   # the output labels that make a lesion's core (BraTS: 1 + 3)
    edema_label = 2
    timeout_s = 3600

The command is run without a shell; ``{t1c}``, ``{t1n}``, ``{t2w}``, ``{t2f}``, ``{mask}``
are replaced by the files' paths and ``{out}`` by the path where it must write a NIfTI label
map on the same grid. Each connected core (``lesion_labels``, 26-connected) becomes one
candidate (confidence 1: the model's own decision); necrosis is label 1 inside it, the whole
tumour the core and the ``edema_label`` voxels connected to it.
"""

from __future__ import annotations

import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, cast

import cc3d
import nibabel as nib
import numpy as np

from brainmets.annotate.grow import LesionMasks
from brainmets.annotate.images import CaseImages
from brainmets.annotate.propose import Candidate, ProposeOptions, propose_lesions

__all__ = [
    "CommandProposer",
    "ImageAnalysisProposer",
    "Proposer",
    "ProposerError",
    "proposer_from_config",
]

ROLES = ("t1c", "t1n", "t2w", "t2f", "mask")


class ProposerError(ValueError):
    """A proposer that could not run (bad settings, the command failed, a bad output)."""


class Proposer(Protocol):
    """Where candidate lesions come from."""

    name: str

    def propose(self, case: CaseImages, files: Mapping[str, Path]) -> list[Candidate]: ...


@dataclass
class ImageAnalysisProposer:
    """The built-in method (:func:`~brainmets.annotate.propose.propose_lesions`)."""

    options: ProposeOptions = field(default_factory=ProposeOptions)
    name: str = "image-analysis"

    def propose(self, case: CaseImages, files: Mapping[str, Path]) -> list[Candidate]:
        return propose_lesions(case, self.options)


def candidates_from_label_map(
    labels: np.ndarray,
    case: CaseImages,
    lesion_labels: Sequence[int] = (1, 3),
    edema_label: int | None = 2,
) -> list[Candidate]:
    """One candidate per connected core of a label map on the case's grid (largest first)."""
    if tuple(labels.shape) != case.shape:
        raise ProposerError(f"the label map has shape {labels.shape}, the case {case.shape}")
    core_all = np.isin(labels, list(lesion_labels))
    comps, n = cc3d.connected_components(core_all, connectivity=26, return_N=True)
    whole_all = core_all | (labels == edema_label) if edema_label is not None else core_all
    wcomps = cc3d.connected_components(whole_all, connectivity=26)
    out: list[Candidate] = []
    for i in range(1, n + 1):
        core = comps == i
        idx = np.argwhere(core)
        keep = np.unique(wcomps[core])
        whole = np.isin(wcomps, keep[keep > 0]) | core
        widx = np.argwhere(whole)
        lo, hi = widx.min(axis=0), widx.max(axis=0) + 1
        sl = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi, strict=True))
        nec = core & (labels == 1) if 1 in lesion_labels else np.zeros(core.shape, bool)
        centre = idx.mean(axis=0)
        peak = tuple(int(x) for x in idx[np.argmin(((idx - centre) ** 2).sum(axis=1))])
        m = LesionMasks(
            origin=(int(lo[0]), int(lo[1]), int(lo[2])),
            enhancing=(core & ~nec)[sl],
            necrosis=nec[sl],
            whole=whole[sl],
            seed=(peak[0], peak[1], peak[2]),
            peak=(peak[0], peak[1], peak[2]),
            threshold=float("nan"),
            background=float("nan"),
            contrast=float("nan"),
        )
        c = (float(centre[0]), float(centre[1]), float(centre[2]))
        out.append(Candidate(m, c, case.world(c), int(core.sum()), 1.0, {"model": 1.0}))
    out.sort(key=lambda x: -x.voxels)
    return out


@dataclass
class CommandProposer:
    """Runs ``command`` on the case and reads the label map it writes (module docstring)."""

    command: Sequence[str]
    lesion_labels: Sequence[int] = (1, 3)
    edema_label: int | None = 2
    timeout_s: float = 3600.0
    name: str = "command"

    def argv(self, files: Mapping[str, Path], out: Path) -> list[str]:
        values = {r: str(files[r]) for r in ROLES if r in files}
        values["out"] = str(out)
        try:
            return [str(part).format(**values) for part in self.command]
        except (KeyError, IndexError) as exc:
            raise ProposerError(
                f"[annotate] command names {exc} but the case has only {', '.join(sorted(values))}"
            ) from None

    def propose(self, case: CaseImages, files: Mapping[str, Path]) -> list[Candidate]:
        with tempfile.TemporaryDirectory(prefix="bm-proposer-") as tmp:
            out = Path(tmp) / "labels.nii.gz"
            argv = self.argv(files, out)
            try:
                done = subprocess.run(
                    argv, capture_output=True, text=True, timeout=self.timeout_s, check=False
                )
            except (OSError, subprocess.TimeoutExpired) as exc:
                raise ProposerError(f"the proposer command {argv[0]!r} did not run: {exc}") from exc
            if done.returncode != 0:
                tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
                raise ProposerError(
                    f"the proposer command {argv[0]!r} failed (exit {done.returncode}): "
                    + " | ".join(tail)
                )
            if not out.is_file():
                raise ProposerError(f"the proposer command {argv[0]!r} wrote no {{out}} file")
            try:
                img = cast(nib.Nifti1Image, nib.load(str(out)))
                labels = np.asarray(img.dataobj).astype(np.int32)
            except Exception as exc:  # noqa: BLE001 - any unreadable output is the command's
                raise ProposerError(f"the proposer's output is not a NIfTI image: {exc}") from exc
        return candidates_from_label_map(labels, case, self.lesion_labels, self.edema_label)


def proposer_from_config(config: Mapping[str, Any] | None) -> Proposer:
    """The proposer of a workspace configuration's ``[annotate]`` table."""
    section = (config or {}).get("annotate", {}) or {}
    if not isinstance(section, Mapping):
        raise ProposerError("brainmets.toml: [annotate] must be a table")
    kind = section.get("proposer", "image-analysis")
    if kind == "image-analysis":
        return ImageAnalysisProposer()
    if kind != "command":
        raise ProposerError(
            f"brainmets.toml: [annotate] proposer must be 'image-analysis' or 'command', "
            f"not {kind!r}"
        )
    command = section.get("command")
    if not isinstance(command, list) or not command or not all(isinstance(c, str) for c in command):
        raise ProposerError(
            "brainmets.toml: [annotate] command must be a list of strings (the program and "
            "its arguments, with {t1c} ... {out})"
        )
    labels = section.get("lesion_labels", [1, 3])
    edema = section.get("edema_label", 2)
    return CommandProposer(
        command,
        tuple(int(x) for x in labels),
        None if edema is None else int(edema),
        float(section.get("timeout_s", 3600)),
    )
