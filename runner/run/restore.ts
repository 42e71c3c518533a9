// Stage "restore": always, also after an error, Ctrl-C or a lost host. Each
// host's agent undoes its journal and exits; then the provider removes what it
// made (local namespaces). Returns what could not be put back.

import { restoreHost } from '../provision/journal.ts';
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

export async function restoreHosts(sessions: Sessions, provider: HostProvider, emit: RunEventHandler, forks?: number): Promise<RestoreOutcome> {
  const outcome: RestoreOutcome = { problems: [], notes: [] };
  await mapLimit(
    [...sessions.values()],
    forks,
    async (s) => {
      const problems = await restoreSession(s, outcome.notes);
      await s.transport.close().catch(() => {});
      outcome.problems.push(...problems.map((p) => `${hostLabel(s.host)}: ${p}`));
      emit({ kind: 'restored', role: hostLabel(s.host), ok: problems.length === 0, problems });
    },
    // Every host is restored, whatever another host's restore did.
    { settle: true },
  );
  outcome.problems.push(...(await provider.teardown()));
  return outcome;
}

/** Undo one host's journal; returns its problems. */
async function restoreSession(s: HostSession, notes: string[]): Promise<string[]> {
  // No agent: nothing was changed on this host.
  if (!s.agent) return [];
  if (!s.agent.alive) {
    notes.push(
      s.transport.kind === 'netns'
        ? `${hostLabel(s.host)}: the agent was lost; its journal was replayed by a fresh agent before its namespace was removed`
        : `${hostLabel(s.host)}: the agent was lost; it undoes its own journal when its controller goes away. Check with \`lab restore\``,
    );
    return [];
  }
  const problems: string[] = [];
  try {
    problems.push(...(await restoreHost(s.agent, RUN_TIMEOUTS.restoreMs)));
  } catch (e) {
    problems.push((e as Error).message);
  }
  await s.agent.shutdown();
  return problems;
}
