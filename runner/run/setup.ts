// The first three stages of a run, each a function a reader can name:
// startHosts (make what the hosts need), startAgents (one agent per host, and
// its facts), provisionHosts (the lab's sysctls, addresses and limits).

import { existsSync } from 'node:fs';
import { AgentClient } from '../agent/client.ts';
import { HostError, LabError, type LabProblem } from '../errors.ts';
import { didYouMean } from '../files/names.ts';
import { sysctlProblem } from '../lab/validate.ts';
import type { Transport } from '../hosts/transport.ts';
import type { Plan, PlannedHost } from '../lab/plan.ts';
import { provisionHost } from '../provision/provision-host.ts';
import { capacityCheck, capacityRefusal } from '../models/scale.ts';
import type { CapacityRecord, Change, HostFacts } from '../result.ts';
import type { RunBound } from './bound.ts';
import type { RunEventHandler } from './events.ts';
import { mapLimit } from '../hosts/forks.ts';
import type { HostProvider } from './provider.ts';
import { RUN_TIMEOUTS } from './timeouts.ts';

/** One host of a run, as far as it got. */
export interface HostSession {
  host: PlannedHost;
  transport: Transport;
  agent?: AgentClient;
  facts?: HostFacts;
  /** what provisioning changed, appended as each change is made */
  changes: Change[];
  /** provisioning began: from here on the host may hold changes and a journal */
  journaled?: boolean;
}

/** By host name (a role's name when the role has one local host). */
export type Sessions = Map<string, HostSession>;

/** A host as messages name it: its role, and its own name when that differs. */
export function hostLabel(h: { role: string; name: string }): string {
  return h.name === h.role ? h.role : `${h.role} ${h.name}`;
}

/** Each host's work, `forks` at a time, guarded like all setup; after an abort no further host starts. */
function perHost<T>(bound: RunBound, items: T[], forks: number | undefined, fn: (item: T) => Promise<void>): Promise<unknown> {
  const failed: HostError[] = [];
  return bound.guardSetup(
    mapLimit(items, forks, (item) => {
      if (bound.reason !== undefined) return Promise.reject(bound.reason);
      const p = fn(item);
      p.catch((e: unknown) => e instanceof HostError && failed.push(e));
      // Each host's own promise too: restore waits for a host still starting.
      void bound.guardSetup(p).catch(() => {});
      return p;
    }).catch((e: unknown) => {
      // Hosts that failed together are all named (three unknown host keys, not one run per key),
      // each with its own code; the last one's is the run's, said after it as usual.
      if (failed.length > 1 && failed.includes(e as HostError)) {
        const last = failed[failed.length - 1]!;
        throw new HostError(last.code, failed.map((f) => (f === last ? f.message : `${f.message} [${f.code}]`)).join('\n'));
      }
      throw e;
    }),
  );
}

/** Stage "hosts": create what the hosts need (local namespaces; nothing for an inventory). */
export async function startHosts(provider: HostProvider, bound: RunBound): Promise<void> {
  await bound.guardSetup(provider.prepare());
}

/** Stage "agents": connect to every host, start its agent, read its facts. */
export async function startAgents(
  plan: Plan,
  provider: HostProvider,
  sessions: Sessions,
  bound: RunBound,
  emit: RunEventHandler,
  forks?: number,
): Promise<void> {
  await perHost(bound, plan.hosts, forks, async (host) => {
      const transport = provider.transport(host.name);
      const session: HostSession = { host, transport, changes: [] };
      sessions.set(host.name, session);
      await transport.connect();
      session.agent = await AgentClient.start(transport);
      session.agent.exited.then((how) => {
        const why = how.signal ? `signal ${how.signal}` : `exit code ${how.code}`;
        bound.hostLost(new HostError('HOST_LOST', `Lost the agent on ${transport.target} (${why}): the host or its connection went away`, host.name));
      });
      session.facts = await readFacts(session.agent);
      emit({ kind: 'host-up', role: hostLabel(host), target: transport.target, address: host.address, kernel: session.facts.kernel });
  });
}

/** Stage "provision": put every host in its declared state, then read its facts again. */
export async function provisionHosts(
  plan: Plan,
  provider: HostProvider,
  sessions: Sessions,
  holder: string,
  bound: RunBound,
  emit: RunEventHandler,
  forks?: number,
): Promise<void> {
  await perHost(bound, [...sessions.values()], forks, async (s) => {
      s.journaled = true;
      const at = (name: string) => {
        const p = sysctlProblem(plan.lab, s.host.role, name, '');
        return `${p.file}:${p.line}:${p.col}`;
      };
      await provisionHost(s.agent!, s.host, provider.journalPath(s.host.name), holder, s.changes, at);
      // Predictions use the facts as provisioned: the range the lab set, not the default.
      s.facts = await readFacts(s.agent!);
      emit({ kind: 'provisioned', role: hostLabel(s.host), changes: s.changes.length });
  });
}

function readFacts(agent: AgentClient): Promise<HostFacts> {
  return agent.request('facts', {}, { timeoutMs: RUN_TIMEOUTS.requestMs });
}

/**
 * Every sysctl the lab sets exists on its hosts, checked before any change: a
 * name the kernel lacks (a typo, a module not loaded, an older kernel) is the
 * lab's mistake, so it is a LabError (exit 2) at the name in the lab file,
 * with the name beside it the user probably meant, not a failure halfway
 * through provisioning.
 */
export async function checkSysctls(plan: Plan, sessions: Sessions, bound: RunBound): Promise<void> {
  const problems: LabProblem[] = [];
  await Promise.all(
    [...sessions.values()].map(async (s) => {
      for (const { name } of s.host.sysctls) {
        // Connection tracking, set up first, loads the module that brings net.netfilter.*.
        if (s.host.conntrack && name.startsWith('net.netfilter.')) continue;
        const r = await bound.guard(s.agent!.request('sysctlGet', { name, missingOk: true }, { timeoutMs: RUN_TIMEOUTS.requestMs }));
        if (r.value !== null) continue;
        const path = `/proc/sys/${name.replaceAll('.', '/')}`;
        const on = `${hostLabel(s.host)}${s.facts ? ` (kernel ${s.facts.kernel})` : ''}`;
        // A machine-wide net.* sysctl (tcp_mem, udp_mem) is not shown inside a network namespace at all.
        const hidden = s.host.kind === 'netns' && existsSync(path);
        const near = hidden ? undefined : didYouMean(name, r.near ?? []);
        const why = hidden
          ? `"${name}" is machine-wide and not shown inside a network namespace, so a local host cannot set it: set it on this machine before the run, or run on an inventory host`
          : `No sysctl "${name}" on ${on}: ${path} does not exist${near ? `: did you mean "${near}"?` : ''}`;
        problems.push(sysctlProblem(plan.lab, s.host.role, name, why));
      }
    }),
  );
  // One line per name and host, in file order.
  if (problems.length) throw new LabError('NO_SUCH_SYSCTL', 'A sysctl the lab sets does not exist', problems.sort((a, b) => a.line - b.line || a.col - b.col));
}

/**
 * What the hosts can hold, checked before any change (models/scale.ts): the
 * arithmetic as the run records it (undefined for a lab that opens no
 * connections), and the refusal when they cannot hold it. A run never drives a
 * machine into the OOM killer: it throws HostError CAPACITY with the refusal,
 * after recording the check.
 */
export function checkCapacity(plan: Plan, sessions: Sessions): { record?: CapacityRecord; refusal?: string } {
  // By role, from each role's first host (the capacity check reads one host of a role).
  const facts: Record<string, HostFacts> = {};
  for (const s of sessions.values()) if (s.facts) facts[s.host.role] ??= s.facts;
  const check = capacityCheck(plan, facts);
  const record =
    check.machines.length || check.ports.lines.length
      ? { ok: check.ok, machines: check.machines.map((m) => ({ roles: m.roles, lines: [...m.check.lines, ...m.fds.lines] })), ports: check.ports.lines }
      : undefined;
  return { record, refusal: capacityRefusal(check) };
}
