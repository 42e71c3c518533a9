// Host journals a lost agent left on a local host (/run/lab/host/<namespace>.journal
// and its .lock). The namespace takes most of what they record with it, but
// not global changes (fs.* sysctls): those must be put back, so a journal is
// replayed — by a fresh agent while its namespace exists, before it is
// deleted; here, for its global entries, once the namespace is gone.

import { existsSync } from 'node:fs';
import { readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { runLocal } from '../hosts/local.ts';
import { NAMESPACE_PREFIX, NetnsTransport } from '../hosts/netns.ts';
import { sysctlScope } from '../lab/plan.ts';
import { describeUndone, hostJournalPath, replayJournal } from '../provision/journal.ts';
import { RUN_TIMEOUTS } from './timeouts.ts';

const HOST_JOURNAL_DIR = hostJournalPath('x').replace(/\/[^/]*$/, '');
/** A killed agent lets go of its lock when the kernel has reaped it: moments, not seconds. */
const LOCK_WAIT_MS = 5_000;

export interface Replayed {
  /** what was put back, one line each */
  lines: string[];
  problems: string[];
}

/**
 * Undo what the journal of the host in `namespace` still holds, and remove it
 * and its lock. Nothing to do when there is no journal.
 */
export async function replayLocalJournal(namespace: string): Promise<Replayed> {
  const journal = hostJournalPath(namespace);
  if (!existsSync(journal) && !existsSync(`${journal}.lock`)) return { lines: [], problems: [] };
  if (existsSync(`/run/netns/${namespace}`)) return replayInNamespace(namespace, journal);
  return replayGlobalEntries(journal);
}

/** A fresh agent in the namespace undoes every entry where it was made: namespace sysctls there, global ones globally. */
async function replayInNamespace(namespace: string, journal: string): Promise<Replayed> {
  const transport = new NetnsTransport(namespace, namespace);
  try {
    const r = await replayJournal(transport, journal, { timeoutMs: RUN_TIMEOUTS.replayMs, lockWaitMs: LOCK_WAIT_MS });
    return {
      lines: r.undone.map((u) => `${namespace}: ${describeUndone(u)} (from ${journal})`),
      problems: r.problems.map((p) => `${namespace}: ${p}`),
    };
  } catch (e) {
    // Already replayed: another `lab restore` undid the same dead run at the same moment.
    if (!existsSync(journal)) return { lines: [], problems: [] };
    return { lines: [], problems: [`${namespace}: Cannot replay ${journal}: ${(e as Error).message}`] };
  } finally {
    await transport.close().catch(() => {});
  }
}

/** The namespace is gone: only global sysctls are left to put back, newest first. */
async function replayGlobalEntries(journal: string): Promise<Replayed> {
  const out: Replayed = { lines: [], problems: [] };
  const lock = `${journal}.lock`;
  if (existsSync(lock)) {
    // An agent still running (in a namespace deleted under it) holds it and will undo its own.
    const held = await runLocal(['flock', '--nonblock', '--conflict-exit-code', '75', lock, 'true']);
    if (held.code === 75) {
      out.problems.push(`${journal} is held by a running agent (${(await readFile(lock, 'utf8').catch(() => '')).trim() || 'unnamed'}): left to it`);
      return out;
    }
  }
  const text = await readFile(journal, 'utf8').catch(() => '');
  const entries = text.split('\n').filter((l) => l.trim()).flatMap((l) => {
    try {
      return [JSON.parse(l) as { kind?: string; name?: unknown; old?: unknown }];
    } catch {
      return []; // a torn last line: the agent died before that change
    }
  });
  for (const e of entries.reverse()) {
    if (e.kind !== 'sysctl' || typeof e.name !== 'string' || typeof e.old !== 'string') continue;
    if (sysctlScope(e.name) !== 'global') continue;
    // A journal is a file on disk: its names reach only files under /proc/sys.
    if (!/^[a-z0-9_-]+(\.[a-z0-9_-]+)+$/.test(e.name)) {
      out.problems.push(`${journal}: ignored a sysctl with a bad name ${JSON.stringify(e.name)}`);
      continue;
    }
    try {
      await writeFile(`/proc/sys/${e.name.replaceAll('.', '/')}`, e.old);
      out.lines.push(`sysctl ${e.name} = ${e.old} (from ${journal})`);
    } catch (err) {
      out.problems.push(`Cannot put back sysctl ${e.name} = ${e.old} (from ${journal}): ${(err as Error).message}`);
    }
  }
  if (!out.problems.length) {
    await rm(journal, { force: true });
    await rm(lock, { force: true });
  }
  return out;
}

/** Journals of local hosts whose namespace is gone and whose run is not `live`. */
export async function orphanLocalJournals(live: (namespace: string) => boolean): Promise<string[]> {
  const names = await readdir(HOST_JOURNAL_DIR).catch(() => [] as string[]);
  const namespaces = new Set(
    names
      .filter((n) => n.startsWith(NAMESPACE_PREFIX) && (n.endsWith('.journal') || n.endsWith('.journal.lock')))
      .map((n) => n.replace(/\.journal(\.lock)?$/, '')),
  );
  return [...namespaces].filter((ns) => !existsSync(`/run/netns/${ns}`) && !live(ns));
}
