"""The review app's HTTP API (issue 12): login, sessions, CSRF, roles, the rate limit, path
traversal, and the decisions it records."""

from __future__ import annotations

import gzip
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("starlette")
pytest.importorskip("httpx")
from starlette.testclient import TestClient  # noqa: E402

from brainmets.review import add_user  # noqa: E402
from brainmets.review.app import create_app  # noqa: E402
from brainmets.workspace import Workspace  # noqa: E402

PW = "correct horse battery"
PID = "BM-AAAAAAAA"
ORIGIN = {"origin": "http://testserver"}


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    ws = Workspace.init(tmp_path / "ws")
    der = ws.root / "data" / "derivatives" / PID
    der.mkdir(parents=True)
    seg = der / "seg.nii.gz"
    seg.write_bytes(gzip.compress(b"label map"))
    outside = tmp_path / "outside.nii.gz"
    outside.write_bytes(b"secret outside the workspace")
    (der / "t1c.nii.gz").symlink_to(outside)
    with ws.lock(), ws.catalog() as cat:
        cat.ensure_patient(PID)
        cat.ensure_patient("BM-BBBBBBBB")
        for name, role in (("rita", "reviewer"), ("rob", "reviewer"), ("ann", "annotator")):
            add_user(cat, name, role, PW)
        common = {"status": "done", "fingerprint": "x", "started_at": None, "duration_s": 0.1}
        cat.finish_stage_run(
            PID,
            "segment",
            **common,
            outputs={"seg": (f"data/derivatives/{PID}/seg.nii.gz", "a" * 64, 10)},
        )
        cat.finish_stage_run(
            PID,
            "preprocess",
            **common,
            outputs={
                "t1c": (f"data/derivatives/{PID}/t1c.nii.gz", "b" * 64, 10),  # a link out
                "t2w": ("private/deid.key", "c" * 64, 32),  # a file of private/
            },
        )
    return Workspace.open(ws.root)


def client(ws: Workspace, **options) -> TestClient:
    return TestClient(create_app(ws, **options), base_url="http://testserver")


def login(c: TestClient, name: str = "rita") -> str:
    r = c.post("/api/login", json={"username": name, "password": PW}, headers=ORIGIN)
    assert r.status_code == 200, r.text
    cookie = r.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie and "max-age=" in cookie
    return r.json()["csrf"]


def test_every_route_but_login_needs_a_session(ws: Workspace) -> None:
    c = client(ws)
    for url in (
        "/api/patients",
        f"/api/patients/{PID}",
        f"/api/patients/{PID}/images/seg",
        "/api/session",
        "/static/app.js",
    ):
        assert c.get(url).status_code == 401, url
    assert c.post(f"/api/patients/{PID}/review", json={"decision": "approved"}).status_code == 401
    r = c.get("/", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/login"
    assert c.get("/login").status_code == 200
    assert "default-src 'self'" in c.get("/login").headers["content-security-policy"]


def test_login_worklist_image_and_decisions(ws: Workspace) -> None:
    c = client(ws)
    assert (
        c.post("/api/login", json={"username": "rita", "password": "wrong password!"}).status_code
        == 401
    )
    csrf = login(c)
    rows = c.get("/api/patients").json()
    assert [r["id"] for r in rows] == [PID, "BM-BBBBBBBB"]
    assert rows[0]["review"]["state"] == "pending"
    r = c.get(f"/api/patients/{PID}/images/seg")
    assert r.status_code == 200 and gzip.decompress(r.content) == b"label map"
    etag = r.headers["etag"]
    assert (
        c.get(f"/api/patients/{PID}/images/seg", headers={"if-none-match": etag}).status_code == 304
    )
    # CSRF: without the token, with a wrong one, or from another origin -> 403
    url = f"/api/patients/{PID}/review"
    assert c.post(url, json={"decision": "approved"}).status_code == 403
    assert (
        c.post(url, json={"decision": "approved"}, headers={"x-csrf-token": "nope"}).status_code
        == 403
    )
    evil = {"x-csrf-token": csrf, "origin": "http://evil.example"}
    assert c.post(url, json={"decision": "approved"}, headers=evil).status_code == 403
    ok = {"x-csrf-token": csrf, **ORIGIN}
    assert c.post(url, json={"decision": "needs_revision"}, headers=ok).status_code == 422
    r = c.post(url, json={"decision": "approved"}, headers=ok)
    assert r.status_code == 200 and r.json()["review"]["state"] == "approved"
    detail = c.get(f"/api/patients/{PID}").json()
    assert detail["history"][0]["user"] == "rita" and detail["history"][0]["label_map_current"]
    r = c.post("/api/patients/BM-ZZZZZZZZ/review", json={"decision": "approved"}, headers=ok)
    assert r.status_code == 404
    assert c.get("/api/patients/BM-ZZZZZZZZ").status_code == 404
    assert c.get(f"/api/patients/{PID}/images/flair").status_code == 404
    # logout ends the session even if the cookie is replayed
    cookie = c.cookies.get("bm_session")
    assert c.post("/api/logout", headers=ok).status_code == 200
    c.cookies.set("bm_session", cookie)
    assert c.get("/api/patients").status_code == 401


def test_roles_are_enforced_server_side(ws: Workspace) -> None:
    c = client(ws)
    csrf = login(c, "ann")
    r = c.post(
        f"/api/patients/{PID}/review",
        json={"decision": "excluded", "reason": "motion"},
        headers={"x-csrf-token": csrf, **ORIGIN},
    )
    assert r.status_code == 403 and "annotator" in r.json()["error"]
    assert c.get("/api/patients").status_code == 200  # annotators may look


TRAVERSALS = [
    "/api/patients/../../private/deid.key",
    "/api/patients/%2e%2e/%2e%2e/private/deid.key",
    "/api/patients/..%2f..%2fprivate%2fdeid.key/images/seg",
    "/api/patients/%252e%252e%252fprivate/images/seg",
    f"/api/patients/{PID}/images/..%2f..%2f..%2fprivate%2fdeid.key",
    f"/api/patients/{PID}/images/%2e%2e%5c%2e%2e%5cprivate",
    "/static/..%2f..%2f..%2fcatalog.sqlite",
    "/static/%2e%2e/app.py",
    "/static//etc/passwd",
    f"/api/patients/{PID}/images/seg%00.txt",
    "/api/patients/..\\..\\private\\deid.key",
    "/static/vendor%2fniivue.js",
    "/%2e%2e/%2e%2e/etc/passwd",
]


def test_path_traversal_is_refused(ws: Workspace, caplog: pytest.LogCaptureFixture) -> None:
    c = client(ws)
    login(c)
    for url in TRAVERSALS:
        r = c.get(url)
        assert r.status_code == 404, (url, r.status_code)
        assert b"deid" not in r.content and b"secret" not in r.content
    # recorded outputs that point out of the workspace or into private/ are not served
    for role in ("t1c", "t2w"):
        r = c.get(f"/api/patients/{PID}/images/{role}")
        assert r.status_code == 404 and b"secret" not in r.content
    assert any("leave the workspace" in rec.getMessage() for rec in caplog.records)
    body = c.get(f"/api/patients/{PID}").text
    assert str(ws.root) not in body and "private" not in body


def test_wrong_password_rate_limit_and_session_expiry(ws: Workspace) -> None:
    c = client(ws, login_attempts=3, login_window_s=60, session_ttl_s=1)
    for _ in range(3):
        assert (
            c.post("/api/login", json={"username": "rob", "password": "guess guess"}).status_code
            == 401
        )
    r = c.post("/api/login", json={"username": "rob", "password": PW})
    assert r.status_code == 429 and int(r.headers["retry-after"]) > 0  # even the right one
    # the limit holds per client address too: another name from the same address waits
    r = c.post("/api/login", json={"username": "rita", "password": PW}, headers=ORIGIN)
    assert r.status_code == 429
    c = client(ws, session_ttl_s=1)
    login(c, "rita")
    assert c.get("/api/patients").status_code == 200
    time.sleep(2.1)
    assert c.get("/api/patients").status_code == 401


def test_two_reviewers_at_once_are_both_recorded(ws: Workspace) -> None:
    ws.config.data["review"] = {"required_approvals": 2}
    ws.save_config()
    ws = Workspace.open(ws.root)
    app = create_app(ws)
    clients = [TestClient(app, base_url="http://testserver") for _ in range(2)]
    tokens = [login(clients[0], "rita"), login(clients[1], "rob")]
    results: list[int] = []

    def approve(i: int) -> None:
        r = clients[i].post(
            f"/api/patients/{PID}/review",
            json={"decision": "approved"},
            headers={"x-csrf-token": tokens[i], **ORIGIN},
        )
        results.append(r.status_code)

    threads = [threading.Thread(target=approve, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [200, 200]
    detail = clients[0].get(f"/api/patients/{PID}").json()
    assert sorted(h["user"] for h in detail["history"]) == ["rita", "rob"]
    assert detail["review"]["state"] == "approved"
