"""The plugin's logger: hclog JSON lines on standard error.

go-plugin's host reads the plugin's stderr line by line, parses lines in
hclog's JSON shape ({"@level", "@message", "@timestamp", attrs...}) and
re-logs each under the provider's name with its level and attributes.
Anything else on stderr is re-logged as plain text. Never write to
standard output: its first line is the go-plugin handshake.
"""

import datetime
import json
import logging
import os
import sys
import threading

ENV_LOG_LEVEL = "HANDOFF_PLUGIN_LOG_LEVEL"

# What a call being served sets for the logger (the request id) and for
# host calls (the deadline); see _serve.
_call = threading.local()

# The attributes every LogRecord has; the rest came in extra={...}.
_RECORD_ATTRS = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}


def _hclog_level(levelno):
    if levelno < logging.DEBUG:
        return "trace"
    if levelno < logging.INFO:
        return "debug"
    if levelno < logging.WARNING:
        return "info"
    if levelno < logging.ERROR:
        return "warn"
    return "error"


def level_from_env(value=None):
    """The Python logging level for HANDOFF_PLUGIN_LOG_LEVEL (default info).

    The host sends "debug", "info" or "warn"; "error" is understood too.
    """
    value = (os.environ.get(ENV_LOG_LEVEL, "") if value is None else value).strip().lower()
    return {"debug": logging.DEBUG, "info": logging.INFO, "warn": logging.WARNING,
            "warning": logging.WARNING, "error": logging.ERROR}.get(value, logging.INFO)


class HCLogFormatter(logging.Formatter):
    """Formats a record as one hclog JSON line."""

    def format(self, record):
        out = {
            "@level": _hclog_level(record.levelno),
            "@message": record.getMessage(),
            "@timestamp": datetime.datetime.fromtimestamp(record.created, datetime.timezone.utc)
            .astimezone().isoformat(timespec="microseconds"),
        }
        request_id = getattr(_call, "request_id", "")
        if request_id:
            out["request_id"] = request_id
        for key, value in vars(record).items():
            if key not in _RECORD_ATTRS and not key.startswith("_"):
                out[key] = value
        if record.exc_info:
            out["error"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str, ensure_ascii=False)


def _make_logger():
    log = logging.getLogger("handoff_plugin")
    log.propagate = False
    log.setLevel(level_from_env())
    if not log.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(HCLogFormatter())
        log.addHandler(handler)
    return log


logger = _make_logger()
"""The plugin's logger (a logging.Logger). Attributes go in extra=:
``logger.warning("replayed code refused", extra={"user": user_id})``; the
request id of the call being served is added on its own."""
