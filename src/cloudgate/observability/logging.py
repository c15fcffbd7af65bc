"""Log lines as text or as one JSON object each, carrying the id of the request they belong to.

`RequestIdFilter` goes on the handler: it runs where the line is logged, so it sees that
request's context even when a formatter runs later or elsewhere. Both formatters include the
request id when there is one.
"""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime
from typing import Literal, TextIO

import orjson

from cloudgate.observability.context import current_request_id

LogFormat = Literal["text", "json"]

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s%(request_tag)s: %(message)s"


class RequestIdFilter(logging.Filter):
    """Stamps each log record with the current request id (`request_id`, None outside requests)."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Add the id; never drops a record."""
        if not hasattr(record, "request_id"):
            record.request_id = current_request_id()
        return True


class TextFormatter(logging.Formatter):
    """`time LEVEL logger [request id]: message`, the bracket only inside a request."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        """The line, with the request id after the logger name when there is one."""
        rid = getattr(record, "request_id", None)
        record.request_tag = f" [{rid}]" if rid else ""
        return super().format(record)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, request_id, exception."""

    def format(self, record: logging.LogRecord) -> str:
        """The line as JSON."""
        doc: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        rid = getattr(record, "request_id", None)
        if rid:
            doc["request_id"] = rid
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            doc["exception"] = record.exc_text
        if record.stack_info:
            doc["stack"] = self.formatStack(record.stack_info)
        return orjson.dumps(doc, default=str).decode()


def log_handler(fmt: LogFormat = "text", stream: TextIO | None = None) -> logging.Handler:
    """A stream handler (standard error by default) in `fmt` that stamps request ids."""
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.addFilter(RequestIdFilter())
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    return handler


def configure_logging(level: str, fmt: LogFormat = "text", stream: TextIO | None = None) -> None:
    """Send every log line of the process to one handler in `fmt` at `level`."""
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        handlers=[log_handler(fmt, stream)],
        force=True,
    )
