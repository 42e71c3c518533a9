// `lab hosts up` / `lab hosts down`: local namespace hosts each running a real
// sshd, and an inventory for them (see hosts/hostsup.ts), in words for the CLI.

import { readdir, readFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { HostError } from '../errors.ts';
import { hostsDown, hostsUp, hostsUpIds, HOSTS_UP_NET } from '../hosts/hostsup.ts';
import { runLocal } from '../hosts/local.ts';
import { hostJournalPath } from '../provision/journal.ts';

export async function hostsUpCommand(roles: string[], out: string, ansibleOut?: string): Promise<string> {
  const r = await hostsUp({ roles, out, ansibleOut });
  const hosts = Object.entries(r.groups).map(([g, names]) => (names.length > 1 || names[0] !== g ? `${g} (${names.join(', ')})` : g));
  return `hosts up: ${hosts.join(', ')} running sshd; inventory written to ${r.inventoryPath}, Ansible inventory to ${r.ansiblePath}`;
}

export async function hostsDownCommand(): Promise<{ line: string; problems: string[] }> {
  if (!(await hostsUpIds()).size) return { line: 'hosts down: no hosts were up', problems: [] };
  // A run on these hosts holds their journal locks: pulling the hosts from under it would lose its restore.
  const busy = await hostsInUse();
  if (busy.length) {
    throw new HostError('HOSTS_IN_USE', `The hosts are in use: ${busy.join('; ')}. Let that run end (or stop it with Ctrl-C) first`);
  }
  const problems = await hostsDown();
  return { line: problems.length ? 'hosts down: with problems' : 'hosts down: done', problems };
}

/**
 * The `lab hosts up` hosts (198.HOSTS_UP_NET.0.0/16) whose journal lock a live run holds,
 * as "198.19.0.2: held by lab run slow by pid … since …". flock(1) asks the
 * kernel, so a lock file left by a dead run does not count.
 */
async function hostsInUse(): Promise<string[]> {
  const dir = dirname(hostJournalPath('-'));
  const locks = (await readdir(dir).catch(() => [] as string[])).filter((n) => n.startsWith(`198.${HOSTS_UP_NET}.`) && n.endsWith('.journal.lock'));
  const busy: string[] = [];
  for (const name of locks) {
    const r = await runLocal(['flock', '--nonblock', '--conflict-exit-code', '75', `${dir}/${name}`, 'true']);
    if (r.code !== 75) continue;
    const holder = (await readFile(`${dir}/${name}`, 'utf8').catch(() => '')).trim();
    busy.push(`${name.replace(/\.journal\.lock$/, '')}: held by ${holder || 'a run'}`);
  }
  return busy;
}
