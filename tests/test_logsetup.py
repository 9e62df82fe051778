"""Logging (issue 18): repeated warnings shown once per kind and run, with a count; Python
warnings through the log; no "leaked semaphore" message after a killed run."""

from __future__ import annotations

import dataclasses
import io
import json
import logging
import subprocess
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
from rich.console import Console

from bm_testutil import make_toy_workspace
from brainmets.convert.dcm2niix import warning_kind
from brainmets.logsetup import (
    collect_warnings,
    log_repeat_summary,
    normalize_kind,
    reset_repeats,
    setup_logging,
)
from brainmets.pipeline import InlineExecutor, Pipeline, Runner, load_pipeline
from brainmets.pipeline.stage import StageContext, StageResult
from brainmets.pipeline.worker import execute_stage

GE = "Warning: Missing GE protocol data block (0025,101B)"
SIEMENS = "Warning: Siemens MoCo? Bogus slice timing (range -1..-1, TR={tr} seconds)"


@pytest.fixture
def logged(tmp_path: Path) -> Iterator[tuple[io.StringIO, Path]]:
    out = io.StringIO()
    log_file = tmp_path / "logs" / "brainmets.jsonl"
    setup_logging(Console(file=out, width=200), log_file)
    yield out, log_file
    logging.getLogger("brainmets").handlers.clear()


def _records(log_file: Path) -> list[dict]:
    return [json.loads(line) for line in log_file.read_text().splitlines()]


def test_a_repeated_warning_is_shown_once_then_counted(logged: tuple[io.StringIO, Path]) -> None:
    out, log_file = logged
    lg = logging.getLogger("brainmets.test")
    reset_repeats()
    for i in range(5):
        lg.warning("P%d convert: odd thing %d", i, i, extra={"repeat_kind": "convert: odd thing"})
    lg.warning("something else")
    lines = log_repeat_summary()
    console = " ".join(out.getvalue().split())
    assert console.count("odd thing") == 2  # the first record and the summary line
    assert "P0 convert: odd thing 0" in console and "P1 convert" not in console
    assert "something else" in console
    assert lines == [
        f"convert: odd thing: 4 more like the one above (5 in all, each in the log file {log_file})"
    ]
    assert lines[0] in console
    records = _records(log_file)
    assert sum(r["message"].startswith("P") for r in records) == 5  # every one in the file
    assert {r.get("repeat_kind") for r in records if r["message"].startswith("P")} == {
        "convert: odd thing"
    }
    assert log_repeat_summary() == []  # counted per run: the summary starts afresh


def test_harmless_warnings_go_to_debug_with_one_summary_line(
    logged: tuple[io.StringIO, Path],
) -> None:
    out, log_file = logged
    lg = logging.getLogger("brainmets.test")
    reset_repeats()
    for tr in ("6477.31", "425.95", "9845.34"):
        kind, level = warning_kind(SIEMENS.format(tr=tr))
        assert level == "DEBUG"
        lg.log(logging.DEBUG, f"convert: {SIEMENS.format(tr=tr)}", extra={"repeat_kind": kind})
    (line,) = log_repeat_summary()
    assert line.startswith("slice timing unavailable (irrelevant for structural images): 3 time(s)")
    assert "at DEBUG" in line and "-v shows them" in line
    console = " ".join(out.getvalue().split())
    assert "Bogus" not in console and line in console
    assert sum("Bogus slice timing" in r["message"] for r in _records(log_file)) == 3


def test_verbose_2_shows_every_repeat(tmp_path: Path) -> None:
    out = io.StringIO()
    setup_logging(Console(file=out, width=200), None, verbose=2)
    try:
        for i in range(3):
            logging.getLogger("brainmets.x").warning("w%d", i, extra={"repeat_kind": "k"})
    finally:
        logging.getLogger("brainmets").handlers.clear()
    assert all(f"w{i}" in out.getvalue() for i in range(3))


def test_dcm2niix_warning_kinds() -> None:
    assert warning_kind(GE)[1] == "DEBUG"
    assert warning_kind(SIEMENS.format(tr="1"))[0] == warning_kind(SIEMENS.format(tr="2.5"))[0]
    gone = "Warning: Unable to determine GE Slice timing, no Protocol Data Block GE (0025,101B)"
    assert warning_kind(gone + ": /ws/data/dicom/BM-X/1.2.dcm")[0] == warning_kind(SIEMENS)[0]
    other = "Warning: Volume 1 appears to be derived image ADC/Isotropic (non-zero b-value)"
    assert warning_kind(other) == (
        "Volume # appears to be derived image ADC/Isotropic (non-zero b-value)",
        "WARNING",
    )
    assert normalize_kind("bad value '2014' in /tmp/a/b.dcm at 2.25.12") == (
        "bad value '...' in ... at #"
    )


def test_python_warnings_are_logged_not_printed(
    logged: tuple[io.StringIO, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    out, log_file = logged
    warnings.warn("Invalid value for VR DA: '2014x'", UserWarning, stacklevel=1)
    assert "UserWarning: Invalid value for VR DA: '2014x'" in out.getvalue()
    assert "UserWarning" not in capsys.readouterr().err
    (rec,) = [r for r in _records(log_file) if r["logger"] == "brainmets.warnings"]
    assert rec["repeat_kind"] == "UserWarning: Invalid value for VR DA: '...'"
    assert rec["where"].endswith(f"test_logsetup.py:{_line_of('Invalid value for VR DA')}")


def _line_of(text: str) -> int:
    lines = Path(__file__).read_text().splitlines()
    return next(i for i, line in enumerate(lines, 1) if text in line and "warnings.warn" in line)


def _warning_stage(ctx: StageContext) -> StageResult:
    for _ in range(3):  # Python shows a warning once per place and text
        warnings.warn("pydicom-like warning 7", UserWarning, stacklevel=1)
    warnings.warn(f"odd value in {ctx.patient_id}", UserWarning, stacklevel=1)
    ctx.log("DEBUG", f"{ctx.patient_id}: harmless detail", repeat_kind="harmless")
    return StageResult()


def test_a_stage_s_python_warnings_become_its_log_records(tmp_path: Path) -> None:
    toy = load_pipeline("brainmets.pipeline.toy:pipeline")
    stage = dataclasses.replace(toy.get("make"), func=_warning_stage)
    ctx = StageContext("TOY-001", "make", {}, tmp_path, {})
    with collect_warnings() as outer:
        outcome = execute_stage(stage, ctx)
    assert outer == []  # collected by the stage, not by the caller
    rec = next(r for r in outcome.logs if r["level"] == "WARNING")
    assert rec["message"] == "UserWarning: pydicom-like warning 7"
    assert rec["repeat_kind"] == "UserWarning: pydicom-like warning #" and rec["count"] >= 1


def test_the_runner_shows_a_stage_warning_kind_once_per_run(tmp_path: Path) -> None:
    ws = make_toy_workspace(tmp_path / "ws")
    toy = load_pipeline("brainmets.pipeline.toy:pipeline")
    make = dataclasses.replace(toy.get("make"), func=_warning_stage, version="warns")
    pipeline = Pipeline(tuple(make if s.name == "make" else s for s in toy.stages[:2]))
    out = io.StringIO()
    log_file = ws.root / "logs" / "brainmets.jsonl"
    setup_logging(Console(file=out, width=200), log_file)
    try:
        with ws.lock():
            Runner(ws, pipeline, InlineExecutor(), progress=False).run(["enrol", "make"])
    finally:
        logging.getLogger("brainmets").handlers.clear()
    console = " ".join(out.getvalue().split())
    assert console.count("UserWarning: pydicom-like warning 7") == 1
    assert console.count("UserWarning: odd value in TOY-00") == 1  # 3 patients, one line
    assert "make: UserWarning: odd value in TOY-#: 2 more like the one above" in console
    assert "make: harmless: 3 time(s), each at DEBUG in the log file" in console
    assert "harmless detail" not in console
    records = _records(log_file)
    assert sum("harmless detail" in r["message"] for r in records) == 3


@pytest.mark.parametrize("quiet", [False, True])
def test_no_leaked_semaphore_message_after_a_kill(quiet: bool) -> None:
    code = (
        "import os, signal, multiprocessing as mp\n"
        "from brainmets.logsetup import quiet_resource_tracker\n"
        f"if {quiet}: quiet_resource_tracker()\n"
        "lock = mp.get_context('spawn').Lock()\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == -9
    assert ("leaked semaphore" in r.stderr) is not quiet, r.stderr
