// The fd-ceilings and conntrack models: pure arithmetic over facts; what the
// kernel does is held by labs/fd-ceilings.yaml and labs/conntrack.yaml (test/run/labs.test.ts).

import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { conntrack, fdCeilings, serverMemory } from '../../runner/models/ceilings.ts';
import { ModelNotApplicable, type ModelContext } from '../../runner/models/connections.ts';
import type { HostFacts } from '../../runner/result.ts';
import type { Step } from '../../runner/lab/types.ts';

const facts = (over: Partial<HostFacts> = {}): HostFacts => ({
  hostname: 'h', kernel: '6.18.0', python: '3.11.2', portRange: [20000, 60999], reservedPorts: '',
  nofileSoft: 1024, nofileHard: 20000, canRaiseHardNofile: false, nrOpen: 1048576, fileMax: 2466112,
  somaxconn: 4096, tcpMaxSynBacklog: 512, tcpFinTimeout: 60, tcpTwReuse: 2, memTotalKiB: 1, memAvailableKiB: 23_000_000,
  slabObjectSize: {}, addresses: [], cpus: 2, uid: 0, bootId: 'b', workerFds: 5, socketsPerWorker: 1008, ...over,
});
const ctx = (step: Step, metric: string, f: Record<string, HostFacts>): ModelContext => ({
  step, metric, steps: [step], facts: f, addresses: { client: ['198.18.0.1'], server: ['198.18.0.2'] },
});
const files = (over: Partial<Extract<Step, { kind: 'files' }>>): Step => ({ name: 'f', kind: 'files', host: 'client', ceiling: 'nr_open', ...over });

test('fdCeilings(): the nofile ceiling is min(hard, nr_open) without CAP_SYS_RESOURCE, nr_open with it; EPERM above', () => {
  const step = files({});
  assert.is(fdCeilings(ctx(step, 'reached', { client: facts() })).value, 20000);
  assert.is(fdCeilings(ctx(step, 'reached', { client: facts({ canRaiseHardNofile: true }) })).value, 1048576);
  const lowered = files({ nrOpen: 4096 });
  const out = fdCeilings(ctx(lowered, 'reached', { client: facts() }));
  assert.is(out.value, 4096);
  assert.match(out.derivation, 'fs.nr_open binds');
  assert.is(fdCeilings(ctx(lowered, 'firstError', { client: facts() })).value, 'EPERM');
});

test('fdCeilings(): file-max gives the count as headroom, then ENFILE', () => {
  const step = files({ ceiling: 'file-max', count: 4000 });
  assert.is(fdCeilings(ctx(step, 'headroom', { client: facts() })).value, 4000);
  assert.is(fdCeilings(ctx(step, 'reached', { client: facts() })).value, 4000);
  assert.is(fdCeilings(ctx(step, 'firstError', { client: facts() })).value, 'ENFILE');
  assert.throws(() => fdCeilings(ctx(step, 'reached', {})), (e: unknown) => e instanceof ModelNotApplicable);
});

test('conntrack(): the server namespace holds nf_conntrack_max less the entries it had, then the SYN is dropped', () => {
  const ramp: Step = {
    name: 'ramp', kind: 'connect', host: 'client', to: [{ role: 'server', port: 8080 }], count: 300, sources: 1,
    bind: 'none', rate: 0, timeoutMs: 60000, connectTimeoutMs: 1000, stopOnError: true,
  };
  const on = { client: facts(), server: facts({ conntrackOn: true, conntrackMax: 200, conntrackCount: 1 }) };
  assert.is(conntrack(ctx(ramp, 'established', on)).value, 199);
  assert.is(conntrack(ctx(ramp, 'firstError', on)).value, 'ETIMEDOUT');
  const roomy = { ...on, server: facts({ conntrackOn: true, conntrackMax: 1000, conntrackCount: 0 }) };
  assert.is(conntrack(ctx(ramp, 'established', roomy)).value, 300);
  assert.is(conntrack(ctx(ramp, 'firstError', roomy)).value, null);
  const snap: Step = { name: 'table', kind: 'snapshot', host: 'server' };
  assert.is(conntrack(ctx(snap, 'conntrackCount', on)).value, 200);
  // Tracking off in the server's namespace: nothing to predict.
  const off = { ...on, server: facts({ conntrackOn: false, conntrackMax: 200, conntrackCount: 0 }) };
  assert.throws(() => conntrack(ctx(ramp, 'established', off)), (e: unknown) => e instanceof ModelNotApplicable);
});

test('serverMemory(): a thread per connection costs its stack, a guard page and CPython 3.11+\'s frame chunk; an epoll loop no thread', () => {
  const listen = (name: string, port: number, server?: 'threads' | 'epoll', stack?: number): Step => ({
    name, kind: 'listen', host: 'server', port, backlog: 4096, accept: true, ...(server ? { server } : {}), ...(stack ? { stack } : {}),
  });
  const snap = (name: string): Step => ({ name, kind: 'snapshot', host: 'server' });
  const steps: Step[] = [listen('t', 8080, 'threads', 1048576), snap('s1'), { name: 'r', kind: 'release', steps: ['t'] }, listen('e', 8081, 'epoll'), snap('s2')];
  const c = (step: Step, metric: string, python = '3.11.7'): ModelContext => ({ ...ctx(step, metric, { server: facts({ python, pageSize: 4096 }) }), steps });
  assert.is(serverMemory(c(steps[1]!, 'serverThreadsPerConnection')).value, 1);
  assert.is(serverMemory(c(steps[1]!, 'serverVmBytesPerConnection')).value, 1048576 + 4096 + 16384);
  assert.is(serverMemory(c(steps[1]!, 'serverVmBytesPerConnection', '3.10.12')).value, 1048576 + 4096);
  // After the release only the epoll server is open.
  assert.is(serverMemory(c(steps[4]!, 'serverThreadsPerConnection')).value, 0);
  assert.throws(() => serverMemory(c(steps[4]!, 'serverVmBytesPerConnection')), (e: unknown) => e instanceof ModelNotApplicable);
  // A plain listen (the agent's accept workers) is no server to price.
  const plain = [listen('p', 8080), snap('s')];
  assert.throws(() => serverMemory({ ...c(plain[1]!, 'serverThreadsPerConnection'), steps: plain }), (e: unknown) => e instanceof ModelNotApplicable);
});

test.run();
