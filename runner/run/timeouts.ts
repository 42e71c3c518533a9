// Every bound a run puts on waiting, in one place. The agent bounds its own
// work; these are backstops, so a silent host fails the run instead of hanging it.
// The lab's own time bound (`timeout:` in the lab file) covers the whole run
// before restore; restore has only these.

export const RUN_TIMEOUTS = {
  /** an agent request that does a few milliseconds of work: facts, listen, snapshot, release */
  requestMs: 30_000,
  /** a connect step runs for its own timeout; this much more for its workers to report */
  connectSlackMs: 30_000,
  /** after an abort, how long setup still in flight (a namespace, an agent start) may take to settle */
  setupSettleMs: 30_000,
  /** undoing a host's journal with the agent that wrote it */
  restoreMs: 30_000,
  /** replaying a lost agent's journal with a fresh agent */
  replayMs: 60_000,
  /** how long a replay waits for the lost agent's lock (its workers may still be dying) */
  replayLockWaitMs: 10_000,
} as const;

/** How often a connect step's progress becomes a point of its series (ms). */
export const PROGRESS_SAMPLE_MS = 100;

/**
 * How long a release may take: closing a socket costs the kernel tens of
 * microseconds here (an RST through the veth, the peer's reset, freeing the
 * socket, its inode, dentry and file), and a million took over a minute on a
 * busy 2-core machine. A backstop that grows with what the step holds.
 */
export function releaseTimeoutMs(held: number): number {
  return RUN_TIMEOUTS.requestMs + Math.ceil(held / 5000) * 1000;
}
