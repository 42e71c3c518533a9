// The last stage: observations, facts and the restore outcome become the
// RunResult, with every expectation compared against its prediction.

import type { Plan } from '../lab/plan.ts';
import { comparePredictions } from '../models/compare.ts';
import { RESULT_FORMAT, type HostFacts, type HostResult, type RunResult, type StepObservation } from '../result.ts';
import type { RestoreOutcome } from './restore.ts';
import type { Sessions } from './setup.ts';

export interface RunRecord {
  plan: Plan;
  tool: RunResult['tool'];
  machine?: string;
  startedAt: Date;
  stages: Record<string, number>;
  sessions: Sessions;
  observations: StepObservation[];
  restore: RestoreOutcome;
  /** why the run stopped early, if it did */
  error?: { code: string; message: string };
  /** what the run checked the hosts can hold, before any change */
  capacity?: RunResult['capacity'];
}

/** Each host's facts as provisioned, by host name. */
export function factsOf(sessions: Sessions): Record<string, HostFacts> {
  const facts: Record<string, HostFacts> = {};
  for (const [name, s] of sessions) if (s.facts) facts[name] = s.facts;
  return facts;
}

/** Each host's addresses, primary first, by host name. */
export function addressesOf(plan: Plan): Record<string, string[]> {
  return Object.fromEntries(plan.hosts.map((h) => [h.name, [h.address, ...h.aliases]]));
}

export function buildResult(run: RunRecord): RunResult {
  const { plan, sessions } = run;
  const predictions = comparePredictions({
    expectations: plan.lab.expect,
    steps: plan.lab.steps,
    release: plan.lab.release,
    observations: run.observations,
    facts: factsOf(sessions),
    addresses: addressesOf(plan),
    roles: plan.roles,
  });
  const notes = [...run.restore.notes];
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
  const failed = !!run.error || predictions.some((p) => p.verdict !== 'pass') || run.restore.problems.length > 0;
  const result: RunResult = {
    format: RESULT_FORMAT,
    lab: {
      name: plan.lab.name,
      ...(plan.lab.description ? { description: plan.lab.description } : {}),
      file: plan.lab.file,
      source: plan.lab.source,
      vars: plan.lab.vars,
    },
    tool: run.tool,
    ...(run.machine ? { machine: run.machine } : {}),
    startedAt: run.startedAt.toISOString(),
    endedAt: ended.toISOString(),
    durationMs: ended.getTime() - run.startedAt.getTime(),
    stages: run.stages,
    hosts,
    steps: run.observations,
    predictions,
    verdict: failed ? 'fail' : 'pass',
    restore: { ok: run.restore.problems.length === 0, problems: run.restore.problems },
    notes,
    controller: { peakRssKiB: peakRssKiB() },
  };
  if (run.capacity) result.capacity = run.capacity;
  if (run.error) result.error = run.error;
  return result;
}

/** The controller's peak resident set so far (getrusage ru_maxrss), in KiB; 0 where the runtime cannot say. */
function peakRssKiB(): number {
  try {
    return Math.round(process.resourceUsage().maxRSS);
  } catch {
    return 0;
  }
}
