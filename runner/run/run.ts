// Executes a Plan across its hosts: prepare them, start one agent per host,
// provision, run the steps in order, compare, and — always, also on error,
// Ctrl-C or a lost host — restore every host. Returns the RunResult.

import { hostname } from 'node:os';
import { AgentClient } from '../agent/client.ts';
import { HostError, Interrupted, isLabFailure } from '../errors.ts';
import type { Transport } from '../hosts/transport.ts';
import type { Plan, PlannedHost, PlannedStep } from '../lab/plan.ts';
import { comparePredictions } from '../models/compare.ts';
import { connectShares } from '../models/fleet.ts';
import { provisionHost, restoreHost } from '../provision/index.ts';
import {
  RESULT_FORMAT,
  type Change,
  type HostFacts,
  type HostObservation,
  type HostResult,
  type RunResult,
  type StepObservation,
} from '../result.ts';
import type { RunEventHandler } from './events.ts';
import { mapLimit } from '../hosts/forks.ts';
import type { HostProvider } from './providers.ts';

export interface RunOptions {
  provider: HostProvider;
  signal?: AbortSignal;
  onEvent?: RunEventHandler;
  version: string;
  runtime: string;
  /** how many hosts are connected, provisioned and restored at once (`--forks`) */
  forks?: number;
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
  // Each host's work, `forks` at a time; after an abort no further host is started.
  const perHost = <T>(items: T[], fn: (item: T) => Promise<void>) =>
    guardSetup(
      mapLimit(items, options.forks, (item) => {
        if (abort.signal.aborted) return Promise.reject(abort.signal.reason);
        const p = fn(item);
        setup.push(p.catch(() => {}));
        return p;
      }),
    );

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
      await perHost(plan.hosts, async (host) => {
          const transport = provider.transport(host.name);
          const session: HostSession = { host, transport, changes: [] };
          sessions.set(host.name, session);
          await transport.connect();
          session.agent = await AgentClient.start(transport);
          // A host lost mid-run (sshd gone, agent killed) stops the run now, not at its next request.
          session.agent.exited.then((how) => {
            if (restoring) return;
            const why = how.signal ? `signal ${how.signal}` : `exit code ${how.code}`;
            abort.abort(new HostError('HOST_LOST', `Lost the agent on ${transport.target} (${why}): the host or its connection went away`, host.name));
          });
          session.facts = await session.agent.request<HostFacts>('facts', {}, { timeoutMs: 30_000 });
          emit({ kind: 'host-up', role: hostLabel(host), target: transport.target, address: host.address, kernel: session.facts.kernel });
      });
    });

    await stage('provision', async () => {
      await perHost([...sessions.values()], async (s) => {
          // Changes are recorded as they are made, so a host that fails halfway reports what it changed.
          await provisionHost(s.agent!, s.host, provider.journalPath(s.host.name), holder, s.changes);
          // Predictions use the facts as provisioned: the range the lab set, not the default.
          s.facts = await s.agent!.request<HostFacts>('facts', {}, { timeoutMs: 30_000 });
          emit({ kind: 'provisioned', role: hostLabel(s.host), changes: s.changes.length });
      });
    });

    await stage('steps', async () => {
      for (const step of plan.steps) {
        const obs = await runStep(step, plan, sessions, observations, emit, guard, abort.signal);
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
    await mapLimit(
      [...sessions.values()],
      options.forks,
      async (s) => {
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
            `${hostLabel(s.host)}: the agent was lost; it undoes its own journal when its controller goes away. Check with \`lab restore\``,
          );
        }
        await s.transport.close().catch(() => {});
        restoreProblems.push(...problems.map((p) => `${hostLabel(s.host)}: ${p}`));
        emit({ kind: 'restored', role: hostLabel(s.host), ok: problems.length === 0, problems });
      },
      // Every host is restored, whatever another host's restore did.
      { settle: true },
    );
    restoreProblems.push(...(await provider.teardown()));
  });

  const facts = factsOf(sessions);
  const predictions = comparePredictions({
    expectations: plan.lab.expect,
    steps: plan.lab.steps,
    observations,
    facts,
    addresses: addressesOf(plan),
    roles: plan.roles,
  });
  if (plan.hosts.some((h) => h.local && h.sysctls.some((s) => s.scope === 'global'))) {
    notes.push('fs.*, vm.* and slab memory are global: on local namespace hosts they are this machine\'s own');
  }

  const hosts: HostResult[] = plan.hosts
    .filter((h) => sessions.get(h.name)?.facts)
    .map((h) => {
      const s = sessions.get(h.name)!;
      return {
        role: h.role,
        ...(h.name !== h.role ? { name: h.name } : {}),
        transport: h.kind,
        target: h.target,
        address: h.address,
        facts: s.facts!,
        changes: s.changes,
      };
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

/** A host as messages name it: its role, and its own name when that differs. */
function hostLabel(h: { role: string; name: string }): string {
  return h.name === h.role ? h.role : `${h.role} ${h.name}`;
}

function factsOf(sessions: Map<string, HostSession>): Record<string, HostFacts> {
  const facts: Record<string, HostFacts> = {};
  for (const [name, s] of sessions) if (s.facts) facts[name] = s.facts;
  return facts;
}

function addressesOf(plan: Plan): Record<string, string[]> {
  return Object.fromEntries(plan.hosts.map((h) => [h.name, [h.address, ...h.aliases]]));
}

/** What one host of a step saw, before the step's observation adds them up. */
interface HostPart extends HostObservation {
  host: string;
  series?: Array<[number, number]>;
  detail?: Record<string, unknown>;
}

/**
 * The step's observation from its hosts' parts: one host's part is the
 * observation itself (as before fleets); several add up, each kept by name.
 */
function mergeParts(obs: StepObservation, parts: HostPart[]): void {
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
    if (p.series) obs.series = p.series;
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
  obs.hosts = Object.fromEntries(
    parts.map(({ host, series: _s, detail: _d, ...rest }) => [host, rest]),
  );
  obs.detail = Object.fromEntries(parts.filter((p) => p.detail).map((p) => [p.host, p.detail]));
}

async function runStep(
  step: PlannedStep,
  plan: Plan,
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
  const agent = (name: string) => sessions.get(name)!.agent!;
  // Each host's part runs at once; a host's failure is its part's, the others still report.
  const onHosts = async (names: string[], fn: (name: string, part: HostPart) => Promise<void>) => {
    const parts = names.map((name): HostPart => ({ host: name, ok: true, metrics: {}, labels: {} }));
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
    mergeParts(obs, parts);
  };
  try {
    switch (step.kind) {
      case 'listen': {
        obs.metrics.accepted = 0;
        const accepted = new Map<string, number>();
        await onHosts(
          step.listeners.map((l) => l.host),
          async (name, part) => {
            const address = step.listeners.find((l) => l.host === name)!.address;
            part.metrics.accepted = 0;
            const r = await guard(
              agent(name).request(
                'listen',
                { id: step.name, address, port: step.port, backlog: step.backlog, accept: step.accept },
                // Accepts go on after the reply; the observation keeps counting.
                {
                  onEvent: (_e, d) => {
                    if (typeof d.accepted !== 'number') return;
                    accepted.set(name, d.accepted);
                    if (obs.hosts?.[name]) obs.hosts[name]!.metrics.accepted = d.accepted;
                    obs.metrics.accepted = [...accepted.values()].reduce((a, b) => a + b, 0);
                  },
                  timeoutMs: 30_000,
                },
              ),
            );
            part.detail = r;
          },
        );
        obs.metrics.accepted = [...accepted.values()].reduce((a, b) => a + b, 0);
        break;
      }
      case 'connect': {
        // Each host's share of the count, from its own facts as provisioned.
        const shares = connectShares(step, { roles: plan.roles, facts: factsOf(sessions), addresses: addressesOf(plan) });
        const established = new Map<string, number>();
        let lastSample = -Infinity;
        const series: Array<[number, number]> = [];
        await onHosts(
          step.parts.map((p) => p.host),
          async (name, part) => {
            const pairs = step.parts.find((p) => p.host === name)!.pairs;
            part.count = shares[name]!;
            const r = await guard(
              agent(name).request(
                'connect',
                {
                  id: step.name,
                  pairs,
                  count: part.count,
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
                    established.set(name, Number(d.established ?? 0));
                    const value = [...established.values()].reduce((a, b) => a + b, 0);
                    // The agent's clock: hosts of one role start together, so theirs agree closely enough.
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
            established.set(name, r.established);
            part.metrics = {
              established: r.established,
              attempted: r.attempted,
              connectsPerSecond: r.connectsPerSecond,
              durationMs: r.durationMs,
              workers: r.workers,
              distinctLocalPorts: r.localPorts?.distinct ?? 0,
            };
            if (r.firstError) part.labels.firstError = r.firstError.errno;
            part.errors = Object.entries(r.errors ?? {}).map(([errno, count]) => ({ errno, count: count as number }));
            part.detail = { firstError: r.firstError, perPair: r.perPair, localPorts: r.localPorts };
          },
        );
        series.push([obs.metrics.durationMs ?? 0, obs.metrics.established ?? 0]);
        obs.series = series;
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
        await onHosts(step.hosts, async (name, part) => {
          const snap = await guard(agent(name).request('snapshot', {}, { timeoutMs: 30_000 }));
          const tcp = snap.sockstat?.TCP ?? {};
          let slabBytes = 0;
          for (const c of Object.values<any>(snap.slab ?? {})) slabBytes += c.activeObjs * c.objSize;
          part.metrics = {
            tcpInuse: tcp.inuse ?? 0,
            tcpTw: tcp.tw ?? 0,
            tcpMemPages: tcp.mem ?? 0,
            slabBytes,
            memAvailableKiB: snap.meminfo?.MemAvailable ?? 0,
          };
          part.detail = snap;
        });
        break;
      }
      case 'release': {
        let closed = 0;
        for (const name of step.steps) {
          const target = done.find((o) => o.name === name);
          if (!target) continue;
          // Every host of the role the step ran on.
          const rs = await Promise.all(
            (plan.roles[target.host] ?? []).map((h) =>
              guard(agent(h).request<{ closed: number }>('release', { id: name, abort: true }, { timeoutMs: 30_000 })),
            ),
          );
          for (const r of rs) closed += r.closed;
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
