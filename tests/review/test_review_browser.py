"""The review app in a real browser (issue 12): Debian's Chromium driven by Playwright,
WebGL through SwiftShader. Logs in, opens a case, checks pixels of the four viewers and the
label overlay, clicks a lesion and checks that the cursor moved there, changes a sequence's
window, approves, and sees the worklist update; another test excludes a patient in the browser
and checks that ``brainmets export`` leaves it out. The screenshots in docs/images/
(review-worklist.png, review-case.png) are made by this test."""

from __future__ import annotations

import contextlib
import re
import shutil
import socket
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pytest

pytestmark = pytest.mark.slow
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
STATIC = Path(__file__).resolve().parents[2] / "src/brainmets/review/static"
DOCS = Path(__file__).resolve().parents[2] / "docs" / "images"
_REPORT_TESTS = str(Path(__file__).resolve().parents[1] / "report")
if _REPORT_TESTS not in sys.path:
    sys.path.insert(0, _REPORT_TESTS)
PW = "correct horse battery"
ARGS = [
    "--no-sandbox",
    "--use-angle=swiftshader",
    "--enable-unsafe-swiftshader",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    from brainmets.atlas import AtlasError, atlas_file

    try:
        atlas_file("t1_brain.nii.gz")
    except AtlasError as exc:
        pytest.skip(str(exc))
    if CHROMIUM is None:
        pytest.skip("Debian's chromium is not installed (make system-deps)")
    if not (STATIC / "vendor/niivue.js").is_file():
        pytest.skip("NiiVue is not installed (make web)")
    pytest.importorskip("playwright")
    uvicorn = pytest.importorskip("uvicorn")
    from rx_workspace import make_workspace

    from brainmets.review import add_user
    from brainmets.review.app import create_app

    rx = make_workspace(tmp_path_factory.mktemp("rxb"))
    with rx.ws.lock(), rx.ws.catalog() as cat:
        add_user(cat, "rita", "reviewer", PW)
    port = _free_port()
    srv = uvicorn.Server(
        uvicorn.Config(create_app(rx.root), host="127.0.0.1", port=port, log_level="warning")
    )
    t = threading.Thread(target=srv.run, daemon=True)
    t.start()
    for _ in range(100):
        if srv.started:
            break
        time.sleep(0.05)
    yield rx, f"http://127.0.0.1:{port}"
    srv.should_exit = True
    t.join(10)


def _png(data: bytes) -> np.ndarray:
    import io

    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB")).astype(int)


def _login(page, base: str, pid: str) -> None:
    page.goto(base + "/")
    page.fill("input[name=username]", "rita")
    page.fill("input[name=password]", PW)
    page.click("button[type=submit]")
    page.wait_for_selector(f"#worklist tr[data-id='{pid}']")


def _wait_text(page, selector: str, prefix: str, tries: int = 100) -> str:
    # (the page's CSP forbids eval, so no wait_for_function: poll from here)
    text = ""
    for _ in range(tries):
        text = page.locator(selector).text_content() or ""
        if text.startswith(prefix):
            break
        time.sleep(0.1)
    return text


@contextlib.contextmanager
def _case_page(
    base: str, pid: str, worklist_shot: Path | None = None
) -> Iterator[tuple[Any, list[str]]]:
    """A logged-in page with ``pid``'s case loaded, and the page errors seen;
    ``worklist_shot``: a screenshot of the worklist first."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 800})
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        _login(page, base, pid)
        if worklist_shot is not None:
            page.screenshot(path=str(worklist_shot))
        page.goto(f"{base}/case/{pid}")
        page.wait_for_selector("body[data-loaded=true]", state="attached", timeout=240_000)
        yield page, errors
        browser.close()


def test_case_view_renders_links_and_approves(server) -> None:
    rx, base = server
    pid = rx.pids["a"]
    DOCS.mkdir(parents=True, exist_ok=True)
    with _case_page(base, pid, DOCS / "review-worklist.png") as (page, errors):
        page.click("#lesions tbody tr:first-child")
        time.sleep(1)
        page.screenshot(path=str(DOCS / "review-case.png"))
        lesion = page.evaluate("document.querySelector('#lesions tbody tr').dataset.lesion")
        detail = page.evaluate(f"fetch('/api/patients/{pid}').then(r => r.json())")
        row = next(r for r in detail["lesion_table"] if str(r["lesion"]) == lesion)
        want = [round(row[k]) for k in ("centroid_i", "centroid_j", "centroid_k")]
        cursors = page.evaluate("window.bmReview.cursorVoxel()")
        assert len(cursors) == 4 and all(
            max(abs(a - b) for a, b in zip(c, want, strict=True)) <= 1 for c in cursors
        ), (cursors, want)
        for seq in ("t1n", "t1c", "t2w", "t2f"):
            img = _png(page.locator(f"canvas[id^='view-{seq}']").screenshot())
            assert (img.sum(axis=2) > 60).mean() > 0.05, f"{seq}: blank viewer"
            # the drawn crosshair crosses on the lesion (its overlay colours are there)
            x, y = _crosshair(img)
            near = img[max(0, y - 4) : y + 5, max(0, x - 4) : x + 5]
            assert _overlay(near) > 5, f"{seq}: the cursor is not on the lesion ({x}, {y})"
            # overlay: saturated red, green or blue pixels (labels 1, 2, 3)
            assert _overlay(img) > 20, f"{seq}: no label overlay"
        # window/level of one sequence: a wider window darkens t1n, "auto" restores it
        t1n = "canvas[id^='view-t1n']"

        def grey(selector: str) -> np.ndarray:
            return _png(page.locator(selector).screenshot()).mean(axis=2)

        before = grey(t1n)
        head = before > 20  # the head, not the black background
        lo = float(page.input_value("#wl-min-t1n"))
        hi = float(page.input_value("#wl-max-t1n"))
        assert hi > lo
        page.fill("#wl-max-t1n", str(lo + (hi - lo) * 4))  # a wider window: darker
        page.dispatch_event("#wl-max-t1n", "change")
        time.sleep(1)
        darker = grey(t1n)
        assert darker[head].mean() < before[head].mean() * 0.6, (
            before[head].mean(),
            darker[head].mean(),
        )
        t1c = grey("canvas[id^='view-t1c']")
        page.click(".viewer:first-child .wl button")
        time.sleep(1)
        assert abs(grey(t1n)[head].mean() - before[head].mean()) < 2
        assert float(page.input_value("#wl-max-t1n")) == pytest.approx(hi, abs=0.01)
        # the other sequences keep their own window
        assert abs(grey("canvas[id^='view-t1c']").mean() - t1c.mean()) < 1
        page.click("#approve")
        assert _wait_text(page, "#case-state", "approved").startswith("approved")
        page.goto(base + "/")
        page.wait_for_selector(f"#worklist tr[data-id='{pid}'] .state.approved")
        assert not errors, errors


def test_exclude_in_the_browser_then_export_leaves_it_out(server) -> None:
    from brainmets.export.cli import export_command

    rx, base = server
    pid, other = rx.pids["b"], rx.pids["a"]
    with _case_page(base, pid) as (page, errors):
        page.click("#exclude")  # without a reason: refused, nothing recorded
        assert "reason" in _wait_text(page, "#decide-message", "'excluded' needs a reason")
        page.click("#lesions tbody tr:first-child")
        page.select_option("#pin", "lesion")
        page.fill("#reason", "metastases not confirmed (abscess)")
        page.click("#exclude")
        assert _wait_text(page, "#case-state", "excluded").startswith("excluded")
        for _ in range(100):  # the history is fetched again after the decision
            history = page.locator("#history li").all_text_contents()
            if history:
                break
            time.sleep(0.1)
        assert len(history) == 1 and "[lesion 1]" in history[0], history
        page.goto(base + "/")
        page.wait_for_selector(f"#worklist tr[data-id='{pid}'] .state.excluded")
        assert not errors, errors
    assert export_command(rx.root) == 0
    root = rx.root / "exports" / "collection"
    exported = sorted(p.name for p in root.iterdir() if p.is_dir() and p.name != "report")
    assert pid not in exported and other in exported
    flow = (rx.root / "data/derivatives/_cohort/export/export.json").read_text()
    assert '"left_out_by_review": 1' in flow
    html = (root / "report" / "report.html").read_text()
    assert "review: excluded: metastases not confirmed (abscess)" in html and pid not in html


def _overlay(img: np.ndarray) -> int:
    """Pixels in the overlay's saturated red, green or blue (labels 1, 2, 3)."""
    r, g, b = img[..., 0], img[..., 1], img[..., 2]
    coloured = (
        ((r - np.maximum(g, b)) > 80)
        | ((g - np.maximum(r, b)) > 80)
        | ((b - np.maximum(r, g)) > 80)
    )
    return int(coloured.sum())


def _crosshair(img: np.ndarray) -> tuple[int, int]:
    """(x, y) of the yellow crosshair in the top (axial) half of a viewer's screenshot."""
    top = img[: img.shape[0] // 2]
    r, g, b = top[..., 0], top[..., 1], top[..., 2]
    yellow = (r > 200) & (g > 200) & (b < 80)
    return int(np.argmax(yellow.sum(axis=0))), int(np.argmax(yellow.sum(axis=1)))


def _core_voxels(page: Any) -> int:
    """The core voxel count of lesion 1 in the draft's lesion list (0: none)."""
    text = page.text_content("#ann-lesions li") if page.locator("#ann-lesions li").count() else ""
    match = re.search(r"core (\d+)", text or "")
    return int(match.group(1)) if match else 0


def _magenta(img: np.ndarray) -> int:
    r, g, b = img[..., 0], img[..., 1], img[..., 2]
    return int(((np.minimum(r, b) - g) > 80).sum())  # blended with the image below it


def test_click_to_segment_accept_undo_and_save(server) -> None:
    from brainmets.catalog import Catalog

    rx, base = server
    pid = rx.pids["a"]
    with _case_page(base, pid) as (page, errors):
        page.click("#lesions tbody tr:first-child")  # the cursor on lesion 1
        time.sleep(1)
        canvas = page.locator("canvas[id^='view-t1c']")
        x, y = _crosshair(_png(canvas.screenshot()))
        page.check("#click-mode")
        box = canvas.bounding_box()
        assert box is not None
        page.mouse.click(box["x"] + x, box["y"] + y)  # a click on the lesion
        page.wait_for_selector("body[data-annotation=pending]", state="attached", timeout=180_000)
        page.wait_for_selector("body[data-overlay=draft]", state="attached", timeout=180_000)
        time.sleep(1)
        for seq in ("t1n", "t1c", "t2w", "t2f"):  # the proposal shows on every sequence
            img = _png(page.locator(f"canvas[id^='view-{seq}']").screenshot())
            assert _magenta(img) > 20, f"{seq}: no proposal drawn"
        page.screenshot(path=str(DOCS / "annotate-proposal.png"))
        assert "not accepted yet: core" in (page.text_content("#ann-message") or "")
        page.click("#ann-accept")
        assert _wait_text(page, "#ann-message", "1 lesion(s)").startswith("1 lesion(s)")
        page.wait_for_selector("body[data-overlay=draft]", state="attached", timeout=180_000)
        time.sleep(1)
        img = _png(canvas.screenshot())
        assert _magenta(img) == 0  # accepted: drawn in the labels' colours now
        for button, want in (("#ann-undo", "0 lesion(s)"), ("#ann-redo", "1 lesion(s)")):
            page.click(button)
            assert _wait_text(page, "#ann-message", want).startswith(want)
            page.wait_for_selector("body[data-overlay=draft]", state="attached", timeout=180_000)
        accepted = _core_voxels(page)
        # the brush: erase a 3D sphere from lesion 1 where the cursor is; undo restores it
        page.uncheck("#click-mode")
        page.select_option("#brush", "erase")
        page.fill("#brush-radius", "4")
        page.fill("#brush-lesion", "1")
        page.mouse.click(box["x"] + x, box["y"] + y)
        for _ in range(300):
            if 0 < _core_voxels(page) < accepted:
                break
            time.sleep(0.1)
        assert 0 < _core_voxels(page) < accepted
        page.wait_for_selector("body[data-overlay=draft]", state="attached", timeout=180_000)
        page.select_option("#brush", "")
        page.click("#ann-undo")
        for _ in range(300):
            if _core_voxels(page) == accepted:
                break
            time.sleep(0.1)
        assert _core_voxels(page) == accepted
        page.wait_for_selector("body[data-overlay=draft]", state="attached", timeout=180_000)
        # a second lesion painted in the other hemisphere; merged with the first, split again
        page.select_option("#brush", "paint")
        page.fill("#brush-radius", "3")
        page.fill("#brush-lesion", "0")
        page.mouse.click(box["x"] + box["width"] - x, box["y"] + y)
        assert _wait_text(page, "#ann-message", "2 lesion(s)").startswith("2 lesion(s)")
        page.select_option("#brush", "")
        page.wait_for_selector("body[data-overlay=draft]", state="attached", timeout=180_000)
        for tick in page.locator(".ann-tick").all():
            tick.check()
        page.click("#ann-merge")
        assert _wait_text(page, "#ann-message", "1 lesion(s)").startswith("1 lesion(s)")
        page.wait_for_selector("body[data-overlay=draft]", state="attached", timeout=180_000)
        page.click(".ann-split")
        assert _wait_text(page, "#ann-message", "2 lesion(s)").startswith("2 lesion(s)")
        page.wait_for_selector("body[data-overlay=draft]", state="attached", timeout=180_000)
        for want in ("1 lesion(s)", "2 lesion(s)", "1 lesion(s)"):  # split, merge, paint undone
            page.click("#ann-undo")
            assert _wait_text(page, "#ann-message", want).startswith(want)
            page.wait_for_selector("body[data-overlay=draft]", state="attached", timeout=180_000)
        assert _core_voxels(page) == accepted
        page.click("#ann-save")
        assert "saved as version 1" in _wait_text(page, "#ann-message", "saved")
        assert not errors, errors
    with Catalog.open(rx.ws.catalog_path, readonly=True) as cat:
        (v,) = cat.annotation_versions(pid)
    assert v.user_name == "rita" and v.lesions == 1
    saved = nib.load(str(rx.root / "annotations" / pid / "Core1_PGGE.nii.gz"))
    assert int((np.asarray(saved.dataobj) > 0).sum()) == accepted  # as restored by undo
    # the real segment stage fuses the saved masks, the features stage counts the lesion
    import rx_workspace as rx_stages

    from brainmets.features.stage import STAGE as FEATURES
    from brainmets.pipeline import InlineExecutor, Pipeline, Runner, Stage
    from brainmets.segment.stage import STAGE as SEGMENT
    from brainmets.workspace import Workspace

    real = Pipeline(
        (
            Stage("enrol", rx_stages._enrol, scope="cohort", defaults={"patients": []}),
            Stage("classify", rx_stages._classify, defaults={"letters": {}}),
            Stage("convert", rx_stages._convert, defaults={"letters": {}}),
            Stage("preprocess", rx_stages._preprocess, defaults={"letters": {}}),
            SEGMENT,
            FEATURES,
        )
    )
    ws = Workspace.open(rx.root)
    ws.config.data["stages"]["segment"].pop("letters", None)  # the stand-in's parameter
    ws.save_config()
    ws = Workspace.open(rx.root)
    with ws.lock():
        Runner(ws, real, InlineExecutor(), progress=False).run(["segment", "features"], [pid])
    with Catalog.open(rx.ws.catalog_path, readonly=True) as cat:
        seg_run, feat_run = cat.stage_run(pid, "segment"), cat.stage_run(pid, "features")
        seg = cat.stage_outputs(pid, "segment")["seg"][0]
    assert seg_run is not None and seg_run.status == "done", seg_run
    assert feat_run is not None and feat_run.status == "done", feat_run
    assert feat_run.metrics["ET_num"] == 1
    fused = np.asarray(nib.load(str(rx.root / seg)).dataobj)
    core = np.asarray(saved.dataobj) > 0
    assert np.isin(fused[core], (1, 3)).all() and int(np.isin(fused, (1, 3)).sum()) == accepted
