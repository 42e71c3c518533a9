// Compare: each expectation of a lab becomes a Prediction with a verdict, from
// the models (or a literal), the hosts' facts and what the steps observed.

import { modelProblem, type Expectation, type ModelName, type ReleaseMode, type Step } from '../lab/types.ts';
import type { HostFacts, Prediction, StepObservation, Verdict } from '../result.ts';
import { MODELS, ModelNotApplicable, type ModelOutput } from './connections.ts';

export interface CompareInput {
  expectations: Expectation[];
  steps: Step[];
  observations: StepObservation[];
  facts: Record<string, HostFacts>;
  addresses: Record<string, string[]>;
  /** the lab's release mode; abort when not given */
  release?: ReleaseMode;
}

function observedValue(obs: StepObservation | undefined, metric: string): number | string | null | undefined {
  if (!obs || !obs.ok) return undefined;
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
  return input.expectations.map((exp) => {
    const dot = exp.metric.indexOf('.');
    const stepName = exp.metric.slice(0, dot);
    const metric = exp.metric.slice(dot + 1);
    const step = input.steps.find((s) => s.name === stepName);
    const observed = observedValue(
      input.observations.find((o) => o.name === stepName),
      metric,
    );
    let out: ModelOutput;
    // A model with no prediction to make is not-applicable, never a null that would equal an unobserved null.
    let notApplicable = false;
    if (exp.model) {
      const model = exp.model as ModelName;
      const why = step ? modelProblem(model, step, metric) : `the lab has no step "${stepName}"`;
      try {
        if (why) throw new ModelNotApplicable(`Model "${model}" cannot predict "${exp.metric}": ${why}`);
        out = MODELS[model]({ step: step!, metric, facts: input.facts, addresses: input.addresses, steps: input.steps, release: input.release ?? 'abort' });
      } catch (e) {
        if (!(e instanceof ModelNotApplicable)) throw e;
        out = { value: null, derivation: e.message, explanation: '' };
        notApplicable = true;
      }
    } else {
      out = { value: exp.value ?? null, derivation: `stated in the lab: ${JSON.stringify(exp.value)}`, explanation: '' };
    }
    const tolerance =
      exp.tolerancePercent && typeof out.value === 'number' ? Math.abs(out.value) * (exp.tolerance / 100) : exp.tolerance;
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
  });
}
