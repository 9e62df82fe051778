"""DICOM receiver: a Storage SCP that de-identifies every instance in memory on receipt.

Only the de-identified instance ever reaches the disk: each received data set is decoded from
the association's buffers in memory (pynetdicom's chunked-to-file reception is switched off),
de-identified with :class:`~brainmets.deid.engine.Deidentifier`, and written atomically (with
fsync, before the C-STORE is acknowledged) as ``<dicom_dir>/<patient>/<study>/<series>/
<sop>.dcm``. Instances that must be quarantined (burned-in annotation, secondary capture,
screen save) are not written at all unless a quarantine folder is given explicitly; the
sender gets a success status either way so it does not resend them.

C-ECHO (Verification) is supported. Example::

    server = receive("BRAINMETS", 11112, ws_dicom_dir, key, block=False)
    ...  # storescu -aec BRAINMETS 127.0.0.1 11112 +sd +r /export
    stop_server(server)   # aborts open associations, then shuts down
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from pydicom.dataset import Dataset
from pydicom.uid import UID

from brainmets.deid.engine import Deidentifier, DeidOptions, DeidResult, NotAnInstanceError
from brainmets.fsutil import atomic_path, atomic_write_bytes

if TYPE_CHECKING:
    from pynetdicom import AE
    from pynetdicom.events import Event, EventHandlerType
    from pynetdicom.transport import ThreadedAssociationServer

log = logging.getLogger(__name__)

# DIMSE status codes (PS3.4 Annex B / PS3.7 Annex C).
STATUS_SUCCESS = 0x0000
STATUS_CANNOT_UNDERSTAND = 0xC000
STATUS_OUT_OF_RESOURCES = 0xA700
STATUS_PROCESSING_FAILURE = 0x0110


class _StoreHandler:
    """C-STORE handler bound to a de-identifier and an output folder."""

    def __init__(
        self,
        dicom_dir: Path,
        deid: Deidentifier,
        on_stored: Callable[[DeidResult], None] | None,
        quarantine_dir: Path | None,
    ) -> None:
        self.dicom_dir = dicom_dir
        self.deid = deid
        self.on_stored = on_stored
        self.quarantine_dir = quarantine_dir
        self.stored = 0
        self.quarantined = 0
        self.failed = 0
        self.duplicates = 0  # same SOP Instance UID and content as a stored one: not rewritten
        self.conflicts = 0  # same SOP Instance UID, other content: quarantined
        self.acknowledged = 0  # C-STOREs answered with success
        self._counts = threading.Lock()
        # one lock per output path (striped): the same instance arriving on two associations
        # at once is written once and counted once as a duplicate
        self._path_locks = [threading.Lock() for _ in range(64)]

    def _count(self, name: str) -> None:
        with self._counts:
            setattr(self, name, getattr(self, name) + 1)

    def __call__(self, event: Event) -> int:
        status = self._handle(event)
        if status == STATUS_SUCCESS:
            self._count("acknowledged")
        return status

    def _handle(self, event: Event) -> int:
        try:
            ds: Dataset = event.dataset
            ds.file_meta = event.file_meta
        except Exception:
            self._count("failed")
            log.warning("received a data set that cannot be decoded")
            return STATUS_CANNOT_UNDERSTAND
        try:
            result = self.deid.deidentify(ds)
        except NotAnInstanceError:
            self._count("failed")
            return STATUS_CANNOT_UNDERSTAND
        except Exception as exc:  # never echo identifying content into the log
            self._count("failed")
            log.warning("de-identification failed (%s)", type(exc).__name__)
            return STATUS_PROCESSING_FAILURE
        if result.quarantined:
            self._count("quarantined")
            log.info("instance quarantined: %s", result.reason)
            if self.quarantine_dir is not None:
                self._quarantine(event, result)
        else:
            try:
                path = self.dicom_dir / result.relative_path()
                data = result.to_bytes()
                with self._path_locks[hash(path) % len(self._path_locks)]:
                    same = same_instance(path, data)
                    if same is None:
                        with atomic_path(path) as tmp:
                            tmp.write_bytes(data)
            except OSError as exc:
                self._count("failed")
                log.warning("cannot write a received instance (%s)", exc.strerror)
                return STATUS_OUT_OF_RESOURCES
            rel = result.relative_path()
            if same is None:
                result.path = path
                self._count("stored")
            elif same:
                result.path = path
                result.duplicate = True
                self._count("duplicates")
                log.info("duplicate of a stored instance (%s), not rewritten", rel)
            else:
                result.status = "quarantined"
                result.reason = (
                    f"same SOP Instance UID as the stored {rel} but other content; "
                    "the stored instance is kept"
                )
                result.dataset = None
                self._count("conflicts")
                log.warning("instance quarantined: %s", result.reason)
        if self.on_stored is not None:
            try:
                self.on_stored(result)
            except Exception as exc:
                log.warning("on_stored callback failed (%s)", type(exc).__name__)
        return STATUS_SUCCESS

    def _quarantine(self, event: Event, result: DeidResult) -> None:
        """Keep the original of a quarantined instance (explicit opt-in: identifiable)."""
        import hashlib
        import io

        import pydicom

        assert self.quarantine_dir is not None
        buf = io.BytesIO()
        ds = event.dataset
        ds.file_meta = event.file_meta
        pydicom.dcmwrite(buf, ds, enforce_file_format=True)
        data = buf.getvalue()
        name = f"{hashlib.sha256(data).hexdigest()}.dcm"
        atomic_write_bytes(self.quarantine_dir / name, data)
        result.path = self.quarantine_dir / name


def same_instance(path: Path, data: bytes) -> bool | None:
    """Whether the instance stored at ``path`` is ``data``: None when nothing is stored
    there, True when the bytes are equal or the data sets are (the same instance sent again,
    perhaps in another transfer syntax), False when the content differs."""
    try:
        stored = path.read_bytes()
    except FileNotFoundError:
        return None
    if stored == data:
        return True
    import io

    import pydicom

    try:
        a = pydicom.dcmread(io.BytesIO(stored))
        b = pydicom.dcmread(io.BytesIO(data))
    except Exception:  # an unreadable stored file is not the same instance
        return False
    return bool(a == b)


def make_ae(ae_title: str) -> AE:
    """A pynetdicom AE accepting every storage SOP class in every transfer syntax, and C-ECHO."""
    from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, _config
    from pynetdicom.presentation import AllStoragePresentationContexts
    from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]  # made at import

    # Decode received data sets in memory: never spool identifiable data to a file.
    _config.STORE_RECV_CHUNKED_DATASET = False
    ae = AE(ae_title=ae_title)
    for cx in AllStoragePresentationContexts:
        if cx.abstract_syntax is not None:  # always set in pynetdicom's own contexts
            ae.add_supported_context(UID(cx.abstract_syntax), ALL_TRANSFER_SYNTAXES)
    ae.add_supported_context(Verification)
    ae.maximum_pdu_size = 0  # no limit
    return ae


def receive(
    ae_title: str,
    port: int,
    workspace_dicom_dir: Path,
    key: bytes,
    *,
    options: DeidOptions | None = None,
    on_stored: Callable[[DeidResult], None] | None = None,
    host: str = "127.0.0.1",
    quarantine_dir: Path | None = None,
    block: bool = True,
) -> ThreadedAssociationServer | None:
    """Run the de-identifying Storage SCP on ``host:port``.

    ``on_stored(result)`` is called after each instance (de-identified and written, with
    ``result.path`` set, or quarantined). With ``block=True`` (default) this serves until
    interrupted; with ``block=False`` it returns the running server (call ``shutdown()``).
    The handler object (counts of stored, quarantined and failed instances) is available as
    ``server.brainmets_handler``.
    """
    from pynetdicom import evt

    dicom_dir = Path(workspace_dicom_dir)
    dicom_dir.mkdir(parents=True, exist_ok=True)
    handler = _StoreHandler(dicom_dir, Deidentifier(key, options), on_stored, quarantine_dir)
    ae = make_ae(ae_title)
    handlers: list[EventHandlerType] = [(evt.EVT_C_STORE, handler)]
    log.info("receiving as %s on %s:%d into %s", ae_title, host, port, dicom_dir)
    server = ae.start_server((host, port), block=False, evt_handlers=handlers)
    assert server is not None
    setattr(server, "brainmets_handler", handler)  # noqa: B010 - documented attribute
    if not block:
        return server
    serve_until_stopped(server)
    return None


def serve_until_stopped(server: ThreadedAssociationServer) -> None:
    """Serve until SIGINT or SIGTERM, then stop the server (:func:`stop_server`)."""
    previous = {}
    if threading.current_thread() is threading.main_thread():
        # Ctrl-C (SIGINT) and a service manager's SIGTERM both stop cleanly. SIGINT is set
        # explicitly: a process started in the background by a non-interactive shell
        # inherits SIGINT as ignored, and Python then installs no KeyboardInterrupt for it.
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, _interrupt)
    try:
        while True:
            time.sleep(0.2)
    except KeyboardInterrupt:
        log.info("stopping the receiver")
    finally:
        stop_server(server)
        for sig, old in previous.items():
            signal.signal(sig, old)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def stop_server(server: ThreadedAssociationServer) -> None:
    """Stop a running receiver promptly: abort the associations still open (an association
    thread can otherwise wait out its network timeout, up to a minute, and closing the
    server waits for every association thread), then shut the server down."""
    for assoc in list(server.active_associations):
        assoc.abort()
    server.shutdown()
