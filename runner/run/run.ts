// Executes a Plan across its hosts, stage by stage: start the hosts, start one
// agent per host, provision, run the steps; then — always, also on error,
// Ctrl-C or a lost host — restore every host, and build the RunResult.

import { hostname } from 'node:os';
import { HostError, Interrupted, isLabFailure } from '../errors.ts';
import type { Plan } from '../lab/plan.ts';
import type { RunResult, StepObservation } from '../result.ts';
import { RunBound } from './bound.ts';
import { buildResult } from './build-result.ts';
import type { RunEventHandler } from './events.ts';
import type { HostProvider } from './provider.ts';
import { restoreHosts } from './restore.ts';
import { checkCapacity, checkSysctls, provisionHosts, startAgents, startHosts, type Sessions } from './setup.ts';
import { runSteps } from './steps.ts';
import { RUN_TIMEOUTS } from './timeouts.ts';

export interface RunOptions {
  provider: HostProvider;
  /** aborted on Ctrl-C */
  signal?: AbortSignal;
  onEvent?: RunEventHandler;
  version: string;
  runtime: string;
  /** how many hosts are connected, provisioned and restored at once (`--forks`) */
  forks?: number;
  /** `--machine`: the name baselines and the published site know the machine by */
  machine?: string;
}

export function runtimeName(): string {
  const g = globalThis as { Deno?: { version: { deno: string } }; Bun?: { version: string } };
  if (g.Deno) return `deno ${g.Deno.version.deno}`;
  if (g.Bun) return `bun ${g.Bun.version}`;
  return `node ${process.versions.node}`;
}

export async function runPlan(plan: Plan, options: RunOptions): Promise<RunResult> {
  const { provider } = options;
  const emit = options.onEvent ?? (() => {});
  const startedAt = new Date();
  const stages: Record<string, number> = {};
  const stage = stageTimer(stages, emit);
  const sessions: Sessions = new Map();
  const observations: StepObservation[] = [];
  // Names this run in each host's lock, so a second run on the host is told who holds it.
  const holder = `lab run ${plan.lab.name} by pid ${process.pid} on ${hostname()} since ${startedAt.toISOString()}`;
  const bound = new RunBound(plan.lab.timeoutMs, options.signal);
  let error: RunResult['error'];
  let capacity: RunResult['capacity'];

  try {
    await stage('hosts', () => startHosts(provider, bound));
    await stage('agents', () => startAgents(plan, provider, sessions, bound, emit, options.forks));
    await checkSysctls(plan, sessions, bound);
    const checked = checkCapacity(plan, sessions);
    capacity = checked.record;
    if (checked.refusal) throw new HostError('CAPACITY', checked.refusal);
    await stage('provision', () => provisionHosts(plan, provider, sessions, holder, bound, emit, options.forks));
    await stage('steps', () => runSteps(plan, sessions, observations, bound, emit));
  } catch (e) {
    error = failureOf(e, bound.reason);
  }

  await bound.close(RUN_TIMEOUTS.setupSettleMs);
  const stepsOn = (role: string) => plan.steps.filter((s) => (s.kind === 'connect' || s.kind === 'listen') && s.host === role).map((s) => s.name);
  const restore = await stage('restore', () => restoreHosts(sessions, provider, emit, options.forks, stepsOn));
  return buildResult({
    plan,
    tool: { name: 'lab', version: options.version, runtime: options.runtime },
    ...(options.machine ? { machine: options.machine } : {}),
    startedAt,
    stages,
    sessions,
    observations,
    restore,
    error,
    capacity,
  });
}

/** Run a stage, timing it into `stages` and announcing its start and end. */
function stageTimer(stages: Record<string, number>, emit: RunEventHandler) {
  return async <T>(name: string, fn: () => Promise<T>): Promise<T> => {
    emit({ kind: 'stage', stage: name, status: 'start' });
    const t = performance.now();
    try {
      return await fn();
    } finally {
      stages[name] = Math.round(performance.now() - t);
      emit({ kind: 'stage', stage: name, status: 'end', ms: stages[name] });
    }
  };
}

/** What stopped the run, for result.error. */
function failureOf(e: unknown, abortReason: unknown): { code: string; message: string } {
  // An abort that came from a lost host carries the host's error, not the one the step saw.
  if (abortReason && abortReason !== e && isLabFailure(abortReason)) return { code: abortReason.code, message: abortReason.message };
  const err = e as Error & { code?: string };
  // A bug in lab: keep the stack.
  const message = !isLabFailure(e) && !(e instanceof Interrupted) ? (err.stack ?? err.message) : err.message;
  return { code: err.code ?? 'INTERNAL', message };
}
