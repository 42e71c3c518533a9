// Plan: a validated Lab bound to concrete hosts: what each host gets
// (addresses, sysctls, limits) and each step with real addresses filled in.
// Pure: reading current values for the diff is the runner's job.

import { LabError } from '../errors.ts';
import { AUTO_PORT_RANGE, sourcesFor } from './sources.ts';
import type { Lab, Step } from './types.ts';

/** How a lab role is reached, before anything is created. */
export interface HostBinding {
  role: string;
  kind: 'netns' | 'ssh';
  /** namespace name, or user@address:port */
  target: string;
  /** the address other hosts reach this one on */
  address: string;
  /** addresses the host may take as IP aliases, in order */
  aliasPool: string[];
  /** the interface the aliases go on */
  device?: string;
  /** true when global sysctls (fs.*, vm.*) are the controller machine's own */
  local: boolean;
  /** where to point a user at this host's definition in an inventory (file:line:col) */
  where?: string;
}

export type SysctlScope = 'namespace' | 'global';

export interface PlannedSysctl {
  name: string;
  value: string;
  scope: SysctlScope;
  /** filled by the runner for `lab plan` and in the journal */
  old?: string;
}

export interface PlannedHost extends HostBinding {
  aliases: string[];
  sysctls: PlannedSysctl[];
  nofile?: number;
}

export type PlannedStep =
  | (Step & { kind: Exclude<Step['kind'], 'connect' | 'listen'> })
  | (Extract<Step, { kind: 'listen' }> & { address: string })
  | (Extract<Step, { kind: 'connect' }> & {
      pairs: Array<{ source: string; address: string; port: number }>;
      /** how `sources: auto` was planned, for `lab plan` and the report */
      autoPlan?: string;
    });

export interface Plan {
  lab: Lab;
  hosts: PlannedHost[];
  steps: PlannedStep[];
}

/**
 * sysctls that are not per network namespace: changing them on a local host
 * changes the whole machine. The net.* ones here are the global few.
 */
export function sysctlScope(name: string): SysctlScope {
  if (/^(fs|vm|kernel)\./.test(name)) return 'global';
  if (['net.ipv4.tcp_mem', 'net.ipv4.tcp_rmem', 'net.ipv4.tcp_wmem', 'net.core.netdev_max_backlog', 'net.core.rmem_max', 'net.core.wmem_max', 'net.ipv4.udp_mem'].includes(name)) {
    return 'global';
  }
  return 'namespace';
}

const PORT_RANGE = 'net.ipv4.ip_local_port_range';

/**
 * Resolve `sources: auto`: each such connect step gets the source addresses
 * its count needs below half the port range (the lab's range for the host, or
 * AUTO_PORT_RANGE, which the plan then sets), and its host the aliases for
 * them. Returns the lab with numbers in place of "auto", and how each was planned.
 */
export function planSources(lab: Lab, bindings: HostBinding[]): { lab: Lab; autoPlans: Map<string, string>; problems: string[] } {
  const autoPlans = new Map<string, string>();
  const problems: string[] = [];
  if (!lab.steps.some((s) => s.kind === 'connect' && s.autoSources)) return { lab, autoPlans, problems };
  const hosts = lab.hosts.map((h) => ({ ...h, sysctls: { ...h.sysctls } }));
  const steps = lab.steps.map((s) => {
    if (s.kind !== 'connect' || !s.autoSources) return s;
    const host = hosts.find((h) => h.role === s.host)!;
    const pool = bindings.find((b) => b.role === s.host)?.aliasPool.length ?? 0;
    let range = AUTO_PORT_RANGE;
    let rangeWhy = `the plan sets ${PORT_RANGE} "${AUTO_PORT_RANGE.join(' ')}"`;
    const set = host.sysctls[PORT_RANGE]?.split(/\s+/).map(Number);
    if (set && set.length === 2 && set.every(Number.isInteger)) {
      range = [set[0]!, set[1]!];
      rangeWhy = `the lab's ${PORT_RANGE} "${range.join(' ')}"`;
    } else {
      host.sysctls[PORT_RANGE] = AUTO_PORT_RANGE.join(' ');
    }
    const plan = sourcesFor(s.count, s.to.length, range);
    if (plan.sources > 1 + pool) {
      problems.push(
        `Step "${s.name}": ${plan.derivation}, but host "${s.host}" offers 1 + ${pool} aliases: lower count, add destinations, or widen the port range`,
      );
    }
    host.aliases = Math.max(host.aliases, plan.sources - 1);
    autoPlans.set(s.name, `sources auto: ${plan.derivation}; ${rangeWhy}`);
    return { ...s, sources: plan.sources };
  });
  return { lab: { ...lab, hosts, steps }, autoPlans, problems };
}

export function planLab(given: Lab, bindings: HostBinding[]): Plan {
  const byRole = new Map(bindings.map((b) => [b.role, b]));
  const { lab, autoPlans, problems } = planSources(given, bindings);
  const hosts: PlannedHost[] = lab.hosts.map((h) => {
    const b = byRole.get(h.role);
    if (!b) {
      problems.push(`Role "${h.role}" has no host: add it to the inventory`);
      return undefined as never;
    }
    if (h.aliases > b.aliasPool.length) {
      problems.push(
        `Role "${h.role}" needs ${h.aliases} IP aliases but its host offers ${b.aliasPool.length}${b.where ? ` (${b.where}: add addresses to "aliases")` : ''}`,
      );
    }
    if (h.aliases > 0 && !b.device) problems.push(`Role "${h.role}" needs IP aliases: its host must name an "interface"`);
    return {
      ...b,
      aliases: b.aliasPool.slice(0, h.aliases),
      sysctls: Object.entries(h.sysctls).map(([name, value]) => ({ name, value, scope: sysctlScope(name) })),
      nofile: h.nofile,
    };
  });
  if (problems.length) throw new LabError('PLAN_HOSTS', problems.join('\n'));

  const planned = new Map(hosts.map((h) => [h.role, h]));
  const steps: PlannedStep[] = lab.steps.map((s) => {
    if (s.kind === 'listen') return { ...s, address: planned.get(s.host)!.address };
    if (s.kind === 'connect') {
      const from = planned.get(s.host)!;
      const sources = [from.address, ...from.aliases].slice(0, s.sources);
      const pairs = sources.flatMap((source) =>
        s.to.map((d) => ({ source, address: planned.get(d.role)!.address, port: d.port })),
      );
      const autoPlan = autoPlans.get(s.name);
      return autoPlan ? { ...s, pairs, autoPlan } : { ...s, pairs };
    }
    return s;
  });
  return { lab, hosts, steps };
}

/**
 * The machine-wide sysctls a plan would change on the controller's own
 * machine (local hosts: every namespace shares fs.*, vm.*, kernel.* and a few
 * net.* settings) that neither the lab file's `acknowledge:` nor `--ack` names.
 * `lab run` refuses such a plan before touching anything.
 */
export function unacknowledgedGlobals(plan: Plan, acks: string[]): Array<{ role: string; name: string; value: string }> {
  const ok = new Set([...Object.keys(plan.lab.acknowledge), ...acks]);
  return plan.hosts.flatMap((h) =>
    h.local ? h.sysctls.filter((s) => s.scope === 'global' && !ok.has(s.name)).map((s) => ({ role: h.role, name: s.name, value: s.value })) : [],
  );
}
