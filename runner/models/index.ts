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
  /** facts gathered before provisioning, and after (what the run really had) */
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
  let why: string;
  switch (step.bind) {
    case 'ip':
      capacity = ports * sources;
      if (sources > 1) formula = `(${formula}) × ${sources} sources`;
      why = 'bind() before connect() picks the port per source address, so extra destinations add nothing';
      break;
    case 'reuseaddr':
      capacity = sources * dests;
      formula = `1 port × ${sources} source${sources > 1 ? 's' : ''} × ${dests} destination${dests > 1 ? 's' : ''}`;
      why = 'SO_REUSEADDR lets one local port carry one connection per distinct destination';
      break;
    default:
      capacity = ports * sources * dests;
      if (sources > 1 || dests > 1) formula = `(${formula}) × ${sources} source${sources > 1 ? 's' : ''} × ${dests} destination${dests > 1 ? 's' : ''}`;
      why = 'the kernel picks a free port per 4-tuple: each source address and each destination has the whole range';
  }
  const value = Math.min(capacity, step.count);
  const capped = step.count < capacity ? `; the step opens at most ${nf(step.count)}, so ${nf(value)}` : '';
  if (ctx.metric === 'firstError') {
    const err = step.count > capacity ? (step.bind === 'reuseaddr' || step.bind === 'ip' ? 'EADDRINUSE' : 'EADDRNOTAVAIL') : null;
    return {
      value: err,
      derivation: `${formula} = ${nf(capacity)} ${step.bind === 'reuseaddr' ? 'tuples' : 'ports'} ${step.count > capacity ? '<' : '≥'} count ${nf(step.count)} → ${err ?? 'no error'}`,
      explanation: `Once the ports are used up, connect() fails: ${why}`,
    };
  }
  if (ctx.metric !== 'established') throw new ModelNotApplicable(`Model "ephemeral-ports" predicts "established" or "firstError", not "${ctx.metric}"`);
  return {
    value,
    derivation: `${formula} = ${nf(capacity)} ${step.bind === 'reuseaddr' ? 'tuples' : 'ports'} for ${tupleText(ctx, step)}${capped}`,
    explanation: `net.ipv4.ip_local_port_range on ${step.host} is ${lo}–${hi}; ${why}`,
  };
}

/** Workers' fd budget: the soft nofile limit of each worker times the workers, less the fds a worker already holds. */
export const WORKER_BASE_FDS = 5;

export function fdLimit(ctx: ModelContext): ModelOutput {
  const step = connectStep(ctx, 'fd-limit');
  const facts = ctx.facts[step.host];
  if (!facts) throw new ModelNotApplicable(`No facts for host "${step.host}"`);
  if (!step.processes) throw new ModelNotApplicable('Model "fd-limit" needs the step to set "processes"');
  const per = facts.nofileSoft - WORKER_BASE_FDS;
  const capacity = per * step.processes;
  const value = Math.min(capacity, step.count);
  if (ctx.metric === 'firstError') {
    return {
      value: step.count > capacity ? 'EMFILE' : null,
      derivation: `${step.processes} × (${facts.nofileSoft} − ${WORKER_BASE_FDS}) = ${capacity} fds ${step.count > capacity ? '<' : '≥'} count ${step.count}`,
      explanation: 'A process that reaches RLIMIT_NOFILE gets EMFILE from socket()',
    };
  }
  return {
    value,
    derivation: `${step.processes} process${step.processes > 1 ? 'es' : ''} × (ulimit -n ${facts.nofileSoft} − ${WORKER_BASE_FDS} fds in use) = ${capacity}${step.count < capacity ? `; the step opens at most ${step.count}` : ''}`,
    explanation: `Each worker may hold ulimit -n fds; ${WORKER_BASE_FDS} are taken by stdio, the agent pipe and the listening/epoll fds`,
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
