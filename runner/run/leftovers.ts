// `lab restore`: undo what a run whose controller died left behind. Without an
// inventory, the local networks (namespaces, links) of dead runs; with one,
// each host's journal, replayed by a fresh agent.

import { mapLimit } from '../hosts/forks.ts';
import { HOSTS_UP_PURPOSE } from '../hosts/hostsup.ts';
import { liveLocalNamespaces, restoreLocalNetworks } from '../hosts/netns.ts';
import type { HostKeyOptions } from '../hosts/inventory.ts';
import { describeUndone, replayJournal } from '../provision/journal.ts';
import { orphanLocalJournals, replayLocalJournal } from './local-journals.ts';
import type { ProviderOptions } from './provider.ts';
import { RUN_TIMEOUTS } from './timeouts.ts';

export interface LeftoversRestored {
  /** what was undone, one line each, for the user */
  lines: string[];
  problems: string[];
}

export async function restoreLeftovers(options: ProviderOptions): Promise<LeftoversRestored> {
  if (options.inventory) {
    return restoreInventory(options.inventory, options);
  }
  // `lab hosts up` networks outlive the command that made them: `lab hosts down` removes those.
  // A lost agent's journal is replayed before its namespace goes (global sysctls outlive it).
  const replayed: string[] = [];
  const replay = async (ns: string) => {
    const r = await replayLocalJournal(ns);
    replayed.push(...r.lines.map((l) => `put back ${l}`));
    return r.problems;
  };
  const r = await restoreLocalNetworks({ keep: [HOSTS_UP_PURPOSE], beforeDelete: replay });
  // Journals whose namespace is already gone (deleted under its agent): their global changes.
  const live = await liveLocalNamespaces();
  for (const ns of await orphanLocalJournals((n) => live.has(n))) {
    r.problems.push(...(await replay(ns)));
    replayed.push(`removed the journal of ${ns}`);
  }
  const lines = [...replayed, ...r.undone.map((ns) => `removed namespace ${ns}`)];
  if (!lines.length) lines.push('nothing to restore: no local run was left behind');
  return { lines, problems: r.problems };
}

/** On every host of the inventory, `forks` at a time, undo a journal left by a dead run. */
async function restoreInventory(
  file: string,
  options: HostKeyOptions & { forks?: number },
): Promise<LeftoversRestored> {
  // Loaded only with -i: ssh2 is not needed for local hosts.
  const { inventoryTransport, readInventory } = await import('../hosts/inventory.ts');
  const { inventoryJournalPath } = await import('./inventory-provider.ts');
  const inventory = await readInventory(file);
  const lines: string[] = [];
  const problems: string[] = [];
  await mapLimit(
    Object.entries(inventory.hosts),
    options.forks,
    async ([role, host]) => {
      const transport = inventoryTransport(host, role, options);
      try {
        // A held lock means a live run: no waiting, it is reported.
        const r = await replayJournal(transport, inventoryJournalPath(host), { timeoutMs: RUN_TIMEOUTS.replayMs, lockWaitMs: 0 });
        if (!r.undone.length && !r.problems.length) lines.push(`${role}: nothing to restore`);
        for (const u of r.undone) lines.push(`${role}: restored ${describeUndone(u)}`);
        problems.push(...r.problems.map((p) => `${role}: ${p}`));
      } catch (e) {
        // A HostError already names its host ("client-1: Cannot read identity …").
        const message = (e as Error).message;
        problems.push(message.startsWith(`${role}: `) ? message : `${role}: ${message}`);
      } finally {
        await transport.close().catch(() => {});
      }
    },
    { settle: true },
  );
  return { lines: lines.sort(), problems };
}
