"""What a snapshot samples. Each probe is a module with NAME (its key in the
snapshot reply) and sample() (a JSON-able value, empty when the source is
unreadable); parsing lives in a pure parse(text) beside it, so it can be unit
tested on captured text. A new probe is one module here plus one line below."""

from . import conntrack, listeners, meminfo, slabinfo, sockstat

PROBES = (
    meminfo,
    slabinfo,
    sockstat,
    listeners,
    conntrack,
)


def sample_all():
    """{probe NAME: its sample}, in registration order."""
    return dict((p.NAME, p.sample()) for p in PROBES)
