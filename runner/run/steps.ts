// Stage "steps": the lab's steps in order, one function per step kind, each
// turning the agent's typed reply into a StepObservation (metrics, labels,
// series). A step that fails outright stops the run; a kernel refusal a lab
// measures (EADDRNOTAVAIL…) is an observation, not a failure.

import { HostError, Interrupted } from '../errors.ts';
import type { Plan, PlannedStep } from '../lab/plan.ts';
import { CONNECTION_OBJECTS, fitMemory, sidesOn, TIME_WAIT_OBJECTS, type FitPoint } from '../models/memory.ts';
import { connectShares } from '../models/fleet.ts';
import { releasedIn } from '../models/connections.ts';
import type { SnapshotReply } from '../agent/protocol.ts';
import type { HostFacts, HostObservation, StepObservation } from '../result.ts';
import type { RunBound } from './bound.ts';
import type { RunEventHandler } from './events.ts';
import { addressesOf, factsOf } from './build-result.ts';
import type { Sessions } from './setup.ts';
import { PROGRESS_SAMPLE_MS, releaseTimeoutMs, RUN_TIMEOUTS } from './timeouts.ts';

type Step<K extends PlannedStep['kind']> = Extract<PlannedStep, { kind: K }>;

/** What every step kind's function gets. */
/** How a step the run stopped in (Ctrl-C, the lab's timeout, a lost host) begins its error: it did not fail, it was cut short. */
export const STOPPED = 'stopped: ';

interface StepContext {
  sessions: Sessions;
  bound: RunBound;
  emit: RunEventHandler;
  /** the observations of the steps before this one */
  done: StepObservation[];
  plan: Plan;
  /** connections each open connect step holds: what a snapshot counts as "connections" */
  held: Map<string, number>;
  /** the step the run stopped in (Ctrl-C, the lab's timeout, a lost host), as far as it got */
  stopped?: StepObservation;
}

/** Run the steps in order, appending each observation to `observations`; throws STEP_FAILED at the first failed step. */
export async function runSteps(
  plan: Plan,
  sessions: Sessions,
  observations: StepObservation[],
  bound: RunBound,
  emit: RunEventHandler,
): Promise<void> {
  const ctx: StepContext = { sessions, bound, emit, done: observations, plan, held: new Map() };
  for (const step of plan.steps) {
    let obs: StepObservation;
    try {
      obs = await runStep(step, ctx);
    } catch (e) {
      // The step the run stopped in: what it measured so far stays in the result (its predictions are not measured).
      if (ctx.stopped) {
        observations.push(ctx.stopped);
        emit({ kind: 'step-end', observation: ctx.stopped });
      }
      throw e;
    }
    observations.push(obs);
    emit({ kind: 'step-end', observation: obs });
    if (!obs.ok) throw new HostError('STEP_FAILED', `Step "${step.name}" failed: ${obs.error}`, 'host' in step ? step.host : undefined);
  }
}

async function runStep(step: PlannedStep, ctx: StepContext): Promise<StepObservation> {
  const host = 'host' in step ? step.host : '';
  const obs: StepObservation = {
    name: step.name,
    kind: step.kind,
    host,
    startedAt: new Date().toISOString(),
    durationMs: 0,
    ok: true,
    metrics: {},
    labels: {},
  };
  ctx.emit({ kind: 'step-start', name: step.name, stepKind: step.kind, host });
  const t0 = performance.now();
  try {
    switch (step.kind) {
      case 'listen':
        await listen(step, obs, ctx);
        break;
      case 'connect':
        await connect(step, obs, ctx);
        break;
      case 'sleep':
        await ctx.bound.sleep(step.durationMs);
        break;
      case 'snapshot':
        await snapshot(step, obs, ctx);
        break;
      case 'fit':
        fit(step, obs, ctx);
        break;
      case 'release':
        await release(step, obs, ctx);
        break;
      case 'files':
        await files(step, obs, ctx);
        break;
    }
  } catch (e) {
    if (e instanceof Interrupted) {
      obs.ok = false;
      obs.error = `${STOPPED}${e.message}`;
      obs.durationMs = Math.round(performance.now() - t0);
      ctx.stopped = obs;
      throw e;
    }
    obs.ok = false;
    obs.error = (e as Error).message;
  }
  obs.durationMs = Math.round(performance.now() - t0);
  return obs;
}

function agentOf(ctx: StepContext, name: string) {
  return ctx.sessions.get(name)!.agent!;
}

/** What one host of a step saw, before the step's observation adds them up. */
interface HostPart extends HostObservation {
  host: string;
  detail?: Record<string, unknown>;
}

/**
 * Runs a step's part on each of `hosts` at once, then makes the observation
 * from the parts: one host's part is the observation itself (as before
 * fleets); several add up (durationMs is the longest, a label stays only when
 * every host saw the same), each kept by host name. A host's failure is its
 * part's; the others still report.
 */
async function onHosts(hosts: string[], obs: StepObservation, fn: (name: string, part: HostPart) => Promise<void>): Promise<void> {
  const parts = hosts.map((name): HostPart => ({ host: name, ok: true, metrics: {}, labels: {} }));
  await Promise.all(
    parts.map(async (part) => {
      try {
        await fn(part.host, part);
      } catch (e) {
        if (e instanceof Interrupted) throw e;
        part.ok = false;
        part.error = (e as Error).message;
      }
    }),
  );
  const failed = parts.filter((p) => !p.ok);
  if (failed.length) {
    obs.ok = false;
    obs.error = failed.map((p) => (parts.length > 1 ? `${p.host}: ${p.error}` : p.error)).join('; ');
  }
  if (parts.length === 1) {
    const [p] = parts as [HostPart];
    obs.metrics = p.metrics;
    obs.labels = p.labels;
    if (p.errors) obs.errors = p.errors;
    if (p.detail) obs.detail = p.detail;
    return;
  }
  const metrics: Record<string, number> = {};
  for (const p of parts) {
    for (const [k, v] of Object.entries(p.metrics)) metrics[k] = k === 'durationMs' ? Math.max(metrics[k] ?? 0, v) : (metrics[k] ?? 0) + v;
  }
  const labels: Record<string, string> = {};
  for (const k of new Set(parts.flatMap((p) => Object.keys(p.labels)))) {
    const values = new Set(parts.map((p) => p.labels[k]));
    if (values.size === 1 && parts[0]!.labels[k] !== undefined) labels[k] = parts[0]!.labels[k]!;
  }
  const errors = new Map<string, number>();
  for (const p of parts) for (const e of p.errors ?? []) errors.set(e.errno, (errors.get(e.errno) ?? 0) + e.count);
  obs.metrics = metrics;
  obs.labels = labels;
  if (errors.size) obs.errors = [...errors].map(([errno, count]) => ({ errno, count }));
  obs.hosts = Object.fromEntries(parts.map(({ host, detail: _d, ...rest }) => [host, rest]));
  obs.detail = Object.fromEntries(parts.filter((p) => p.detail).map((p) => [p.host, p.detail]));
}

const sum = (m: Map<string, number>) => [...m.values()].reduce((a, b) => a + b, 0);

/**
 * Benchmark switches, to measure what each saves (docs/performance.md): LAB_PARK=0
 * keeps held sockets in the C workers' fd tables (ConnectArgs.park), and
 * LAB_SILENT_RELEASE=0 sends the RSTs of a release that could go silently.
 */
const PARK = process.env.LAB_PARK === '0' ? { park: false } : {};
const SILENT_RELEASE = process.env.LAB_SILENT_RELEASE !== '0';

async function listen(step: Step<'listen'>, obs: StepObservation, ctx: StepContext): Promise<void> {
  obs.metrics.accepted = 0;
  const accepted = new Map<string, number>();
  await onHosts(
    step.listeners.map((l) => l.host),
    obs,
    async (name, part) => {
      const address = step.listeners.find((l) => l.host === name)!.address;
      part.metrics.accepted = 0;
      const r = await ctx.bound.guard(
        agentOf(ctx, name).request(
          'listen',
          {
            id: step.name, address, port: step.port, backlog: step.backlog, accept: step.accept,
            ...(step.deferAcceptS ? { deferAcceptS: step.deferAcceptS } : {}),
            ...(step.server ? { server: step.server } : {}),
            ...(step.stack ? { stackBytes: step.stack } : {}),
            ...PARK,
          },
          {
            timeoutMs: RUN_TIMEOUTS.requestMs,
            // Accepts go on after the reply; the observation keeps counting.
            onEvent: (_e, d) => {
              if (typeof d.accepted !== 'number') return;
              accepted.set(name, d.accepted);
              if (obs.hosts?.[name]) obs.hosts[name]!.metrics.accepted = d.accepted;
              obs.metrics.accepted = sum(accepted);
            },
          },
        ),
      );
      part.detail = { ...r };
      // listen() caps the backlog at somaxconn without a word: the terminal and the report say so.
      const somaxconn = ctx.sessions.get(name)?.facts?.somaxconn;
      if (typeof r.backlog === 'number' && somaxconn !== undefined && somaxconn < r.backlog) part.detail.somaxconnCap = somaxconn;
    },
  );
  obs.metrics.accepted = sum(accepted);
}

async function connect(step: Step<'connect'>, obs: StepObservation, ctx: StepContext): Promise<void> {
  // Each host's share of the count, from its own facts as provisioned.
  const shares = connectShares(step, { roles: ctx.plan.roles, facts: factsOf(ctx.sessions), addresses: addressesOf(ctx.plan) });
  const series: Array<[number, number]> = [];
  const established = new Map<string, number>();
  let lastSample = -Infinity;
  await onHosts(
    step.parts.map((p) => p.host),
    obs,
    async (name, part) => {
      part.count = shares[name]!;
      const r = await ctx.bound.guard(
        agentOf(ctx, name).request(
          'connect',
          {
            id: step.name,
            pairs: step.parts.find((p) => p.host === name)!.pairs,
            count: part.count,
            bind: step.bind,
            port: step.port,
            rate: step.rate,
            timeoutMs: step.timeoutMs,
            connectTimeoutMs: step.connectTimeoutMs,
            stopOnError: step.stopOnError,
            processes: step.processes,
            ...(step.send ? { send: step.send } : {}),
            ...PARK,
          },
          {
            timeoutMs: step.timeoutMs + RUN_TIMEOUTS.connectSlackMs,
            onEvent: (_e, d) => {
              established.set(name, Number(d.established ?? 0));
              const value = sum(established);
              // So far: what the result keeps should the run stop in this step.
              obs.metrics.established = value;
              // The agent's clock: the hosts of one role start together, so theirs agree closely enough.
              const ms = Number(d.elapsedMs ?? 0);
              if (ms - lastSample >= PROGRESS_SAMPLE_MS) {
                series.push([ms, value]);
                lastSample = ms;
              }
              const extra = d as { failed?: number; slabKiB?: number };
              ctx.emit({
                kind: 'progress', step: step.name, host: step.host, value, of: step.count, elapsedMs: ms,
                ...(typeof extra.failed === 'number' ? { failed: extra.failed } : {}),
                ...(typeof extra.slabKiB === 'number' ? { slabKiB: extra.slabKiB } : {}),
              });
            },
          },
        ),
      );
      established.set(name, r.established);
      part.metrics = {
        established: r.established,
        attempted: r.attempted,
        connectsPerSecond: r.connectsPerSecond,
        durationMs: r.durationMs,
        workers: r.workers,
        lanes: r.lanes ?? 1,
        distinctLocalPorts: r.localPorts?.distinct ?? 0,
      };
      if (step.send) part.metrics.bytesSent = r.bytesSent ?? 0;
      if (r.firstError) part.labels.firstError = r.firstError.errno;
      part.errors = Object.entries(r.errors ?? {}).map(([errno, count]) => ({ errno, count }));
      part.detail = { firstError: r.firstError, perPair: r.perPair, localPorts: r.localPorts, stopReason: r.stopReason, ...(r.memoryStop ? { memoryStop: r.memoryStop } : {}) };
    },
  );
  series.push([obs.metrics.durationMs ?? 0, obs.metrics.established ?? 0]);
  obs.series = series;
  ctx.held.set(step.name, obs.metrics.established ?? 0);
}

async function snapshot(step: Step<'snapshot'>, obs: StepObservation, ctx: StepContext): Promise<void> {
  const ports = new Set(
    ctx.plan.steps
      .slice(0, ctx.plan.steps.indexOf(step))
      .flatMap((s) => (s.kind === 'listen' && s.host === step.host ? [s.port] : [])),
  );
  await onHosts(step.hosts, obs, async (name, part) => {
    // The lab's listen ports on any role: this host's connections to them (a client) or from them (a server).
    // (At most the 64 the agent takes: no lab listens on more.)
    const labPorts = [...new Set(ctx.plan.steps.slice(0, ctx.plan.steps.indexOf(step)).flatMap((s) => (s.kind === 'listen' ? [s.port] : [])))].slice(0, 64);
    const snap = await ctx.bound.guard(
      agentOf(ctx, name).request('snapshot', labPorts.length ? { ports: labPorts } : {}, { timeoutMs: RUN_TIMEOUTS.requestMs }),
    );
    const tcp = snap.sockstat?.TCP ?? {};
    let slabBytes = 0;
    for (const c of Object.values(snap.slab ?? {})) slabBytes += c.activeObjs * c.objSize;
    part.metrics = {
      connections: 0,
      tcpInuse: tcp.inuse ?? 0,
      tcpTw: tcp.tw ?? 0,
      tcpMemPages: tcp.mem ?? 0,
      slabBytes,
      memAvailableKiB: snap.meminfo?.MemAvailable ?? 0,
    };
    // The accept queues of the lab's own listeners on this role (not sshd's, say), as `ss -lnt` shows them.
    if (snap.listeners) {
      const mine = snap.listeners.filter((l) => ports.has(l.port));
      part.metrics.acceptQueue = mine.reduce((n, l) => n + l.queue, 0);
      if (mine.every((l) => l.backlog !== null)) part.metrics.acceptQueueMax = mine.reduce((n, l) => n + l.backlog!, 0);
    }
    if (snap.established) part.metrics.establishedSockets = Object.values(snap.established).reduce((a, b) => a + b, 0);
    if (typeof snap.conntrack?.count === 'number') part.metrics.conntrackCount = snap.conntrack.count;
    if (typeof snap.meminfo?.KernelStack === 'number') part.metrics.kernelStackKiB = snap.meminfo.KernelStack;
    // The lab's servers (listen steps with `server`): what their processes added since before their first accept, per connection.
    const servers = Object.values(snap.held ?? {}).filter((h) => h.server);
    if (servers.length) {
      const open = servers.reduce((n, h) => n + h.open, 0);
      const grew = (k: 'threads' | 'vmSizeKiB' | 'rssKiB') => servers.reduce((n, h) => n + (h.server!.now[k] ?? 0) - (h.server!.base[k] ?? 0), 0);
      part.metrics.serverThreads = servers.reduce((n, h) => n + (h.server!.now.threads ?? 0), 0);
      if (open > 0) {
        part.metrics.serverThreadsPerConnection = Math.round((grew('threads') / open) * 1000) / 1000;
        part.metrics.serverVmBytesPerConnection = Math.round((grew('vmSizeKiB') * 1024) / open);
        part.metrics.serverRssBytesPerConnection = Math.round((grew('rssKiB') * 1024) / open);
      }
    }
    part.detail = { ...snap };
  });
  // Connections the run holds at this point, on every host: counted once, not per host.
  obs.metrics.connections = sum(ctx.held);
}

/** Slab memory against connections held, over earlier snapshots: computed here, nothing runs on a host. */
function fit(step: Step<'fit'>, obs: StepObservation, ctx: StepContext): void {
  const points: FitPoint[] = step.snapshots.map((name) => {
    const o = ctx.done.find((d) => d.name === name)!;
    const d = o.detail as Partial<SnapshotReply>;
    // Per TIME_WAIT socket, the count is the host's own (sockstat "tw" is per network namespace).
    const count = step.per === 'time-wait' ? o.metrics.tcpTw : o.metrics.connections;
    const memPages = d.sockstat?.TCP?.mem;
    const pageSize = ctx.sessions.get(ctx.plan.roles[step.host]?.[0] ?? step.host)?.facts?.pageSize;
    return {
      connections: count ?? 0, held: o.metrics.connections ?? 0, slab: d.slab ?? {}, meminfo: d.meminfo ?? {}, tcpAlloc: d.sockstat?.TCP?.alloc,
      ...(memPages !== undefined && pageSize ? { tcpMemBytes: memPages * pageSize } : {}),
    };
  });
  // By role, from each role's first host: the fit looks at one host of a role.
  const facts: Record<string, HostFacts> = {};
  for (const [role, names] of Object.entries(ctx.plan.roles)) {
    const s = ctx.sessions.get(names[0]!);
    if (s?.facts) facts[role] = s.facts;
  }
  const connects = ctx.plan.steps.slice(0, ctx.plan.steps.indexOf(step)).filter((s) => s.kind === 'connect');
  const sides = sidesOn(step.host, connects, facts);
  const f =
    step.per === 'time-wait'
      ? fitMemory(points, facts[step.host]!, { client: true, server: false }, TIME_WAIT_OBJECTS, (sides.client ? 1 : 0) + (sides.server ? 1 : 0))
      : fitMemory(points, facts[step.host]!, sides, CONNECTION_OBJECTS);
  obs.metrics = {
    bytesPerConnection: f.bytesPerConnection,
    otherBytesPerConnection: f.otherBytesPerConnection,
    rawBytesPerConnection: f.rawBytesPerConnection,
    slabBytesPerConnection: f.slabBytesPerConnection,
    residualPercent: f.residualPercent,
    foreignSockets: f.foreignSockets,
  };
  if (f.bufferBytesPerConnection !== null && step.per === 'connection') obs.metrics.bufferBytesPerConnection = f.bufferBytesPerConnection;
  // A side the measured kernel does not hold is not measured, not zero; TIME_WAIT has one side.
  if (step.per === 'time-wait') f.clientBytesPerSocket = f.serverBytesPerSocket = null;
  if (f.clientBytesPerSocket !== null) obs.metrics.clientBytesPerSocket = f.clientBytesPerSocket;
  if (f.serverBytesPerSocket !== null) obs.metrics.serverBytesPerSocket = f.serverBytesPerSocket;
  obs.detail = { ...f };
}

/** Past this many connections, a release that closes both ends of every one drops them silently. */
const SILENT_RELEASE_MIN = 65536;

/**
 * Whether an aborting release may close without RSTs (the agent's `silent`: the C
 * helper frees each socket with TCP_REPAIR, sending nothing): only when it closes
 * every connect and listen still open, so no peer is left to be told, and at
 * scale (SILENT_RELEASE_MIN), where the RST's trip through the veths and the
 * peer's reset are what the release costs. Not with conntrack on a host: an RST
 * ends the tracked entry, a silent close would leave it ESTABLISHED for days.
 */
function maySilence(step: Step<'release'>, ctx: StepContext): boolean {
  const index = ctx.plan.steps.indexOf(step);
  const released = releasedIn(ctx.plan.steps.slice(0, index));
  const open = ctx.done.filter((o) => (o.kind === 'connect' || o.kind === 'listen') && !released.has(o.name));
  if (!open.some((o) => o.kind === 'connect') || !open.every((o) => step.steps.includes(o.name))) return false;
  if (ctx.plan.hosts.some((h) => h.conntrack)) return false;
  return sum(ctx.held) >= SILENT_RELEASE_MIN;
}

async function release(step: Step<'release'>, obs: StepObservation, ctx: StepContext): Promise<void> {
  // abort: RST, no TIME_WAIT; graceful: FIN, and the side that closes first holds TIME_WAIT.
  const abort = ctx.plan.lab.release !== 'graceful';
  const silent = abort && SILENT_RELEASE && maySilence(step, ctx);
  type Closed = { closed: number; batched: number };
  const close = async (name: string): Promise<Closed> => {
    const target = ctx.done.find((o) => o.name === name);
    if (!target) return { closed: 0, batched: 0 };
    // What the step holds bounds how long its release may take: a connect's count; for a
    // listen, every connect's (its accepted count is only as fresh as its last event).
    const connects = ctx.done.filter((o) => o.kind === 'connect').reduce((n, o) => n + Number(o.metrics.established ?? 0), 0);
    const held = target.kind === 'connect' ? Number(target.metrics.established ?? 0) : Math.max(Number(target.metrics.accepted ?? 0), connects);
    // On every host of the role the step ran on.
    const hosts = ctx.plan.roles[target.host] ?? [];
    const replies = await Promise.all(
      hosts.map((host) => ctx.bound.guard(agentOf(ctx, host).request('release', { id: name, abort, ...(silent ? { silent } : {}), timeoutMs: releaseTimeoutMs(held) }))),
    );
    // A listener's accepts go on after its reply, whose events end with it: what each
    // host closes now is what it accepted and held, the count its observation keeps.
    if (target.kind === 'listen') {
      for (const [i, host] of hosts.entries()) {
        const part = target.hosts?.[host]?.metrics ?? (hosts.length === 1 ? target.metrics : undefined);
        if (part) part.accepted = Math.max(Number(part.accepted ?? 0), replies[i]!.closed);
      }
      if (target.hosts) target.metrics.accepted = Object.values(target.hosts).reduce((n, h) => n + Number(h.metrics.accepted ?? 0), 0);
    }
    ctx.held.delete(name);
    return { closed: replies.reduce((a, r) => a + r.closed, 0), batched: replies.reduce((a, r) => a + (r.batched ?? 0), 0) };
  };
  // By RST all at once: each side closes in its own workers, and neither needs
  // the other first. Graceful in the lab's order: which side closes first decides
  // where TIME_WAIT lands.
  const parts: Closed[] = [];
  if (abort) parts.push(...(await Promise.all(step.steps.map(close))));
  else for (const name of step.steps) parts.push(await close(name));
  const closed = parts.reduce((a, p) => a + p.closed, 0);
  const batched = parts.reduce((a, p) => a + p.batched, 0);
  obs.metrics.closed = closed;
  // How the sockets were closed: "silent" (no packet), "rst" or "fin".
  obs.labels.close = silent ? 'silent' : abort ? 'rst' : 'fin';
  // Through io_uring, a few hundred sockets a syscall (the C helper), or a close() each.
  if (closed > 0) obs.labels.closeCalls = batched >= closed ? 'io_uring' : batched > 0 ? 'io_uring, partly' : 'one each';
}

/** A machine-wide fd ceiling, observed on each host of the role: the agent sets and puts back the sysctl itself. */
async function files(step: Step<'files'>, obs: StepObservation, ctx: StepContext): Promise<void> {
  await onHosts(ctx.plan.roles[step.host] ?? [step.host], obs, async (name, part) => {
    const r = await ctx.bound.guard(
      agentOf(ctx, name).request('files', { ceiling: step.ceiling, ...(step.count === undefined ? {} : { count: step.count }), ...(step.nrOpen === undefined ? {} : { nrOpen: step.nrOpen }) }),
    );
    part.metrics = { reached: r.reached };
    if (r.windowMs !== undefined) part.metrics.windowMs = r.windowMs;
    if (r.ceiling === 'file-max') {
      if (typeof r.headroom === 'number') part.metrics.headroom = r.headroom;
      if (typeof r.foreignFiles === 'number') part.metrics.foreignFiles = r.foreignFiles;
      part.metrics.attempts = r.attempts?.length ?? 1;
    }
    if (r.firstError) part.labels.firstError = r.firstError;
    part.detail = { ...r };
  });
}
