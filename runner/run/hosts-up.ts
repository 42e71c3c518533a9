// `lab hosts up` / `lab hosts down`: local namespace hosts each running a real
// sshd, and an inventory for them (see hosts/hostsup.ts), in words for the CLI.

import { hostsDown, hostsUp, hostsUpIds } from '../hosts/hostsup.ts';

export async function hostsUpCommand(roles: string[], out: string, ansibleOut?: string): Promise<string> {
  const r = await hostsUp({ roles, out, ansibleOut });
  const hosts = Object.entries(r.groups).map(([g, names]) => (names.length > 1 || names[0] !== g ? `${g} (${names.join(', ')})` : g));
  return `hosts up: ${hosts.join(', ')} running sshd; inventory written to ${r.inventoryPath}, Ansible inventory to ${r.ansiblePath}`;
}

export async function hostsDownCommand(): Promise<{ line: string; problems: string[] }> {
  if (!(await hostsUpIds()).size) return { line: 'hosts down: no hosts were up', problems: [] };
  const problems = await hostsDown();
  return { line: problems.length ? 'hosts down: with problems' : 'hosts down: done', problems };
}
