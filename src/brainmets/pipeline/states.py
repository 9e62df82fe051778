"""What each recorded (patient, stage) run means now: the states ``brainmets status`` shows.

The catalog holds what the runner wrote last, and that alone can mislead:

* a run killed in a stage leaves the row ``running`` until the next run recovers it. Shown
  **interrupted** as soon as the command that marked it is known to have ended: its ``runs``
  row ended, a later command started (commands that run stages hold the workspace lock, one
  at a time), or it ran on this host and its process is gone (or its process ID now belongs
  to a process started after the command). A command on another host that has not ended is
  taken as still running.
* a patient stage whose recorded result (``done`` or ``excluded``) was made from an earlier
  result of the stage before it is shown **stale**: the stage before it (pipeline order,
  patient stages) is not done now (failed, excluded, interrupted, running, stale, not
  recorded), or it ran again since and its fingerprint is no longer the one this stage's
  recorded inputs name (``inputs.upstream``). The next run redoes a stale stage (or, when
  its upstream failed, leaves it until the upstream succeeds); nothing here changes the
  catalog.

Every other row is shown as recorded: ``waiting`` is a stage that could not run yet for the
patient (segment before the patient's annotations are supplied), with what it waits for as
the reason; it is not an error, and the next run tries it again. :func:`stage_states`
computes the states from the catalog's records; it reads nothing else but the process table
of this host.
"""

from __future__ import annotations

import datetime as _dt
import os
import socket
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from brainmets.catalog import COHORT, CommandRun, PatientRow, StageRun
from brainmets.pipeline.stage import Pipeline, PipelineOutline

#: a process started this long after its command's recorded start is another process
_PID_REUSE_SLACK_S = 5.0


@dataclass(frozen=True)
class StageState:
    """The shown state of one (patient, stage): ``state`` is the recorded ``status`` or
    ``interrupted`` / ``stale`` with the ``reason``."""

    patient_id: str
    stage: str
    state: str
    recorded: str
    reason: str | None = None


def command_ended(command: CommandRun | None, later: bool, host: str | None = None) -> str | None:
    """Why the command that recorded a ``running`` row is known to have ended (None when
    it may still be running). ``later``: a later command has started since."""
    if command is None:
        return "its command is not recorded"
    if command.status != "running" or command.ended_at:
        return f"its command ({command.command}, run {command.id}) ended: {command.status}"
    if later:
        return f"a later command started after run {command.id}"
    host = host or socket.gethostname()
    if command.host != host or not command.pid:
        return None
    if not _process_exists(command.pid):
        return f"the process of run {command.id} (pid {command.pid}) is gone"
    started = _process_start(command.pid)
    recorded = epoch_seconds(command.started_at)
    reused = (
        started is not None and recorded is not None and started > recorded + _PID_REUSE_SLACK_S
    )
    if reused:
        return f"the process of run {command.id} (pid {command.pid}) is gone (its pid is reused)"
    return None


def stage_states(
    pipeline: Pipeline | PipelineOutline,
    runs: Iterable[StageRun],
    commands: Sequence[CommandRun],
    host: str | None = None,
) -> dict[tuple[str, str], StageState]:
    """The shown state of every recorded (patient, stage) (see the module docstring)."""
    by_id = {c.id: c for c in commands}
    last_id = max(by_id, default=0)
    ended: dict[int | None, str | None] = {}

    def why_ended(run_id: int | None) -> str | None:
        if run_id not in ended:
            cmd = by_id.get(run_id) if run_id is not None else None
            ended[run_id] = command_ended(cmd, run_id is not None and run_id < last_id, host)
        return ended[run_id]

    recorded: dict[tuple[str, str], StageRun] = {}
    out: dict[tuple[str, str], StageState] = {}
    for r in runs:
        recorded[(r.patient_id, r.stage)] = r
        state = StageState(
            r.patient_id, r.stage, r.status, r.status, r.error if r.status == "waiting" else None
        )
        if r.status == "running":
            why = why_ended(r.run_id)
            if why is not None:
                state = StageState(
                    r.patient_id, r.stage, "interrupted", r.status, f"interrupted ({why})"
                )
        out[(r.patient_id, r.stage)] = state

    patient_stages = [s.name for s in pipeline.stages if s.scope == "patient"]
    patients = sorted({p for p, _ in recorded if p != COHORT})
    for pid in patients:
        for prev, name in zip(patient_stages, patient_stages[1:], strict=False):
            this = recorded.get((pid, name))
            if this is None or this.status not in ("done", "excluded"):
                continue
            before = out.get((pid, prev))
            if before is None or before.state != "done":
                now = before.state if before is not None else "not recorded"
                reason = f"made from an earlier result of {prev}, which is now {now}"
            elif this.inputs.get("upstream") != recorded[(pid, prev)].fingerprint:
                reason = f"{prev} ran again since; this result was made from its earlier one"
            else:
                continue
            out[(pid, name)] = StageState(pid, name, "stale", this.status, reason)
    return out


def included_patients(
    patients: Iterable[PatientRow],
    states: dict[tuple[str, str], StageState],
    required: Sequence[str],
) -> list[str]:
    """The patients that are in the dataset now: active, and every ``required`` stage shown
    ``done`` (the inclusion rule of :mod:`brainmets.cohort.model`, on the shown states: a
    stale or interrupted stage does not count)."""
    out = []
    for p in patients:
        if p.status == "excluded":
            continue
        shown = [states.get((p.id, s)) for s in required]
        if all(s is not None and s.state == "done" for s in shown):
            out.append(p.id)
    return out


# ------------------------------------------------------------------- processes
def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    except OSError:
        return True
    return True


def _process_start(pid: int) -> float | None:
    """When a process of this host started (seconds since the epoch; Linux ``/proc``), or
    None when that cannot be read."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        boot = next(
            int(line.split()[1])
            for line in Path("/proc/stat").read_text().splitlines()
            if line.startswith("btime ")
        )
        ticks = int(stat.rsplit(")", 1)[1].split()[19])  # field 22, starttime
        return boot + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, StopIteration, ValueError, IndexError):
        return None


def epoch_seconds(iso: str | None) -> float | None:
    """Seconds since the epoch of a catalog timestamp (``utcnow()``); None if absent."""
    if not iso:
        return None
    try:
        return _dt.datetime.fromisoformat(iso).timestamp()
    except ValueError:
        return None


# ----------------------------------------------------------------- exports
def runs_snapshot(runs: Iterable[StageRun], skip_stage: str) -> list[list[str | None]]:
    """``[patient, stage, status, fingerprint]`` of every run but those of ``skip_stage``
    (the stage taking the snapshot), sorted: what a result was made from."""
    return sorted(
        [r.patient_id, r.stage, r.status, r.fingerprint] for r in runs if r.stage != skip_stage
    )


def changes_since(
    before: dict[tuple[str, str], tuple[str, str | None]],
    runs: Iterable[StageRun],
    skip_stage: str,
) -> list[str]:
    """What changed in the stage runs since a snapshot (:func:`runs_snapshot`, read back as
    (patient, stage) -> (status, fingerprint)): one line per (patient, stage) whose status or
    fingerprint differs, that is new, or that is no longer recorded. Empty: nothing changed
    (a run that skipped everything, or redid a stage with the same fingerprint, changes
    nothing)."""
    now = {
        (r.patient_id, r.stage): (r.status, r.fingerprint) for r in runs if r.stage != skip_stage
    }
    out = []
    for key in sorted(set(before) | set(now)):
        who = f"{'(cohort)' if key[0] == COHORT else key[0]} {key[1]}"
        old, new = before.get(key), now.get(key)
        if old == new:
            continue
        if new is None:
            out.append(f"{who}: no longer recorded")
        elif old is None:
            out.append(f"{who}: {new[0]} since")
        elif old[0] != new[0]:
            out.append(f"{who}: {old[0]} then, {new[0]} now")
        else:
            out.append(f"{who}: ran again with other inputs or parameters ({new[0]})")
    return out
