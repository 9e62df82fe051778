"""The review web app: a Starlette (ASGI) application over one workspace.

:func:`create_app` builds it; ``brainmets review`` serves it with uvicorn. Routes (every one
but the login page, its script and style, and ``POST /api/login`` needs a session):

=====================================  ===================================================
``GET /login``                          the login page
``GET /``, ``GET /case/{id}``           the worklist and the case view (one page)
``POST /api/login``                     ``{"username", "password"}`` -> session cookie and
                                        ``{"user", "role", "csrf"}``
``POST /api/logout``                    ends the session
``GET /api/session``                    ``{"user", "role", "csrf", "rule", "expires"}``
``GET /api/patients``                   the worklist (a JSON list)
``GET /api/patients/{id}``              a case: lesion table, images, review history
``GET /api/patients/{id}/images/{r}``   ``r`` in t1n, t1c, t2w, t2f, seg: the NIfTI (gzip),
                                        with an ETag (its SHA-256) and revalidation
``POST /api/patients/{id}/review``      ``{"decision": "approved|needs_revision|excluded",
                                        "reason", "lesion", "voxel"}`` (reviewer, admin)
=====================================  ===================================================

Errors are JSON ``{"error": "..."}``: 401 without a (live) session, 403 for a missing CSRF
token, a foreign ``Origin`` or a role that may not, 404 for an unknown patient, role or
route and for anything that tries to leave the workspace (logged), 422 for a bad request,
429 after too many failed logins.
"""

from __future__ import annotations

import json
import logging
import re
import urllib.parse
from collections.abc import Callable
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from brainmets.annotate.case import CaseNotReady
from brainmets.catalog import Catalog, UserRecord
from brainmets.cohort.review import review_settings
from brainmets.review import cases
from brainmets.review.annotation import Drafts
from brainmets.review.decisions import ReviewError, record_decision
from brainmets.review.security import (
    CSRF_HEADER,
    SESSION_COOKIE,
    LoginLimiter,
    Session,
    Sessions,
    csrf_ok,
    session_secret,
)
from brainmets.review.users import authenticate
from brainmets.workspace import Workspace

log = logging.getLogger("brainmets.review")

STATIC = Path(__file__).parent / "static"
#: the files the app serves: URL name -> (file under static/, content type, public)
STATIC_FILES: dict[str, tuple[str, str, bool]] = {
    "style.css": ("style.css", "text/css; charset=utf-8", True),
    "login.js": ("login.js", "text/javascript; charset=utf-8", True),
    "app.js": ("app.js", "text/javascript; charset=utf-8", False),
    "viewer.js": ("viewer.js", "text/javascript; charset=utf-8", False),
    "niivue.js": ("vendor/niivue.js", "text/javascript; charset=utf-8", False),
}
#: decision names of the API -> the catalog's
API_DECISIONS = {"approved": "approved", "needs_revision": "needs revision", "excluded": "excluded"}
MAX_BODY = 64 * 1024
#: signs of a request that tries to leave the workspace (checked on the raw path)
_SUSPICIOUS = re.compile(r"(\.\.|%2e|%2f|%5c|\\|%00|\x00|//)", re.IGNORECASE)
SECURITY_HEADERS = {
    "content-security-policy": (
        "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; style-src 'self'; "
        "img-src 'self' data: blob:; connect-src 'self' data: blob:; worker-src 'self' blob:; "
        "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
    "cross-origin-opener-policy": "same-origin",
}


def _error(status: int, message: str, **headers: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers or None)


class _Guard:
    """ASGI middleware: refuses traversal-looking paths (404, logged) and adds the security
    headers to every response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        raw = scope.get("raw_path") or scope["path"].encode()
        raw_text = raw.decode("latin-1")
        if _SUSPICIOUS.search(raw_text) or _SUSPICIOUS.search(scope["path"]):
            log.warning("refused a path that tries to leave the workspace: %r", raw_text[:200])
            await _error(404, "not found")(scope, receive, send)
            return

        async def send_with_headers(message: Any) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                names = {k.lower() for k, _ in headers}
                for k, v in SECURITY_HEADERS.items():
                    if k.encode() not in names:
                        headers.append((k.encode(), v.encode()))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)


class ReviewApp:
    """The state of one server: workspace, sessions, login limiter."""

    def __init__(
        self,
        workspace: Workspace,
        *,
        session_ttl_s: float | None = None,
        login_attempts: int = 5,
        login_window_s: float = 300.0,
    ) -> None:
        self.ws = workspace
        with workspace.lock():  # bring the catalog to the current schema once
            workspace.catalog().close()
        settings = review_settings(workspace.config.data)  # bad values: ConfigError
        ttl = session_ttl_s if session_ttl_s is not None else settings.session_hours * 3600
        self.sessions = Sessions(session_secret(workspace.config.path("private")), ttl)
        self.limiter = LoginLimiter(login_attempts, login_window_s)
        self.drafts = Drafts(workspace)

    # ------------------------------------------------------------------ helpers
    def _catalog(self, *, write: bool = False) -> Catalog:
        # Writes (decisions, logins that re-hash) append rows in their own SQLite
        # transaction; the schema is current (migrated at start), so no lock is needed.
        return Catalog.open(self.ws.catalog_path, readonly=not write, migrate=False)

    def _user_of(self, request: Request) -> tuple[Session, UserRecord] | None:
        s = self.sessions.lookup(request.cookies.get(SESSION_COOKIE))
        if s is None:
            return None
        with self._catalog() as cat:
            user = cat.user(s.user)
        if user is None or user.disabled_at is not None:
            self.sessions.end_user(s.user)
            return None
        return s, user

    @staticmethod
    def _same_origin(request: Request) -> bool:
        origin = request.headers.get("origin")
        if not origin or origin == "null":
            return origin is None
        host = request.headers.get("host", "")
        return urllib.parse.urlsplit(origin).netloc == host

    async def _json_body(self, request: Request) -> dict[str, Any] | None:
        if not request.headers.get("content-type", "").startswith("application/json"):
            return None
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_BODY:
                return None
        try:
            data = json.loads(body or b"{}")
        except ValueError:
            return None
        return data if isinstance(data, dict) else None

    # ------------------------------------------------------------------- routes
    async def login_page(self, request: Request) -> Response:
        return FileResponse(STATIC / "login.html", media_type="text/html; charset=utf-8")

    async def app_page(self, request: Request) -> Response:
        if self._user_of(request) is None:
            return RedirectResponse("/login", status_code=303)
        pid = request.path_params.get("patient_id")
        if pid is not None:
            with self._catalog() as cat:
                if cat.patient(pid) is None:
                    return _error(404, "no such patient")
        return FileResponse(
            STATIC / "app.html",
            media_type="text/html; charset=utf-8",
            headers={"cache-control": "no-store"},
        )

    async def static(self, request: Request) -> Response:
        entry = STATIC_FILES.get(request.path_params["name"])
        if entry is None:
            return _error(404, "not found")
        rel, ctype, public = entry
        if not public and self._user_of(request) is None:
            return _error(401, "log in first")
        path = STATIC / rel
        if not path.is_file():
            return _error(404, f"{request.path_params['name']} is not installed (run `make web`)")
        return FileResponse(path, media_type=ctype, headers={"cache-control": "no-cache"})

    async def login(self, request: Request) -> Response:
        if not self._same_origin(request):
            return _error(403, "cross-site request refused")
        data = await self._json_body(request)
        if data is None:
            return _error(422, 'send JSON: {"username": ..., "password": ...}')
        name, password = data.get("username"), data.get("password")
        if not isinstance(name, str) or not isinstance(password, str) or not name or not password:
            return _error(422, "username and password are required")
        client = request.client.host if request.client else "?"
        keys = (f"user:{name.lower()}", f"ip:{client}")
        wait = self.limiter.retry_after(*keys)
        if wait > 0:
            return _error(
                429,
                "too many failed logins; try again later",
                **{"retry-after": str(int(wait) + 1)},
            )
        with self._catalog(write=True) as cat:
            user = authenticate(cat, name, password)
        if user is None:
            self.limiter.failed(*keys)
            log.info("failed login for a user name from %s", client)
            return _error(401, "wrong user name or password")
        self.limiter.succeeded(keys[0])
        cookie, s = self.sessions.create(user.name)
        log.info("%s logged in", user.name)
        resp = JSONResponse({"user": user.name, "role": user.role, "csrf": s.csrf})
        resp.set_cookie(
            SESSION_COOKIE,
            cookie,
            max_age=int(self.sessions.ttl_s),
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
            path="/",
        )
        return resp

    def _authorised(
        self, request: Request, *, write: bool
    ) -> tuple[Session, UserRecord] | Response:
        found = self._user_of(request)
        if found is None:
            return _error(401, "log in first")
        if write:
            if not self._same_origin(request):
                return _error(403, "cross-site request refused")
            if not csrf_ok(found[0], request.headers.get(CSRF_HEADER)):
                return _error(403, "missing or wrong CSRF token (X-CSRF-Token)")
        return found

    async def logout(self, request: Request) -> Response:
        found = self._authorised(request, write=True)
        if isinstance(found, Response):
            return found
        self.sessions.end(found[0].sid)
        resp = JSONResponse({"ok": True})
        resp.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict")
        return resp

    async def session(self, request: Request) -> Response:
        found = self._authorised(request, write=False)
        if isinstance(found, Response):
            return found
        s, user = found
        return JSONResponse(
            {
                "user": user.name,
                "role": user.role,
                "csrf": s.csrf,
                "expires": s.expires,
                "rule": dict(vars(cases.approval_rule(self.ws))),
            },
            headers={"cache-control": "no-store"},
        )

    async def patients(self, request: Request) -> Response:
        found = self._authorised(request, write=False)
        if isinstance(found, Response):
            return found
        return JSONResponse(cases.worklist(self.ws), headers={"cache-control": "no-store"})

    async def patient(self, request: Request) -> Response:
        found = self._authorised(request, write=False)
        if isinstance(found, Response):
            return found
        detail = cases.case(self.ws, request.path_params["patient_id"])
        if detail is None:
            return _error(404, "no such patient")
        return JSONResponse(detail, headers={"cache-control": "no-store"})

    async def image(self, request: Request) -> Response:
        found = self._authorised(request, write=False)
        if isinstance(found, Response):
            return found
        pid, role = request.path_params["patient_id"], request.path_params["role"]
        with self._catalog() as cat:
            hit = cases.image_file(self.ws, cat, pid, role)
        if hit is None:
            return _error(404, "no such patient or image")
        path, sha = hit
        etag = f'"{sha}"'
        headers = {"etag": etag, "cache-control": "private, no-cache"}
        if etag in [t.strip() for t in request.headers.get("if-none-match", "").split(",")]:
            return Response(status_code=304, headers=headers)
        # the files are gzip-compressed NIfTI already: sent as they are
        return FileResponse(
            path,
            media_type="application/gzip",
            headers={**headers, "content-disposition": f'inline; filename="{pid}-{role}.nii.gz"'},
        )

    async def review(self, request: Request) -> Response:
        found = self._authorised(request, write=True)
        if isinstance(found, Response):
            return found
        _, user = found
        pid = request.path_params["patient_id"]
        data = await self._json_body(request)
        if data is None:
            return _error(422, 'send JSON: {"decision": ..., "reason": ...}')
        decision = API_DECISIONS.get(str(data.get("decision")))
        if decision is None:
            return _error(422, f"decision must be one of {', '.join(API_DECISIONS)}")
        reason, lesion, voxel = data.get("reason"), data.get("lesion"), data.get("voxel")
        if reason is not None and not isinstance(reason, str):
            return _error(422, "reason must be text")
        if lesion is not None:
            lesion = str(lesion)[:32]
        if voxel is not None:
            if not (
                isinstance(voxel, list)
                and len(voxel) == 3
                and all(isinstance(v, int) and 0 <= v < 10000 for v in voxel)
            ):
                return _error(422, "voxel must be three non-negative integers")
            voxel = (voxel[0], voxel[1], voxel[2])
        with self._catalog(write=True) as cat:
            if cat.patient(pid) is None:
                return _error(404, "no such patient")
            seg = cat.stage_outputs(pid, "segment").get("seg")
            try:
                rec = record_decision(
                    cat, user, pid, decision, seg[1] if seg else None, reason, lesion, voxel
                )
            except ReviewError as exc:
                status = 403 if "may not" in str(exc) or "disabled" in str(exc) else 422
                return _error(status, str(exc))
        log.info("%s recorded %r for %s", user.name, decision, pid)
        detail = cases.case(self.ws, pid)
        return JSONResponse({"recorded": rec.id, "review": detail["review"] if detail else None})

    # --------------------------------------------------------------- annotation
    def _annotation_target(self, request: Request, *, write: bool) -> tuple[str, str] | Response:
        found = self._authorised(request, write=write)
        if isinstance(found, Response):
            return found
        pid = request.path_params["patient_id"]
        with self._catalog() as cat:
            if cat.patient(pid) is None:
                return _error(404, "no such patient")
        return found[1].name, pid

    async def _read_draft(self, request: Request, what: Callable[[str, str], Any]) -> Any:
        """``what(user, patient)`` for a GET of the annotation routes, or the error."""
        target = self._annotation_target(request, write=False)
        if isinstance(target, Response):
            return target
        try:
            return await run_in_threadpool(what, *target)
        except CaseNotReady as exc:
            return _error(409, str(exc))

    async def annotation(self, request: Request) -> Response:
        got = await self._read_draft(request, self.drafts.draft)
        return got if isinstance(got, Response) else JSONResponse(got.summary())

    async def annotation_draft(self, request: Request) -> Response:
        got = await self._read_draft(request, self.drafts.label_map_gz)
        if isinstance(got, Response):
            return got
        return Response(
            got,
            media_type="application/gzip",
            headers={"cache-control": "no-store", "content-disposition": "inline"},
        )

    async def annotate(self, request: Request) -> Response:
        target = self._annotation_target(request, write=True)
        if isinstance(target, Response):
            return target
        user, pid = target
        data = await self._json_body(request)
        if data is None:
            return _error(422, 'send JSON: {"action": ...}')
        action = data.get("action")
        d = self.drafts
        try:
            if action == "grow":
                voxel = _voxel(data.get("voxel"))
                steps = int(data.get("steps") or 0)
                draft = await run_in_threadpool(d.grow, user, pid, voxel, steps)
            elif action in ("larger", "smaller"):
                delta = 1 if action == "larger" else -1
                draft = await run_in_threadpool(d.step, user, pid, delta)
            elif action == "propose":
                draft = await run_in_threadpool(d.propose, user, pid)
            elif action == "pick":
                draft = await run_in_threadpool(d.pick, user, pid, int(data.get("candidate", 0)))
            elif action == "accept":
                draft, _n = await run_in_threadpool(d.accept, user, pid)
            elif action == "reject":
                draft = await run_in_threadpool(d.reject, user, pid)
            elif action in ("paint", "erase"):
                voxel = _voxel(data.get("voxel"))
                draft = await run_in_threadpool(
                    d.paint,
                    user,
                    pid,
                    voxel,
                    float(data.get("radius", 2)),
                    str(data.get("region", "core")),
                    int(data.get("lesion", 0)),
                    action == "erase",
                    str(data.get("brush", "sphere")),
                )
            elif action == "fill":
                voxel = _voxel(data.get("voxel"))
                draft = await run_in_threadpool(
                    d.fill,
                    user,
                    pid,
                    voxel,
                    str(data.get("region", "core")),
                    int(data.get("lesion", 0)),
                    str(data.get("brush", "disc")),
                )
            elif action == "split":
                draft = await run_in_threadpool(d.split, user, pid, int(data.get("lesion", 0)))
            elif action == "merge":
                chosen = data.get("lesions")
                if not (isinstance(chosen, list) and all(isinstance(x, int) for x in chosen)):
                    raise ValueError("lesions must be a list of lesion numbers")
                draft = await run_in_threadpool(d.merge, user, pid, chosen)
            elif action == "remove":
                draft = await run_in_threadpool(d.remove, user, pid, int(data.get("lesion", 0)))
            elif action == "undo":
                draft = await run_in_threadpool(d.undo, user, pid)
            elif action == "redo":
                draft = await run_in_threadpool(d.redo, user, pid)
            elif action == "discard":
                await run_in_threadpool(d.discard, user, pid)
                draft = await run_in_threadpool(d.draft, user, pid)
            elif action == "save":
                rec = await run_in_threadpool(d.save, user, pid)
                log.info("%s saved annotation version %d of %s", user, rec.version, pid)
                draft = await run_in_threadpool(d.draft, user, pid)
                return JSONResponse({**draft.summary(), "saved": rec.version})
            else:
                return _error(422, f"action must be one of {', '.join(ANNOTATION_ACTIONS)}")
        except CaseNotReady as exc:
            return _error(409, str(exc))
        except (ValueError, TypeError) as exc:  # NoLesionHere, a bad voxel, nothing to undo
            return _error(422, str(exc))
        return JSONResponse(draft.summary())


def _voxel(value: Any) -> tuple[int, int, int]:
    if not (
        isinstance(value, list)
        and len(value) == 3
        and all(isinstance(v, int) and 0 <= v < 10000 for v in value)
    ):
        raise ValueError("voxel must be three non-negative integers")
    return (value[0], value[1], value[2])


#: what POST /api/patients/{id}/annotation does
ANNOTATION_ACTIONS = (
    "grow",
    "larger",
    "smaller",
    "propose",
    "pick",
    "accept",
    "reject",
    "paint",
    "erase",
    "fill",
    "split",
    "merge",
    "remove",
    "undo",
    "redo",
    "discard",
    "save",
)


def create_app(workspace: Workspace | str | Path, **options: Any) -> Starlette:
    """The review app for ``workspace`` (options: see :class:`ReviewApp`)."""
    ws = workspace if isinstance(workspace, Workspace) else Workspace.open(workspace)
    state = ReviewApp(ws, **options)
    routes = [
        Route("/login", state.login_page, methods=["GET"]),
        Route("/", state.app_page, methods=["GET"]),
        Route("/case/{patient_id}", state.app_page, methods=["GET"]),
        Route("/static/{name}", state.static, methods=["GET"]),
        Route("/api/login", state.login, methods=["POST"]),
        Route("/api/logout", state.logout, methods=["POST"]),
        Route("/api/session", state.session, methods=["GET"]),
        Route("/api/patients", state.patients, methods=["GET"]),
        Route("/api/patients/{patient_id}", state.patient, methods=["GET"]),
        Route("/api/patients/{patient_id}/images/{role}", state.image, methods=["GET"]),
        Route("/api/patients/{patient_id}/review", state.review, methods=["POST"]),
        Route("/api/patients/{patient_id}/annotation", state.annotation, methods=["GET"]),
        Route("/api/patients/{patient_id}/annotation", state.annotate, methods=["POST"]),
        Route(
            "/api/patients/{patient_id}/annotation/draft.nii.gz",
            state.annotation_draft,
            methods=["GET"],
        ),
    ]

    async def not_found(request: Request, exc: Exception) -> Response:
        return _error(404, "not found")

    async def not_allowed(request: Request, exc: Exception) -> Response:
        return _error(405, "method not allowed")

    app = Starlette(routes=routes, exception_handlers={404: not_found, 405: not_allowed})
    app.state.review = state
    app.add_middleware(_Guard)
    return app


def serve(workspace: Workspace, host: str, port: int, announce: Callable[[str], Any]) -> None:
    """Serve the app with uvicorn until interrupted."""
    import uvicorn

    app = create_app(workspace)
    announce(f"http://{host}:{port}/")
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)
