"""Strict reading of a provider's config section, as the Go SDK's
DecodeConfig does: every unknown key and every value of the wrong type is
reported, each naming its key."""

import json

from .errors import ConfigError

_WANT = {str: "a string", bool: "a boolean", int: "an integer", float: "a number", list: "an array",
         dict: "an object"}


def _got(value):
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "number"
    if isinstance(value, float):
        return "number " + repr(value) if not value.is_integer() else "number"
    return {str: "string", list: "array", dict: "object"}.get(type(value), type(value).__name__)


def _fits(value, want):
    if want is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if want is int:
        return (isinstance(value, int) and not isinstance(value, bool)) or \
            (isinstance(value, float) and value.is_integer())
    return isinstance(value, want)


def decode_config(config, fields):
    """Returns config (the dict configure() got) with defaults filled in.

    fields maps each known key to (type, default): type is str, bool, int,
    float, list or dict. Unknown keys and values of the wrong type raise one
    ConfigError listing every problem; null leaves the default.
    """
    problems = [(key, "unknown key") for key in sorted(config) if key not in fields]
    out = {}
    for key, (want, default) in fields.items():
        value = config.get(key)
        if value is None:
            out[key] = default
        elif not _fits(value, want):
            problems.append((key, "want %s, got %s" % (_WANT[want], _got(value))))
        else:
            out[key] = int(value) if want is int else value
    if problems:
        raise ConfigError(problems)
    return out


def _kind(value):
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    return {str: "a string", list: "an array"}.get(type(value), "an object")


def config_section(raw):
    """The provider's config section (JSON bytes) as a dict: {} when empty
    or null, a ConfigError when it is not a JSON object."""
    raw = raw.strip()
    if raw in (b"", b"null"):
        return {}
    try:
        value = json.loads(raw)
    except ValueError as e:
        raise ConfigError("", "not valid JSON: " + str(e)) from None
    if not isinstance(value, dict):
        raise ConfigError("", "want an object, got " + _kind(value))
    return value
