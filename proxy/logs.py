"""Logging set-up: one line per forwarded call, and a filter that keeps secrets out of logs."""

from __future__ import annotations

import io
import logging
import sys
import threading
import time
from collections.abc import Iterable
from typing import TextIO

MASK = "***"
# The logger of the one line per forwarded request, the only lines that wait in the buffer.
REQUEST_LOGGER = "proxy.requests"


class SecretFilter(logging.Filter):
    """Replace every configured secret in a record's message and arguments with `***`."""

    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        # Very short values would mask ordinary words; real keys are long.
        self._secrets = sorted({s for s in secrets if s and len(s) >= 6}, key=len, reverse=True)

    def filter(self, record: logging.LogRecord) -> bool:
        if not self._secrets:
            return True
        message = record.getMessage()
        masked = self._mask(message)
        if masked != message or record.args:
            record.msg = masked
            record.args = None
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = self._mask(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        return True

    def _mask(self, text: str) -> str:
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, MASK)
        return text


class BufferedStderrHandler(logging.StreamHandler[TextIO]):
    """Write log lines to stderr through a buffer, flushed at most `interval` seconds apart.

    Python's stderr writes every line at once; at thousands of requests a second the one INFO
    line per request cost more than a tenth of the gateway's CPU that way. Only those
    per-request lines wait in the buffer: any other record flushes it at once, and
    `flush_if_due()` (called by the app every `interval`) pushes out quiet periods' lines.
    """

    def __init__(self, interval: float = 0.5) -> None:
        stream = io.TextIOWrapper(
            io.BufferedWriter(io.FileIO(sys.stderr.fileno(), "w", closefd=False), 65536),
            encoding="utf-8",
            errors="backslashreplace",
            line_buffering=False,
            write_through=False,
        )
        super().__init__(stream)
        self._interval = interval
        self._flushed_at = time.monotonic()
        self._flush_lock = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.stream.write(self.format(record) + self.terminator)
        except (OSError, ValueError):
            self.handleError(record)
            return
        if record.levelno >= logging.WARNING or record.name != REQUEST_LOGGER:
            self.flush()

    def flush(self) -> None:
        with self._flush_lock:
            self._flushed_at = time.monotonic()
            try:
                self.stream.flush()
            except (OSError, ValueError):
                return

    def flush_if_due(self) -> None:
        if time.monotonic() - self._flushed_at >= self._interval:
            self.flush()


class CachedTimeFormatter(logging.Formatter):
    """A formatter that formats the date and time part of a timestamp once per second."""

    def __init__(self, fmt: str) -> None:
        super().__init__(fmt)
        self._second = -1
        self._stamp = ""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return self.stamp(record.created)

    def stamp(self, created: float) -> str:
        """Format `created` (Unix time) as the `%(asctime)s` field."""
        second = int(created)
        if second != self._second:
            self._second = second
            self._stamp = time.strftime(self.default_time_format, self.converter(created))
        return f"{self._stamp},{int((created - second) * 1000):03d}"


class RequestLineWriter:
    """Writes the one INFO line per forwarded request straight into the log buffer.

    The line reads exactly as the `logging` module would write it through the same handler,
    but skips building a LogRecord and running filters and formatter: in
    benchmarks/proxy_overhead.py that machinery cost about 7% of the gateway's throughput. The
    line contains model names, deployment ids and numbers only, never a secret, which is why the
    secret filter can be skipped here.
    """

    def __init__(self, handler: BufferedStderrHandler, formatter: CachedTimeFormatter) -> None:
        self._handler = handler
        self._formatter = formatter
        self._suffix = f" INFO {REQUEST_LOGGER} "

    def write(self, message: str) -> None:
        line = self._formatter.stamp(time.time()) + self._suffix + message + "\n"
        self._handler.acquire()
        try:
            self._handler.stream.write(line)
        except (OSError, ValueError):
            return
        finally:
            self._handler.release()


def request_line_writer() -> RequestLineWriter | None:
    """Return the fast writer when `configure` set up logging and request lines are enabled."""
    if not logging.getLogger(REQUEST_LOGGER).isEnabledFor(logging.INFO):
        return None
    for handler in logging.getLogger().handlers:
        formatter = handler.formatter
        if isinstance(handler, BufferedStderrHandler) and isinstance(
            formatter, CachedTimeFormatter
        ):
            return RequestLineWriter(handler, formatter)
    return None


def flush_handlers() -> None:
    """Flush buffered log lines that have waited long enough (the app calls this periodically)."""
    for handler in logging.getLogger().handlers:
        if isinstance(handler, BufferedStderrHandler):
            handler.flush_if_due()


def configure(level: str, secrets: Iterable[str]) -> None:
    """Send logs to stderr with timestamps, masking `secrets` in every handler's output."""
    # The format uses no caller, thread or process fields, so skip collecting them: the
    # optimizations listed in the logging HOWTO of the Python documentation.
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    handler = BufferedStderrHandler()
    handler.setFormatter(CachedTimeFormatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    handler.addFilter(SecretFilter(secrets))
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
    # The gateway logs its own line per request; uvicorn's access line would repeat it.
    logging.getLogger("uvicorn.access").disabled = True
