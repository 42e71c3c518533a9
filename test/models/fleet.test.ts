// Many hosts per role: each host's share of a connect step's count comes from
// its own facts, destinations spread over every host of a destination role,
// and compare predicts per host and sums per role.

import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { connectShares, shareOut, type Fleet } from '../../runner/models/fleet.ts';
import { comparePredictions } from '../../runner/models/compare.ts';
import type { HostFacts, StepObservation } from '../../runner/result.ts';
import type { Step } from '../../runner/lab/types.ts';

const facts = (portRange: [number, number]): HostFacts => ({
  hostname: 'h', kernel: '6.1.0', python: '3.11.2', portRange, reservedPorts: '',
  nofileSoft: 1024, nofileHard: 20000, canRaiseHardNofile: false, nrOpen: 1048576, fileMax: 1e6,
  somaxconn: 4096, tcpMaxSynBacklog: 512, tcpFinTimeout: 60, tcpTwReuse: 2, memTotalKiB: 1, memAvailableKiB: 1,
  slabObjectSize: {}, addresses: [], cpus: 2, uid: 0, workerFds: 5, socketsPerWorker: 1019,
});

type Connect = Extract<Step, { kind: 'connect' }>;
const ramp = (over: Partial<Connect> = {}): Connect => ({
  name: 'ramp', kind: 'connect', host: 'client', to: [{ role: 'server', port: 8080 }], count: 5000, sources: 1,
  bind: 'none', rate: 0, timeoutMs: 60000, connectTimeoutMs: 3000, stopOnError: true, ...over,
});

// Three clients, one with half the ports of the others (a narrower range on one host).
const fleet: Fleet = {
  roles: { client: ['c1', 'c2', 'c3'], server: ['s1'] },
  facts: { c1: facts([40000, 40999]), c2: facts([40000, 40999]), c3: facts([40000, 40499]), s1: facts([32768, 60999]) },
  addresses: { c1: ['198.18.0.1', '198.18.1.1'], c2: ['198.18.0.2', '198.18.2.1'], c3: ['198.18.0.3', '198.18.3.1'], s1: ['198.18.0.9'] },
};

test('shareOut() splits a count in proportion to the weights, in whole numbers that add up', () => {
  assert.equal(shareOut(5000, [1000, 1000, 500]), [2000, 2000, 1000]);
  assert.equal(shareOut(10, [1, 1, 1]), [4, 3, 3]);
  assert.equal(shareOut(7, [0, 0]), [4, 3]);
  assert.equal(shareOut(0, [5, 5]), [0, 0]);
});

test('connectShares() shares the count by each host\'s own capacity (ports × sources × destinations)', () => {
  assert.equal(connectShares(ramp(), fleet), { c1: 2000, c2: 2000, c3: 1000 });
  // Two sources double each host's capacity, not the proportions.
  assert.equal(connectShares(ramp({ sources: 2, count: 2500 }), fleet), { c1: 1000, c2: 1000, c3: 500 });
  // One host: the whole count, as before fleets.
  assert.equal(connectShares(ramp(), { ...fleet, roles: { client: ['c1'], server: ['s1'] } }), { c1: 5000 });
});

test('comparePredictions() predicts per host from its facts and its share, and sums the role', () => {
  const parts = { c1: 1000, c2: 1000, c3: 500 };
  const obs: StepObservation = {
    name: 'ramp', kind: 'connect', host: 'client', startedAt: '', durationMs: 1, ok: true,
    metrics: { established: 2500 }, labels: { firstError: 'EADDRNOTAVAIL' },
    hosts: Object.fromEntries(Object.entries(parts).map(([h, n]) => [h, { ok: true, metrics: { established: n }, labels: { firstError: 'EADDRNOTAVAIL' } }])),
  };
  const preds = comparePredictions({
    expectations: [
      { metric: 'ramp.established', model: 'ephemeral-ports', tolerance: 0, tolerancePercent: false },
      { metric: 'ramp.firstError', model: 'ephemeral-ports', tolerance: 0, tolerancePercent: false },
    ],
    steps: [ramp()], observations: [obs], facts: fleet.facts, addresses: fleet.addresses, roles: fleet.roles,
  });
  assert.equal(
    preds.map((p) => [p.metric, p.host ?? `${p.role} total`, p.predicted, p.observed, p.verdict]),
    [
      ['ramp.established', 'c1', 1000, 1000, 'pass'],
      ['ramp.established', 'c2', 1000, 1000, 'pass'],
      ['ramp.established', 'c3', 500, 500, 'pass'],
      ['ramp.established', 'client total', 2500, 2500, 'pass'],
      ['ramp.firstError', 'c1', 'EADDRNOTAVAIL', 'EADDRNOTAVAIL', 'pass'],
      ['ramp.firstError', 'c2', 'EADDRNOTAVAIL', 'EADDRNOTAVAIL', 'pass'],
      ['ramp.firstError', 'c3', 'EADDRNOTAVAIL', 'EADDRNOTAVAIL', 'pass'],
    ],
  );
  assert.is(preds[2]!.derivation, "40499 − 40000 + 1 = 500 ports for 198.18.0.3 → 198.18.0.9:8080 (c3's share of the count: 1000 of 5000)");
  assert.is(preds[3]!.derivation, 'the sum over the 3 hosts of client: 1000 + 1000 + 500 = 2500');
});

test('comparePredictions() counts every host of a destination role as a destination', () => {
  const two: Fleet = { ...fleet, roles: { client: ['c1'], server: ['s1', 's2'] }, addresses: { ...fleet.addresses, s2: ['198.18.0.10'] } };
  const [p] = comparePredictions({
    expectations: [{ metric: 'ramp.established', model: 'ephemeral-ports', tolerance: 0, tolerancePercent: false }],
    steps: [ramp()], observations: [], facts: two.facts, addresses: two.addresses, roles: two.roles,
  });
  assert.is(p!.predicted, 2000);
  assert.is(p!.derivation, '(40999 − 40000 + 1) ports × 1 source × 2 destinations = 2000 connections for 198.18.0.1 → 198.18.0.9:8080, 198.18.0.10:8080');
});

test('earlier steps count as each host ran them: its share held, its share in TIME_WAIT', () => {
  // Two clients of 1000 ports each: "a" holds 600 (300 each), "b" then finds 700 a host.
  const two: Fleet = { ...fleet, roles: { client: ['c1', 'c2'], server: ['s1'] } };
  const steps: Step[] = [ramp({ name: 'a', count: 600 }), ramp({ name: 'b', count: 5000 })];
  const held = comparePredictions({
    expectations: [{ metric: 'b.established', model: 'ephemeral-ports', tolerance: 0, tolerancePercent: false }],
    steps, observations: [], facts: two.facts, addresses: two.addresses, roles: two.roles,
  });
  assert.equal(held.map((p) => [p.host ?? 'total', p.predicted]), [['c1', 700], ['c2', 700], ['total', 1400]]);
  // Released gracefully: each host keeps its own 500 in TIME_WAIT, and the next step gets the other 500 of each.
  const tw: Step[] = [ramp({ name: 'a', count: 1000 }), { name: 'r', kind: 'release', steps: ['a'] }, ramp({ name: 'b', count: 5000 })];
  const after = comparePredictions({
    expectations: [{ metric: 'b.established', model: 'time-wait', tolerance: 0, tolerancePercent: false }],
    steps: tw, observations: [], facts: two.facts, addresses: two.addresses, roles: two.roles, release: 'graceful',
  });
  assert.equal(after.map((p) => [p.host ?? 'total', p.predicted]), [['c1', 500], ['c2', 500], ['total', 1000]]);
});

test('many connect steps in a row are priced in linear time, not 2^steps', () => {
  const steps: Step[] = Array.from({ length: 40 }, (_, i) => ramp({ name: `s${i}`, count: 10 }));
  const t = performance.now();
  const [p] = comparePredictions({
    expectations: [{ metric: 's39.established', model: 'ephemeral-ports', tolerance: 0, tolerancePercent: false }],
    steps, observations: [], facts: fleet.facts, addresses: fleet.addresses, roles: { client: ['c1'], server: ['s1'] },
  });
  assert.is(p!.predicted, 10);
  assert.match(p!.derivation, '− 10 held by "s0" − 10 held by "s1"');
  // Without the memo this took minutes; a generous bound, so a busy machine cannot fail it.
  assert.ok(performance.now() - t < 5000, `${performance.now() - t} ms`);
});

test.run();
