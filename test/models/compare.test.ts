// comparePredictions(): a model that cannot apply gives not-applicable, never
// a PASS of "no prediction" against "nothing observed"; and modelProblem(),
// the rule validation reads, agrees with what the models do.

import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { comparePredictions } from '../../runner/models/compare.ts';
import { MODELS, ModelNotApplicable } from '../../runner/models/connections.ts';
import { MODEL_NAMES, modelProblem, STEP_METRICS, type Expectation, type Step } from '../../runner/lab/types.ts';
import type { HostFacts, StepObservation } from '../../runner/result.ts';

const facts: HostFacts = {
  hostname: 'h', kernel: '6.1.0', python: '3.11.2', portRange: [40000, 40999], reservedPorts: '',
  nofileSoft: 1024, nofileHard: 20000, canRaiseHardNofile: false, nrOpen: 1048576, fileMax: 1e6,
  somaxconn: 4096, tcpMaxSynBacklog: 512, tcpFinTimeout: 60, tcpTwReuse: 2, memTotalKiB: 1, memAvailableKiB: 1,
  slabObjectSize: {}, addresses: [], cpus: 2, uid: 0, workerFds: 5, socketsPerWorker: 1008,
};

/** 500 connections, well inside both the port range and the fd limit: no error happens. */
const ramp = (processes?: number): Step => ({
  name: 'ramp', kind: 'connect', host: 'client', to: [{ role: 'server', port: 8080 }], count: 500, sources: 1,
  bind: 'none', rate: 0, timeoutMs: 60000, connectTimeoutMs: 3000, stopOnError: true, ...(processes ? { processes } : {}),
});
const snap: Step = { name: 'snap', kind: 'snapshot', host: 'server' };

/** What the ramp saw: every connection made, and no error, so firstError is null. */
const observations: StepObservation[] = [
  { name: 'ramp', kind: 'connect', host: 'client', startedAt: '', durationMs: 1, ok: true, metrics: { established: 500, workers: 1 }, labels: {} },
  { name: 'snap', kind: 'snapshot', host: 'server', startedAt: '', durationMs: 1, ok: true, metrics: { tcpInuse: 3 }, labels: {} },
];

function compare(expectations: Expectation[], steps: Step[], f: Record<string, HostFacts> = { client: facts, server: facts }) {
  return comparePredictions({ expectations, steps, observations, facts: f, addresses: { client: ['198.18.0.1'], server: ['198.18.0.2'] } });
}
const expect = (metric: string, model: string): Expectation => ({ metric, model, tolerance: 0, tolerancePercent: false });

test('comparePredictions() gives not-applicable, not pass, to fd-limit on firstError of a step without processes', () => {
  // Before: the model's "cannot predict" became null, the unobserved firstError was null too, and null == null passed.
  const [p] = compare([expect('ramp.firstError', 'fd-limit')], [ramp()]);
  assert.is(p!.verdict, 'not-applicable');
  assert.is(p!.predicted, null);
  assert.is(
    p!.derivation,
    'Model "fd-limit" cannot predict "ramp.firstError": without "processes" the agent adds workers until every connection fits, so no fd limit is reached: set "processes" on step "ramp", or predict "workers"',
  );
});

test('comparePredictions() still passes fd-limit on firstError when the step sets processes and no error is predicted or seen', () => {
  const [p] = compare([expect('ramp.firstError', 'fd-limit')], [ramp(1)]);
  assert.is(p!.predicted, null);
  assert.is(p!.verdict, 'pass');
});

test('comparePredictions() gives not-applicable to a model cited for a metric it does not predict', () => {
  const preds = compare(
    [expect('snap.tcpInuse', 'connection-ceiling'), expect('ramp.workers', 'ephemeral-ports'), expect('ramp.firstError', 'connection-ceiling')],
    [ramp(), snap],
  );
  assert.equal(preds.map((p) => p.verdict), ['not-applicable', 'not-applicable', 'not-applicable']);
  assert.is(preds[0]!.derivation, 'Model "connection-ceiling" cannot predict "snap.tcpInuse": it predicts connect steps, and "snap" is a snapshot step');
  assert.is(preds[1]!.derivation, 'Model "ephemeral-ports" cannot predict "ramp.workers": it predicts "established" or "firstError" of a connect step, not "workers"');
});

test('comparePredictions() gives not-applicable when the model finds at run time that it cannot apply (no facts for the host)', () => {
  const [p] = compare([expect('ramp.established', 'ephemeral-ports')], [ramp()], { server: facts });
  assert.is(p!.verdict, 'not-applicable');
  assert.is(p!.derivation, 'No facts for host "client"');
});

test('modelProblem() agrees with the models: where it finds no problem, the model makes a prediction', () => {
  const fit = (name: string, per: 'connection' | 'time-wait'): Step => ({ name, kind: 'fit', host: 'server', snapshots: ['snap'], per });
  const steps: Step[] = [
    // accept: false, which accept-queue needs of its destinations (a condition only the run checks).
    // server: threads, which server-memory needs of the listens open at its snapshot (a run-time condition).
    { name: 'l', kind: 'listen', host: 'server', port: 8080, backlog: 1, accept: false, server: 'threads' },
    // send, which buffer-memory needs of the connects before its fit (also a run-time condition).
    { ...ramp(), send: 4096 } as Step,
    { ...ramp(2), name: 'ramp2', send: 4096 } as Step,
    snap,
    fit('perConnection', 'connection'),
    fit('perTimeWait', 'time-wait'),
    { name: 'nofile', kind: 'files', host: 'client', ceiling: 'nr_open' },
    { name: 'fileMax', kind: 'files', host: 'client', ceiling: 'file-max', count: 100 },
  ];
  // The server's namespace tracks connections (conntrack: true), with room for the ramps.
  const tracked: Partial<HostFacts> = { conntrackOn: true, conntrackCount: 0, conntrackMax: 1000 };
  let applicable = 0;
  for (const model of MODEL_NAMES) {
    for (const step of steps) {
      for (const metric of STEP_METRICS[step.kind]) {
        if (modelProblem(model, step, metric)) continue;
        applicable++;
        try {
          // The sizes buffer-memory prices an sk_buff with.
          const f = { ...facts, pageSize: 4096, slabObjectSize: { ...facts.slabObjectSize, skbuff_small_head: 576, skbuff_head_cache: 256 } };
          MODELS[model]({ step, metric, steps, release: 'graceful', facts: { client: f, server: { ...f, ...tracked } }, addresses: { client: ['198.18.0.1'], server: ['198.18.0.2'] } });
        } catch (e) {
          if (e instanceof ModelNotApplicable) assert.unreachable(`${model} on ${step.name}.${metric}: ${e.message}`);
          throw e;
        }
      }
    }
  }
  // ephemeral-ports 2 × 2, fd-limit 1 + 3, connection-ceiling 2, memory-per-connection 3 + 1, time-wait 2 × 2 + 1,
  // accept-queue 2 × 2 + 3 (the snapshot's queue, its limit, the live connections), capacity 2, buffer-memory 1,
  // fd-ceilings 2 + 3, conntrack 2 × 2 + 1, server-memory 2
  assert.is(applicable, 41);
});

test.run();
