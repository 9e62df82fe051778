"""Receiving studies over the DICOM network into a workspace, de-identified on receipt.

``brainmets receive`` (in the deid package: de-identification on receipt) runs
:func:`brainmets.deid.receiver.receive` (a Storage SCP that de-identifies each instance in
memory and writes only the de-identified file) with the workspace key, into the
workspace's ``data/received`` staging folder, and indexes every instance in the catalog as
it arrives (``source_files`` with status ``received``, or
``quarantined`` with the reason). The ``deid`` stage then files received instances under
``data/dicom`` with the rest, without de-identifying them a second time.

The receiver does not hold the workspace lock, so ``brainmets run`` can process what has
arrived while it keeps receiving; catalog writes are short transactions.
"""

from __future__ import annotations

import itertools
import logging
import threading
from pathlib import Path
from typing import Any

from brainmets.catalog import LATEST_VERSION, Catalog, CatalogError, SourceFile, utcnow
from brainmets.deid.engine import DeidOptions, DeidResult
from brainmets.workspace import Workspace

log = logging.getLogger("brainmets.receive")


class ReceiptIndexer:
    """Records each received instance in the catalog (thread-safe ``on_stored`` callback)."""

    def __init__(self, ws: Workspace) -> None:
        self.ws = ws
        self.catalog = Catalog.open(ws.catalog_path, migrate=False, any_thread=True)
        if self.catalog.version() != LATEST_VERSION:
            self.catalog.close()
            raise CatalogError(
                f"{ws.catalog_path}: schema is not up to date; run any writing command "
                "(e.g. `brainmets run`) once before receiving"
            )
        self._lock = threading.Lock()
        self._seq = itertools.count(1)
        self.counts = {"received": 0, "quarantined": 0, "duplicate": 0}

    def __call__(self, result: DeidResult) -> None:
        now = utcnow()
        if result.duplicate:
            # already stored and recorded: counted once, logged by the receiver
            with self._lock:
                self.counts["duplicate"] += 1
            return
        if result.deidentified and result.path is not None:
            st = result.path.stat()
            row = SourceFile(
                path=str(result.path),
                size=st.st_size,
                mtime_ns=st.st_mtime_ns,
                status="received",
                reason=None,
                patient_id=result.patient_id,
                sop_uid=result.sop_uid,
                seen_at=now,
            )
            kind = "received"
        else:
            # nothing was written: record the event so the instance is accounted for
            row = SourceFile(
                path=f"received:quarantined/{now}/{next(self._seq)}",
                size=0,
                mtime_ns=0,
                status="quarantined",
                reason=f"received instance quarantined: {result.reason}; not written",
                patient_id=None,
                sop_uid=None,
                seen_at=now,
            )
            kind = "quarantined"
        with self._lock:
            self.catalog.record_source_file(row)
            self.counts[kind] += 1

    def close(self) -> None:
        self.catalog.close()


def received_before(ws: Workspace) -> tuple[int, list[str]]:
    """What earlier runs received into ``ws``: the number of instances the catalog records
    as received and those of them missing on disk.
    Every acknowledged instance was written (with fsync) and recorded before its
    acknowledgement, so after a crash or a kill this accounts for all of them."""
    with ws.catalog(readonly=True) as cat:
        rows = [f for f in cat.source_files() if f.status == "received"]
    missing = [f.path for f in rows if not Path(f.path).exists()]
    return len(rows), missing


def start_receiver(
    ws: Workspace, ae_title: str, port: int, host: str = "127.0.0.1", block: bool = False
) -> tuple[Any, ReceiptIndexer]:
    """Start the de-identifying receiver for ``ws``; returns (server or None, indexer).

    Refuses (``WorkspaceError``) a missing key and another key than the workspace's
    (:meth:`Workspace.checked_key`) before it listens."""
    from brainmets.deid.receiver import receive

    params = ws.config.stage_params("deid", DeidOptions.defaults())
    indexer = ReceiptIndexer(ws)
    try:
        key = ws.checked_key(indexer.catalog, command="receive")  # another key is refused
        server = receive(
            ae_title,
            port,
            ws.config.path("received"),
            key,
            options=DeidOptions.from_params(params),
            on_stored=indexer,
            host=host,
            block=block,
        )
    except BaseException:
        indexer.close()
        raise
    return server, indexer
