// The memory model and fit (runner/models/memory.ts): pure arithmetic over
// slabinfo-shaped numbers. What they measure on a real kernel is held by
// test/run/labs.test.ts running labs/memory-per-conn.yaml.

import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { bindBucketShares, expectedPortsInUse, fitMemory, leastSquares, predictedBytes, sameKernel, sidesOn, slabCarrier, type FitPoint } from '../../runner/models/memory.ts';
import { memoryPerConnection } from '../../runner/models/connections.ts';
import type { HostFacts } from '../../runner/result.ts';
import type { Step } from '../../runner/lab/types.ts';

// Object sizes as /proc/slabinfo lists them on 6.18 here; the bind buckets are merged into eventpoll_epi.
const SIZES = { TCP: 2368, sock_inode_cache: 832, filp: 192, dentry: 192, lsm_inode_cache: 32, lsm_file_cache: 24, eventpoll_epi: 128, proc_inode_cache: 696, 'kmalloc-192': 192 };
const ALIASES = { tcp_bind_bucket: 'eventpoll_epi', tcp_bind2_bucket: 'eventpoll_epi' };

const facts = (over: Partial<HostFacts> = {}): HostFacts => ({
  hostname: 'h', kernel: '6.18.0', python: '3.11.2', portRange: [10000, 60999], reservedPorts: '',
  nofileSoft: 1024, nofileHard: 20000, canRaiseHardNofile: false, nrOpen: 1048576, fileMax: 1000000,
  somaxconn: 4096, tcpMaxSynBacklog: 512, tcpFinTimeout: 60, tcpTwReuse: 2, memTotalKiB: 1, memAvailableKiB: 1,
  slabObjectSize: SIZES, slabAliases: ALIASES, addresses: [], cpus: 2, uid: 0, bootId: 'b1', workerFds: 5, socketsPerWorker: 1008, ...over,
});

/** A snapshot after n connections: 2 of each per-socket object, 2 bind buckets, plus proc inodes and noise. */
function point(n: number, procInodes = 0, extra: Record<string, number> = {}): FitPoint {
  const objs: Record<string, number> = {
    TCP: 100 + 2 * n, sock_inode_cache: 100 + 2 * n, filp: 500 + 2 * n, dentry: 9000 + 2 * n + procInodes,
    lsm_inode_cache: 8000 + 2 * n + procInodes, lsm_file_cache: 500 + 2 * n, eventpoll_epi: 50 + 2 * n,
    proc_inode_cache: 300 + procInodes, 'kmalloc-192': 4000, ...extra,
  };
  const slab: FitPoint['slab'] = {};
  for (const [c, o] of Object.entries(objs)) slab[c] = { activeObjs: o, objSize: SIZES[c as keyof typeof SIZES] };
  return { connections: n, slab, meminfo: { Slab: 100000 + Math.round((n * 7536) / 1024), SUnreclaim: 50000 } };
}

test('slabCarrier() finds a merged cache in the cache slabinfo lists', () => {
  assert.is(slabCarrier(facts(), 'TCP'), 'TCP');
  assert.is(slabCarrier(facts(), 'tcp_bind_bucket'), 'eventpoll_epi');
  assert.is(slabCarrier(facts({ slabAliases: undefined }), 'tcp_bind_bucket'), undefined);
});

test('predictedBytes() prices each side with this kernel\'s object sizes', () => {
  const p = predictedBytes(facts());
  assert.is(p.server, 2368 + 832 + 192 + 192 + 32 + 24);
  assert.is(p.client, p.server + 2 * 128);
  assert.equal(p.missing, []);
  // An agent without aliases: the bind buckets are missing, not guessed.
  assert.equal(predictedBytes(facts({ slabAliases: undefined })).missing, ['tcp_bind_bucket', 'tcp_bind2_bucket']);
});

test('leastSquares() fits a line', () => {
  assert.equal(leastSquares([0, 1, 2], [1, 3, 5]), { slope: 2, intercept: 1 });
});

test('fitMemory() attributes by cache, moves proc inodes and their dentries to other, splits by side', () => {
  const pts = [point(0), point(1000, 700), point(2000, 1500), point(4000, 2000)];
  const fit = fitMemory(pts, facts(), { client: true, server: true });
  assert.is(fit.bytesPerConnection, 2 * 3640 + 256);
  assert.is(fit.serverBytesPerSocket, 3640);
  assert.is(fit.clientBytesPerSocket, 3640 + 256);
  assert.is(fit.residualPercent, 0);
  assert.equal(fit.attributed.map((a) => [a.cache, a.objects]), [
    ['TCP', 2], ['sock_inode_cache', 2], ['filp', 2], ['dentry', 2], ['eventpoll_epi', 2], ['lsm_inode_cache', 2], ['lsm_file_cache', 2],
  ]);
  const other = Object.fromEntries(fit.other.map((o) => [o.cache, o.bytes]));
  assert.ok(other.proc_inode_cache! > 0 && other['dentry of proc inodes']! > 0 && other['lsm_inode_cache of proc inodes']! > 0, JSON.stringify(fit.other));
  assert.is(fit.rawBytesPerConnection, Math.round((fit.bytesPerConnection + fit.otherBytesPerConnection) * 10) / 10);
});

test('fitMemory() on a server-only kernel gives the whole cost to the accepted socket and measures no client', () => {
  const pts = [point(0), point(1000), point(3000)].map((p) => ({ ...p, slab: { ...p.slab, eventpoll_epi: { activeObjs: 50, objSize: 128 } } }));
  const fit = fitMemory(pts, facts(), { client: false, server: true });
  assert.is(fit.clientBytesPerSocket, null);
  assert.is(fit.serverBytesPerSocket, 2 * 3640);
});

test('fitMemory() reports a residual when a point is off the line, and refuses one connection count', () => {
  const fit = fitMemory([point(0), point(1000, 0, { TCP: 100 + 2000 + 300 }), point(2000)], facts(), { client: true, server: true });
  assert.ok(fit.residualPercent > 1, String(fit.residualPercent));
  assert.throws(() => fitMemory([point(10), point(10)], facts(), { client: true, server: true }), /two counts/);
});

test('fitMemory() fits out sockets something else opened meanwhile, when they did not come in step with the lab\'s', () => {
  // Another run's connections: 2 sockets and their objects each, arriving unevenly.
  const others = [0, 3000, 1000, 4000, 500];
  const pts = [0, 1000, 2000, 3000, 4000].map((n, i) => {
    const o = others[i]!;
    const p = point(n, 0, { TCP: 100 + 2 * n + o, sock_inode_cache: 100 + 2 * n + o, filp: 500 + 2 * n + o, dentry: 9000 + 2 * n + o });
    return { ...p, tcpAlloc: 50 + 2 * n + o };
  });
  const fit = fitMemory(pts, facts(), { client: true, server: true });
  assert.is(fit.foreignSockets, 4000);
  assert.ok(fit.foreignCorrected);
  assert.is(fit.bytesPerConnection, 2 * 3640 + 256);
  assert.is(fit.foreignBytesPerSocket, 2368 + 832 + 192 + 192);
  // Without "TCP: alloc" the same points are taken at face value.
  const blind = fitMemory(pts.map(({ tcpAlloc: _, ...p }) => p), facts(), { client: true, server: true });
  assert.not.ok(blind.foreignCorrected);
  assert.is.not(blind.bytesPerConnection, 2 * 3640 + 256);
});

test('sidesOn() counts a host sharing the kernel of the other end as holding both sides', () => {
  const connects = [{ host: 'client', to: [{ role: 'server' }] }];
  assert.equal(sidesOn('server', connects, { client: facts(), server: facts() }), { client: true, server: true });
  assert.equal(sidesOn('server', connects, { client: facts({ bootId: 'b2' }), server: facts() }), { client: false, server: true });
  assert.ok(sameKernel(facts({ bootId: undefined }), facts({ bootId: undefined })));
  assert.not.ok(sameKernel(facts({ bootId: undefined, hostname: 'a' }), facts({ bootId: undefined })));
});

test('memoryPerConnection() predicts both ends with the formula filled in and the classic figure beside it', () => {
  const steps: Step[] = [
    { name: 'c', kind: 'connect', host: 'client', to: [{ role: 'server', port: 8080 }], count: 10, sources: 1, bind: 'none', rate: 0, timeoutMs: 1, connectTimeoutMs: 1, stopOnError: true },
    { name: 'cost', kind: 'fit', host: 'server', snapshots: ['a', 'b'], per: 'connection' },
  ];
  const ctx = (metric: string) => ({ step: steps[1]!, metric, facts: { client: facts(), server: facts() }, addresses: {}, steps });
  const both = memoryPerConnection(ctx('bytesPerConnection'));
  assert.is(both.value, 7536);
  assert.match(both.derivation, 'tcp_bind_bucket (in eventpoll_epi) 128');
  assert.match(both.derivation, 'both ends on one kernel: 3896 + 3640 = 7536 B');
  assert.is(both.reference?.value, 6600);
  assert.is(memoryPerConnection(ctx('serverBytesPerSocket')).value, 3640);
  assert.is(memoryPerConnection(ctx('clientBytesPerSocket')).reference?.value, 3300);
});

test('bindBucketShares(): a port per connection from one source; many sources share the port numbers', () => {
  // One source, one destination: every connection its own port (memory-per-conn's 20000 of 51000 ports).
  assert.equal(bindBucketShares([{ source: 'a', connections: 20000 }], 51000), {
    connections: 20000, ports: 20000, portAddresses: 20000, perPort: 1, perPortAddress: 1,
  });
  // labs/million.yaml: 32 sources × 31250 of 1024–65535 take the 32256 ports of one parity between them (measured: 32256).
  const million = bindBucketShares(Array.from({ length: 32 }, (_, i) => ({ source: String(i), connections: 31250 })), 64512);
  assert.is(million.ports, 32256);
  assert.is(million.portAddresses, 1_000_000);
  assert.is(million.perPort, 0.03226);
  assert.is(million.perPortAddress, 1);
  // Past the first parity a window spills into the other half.
  assert.is(expectedPortsInUse([{ ports: 40000 }], 51000), 40000);
  assert.is(Math.round(expectedPortsInUse([{ ports: 20000 }, { ports: 20000 }], 51000)), 24314);
  // One source and destination over several steps (memory-per-conn's four of 5000): one window, a port each.
  const steps4 = bindBucketShares(Array.from({ length: 4 }, () => ({ source: 'a', destination: 'server:8080', connections: 5000 })), 51000);
  assert.equal([steps4.ports, steps4.perPort, steps4.perPortAddress], [20000, 1, 1]);
  // One source to two destinations: connect() picks per 4-tuple, so the two windows overlap (port and address alike).
  const twoDest = bindBucketShares([{ source: 'a', connections: 20000 }, { source: 'a', connections: 20000 }], 51000);
  assert.equal([twoDest.ports, twoDest.portAddresses], [24314, 24314]);
  // bind() picks per source address, whatever the destination: one window of 40000.
  const bound = bindBucketShares([{ source: 'a', connections: 20000, perSource: true }, { source: 'a', connections: 20000, perSource: true }], 51000);
  assert.equal([bound.ports, bound.perPort], [40000, 1]);
  // SO_REUSEADDR on one port: one bucket, one port+address bucket per source, one connection per pair at most.
  const shared = bindBucketShares([{ source: 'a', connections: 3, port: 5000 }, { source: 'b', connections: 3, port: 5000 }], 51000);
  assert.equal([shared.connections, shared.ports, shared.portAddresses, shared.perPort], [2, 1, 2, 0.5]);
  const twoPeers = bindBucketShares([{ source: 'a', destination: 'x', connections: 5, port: 5000 }, { source: 'a', destination: 'y', connections: 5, port: 5000 }], 51000);
  assert.equal([twoPeers.connections, twoPeers.perPort, twoPeers.perPortAddress], [2, 0.5, 0.5]);
  // A count above what the ports hold (port-exhaustion: 5000 asked of 1000 ports) is priced at what is held: a port each.
  assert.equal(bindBucketShares([{ source: 'a', destination: 'x', connections: 5000 }], 1000).perPort, 1);
  assert.equal(bindBucketShares([{ source: 'a', destination: 'x', connections: 60000, perSource: true }], 51000).perPort, 1);
  // bind() tries the other parity first: a bind() window and a connect() window of other sources do not meet.
  assert.is(Math.round(expectedPortsInUse([{ ports: 20000 }, { ports: 20000, bind: true }], 51000)), 40000);
  // Nothing to price from: a bucket of each per connection.
  assert.equal([bindBucketShares([], 51000).perPort, bindBucketShares([{ source: 'a', connections: 10 }], 0).perPort], [1, 1]);
});

test('memoryPerConnection() prices the bind buckets at the share the planned connections need', () => {
  const steps: Step[] = [
    { name: 'ramp', kind: 'connect', host: 'client', to: [{ role: 'server', port: 8080 }], count: 1_000_000, sources: 32, bind: 'none', rate: 0, timeoutMs: 1, connectTimeoutMs: 1, stopOnError: true },
    { name: 'cost', kind: 'fit', host: 'server', snapshots: ['a', 'b'], per: 'connection' },
  ];
  const wide = facts({ portRange: [1024, 65535] });
  const out = memoryPerConnection({ step: steps[1]!, metric: 'bytesPerConnection', facts: { client: wide, server: wide }, addresses: {}, steps });
  // 3640 + 0.03226 × 128 + 1 × 128 on the connecting side (measured at 1M here: 3772.3 B), 3640 accepted.
  assert.is(out.value, 3772.1 + 3640);
  assert.match(out.derivation, 'tcp_bind_bucket (in eventpoll_epi) 0.03226 × 128');
  assert.match(out.derivation, 'use 32256 local ports and 1000000 (port, address) pairs between them');
  // A step released before the fit holds no buckets: only the later one counts (with both, their windows would overlap: 0.69 a port).
  // memory-per-conn.yaml's shape: four steps of 5000 from one source to one destination, a port each.
  const four: Step[] = [
    ...[1, 2, 3, 4].map((n) => ({ ...steps[0]!, name: `c${n}`, count: 5000, sources: 1 }) as Step),
    steps[1]!,
  ];
  assert.is(memoryPerConnection({ step: four[4]!, metric: 'clientBytesPerSocket', facts: { client: facts(), server: facts() }, addresses: {}, steps: four }).value, 3896);
  const again: Step[] = [
    { ...steps[0]!, name: 'first', count: 20000, sources: 1, to: [{ role: 'server', port: 9090 }] } as Step,
    { name: 'drop', kind: 'release', steps: ['first'] },
    { ...steps[0]!, name: 'second', count: 20000, sources: 1 } as Step,
    steps[1]!,
  ];
  const fit = memoryPerConnection({ step: again[3]!, metric: 'clientBytesPerSocket', facts: { client: wide, server: wide }, addresses: {}, steps: again });
  assert.is(fit.value, 3896);
  // Released gracefully, the first step's TIME_WAIT sockets keep their ports' buckets: both windows count.
  const graceful = memoryPerConnection({ step: again[3]!, metric: 'clientBytesPerSocket', facts: { client: wide, server: wide }, addresses: {}, steps: again, release: 'graceful' });
  assert.ok((graceful.value as number) < 3896, `graceful: ${graceful.value}`);
});

test.run();
