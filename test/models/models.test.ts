import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { connectionCeiling, ephemeralPorts, fdLimit, reservedInRange, type ModelContext } from '../../runner/models/connections.ts';
import { comparePredictions, verdictOf } from '../../runner/models/compare.ts';
import type { HostFacts, StepObservation } from '../../runner/result.ts';
import type { Step } from '../../runner/lab/types.ts';

/**
 * How the agent spreads sockets over workers under a soft nofile limit, asked
 * of the agent's own code (the facts it reports come from the same functions),
 * so these tests hold the model against the agent, not against a copy of its
 * rule. test/agent/agent.test.ts checks the agent really starts that many.
 */
const asked = new Map<number, Pick<HostFacts, 'workerFds' | 'socketsPerWorker'>>();
function agentWorkerFacts(nofileSoft: number): Pick<HostFacts, 'workerFds' | 'socketsPerWorker'> {
  const known = asked.get(nofileSoft);
  if (known) return known;
  const out = execFileSync('python3', ['-c', 'import sys; from lab_agent.fds import WORKER_FDS, sockets_per_worker; print(WORKER_FDS, sockets_per_worker(int(sys.argv[1])))', String(nofileSoft)], {
    cwd: fileURLToPath(new URL('../../runner/agent/', import.meta.url)),
    encoding: 'utf8',
  });
  const [workerFds, socketsPerWorker] = out.trim().split(' ').map(Number);
  asked.set(nofileSoft, { workerFds: workerFds!, socketsPerWorker: socketsPerWorker! });
  return asked.get(nofileSoft)!;
}

const facts = (over: Partial<HostFacts> = {}): HostFacts => ({
  hostname: 'h', kernel: '6.1.0', python: '3.11.2', portRange: [40000, 40999], reservedPorts: '',
  nofileSoft: 1024, nofileHard: 20000, canRaiseHardNofile: false, nrOpen: 1048576, fileMax: 9223372036854775807,
  somaxconn: 4096, tcpMaxSynBacklog: 512, tcpFinTimeout: 60, tcpTwReuse: 2, memTotalKiB: 1, memAvailableKiB: 1,
  slabObjectSize: {}, addresses: [], cpus: 2, uid: 0, ...agentWorkerFacts(over.nofileSoft ?? 1024), ...over,
});

const connect = (over: Partial<Extract<Step, { kind: 'connect' }>> = {}): Step => ({
  name: 'ramp', kind: 'connect', host: 'client', to: [{ role: 'server', port: 8080 }], count: 5000, sources: 1,
  bind: 'none', rate: 0, timeoutMs: 60000, connectTimeoutMs: 3000, stopOnError: true, ...over,
});

const ctx = (step: Step, metric = 'established', f = facts()): ModelContext => ({
  step, metric, facts: { client: f, server: f },
  addresses: { client: ['198.18.0.1', '198.18.1.1', '198.18.1.2'], server: ['198.18.0.2'] },
  steps: [step],
});

test('ephemeralPorts() predicts the range size for one 4-tuple, with its derivation', () => {
  const out = ephemeralPorts(ctx(connect()));
  assert.is(out.value, 1000);
  assert.is(out.derivation, '40999 − 40000 + 1 = 1000 ports for 198.18.0.1 → 198.18.0.2:8080');
});

test('ephemeralPorts() multiplies by sources and destinations for plain connect()', () => {
  const step = connect({ sources: 2, to: [{ role: 'server', port: 8080 }, { role: 'server', port: 8081 }] });
  const out = ephemeralPorts(ctx(step));
  assert.is(out.value, 4000);
  assert.is(out.derivation, '(40999 − 40000 + 1) ports × 2 sources × 2 destinations = 4000 connections for 198.18.0.1, 198.18.1.1 → 198.18.0.2:8080, 198.18.0.2:8081');
});

test('ephemeralPorts() does not multiply by destinations when bind() picks the port', () => {
  const step = connect({ bind: 'ip', to: [{ role: 'server', port: 8080 }, { role: 'server', port: 8081 }] });
  assert.is(ephemeralPorts(ctx(step)).value, 1000);
  // bind() runs out of ports first: EADDRINUSE
  assert.is(ephemeralPorts(ctx(step, 'firstError')).value, 'EADDRINUSE');
});

test('ephemeralPorts() with bind: reuseaddr gives one connection per source and destination, then EADDRNOTAVAIL', () => {
  const step = connect({ bind: 'reuseaddr', port: 61000, count: 10, to: [{ role: 'server', port: 8080 }, { role: 'server', port: 8081 }] });
  const out = ephemeralPorts(ctx(step));
  assert.is(out.value, 2);
  assert.is(out.derivation, '1 port (61000) × 1 source × 2 destinations = 2 connections for 198.18.0.1 → 198.18.0.2:8080, 198.18.0.2:8081');
  // bind() to the shared port succeeds; connect() finds the 4-tuple taken, which Linux reports as EADDRNOTAVAIL.
  const err = ephemeralPorts(ctx(step, 'firstError'));
  assert.is(err.value, 'EADDRNOTAVAIL');
  assert.is(err.derivation, '1 port (61000) × 1 source × 2 destinations = 2 connections < count 10 → EADDRNOTAVAIL');
  assert.is(ephemeralPorts(ctx(connect({ bind: 'reuseaddr', port: 61000, count: 1 }), 'firstError')).value, null);
});

test('ephemeralPorts() caps the prediction at the step count and says so', () => {
  const out = ephemeralPorts(ctx(connect({ count: 300 })));
  assert.is(out.value, 300);
  assert.match(out.derivation, '; the step opens at most 300, so 300');
});

test('ephemeralPorts() subtracts reserved ports inside the range', () => {
  const out = ephemeralPorts(ctx(connect(), 'established', facts({ reservedPorts: '40000-40009,50000' })));
  assert.is(out.value, 990);
  assert.match(out.derivation, '40999 − 40000 + 1 − 10 reserved = 990 ports');
});

test('ephemeralPorts() predicts the first error: EADDRNOTAVAIL when ports run out, null when they do not', () => {
  assert.is(ephemeralPorts(ctx(connect(), 'firstError')).value, 'EADDRNOTAVAIL');
  assert.is(ephemeralPorts(ctx(connect({ count: 10 }), 'firstError')).value, null);
});

// Earlier steps whose connections are still held (the range is 1000 ports).
const seq = (steps: Step[], name: string, metric = 'established'): ModelContext => ({ ...ctx(steps.find((s) => s.name === name)!, metric), steps });
const release = (name: string, steps: string[]): Step => ({ name, kind: 'release', steps });

test('ephemeralPorts() takes the ports an earlier step still holds on the same pair', () => {
  const steps = [connect({ name: 'c1', count: 400 }), connect({ name: 'c2', count: 800 })];
  const out = ephemeralPorts(seq(steps, 'c2'));
  assert.is(out.value, 600);
  assert.is(out.derivation, '40999 − 40000 + 1 − 400 held by "c1" = 600 connections for 198.18.0.1 → 198.18.0.2:8080');
  assert.is(ephemeralPorts(seq(steps, 'c2', 'firstError')).value, 'EADDRNOTAVAIL');
  // Released in between: the whole range again.
  assert.is(ephemeralPorts(seq([steps[0]!, release('r', ['c1']), steps[1]!], 'c2')).value, 800);
  // Another destination: another 4-tuple space.
  assert.is(ephemeralPorts(seq([steps[0]!, connect({ name: 'c2', count: 800, to: [{ role: 'server', port: 9090 }] })], 'c2')).value, 800);
  // Several pairs holding all of the earlier step's pairs.
  const wide = connect({ name: 'c2', count: 5000, to: [{ role: 'server', port: 8080 }, { role: 'server', port: 9090 }] });
  assert.is(ephemeralPorts(seq([steps[0]!, wide], 'c2')).value, 1600);
});

test('ephemeralPorts() after bind: ip holding every port: connect() finds none, whatever the pair', () => {
  const steps = [
    connect({ name: 'ramp', count: 5000, sources: 2, bind: 'ip' }),
    connect({ name: 'few', count: 3, to: [{ role: 'server', port: 9090 }] }),
  ];
  const out = ephemeralPorts(seq(steps, 'few'));
  assert.is(out.value, 0);
  assert.match(out.derivation, '40999 − 40000 + 1 − every port (2000 ports bound by "ramp") = 0 connections');
  assert.match(out.explanation, 'connect() skips every port number that a socket holds through bind(), on any address');
  assert.is(ephemeralPorts(seq(steps, 'few', 'firstError')).value, 'EADDRNOTAVAIL');
  // bind: ip on one source: exactly those port numbers are gone for every pair.
  const one = [connect({ name: 'b', count: 300, bind: 'ip' }), connect({ name: 'c', count: 5000, sources: 2 })];
  // Two steps sharing one port inside the range (bind: reuseaddr): that one port is gone, once.
  const reuse = [
    connect({ name: 'r1', count: 1, bind: 'reuseaddr', port: 40500 }),
    connect({ name: 'r2', count: 1, bind: 'reuseaddr', port: 40500, to: [{ role: 'server', port: 9090 }] }),
    connect({ name: 'c', count: 5000 }),
  ];
  const r = ephemeralPorts(seq(reuse, 'c'));
  assert.is(r.value, 999);
  assert.match(r.derivation, '− port 40500 bound by "r1" = 999 connections');
  const c = ephemeralPorts(seq(one, 'c'));
  assert.is(c.value, 2 * 700);
  assert.match(c.derivation, '− (300 ports bound by "b") × 2 pairs = 1400 connections');
});

test('ephemeralPorts() with bind: ip counts the ports in use on each of its source addresses', () => {
  const steps = [connect({ name: 'a', count: 600 }), connect({ name: 'b', count: 5000, sources: 2, bind: 'ip' })];
  const out = ephemeralPorts(seq(steps, 'b'));
  assert.is(out.value, 400 + 1000);
  assert.match(out.derivation, '((40999 − 40000 + 1) ports × 2 sources) − 600 ports in use on its source addresses (600 held by "a") = 1400 connections');
});

test('ephemeralPorts() says it cannot tell, rather than guess, where the kernel\'s choice of ports decides', () => {
  // bind: ip over two sources that do not fill the range: the port numbers may repeat on each.
  const steps = [connect({ name: 'b', count: 600, sources: 2, bind: 'ip' }), connect({ name: 'c', count: 10 })];
  assert.throws(() => ephemeralPorts(seq(steps, 'c')), /cannot tell how many ports "b" leaves to "c": bind\(\) on 2 source addresses/);
  // An earlier step over two destinations of which this one shares one.
  const wide = [connect({ name: 'w', count: 600, to: [{ role: 'server', port: 8080 }, { role: 'server', port: 9090 }] }), connect({ name: 'c', count: 10 })];
  assert.throws(() => ephemeralPorts(seq(wide, 'c')), /shares only some/);
  // A shared port outside the range: nothing earlier can hold it, unless another step shares it too.
  const shared = [connect({ name: 'a', count: 600 }), connect({ name: 'r', count: 5, bind: 'reuseaddr', port: 61000 })];
  assert.is(ephemeralPorts(seq(shared, 'r')).value, 1);
  const twice = [connect({ name: 'a', count: 1, bind: 'reuseaddr', port: 61000 }), connect({ name: 'r', count: 5, bind: 'reuseaddr', port: 61000 })];
  assert.throws(() => ephemeralPorts(seq(twice, 'r')), /the shared port may be one that they hold/);
});

test('reservedInRange() counts single ports and ranges clipped to the range', () => {
  assert.is(reservedInRange('', 1, 10), 0);
  assert.is(reservedInRange('5,8-20', 1, 10), 4);
  assert.is(reservedInRange('30-40', 1, 10), 0);
});

test('fdLimit() predicts processes × (nofile − the fds a connect worker holds before its first socket)', () => {
  // stdin, stdout, stderr, the control pipe and the report pipe (measured: 251 sockets under ulimit -n 256)
  const { workerFds } = agentWorkerFacts(1024);
  assert.is(workerFds, 5);
  const out = fdLimit(ctx(connect({ processes: 2 })));
  assert.is(out.value, 2 * (1024 - 5));
  assert.is(out.derivation, '2 processes × (ulimit -n 1024 − 5 fds held before the first socket) = 2038 sockets');
  const one = ctx(connect({ processes: 1, count: 1000 }), 'established', facts({ nofileSoft: 256 }));
  assert.is(fdLimit(one).value, 251);
  const err = fdLimit({ ...one, metric: 'firstError' });
  assert.is(err.value, 'EMFILE');
  assert.is(err.derivation, '1 process × (ulimit -n 256 − 5 fds held before the first socket) = 251 sockets < count 1000 → EMFILE');
  assert.is(fdLimit(ctx(connect({ processes: 1, count: 100 }), 'firstError')).value, null);
});

test('fdLimit() predicts the workers from the agent\'s own sockets-per-worker rule, rounded up', () => {
  const per = agentWorkerFacts(305).socketsPerWorker;
  const f = facts({ nofileSoft: 305, portRange: [20000, 60999] });
  const at = (count: number) => fdLimit(ctx(connect({ count }), 'workers', f)).value;
  assert.is(at(3 * per), 3);
  assert.is(at(3 * per + 1), 4, 'one connection over a worker boundary takes one more worker');
  const out = fdLimit(ctx(connect({ count: 900 }), 'workers', f));
  assert.is(out.derivation, `⌈900 connections ÷ ${per} sockets per worker (ulimit -n 305 less a margin)⌉ = ${Math.ceil(900 / per)} worker processes`);
  assert.is(fdLimit(ctx(connect({ count: 5000 }), 'workers', facts({ nofileSoft: 305 }))).value, Math.ceil(1000 / per), 'the port range caps it at 1000 connections');
  assert.is(fdLimit(ctx(connect({ processes: 2 }), 'workers')).value, 2);
});

test('connectionCeiling() picks the tighter of ports and fds', () => {
  assert.is(connectionCeiling(ctx(connect({ processes: 1 }), 'established', facts({ nofileSoft: 500 }))).value, 495);
  assert.is(connectionCeiling(ctx(connect({ processes: 4 }))).value, 1000);
});

test('verdictOf() uses the tolerance for numbers and equality for labels', () => {
  assert.is(verdictOf(1000, 1000, 0), 'pass');
  assert.is(verdictOf(1000, 1003, 2), 'fail');
  assert.is(verdictOf(1000, 1002, 2), 'pass');
  assert.is(verdictOf('EADDRNOTAVAIL', 'EADDRNOTAVAIL', 0), 'pass');
  assert.is(verdictOf('EADDRNOTAVAIL', null, 0), 'fail');
  assert.is(verdictOf(1000, undefined, 0), 'not-measured');
});

test('comparePredictions() turns expectations into predictions with verdicts', () => {
  const step = connect();
  const obs: StepObservation = {
    name: 'ramp', kind: 'connect', host: 'client', startedAt: '', durationMs: 1, ok: true,
    metrics: { established: 1000 }, labels: { firstError: 'EADDRNOTAVAIL' },
  };
  const preds = comparePredictions({
    expectations: [
      { metric: 'ramp.established', model: 'ephemeral-ports', tolerance: 0, tolerancePercent: false },
      { metric: 'ramp.firstError', value: 'EADDRNOTAVAIL', tolerance: 0, tolerancePercent: false },
      { metric: 'ramp.established', value: 2000, tolerance: 10, tolerancePercent: true },
      { metric: 'missing.established', value: 1, tolerance: 0, tolerancePercent: false },
    ],
    steps: [step], observations: [obs], facts: { client: facts(), server: facts() },
    addresses: { client: ['198.18.0.1'], server: ['198.18.0.2'] },
  });
  assert.equal(preds.map((p) => p.verdict), ['pass', 'pass', 'fail', 'not-measured']);
  assert.is(preds[0]!.derivation, '40999 − 40000 + 1 = 1000 ports for 198.18.0.1 → 198.18.0.2:8080');
  assert.is(preds[2]!.tolerance, 200);
  assert.is(preds[1]!.model, 'literal');
});

test.run();
