// Stage "restore": always, also after an error, Ctrl-C or a lost host. Each
// host's agent undoes its journal and exits; a host whose agent was lost gets
// a fresh agent that replays the journal left there, and when even that is
// impossible the host is reported not restored, with what the run changed and
// the command that undoes it. Then the provider removes what it made (local
// namespaces). A host is never reported restored unless it was.

import type { Change } from '../result.ts';
import { describeUndone, replayJournal, restoreHost } from '../provision/journal.ts';
import type { RunEventHandler } from './events.ts';
import type { HostProvider } from './provider.ts';
import { mapLimit } from '../hosts/forks.ts';
import { hostLabel, type HostSession, type Sessions } from './setup.ts';
import { RUN_TIMEOUTS } from './timeouts.ts';

export interface RestoreOutcome {
  /** "role: problem" for everything not put back; empty when every host is as it was */
  problems: string[];
  notes: string[];
}

interface HostRestored {
  problems: string[];
  /** the agent was lost and a fresh one replayed its journal */
  replayed?: boolean;
  /** no agent ever ran there: nothing was changed */
  untouched?: boolean;
  note?: string;
}

export async function restoreHosts(
  sessions: Sessions,
  provider: HostProvider,
  emit: RunEventHandler,
  forks?: number,
  /** the lab's connect and listen steps on a role: what a stopped run may still hold there */
  stepsOn: (role: string) => string[] = () => [],
): Promise<RestoreOutcome> {
  const outcome: RestoreOutcome = { problems: [], notes: [] };
  await mapLimit(
    [...sessions.values()],
    forks,
    async (s) => {
      await abortHeld(s, stepsOn(s.host.role));
      const r = await restoreSession(s, provider);
      await s.transport.close().catch(() => {});
      outcome.problems.push(...r.problems.map((p) => `${hostLabel(s.host)}: ${p}`));
      if (r.note) outcome.notes.push(`${hostLabel(s.host)}: ${r.note}`);
      emit({ kind: 'restored', role: hostLabel(s.host), ok: r.problems.length === 0, problems: r.problems, ...(r.replayed ? { replayed: true } : {}), ...(r.untouched ? { untouched: true } : {}) });
    },
    // Every host is restored, whatever another host's restore did.
    { settle: true },
  );
  outcome.problems.push(...(await provider.teardown()));
  return outcome;
}

/**
 * A run stopped early (Ctrl-C, its timeout, a failure) may still hold
 * connections. On a host that outlives the run (SSH) they are closed by RST
 * first, as a release step would: the agent's own end would kill its workers,
 * whose sockets then close with a FIN and leave TIME_WAIT in the port range
 * for 60 s, where the next run finds it. A local namespace goes with its
 * sockets. A step already released is refused by the agent, which is fine.
 */
async function abortHeld(s: HostSession, steps: string[]): Promise<void> {
  if (s.host.kind !== 'ssh' || !s.agent?.alive) return;
  for (const id of steps) {
    await s.agent.request('release', { id, abort: true, timeoutMs: ABORT_HELD_MS }, { timeoutMs: ABORT_HELD_MS + RUN_TIMEOUTS.requestMs }).catch(() => {});
  }
}

/** How long a stopped run's held connections may take to close by RST, per step. */
const ABORT_HELD_MS = 15_000;

/** Undo one host's journal, with its own agent or, when that was lost, a fresh one. */
async function restoreSession(s: HostSession, provider: HostProvider): Promise<HostRestored> {
  // No agent, or one lost before provisioning began: nothing was changed on this host.
  if (!s.agent) return { problems: [], untouched: true };
  if (!s.agent.alive && !s.journaled) return { problems: [] };
  if (!s.agent.alive) return replayLostJournal(s, provider);
  const problems: string[] = [];
  try {
    problems.push(...(await restoreHost(s.agent, RUN_TIMEOUTS.restoreMs)));
  } catch (e) {
    problems.push((e as Error).message);
  }
  await s.agent.shutdown();
  return { problems };
}

/**
 * The host's agent is gone (killed, or its connection dropped): its journal may
 * still be on the host. A fresh agent over a fresh connection replays it (an
 * agent that only lost its connection undoes its own journal, and the replay
 * then finds nothing left). If the host cannot be reached, say what may remain.
 */
async function replayLostJournal(s: HostSession, provider: HostProvider): Promise<HostRestored> {
  // Journals and transports are per host (a role may have several).
  const role = s.host.name;
  const journal = provider.journalPath(role);
  const transport = provider.transport(role);
  try {
    const r = await replayJournal(transport, journal, { timeoutMs: RUN_TIMEOUTS.replayMs, lockWaitMs: RUN_TIMEOUTS.replayLockWaitMs });
    const undone = r.undone.length ? `: ${r.undone.map(describeUndone).join('; ')}` : ': nothing was left to undo';
    return { problems: r.problems, replayed: true, note: `the agent was lost; its journal was replayed by a fresh agent${undone}` };
  } catch (e) {
    const message = (e as Error).message;
    // A HostError names its host already; the problem line adds the role itself.
    const cause = message.startsWith(`${role}: `) ? message.slice(role.length + 2) : message;
    const changed = describeChanges(s.changes);
    return {
      problems: [
        `the agent was lost, and a fresh agent could not replay its journal ${journal} (${cause}): ` +
          `${changed ? `changed by this run and not known to be undone: ${changed}` : 'the journal may hold changes this run was making'}; ` +
          `undo with: ${provider.restoreCommand}`,
      ],
    };
  } finally {
    await transport.close().catch(() => {});
  }
}

/** What a host's journal undoes, in words: sysctls, addresses and nftables tables (an rlimit dies with the agent). */
function describeChanges(changes: Change[]): string {
  return changes
    .flatMap((c) => {
      if (c.kind === 'sysctl') return [`sysctl ${c.name} is ${c.new} (was ${c.old})`];
      if (c.kind === 'address') return [`address ${c.address} on ${c.device}`];
      if (c.kind === 'nftables') return [`nftables table ${c.table}`];
      return [];
    })
    .join('; ');
}
