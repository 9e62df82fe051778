"""The report stage on a small workspace: its numbers agree with the catalog, the HTML is
self-contained and renders in headless Chromium with its tables and images."""

from __future__ import annotations

import csv
import json
import re
import shutil
import sqlite3
import subprocess
from pathlib import Path

import pytest
from rx_workspace import HEADERS, MRNS, NAMES, SIDECARS

from brainmets.catalog import COHORT
from brainmets.report import report_path

CHROMIUM = next(
    (shutil.which(n) for n in ("chromium", "chromium-browser") if shutil.which(n)), None
)


def _report_dir(root: Path) -> Path:
    return root / "data" / "derivatives" / "_cohort" / "report"


def _csv(root: Path, name: str) -> list[list[str]]:
    with open(_report_dir(root) / "tables" / f"{name}.csv", newline="") as fh:
        return list(csv.reader(fh))


def _lookup(rows: list[list[str]], first: str, col: int = 1) -> str:
    return next(r[col] for r in rows if r[0] == first)


def _db(root: Path) -> sqlite3.Connection:
    con = sqlite3.connect(f"file:{root / 'catalog.sqlite'}?mode=ro", uri=True)
    con.row_factory = sqlite3.Row
    return con


def test_outputs_recorded(rx) -> None:
    with _db(rx.root) as con:
        run = con.execute(
            "SELECT status, metrics_json FROM stage_runs WHERE patient_id=? AND stage='report'",
            (COHORT,),
        ).fetchone()
        roles = {
            r["role"]
            for r in con.execute(
                "SELECT role FROM stage_outputs WHERE patient_id=? AND stage='report'", (COHORT,)
            )
        }
    assert run["status"] == "done"
    assert {"html", "markdown", "table_table1", "table_cohort_flow", "table_lesions"} <= roles
    assert {f"figure_patient_{rx.pids[k]}" for k in "ab"} <= roles
    assert report_path(rx.root) == _report_dir(rx.root) / "report.html"
    metrics = json.loads(run["metrics_json"])
    assert metrics["patients_found"] == 4 and metrics["patients_included"] == 2


def test_numbers_agree_with_the_catalog(rx) -> None:
    with _db(rx.root) as con:
        found = con.execute("SELECT COUNT(*) FROM patients").fetchone()[0]
        seq = con.execute(
            "SELECT COUNT(*) FROM stage_runs WHERE stage='classify' AND status='done'"
        ).fetchone()[0]
        included = [
            r[0]
            for r in con.execute(
                "SELECT p.id FROM patients p JOIN stage_runs r ON r.patient_id = p.id"
                " WHERE r.stage='features' AND r.status='done' AND p.status='active'"
            )
        ]
        excluded = {
            r["id"]: r["excluded_reason"]
            for r in con.execute("SELECT id, excluded_reason FROM patients WHERE status='excluded'")
        }
        failed = {
            r["patient_id"]: r["error"]
            for r in con.execute("SELECT patient_id, error FROM stage_runs WHERE status='failed'")
        }
        headers = {
            (r["patient_id"], json.loads(r["header_json"])["selected_as"]): json.loads(
                r["header_json"]
            )["header"]
            for r in con.execute("SELECT patient_id, header_json FROM series")
        }
        feat_paths = [
            rx.root / r[0]
            for r in con.execute(
                "SELECT path FROM stage_outputs WHERE stage='features' AND role='features'"
            )
        ]
    flow = _csv(rx.root, "cohort_flow")
    assert [int(r[1]) for r in flow[1:]] == [found, seq, len(included)] == [4, 3, 2]
    with _db(rx.root) as con:
        n_studies = con.execute("SELECT COUNT(*) FROM studies").fetchone()[0]
        n_series = con.execute("SELECT COUNT(*) FROM series").fetchone()[0]
        inc_series = con.execute(
            f"SELECT COUNT(*) FROM series WHERE patient_id IN ({','.join('?' * len(included))})",
            included,
        ).fetchone()[0]
    assert [int(x) for x in flow[1][2:5]] == [n_studies, n_series, 0] == [4, 12, 0]
    assert [int(x) for x in flow[3][2:5]] == [2, inc_series, 0] == [2, 8, 0]
    assert _csv(rx.root, "input_files")[1] == ["Input files found", "0"]  # no ingest here

    excl = _csv(rx.root, "exclusions")
    listed = {r[0]: r[3] for r in excl[1:]}
    assert set(listed) == set(excluded) | set(failed)
    for pid, reason in excluded.items():
        assert listed[pid] == reason  # the catalog's reason, verbatim
    for pid, err in failed.items():
        assert err in listed[pid]

    # Table 1 recomputed from the catalog headers, sidecar (seconds) only where absent
    t1 = _csv(rx.root, "table1")
    assert t1[0] == ["Parameter", "FLAIR", "T1 post-contrast", "T1", "T2"]
    assert _lookup(t1, "Echo time (ms), median (range)", 4) == "90 (90-90)"  # a's T2 only
    assert _lookup(t1, "none recorded", 2) == "2 (100.0%)"  # no contrast agent in the headers
    letters = {v: k for k, v in rx.pids.items()}
    for col, cls in ((1, "flair"), (2, "t1c")):
        tes = []
        for pid in included:
            te = headers[(pid, cls)].get("echo_time")
            if te is None:
                te = SIDECARS[letters[pid]][cls]["EchoTime"] * 1000
            tes.append(te)
        tes.sort()
        med = (tes[0] + tes[1]) / 2
        expect = f"{med:g} ({min(tes):g}-{max(tes):g})"
        assert _lookup(t1, "Echo time (ms), median (range)", col) == expect
    assert _lookup(t1, "2D", 2) == "1 (50.0%)" and _lookup(t1, "3D", 2) == "1 (50.0%)"
    assert _lookup(t1, "2D", 1) == "2 (100.0%)"  # patient b's FLAIR: sidecar only
    assert _lookup(t1, "Slice spacing (mm), median (range)", 2) == "3.5 (1-6)"
    assert HEADERS["b"]["t1c"]["spacing_between_slices"] is None

    sc = _csv(rx.root, "scanners")
    assert _lookup(sc, "3 T") == "1 (50.0%)" and _lookup(sc, "1.5 T") == "1 (50.0%)"
    assert _lookup(sc, "Siemens") == "1 (50.0%)" and _lookup(sc, "GE") == "1 (50.0%)"
    assert _lookup(sc, "Siemens Skyra") == "1 (50.0%)"  # b's header names no model

    # lesion totals = the recorded features
    docs = [json.loads(p.read_text()) for p in feat_paths]
    docs = [d for d in docs if d["patient"] in included]
    les = _csv(rx.root, "lesions")
    n_les = sum(len(d["lesions"]) for d in docs)
    assert int(_lookup(les, "Lesions (tumour-core components, labels 1+3)")) == n_les == 3
    assert int(_lookup(les, "Enhancing lesions (components of label 3, ET_num)")) == sum(
        d["features"]["ET_num"] for d in docs
    )
    sub = sum(x["subcentimetre"] for d in docs for x in d["lesions"])
    assert _lookup(les, "Sub-centimetre lesions (core < 10 mm)").startswith(f"{sub} (")
    infra = sum(d["features"]["Infratentorial"] == 1 for d in docs)
    assert _lookup(les, "Patients with infratentorial involvement").startswith(f"{infra} (")

    clin = _csv(rx.root, "clinical")
    assert _lookup(clin, "Breast") == "1 (50.0%)"  # b; c (melanoma) is not included
    assert _lookup(clin, "Melanoma") == "0 (0.0%)"
    assert _lookup(clin, "Age (years), median (range)") == "65.8 (61.5-70)"
    assert _lookup(clin, "Ethnicity, n (%)") == ""
    assert _lookup(clin, "White") == "2 (100.0%)" and _lookup(clin, "Black") == "0 (0.0%)"
    assert _lookup(clin, "Extranodal metastases at diagnosis, n (%)") == "1 (50.0%)"
    assert _lookup(clin, "Smoking history (pack-years), median [IQR]") == "20 [20-20]"
    assert _lookup(clin, "Never smoked (0 pack-years), n (%)") == "0 (0.0%)"
    assert _lookup(clin, "Smoking N/A") == "1 (50.0%)"  # b's Smoke is empty
    assert _lookup(clin, "Survival time (months), median [IQR]") == "7.7 [5.3-10]"
    assert _lookup(clin, "Deceased (Death = 1), n (%)") == "1 (50.0%)"
    assert _lookup(clin, "Alive at last follow-up (Death = 0, censored), n (%)") == "1 (50.0%)"
    assert _lookup(clin, "Overall survival (months), Kaplan-Meier median") == "12.3"
    note = (_report_dir(rx.root) / "report.md").read_text()
    assert "Death = 0: censored at that time" in note

    qc = _csv(rx.root, "qc")
    assert {r[0]: r[-1] for r in qc[1:]} == {rx.pids["a"]: "not needed", rx.pids["b"]: "pending"}


def test_no_identifier_and_self_contained(rx) -> None:
    folder = _report_dir(rx.root)
    for f in folder.rglob("*"):
        if f.is_file():
            data = f.read_bytes()
            for value in [*MRNS.values(), *NAMES.values()]:
                assert value.encode() not in data, (f, value)
    html = (folder / "report.html").read_text()
    assert "<script" not in html.lower()
    srcs = re.findall(r'\bsrc="([^"]*)"', html)
    assert srcs and all(s.startswith("data:image/png;base64,") for s in srcs)
    assert not re.search(r"""(href|src)=["']?(https?:|file:|//)""", html)
    assert html.count("<table") == len(list((folder / "tables").glob("*.csv")))


def test_rerun_skips_and_clinical_change_reruns(rx) -> None:
    summary = rx.run()  # patient d fails in preprocess again; the rest is up to date
    assert summary.counts["report"]["skipped"] == 1
    assert summary.counts["export"]["skipped"] == 1
    text = rx.sheet.read_text().replace(f"{MRNS['a']},61.5", f"{MRNS['a']},63.5")
    rx.sheet.write_text(text)
    summary = rx.run()
    assert summary.counts["report"]["done"] == 1
    assert _lookup(_csv(rx.root, "clinical"), "Age (years), median (range)") == "66.8 (63.5-70)"


@pytest.mark.skipif(
    CHROMIUM is None,
    reason="headless Chromium not installed (apt-get install chromium): report rendering untested",
)
def test_report_renders_in_headless_chromium(rx, tmp_path: Path) -> None:
    html = (_report_dir(rx.root) / "report.html").read_text()
    probe = (
        "<script>window.addEventListener('load',function(){var i=Array.from(document.images);"
        "var d=document.createElement('div');d.id='probe';"
        "d.setAttribute('data-images',i.length);"
        "d.setAttribute('data-decoded',i.filter(function(x){return x.complete&&x.naturalWidth>0})"
        ".length);d.setAttribute('data-tables',document.querySelectorAll('table').length);"
        "d.setAttribute('data-rows',document.querySelectorAll('table#table1 tbody tr').length);"
        "document.body.appendChild(d);});</script>"
    )
    page = tmp_path / "report.html"  # a copy: the probe never touches the report itself
    page.write_text(html.replace("</body>", probe + "</body>"))
    cmd = [
        str(CHROMIUM),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--user-data-dir={tmp_path / 'profile'}",
        "--virtual-time-budget=10000",
        "--dump-dom",
        page.as_uri(),
    ]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    m = re.search(r'<div id="probe"([^>]*)>', res.stdout)
    assert m, f"Chromium rendered no page: rc={res.returncode} {res.stderr[-2000:]}"
    attrs = dict(re.findall(r'data-(\w+)="(\d+)"', m.group(1)))
    n_png = len(list((_report_dir(rx.root) / "figures").glob("*.png")))
    # 2 histograms + per patient (2): patient figure, lesion montage, registration figure
    assert int(attrs["images"]) == n_png == 8
    assert int(attrs["decoded"]) == n_png  # every embedded PNG decoded by the browser
    assert int(attrs["tables"]) >= 10
    # Table 1: acquisition + 2D/3D/N/A + 4 + 5 parameters + contrast agent (none recorded)
    assert int(attrs["rows"]) == 15
    for title in ("Cohort flow", "Table 1. Acquisition parameters", "Scanners", "Lesions"):
        assert title in res.stdout
    shot = tmp_path / "shot.png"
    res = subprocess.run(
        [*cmd[:-2], f"--screenshot={shot}", "--window-size=1200,2000", page.as_uri()],
        capture_output=True,
        timeout=180,
    )
    assert shot.is_file() and shot.stat().st_size > 10_000


def test_no_heading_is_followed_by_a_caption_with_the_same_text(rx) -> None:
    folder = _report_dir(rx.root)
    html = (folder / "report.html").read_text()
    heads = [m.group(2).strip() for m in re.finditer(r"<h([1-3])>(.*?)</h\1>", html)]
    md = (folder / "report.md").read_text().splitlines()
    md_heads = [line.lstrip("#").strip() for line in md if re.match(r"#{1,3} ", line)]
    for seq in (heads, md_heads):
        assert len(seq) > 10
        pairs = list(zip(seq, seq[1:], strict=False))
        assert not [p for p in pairs if p[0].casefold() == p[1].casefold()], pairs


def test_lesion_centroids_are_sri24_world_of_the_grid(rx) -> None:
    """features.json (and the workbook) give centroids in the world of the preprocessed grid's
    affine (the SRI24 header, RAS+: x = -i), named with their unit."""
    path = rx.root / f"data/derivatives/{rx.pids['a']}/features/features.json"
    lesions = json.loads(path.read_text())["lesions"]
    assert lesions and all("centroid_x" not in les for les in lesions)
    for les in lesions:
        assert les["centroid_x_mm"] == pytest.approx(-les["centroid_i"])
        assert (les["centroid_y_mm"], les["centroid_z_mm"]) == pytest.approx(
            (les["centroid_j"], les["centroid_k"])
        )
    # the largest lesion of a is centred on voxel (150, 150, 90)
    assert (lesions[0]["centroid_x_mm"], lesions[0]["centroid_y_mm"]) == (-150.0, 150.0)
