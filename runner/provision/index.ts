// Provisioning: put one host in the state its lab role declares (sysctls,
// IP aliases, the nofile limit), through the agent, which journals each change
// on the host before making it, so it can always be undone — by the agent at
// restore, by the agent itself when the controller is lost, or by `lab restore`.

import type { AgentClient } from '../agent/client.ts';
import type { PlannedHost } from '../lab/plan.ts';
import type { Change } from '../result.ts';

/** The journal (and, beside it, the lock) on a host; `key` names the host among those sharing one /run. */
export function hostJournalPath(key: string): string {
  return `/run/lab/host/${key}.journal`;
}

export async function provisionHost(
  agent: AgentClient,
  host: PlannedHost,
  journal: string,
  holder: string,
  /** each change is appended as soon as it is made */
  changes: Change[],
): Promise<void> {
  await agent.request('begin', { journal, holder });
  for (const s of host.sysctls) {
    const r = await agent.request('sysctlSet', { name: s.name, value: s.value });
    s.old = r.old;
    if (r.old !== r.new) changes.push({ kind: 'sysctl', name: s.name, old: r.old, new: r.new, scope: s.scope });
  }
  for (const address of host.aliases) {
    await agent.request('addrAdd', { address, prefix: 32, device: host.device! });
    changes.push({ kind: 'address', address, device: host.device! });
  }
  if (host.nofile !== undefined) {
    const r = await agent.request('nofile', { soft: host.nofile });
    changes.push({ kind: 'rlimit', name: 'nofile', old: r.old, new: r.new });
  }
}

/** Undo the host's journal; returns the problems (empty when everything was put back). */
export async function restoreHost(agent: AgentClient): Promise<string[]> {
  const r = await agent.request('restore', {});
  return r.problems ?? [];
}

/** Read current sysctl values without changing anything, for `lab plan`. */
export function sysctlReadCommand(names: string[]): string[] {
  const paths = names.map((n) => `/proc/sys/${n.replaceAll('.', '/')}`);
  // One line per sysctl, "-" when the kernel lacks it.
  return ['sh', '-c', 'for f in "$@"; do if [ -r "$f" ]; then tr -s "\\t " "  " < "$f"; else echo -; fi; done', 'sh', ...paths];
}
