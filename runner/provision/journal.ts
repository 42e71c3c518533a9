// A host's journal: where it lives, and the two ways it is undone — by the
// agent that wrote it (at restore), or replayed by a fresh agent when the one
// that wrote it is gone (a lost agent mid-run, or `lab restore -i`).

import { AgentClient } from '../agent/client.ts';
import type { JournalEntry } from '../agent/protocol.ts';
import { AgentError } from '../errors.ts';
import type { Transport } from '../hosts/transport.ts';

/** The journal (and, beside it, the lock) on a host; `key` names the host among those sharing one /run. */
export function hostJournalPath(key: string): string {
  return `/run/lab/host/${key}.journal`;
}

/** One undone journal entry, as the agent reports it. */
export type UndoneEntry = JournalEntry;

export interface JournalUndo {
  undone: UndoneEntry[];
  /** what could not be put back (empty when everything was) */
  problems: string[];
}

/** Undo the journal of the agent that wrote it; returns the problems (empty when everything was put back). */
export async function restoreHost(agent: AgentClient, timeoutMs: number): Promise<string[]> {
  const r = await agent.request('restore', {}, { timeoutMs });
  return r.problems ?? [];
}

export interface ReplayOptions {
  /** bound for the replay request itself */
  timeoutMs: number;
  /**
   * How long to wait while another process holds the journal's lock: the agent
   * that wrote it (or its workers) may still be on its way out.
   */
  lockWaitMs: number;
}

/**
 * Start a fresh agent over `transport` and have it undo `journal` (no journal:
 * nothing to undo). The transport is connected here and left open; the caller
 * closes it. Throws when the host cannot be reached or the agent cannot start.
 */
export async function replayJournal(transport: Transport, journal: string, options: ReplayOptions): Promise<JournalUndo> {
  await transport.connect();
  const agent = await AgentClient.start(transport);
  try {
    const deadline = Date.now() + options.lockWaitMs;
    for (;;) {
      try {
        const r = await agent.request(
          'restoreJournal',
          { journal },
          { timeoutMs: options.timeoutMs },
        );
        return { undone: r.undone, problems: r.problems ?? [] };
      } catch (e) {
        if (!(e instanceof AgentError && e.code === 'LOCKED') || Date.now() >= deadline) throw e;
        await new Promise((r) => setTimeout(r, 200));
      }
    }
  } finally {
    await agent.shutdown().catch(() => {});
  }
}

/** One line per undone entry, for a user: "sysctl net.ipv4.ip_local_port_range = 32768 60999". */
export function describeUndone(u: UndoneEntry): string {
  if (u.kind === 'sysctl') return `sysctl ${u.name} = ${u.old}`;
  if (u.kind === 'nft-table') return `removed nftables table ${u.family} ${u.table}`;
  return `removed address ${u.address} from ${u.device}`;
}
