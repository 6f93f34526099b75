"""Log output: the fast request line reads like the logging module's, and secrets are masked."""

from __future__ import annotations

import io
import logging
import re

from proxy.logs import (
    REQUEST_LOGGER,
    BufferedStderrHandler,
    CachedTimeFormatter,
    RequestLineWriter,
    SecretFilter,
)

LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} INFO proxy\.requests (.*)$")


def handler_with_buffer() -> tuple[BufferedStderrHandler, CachedTimeFormatter, io.StringIO]:
    handler = BufferedStderrHandler()
    buffer = io.StringIO()
    handler.setStream(buffer)
    formatter = CachedTimeFormatter("%(asctime)s %(levelname)s %(name)s %(message)s")
    handler.setFormatter(formatter)
    return handler, formatter, buffer


def test_request_line_matches_logging() -> None:
    handler, formatter, buffer = handler_with_buffer()
    writer = RequestLineWriter(handler, formatter)
    record = logging.LogRecord(REQUEST_LOGGER, logging.INFO, __file__, 1, "status=%d", (200,), None)

    writer.write("status=200")
    handler.emit(record)
    first, second = buffer.getvalue().splitlines()

    assert LINE.match(first)
    assert LINE.match(second)
    assert first.split(" ", 2)[2] == second.split(" ", 2)[2]


def test_secret_filter_masks_arguments() -> None:
    handler, _, buffer = handler_with_buffer()
    handler.addFilter(SecretFilter(["sk-very-secret-123"]))
    logger = logging.getLogger("tests.secret")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning("upstream said %s", "bad key sk-very-secret-123")
    finally:
        logger.removeHandler(handler)

    assert "sk-very-secret-123" not in buffer.getvalue()
    assert "bad key ***" in buffer.getvalue()
