// Plan: a validated Lab bound to concrete hosts: what each host gets
// (addresses, sysctls, limits) and each step with real addresses filled in.
// Pure: reading current values for the diff is the runner's job.

import { LabError } from '../errors.ts';
import { AUTO_PORT_RANGE, sourcesFor } from './sources.ts';
import { stepSysctl, type Lab, type Step } from './types.ts';

/** How a host of a lab role is reached, before anything is created. A role may have several hosts. */
export interface HostBinding {
  role: string;
  /** the host's own name, unique in the run: the role itself for local hosts, the inventory's name otherwise */
  name: string;
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
  /** connection tracking on in the host's namespace (nftables) */
  conntrack?: boolean;
}

export interface Pair {
  source: string;
  address: string;
  port: number;
}

export type PlannedStep =
  | (Step & { kind: Exclude<Step['kind'], 'connect' | 'listen' | 'snapshot'> })
  | (Extract<Step, { kind: 'snapshot' }> & { hosts: string[] })
  /** `address` is the first host's; `listeners` has every host of the role */
  | (Extract<Step, { kind: 'listen' }> & { address: string; listeners: Array<{ host: string; address: string }> })
  /**
   * `pairs` is the first host's; `parts` has every host of the role, each
   * connecting from its own addresses to every host of each destination role.
   * The count is shared out at run time, from each host's facts.
   */
  | (Extract<Step, { kind: 'connect' }> & {
      pairs: Pair[];
      parts: Array<{ host: string; pairs: Pair[] }>;
      /** how `sources: auto` was planned, for `lab plan` and the report */
      autoPlan?: string;
    });

export interface Plan {
  lab: Lab;
  /** one per host, roles in lab order, each role's hosts in inventory order */
  hosts: PlannedHost[];
  /** role -> the names of its hosts */
  roles: Record<string, string[]>;
  steps: PlannedStep[];
}

/**
 * sysctls that are not per network namespace: changing them on a local host
 * changes the whole machine. The net.* ones here are the global few.
 */
export function sysctlScope(name: string): SysctlScope {
  if (/^(fs|vm|kernel)\./.test(name)) return 'global';
  // tcp_rmem and tcp_wmem are per namespace since Linux 4.15: not in this list.
  if (['net.ipv4.tcp_mem', 'net.core.netdev_max_backlog', 'net.core.rmem_max', 'net.core.wmem_max', 'net.ipv4.udp_mem', 'net.netfilter.nf_conntrack_max'].includes(name)) {
    return 'global';
  }
  return 'namespace';
}

const PORT_RANGE = 'net.ipv4.ip_local_port_range';

/**
 * Resolve `sources: auto`: each such connect step gets the source addresses
 * its count needs within 3/8 of the port range (the lab's range for the host, or
 * AUTO_PORT_RANGE, which the plan then sets), and its host the aliases for
 * them. Returns the lab with numbers in place of "auto", and how each was planned.
 */
export function planSources(lab: Lab, bindings: HostBinding[]): { lab: Lab; autoPlans: Map<string, string>; problems: string[] } {
  const autoPlans = new Map<string, string>();
  const problems: string[] = [];
  if (!lab.steps.some((s) => s.kind === 'connect' && s.autoSources)) return { lab, autoPlans, problems };
  const hosts = lab.hosts.map((h) => ({ ...h, sysctls: { ...h.sysctls } }));
  // Connections earlier steps still hold, per (host, source index, destination): an auto step's sources leave room for them.
  const held = new Map<string, Map<string, number>>(); // step -> pair -> connections
  const pairKey = (host: string, i: number, d: { role: string; port: number }) => `${host} ${i} ${d.role}:${d.port}`;
  const heldOn = (key: string) => [...held.values()].reduce((n, m) => n + (m.get(key) ?? 0), 0);
  const remember = (c: Extract<Lab['steps'][number], { kind: 'connect' }>, sources: number) => {
    const m = new Map<string, number>();
    for (let i = 0; i < sources; i++) for (const d of c.to) m.set(pairKey(c.host, i, d), c.count / (sources * c.to.length));
    held.set(c.name, m);
  };
  const steps = lab.steps.map((s) => {
    if (s.kind === 'release') for (const name of s.steps) held.delete(name);
    if (s.kind === 'connect' && !s.autoSources) remember(s, s.sources);
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
    let plan = sourcesFor(s.count, s.to.length, range);
    // With connections still held on the first sources' pairs, more sources until each pair stays within 3/8 of the range.
    const fits = (n: number) => Array.from({ length: n }, (_, i) => i).every((i) => s.to.every((d) => heldOn(pairKey(s.host, i, d)) + s.count / (n * s.to.length) <= plan.portsPerSource));
    let sources = plan.sources;
    while (!fits(sources) && sources < 1 + pool + 1) sources++;
    if (sources > plan.sources) {
      const before = [...held.keys()].filter((n) => [...held.get(n)!.keys()].some((k) => k.startsWith(`${s.host} `))).map((n) => `"${n}"`);
      plan = { ...plan, sources, derivation: `${plan.derivation}; ${sources} with the connections ${before.join(', ')} still hold on the first sources' pairs` };
    }
    if (plan.sources > 1 + pool) {
      problems.push(
        `Step "${s.name}": ${plan.derivation}, but host "${s.host}" offers 1 + ${pool} aliases: lower count, add destinations, or widen the port range`,
      );
    }
    host.aliases = Math.max(host.aliases, plan.sources - 1);
    autoPlans.set(s.name, `sources auto: ${plan.derivation}; ${rangeWhy}`);
    remember(s, plan.sources);
    return { ...s, sources: plan.sources };
  });
  return { lab: { ...lab, hosts, steps }, autoPlans, problems };
}

export function planLab(given: Lab, bindings: HostBinding[]): Plan {
  const { lab, autoPlans, problems } = planSources(given, bindings);
  const hosts: PlannedHost[] = [];
  const roles: Record<string, string[]> = {};
  for (const h of lab.hosts) {
    const bound = bindings.filter((b) => b.role === h.role);
    if (!bound.length) problems.push(`Role "${h.role}" has no host: add it to the inventory`);
    roles[h.role] = bound.map((b) => b.name);
    for (const b of bound) {
      const which = bound.length > 1 ? `Host "${b.name}" of role "${h.role}"` : `Role "${h.role}"`;
      if (h.aliases > b.aliasPool.length) {
        problems.push(
          `${which} needs ${h.aliases} IP aliases but its host offers ${b.aliasPool.length}${b.where ? ` (${b.where}: add addresses to "aliases")` : ''}`,
        );
      }
      if (h.aliases > 0 && !b.device) problems.push(`${which} needs IP aliases: its host must name an "interface"`);
      hosts.push({
        ...b,
        aliases: b.aliasPool.slice(0, h.aliases),
        sysctls: Object.entries(h.sysctls).map(([name, value]) => ({ name, value, scope: sysctlScope(name) })),
        nofile: h.nofile,
        ...(h.conntrack ? { conntrack: true } : {}),
      });
    }
  }
  if (problems.length) throw new LabError('PLAN_HOSTS', problems.join('\n'));

  const byName = new Map(hosts.map((h) => [h.name, h]));
  const of = (role: string) => roles[role]!.map((n) => byName.get(n)!);
  const steps: PlannedStep[] = lab.steps.map((s) => {
    if (s.kind === 'listen') {
      const listeners = of(s.host).map((h) => ({ host: h.name, address: h.address }));
      return { ...s, address: listeners[0]!.address, listeners };
    }
    if (s.kind === 'connect') {
      // Every host of a destination role is a destination: `to: server:8080` spreads over them.
      const dests = s.to.flatMap((d) => of(d.role).map((h) => ({ address: h.address, port: d.port })));
      const parts = of(s.host).map((from) => {
        const sources = [from.address, ...from.aliases].slice(0, s.sources);
        return { host: from.name, pairs: sources.flatMap((source) => dests.map((d) => ({ source, ...d }))) };
      });
      const autoPlan = autoPlans.get(s.name);
      return { ...s, pairs: parts[0]!.pairs, parts, ...(autoPlan ? { autoPlan } : {}) };
    }
    if (s.kind === 'snapshot') return { ...s, hosts: roles[s.host]! };
    return s;
  });
  return { lab, hosts, roles, steps };
}

/**
 * The machine-wide sysctls a plan would change on the controller's own
 * machine (local hosts: every namespace shares fs.*, vm.*, kernel.* and a few
 * net.* settings) that neither the lab file's `acknowledge:` nor `--ack` names.
 * `lab run` refuses such a plan before touching anything.
 */
export function unacknowledgedGlobals(plan: Plan, acks: string[]): Array<{ role: string; name: string; value: string }> {
  const ok = new Set([...Object.keys(plan.lab.acknowledge), ...acks]);
  const byHosts = plan.hosts.flatMap((h) =>
    h.local ? h.sysctls.filter((s) => s.scope === 'global' && !ok.has(s.name)).map((s) => ({ role: h.role, name: s.name, value: s.value })) : [],
  );
  // A step that changes a machine-wide sysctl for its own duration (files: fs.file-max, fs.nr_open).
  const bySteps = plan.lab.steps.flatMap((s) => {
    const name = stepSysctl(s);
    if (!name || ok.has(name) || !('host' in s) || !plan.hosts.some((h) => h.role === s.host && h.local)) return [];
    const value = s.kind === 'files' && s.ceiling === 'file-max' ? `files in use + ${s.count}, during step "${s.name}"` : `${s.kind === 'files' ? s.nrOpen : ''}, during step "${s.name}"`;
    return [{ role: s.host, name, value }];
  });
  return [...byHosts, ...bySteps];
}
