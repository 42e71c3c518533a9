"""lab probe agent: one per host for a whole run, JSON lines on stdin/stdout.

The protocol is docs/agent-protocol.md; its TypeScript side is
runner/agent/protocol.ts. Stdlib only, Python 3.7+. The controller ships this
package as one zipapp (runner/agent/zipapp.ts).

Layout: the main thread reads stdin and never blocks on a long operation
(main, dispatch); long operations run in threads; connections live in forked
workers (workers, connect, listen) because one process's nofile limit may be
small; provisioning changes are journaled before they are made (journal,
changes); what the host is and holds is read by facts and by the probes of
snapshot (probes/).
"""

# Sent in the ready line and in hello; runner/agent/protocol.ts has the same number.
VERSION = 1
