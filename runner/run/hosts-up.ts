// `lab hosts up` / `lab hosts down`: local namespace hosts each running a real
// sshd, and an inventory for them (see hosts/hostsup.ts), in words for the CLI.

import { hostsDown, hostsUp } from '../hosts/hostsup.ts';

export async function hostsUpCommand(roles: string[], out: string): Promise<string> {
  const r = await hostsUp({ roles, out });
  return `hosts up: ${roles.join(', ')} running sshd; inventory written to ${r.inventoryPath}`;
}

export async function hostsDownCommand(): Promise<{ line: string; problems: string[] }> {
  const problems = await hostsDown();
  return { line: problems.length ? 'hosts down: with problems' : 'hosts down: done', problems };
}
