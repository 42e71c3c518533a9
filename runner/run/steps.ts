// Stage "steps": the lab's steps in order, one function per step kind, each
// turning the agent's typed reply into a StepObservation (metrics, labels,
// series). A step that fails outright stops the run; a kernel refusal a lab
// measures (EADDRNOTAVAIL…) is an observation, not a failure.

import { HostError, Interrupted } from '../errors.ts';
import type { PlannedStep } from '../lab/plan.ts';
import type { StepObservation } from '../result.ts';
import type { ConnectProgress, ConnectReply, ListenProgress, ListenReply, ReleaseReply, SnapshotReply } from './agent-replies.ts';
import type { RunBound } from './bound.ts';
import type { RunEventHandler } from './events.ts';
import type { Sessions } from './setup.ts';
import { PROGRESS_SAMPLE_MS, RUN_TIMEOUTS } from './timeouts.ts';

type Step<K extends PlannedStep['kind']> = Extract<PlannedStep, { kind: K }>;

/** What every step kind's function gets. */
interface StepContext {
  sessions: Sessions;
  bound: RunBound;
  emit: RunEventHandler;
  /** the observations of the steps before this one */
  done: StepObservation[];
}

/** Run the steps in order, appending each observation to `observations`; throws STEP_FAILED at the first failed step. */
export async function runSteps(
  steps: PlannedStep[],
  sessions: Sessions,
  observations: StepObservation[],
  bound: RunBound,
  emit: RunEventHandler,
): Promise<void> {
  const ctx: StepContext = { sessions, bound, emit, done: observations };
  for (const step of steps) {
    const obs = await runStep(step, ctx);
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
      case 'release':
        await release(step, obs, ctx);
        break;
    }
  } catch (e) {
    if (e instanceof Interrupted) throw e;
    obs.ok = false;
    obs.error = (e as Error).message;
  }
  obs.durationMs = Math.round(performance.now() - t0);
  return obs;
}

function agentOf(ctx: StepContext, role: string) {
  return ctx.sessions.get(role)!.agent!;
}

async function listen(step: Step<'listen'>, obs: StepObservation, ctx: StepContext): Promise<void> {
  obs.metrics.accepted = 0;
  const r = await ctx.bound.guard(
    agentOf(ctx, step.host).request<ListenReply>(
      'listen',
      { id: step.name, address: step.address, port: step.port, backlog: step.backlog, accept: step.accept },
      {
        timeoutMs: RUN_TIMEOUTS.requestMs,
        // Accepts go on after the reply; the observation keeps counting.
        onEvent: (_e, data) => {
          const d = data as ListenProgress;
          if (typeof d.accepted === 'number') obs.metrics.accepted = d.accepted;
        },
      },
    ),
  );
  obs.detail = { ...r };
}

async function connect(step: Step<'connect'>, obs: StepObservation, ctx: StepContext): Promise<void> {
  const series: Array<[number, number]> = [];
  let lastSample = -Infinity;
  const r = await ctx.bound.guard(
    agentOf(ctx, step.host).request<ConnectReply>(
      'connect',
      {
        id: step.name,
        pairs: step.pairs,
        count: step.count,
        bind: step.bind,
        port: step.port,
        rate: step.rate,
        timeoutMs: step.timeoutMs,
        connectTimeoutMs: step.connectTimeoutMs,
        stopOnError: step.stopOnError,
        processes: step.processes,
      },
      {
        timeoutMs: step.timeoutMs + RUN_TIMEOUTS.connectSlackMs,
        onEvent: (_e, data) => {
          const d = data as ConnectProgress;
          const value = Number(d.established ?? 0);
          const ms = Number(d.elapsedMs ?? 0);
          if (ms - lastSample >= PROGRESS_SAMPLE_MS) {
            series.push([ms, value]);
            lastSample = ms;
          }
          ctx.emit({ kind: 'progress', step: step.name, host: step.host, value, of: step.count, elapsedMs: ms });
        },
      },
    ),
  );
  series.push([r.durationMs, r.established]);
  obs.series = series;
  obs.metrics = {
    established: r.established,
    attempted: r.attempted,
    connectsPerSecond: r.connectsPerSecond,
    durationMs: r.durationMs,
    workers: r.workers,
    distinctLocalPorts: r.localPorts?.distinct ?? 0,
  };
  if (r.firstError) obs.labels.firstError = r.firstError.errno;
  obs.errors = Object.entries(r.errors ?? {}).map(([errno, count]) => ({ errno, count }));
  obs.detail = { firstError: r.firstError, perPair: r.perPair, localPorts: r.localPorts };
}

async function snapshot(step: Step<'snapshot'>, obs: StepObservation, ctx: StepContext): Promise<void> {
  const snap = await ctx.bound.guard(agentOf(ctx, step.host).request<SnapshotReply>('snapshot', {}, { timeoutMs: RUN_TIMEOUTS.requestMs }));
  const tcp = snap.sockstat?.TCP ?? {};
  let slabBytes = 0;
  for (const c of Object.values(snap.slab ?? {})) slabBytes += c.activeObjs * c.objSize;
  obs.metrics = {
    tcpInuse: tcp.inuse ?? 0,
    tcpTw: tcp.tw ?? 0,
    tcpMemPages: tcp.mem ?? 0,
    slabBytes,
    memAvailableKiB: snap.meminfo?.MemAvailable ?? 0,
  };
  obs.detail = { ...snap };
}

async function release(step: Step<'release'>, obs: StepObservation, ctx: StepContext): Promise<void> {
  let closed = 0;
  for (const name of step.steps) {
    const target = ctx.done.find((o) => o.name === name);
    if (!target) continue;
    const r = await ctx.bound.guard(
      agentOf(ctx, target.host).request<ReleaseReply>('release', { id: name, abort: true }, { timeoutMs: RUN_TIMEOUTS.requestMs }),
    );
    closed += r.closed;
  }
  obs.metrics.closed = closed;
}
