// Executes a Plan across its hosts: prepare them, start one agent per host,
// provision, run the steps in order, compare, and — always, also on error,
// Ctrl-C or a lost host — restore every host. Returns the RunResult.

import { hostname } from 'node:os';
import { AgentClient } from '../agent/client.ts';
import { HostError, Interrupted, isLabFailure } from '../errors.ts';
import type { Transport } from '../hosts/transport.ts';
import type { Plan, PlannedHost, PlannedStep } from '../lab/plan.ts';
import { comparePredictions } from '../models/compare.ts';
import { provisionHost, restoreHost } from '../provision/index.ts';
import { RESULT_FORMAT, type Change, type HostFacts, type HostResult, type RunResult, type StepObservation } from '../result.ts';
import type { RunEventHandler } from './events.ts';
import type { HostProvider } from './providers.ts';

export interface RunOptions {
  provider: HostProvider;
  signal?: AbortSignal;
  onEvent?: RunEventHandler;
  version: string;
  runtime: string;
}

interface HostSession {
  host: PlannedHost;
  transport: Transport;
  agent?: AgentClient;
  facts?: HostFacts;
  changes: Change[];
}

const PROGRESS_SAMPLE_MS = 100;

export function runtimeName(): string {
  const g = globalThis as any;
  if (g.Deno) return `deno ${g.Deno.version.deno}`;
  if (g.Bun) return `bun ${g.Bun.version}`;
  return `node ${process.versions.node}`;
}

export async function runPlan(plan: Plan, options: RunOptions): Promise<RunResult> {
  const emit = options.onEvent ?? (() => {});
  const { provider } = options;
  const started = new Date();
  const stages: Record<string, number> = {};
  const sessions = new Map<string, HostSession>();
  const observations: StepObservation[] = [];
  const notes: string[] = [];
  let error: { code: string; message: string } | undefined;

  // One abort for Ctrl-C and for the lab's own time bound.
  const abort = new AbortController();
  const onOuterAbort = () => abort.abort(new Interrupted('Interrupted'));
  options.signal?.addEventListener('abort', onOuterAbort, { once: true });
  if (options.signal?.aborted) onOuterAbort();
  const labTimer = setTimeout(
    () => abort.abort(new Interrupted(`Lab timeout of ${plan.lab.timeoutMs / 1000} s reached`)),
    plan.lab.timeoutMs,
  );
  const aborted = new Promise<never>((_, reject) => {
    abort.signal.addEventListener('abort', () => reject(abort.signal.reason), { once: true });
  });
  aborted.catch(() => {});
  const guard = <T>(p: Promise<T>): Promise<T> => {
    if (abort.signal.aborted) return Promise.reject(abort.signal.reason);
    return Promise.race([p, aborted]);
  };
  // Setup still running when an abort comes (a namespace being made, an agent
  // starting) is waited for before restore, so nothing appears after teardown.
  const setup: Promise<unknown>[] = [];
  const guardSetup = <T>(...work: Promise<T>[]): Promise<T[]> => {
    // Each host's own promise: Promise.all settles at the first failure while other hosts still work.
    for (const p of work) setup.push(p.catch(() => {}));
    return guard(Promise.all(work));
  };

  const stage = async (name: string, fn: () => Promise<void>) => {
    emit({ kind: 'stage', stage: name, status: 'start' });
    const t = performance.now();
    try {
      await fn();
    } finally {
      stages[name] = Math.round(performance.now() - t);
      emit({ kind: 'stage', stage: name, status: 'end', ms: stages[name] });
    }
  };

  let restoring = false;
  const holder = `lab run ${plan.lab.name} by pid ${process.pid} on ${hostname()} since ${started.toISOString()}`;

  try {
    await stage('hosts', async () => {
      await guardSetup(provider.prepare());
    });

    await stage('agents', async () => {
      await guardSetup(
        ...plan.hosts.map(async (host) => {
          const transport = provider.transport(host.role);
          const session: HostSession = { host, transport, changes: [] };
          sessions.set(host.role, session);
          await transport.connect();
          session.agent = await AgentClient.start(transport);
          // A host lost mid-run (sshd gone, agent killed) stops the run now, not at its next request.
          session.agent.exited.then((how) => {
            if (restoring) return;
            const why = how.signal ? `signal ${how.signal}` : `exit code ${how.code}`;
            abort.abort(new HostError('HOST_LOST', `Lost the agent on ${transport.target} (${why}): the host or its connection went away`, host.role));
          });
          session.facts = await session.agent.request('facts', {}, { timeoutMs: 30_000 });
          emit({ kind: 'host-up', role: host.role, target: transport.target, address: host.address, kernel: session.facts.kernel });
        }),
      );
    });

    await stage('provision', async () => {
      await guardSetup(
        ...[...sessions.values()].map(async (s) => {
          // Changes are recorded as they are made, so a host that fails halfway reports what it changed.
          await provisionHost(s.agent!, s.host, provider.journalPath(s.host.role), holder, s.changes);
          // Predictions use the facts as provisioned: the range the lab set, not the default.
          s.facts = await s.agent!.request('facts', {}, { timeoutMs: 30_000 });
          emit({ kind: 'provisioned', role: s.host.role, changes: s.changes.length });
        }),
      );
    });

    await stage('steps', async () => {
      for (const step of plan.steps) {
        const obs = await runStep(step, sessions, observations, emit, guard, abort.signal);
        observations.push(obs);
        emit({ kind: 'step-end', observation: obs });
        if (!obs.ok) throw new HostError('STEP_FAILED', `Step "${step.name}" failed: ${obs.error}`, 'host' in step ? step.host : undefined);
      }
    });
  } catch (e) {
    const err = e as Error & { code?: string };
    error = { code: err.code ?? 'INTERNAL', message: err.message };
    // An abort that came from a lost host carries the host's error, not the one the step saw.
    const reason = abort.signal.reason;
    if (reason && reason !== e && isLabFailure(reason)) error = { code: reason.code, message: reason.message };
    else if (!isLabFailure(e) && !(e instanceof Interrupted)) error.message = err.stack ?? err.message;
  } finally {
    clearTimeout(labTimer);
    options.signal?.removeEventListener('abort', onOuterAbort);
  }

  restoring = true;
  const SETUP_WAIT_MS = 30_000;
  await Promise.race([Promise.all(setup), new Promise((r) => setTimeout(r, SETUP_WAIT_MS).unref())]);
  const restoreProblems: string[] = [];
  await stage('restore', async () => {
    await Promise.all(
      [...sessions.values()].map(async (s) => {
        const problems: string[] = [];
        if (s.agent?.alive) {
          try {
            problems.push(...(await restoreHost(s.agent)));
          } catch (e) {
            problems.push((e as Error).message);
          }
          await s.agent.shutdown();
        } else if (s.agent) {
          notes.push(
            `${s.host.role}: the agent was lost; it undoes its own journal when its controller goes away. Check with \`lab restore\``,
          );
        }
        await s.transport.close().catch(() => {});
        restoreProblems.push(...problems.map((p) => `${s.host.role}: ${p}`));
        emit({ kind: 'restored', role: s.host.role, ok: problems.length === 0, problems });
      }),
    );
    restoreProblems.push(...(await provider.teardown()));
  });

  const facts: Record<string, HostFacts> = {};
  for (const [role, s] of sessions) if (s.facts) facts[role] = s.facts;
  const addresses: Record<string, string[]> = {};
  for (const h of plan.hosts) addresses[h.role] = [h.address, ...h.aliases];
  const predictions = comparePredictions({
    expectations: plan.lab.expect,
    steps: plan.lab.steps,
    observations,
    facts,
    addresses,
  });
  if (plan.hosts.some((h) => h.local && h.sysctls.some((s) => s.scope === 'global'))) {
    notes.push('fs.*, vm.* and slab memory are global: on local namespace hosts they are this machine\'s own');
  }

  const hosts: HostResult[] = plan.hosts
    .filter((h) => sessions.get(h.role)?.facts)
    .map((h) => {
      const s = sessions.get(h.role)!;
      return { role: h.role, transport: h.kind, target: h.target, address: h.address, facts: s.facts!, changes: s.changes };
    });
  const ended = new Date();
  const failed = !!error || predictions.some((p) => p.verdict !== 'pass') || restoreProblems.length > 0;
  const result: RunResult = {
    format: RESULT_FORMAT,
    lab: {
      name: plan.lab.name,
      ...(plan.lab.description ? { description: plan.lab.description } : {}),
      file: plan.lab.file,
      source: plan.lab.source,
      vars: plan.lab.vars,
    },
    tool: { name: 'lab', version: options.version, runtime: options.runtime },
    startedAt: started.toISOString(),
    endedAt: ended.toISOString(),
    durationMs: ended.getTime() - started.getTime(),
    stages,
    hosts,
    steps: observations,
    predictions,
    verdict: failed ? 'fail' : 'pass',
    restore: { ok: restoreProblems.length === 0, problems: restoreProblems },
    notes,
  };
  if (error) result.error = error;
  return result;
}

async function runStep(
  step: PlannedStep,
  sessions: Map<string, HostSession>,
  done: StepObservation[],
  emit: RunEventHandler,
  guard: <T>(p: Promise<T>) => Promise<T>,
  signal: AbortSignal,
): Promise<StepObservation> {
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
  emit({ kind: 'step-start', name: step.name, stepKind: step.kind, host });
  const t0 = performance.now();
  const agent = (role: string) => sessions.get(role)!.agent!;
  try {
    switch (step.kind) {
      case 'listen': {
        obs.metrics.accepted = 0;
        const r = await guard(
          agent(step.host).request(
            'listen',
            { id: step.name, address: step.address, port: step.port, backlog: step.backlog, accept: step.accept },
            // Accepts go on after the reply; the observation keeps counting.
            { onEvent: (_e, d) => typeof d.accepted === 'number' && (obs.metrics.accepted = d.accepted), timeoutMs: 30_000 },
          ),
        );
        obs.detail = { ...r };
        break;
      }
      case 'connect': {
        const series: Array<[number, number]> = [];
        let lastSample = -Infinity;
        const r = await guard(
          agent(step.host).request(
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
              timeoutMs: step.timeoutMs + 30_000,
              onEvent: (_e, d) => {
                const value = Number(d.established ?? 0);
                const ms = Number(d.elapsedMs ?? 0);
                if (ms - lastSample >= PROGRESS_SAMPLE_MS) {
                  series.push([ms, value]);
                  lastSample = ms;
                }
                emit({ kind: 'progress', step: step.name, host: step.host, value, of: step.count, elapsedMs: ms });
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
        obs.errors = Object.entries(r.errors ?? {}).map(([errno, count]) => ({ errno, count: count as number }));
        obs.detail = { firstError: r.firstError, perPair: r.perPair, localPorts: r.localPorts };
        break;
      }
      case 'sleep':
        await guard(
          new Promise<void>((resolve) => {
            const t = setTimeout(resolve, step.durationMs);
            signal.addEventListener('abort', () => clearTimeout(t), { once: true });
          }),
        );
        break;
      case 'snapshot': {
        const snap = await guard(agent(step.host).request('snapshot', {}, { timeoutMs: 30_000 }));
        const tcp = snap.sockstat?.TCP ?? {};
        let slabBytes = 0;
        for (const c of Object.values<any>(snap.slab ?? {})) slabBytes += c.activeObjs * c.objSize;
        obs.metrics = {
          tcpInuse: tcp.inuse ?? 0,
          tcpTw: tcp.tw ?? 0,
          tcpMemPages: tcp.mem ?? 0,
          slabBytes,
          memAvailableKiB: snap.meminfo?.MemAvailable ?? 0,
        };
        obs.detail = { ...snap };
        break;
      }
      case 'release': {
        let closed = 0;
        for (const name of step.steps) {
          const target = done.find((o) => o.name === name);
          if (!target) continue;
          const r = await guard(agent(target.host).request('release', { id: name, abort: true }, { timeoutMs: 30_000 }));
          closed += r.closed;
        }
        obs.metrics.closed = closed;
        break;
      }
    }
  } catch (e) {
    if (e instanceof Interrupted) throw e;
    obs.ok = false;
    obs.error = (e as Error).message;
  }
  obs.durationMs = Math.round(performance.now() - t0);
  return obs;
}
