// Predictions: pure functions from a step's settings and the hosts' own facts
// to a value and its derivation with the numbers filled in. No I/O here.

import type { HostFacts } from '../result.ts';
import type { ModelName, ReleaseMode, Step } from '../lab/types.ts';
import {
  bindBucketShares,
  type BucketShares,
  CLASSIC_SOCKET_BYTES,
  CLASSIC_TIME_WAIT_BYTES,
  objectsFormula,
  passesFileMax,
  type PortPair,
  predictedBytes,
  sameKernel,
  sidesOn,
  sumBucketShares,
  TIME_WAIT_OBJECTS,
  withBucketShares,
} from './memory.ts';
import { bufferMemory } from './buffers.ts';
import { conntrack, fdCeilings, serverMemory } from './ceilings.ts';
// The most worker processes a connect step may use: the lab file's `processes` bound.
import { MAX_PROCESSES } from '../lab/validate.ts';

export type ConnectStep = Extract<Step, { kind: 'connect' }>;

export interface ModelContext {
  step: Step;
  /** the metric part of "<step>.<metric>" */
  metric: string;
  /** each host's facts as provisioned: what the run really had */
  facts: Record<string, HostFacts>;
  /** role -> the addresses a step may use: primary first, then aliases */
  addresses: Record<string, string[]>;
  /** every step of the lab, in order (a fit's prediction looks at the connects before it) */
  steps: Step[];
  /** how the lab's release steps close: only `graceful` leaves TIME_WAIT */
  release?: ReleaseMode;
  /** on a fleet, an earlier connect step of this step's role as this host ran it: its share, a destination per host */
  asRun?: (step: ConnectStep) => ConnectStep;
}

export interface ModelOutput {
  value: number | string | null;
  derivation: string;
  explanation: string;
  reference?: { value: number | string; source: string };
}

export class ModelNotApplicable extends Error {}

const nf = (n: number) => String(n);

/** The ephemeral ports connect() can pick on a host: its range less the reserved ones in it. */
export function usablePorts(facts: Pick<HostFacts, 'portRange' | 'reservedPorts'>): { reserved: number; ports: number } {
  const [lo, hi] = facts.portRange;
  const reserved = reservedInRange(facts.reservedPorts, lo, hi);
  return { reserved, ports: hi - lo + 1 - reserved };
}

/** Ports in [lo, hi] that ip_local_reserved_ports takes away from automatic selection. */
export function reservedInRange(reserved: string, lo: number, hi: number): number {
  let n = 0;
  for (const part of reserved.split(',').map((s) => s.trim()).filter(Boolean)) {
    const [a, b] = part.split('-').map(Number);
    const from = Math.max(lo, a!);
    const to = Math.min(hi, b ?? a!);
    if (to >= from) n += to - from + 1;
  }
  return n;
}

function connectStep(ctx: ModelContext, model: string): ConnectStep {
  if (ctx.step.kind !== 'connect') throw new ModelNotApplicable(`Model "${model}" applies to connect steps, not "${ctx.step.kind}"`);
  return ctx.step;
}

/** A destination as people name it: a fleet's "role/host" is the role when the host is named as the role (a local host: "server"), else "server h2". */
function destName(role: string): string {
  const [r, host] = role.split('/');
  return host === undefined || host === r ? r! : `${r} ${host}`;
}

function tupleText(ctx: ModelContext, step: ConnectStep): string {
  const sources = (ctx.addresses[step.host] ?? []).slice(0, step.sources);
  const dests = step.to.map((d) => `${ctx.addresses[d.role]?.[0] ?? d.role}:${d.port}`);
  return `${sources.join(', ')} → ${dests.join(', ')}`;
}

/** The names of the steps a release step among `steps` closes. */
export function releasedIn(steps: Step[]): Set<string> {
  return new Set(steps.flatMap((s) => (s.kind === 'release' ? s.steps : [])));
}

/** Earlier connect steps on the step's host whose connections are still held when it starts (no release between), as this host ran them. */
function heldBefore(ctx: ModelContext, step: ConnectStep): ConnectStep[] {
  const index = ctx.steps.findIndex((s) => s.name === step.name);
  if (index <= 0) return [];
  const earlier = ctx.steps.slice(0, index);
  const released = releasedIn(earlier);
  return earlier.filter((s): s is ConnectStep => s.kind === 'connect' && s.host === step.host && !released.has(s.name)).map((c) => asRun(ctx, c));
}

/** Another connect step of this host's, as the host ran it: on a fleet its share and a destination per host (ModelContext.asRun). */
function asRun(ctx: ModelContext, c: ConnectStep): ConnectStep {
  return ctx.asRun?.(c) ?? c;
}

/**
 * The connections an earlier step holds, as predicted: the tighter of its
 * ports (less what steps before it hold) and its fd ceiling. Remembered per
 * context (the facts object) and step: each step's count is asked by every
 * later one, which would otherwise cost 2^steps.
 */
const heldCounts = new WeakMap<object, Map<string, number>>();
function heldCount(ctx: ModelContext, c: ConnectStep): number {
  let known = heldCounts.get(ctx.facts);
  if (!known) heldCounts.set(ctx.facts, (known = new Map()));
  const key = `${c.name}\0${c.count}\0${c.to.map((d) => d.role).join(',')}`;
  let n = known.get(key);
  if (n === undefined) {
    n = connectionCeiling({ ...ctx, step: c, metric: 'established' }).value as number;
    known.set(key, n);
  }
  return n;
}

const BOUND_SKIPPED = 'connect() skips every port number that a socket holds through bind(), on any address';

/**
 * What connections earlier steps still hold take from a connect step's ports,
 * in the step's own unit (connections over its pairs, or ports per source with
 * bind: ip), or undefined when nothing earlier is held. The kernel's rules:
 * connect() picks a port per 4-tuple, so a held connection takes its port from
 * its own (source, destination) pair only; but it skips every port number that
 * any socket holds through bind() (the port's bucket is not connect-only,
 * __inet_hash_connect), whatever the address. bind(ip, 0) skips every port a
 * socket on that address holds, toward any destination. Where the split of
 * held connections over ports is not known (several sources or destinations
 * sharing port numbers in ways the kernel chose), the model says so rather
 * than guess.
 */
function portsTaken(ctx: ModelContext, step: ConnectStep, ports: number): { n: number; text: string; why: string } | undefined {
  // On a fleet, as this host ran them: its share of each, toward the same destination hosts as this step.
  const held = heldBefore(ctx, step);
  if (!held.length) return undefined;
  const names = held.map((c) => `"${c.name}"`).join(', ');
  const unclear = (why: string): never => {
    throw new ModelNotApplicable(`Model "ephemeral-ports" cannot tell how many ports ${names} ${held.length > 1 ? 'leave' : 'leaves'} to "${step.name}": ${why}`);
  };
  const facts = ctx.facts[step.host]!;
  const [lo, hi] = facts.portRange;
  const inRange = (port: number | undefined) => port !== undefined && port >= lo && port <= hi && reservedInRange(facts.reservedPorts, port, port) === 0;
  if (step.bind === 'reuseaddr') {
    // A port outside the ephemeral range is one no connect() or bind(ip, 0) picks: only another step sharing it could hold it.
    if (!inRange(step.port) && !held.some((c) => c.bind === 'reuseaddr' && c.port === step.port)) return undefined;
    unclear('with bind "reuseaddr", the shared port may be one that they hold');
  }
  const held1 = (c: ConnectStep) => heldCount(ctx, c);
  const pairsOf = (c: ConnectStep) => new Set(Array.from({ length: c.sources }, (_, i) => c.to.map((d) => `${i} ${d.role}:${d.port}`)).flat());
  const parts: string[] = [];
  // A port shared through bind: reuseaddr inside the range is one port, however many steps share it.
  const shared = new Map<number, ConnectStep>();
  for (const c of held) if (c.bind === 'reuseaddr' && inRange(c.port) && !shared.has(c.port!)) shared.set(c.port!, c);
  const sharedText = [...shared].map(([port, c]) => `port ${port} bound by "${c.name}"`);
  if (step.bind === 'ip') {
    // Ports in use per source address of this step, whatever their destination.
    const used = Array.from({ length: step.sources }, () => 0);
    for (const c of shared.values()) for (let i = 0; i < Math.min(c.sources, step.sources); i++) used[i]! += 1;
    parts.push(...sharedText);
    const connectDests = new Map<number, string>();
    for (const c of held) {
      if (c.bind === 'reuseaddr') continue;
      const n = held1(c);
      if (c.bind !== 'ip') {
        // connect() picks a port per destination: toward several, the same port number may serve each.
        const dests = c.to.map((d) => `${d.role}:${d.port}`).join(',');
        for (let i = 0; i < c.sources; i++) {
          if (c.to.length > 1 || (connectDests.has(i) && connectDests.get(i) !== dests)) unclear(`connect() may give one port to a connection toward each of several destinations`);
          connectDests.set(i, dests);
        }
      }
      if (n % c.sources !== 0) unclear(`the ${n} connections of "${c.name}" do not split evenly over its ${c.sources} source addresses`);
      for (let i = 0; i < Math.min(c.sources, step.sources); i++) used[i]! += n / c.sources;
      parts.push(`${n} held by "${c.name}"${c.sources > 1 ? ` (${n / c.sources} per source)` : ''}`);
    }
    const n = used.reduce((a, u) => a + Math.min(ports, u), 0);
    return parts.length
      ? { n, text: `${n} ports in use on its source address${step.sources > 1 ? 'es' : ''} (${parts.join(' + ')})`, why: 'bind() finds no port that another socket on the same address holds' }
      : undefined;
  }
  // connect() per 4-tuple (none, ip-no-port): held connections on this step's pairs, and port numbers held through bind().
  const mine = pairsOf(step);
  let onPairs = 0;
  let blocked = shared.size;
  parts.push(...sharedText);
  for (const c of held) {
    if (c.bind === 'reuseaddr') continue;
    const n = held1(c);
    if (c.bind === 'ip') {
      if (n >= ports * c.sources) blocked = ports;
      else if (c.sources === 1) blocked += n;
      else unclear(`bind() on ${c.sources} source addresses may pick the same port numbers on each`);
      parts.push(`${n} port${n === 1 ? '' : 's'} bound by "${c.name}"`);
    } else {
      const theirs = [...pairsOf(c)];
      const shared = theirs.filter((k) => mine.has(k)).length;
      if (shared === 0) continue;
      if (shared < theirs.length) unclear(`"${c.name}" spreads its connections over pairs of which "${step.name}" shares only some`);
      onPairs += n;
      parts.push(`${n} held by "${c.name}"`);
    }
  }
  if (!parts.length) return undefined;
  if (blocked >= ports) return { n: ports * mine.size, text: `every port (${parts.join(' + ')})`, why: BOUND_SKIPPED };
  // A port bound after a connection took it on another address would be counted twice: say so rather than guess.
  if (blocked > 0 && onPairs > 0) unclear('ports held through bind() and ports held by connect() may be the same numbers');
  const n = blocked * mine.size + onPairs;
  if (!blocked) return { n, text: parts.join(' − '), why: 'connections still held keep their ports on their own pairs' };
  return { n, text: mine.size > 1 ? `(${parts.join(' + ')}) × ${mine.size} pairs` : parts.join(' + '), why: BOUND_SKIPPED };
}

/**
 * How many connections the ephemeral port range allows: per source address,
 * the range size; per 4-tuple unless the port is chosen at bind() time.
 */
export function ephemeralPorts(ctx: ModelContext): ModelOutput {
  const step = connectStep(ctx, 'ephemeral-ports');
  const facts = ctx.facts[step.host];
  if (!facts) throw new ModelNotApplicable(`No facts for host "${step.host}"`);
  const [lo, hi] = facts.portRange;
  const { reserved, ports } = usablePorts(facts);
  const sources = step.sources;
  const dests = step.to.length;
  let capacity: number;
  let formula = `${hi} − ${lo} + 1${reserved ? ` − ${reserved} reserved` : ''}`;
  const times = `${sources} source${sources > 1 ? 's' : ''} × ${dests} destination${dests > 1 ? 's' : ''}`;
  // What the capacity counts: ports when one range is the whole answer, connections when it is multiplied.
  let unit = 'ports';
  let why: string;
  let fails: string;
  switch (step.bind) {
    case 'ip':
      capacity = ports * sources;
      if (sources > 1) {
        formula = `(${formula}) ports × ${sources} sources`;
        unit = 'connections';
      }
      why = 'bind() before connect() picks the port per source address, so extra destinations add nothing';
      fails = 'Once every port is bound for the source address, bind() finds none free (EADDRINUSE) before connect() is reached';
      break;
    case 'reuseaddr':
      capacity = sources * dests;
      formula = `1 port${step.port !== undefined ? ` (${step.port})` : ''} × ${times}`;
      unit = 'connections';
      why = 'SO_REUSEADDR lets one local port carry one connection per distinct destination';
      // bind() itself succeeds: with SO_REUSEADDR on every socket and none of them
      // listening, sockets may share the port. It is connect() that finds the
      // 4-tuple taken (__inet_hash_connect → __inet_check_established), and the
      // kernel reports that as EADDRNOTAVAIL, not EADDRINUSE (seen on 6.18).
      fails = 'Once each destination has its connection, bind() to the shared port still succeeds but connect() finds the 4-tuple in use (EADDRNOTAVAIL)';
      break;
    default:
      capacity = ports * sources * dests;
      if (sources > 1 || dests > 1) {
        formula = `(${formula}) ports × ${times}`;
        unit = 'connections';
      }
      why = 'the kernel picks a free port per 4-tuple: each source address and each destination has the whole range';
      fails = 'Once every port is in use for the 4-tuple, connect() finds none free (EADDRNOTAVAIL)';
  }
  const taken = portsTaken(ctx, step, ports);
  if (taken) {
    formula = `${unit === 'ports' ? formula : `(${formula})`} − ${taken.text}`;
    capacity = Math.max(0, capacity - taken.n);
    unit = 'connections';
    why += `; ${taken.why}`;
  }
  const value = Math.min(capacity, step.count);
  const capped = step.count < capacity ? `; the step opens at most ${nf(step.count)}, so ${nf(value)}` : '';
  if (ctx.metric === 'firstError') {
    // Only bind: ip fails in bind() (inet_csk_get_port: no free port, EADDRINUSE).
    // Every other mode fails in connect(): with none and ip-no-port no port is free
    // for the 4-tuple; with reuseaddr bind() shares the port and connect() finds the
    // 4-tuple taken. The kernel says EADDRNOTAVAIL for both (measured on 6.18).
    const err = step.count > capacity ? (step.bind === 'ip' ? 'EADDRINUSE' : 'EADDRNOTAVAIL') : null;
    return {
      value: err,
      derivation: `${formula} = ${nf(capacity)} ${unit} ${step.count > capacity ? '<' : '≥'} count ${nf(step.count)} → ${err ?? 'no error'}`,
      explanation: `${fails}: ${why}`,
    };
  }
  if (ctx.metric !== 'established') throw new ModelNotApplicable(`Model "ephemeral-ports" predicts "established" or "firstError", not "${ctx.metric}"`);
  return {
    value,
    derivation: `${formula} = ${nf(capacity)} ${unit} for ${tupleText(ctx, step)}${capped}`,
    explanation: `${step.bind === 'reuseaddr' ? `every socket on ${step.host} binds local port ${step.port}` : `net.ipv4.ip_local_port_range on ${step.host} is ${lo}–${hi}`}; ${why}`,
  };
}

/**
 * How the agent spreads connections over worker processes is the agent's rule
 * (runner/agent/lab_agent/workers.py), reported in its facts as provisioned:
 * `workerFds`, the fds a worker holds before its first socket (stdin, stdout,
 * stderr and its two pipes to the agent), so one worker opens nofile −
 * workerFds sockets before EMFILE; and `socketsPerWorker`, how many it puts in
 * each worker when a step leaves `processes` unset. The model reads both, so
 * it cannot drift from what the agent does.
 */
export function fdLimit(ctx: ModelContext): ModelOutput {
  const step = connectStep(ctx, 'fd-limit');
  const facts = ctx.facts[step.host];
  if (!facts) throw new ModelNotApplicable(`No facts for host "${step.host}"`);
  if (ctx.metric === 'workers') {
    if (step.processes) {
      return { value: step.processes, derivation: `the step sets processes: ${step.processes}`, explanation: 'A step that sets "processes" gets exactly that many workers' };
    }
    // The agent fills one worker to its budget before it starts the next.
    const connections = ephemeralPorts({ ...ctx, metric: 'established' }).value as number;
    const per = facts.socketsPerWorker;
    const workers = Math.max(1, Math.ceil(connections / per));
    return {
      value: workers,
      derivation: `⌈${connections} connections ÷ ${per} sockets per worker (ulimit -n ${facts.nofileSoft} less a margin)⌉ = ${workers} worker process${workers > 1 ? 'es' : ''}`,
      explanation: `A process holds at most ulimit -n fds, so the agent spreads connections over workers, each filled to ${per} sockets (its facts say so)`,
    };
  }
  if (!step.processes) throw new ModelNotApplicable('Model "fd-limit" needs the step to set "processes"');
  const per = facts.nofileSoft - facts.workerFds;
  const capacity = per * step.processes;
  const value = Math.min(capacity, step.count);
  const formula = `${step.processes} process${step.processes > 1 ? 'es' : ''} × (ulimit -n ${facts.nofileSoft} − ${facts.workerFds} fds held before the first socket) = ${capacity} sockets`;
  if (ctx.metric === 'firstError') {
    const err = step.count > capacity ? 'EMFILE' : null;
    return {
      value: err,
      derivation: `${formula} ${step.count > capacity ? '<' : '≥'} count ${step.count} → ${err ?? 'no error'}`,
      explanation: 'A process that holds RLIMIT_NOFILE fds gets EMFILE from socket(): it has no fd number left below the limit',
    };
  }
  if (ctx.metric !== 'established') throw new ModelNotApplicable(`Model "fd-limit" predicts "established", "firstError" or "workers", not "${ctx.metric}"`);
  return {
    value,
    derivation: `${formula}${step.count < capacity ? `; the step opens at most ${step.count}, so ${value}` : ''}`,
    explanation: `Each worker may hold ulimit -n fds; ${facts.workerFds} of them are stdin, stdout, stderr and its two pipes to the agent`,
  };
}

/** The tighter of the port and fd ceilings. */
export function connectionCeiling(ctx: ModelContext): ModelOutput {
  const ports = ephemeralPorts({ ...ctx, metric: 'established' });
  const step = connectStep(ctx, 'connection-ceiling');
  const outs = [ports];
  if (step.processes) outs.push(fdLimit({ ...ctx, metric: 'established' }));
  const best = outs.reduce((a, b) => ((b.value as number) < (a.value as number) ? b : a));
  return {
    value: best.value,
    derivation: `min(${outs.map((o) => o.value).join(', ')}) = ${best.value}: ${best.derivation}`,
    explanation: best.explanation,
  };
}

/**
 * Slab bytes per idle connection: the objects each side allocates (see
 * CONNECTION_OBJECTS), priced with the measured host's own object sizes.
 */
export function memoryPerConnection(ctx: ModelContext): ModelOutput {
  if (ctx.step.kind !== 'fit') throw new ModelNotApplicable(`Model "memory-per-connection" applies to fit steps, not "${ctx.step.kind}"`);
  const host = ctx.step.host;
  const facts = ctx.facts[host];
  if (!facts) throw new ModelNotApplicable(`No facts for host "${host}"`);
  if (ctx.step.per === 'time-wait') {
    if (ctx.metric !== 'bytesPerConnection') throw new ModelNotApplicable(`A TIME_WAIT socket has one side: model "memory-per-connection" predicts its "bytesPerConnection", not "${ctx.metric}"`);
    const tw = predictedBytes(facts, TIME_WAIT_OBJECTS);
    const missing = tw.missing.length ? `; ${tw.missing.join(', ')}: not in this kernel's slabinfo, not counted` : '';
    return {
      value: tw.client,
      derivation: `TIME_WAIT socket: ${objectsFormula(tw.priced, 'client')} = ${tw.client} B${missing} (the port's bind buckets it keeps were the connection's already)`,
      explanation:
        'After an active close the socket, its inode, file and dentry are freed; for 60 s a small timewait socket stays in ' +
        `the hash tables to absorb late segments, still holding its port's bind buckets. Priced at ${facts.kernel}'s object sizes on ${host}`,
      reference: { ...CLASSIC_TIME_WAIT_BYTES },
    };
  }
  const before = ctx.steps.slice(0, ctx.steps.findIndex((s) => s.name === ctx.step.name));
  const connects = before.filter((s): s is ConnectStep => s.kind === 'connect');
  const sides = sidesOn(host, connects, ctx.facts);
  // The buckets of connections aborted before the fit are gone with them; a graceful
  // release leaves the client's TIME_WAIT sockets, which keep their ports' buckets for 60 s.
  const released = ctx.release === 'graceful' ? new Set<string>() : releasedIn(before);
  const buckets = bucketSharesOn(host, connects.filter((c) => !released.has(c.name)), ctx.facts);
  const p = predictedBytes(facts, buckets ? withBucketShares(buckets) : undefined);
  // What the formula leaves out or prices at a share, after it.
  const notes =
    (p.missing.length ? `; ${p.missing.join(', ')}: not in this kernel's slabinfo, not counted` : '') +
    (buckets && (buckets.perPort !== 1 || buckets.perPortAddress !== 1)
      ? `; bind buckets: the connections planned before this fit (${buckets.connections}) use ${buckets.ports} local ports ` +
        `and ${buckets.portAddresses} (port, address) pairs between them, expected: ${buckets.perPort} and ${buckets.perPortAddress} per connection`
      : '');
  const client = `client socket: ${objectsFormula(p.priced, 'client')} = ${p.client} B`;
  const server = `accepted socket: ${objectsFormula(p.priced, 'server')} = ${p.server} B`;
  const explanation =
    'An idle connection holds no data, only objects: each end has a socket (struct tcp_sock), the socket inode, ' +
    'the file behind its fd and that file\'s dentry; the connecting end also holds its local port\'s bind buckets. ' +
    `Each is priced at its slab cache's object size on ${facts.kernel}, read from /proc/slabinfo on ${host}`;
  const reference = { value: CLASSIC_SOCKET_BYTES.value, source: CLASSIC_SOCKET_BYTES.source };
  switch (ctx.metric) {
    case 'clientBytesPerSocket':
      if (!sides.client) throw new ModelNotApplicable(`${host} holds no client sockets: its kernel is not the connecting host's`);
      return { value: p.client, derivation: client + notes, explanation, reference };
    case 'serverBytesPerSocket':
      if (!sides.server) throw new ModelNotApplicable(`${host} holds no accepted sockets: its kernel is not the listening host's`);
      return { value: p.server, derivation: server + notes, explanation, reference };
    case 'bytesPerConnection': {
      const parts = [sides.client ? p.client : 0, sides.server ? p.server : 0];
      const value = Math.round((parts[0]! + parts[1]!) * 10) / 10;
      const both = sides.client && sides.server;
      return {
        value,
        derivation: both
          ? `${client}; ${server}; both ends on one kernel: ${p.client} + ${p.server} = ${value} B${notes}`
          : `${sides.client ? client : server}: the other end is on another kernel${notes}`,
        explanation,
        reference: both ? { value: 2 * CLASSIC_SOCKET_BYTES.value, source: `2 × ${CLASSIC_SOCKET_BYTES.source}` } : reference,
      };
    }
    default:
      throw new ModelNotApplicable(
        `Model "memory-per-connection" predicts "bytesPerConnection", "clientBytesPerSocket" or "serverBytesPerSocket", not "${ctx.metric}"`,
      );
  }
}

/**
 * The bind buckets a fit's connections hold on `host`'s kernel, per connection:
 * the connect steps before the fit whose connecting host shares that kernel,
 * each host's pairs counted apart (the buckets are per network namespace).
 * undefined when the kernel holds no connecting side.
 */
function bucketSharesOn(host: string, connects: ConnectStep[], facts: Record<string, HostFacts>): BucketShares | undefined {
  const mine = connects.filter((c) => c.host === host || (facts[c.host] && facts[host] && sameKernel(facts[c.host]!, facts[host]!)));
  if (!mine.length) return undefined;
  const byHost = new Map<string, ConnectStep[]>();
  for (const c of mine) byHost.set(c.host, [...(byHost.get(c.host) ?? []), c]);
  return sumBucketShares([...byHost].map(([h, steps]) => {
    const range = facts[h] ? usablePorts(facts[h]!).ports : 0;
    const pairs: PortPair[] = steps.flatMap((c) =>
      Array.from({ length: c.sources }, (_, i) =>
        c.to.map((d) => ({
          source: String(i),
          destination: `${d.role}:${d.port}`,
          connections: c.count / (c.sources * c.to.length),
          ...(c.bind === 'reuseaddr' ? { port: c.port ?? 0 } : {}),
          ...(c.bind === 'ip' ? { perSource: true } : {}),
        })),
      ).flat(),
    );
    return bindBucketShares(pairs, range);
  }));
}

/** TCP_TIMEWAIT_LEN (include/net/tcp.h): fixed at 60 s, no sysctl changes it. */
export const TIME_WAIT_MS = 60_000;
/** net.ipv4.tcp_tw_reuse_delay's default (6.13+; before, a fixed 1 s): how old a TIME_WAIT must be to be reused. */
export const TW_REUSE_DELAY_MS = 1000;

type ReleaseStep = Extract<Step, { kind: 'release' }>;

/** The connect steps a graceful release closed before `upTo`, where `host` closed first, with the ms slept since. */
function timeWaitSources(ctx: ModelContext, host: string, upTo: number, expired: string[] = []) {
  const out: Array<{ connect: ConnectStep; release: ReleaseStep; sleptMs: number }> = [];
  if (ctx.release !== 'graceful') return out;
  const sleeps = (from: number, to: number) => ctx.steps.slice(from, to).reduce((n, x) => n + (x.kind === 'sleep' ? x.durationMs : 0), 0);
  ctx.steps.slice(0, upTo).forEach((s, i) => {
    if (s.kind !== 'release') return;
    for (const [k, name] of s.steps.entries()) {
      const c = ctx.steps.find((x): x is ConnectStep => x.kind === 'connect' && x.name === name);
      if (!c || c.host !== host) continue;
      // The side that closes first holds TIME_WAIT: the client, when its listen closes later or never.
      const listens = c.to.map((d) => ctx.steps.find((x) => x.kind === 'listen' && x.host === d.role && x.port === d.port)?.name);
      if (listens.some((l) => l !== undefined && s.steps.indexOf(l) !== -1 && s.steps.indexOf(l) < k)) continue;
      // Until the server's FIN the client waits in FIN_WAIT2, orphaned, for tcp_fin_timeout at most:
      // a server that closes in a later step, past that, finds the 4-tuple gone (no TIME_WAIT, the port free).
      // Within it, TIME_WAIT starts at the server's FIN: its 60 s, and tcp_tw_reuse's age, count from there.
      let finSeenAt = i;
      if (!listens.some((l) => l !== undefined && s.steps.indexOf(l) > k)) {
        const later = ctx.steps.findIndex((x, j) => j > i && j < upTo && x.kind === 'release' && listens.some((l) => l !== undefined && x.steps.includes(l)));
        const waitedMs = sleeps(i + 1, later === -1 ? upTo : later);
        const finMs = (ctx.facts[host]?.tcpFinTimeout ?? 60) * 1000;
        if (waitedMs >= finMs) {
          const peer = later === -1 ? 'the server had not closed' : `the server closed in ${ctx.steps[later]!.name}`;
          expired.push(`${heldCount(ctx, asRun(ctx, c))} of ${name} left FIN_WAIT2 after tcp_fin_timeout ${finMs / 1000} s (${peer} ${waitedMs / 1000} s after ${s.name}): no TIME_WAIT, their ports free`);
          continue;
        }
        if (later !== -1) finSeenAt = later;
      }
      out.push({ connect: asRun(ctx, c), release: s, sleptMs: sleeps(finSeenAt + 1, upTo) });
    }
  });
  return out;
}

/** What the kernel lets connect() do with ports in TIME_WAIT toward the same destination. */
function twReuse(ctx: ModelContext, step: ConnectStep, sleptMs: number): { reusable: boolean; why: string } {
  const facts = ctx.facts[step.host]!;
  const reuse = facts.tcpTwReuse;
  const delay = facts.tcpTwReuseDelayMs ?? TW_REUSE_DELAY_MS;
  const loopback = step.to.every((d) => (ctx.addresses[d.role]?.[0] ?? '').startsWith('127.'));
  if (sleptMs >= TIME_WAIT_MS) return { reusable: true, why: `${sleptMs / 1000} s ≥ 60 s: TIME_WAIT is over` };
  const allowed = reuse === 1 || (reuse === 2 && loopback);
  const setting = `net.ipv4.tcp_tw_reuse = ${reuse}${reuse === 2 ? ` (loopback only; ${loopback ? 'loopback' : 'the destination is not loopback'})` : ''}`;
  if (!allowed) return { reusable: false, why: `${setting}: a port in TIME_WAIT toward the destination is not reused for 60 s` };
  if (sleptMs < delay) return { reusable: false, why: `${setting}, but the TIME_WAIT is ${sleptMs} ms old, < tcp_tw_reuse_delay ${delay} ms` };
  return { reusable: true, why: `${setting} and the TIME_WAIT is ≥ ${sleptMs / 1000} s old (≥ tcp_tw_reuse_delay ${delay} ms): connect() takes the port over` };
}

/**
 * TIME_WAIT: the side that closes first keeps each connection's 4-tuple for
 * 60 s (TCP_TIMEWAIT_LEN; tcp_fin_timeout does not change it). For a connect
 * step: ports still in TIME_WAIT toward the same destination are unusable unless
 * tcp_tw_reuse allows them. For a snapshot: the host's TIME_WAIT count.
 */
export function timeWait(ctx: ModelContext): ModelOutput {
  // By name: a fleet gives each host a copy of the step with its share of the count.
  const index = ctx.steps.findIndex((s) => s.name === ctx.step.name);
  if (ctx.step.kind === 'snapshot') {
    if (ctx.metric !== 'tcpTw') throw new ModelNotApplicable(`Model "time-wait" predicts a snapshot's "tcpTw", not "${ctx.metric}"`);
    const host = ctx.step.host;
    const facts = ctx.facts[host];
    if (!facts) throw new ModelNotApplicable(`No facts for host "${host}"`);
    const expired: string[] = [];
    const sources = timeWaitSources(ctx, host, index, expired).filter((t) => t.sleptMs < TIME_WAIT_MS);
    const closed = sources.map((t) => heldCount(ctx, t.connect));
    const total = closed.reduce((a, b) => a + b, 0);
    // Later connects that took TIME_WAIT ports over end those TIME_WAITs.
    const reused = ctx.steps.slice(0, index).filter((s): s is ConnectStep => s.kind === 'connect' && s.host === host).map((c) => {
      const before = timeWaitSources(ctx, host, ctx.steps.indexOf(c));
      if (!before.length) return 0;
      return twReuse(ctx, c, Math.min(...before.map((b) => b.sleptMs))).reusable ? heldCount(ctx, asRun(ctx, c)) : 0;
    }).reduce((a, b) => a + b, 0);
    const value = Math.max(0, Math.min(total - reused, facts.tcpMaxTwBuckets ?? Infinity));
    const fin = facts.tcpFinTimeout;
    return {
      value,
      derivation:
        `${sources.map((t, i) => `${closed[i]} closed first by ${host} in ${t.release.name} (${t.sleptMs / 1000} s before)`).join(' + ') || 'no graceful close by this host'}${reused ? ` − ${reused} taken over by tcp_tw_reuse` : ''} = ${value} in TIME_WAIT: it lasts 60 s, tcp_fin_timeout ${fin} s notwithstanding` +
        expired.map((e) => `; ${e}`).join(''),
      explanation: `The side that closes first keeps each 4-tuple in TIME_WAIT for TCP_TIMEWAIT_LEN, 60 s, fixed in the kernel, so late segments of the old connection cannot land in a new one. net.ipv4.tcp_fin_timeout (${fin} s here) bounds FIN_WAIT2, not TIME_WAIT`,
    };
  }
  const step = connectStep(ctx, 'time-wait');
  if (!ctx.facts[step.host]) throw new ModelNotApplicable(`No facts for host "${step.host}"`);
  const all = ephemeralPorts({ ...ctx, step: { ...step, count: Number.MAX_SAFE_INTEGER }, metric: 'established' }).value as number;
  // A fleet's host step names each destination host as "role/host": the role is what the lab's steps name.
  const role = (r: string) => r.split('/')[0];
  const sameDest = (c: ConnectStep) => c.to.some((d) => step.to.some((e) => role(e.role) === role(d.role) && e.port === d.port));
  const expired: string[] = [];
  const sources = timeWaitSources(ctx, step.host, index, expired).filter((t) => sameDest(t.connect));
  const held = sources.reduce((n, t) => n + heldCount(ctx, t.connect), 0);
  const slept = sources.length ? Math.min(...sources.map((t) => t.sleptMs)) : TIME_WAIT_MS;
  const r = twReuse(ctx, step, slept);
  const capacity = r.reusable ? all : Math.max(0, all - held);
  const dest = step.to.map((d) => `${destName(d.role)}:${d.port}`).join(', ');
  const formula = !sources.length
    ? `${all} ports, none in TIME_WAIT${expired.length ? ` (${expired.join('; ')})` : ''}`
    : r.reusable
      ? `${all} ports, the ${held} in TIME_WAIT toward ${dest} taken over = ${capacity}`
      : `${all} ports − ${held} in TIME_WAIT toward ${dest} = ${capacity}`;
  if (ctx.metric === 'firstError') {
    const err = step.count > capacity ? 'EADDRNOTAVAIL' : null;
    return { value: err, derivation: `${formula} ${step.count > capacity ? '<' : '≥'} count ${step.count} → ${err ?? 'no error'}`, explanation: r.why };
  }
  if (ctx.metric !== 'established') throw new ModelNotApplicable(`Model "time-wait" predicts "established" or "firstError" of a connect step, not "${ctx.metric}"`);
  return {
    value: Math.min(step.count, capacity),
    derivation: `${formula}${step.count < capacity ? `; the step opens at most ${step.count}` : ''}`,
    explanation: r.why,
  };
}

type ListenStep = Extract<Step, { kind: 'listen' }>;

/** The listen step a connect step's destination reaches: the last one on that host and port before it. */
function listenFor(ctx: ModelContext, before: number, dest: string, port: number): ListenStep | undefined {
  // A fleet's host step names each destination host "role/host", and keys its facts so.
  const role = dest.split('/')[0];
  const listen = ctx.steps
    .slice(0, before)
    .filter((s): s is ListenStep => s.kind === 'listen' && s.host === role && s.port === port)
    .pop();
  return listen && { ...listen, host: dest };
}

/** TCP_TIMEOUT_INIT and TCP_RTO_MAX in seconds: the SYN-ACK's retransmission timer, doubling up to its cap. */
const SYNACK_TIMEOUT_INIT_S = 1;
const RTO_MAX_S = 120;

/**
 * When a deferred handshake completes: TCP_DEFER_ACCEPT's seconds become a
 * count of SYN-ACK retransmissions (secs_to_retrans in
 * net/ipv4/inet_connection_sock.c), and the listener takes the client's ACK
 * only once the request has timed out that many times, so after the sum of
 * those timeouts: 1 s for defer_accept 1, 3 s for 2 or 3, 7 s for 4 to 7.
 */
export function deferredAfterS(deferS: number): number {
  if (deferS <= 0) return 0;
  let timeout = SYNACK_TIMEOUT_INIT_S;
  let period = timeout;
  let n = 1;
  while (deferS > period && n < 255) {
    n++;
    timeout = Math.min(timeout * 2, RTO_MAX_S);
    period += timeout;
  }
  return period;
}

/** What `offered` sequential connects meet at a listener that never accepts (one handshake at a time). */
export interface QueueOutcome {
  /** connects that complete on the client */
  established: number;
  /** connections in the accept queue once every deferred handshake has ended */
  queued: number;
  /** connections the client saw established and the listener then reset (tcp_abort_on_overflow = 1) */
  reset: number;
  /** connections the client saw established and the listener never took (their last ACK dropped) */
  orphaned: number;
  /** seconds after the connects when deferred handshakes end (0: none deferred) */
  settledAfterS: number;
  formula: string;
}

/**
 * The accept queue holds min(backlog, somaxconn) + 1: listen() caps the
 * backlog at net.core.somaxconn, and the kernel calls the queue full only
 * when it holds more (sk_acceptq_is_full: ack_backlog > max_ack_backlog); a
 * SYN that finds it full is dropped (tcp_conn_request), so the client's
 * connect() times out. Without TCP_DEFER_ACCEPT a handshake completes inside
 * the client's connect() (one machine: no time between SYN and last ACK), so
 * the queue never overflows at the last ACK and tcp_abort_on_overflow has
 * nothing to act on. With it, the listener ignores the bare last ACK and keeps
 * the request in its SYN queue (at most min(backlog, somaxconn) + 1 requests;
 * with syncookies off also at most tcp_max_syn_backlog − tcp_max_syn_backlog/4
 * + 1, for peers it has no TCP metrics for) while the client already counts
 * the connection established. Once the SYN queue is full, syncookies = 1 answers
 * SYNs with a cookie: no request, no deferral, the connection goes straight
 * into the accept queue. When the deferral ends, the requests' ACKs meet the
 * accept queue: what no longer fits overflows at the last ACK, and the
 * listener resets it (tcp_abort_on_overflow = 1) or drops the ACK, leaving the
 * client with a connection the server never had (0).
 */
export function queueOutcome(l: ListenStep, f: HostFacts, offered: number): QueueOutcome {
  const max = Math.min(l.backlog, f.somaxconn);
  const holds = max + 1;
  const base = `min(backlog ${l.backlog}, somaxconn ${f.somaxconn}) + 1 = ${holds}`;
  const cookies = f.tcpSyncookies ?? 1;
  const abort = (f.tcpAbortOnOverflow ?? 0) === 1;
  if (!l.deferAcceptS || cookies === 2) {
    const est = Math.min(offered, holds);
    const why = l.deferAcceptS ? ' (tcp_syncookies = 2: every SYN gets a cookie, no request waits, nothing is deferred)' : '';
    return { established: est, queued: est, reset: 0, orphaned: 0, settledAfterS: 0, formula: `${base}${why}` };
  }
  const msb = f.tcpMaxSynBacklog;
  const bySynBacklog = msb - (msb >> 2) + 1;
  const synQueue = cookies === 0 ? Math.min(holds, bySynBacklog) : holds;
  const deferred = Math.min(offered, synQueue);
  const cookied = cookies === 1 ? Math.min(offered - deferred, holds) : 0;
  const room = holds - cookied;
  const entering = Math.min(deferred, room);
  const overflow = deferred - entering;
  const after = deferredAfterS(l.deferAcceptS);
  const synText =
    cookies === 0
      ? `SYN queue min(${holds}, tcp_max_syn_backlog ${msb} − ${msb >> 2} + 1 = ${bySynBacklog}) = ${synQueue} deferred (syncookies off)`
      : `SYN queue ${holds} deferred`;
  const formula =
    `${base}; defer_accept ${l.deferAcceptS} s: ${synText}` +
    (cookies === 1 ? ` + ${cookied} by syncookie straight into the accept queue` : '') +
    ` = ${deferred + cookied} established on the client; after ${after} s the ${deferred} deferred meet ${room} free place${room === 1 ? '' : 's'}: ${overflow} overflow` +
    (overflow ? (abort ? ', reset (tcp_abort_on_overflow 1)' : ', their ACK dropped (tcp_abort_on_overflow 0): the client keeps them') : '');
  return {
    established: deferred + cookied,
    queued: cookied + entering,
    reset: abort ? overflow : 0,
    orphaned: abort ? 0 : overflow,
    settledAfterS: after,
    formula,
  };
}

const ACCEPT_QUEUE_EXPLANATION =
  'A connection whose handshake completes waits in the listener\'s accept queue until accept() takes it. listen() caps the backlog at ' +
  'net.core.somaxconn, and the kernel drops a SYN once the queue holds more than that; the client, connecting one at a time, retransmits ' +
  'the SYN until its connect timeout. Without TCP_DEFER_ACCEPT the handshake completes inside connect(), so the queue only ever overflows at a SYN: ' +
  'tcp_max_syn_backlog (handshakes in flight: one) and tcp_abort_on_overflow (acts on a last ACK that overflows) do not matter. With it, ' +
  'requests wait in the SYN queue (syncookies take over when it is full) and their last ACKs meet the accept queue later, all at once: ' +
  'what overflows then is reset (tcp_abort_on_overflow 1) or silently kept by the client only (0)';

/** Connects from this lab to listener `l` between it and step `upTo`, and the connections they offer it. */
function offeredTo(ctx: ModelContext, l: ListenStep, upTo: number): { connects: ConnectStep[]; offered: number } {
  const li = ctx.steps.findIndex((s) => s.name === l.name);
  const connects = ctx.steps
    .slice(li + 1, upTo)
    .filter((s): s is ConnectStep => s.kind === 'connect' && s.to.some((d) => d.role.split('/')[0] === l.host.split('/')[0] && d.port === l.port));
  if (connects.some((c) => c.to.length > 1)) throw new ModelNotApplicable(`A connect to "${l.name}" has several destinations: its share of the queue is not known`);
  return { connects, offered: connects.reduce((n, c) => n + c.count, 0) };
}

/** Seconds slept between step `from` and step `to` (sleep steps only: a lower bound on the time between them). */
function sleptBetween(ctx: ModelContext, from: number, to: number): number {
  return ctx.steps.slice(from + 1, to).reduce((n, s) => n + (s.kind === 'sleep' ? s.durationMs / 1000 : 0), 0);
}

/**
 * The accept queue of a listener that never accepts: what sequential connects
 * see (established, then ETIMEDOUT), and what a snapshot reads afterwards
 * (see queueOutcome).
 */
export function acceptQueue(ctx: ModelContext): ModelOutput {
  // By name: a fleet gives each host a copy of the step with its share of the count.
  const index = ctx.steps.findIndex((s) => s.name === ctx.step.name);
  if (ctx.step.kind === 'snapshot') return acceptQueueSnapshot(ctx, index);
  const step = connectStep(ctx, 'accept-queue');
  const targets = step.to.map((d) => listenFor(ctx, index, d.role, d.port));
  if (targets.some((l) => !l || l.accept)) throw new ModelNotApplicable('Model "accept-queue" needs every destination to be a listen step with accept: false');
  const outs = targets.map((l) => {
    const f = ctx.facts[l!.host];
    if (!f) throw new ModelNotApplicable(`No facts for host "${l!.host}"`);
    // Connects before this one to the same listener took their places first.
    const earlier = offeredTo(ctx, l!, index).offered;
    // What the listener can still take: its whole outcome, less what earlier connects got.
    const all = queueOutcome(l!, f, Number.MAX_SAFE_INTEGER);
    const before = queueOutcome(l!, f, earlier);
    return { holds: all.established - before.established, formula: `${all.formula}${earlier ? ` − ${before.established} taken by earlier connects` : ''}` };
  });
  const capacity = outs.reduce((n, q) => n + q.holds, 0);
  const formula = outs.map((q) => q.formula).join(' + ');
  if (ctx.metric === 'firstError') {
    const err = step.count > capacity ? 'ETIMEDOUT' : null;
    return { value: err, derivation: `${formula} ${step.count > capacity ? '<' : '≥'} count ${step.count} → ${err ?? 'no error'}`, explanation: ACCEPT_QUEUE_EXPLANATION };
  }
  if (ctx.metric !== 'established') throw new ModelNotApplicable(`Model "accept-queue" predicts "established" or "firstError" of a connect step, not "${ctx.metric}"`);
  const value = Math.min(step.count, capacity);
  return { value, derivation: `${formula}${step.count < capacity ? `; the step opens at most ${step.count}` : ''}`, explanation: ACCEPT_QUEUE_EXPLANATION };
}

/** Listen steps on `role` still open at step `upTo` (not released before it). */
function openListens(ctx: ModelContext, role: string, upTo: number): ListenStep[] {
  const before = ctx.steps.slice(0, upTo);
  const released = releasedIn(before);
  return before.filter((s): s is ListenStep => s.kind === 'listen' && s.host === role && !released.has(s.name));
}

/**
 * A snapshot's view of the accept queue, as `ss` shows it: on the listening
 * host the queue's length (Recv-Q of a LISTEN socket) and the most it holds
 * (Send-Q: the backlog capped at somaxconn); on any host, the ESTABLISHED
 * sockets to or from the lab's listen ports (a client's, after the resets).
 */
function acceptQueueSnapshot(ctx: ModelContext, index: number): ModelOutput {
  const step = ctx.step as Extract<Step, { kind: 'snapshot' }>;
  const f = ctx.facts[step.host];
  if (!f) throw new ModelNotApplicable(`No facts for host "${step.host}"`);
  const released = releasedIn(ctx.steps.slice(0, index));
  // Each listener's outcome, checked to be settled by the time of this snapshot.
  const settled = (l: ListenStep, f: HostFacts) => {
    const { connects, offered } = offeredTo(ctx, l, index);
    const o = queueOutcome(l, f, offered);
    if (o.settledAfterS && connects.length) {
      const last = Math.max(...connects.map((c) => ctx.steps.indexOf(c)));
      const slept = sleptBetween(ctx, last, index);
      if (slept < o.settledAfterS) {
        throw new ModelNotApplicable(`Deferred handshakes to "${l.name}" end ${o.settledAfterS} s after the connects, and "${step.name}" comes ${slept} s after: sleep longer before it`);
      }
    }
    return o;
  };
  if (ctx.metric === 'establishedSockets') {
    const parts: Array<{ value: number; text: string }> = [];
    const connects = ctx.steps.slice(0, index).filter((s): s is ConnectStep => s.kind === 'connect' && s.host === step.host && !released.has(s.name));
    for (const c of connects) {
      if (c.to.length > 1) throw new ModelNotApplicable(`Connect "${c.name}" has several destinations: the model follows one listener`);
      const l = listenFor(ctx, ctx.steps.indexOf(c), c.to[0]!.role, c.to[0]!.port);
      if (!l || l.accept || released.has(l.name)) throw new ModelNotApplicable(`Connect "${c.name}" does not go to an open listen step with accept: false`);
      const lf = ctx.facts[l.host];
      if (!lf) throw new ModelNotApplicable(`No facts for host "${l.host}"`);
      const o = settled(l, lf);
      const alive = o.established - o.reset;
      parts.push({ value: alive, text: `${c.name}: ${o.formula}${o.reset ? `; ${o.established} − ${o.reset} reset = ${alive}` : `; ${alive} still established`}` });
    }
    for (const l of openListens(ctx, step.host, index)) {
      if (l.accept) throw new ModelNotApplicable(`"${l.name}" on "${step.host}" accepts: the model does not know how many it has taken`);
      const o = settled(l, f);
      if (o.queued) parts.push({ value: o.queued, text: `${l.name}: ${o.queued} queued connection${o.queued === 1 ? '' : 's'} on the server side` });
    }
    if (!parts.length) throw new ModelNotApplicable(`Snapshot "${step.name}": "${step.host}" holds no connection the model follows`);
    const value = parts.reduce((n, p) => n + p.value, 0);
    return {
      value,
      derivation: parts.map((p) => p.text).join(' + ') + (parts.length > 1 ? ` = ${value}` : ''),
      explanation:
        'ESTABLISHED TCP sockets of the host to or from the lab\'s listen ports (/proc/net/tcp): a connection the listener reset is gone from the client ' +
        '(its socket is closed, ECONNRESET), one whose last ACK was dropped is still established there though the server never queued it',
    };
  }
  const listens = openListens(ctx, step.host, index);
  if (!listens.length) throw new ModelNotApplicable(`No listen step of "${step.host}" is open at snapshot "${step.name}"`);
  const max = (l: ListenStep) => Math.min(l.backlog, f.somaxconn);
  if (ctx.metric === 'acceptQueueMax') {
    const value = listens.reduce((n, l) => n + max(l), 0);
    return {
      value,
      derivation: listens.map((l) => `${l.name} (port ${l.port}): min(backlog ${l.backlog}, somaxconn ${f.somaxconn}) = ${max(l)}`).join(' + ') + (listens.length > 1 ? ` = ${value}` : ''),
      explanation: 'listen() caps the backlog at net.core.somaxconn and stores it as the queue\'s limit (sk_max_ack_backlog): what `ss -lnt` shows as Send-Q of a LISTEN socket',
    };
  }
  if (ctx.metric !== 'acceptQueue') throw new ModelNotApplicable(`Model "accept-queue" predicts a snapshot's "acceptQueue", "acceptQueueMax" or "establishedSockets", not "${ctx.metric}"`);
  const parts = listens.map((l) => {
    if (l.accept) return { value: 0, text: `${l.name} (port ${l.port}) accepts: its queue is emptied as it fills, 0` };
    const { offered } = offeredTo(ctx, l, index);
    const o = settled(l, f);
    return { value: o.queued, text: `${l.name} (port ${l.port}), ${offered} connecting: ${o.formula} → ${o.queued} queued` };
  });
  const value = parts.reduce((n, p) => n + p.value, 0);
  return {
    value,
    derivation: parts.map((p) => p.text).join(' + ') + (parts.length > 1 ? ` = ${value}` : ''),
    explanation:
      'Connections whose handshake completed wait in the accept queue until accept() takes it (Recv-Q of a LISTEN socket in `ss -lnt`). ' +
      'A listener that never accepts keeps every one of them, up to one more than its limit: the kernel calls the queue full only when it holds more than the limit',
  };
}


/**
 * Every ceiling on how many connections a connect step can hold, each from
 * the hosts' own facts, and the one that binds: ephemeral ports (range ×
 * sources × destinations), fds (nofile per worker × the workers a step may
 * use, nr_open; file-max, unless the agent runs as root), kernel memory (MemAvailable ÷ the slab cost of a
 * connection, both ends when they share a kernel), and the accept queue of a
 * listener that does not accept.
 */
export function capacity(ctx: ModelContext): ModelOutput {
  const step = connectStep(ctx, 'capacity');
  const client = ctx.facts[step.host];
  if (!client) throw new ModelNotApplicable(`No facts for host "${step.host}"`);
  if (ctx.metric !== 'established') throw new ModelNotApplicable(`Model "capacity" predicts "established", not "${ctx.metric}"`);
  // By name: a fleet gives each host a copy of the step with its share of the count.
  const index = ctx.steps.findIndex((s) => s.name === ctx.step.name);
  const ceilings: Array<{ name: string; value: number; formula: string }> = [];

  const ports = ephemeralPorts({ ...ctx, step: { ...step, count: Number.MAX_SAFE_INTEGER }, metric: 'established' });
  ceilings.push({ name: 'ephemeral ports', value: ports.value as number, formula: ports.derivation });

  // fds: every connection is an fd on the client; workers are forked as the fd limit needs, up to the step's processes.
  // With processes set a worker fills to EMFILE (nofile − workerFds); without, the agent fills each to socketsPerWorker (its facts).
  const perWorker = step.processes ? client.nofileSoft - client.workerFds : client.socketsPerWorker;
  const workers = step.processes ?? MAX_PROCESSES;
  ceilings.push({
    name: 'fds per process × processes',
    value: perWorker * workers,
    formula: `${step.processes ? `(ulimit -n ${client.nofileSoft} − ${client.workerFds})` : `${perWorker} sockets per worker`} × ${workers} worker processes${step.processes ? '' : ' at most'} = ${perWorker * workers} (nofile ≤ fs.nr_open ${client.nrOpen})`,
  });
  // Kernel-wide: both ends' fds and objects count when the client and a server share this kernel.
  const servers = [...new Set(step.to.map((d) => d.role))];
  const sharesKernel = servers.some((r) => ctx.facts[r] && sameKernel(ctx.facts[r]!, client));
  const fdsPerConnection = sharesKernel ? 2 : 1;
  const fileMax = `fs.file-max ${client.fileMax} open files on the kernel ÷ ${fdsPerConnection} fd${fdsPerConnection > 1 ? 's' : ''} per connection`;
  const exempt = passesFileMax(client);
  if (!exempt) ceilings.push({ name: 'fs.file-max', value: Math.floor(client.fileMax / fdsPerConnection), formula: fileMax });

  const cost = predictedBytes(client);
  const perConnection = cost.client + (sharesKernel ? cost.server : 0);
  const byMemory = Math.floor((client.memAvailableKiB * 1024) / perConnection);
  ceilings.push({
    name: 'kernel memory',
    value: byMemory,
    formula: `MemAvailable ${client.memAvailableKiB} KiB ÷ ${perConnection} B per connection (${sharesKernel ? `both ends: ${cost.client} + ${cost.server}` : `the client end: ${cost.client}`}, slab objects at this kernel's sizes) = ${byMemory}`,
  });

  // A listener that never accepts holds only its queue.
  const queues = step.to.map((d) => listenFor(ctx, index, d.role, d.port));
  if (queues.every((l) => l && !l.accept)) {
    const n = queues.reduce((t, l) => t + Math.min(l!.backlog, ctx.facts[l!.host]?.somaxconn ?? l!.backlog) + 1, 0) * step.sources;
    ceilings.push({ name: 'accept queue', value: n, formula: `min(backlog, somaxconn) + 1 per listener = ${n}` });
  }

  const binding = ceilings.reduce((a, b) => (b.value < a.value ? b : a));
  const value = Math.min(step.count, binding.value);
  const share = ((100 * step.count) / binding.value).toFixed(1);
  return {
    value,
    derivation:
      `${ceilings.map((c) => `${c.name}: ${c.formula}`).join('; ')}` +
      (exempt ? `; not fs.file-max (${client.fileMax}): the agent has CAP_SYS_ADMIN, which passes it` : '') +
      `. Binding: ${binding.name}, ${binding.value}` +
      `; the step asks for ${step.count} = ${share}% of it${step.count < binding.value ? '' : `, so ${value}`}`,
    explanation: `The most connections ${step.host} can hold toward ${step.to.map((d) => `${destName(d.role)}:${d.port}`).join(', ')} is the smallest of its ceilings: here ${binding.name}`,
  };
}

export const MODELS: Record<ModelName, (ctx: ModelContext) => ModelOutput> = {
  'ephemeral-ports': ephemeralPorts,
  'fd-limit': fdLimit,
  'connection-ceiling': connectionCeiling,
  'memory-per-connection': memoryPerConnection,
  'time-wait': timeWait,
  'accept-queue': acceptQueue,
  capacity,
  'buffer-memory': bufferMemory,
  'fd-ceilings': (ctx) => fdCeilings(ctx),
  conntrack: (ctx) => conntrack(ctx),
  'server-memory': (ctx) => serverMemory(ctx),
};
