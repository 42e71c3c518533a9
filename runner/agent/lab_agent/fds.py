"""A worker's fd budget: the one rule facts reports and the fd-limit model
predicts workers from (runner/models/connections.ts). Its own module, so
facts reads it without loading workers.py and what that imports."""

# The fds a worker holds before its first socket: stdin and stdout
# (/dev/null), stderr (the agent's), the read end of its control pipe and the
# write end of its report pipe (child_setup closes every other fd, and the
# connect loop opens none: select.poll() holds no fd). So a worker can hold
# nofile - WORKER_FDS sockets before socket() fails with EMFILE.
WORKER_FDS = 5

# A worker the agent fills on its own (a connect without "processes", every
# accept worker) stops this many fds short of its limit: the WORKER_FDS above
# plus room for what a Python build may open behind our back.
FD_MARGIN = 16


def sockets_per_worker(nofile_soft):
    """How many sockets the agent puts in one worker under this soft nofile
    limit. The one rule: facts reports it, and the fd-limit model predicts
    workers from that fact (runner/models/connections.ts)."""
    return max(1, nofile_soft - FD_MARGIN)
