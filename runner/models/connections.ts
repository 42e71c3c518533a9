// Predictions: pure functions from a step's settings and the hosts' own facts
// to a value and its derivation with the numbers filled in. No I/O here.

import type { HostFacts } from '../result.ts';
import type { Step } from '../lab/types.ts';
import type { ModelName } from './names.ts';

export type ConnectStep = Extract<Step, { kind: 'connect' }>;

export interface ModelContext {
  step: Step;
  /** the metric part of "<step>.<metric>" */
  metric: string;
  /** each host's facts as provisioned: what the run really had */
  facts: Record<string, HostFacts>;
  /** role -> the addresses a step may use: primary first, then aliases */
  addresses: Record<string, string[]>;
}

export interface ModelOutput {
  value: number | string | null;
  derivation: string;
  explanation: string;
  reference?: { value: number | string; source: string };
}

export class ModelNotApplicable extends Error {}

const nf = (n: number) => String(n);

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

function tupleText(ctx: ModelContext, step: ConnectStep): string {
  const sources = (ctx.addresses[step.host] ?? []).slice(0, step.sources);
  const dests = step.to.map((d) => `${ctx.addresses[d.role]?.[0] ?? d.role}:${d.port}`);
  return `${sources.join(', ')} → ${dests.join(', ')}`;
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
  const reserved = reservedInRange(facts.reservedPorts, lo, hi);
  const ports = hi - lo + 1 - reserved;
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

export const MODELS: Record<ModelName, (ctx: ModelContext) => ModelOutput> = {
  'ephemeral-ports': ephemeralPorts,
  'fd-limit': fdLimit,
  'connection-ceiling': connectionCeiling,
};
