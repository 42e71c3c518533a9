// What bounds a run before restore: one abort for Ctrl-C, the lab's own time
// bound and a host lost mid-run. Work is raced against it (`guard`); setup
// work (a namespace being made, an agent starting) is also remembered, so
// restore can wait for it and nothing appears on a host after teardown.

import { HostError, Interrupted } from '../errors.ts';
import { formatDuration } from '../files/durations.ts';

export class RunBound {
  private readonly controller = new AbortController();
  private readonly aborted: Promise<never>;
  private readonly setup: Promise<unknown>[] = [];
  private readonly timer: ReturnType<typeof setTimeout>;
  private readonly onOuterAbort = () => this.controller.abort(new Interrupted('Interrupted'));
  private closed = false;

  constructor(
    timeoutMs: number,
    private readonly outer?: AbortSignal,
  ) {
    outer?.addEventListener('abort', this.onOuterAbort, { once: true });
    if (outer?.aborted) this.onOuterAbort();
    this.timer = setTimeout(
      () => this.controller.abort(new Interrupted(`Lab timeout of ${formatDuration(timeoutMs)} reached (the lab's "timeout" bounds the run from setup to its last step)`, 'TIMEOUT')),
      timeoutMs,
    );
    this.aborted = new Promise<never>((_, reject) => {
      this.controller.signal.addEventListener('abort', () => reject(this.controller.signal.reason), { once: true });
    });
    this.aborted.catch(() => {});
  }

  get signal(): AbortSignal {
    return this.controller.signal;
  }

  /** Why the run was aborted (Interrupted or the lost host's HostError), if it was. */
  get reason(): unknown {
    return this.controller.signal.reason;
  }

  /** `work`, or the abort's reason if that comes first. */
  guard<T>(work: Promise<T>): Promise<T> {
    if (this.signal.aborted) return Promise.reject(this.reason);
    return Promise.race([work, this.aborted]);
  }

  /** Guard setup work; each piece is also remembered, to be waited for before restore. */
  guardSetup<T>(...work: Promise<T>[]): Promise<T[]> {
    // Each host's own promise: Promise.all settles at the first failure while other hosts still work.
    for (const p of work) this.setup.push(p.catch(() => {}));
    return this.guard(Promise.all(work));
  }

  /** A host was lost (its agent's channel closed): stop the run now, not at its next request. Ignored once the run is restoring. */
  hostLost(error: HostError): void {
    if (!this.closed) this.controller.abort(error);
  }

  /** The run is over (done or failed): no more aborts; then wait, boundedly, for setup still in flight. */
  async close(setupSettleMs: number): Promise<void> {
    this.closed = true;
    clearTimeout(this.timer);
    this.outer?.removeEventListener('abort', this.onOuterAbort);
    await Promise.race([Promise.all(this.setup), new Promise((r) => setTimeout(r, setupSettleMs).unref())]);
  }

  /** Resolves after `ms`, or at once when the run is aborted. */
  sleep(ms: number): Promise<void> {
    return this.guard(
      new Promise<void>((resolve) => {
        const t = setTimeout(resolve, ms);
        this.signal.addEventListener('abort', () => clearTimeout(t), { once: true });
      }),
    );
  }
}
