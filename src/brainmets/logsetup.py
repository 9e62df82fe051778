"""Logging: human-readable on the console (rich), structured JSON lines in the workspace.

**Repeated warnings.** A record logged with a ``repeat_kind`` (``extra={"repeat_kind":
...}``, or a ``repeat_kind=`` field of :meth:`StageContext.log
<brainmets.pipeline.stage.StageContext.log>`) is one of many alike, e.g. the same
dcm2niix warning for every series of a vendor. The console shows the first record of each
kind at or above its level, once per run (:func:`reset_repeats`); the others are counted,
and :func:`log_repeat_summary` prints one line per kind with the count. The log file gets
every record, at its own level (DEBUG for the harmless ones). ``-vv`` shows every record
on the console.

**Python warnings** (``warnings.warn``, e.g. pydicom's ``UserWarning``) are logged through
the ``brainmets.warnings`` logger with a kind, instead of being printed raw to stderr; in a
worker, :func:`collect_warnings` gathers them for the stage's log.
:func:`quiet_resource_tracker` keeps multiprocessing's resource tracker from printing its
"leaked semaphore objects" warning after a killed run (it removes them all the same; the
next run reports the interrupted stage runs it redoes).
"""

from __future__ import annotations

import collections
import json
import logging
import re
import sys
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from rich.console import Console
from rich.logging import RichHandler
from rich.text import Text

_STD_ATTRS = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}
#: the record attribute naming a record's kind (see the module docstring)
KIND = "repeat_kind"
#: multiprocessing's resource tracker, as a ``-W`` filter its process inherits
RESOURCE_TRACKER_FILTER = "ignore:resource_tracker:UserWarning:multiprocessing.resource_tracker"


class JsonLinesFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message and any structured fields."""

    def format(self, record: logging.LogRecord) -> str:
        obj: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for k, v in vars(record).items():
            if k not in _STD_ATTRS and not k.startswith("_"):
                obj[k] = v
        if record.exc_info:
            obj["exception"] = self.formatException(record.exc_info)
        return json.dumps(obj, default=str)


# --------------------------------------------------------------- repeated warnings
@dataclass
class Repeats:
    """Records of each kind seen in this run: how many, the highest level, which were shown."""

    log_file: Path | None = None
    counts: collections.Counter[str] = field(default_factory=collections.Counter)
    levels: dict[str, int] = field(default_factory=dict)
    shown: set[str] = field(default_factory=set)

    def clear(self) -> None:
        self.counts.clear()
        self.levels.clear()
        self.shown.clear()

    def summary(self) -> list[tuple[int, str]]:
        """``(level, line)`` for each kind seen more often than the console showed it."""
        where = f"the log file {self.log_file}" if self.log_file else "the log"
        out = []
        for kind, n in self.counts.items():
            level = min(self.levels[kind], logging.WARNING)
            name = logging.getLevelName(level)
            if kind in self.shown and n > 1:
                line = f"{kind}: {n - 1} more like the one above ({n} in all, each in {where})"
                out.append((level, line))
            elif kind not in self.shown:
                line = f"{kind}: {n} time(s), each at {name} in {where} (-v shows them)"
                out.append((max(level, logging.INFO), line))
        return out


class _CountKinds(logging.Handler):
    """Counts every record that has a kind (a handler, so that it sees every level)."""

    def __init__(self, repeats: Repeats) -> None:
        super().__init__(logging.DEBUG)
        self.repeats = repeats

    def emit(self, record: logging.LogRecord) -> None:
        kind = getattr(record, KIND, None)
        if kind:
            self.repeats.counts[kind] += 1
            self.repeats.levels[kind] = max(self.repeats.levels.get(kind, 0), record.levelno)


class FirstOfKind(logging.Filter):
    """Lets through records without a kind, and the first record of each kind."""

    def __init__(self, repeats: Repeats) -> None:
        super().__init__()
        self.repeats = repeats

    def filter(self, record: logging.LogRecord) -> bool:
        kind = getattr(record, KIND, None)
        if not kind:
            return True
        if kind in self.repeats.shown:
            return False
        self.repeats.shown.add(kind)
        return True


_repeats: Repeats | None = None


def reset_repeats() -> None:
    """Start counting afresh (a run calls this when it starts)."""
    if _repeats is not None:
        _repeats.clear()


def log_repeat_summary(logger: logging.Logger | None = None) -> list[str]:
    """Log one line per kind seen more often than shown (a run calls this when it ends);
    return the lines. Nothing when :func:`setup_logging` has not been called."""
    if _repeats is None:
        return []
    lines = _repeats.summary()
    _repeats.clear()
    lg = logger or logging.getLogger("brainmets")
    for level, line in lines:
        lg.log(level, line)
    return [line for _, line in lines]


_NUMBER = re.compile(r"(?<![A-Za-z])[-+]?(?:0x)?[0-9][0-9A-Fa-f.]*")
_QUOTED = re.compile(r"'[^']*'|\"[^\"]*\"")
_PATH = re.compile(r"(?<![\w.])(?:[A-Za-z]:\\|~|\.{0,2}/)[^\s:,;)]*|[\w.-]+(?:/[\w.-]+){2,}")


def normalize_kind(text: str, limit: int = 120) -> str:
    """A message reduced to its kind: paths, quoted values and numbers replaced by ``...``
    and ``#``, so that the same warning about other files or values has the same kind."""
    text = _PATH.sub("...", text)
    text = _QUOTED.sub("'...'", text)
    text = _NUMBER.sub("#", text)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


# ----------------------------------------------------------------- Python warnings
def warning_record(
    message: Warning | str, category: type[Warning], filename: str, lineno: int
) -> tuple[str, dict[str, Any]]:
    """A Python warning as a log message and its fields (kind, where it was raised)."""
    module = _module_of(filename)
    text = " ".join(str(message).split())
    origin = f"{module} {category.__name__}" if module else category.__name__
    return f"{origin}: {text}", {
        KIND: f"{origin}: {normalize_kind(text)}",
        "where": f"{filename}:{lineno}",
    }


def _module_of(filename: str) -> str:
    """The top-level package a file belongs to (``pydicom``), '' when unknown."""
    parts = Path(filename).parts
    for marker in ("site-packages", "dist-packages"):
        if marker in parts:
            rest = parts[parts.index(marker) + 1 :]
            return rest[0].removesuffix(".py") if rest else ""
    for name, mod in list(sys.modules.items()):
        if "." not in name and getattr(mod, "__file__", None):
            root = Path(mod.__file__ or "").parent
            if Path(filename).is_relative_to(root) and root.name == name:
                return name
    return ""


_local = threading.local()
_log_warnings = False


def _showwarning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: TextIO | None = None,
    line: str | None = None,
) -> None:
    sink = getattr(_local, "sink", None)
    if sink is not None:
        sink.append(warnings.WarningMessage(message, category, filename, lineno, file, line))
    elif _log_warnings:
        text, fields = warning_record(message, category, filename, lineno)
        logging.getLogger("brainmets.warnings").warning(text, extra=fields)
    else:
        _original_showwarning(message, category, filename, lineno, file, line)


_showwarning._brainmets = True  # type: ignore[attr-defined]
_original_showwarning = warnings.showwarning


def _install_warning_hook() -> None:
    global _original_showwarning
    if not getattr(warnings.showwarning, "_brainmets", False):
        _original_showwarning = warnings.showwarning
        warnings.showwarning = _showwarning


@contextmanager
def collect_warnings() -> Iterator[list[warnings.WarningMessage]]:
    """Gather the Python warnings this thread shows while inside, instead of printing or
    logging them (thread-safe, unlike ``warnings.catch_warnings``; a warning at one place
    is shown once per process, as Python's default filter has it)."""
    _install_warning_hook()
    previous = getattr(_local, "sink", None)
    caught: list[warnings.WarningMessage] = []
    _local.sink = caught
    try:
        yield caught
    finally:
        _local.sink = previous


def quiet_resource_tracker() -> None:
    """Keep multiprocessing's resource tracker (a separate process, started with the first
    worker pool) from printing "There appear to be N leaked semaphore objects to clean up
    at shutdown" after a killed run: it cleans them up regardless."""
    if RESOURCE_TRACKER_FILTER not in sys.warnoptions:
        sys.warnoptions.append(RESOURCE_TRACKER_FILTER)


# -------------------------------------------------------------------------- setup
class PathSafeRichHandler(RichHandler):
    """A RichHandler that never breaks a word: a message with a word (a path, a UID) too
    long for the message column is printed as one line, level first, and left to the
    terminal to wrap, so that a path copied from the console is whole."""

    def emit(self, record: logging.LogRecord) -> None:
        message = self.format(record)
        room = self.console.width - _LEVEL_WIDTH
        if max((len(w) for w in message.split()), default=0) <= room:
            super().emit(record)
            return
        level = record.levelname
        text = Text.assemble((f"{level:<8} ", f"logging.level.{level.lower()}"), message)
        try:
            self.console.print(text, soft_wrap=True, highlight=False)
        except Exception:  # pragma: no cover - as logging.Handler does
            self.handleError(record)


_LEVEL_WIDTH = 9  # RichHandler's level column and the space after it


def setup_logging(
    console: Console | None = None, log_file: Path | None = None, verbose: int = 0
) -> None:
    """Configure the ``brainmets`` logger (idempotent; replaces earlier handlers).

    Console: INFO (``verbose`` -1: WARNING; 1: DEBUG; 2: DEBUG and every repeated record);
    the log file: everything, as JSON lines. Python warnings go to the log too.
    """
    global _repeats, _log_warnings
    logger = logging.getLogger("brainmets")
    for h in list(logger.handlers):
        logger.removeHandler(h)
        h.close()
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    level = logging.WARNING if verbose < 0 else logging.INFO if verbose == 0 else logging.DEBUG
    _repeats = Repeats(log_file)
    logger.addHandler(_CountKinds(_repeats))  # before the console: it counts first
    ch = PathSafeRichHandler(
        console=console or Console(stderr=True),
        show_path=False,
        show_time=False,
        rich_tracebacks=False,
        markup=False,
    )
    ch.setLevel(level)
    if verbose < 2:
        ch.addFilter(FirstOfKind(_repeats))
    logger.addHandler(ch)
    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        fh = logging.FileHandler(log_file, encoding="utf-8")
        fh.setLevel(logging.DEBUG)
        fh.setFormatter(JsonLinesFormatter())
        logger.addHandler(fh)
    _log_warnings = True
    _install_warning_hook()
    quiet_resource_tracker()
