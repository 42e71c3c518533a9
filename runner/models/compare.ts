// Compare: each expectation of a lab becomes a Prediction with a verdict, from
// the models (or a literal), the hosts' facts and what the steps observed.

import { modelProblem, type Expectation, type ModelName, type ReleaseMode, type Step } from '../lab/types.ts';
import type { HostFacts, Prediction, StepObservation, Verdict } from '../result.ts';
import { connectShares, hostContext, type Fleet } from './fleet.ts';
import { MODELS, ModelNotApplicable, type ModelContext, type ModelOutput } from './connections.ts';

export interface CompareInput {
  expectations: Expectation[];
  steps: Step[];
  observations: StepObservation[];
  /** by host name (the role's name for a role with one host) */
  facts: Record<string, HostFacts>;
  addresses: Record<string, string[]>;
  /** role -> its host names; default: each role is one host of its own name */
  roles?: Record<string, string[]>;
  /** the lab's release mode; abort when not given */
  release?: ReleaseMode;
}

/** Metrics that add up over a role's hosts (the others, like durationMs, do not). */
const ADDITIVE = new Set(['established', 'attempted', 'workers', 'distinctLocalPorts', 'connectsPerSecond', 'accepted', 'closed', 'bytesSent']);

function observedValue(obs: Pick<StepObservation, 'metrics' | 'labels'> & { ok?: boolean } | undefined, metric: string): number | string | null | undefined {
  if (!obs || obs.ok === false) return undefined;
  if (metric in obs.metrics) return obs.metrics[metric]!;
  if (metric in obs.labels) return obs.labels[metric]!;
  // A label a step measures but did not see (no error happened) is null, not unmeasured.
  if (metric === 'firstError') return null;
  return undefined;
}

export function verdictOf(predicted: number | string | null, observed: number | string | null | undefined, tolerance: number): Verdict {
  if (observed === undefined) return 'not-measured';
  if (typeof predicted === 'number' && typeof observed === 'number') {
    return Math.abs(observed - predicted) <= tolerance ? 'pass' : 'fail';
  }
  return predicted === observed ? 'pass' : 'fail';
}

export function comparePredictions(input: CompareInput): Prediction[] {
  const roles = input.roles ?? Object.fromEntries(input.steps.flatMap((s) => ('host' in s ? [[s.host, [s.host]]] : [])));
  const fleet: Fleet = { roles, facts: input.facts, addresses: input.addresses, steps: input.steps, release: input.release ?? 'abort' };
  return input.expectations.flatMap((exp) => {
    const dot = exp.metric.indexOf('.');
    const stepName = exp.metric.slice(0, dot);
    const metric = exp.metric.slice(dot + 1);
    const step = input.steps.find((s) => s.name === stepName);
    const obs = input.observations.find((o) => o.name === stepName);
    const hosts = step && 'host' in step ? (roles[step.host] ?? [step.host]) : [];
    if (!step || !exp.model || step.kind !== 'connect') {
      // A literal, or a step models do not predict per host: one prediction on what the step saw as a whole.
      const ctx: ModelContext = { step: step!, metric, facts: input.facts, addresses: input.addresses, steps: input.steps, release: input.release ?? 'abort' };
      if (step && 'host' in step && hosts.length === 1) {
        ctx.facts = { ...input.facts, [step.host]: input.facts[hosts[0]!]! };
        ctx.addresses = { ...input.addresses, [step.host]: input.addresses[hosts[0]!] ?? [] };
      }
      return [predict(exp, ctx, observedValue(obs, metric))];
    }
    // Each host of the role predicts from its own facts and its share of the count.
    const shares = connectShares(step, fleet);
    const perHost = hosts.map((name) => {
      const p = predict(exp, hostContext(step, name, shares[name]!, fleet, metric), observedValue(obs?.hosts?.[name] ?? (hosts.length === 1 ? obs : undefined), metric));
      if (hosts.length === 1) return p;
      return { ...p, derivation: `${p.derivation} (${name}'s share of the count: ${shares[name]} of ${step.count})`, host: name, role: step.host };
    });
    if (hosts.length === 1 || !ADDITIVE.has(metric)) return perHost;
    const numbers = perHost.map((p) => p.predicted);
    const predicted = numbers.every((n) => typeof n === 'number') ? (numbers as number[]).reduce((a, b) => a + b, 0) : null;
    const observed = observedValue(obs, metric);
    const tolerance = perHost.reduce((a, p) => a + p.tolerance, 0);
    const total: Prediction = {
      metric: exp.metric,
      model: exp.model,
      predicted,
      observed: observed === undefined ? null : observed,
      tolerance,
      verdict: predicted === null ? 'not-measured' : verdictOf(predicted, observed, tolerance),
      derivation: `the sum over the ${hosts.length} hosts of ${step.host}: ${numbers.map((n) => n ?? '—').join(' + ')} = ${predicted ?? '—'}`,
      role: step.host,
    };
    return [...perHost, total];
  });
}

function predict(exp: Expectation, ctx: ModelContext, observed: number | string | null | undefined): Prediction {
  let out: ModelOutput;
  // A model with no prediction to make is not-applicable, never a null that would equal an unobserved null.
  let notApplicable = false;
  if (exp.model) {
    const model = exp.model as ModelName;
    const why = ctx.step ? modelProblem(model, ctx.step, ctx.metric) : `the lab has no step "${exp.metric.slice(0, exp.metric.indexOf('.'))}"`;
    try {
      if (why) throw new ModelNotApplicable(`Model "${model}" cannot predict "${exp.metric}": ${why}`);
      out = MODELS[model](ctx);
    } catch (e) {
      if (!(e instanceof ModelNotApplicable)) throw e;
      out = { value: null, derivation: e.message, explanation: '' };
      // A host the run never reached (it stopped first) has no facts and no observation: not measured, as the run says why.
      notApplicable = !(observed === undefined && e.message.startsWith('No facts for host'));
    }
  } else {
    out = { value: exp.value ?? null, derivation: `stated in the lab: ${JSON.stringify(exp.value)}`, explanation: '' };
  }
  // A percentage of the prediction, without binary-float noise (226.08, not 226.07999999999998).
  const tolerance = exp.tolerancePercent && typeof out.value === 'number' ? Number((Math.abs(out.value) * (exp.tolerance / 100)).toPrecision(12)) : exp.tolerance;
  const prediction: Prediction = {
    metric: exp.metric,
    model: exp.model ?? 'literal',
    predicted: out.value,
    observed: observed === undefined ? null : observed,
    tolerance,
    verdict: notApplicable ? 'not-applicable' : verdictOf(out.value, observed, tolerance),
    derivation: out.derivation,
  };
  if (out.explanation) prediction.explanation = out.explanation;
  if (out.reference) prediction.reference = out.reference;
  return prediction;
}
