"""The errors an op may end with: a code the controller can act on, and a message."""

import errno


class OpError(Exception):
    """A failed request: code is BAD_REQUEST, LOCKED, INTERNAL or an errno name."""

    def __init__(self, code, message):
        super().__init__(message)
        self.code = code
        self.message = message


class Terminate(BaseException):
    """Raised in the main thread by SIGTERM/SIGINT/SIGHUP."""


def errname(n):
    return errno.errorcode.get(n, "E%d" % n) if n else "EUNKNOWN"


def sys_error(what, e):
    """An OSError as an OpError whose code is the errno name and whose message says which call failed."""
    return OpError(errname(e.errno), "%s: %s" % (what, e.strerror or e))


def bad(message):
    return OpError("BAD_REQUEST", message)
