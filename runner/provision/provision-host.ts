// Provisioning: put one host in the state its lab role declares (sysctls,
// IP aliases, the nofile limit, connection tracking), through the agent, which journals each change
// on the host before making it, so it can always be undone (see journal.ts).

import type { AgentClient } from '../agent/client.ts';
import { AgentError } from '../errors.ts';
import type { PlannedHost } from '../lab/plan.ts';
import type { Change } from '../result.ts';

export async function provisionHost(
  agent: AgentClient,
  host: PlannedHost,
  journal: string,
  holder: string,
  /** each change is appended as soon as it is made */
  changes: Change[],
  /** where a sysctl is set in the lab file ("labs/x.yaml:5:7"), for a value the kernel refuses */
  sysctlAt?: (name: string) => string,
): Promise<void> {
  await agent.request('begin', { journal, holder });
  // Tracking first: its rule loads nf_conntrack, whose sysctls (nf_conntrack_max) a lab may then set.
  if (host.conntrack) {
    const r = await agent.request('conntrack', {});
    changes.push({ kind: 'nftables', table: `${r.family} ${r.table}` });
  }
  for (const s of host.sysctls) {
    const r = await agent.request('sysctlSet', { name: s.name, value: s.value }).catch((e: unknown) => {
      // The kernel's refusal of the lab's value: say where the lab sets it.
      if (e instanceof AgentError && sysctlAt) throw new AgentError(e.code, `${sysctlAt(s.name)}: sysctl ${s.name} = ${JSON.stringify(s.value)} refused: ${e.message.replace(/^.*?: agent: /, '')}`, e.host);
      throw e;
    });
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
