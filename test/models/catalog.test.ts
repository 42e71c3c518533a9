// The models of the catalog labs (capacity, time-wait, accept-queue): pure
// arithmetic over facts; what the kernel does is held by test/run/catalog.test.ts.

import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { acceptQueue, capacity, deferredAfterS, queueOutcome, timeWait, type ModelContext } from '../../runner/models/connections.ts';
import { bufferMemory, chargedPages, skbTruesize } from '../../runner/models/buffers.ts';
import type { HostFacts } from '../../runner/result.ts';
import type { Step } from '../../runner/lab/types.ts';

const facts = (over: Partial<HostFacts> = {}): HostFacts => ({
  hostname: 'h', kernel: '6.18.0', python: '3.11.2', portRange: [20000, 60999], reservedPorts: '',
  nofileSoft: 1024, nofileHard: 20000, canRaiseHardNofile: false, nrOpen: 1048576, fileMax: 2466112,
  somaxconn: 4096, tcpMaxSynBacklog: 512, tcpFinTimeout: 60, tcpTwReuse: 2, memTotalKiB: 1, memAvailableKiB: 23_000_000,
  slabObjectSize: { TCP: 2368, sock_inode_cache: 832, filp: 192, dentry: 192, tw_sock_TCP: 256 }, addresses: [], cpus: 2, uid: 0, bootId: 'b', workerFds: 5, socketsPerWorker: 1008, ...over,
});
const connect = (over: Partial<Extract<Step, { kind: 'connect' }>> = {}): Extract<Step, { kind: 'connect' }> => ({
  name: 'ramp', kind: 'connect', host: 'client', to: [{ role: 'server', port: 8080 }], count: 1000, sources: 1,
  bind: 'none', rate: 0, timeoutMs: 60000, connectTimeoutMs: 3000, stopOnError: true, ...over,
});
const listen = (over: Partial<Extract<Step, { kind: 'listen' }>> = {}): Step => ({ name: 'listen', kind: 'listen', host: 'server', port: 8080, backlog: 4096, accept: true, ...over });
const ctx = (steps: Step[], step: Step, metric: string, f = facts(), release: 'abort' | 'graceful' = 'abort'): ModelContext => ({
  step, metric, steps, release, facts: { client: f, server: f }, addresses: { client: ['198.18.0.1'], server: ['198.18.0.2'] },
});

test('capacity() names the binding ceiling: ports here, memory on a small machine', () => {
  const hold = connect({ count: 16400 });
  const out = capacity(ctx([listen(), hold], hold, 'established'));
  assert.is(out.value, 16400);
  assert.match(out.derivation, 'Binding: ephemeral ports, 41000; the step asks for 16400 = 40.0% of it');
  // The agent runs as root here: fs.file-max is no ceiling for it (labs/two-million.yaml holds 4M files above it).
  assert.match(out.derivation, '; not fs.file-max (2466112): the agent has CAP_SYS_ADMIN, which passes it. Binding');
  // As another user it is one, and binds when it is the smallest; so for uid 0 of a user namespace (no CAP_SYS_ADMIN that counts).
  assert.is(capacity(ctx([listen(), hold], hold, 'established', facts({ uid: 0, fileMaxExempt: false, fileMax: 20000 }))).value, 10000);
  const user = capacity(ctx([listen(), hold], hold, 'established', facts({ uid: 1000, fileMax: 20000 })));
  assert.is(user.value, 10000);
  assert.match(user.derivation, 'fs.file-max: fs.file-max 20000 open files on the kernel ÷ 2 fds per connection');
  assert.match(user.derivation, 'Binding: fs.file-max, 10000');
  // 3584 B per end: 2 × 3584 per connection; 10 MiB of MemAvailable hold 1462 of them.
  const small = capacity(ctx([listen(), hold], hold, 'established', facts({ memAvailableKiB: 10240 })));
  assert.is(small.value, 1462);
  assert.match(small.derivation, 'Binding: kernel memory, 1462');
});

test('timeWait() after a graceful close: tcp_tw_reuse 0 and 2 (not loopback) reuse nothing, 1 reuses once past the delay', () => {
  const ramp = connect();
  const again = connect({ name: 'again' });
  const steps: Step[] = [listen(), ramp, { name: 'close', kind: 'release', steps: ['ramp', 'listen'] }, { name: 's', kind: 'sleep', durationMs: 2000 }, listen({ name: 'listen2' }), again];
  const f = (tcpTwReuse: number) => facts({ portRange: [45000, 45999], tcpTwReuse });
  assert.is(timeWait(ctx(steps, again, 'established', f(0), 'graceful')).value, 0);
  assert.is(timeWait(ctx(steps, again, 'firstError', f(2), 'graceful')).value, 'EADDRNOTAVAIL');
  assert.is(timeWait(ctx(steps, again, 'established', f(1), 'graceful')).value, 1000);
  // An abort (RST) leaves no TIME_WAIT at all.
  assert.is(timeWait(ctx(steps, again, 'established', f(0), 'abort')).value, 1000);
  // The server closing first puts TIME_WAIT on the server: the client's ports are free.
  const serverFirst = steps.map((s) => (s.kind === 'release' ? { ...s, steps: ['listen', 'ramp'] } : s));
  assert.is(timeWait(ctx(serverFirst, serverFirst[5]!, 'established', f(0), 'graceful')).value, 1000);
});

test('timeWait(): a server that closes past the client\'s tcp_fin_timeout leaves the client no TIME_WAIT; within it, it does', () => {
  const ramp = connect();
  const steps: Step[] = [
    listen(), ramp,
    { name: 'close', kind: 'release', steps: ['ramp'] },
    { name: 's', kind: 'sleep', durationMs: 2000 },
    { name: 'close_server', kind: 'release', steps: ['listen'] },
    { name: 'waiting', kind: 'snapshot', host: 'client' },
  ];
  const waiting = steps[5]!;
  const tw = (tcpFinTimeout: number) => timeWait(ctx(steps, waiting, 'tcpTw', facts({ portRange: [45000, 45999], tcpFinTimeout }), 'graceful'));
  assert.is(tw(1).value, 0);
  assert.match(tw(1).derivation, '1000 of ramp left FIN_WAIT2 after tcp_fin_timeout 1 s (the server closed in close_server 2 s after close)');
  assert.is(tw(60).value, 1000);
  // The 60 s count from the server's FIN, not the client's close: 30 s, then the server, then 40 s, and all are still there.
  const slow: Step[] = [
    listen(), ramp,
    { name: 'close', kind: 'release', steps: ['ramp'] },
    { name: 's1', kind: 'sleep', durationMs: 30_000 },
    { name: 'close_server', kind: 'release', steps: ['listen'] },
    { name: 's2', kind: 'sleep', durationMs: 40_000 },
    waiting,
  ];
  const slowTw = timeWait(ctx(slow, waiting, 'tcpTw', facts({ portRange: [45000, 45999], tcpFinTimeout: 60 }), 'graceful'));
  assert.is(slowTw.value, 1000);
  assert.match(slowTw.derivation, '1000 closed first by client in close (40 s before)');
  // Both closed in one release, the server right after the client: TIME_WAIT whatever the timeout.
  const together: Step[] = [listen(), ramp, { name: 'close', kind: 'release', steps: ['ramp', 'listen'] }, { name: 's', kind: 'sleep', durationMs: 2000 }, waiting];
  assert.is(timeWait(ctx(together, waiting, 'tcpTw', facts({ tcpFinTimeout: 1 }), 'graceful')).value, 1000);
});

test('acceptQueue() holds min(backlog, somaxconn) + 1, then ETIMEDOUT', () => {
  const ramp = connect({ count: 20 });
  const steps = [listen({ backlog: 8, accept: false }), ramp];
  assert.is(acceptQueue(ctx(steps, ramp, 'established')).value, 9);
  assert.is(acceptQueue(ctx(steps, ramp, 'established', facts({ somaxconn: 4 }))).value, 5);
  assert.is(acceptQueue(ctx(steps, ramp, 'firstError')).value, 'ETIMEDOUT');
});

test('acceptQueue() on snapshots: the queue and its limit on the server, the live connections on the client', () => {
  const ramp = connect({ count: 20 });
  const queue: Step = { name: 'queue', kind: 'snapshot', host: 'server' };
  const seen: Step = { name: 'seen', kind: 'snapshot', host: 'client' };
  const steps = [listen({ backlog: 8, accept: false }), ramp, queue, seen];
  assert.is(acceptQueue(ctx(steps, queue, 'acceptQueue')).value, 9);
  assert.is(acceptQueue(ctx(steps, queue, 'acceptQueueMax', facts({ somaxconn: 4 }))).value, 4);
  assert.is(acceptQueue(ctx(steps, seen, 'establishedSockets')).value, 9);
  // Nothing deferred: tcp_abort_on_overflow changes nothing, the overflow is at the SYN.
  assert.is(acceptQueue(ctx(steps, seen, 'establishedSockets', facts({ tcpAbortOnOverflow: 1 }))).value, 9);
});

test('queueOutcome() with TCP_DEFER_ACCEPT: SYN queue, syncookies, then the overflow at the last ACK', () => {
  const l = listen({ backlog: 4, accept: false, deferAcceptS: 1 }) as Extract<Step, { kind: 'listen' }>;
  const on = queueOutcome(l, facts({ tcpSyncookies: 1, tcpAbortOnOverflow: 1 }), 20);
  assert.equal([on.established, on.queued, on.reset, on.orphaned, on.settledAfterS], [10, 5, 5, 0, 1]);
  const kept = queueOutcome(l, facts({ tcpSyncookies: 1, tcpAbortOnOverflow: 0 }), 20);
  assert.equal([kept.established, kept.queued, kept.reset, kept.orphaned], [10, 5, 0, 5]);
  const off = queueOutcome(l, facts({ tcpSyncookies: 0, tcpMaxSynBacklog: 4 }), 20);
  assert.equal([off.established, off.queued, off.reset], [4, 4, 0]);
  const always = queueOutcome(l, facts({ tcpSyncookies: 2 }), 20);
  assert.equal([always.established, always.queued], [5, 5]);
  assert.equal([1, 2, 3, 4, 7, 8].map(deferredAfterS), [1, 3, 3, 7, 7, 15]);
  // A snapshot before the deferral ends has no prediction.
  const ramp = connect({ count: 20 });
  const seen: Step = { name: 'seen', kind: 'snapshot', host: 'client' };
  assert.throws(() => acceptQueue(ctx([l, ramp, seen], seen, 'establishedSockets')), /sleep longer/);
  assert.is(acceptQueue(ctx([l, ramp, { name: 'z', kind: 'sleep', durationMs: 2000 }, seen], seen, 'establishedSockets', facts({ tcpAbortOnOverflow: 1 }))).value, 5);
});

test('bufferMemory(): one sk_buff per connection, its truesize from this kernel\'s caches, charged in whole pages', () => {
  const f = facts({ pageSize: 4096, slabObjectSize: { skbuff_small_head: 576, skbuff_head_cache: 256 }, tcpRmem: [4096, 131072, 6291456], tcpWmem: [4096, 16384, 4194304], tcpMem: [] });
  assert.is(skbTruesize(f, 4096)!.truesize, 4928);
  assert.equal([chargedPages(4928, 4096), chargedPages(4096, 4096), chargedPages(4097, 4096)], [2, 1, 2]);
  const fit: Step = { name: 'buffers', kind: 'fit', host: 'server', snapshots: ['a', 'b'], per: 'connection' };
  const steps = (send?: number): Step[] => [listen(), connect(send ? { send } : {}), fit];
  assert.is(bufferMemory(ctx(steps(4096), fit, 'bufferBytesPerConnection', f)).value, 8192);
  assert.is(bufferMemory(ctx(steps(1000), fit, 'bufferBytesPerConnection', f)).value, 4096);
  assert.throws(() => bufferMemory(ctx(steps(), fit, 'bufferBytesPerConnection', f)), /needs a connect step with "send"/);
  assert.throws(() => bufferMemory(ctx(steps(20000), fit, 'bufferBytesPerConnection', f)), /at most the first flight/);
  assert.throws(() => bufferMemory(ctx(steps(4096), fit, 'bufferBytesPerConnection', facts({ pageSize: 4096 }))), /no skbuff_small_head/);
});

test.run();
