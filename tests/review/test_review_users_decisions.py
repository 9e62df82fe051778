"""Review app model (issue 12, first part): users with argon2id hashes, roles, and the
append-only audit trail of review decisions with the state it implies."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from bm_testutil import make_toy_workspace, run_cli
from brainmets.catalog import Catalog
from brainmets.review import (
    ApprovalRule,
    ReviewError,
    UserError,
    add_user,
    authenticate,
    record_decision,
    review_state,
)

PW = "correct horse battery"


@pytest.fixture
def cat(tmp_path: Path) -> Catalog:
    c = Catalog.open(tmp_path / "catalog.sqlite", create=True)
    with c.transaction():
        c.ensure_patient("BM-AAAAAAAA")
    return c


def test_passwords_are_stored_as_argon2id_hashes_only(cat: Catalog) -> None:
    u = add_user(cat, "alice", "reviewer", PW)
    assert u.password_hash.startswith("$argon2id$") and PW not in u.password_hash
    assert authenticate(cat, "alice", PW) == u
    assert authenticate(cat, "alice", PW + "x") is None
    assert authenticate(cat, "nobody", PW) is None
    cat.set_user("alice", disabled=True)
    assert authenticate(cat, "alice", PW) is None
    with pytest.raises(UserError, match="exists"):
        add_user(cat, "alice", "reviewer", PW)
    with pytest.raises(UserError, match="role"):
        add_user(cat, "bob", "superuser", PW)
    with pytest.raises(UserError, match="at least"):
        add_user(cat, "bob", "reviewer", "short")
    with pytest.raises(UserError, match="user name"):
        add_user(cat, "../bob", "reviewer", PW)


def test_decisions_need_the_role_and_a_reason_and_are_never_changed(cat: Catalog) -> None:
    rev = add_user(cat, "rita", "reviewer", PW)
    ann = add_user(cat, "anna", "annotator", PW)
    with pytest.raises(ReviewError, match="annotator may not"):
        record_decision(cat, ann, "BM-AAAAAAAA", "approved", "h1")
    with pytest.raises(ReviewError, match="needs a comment"):
        record_decision(cat, rev, "BM-AAAAAAAA", "needs revision", "h1", reason="  ")
    with pytest.raises(ReviewError, match="needs a reason"):
        record_decision(cat, rev, "BM-AAAAAAAA", "excluded", "h1")
    with pytest.raises(ReviewError, match="no patient"):
        record_decision(cat, rev, "BM-ZZZZZZZZ", "approved", "h1")
    d = record_decision(
        cat, rev, "BM-AAAAAAAA", "needs revision", "h1", "lesion 2 misses its rim", "2", (1, 2, 3)
    )
    assert (d.user_name, d.role, d.lesion, d.voxel, d.label_map_sha256) == (
        "rita",
        "reviewer",
        "2",
        (1, 2, 3),
        "h1",
    )
    # the audit trail: the catalog itself refuses to change or delete a decision
    conn = sqlite3.connect(cat.path)
    with pytest.raises(sqlite3.DatabaseError, match="never changed"):
        conn.execute("UPDATE review_decisions SET decision = 'approved'")
    with pytest.raises(sqlite3.DatabaseError, match="never deleted"):
        conn.execute("DELETE FROM review_decisions")
    conn.close()
    assert [x.decision for x in cat.review_decisions("BM-AAAAAAAA")] == ["needs revision"]


def test_review_state_follows_the_decisions_and_the_label_map(cat: Catalog) -> None:
    r1 = add_user(cat, "rita", "reviewer", PW)
    r2 = add_user(cat, "rob", "reviewer", PW)
    pid = "BM-AAAAAAAA"
    assert review_state([], "h1").state == "pending"
    record_decision(cat, r1, pid, "needs revision", "h1", "the necrosis is too small")
    assert review_state(cat.review_decisions(pid), "h1").state == "needs revision"
    assert review_state(cat.review_decisions(pid), "h2").state == "pending"  # revised
    record_decision(cat, r1, pid, "approved", "h2")
    assert review_state(cat.review_decisions(pid), "h2").state == "approved"
    assert review_state(cat.review_decisions(pid), "h3").state == "pending"  # changed since
    two = ApprovalRule(approvals=2)
    assert review_state(cat.review_decisions(pid), "h2", two).detail == "1 of 2 approvals"
    record_decision(cat, r1, pid, "approved", "h2")  # the same reviewer twice: still one
    assert review_state(cat.review_decisions(pid), "h2", two).state == "pending"
    record_decision(cat, r2, pid, "approved", "h2")
    assert review_state(cat.review_decisions(pid), "h2", two).state == "approved"
    record_decision(cat, r2, pid, "excluded", "h2", "motion artefacts on every sequence")
    st = review_state(cat.review_decisions(pid), "h2", two)
    assert st.state == "excluded" and st.detail == "motion artefacts on every sequence"
    with pytest.raises(ValueError, match="approvals"):
        ApprovalRule(approvals=0)


def test_users_cli_reads_the_password_from_stdin_and_never_shows_it(tmp_path: Path) -> None:
    ws = make_toy_workspace(tmp_path / "ws")
    res = run_cli("users", "add", "-w", str(ws.root), "alice", "--role", "reviewer", input=PW)
    assert res.returncode == 0, res.stderr
    assert "added user alice (reviewer)" in res.stdout and PW not in res.stdout + res.stderr
    again = run_cli("users", "add", "-w", str(ws.root), "alice", "--role", "admin", input=PW)
    assert again.returncode == 2 and "exists" in again.stderr
    pwf = tmp_path / "pw.txt"
    pwf.write_text("another long password\n")
    res = run_cli(
        "users",
        "add",
        "-w",
        str(ws.root),
        "bob",
        "--role",
        "annotator",
        "--password-file",
        str(pwf),
    )
    assert res.returncode == 0, res.stderr
    listed = run_cli("users", "list", "-w", str(ws.root)).stdout
    assert "alice" in listed and "annotator" in listed and "argon2" not in listed
    assert run_cli("users", "disable", "-w", str(ws.root), "bob").returncode == 0
    with Catalog.open(ws.root / "catalog.sqlite", readonly=True) as cat:
        assert authenticate(cat, "alice", PW) is not None
        assert authenticate(cat, "bob", "another long password") is None  # disabled
    log = (ws.root / "logs").rglob("*")
    assert not any(PW in p.read_text(errors="ignore") for p in log if p.is_file())
