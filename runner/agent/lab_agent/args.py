"""Checking a request's arguments: every op reads its args through these, so a
wrong type or a missing argument is a BAD_REQUEST naming the argument."""

import json
import socket

from .errors import bad

_REQUIRED = object()

_CHECKS = {
    int: lambda v: isinstance(v, int) and not isinstance(v, bool),
    float: lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    bool: lambda v: isinstance(v, bool),
    str: lambda v: isinstance(v, str),
    list: lambda v: isinstance(v, list),
    dict: lambda v: isinstance(v, dict),
}


def arg(args, name, kind, default=_REQUIRED, minimum=None):
    """args[name] checked to be of kind (int, float, bool, str, list or dict), or default when absent or null."""
    if name not in args or args[name] is None:
        if default is _REQUIRED:
            raise bad('missing argument "%s"' % name)
        return default
    v = args[name]
    if not _CHECKS[kind](v):
        raise bad('argument "%s" must be %s, got %s' % (name, kind.__name__, json.dumps(v)))
    if minimum is not None and v < minimum:
        raise bad('argument "%s" must be >= %s, got %s' % (name, minimum, v))
    return v


def step_id(args):
    """The id naming a listen or connect step: a non-empty string or an integer, as a string."""
    v = args.get("id")
    if isinstance(v, bool) or not isinstance(v, (str, int)) or v == "":
        raise bad('argument "id" (the step id) must be a non-empty string or an integer')
    return str(v)


def ipv4(value, name):
    """A dotted-quad IPv4 address, strictly (inet_aton would also take "1", "1.2" or "1.2.3.4 x")."""
    try:
        socket.inet_pton(socket.AF_INET, value)
    except (OSError, TypeError):
        raise bad('argument "%s" must be a dotted IPv4 address, got %s' % (name, json.dumps(value)))
    return value
