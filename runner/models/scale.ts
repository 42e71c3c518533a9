// Scale: how a lab reaches a target number of connections (source addresses,
// ports per address, worker processes), and whether the hosts can hold it
// (kernel memory, workers' memory, ports) before anything is provisioned.
// Pure functions from a target and the hosts' facts to numbers and their
// arithmetic. No I/O.

import type { Pair, Plan } from '../lab/plan.ts';
import type { HostFacts } from '../result.ts';
import { objectsFormula, passesFileMax, predictedBytes } from './memory.ts';

// How many source addresses a count needs is lab vocabulary (the plan resolves
// `sources: auto` with it); re-exported here for the checks below and their callers.
export { AUTO_PORT_RANGE, PORT_SHARE, portsPerSource, sourcesFor, type SourcePlan } from '../lab/sources.ts';
import { AUTO_PORT_RANGE, portsPerSource } from '../lab/sources.ts';

/** Worker processes one side needs when each holds `perWorker` sockets. */
export function workersFor(count: number, perWorker: number): number {
  return Math.max(1, Math.ceil(count / Math.max(1, perWorker)));
}

// ---------------------------------------------------------------- memory

/**
 * What comes on top of the priced objects in practice, as a factor: slab
 * pages are never full, other caches move a little with the connections, and
 * a proc inode with its dentry comes for every fd that anything on the
 * machine lists in /proc/<pid>/fd. Measured on 6.18 here at 1,000,000
 * connections (2,000,000 sockets on one kernel, `npm run bench:million`,
 * reports/bench/million.json, two-million.json): the machine's Slab grew by
 * 4.7 KB per socket on an idle machine and 4.90–4.96 KB under other sessions'
 * load (whose own slab growth it includes; 4957 B at 2,000,000 connections),
 * against 3896 B priced: 1.21–1.27. 1.35 is above all of them, so a refusal
 * errs toward not starting; the agent's memory floor (connect's memFloorKiB)
 * stops a ramp that would still run short. (MemAvailable fell by
 * less: it counts half of the reclaimable slab, the sockets' inodes and
 * dentries, as free, though a held socket pins them.)
 */
export const MEMORY_SAFETY_FACTOR = 1.35;

/**
 * User and kernel memory of one worker process that holds its sockets, by
 * where its loop runs: a C helper worker is ~2 MB resident (its fd array,
 * libc) plus its fd table in the kernel; a Python worker holds ~20000 socket
 * objects in a forked interpreter.
 */
export const WORKER_BYTES: Record<'c' | 'python', number> = { c: 4 * 1024 * 1024, python: 16 * 1024 * 1024 };

/** The worker memory of a host: its agent's C helper where it reports one, else the Python workers. */
export function workerBytes(facts: Pick<HostFacts, 'connectEngine'>): { bytes: number; engine: 'c' | 'python' } {
  const engine = facts.connectEngine === 'c' ? 'c' : 'python';
  return { bytes: WORKER_BYTES[engine], engine };
}

/** Memory kept free for everything else on the machine: 5% of MemTotal, at least 256 MiB. */
export function reserveBytes(memTotalKiB: number): number {
  return Math.max(256 * 1024 ** 2, Math.round(memTotalKiB * 1024 * 0.05));
}

export interface SocketCost {
  bytes: number;
  /** "TCP 2368 + sock_inode_cache 832 + filp 192 + dentry 192 + …" */
  formula: string;
  /** objects this kernel's slabinfo has no cache for (priced at 0) */
  missing: string[];
}

/**
 * Kernel bytes one idle established socket holds: the memory model's objects
 * (models/memory.ts, priced with this kernel's own object sizes) of the
 * costlier side, the client's, which also holds its port's bind buckets. The
 * buckets are priced in full here, one of each per socket: the most they can
 * cost (the memory model's fit prices the share many sources need, ~1.7% less
 * at a million), so the check errs on the side of refusing.
 */
export function socketCost(facts: Pick<HostFacts, 'slabObjectSize' | 'slabAliases'>): SocketCost {
  const p = predictedBytes(facts);
  const side = p.client >= p.server ? 'client' : 'server';
  return { bytes: Math.max(p.client, p.server), formula: objectsFormula(p.priced, side), missing: p.missing };
}

const GiB = (b: number) => `${(b / 1024 ** 3).toFixed(2)} GiB`;

/** One host (machine) that holds sockets of a step: how many, and how many workers. */
export interface MachineLoad {
  /** roles sharing this machine's kernel and memory */
  roles: string[];
  facts: HostFacts;
  /** sockets held on this machine (a connection between two roles of one machine counts twice) */
  sockets: number;
  /** worker processes holding them */
  workers: number;
}

export interface MemoryCheck {
  ok: boolean;
  needBytes: number;
  availableBytes: number;
  /** the arithmetic, one line per term, for a report or a refusal */
  lines: string[];
}

/**
 * Whether a machine can hold its sockets: priced socket cost × safety factor ×
 * sockets, plus workers' memory, plus a reserve, against MemAvailable.
 */
export function memoryCheck(load: MachineLoad): MemoryCheck {
  const cost = socketCost(load.facts);
  const kernel = Math.round(load.sockets * cost.bytes * MEMORY_SAFETY_FACTOR);
  const wb = workerBytes(load.facts);
  const workers = load.workers * wb.bytes;
  const reserve = reserveBytes(load.facts.memTotalKiB);
  const need = kernel + workers + reserve;
  const available = load.facts.memAvailableKiB * 1024;
  const ok = need <= available;
  const who = load.roles.join(' + ');
  const lines = [
    `per socket: ${cost.formula} = ${cost.bytes} B of slab objects (this kernel's sizes, models/memory.ts)${cost.missing.length ? `; no cache here for ${cost.missing.join(', ')}` : ''}`,
    `kernel: ${load.sockets} sockets on ${who} × ${cost.bytes} B × ${MEMORY_SAFETY_FACTOR} (slab pages never full, proc inodes, other caches) = ${GiB(kernel)}`,
    `workers: ${load.workers} processes × ${wb.bytes / 1024 ** 2} MiB (${wb.engine === 'c' ? 'the C helper' : 'Python workers'}) = ${GiB(workers)}`,
    `reserve: 5% of MemTotal ${GiB(load.facts.memTotalKiB * 1024)}, at least 256 MiB = ${GiB(reserve)}`,
    `need ${GiB(kernel)} + ${GiB(workers)} + ${GiB(reserve)} = ${GiB(need)} ${ok ? '≤' : '>'} MemAvailable ${GiB(available)}`,
  ];
  return { ok, needBytes: need, availableBytes: available, lines };
}

/** The largest number of connections a machine holding both ends of each could take under memoryCheck. */
export function memoryCeiling(facts: HostFacts, socketsPerConnection: number, perWorker: number): number {
  const cost = socketCost(facts).bytes * MEMORY_SAFETY_FACTOR;
  const perConn = socketsPerConnection * (cost + workerBytes(facts).bytes / Math.max(1, perWorker));
  const room = facts.memAvailableKiB * 1024 - reserveBytes(facts.memTotalKiB);
  return room > 0 && perConn > 0 ? Math.floor(room / perConn) : 0;
}

// ---------------------------------------------------------------- a plan against its hosts

/** The fds the agent keeps for itself in each worker (FD_MARGIN in the agent). */
export const WORKER_FD_MARGIN = 16;

/** Hosts that share one kernel and its memory (as sameKernel() in models/memory.ts: the boot id, else hostname, kernel and memory). */
function machineKey(f: HostFacts): string {
  return f.bootId ?? `${f.hostname}|${f.kernel}|${f.memTotalKiB}`;
}

/**
 * Every machine's peak load under a plan: connect steps hold their sockets
 * (client side on the connecting host, server side spread over the
 * destinations) until a release step names them or the one listening.
 */
export function peakLoads(plan: Plan, facts: Record<string, HostFacts>): MachineLoad[] {
  const nofile = (role: string) => plan.hosts.find((h) => h.role === role)?.nofile ?? facts[role]?.nofileSoft ?? 1024;
  // The agent's own rule (facts.socketsPerWorker at the facts' nofile), at the nofile the plan sets.
  const perWorker = (role: string) => {
    const f = facts[role];
    const margin = f && typeof f.socketsPerWorker === 'number' ? f.nofileSoft - f.socketsPerWorker : WORKER_FD_MARGIN;
    return Math.max(1, nofile(role) - margin);
  };
  const open = new Map<string, Map<string, number>>(); // step -> role -> sockets
  const processes = new Map<string, { role: string; n: number }>(); // connect step -> its fixed workers
  const peak = new Map<string, MachineLoad>();
  const listenOf = new Map<string, string>(); // listen step -> role
  const measure = () => {
    const byMachine = new Map<string, { roles: Set<string>; sockets: number; workers: number; facts: HostFacts }>();
    for (const [step, held] of open) {
      for (const [role, n] of held) {
        const f = facts[role];
        if (!f) continue;
        const m = byMachine.get(machineKey(f)) ?? { roles: new Set<string>(), sockets: 0, workers: 0, facts: f };
        m.roles.add(role);
        m.sockets += n;
        // A connect step that sets `processes` runs exactly that many on its own side.
        const fixed = processes.get(step);
        m.workers += fixed && fixed.role === role ? fixed.n : workersFor(n, perWorker(role));
        byMachine.set(machineKey(f), m);
      }
    }
    for (const [k, m] of byMachine) {
      const best = peak.get(k);
      if (!best || m.sockets > best.sockets) peak.set(k, { roles: [...m.roles].sort(), facts: m.facts, sockets: m.sockets, workers: m.workers });
    }
  };
  for (const s of plan.steps) {
    if (s.kind === 'listen') listenOf.set(s.name, s.host);
    if (s.kind === 'connect') {
      const held = new Map<string, number>([[s.host, s.count]]);
      s.to.forEach((d, i) => {
        const share = Math.floor(s.count / s.to.length) + (i < s.count % s.to.length ? 1 : 0);
        held.set(d.role, (held.get(d.role) ?? 0) + share);
      });
      open.set(s.name, held);
      if (s.processes) processes.set(s.name, { role: s.host, n: s.processes });
      measure();
    }
    if (s.kind === 'release') for (const name of s.steps) open.delete(name);
  }
  return [...peak.values()];
}

export interface Check {
  ok: boolean;
  lines: string[];
}

/**
 * Whether a machine has the fds for its sockets: every socket and each
 * worker's own few fds against fs.file-max (the kernel's, shared by its
 * namespaces), and each role's nofile against fs.nr_open (setrlimit fails above it).
 */
export function fdsCheck(load: MachineLoad, nofiles: Record<string, number>): Check {
  const f = load.facts;
  const workerFds = f.workerFds ?? 5;
  const need = load.sockets + load.workers * workerFds;
  const root = passesFileMax(f);
  const lines = [
    `fds: ${load.sockets} sockets + ${load.workers} workers × ${workerFds} = ${need} ${need <= f.fileMax ? '≤' : '>'} fs.file-max ${f.fileMax}` +
      (root && need > f.fileMax ? ' (no limit for the agent: CAP_SYS_ADMIN passes it)' : ''),
  ];
  let ok = root || need <= f.fileMax;
  for (const role of load.roles) {
    const n = nofiles[role];
    if (n === undefined) continue;
    lines.push(`nofile ${role}: ${n} per worker ${n <= f.nrOpen ? '≤' : '>'} fs.nr_open ${f.nrOpen}`);
    ok &&= n <= f.nrOpen;
  }
  return { ok, lines };
}

/**
 * Whether each connect step with \`sources: auto\` keeps every (source,
 * destination) within 3/8 of its port range, as planned (a lab that names its
 * sources may run out of ports on purpose: that is what it measures).
 */
export function portsCheck(plan: Plan, facts: Record<string, HostFacts>): Check {
  const lines: string[] = [];
  let ok = true;
  // Connections held per (host, source, destination) pair by the steps still open: a later
  // step over the same pairs shares their ports (a 4-tuple is unique, not a step's).
  const open = new Map<string, Map<string, number>>(); // step -> pair -> connections
  const key = (host: string, p: Pair) => `${host}|${p.source}|${p.address}:${p.port}`;
  for (const s of plan.steps) {
    if (s.kind === 'release') for (const name of s.steps) open.delete(name);
    if (s.kind !== 'connect') continue;
    const pairs = Math.max(1, s.pairs.length);
    const per = Math.ceil(s.count / pairs);
    const mine = new Map(s.pairs.map((p) => [key(s.host, p), per]));
    const before = Math.max(0, ...[...mine.keys()].map((k) => [...open.values()].reduce((a, m) => a + (m.get(k) ?? 0), 0)));
    open.set(s.name, mine);
    if (!s.autoSources) continue;
    const host = plan.hosts.find((h) => h.role === s.host);
    const set = host?.sysctls.find((x) => x.name === 'net.ipv4.ip_local_port_range')?.value.split(/\s+/).map(Number);
    const range: [number, number] = set && set.length === 2 ? [set[0]!, set[1]!] : (facts[s.host]?.portRange ?? AUTO_PORT_RANGE);
    const budget = portsPerSource(range);
    const total = per + before;
    const held = before ? ` + ${before} still held on the same pairs by earlier steps = ${total}` : '';
    lines.push(`ports ${s.name}: ${s.count} connections ÷ ${pairs} (source, destination) pairs = ${per} per pair${held} ${total <= budget ? '≤' : '>'} ${budget} (3/8 of ${range[0]}–${range[1]})`);
    ok &&= total <= budget;
  }
  return { ok, lines };
}

export interface CapacityCheck {
  ok: boolean;
  /** per machine: its memory and fd arithmetic */
  machines: Array<{ roles: string[]; check: MemoryCheck; fds: Check }>;
  ports: Check;
}

/** Whether every machine can hold its peak load (memory, fds) and every auto-planned step has its ports, with the arithmetic. */
export function capacityCheck(plan: Plan, facts: Record<string, HostFacts>): CapacityCheck {
  const nofiles: Record<string, number> = {};
  for (const h of plan.hosts) {
    const n = h.nofile ?? facts[h.role]?.nofileSoft;
    if (n !== undefined) nofiles[h.role] = n;
  }
  const machines = peakLoads(plan, facts).map((load) => ({ roles: load.roles, check: memoryCheck(load), fds: fdsCheck(load, nofiles) }));
  const ports = portsCheck(plan, facts);
  return { ok: machines.every((m) => m.check.ok && m.fds.ok) && ports.ok, machines, ports };
}

/** The refusal a run prints when capacityCheck fails; undefined when it passes. */
export function capacityRefusal(check: CapacityCheck): string | undefined {
  if (check.ok) return undefined;
  const lines = ['The hosts cannot hold this lab: not started, nothing was changed'];
  for (const m of check.machines) {
    lines.push(`  ${m.roles.join(' + ')} (one kernel):`);
    for (const l of [...m.check.lines, ...m.fds.lines]) lines.push(`    ${l}`);
  }
  for (const l of check.ports.lines) lines.push(`  ${l}`);
  const hints: string[] = [];
  if (check.machines.some((m) => !m.check.ok)) hints.push('Lower the count, or free memory on the host (MemAvailable)');
  if (check.machines.some((m) => !m.fds.ok)) hints.push('Lower the count or nofile, or raise fs.file-max / fs.nr_open');
  if (!check.ports.ok) hints.push('Lower the count, or widen the port range');
  for (const h of hints) lines.push(`  ${h}`);
  return lines.join('\n');
}
