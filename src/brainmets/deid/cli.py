"""Plain functions behind ``brainmets deid`` (folder mode and verify), printing with rich.

They return the process exit code; the typer command in :mod:`brainmets.cli` calls them.
The key is read from a file (raw random bytes, mode 0600) and is never printed or logged.
"""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path

from rich.console import Console
from rich.table import Table

from brainmets.deid.engine import MAP_ACCESSION, MAP_PATIENT, MAP_UID, DeidOptions
from brainmets.deid.table import EDITION
from brainmets.deid.tree import (
    DEIDENTIFIED,
    QUARANTINED,
    REJECTED,
    TreeReport,
    check_destination,
    deidentify_tree,
    output_key_problem,
    record_output_key,
)
from brainmets.deid.verify import VerifyReport, verify_tree
from brainmets.fsutil import DiskFullError, atomic_path
from brainmets.ids import key_fingerprint
from brainmets.workspace import WorkspaceError, read_key

EXIT_OK, EXIT_FINDING, EXIT_USAGE, EXIT_KEY = 0, 1, 2, 3
MAX_LISTED = 50
#: the per-file report of folder mode: its columns, and its default name beside OUT
REPORT_COLUMNS = ["input", "outcome", "reason", "output"]
REPORT_SUFFIX = ".deid-report.csv"
MAPPING_FILES = {
    MAP_PATIENT: "patient_id_mapping.csv",
    MAP_ACCESSION: "accession_mapping.csv",
    MAP_UID: "uid_mapping.csv",
}

err = Console(stderr=True)
out = Console()


def default_report_path(dst: Path) -> Path:
    """Where folder mode writes its per-file report unless told: beside the output folder,
    ``<OUT>.deid-report.csv`` (not inside it: it names the input files, which may identify)."""
    dst = Path(dst).expanduser().resolve()
    return dst.with_name(dst.name + REPORT_SUFFIX)


def deid_folder(
    src: Path,
    dst: Path,
    key_file: Path,
    workers: int | None,
    mapping_out: Path | None,
    *,
    options: DeidOptions | None = None,
    quarantine_dir: Path | None = None,
    report_path: Path | None = None,
    allow_other_key: bool = False,
) -> int:
    """Folder mode: de-identify ``src`` into ``dst``; return the exit code.

    0: every file de-identified; 1: some file was rejected (not DICOM, cut off, an image
    without Pixel Data, not an instance, failed) or quarantined; 2: bad arguments; 3: key
    problem. Every file's outcome is written to ``report_path`` (default
    :func:`default_report_path`; CSV, or JSON when it ends in ``.json``: input path relative
    to ``src``, outcome, reason, output path relative to ``dst``), mode 0600, and the files
    not de-identified are listed on the console.
    ``dst`` records the fingerprint of the key (:data:`brainmets.deid.tree.OUTPUT_MARKER`);
    an output folder made with another key, or holding files but no such record, is refused
    (2) unless ``allow_other_key``.
    ``mapping_out`` (only when given): ``id_old,id_new`` CSV files in MIDI-B format: a file
    path ending in ``.csv`` gets every pair, a folder gets one file per kind (patient IDs,
    accession numbers, UIDs). Mapping files hold identifying values and are written with
    mode 0600.
    """
    try:
        key = read_key(key_file)  # the workspace's own definition of a usable key file
    except WorkspaceError as exc:
        err.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        return EXIT_KEY
    if not Path(src).is_dir():
        err.print(f"[bold red]error:[/] {src} is not a folder", highlight=False, soft_wrap=True)
        return EXIT_USAGE
    try:
        _, out_root = check_destination(Path(src), Path(dst))
    except ValueError as exc:
        err.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        return EXIT_USAGE
    report_file = Path(report_path) if report_path is not None else default_report_path(dst)
    if out_root in report_file.expanduser().resolve().parents:
        err.print(
            f"[bold red]error:[/] the per-file report {report_file} must not be inside {dst}: "
            "it names the input files, which may identify; give --report outside it",
            highlight=False,
        )
        return EXIT_USAGE
    fingerprint = key_fingerprint(key)
    mixed = output_key_problem(out_root, fingerprint)
    if mixed and not allow_other_key:
        err.print(
            f"[bold red]error:[/] {mixed}. Use an empty output folder (or the key that made "
            "it), or --allow-other-key to add to it anyway. Nothing was written.",
            highlight=False,
            soft_wrap=True,
        )
        return EXIT_USAGE
    if mixed:
        err.print(
            f"[yellow]warning:[/] {mixed}; adding to it (--allow-other-key)",
            highlight=False,
            soft_wrap=True,
        )
    record_output_key(out_root, fingerprint)  # before any output: a rerun knows the key
    try:
        report = deidentify_tree(
            Path(src),
            Path(dst),
            key,
            options=options,
            workers=workers,
            quarantine_dir=quarantine_dir,
            progress=True,
            collect_mapping=mapping_out is not None,
        )
    except ValueError as exc:
        err.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        return EXIT_USAGE
    except DiskFullError as exc:
        err.print(
            f"[bold red]error:[/] {exc}. Stopped; the files already written are complete "
            "(nothing half-written is left), a run after space is freed writes the rest.",
            highlight=False,
            soft_wrap=True,
        )
        return EXIT_FINDING
    print_tree_report(report, Path(dst))
    if mapping_out is not None and report.mapping is not None:
        written = write_mapping(report.mapping, Path(mapping_out))
        for p in written:
            err.print(
                f"mapping written to {p} (identifying: keep it protected)",
                highlight=False,
                soft_wrap=True,
            )
    try:
        write_file_report(report, report_file)
    except OSError as exc:
        err.print(
            f"[bold red]error:[/] cannot write the per-file report {report_file}: {exc}",
            highlight=False,
            soft_wrap=True,
        )
        return EXIT_FINDING
    missed = report.not_deidentified
    if not missed:
        err.print(f"per-file report: {report_file}", highlight=False, soft_wrap=True)
        return EXIT_OK
    for o in missed[:MAX_LISTED]:
        err.print(
            f"  [yellow]{o.status}[/] {o.source}: {o.reason}", highlight=False, soft_wrap=True
        )
    if len(missed) > MAX_LISTED:
        err.print(f"  ... and {len(missed) - MAX_LISTED} more", highlight=False)
    err.print(
        f"[bold red]error:[/] {len(missed)} of {report.total} file(s) not de-identified "
        f"({report.quarantined} quarantined, {report.rejected} rejected); every file's "
        f"outcome: {report_file}",
        highlight=False,
        soft_wrap=True,
    )
    return EXIT_FINDING


def write_file_report(report: TreeReport, path: Path) -> Path:
    """Write one row per input file (:meth:`TreeReport.file_rows`) to ``path``: JSON when it
    ends in ``.json``, else CSV; mode 0600 (the input paths may identify)."""
    rows = report.file_rows()
    if path.suffix.lower() == ".json":
        text = json.dumps(rows, indent=1) + "\n"
    else:
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=REPORT_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        text = buf.getvalue()
    with atomic_path(path) as tmp:
        os.chmod(tmp, 0o600)
        tmp.write_text(text, encoding="utf-8")
    return path


def print_tree_report(report: TreeReport, dst: Path) -> None:
    table = Table(title=f"de-identification (PS3.15 {EDITION})", show_edge=False)
    table.add_column("files")
    table.add_column("count", justify="right")
    table.add_row("input", str(report.total))
    table.add_row(DEIDENTIFIED, str(report.deidentified))
    table.add_row(QUARANTINED, str(report.quarantined))
    table.add_row(REJECTED, str(report.rejected))
    if report.duplicates:
        table.add_row("  of which duplicates", str(report.duplicates))
    err.print(table)
    err.print(
        f"{len(report.patients)} patient(s), {len(report.studies)} study(ies), "
        f"{len(report.series)} series -> {dst}; {report.files_per_s:.0f} files/s "
        f"with {report.workers} worker(s)",
        highlight=False,
    )
    for status in (QUARANTINED, REJECTED):
        for reason, n in report.reasons(status).most_common():
            err.print(f"  {status}: {n} x {reason}", highlight=False)


def write_mapping(mapping: dict[str, dict[str, str]], target: Path) -> list[Path]:
    """Write ``id_old,id_new`` CSV mapping file(s) with mode 0600; return their paths."""
    if target.suffix.lower() == ".csv":
        rows = [pair for kind in MAPPING_FILES for pair in sorted(mapping.get(kind, {}).items())]
        return [_write_csv(target, rows)]
    return [
        _write_csv(target / name, sorted(mapping.get(kind, {}).items()))
        for kind, name in MAPPING_FILES.items()
    ]


def _write_csv(path: Path, rows: list[tuple[str, str]]) -> Path:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["id_old", "id_new"])
    writer.writerows(rows)
    with atomic_path(path) as tmp:
        os.chmod(tmp, 0o600)
        tmp.write_text(buf.getvalue(), encoding="utf-8")
    return path


def run_verify(
    original: Path,
    deidentified: Path,
    *,
    allow_private: bool = False,
    expect_shifted_dates: bool = True,
    workers: int | None = None,
    allow_unchecked: bool = False,
) -> int:
    """Verify a de-identified tree against its original; return the exit code.

    1 when anything is found, or when anything could not be checked (an original that cannot
    be read, a sequence or value that cannot be decoded) unless ``allow_unchecked``; what
    could not be checked is listed either way.
    """
    for p in (original, deidentified):
        if not Path(p).is_dir():
            err.print(f"[bold red]error:[/] {p} is not a folder", highlight=False, soft_wrap=True)
            return EXIT_USAGE
    report = verify_tree(
        Path(original),
        Path(deidentified),
        workers=workers,
        progress=True,
        allow_private=allow_private,
        expect_shifted_dates=expect_shifted_dates,
    )
    print_verify_report(report)
    if not report.ok:
        return EXIT_FINDING
    if not report.complete and not allow_unchecked:
        err.print(
            f"[bold red]error:[/] {len(report.unchecked)} item(s) could not be checked "
            "(--allow-unchecked to accept)",
            highlight=False,
        )
        return EXIT_FINDING
    return EXIT_OK


def print_verify_report(report: VerifyReport) -> None:
    err.print(
        f"checked {report.outputs} output file(s) against {report.originals} original(s) "
        f"({report.paired} paired with their original): {report.identifiers_checked} identifying "
        f"value(s), {report.uids_checked} UID(s)",
        highlight=False,
    )
    if report.not_dicom:
        err.print(f"{report.not_dicom} original file(s) not DICOM (ignored)", highlight=False)
    if report.unchecked:
        out.print(f"[bold yellow]could not check[/] {len(report.unchecked)} item(s):")
        for u in report.unchecked[:MAX_LISTED]:
            out.print(f"[yellow]unchecked[/] {u}", highlight=False, soft_wrap=True)
        if len(report.unchecked) > MAX_LISTED:
            out.print(f"... and {len(report.unchecked) - MAX_LISTED} more", highlight=False)
    if report.ok:
        out.print(
            "[bold green]no finding[/]: no original identifying value, UID or date found"
            + (" in what could be checked" if report.unchecked else "")
        )
        return
    table = Table(title="findings", show_edge=False)
    table.add_column("kind")
    table.add_column("count", justify="right")
    for kind, n in sorted(report.by_kind().items()):
        table.add_row(kind, str(n))
    out.print(table)
    for f in report.findings[:MAX_LISTED]:
        out.print(f"[red]{f.kind}[/] {f.file}: {f.detail}", highlight=False, soft_wrap=True)
    if len(report.findings) > MAX_LISTED:
        out.print(f"... and {len(report.findings) - MAX_LISTED} more", highlight=False)
