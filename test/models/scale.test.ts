import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { planLab, type HostBinding } from '../../runner/lab/plan.ts';
import type { Lab, Step } from '../../runner/lab/types.ts';
import {
  AUTO_PORT_RANGE, capacityCheck, capacityRefusal, memoryCheck, peakLoads, portsPerSource, socketCost, sourcesFor,
} from '../../runner/models/scale.ts';
import type { HostFacts } from '../../runner/result.ts';
import { MAX_ALIASES } from '../../runner/files/names.ts';

const GiB = 1024 ** 3;
// Object sizes of 6.18 here (/proc/slabinfo); the bind buckets live in a merged 128-byte cache.
const SLAB = { TCP: 2368, sock_inode_cache: 832, filp: 192, dentry: 192, lsm_inode_cache: 32, lsm_file_cache: 24, eventpoll_epi: 128 };
const ALIASES = { tcp_bind_bucket: 'eventpoll_epi', tcp_bind2_bucket: 'eventpoll_epi' };
// Per client socket: 2368 + 832 + 192 + 192 + 32 + 24 + 128 + 128 = 3896 B.
const facts = (over: Partial<HostFacts> = {}): HostFacts => ({
  hostname: 'box', kernel: '6.18.0', python: '3.11.2', portRange: [32768, 60999], reservedPorts: '',
  nofileSoft: 20000, nofileHard: 20000, canRaiseHardNofile: false, nrOpen: 1048576, fileMax: 1 << 30,
  somaxconn: 4096, tcpMaxSynBacklog: 512, tcpFinTimeout: 60, tcpTwReuse: 2,
  memTotalKiB: 24 * 1024 * 1024, memAvailableKiB: 22 * 1024 * 1024, slabObjectSize: SLAB, slabAliases: ALIASES, addresses: [], cpus: 2, uid: 0, workerFds: 5, socketsPerWorker: 19984, ...over,
});

const bindings: HostBinding[] = ['client', 'server'].map((role, i) => ({
  role, name: role, kind: 'netns', target: `lab-x-${role}`, address: `198.18.0.${i + 1}`, device: 'eth0', local: true,
  aliasPool: Array.from({ length: MAX_ALIASES }, (_, k) => `198.18.${i + 1}.${k + 1}`),
}));

const lab = (count: number, connect: Partial<Extract<Step, { kind: 'connect' }>> = {}, sysctls: Record<string, string> = {}): Lab => ({
  name: 'scale', file: 'scale.yaml', source: '', vars: {}, timeoutMs: 600_000, expect: [], release: 'abort', acknowledge: {},
  hosts: [
    { role: 'client', sysctls, aliases: 0, nofile: 20000 },
    { role: 'server', sysctls: {}, aliases: 0, nofile: 20000 },
  ],
  steps: [
    { name: 'listen', kind: 'listen', host: 'server', port: 8080, backlog: 4096, accept: true },
    {
      name: 'ramp', kind: 'connect', host: 'client', to: [{ role: 'server', port: 8080 }], count, sources: 1, autoSources: true,
      bind: 'none', rate: 0, timeoutMs: 60_000, connectTimeoutMs: 3000, stopOnError: true, ...connect,
    },
    { name: 'release', kind: 'release', steps: ['ramp', 'listen'] },
  ],
});

test('sourcesFor() keeps every source within 3/8 of the port range', () => {
  assert.is(portsPerSource(AUTO_PORT_RANGE), 24192);
  const p = sourcesFor(1_000_000, 1, AUTO_PORT_RANGE);
  assert.is(p.sources, 42);
  assert.is(
    p.derivation,
    "⌈1000000 connections ÷ (1 destination × ⌊(65535 − 1024 + 1) × 3/8⌋ = 24192 ports)⌉ = 42 source addresses (3/8 of the range: three quarters of one parity's ports, past which connect() slows sharply)",
  );
  assert.is(sourcesFor(48384, 2, AUTO_PORT_RANGE).sources, 1);
  assert.is(sourcesFor(48385, 2, AUTO_PORT_RANGE).sources, 2);
  assert.is(sourcesFor(10, 1, [40000, 40999], 100).portsPerSource, 337);
});

test('planLab() resolves sources: auto into aliases, the port range and the pairs', () => {
  const plan = planLab(lab(1_000_000), bindings);
  const client = plan.hosts.find((h) => h.role === 'client')!;
  assert.is(client.aliases.length, 41);
  assert.equal(client.sysctls, [{ name: 'net.ipv4.ip_local_port_range', value: '1024 65535', scope: 'namespace' }]);
  const ramp = plan.steps.find((s) => s.name === 'ramp')!;
  assert.ok(ramp.kind === 'connect');
  if (ramp.kind !== 'connect') return;
  assert.is(ramp.sources, 42);
  assert.is(ramp.pairs.length, 42);
  assert.ok(ramp.autoPlan!.endsWith('the plan sets net.ipv4.ip_local_port_range "1024 65535"'), ramp.autoPlan);
  // The models see the planned number, not "auto".
  const labRamp = plan.lab.steps.find((s) => s.name === 'ramp')!;
  assert.is(labRamp.kind === 'connect' && labRamp.sources, 42);
});

test('planLab() plans sources: auto within the range the lab sets, and refuses more sources than the host has', () => {
  const plan = planLab(lab(5000, {}, { 'net.ipv4.ip_local_port_range': '40000 40999' }), bindings);
  const ramp = plan.steps.find((s) => s.name === 'ramp')!;
  assert.is(ramp.kind === 'connect' && ramp.sources, 14);
  assert.equal(plan.hosts[0]!.sysctls.map((s) => s.value), ['40000 40999']);
  try {
    planLab(lab(100_000, {}, { 'net.ipv4.ip_local_port_range': '40000 40999' }), bindings);
    assert.unreachable('planned 267 sources');
  } catch (e) {
    assert.is((e as { code?: string }).code, 'PLAN_HOSTS');
    assert.match((e as Error).message, /= 267 source addresses .* but host "client" offers 1 \+ 128 aliases/);
  }
});

test('socketCost() prices a socket with the memory model\'s objects at the kernel\'s own sizes', () => {
  const c = socketCost(facts());
  assert.is(c.bytes, 3896);
  assert.is(
    c.formula,
    'TCP 2368 + sock_inode_cache 832 + filp 192 + dentry 192 + lsm_inode_cache 32 + lsm_file_cache 24 + tcp_bind_bucket (in eventpoll_epi) 128 + tcp_bind2_bucket (in eventpoll_epi) 128',
  );
  assert.equal(c.missing, []);
  assert.equal(socketCost({ slabObjectSize: { TCP: 2000 } }).missing.slice(0, 3), ['sock_inode_cache', 'filp', 'dentry']);
});

test('sources: auto leaves room for what earlier steps still hold on the first sources\' pairs', () => {
  const two = lab(25_000, { name: 'a' });
  two.steps.splice(2, 0, { ...(two.steps[1] as Extract<Step, { kind: 'connect' }>), name: 'b' });
  two.steps[3] = { name: 'release', kind: 'release', steps: ['a', 'b', 'listen'] };
  const plan = planLab(two, bindings);
  const sources = plan.steps.filter((s) => s.kind === 'connect').map((s) => [s.name, (s as { sources: number }).sources]);
  // a needs 2 (25000 > 24192 ports a pair); b alone would too, but with a's 12500 on each of the first two pairs,
  // 3 keep every pair at most 12500 + 8334 ≤ 24192.
  assert.equal(sources, [['a', 2], ['b', 3]]);
  // Released in between: b needs only its own 2 again.
  const apart = lab(25_000, { name: 'a' });
  apart.steps.splice(2, 0, { name: 'r', kind: 'release', steps: ['a'] }, { ...(apart.steps[1] as Extract<Step, { kind: 'connect' }>), name: 'b' });
  apart.steps[4] = { name: 'release', kind: 'release', steps: ['b', 'listen'] };
  assert.equal(planLab(apart, bindings).steps.filter((s) => s.kind === 'connect').map((s) => (s as { sources: number }).sources), [2, 2]);
});

test('peakLoads() counts both ends on one machine, and a released step no more', () => {
  const plan = planLab(lab(100_000), bindings);
  const loads = peakLoads(plan, { client: facts(), server: facts() });
  assert.is(loads.length, 1);
  assert.equal(loads[0]!.roles, ['client', 'server']);
  assert.is(loads[0]!.sockets, 200_000);
  assert.is(loads[0]!.workers, 2 * Math.ceil(100_000 / 19984));
  // Two machines: each holds its own end.
  const apart = peakLoads(plan, { client: facts(), server: facts({ hostname: 'other' }) });
  assert.equal(apart.map((l) => l.sockets), [100_000, 100_000]);
  // A step that sets processes runs that many on its own side, whatever the fd budget.
  const fixed = peakLoads(planLab(lab(1000, { processes: 2 }), bindings), { client: facts(), server: facts() });
  assert.is(fixed[0]!.workers, 2 + 1);
});

test('capacityCheck() fits a million on 22 GiB and refuses two million with Python workers, with the arithmetic', () => {
  const one = capacityCheck(planLab(lab(1_000_000), bindings), { client: facts(), server: facts() });
  assert.ok(one.ok);
  assert.is(capacityRefusal(one), undefined);
  const two = capacityCheck(planLab(lab(2_000_000), bindings), { client: facts(), server: facts() });
  assert.not.ok(two.ok);
  assert.is(
    capacityRefusal(two),
    [
      'The hosts cannot hold this lab: not started, nothing was changed',
      '  client + server (one kernel):',
      '    per socket: TCP 2368 + sock_inode_cache 832 + filp 192 + dentry 192 + lsm_inode_cache 32 + lsm_file_cache 24 + tcp_bind_bucket (in eventpoll_epi) 128 + tcp_bind2_bucket (in eventpoll_epi) 128 = 3896 B of slab objects (this kernel\'s sizes, models/memory.ts)',
      '    kernel: 4000000 sockets on client + server × 3896 B × 1.35 (slab pages never full, proc inodes, other caches) = 19.59 GiB',
      '    workers: 202 processes × 16 MiB (Python workers) = 3.16 GiB',
      '    reserve: 5% of MemTotal 24.00 GiB, at least 256 MiB = 1.20 GiB',
      '    need 19.59 GiB + 3.16 GiB + 1.20 GiB = 23.95 GiB > MemAvailable 22.00 GiB',
      '    fds: 4000000 sockets + 202 workers × 5 = 4001010 ≤ fs.file-max 1073741824',
      '    nofile client: 20000 per worker ≤ fs.nr_open 1048576',
      '    nofile server: 20000 per worker ≤ fs.nr_open 1048576',
      '  ports ramp: 2000000 connections ÷ 83 (source, destination) pairs = 24097 per pair ≤ 24192 (3/8 of 1024–65535)',
      '  Lower the count, or free memory on the host (MemAvailable)',
    ].join('\n'),
  );
});

test('with the C helper\'s small workers two million fit on 22 GiB; fds and ports refuse with their arithmetic', () => {
  const c = facts({ connectEngine: 'c' });
  const two = capacityCheck(planLab(lab(2_000_000), bindings), { client: c, server: c });
  assert.ok(two.ok, capacityRefusal(two));
  assert.equal(two.machines[0]!.check.lines[2], 'workers: 202 processes × 4 MiB (the C helper) = 0.79 GiB');
  const few = facts({ connectEngine: 'c', fileMax: 1_000_000, nrOpen: 10_000, uid: 1000 });
  const fds = capacityCheck(planLab(lab(1_000_000), bindings), { client: few, server: few });
  assert.not.ok(fds.ok);
  const text = capacityRefusal(fds)!;
  assert.match(text, '    fds: 2000000 sockets + 102 workers × 5 = 2000510 > fs.file-max 1000000');
  assert.match(text, '    nofile client: 20000 per worker > fs.nr_open 10000');
  assert.match(text, '  Lower the count or nofile, or raise fs.file-max / fs.nr_open');
  assert.not.match(text, 'free memory');
  // As root the agent passes fs.file-max (CAP_SYS_ADMIN); fs.nr_open still binds setrlimit.
  const root = capacityCheck(planLab(lab(1_000_000), bindings), { client: { ...few, uid: 0, nrOpen: 1 << 20 }, server: { ...few, uid: 0, nrOpen: 1 << 20 } });
  assert.ok(root.ok, capacityRefusal(root));
  assert.match(root.machines[0]!.fds.lines[0]!, '> fs.file-max 1000000 (no limit for the agent: CAP_SYS_ADMIN passes it)');
  // A lab's own narrow port range: the plan's sources keep within 3/8 of it.
  const ports = capacityCheck(planLab(lab(20_000, {}, { 'net.ipv4.ip_local_port_range': '40000 40999' }), bindings), { client: c, server: c });
  assert.ok(ports.ports.ok);
  assert.match(ports.ports.lines[0]!, /= 371 per pair ≤ 375 \(3\/8 of 40000–40999\)/);
});

test('sources: auto and the ports check count the ports earlier steps still hold on the same pairs, and free them at release', () => {
  const c = facts({ connectEngine: 'c' });
  const twice = (released: boolean): Lab => {
    const l = lab(500_000);
    const [listen, ramp] = l.steps as [Step, Extract<Step, { kind: 'connect' }>];
      l.steps = [listen, ramp, ...(released ? [{ name: 'free', kind: 'release', steps: ['ramp'] } as Step] : []), { ...ramp, name: 'again' }, { name: 'release', kind: 'release', steps: ['ramp', 'again', 'listen'] }];
    return l;
  };
  // sources: auto counts what "ramp" still holds on its pairs: more sources than the host's 1 + 128, refused by the plan itself.
  assert.throws(() => planLab(twice(false), bindings), /130 with the connections "ramp" still hold on the first sources' pairs, but host "client" offers 1 \+ 128 aliases/);
  const freed = capacityCheck(planLab(twice(true), bindings), { client: c, server: c });
  assert.ok(freed.ports.ok, freed.ports.lines.join('\n'));
});

test('memoryCheck() needs MemAvailable for kernel objects, workers and a reserve', () => {
  const m = memoryCheck({ roles: ['a'], facts: facts({ memAvailableKiB: 1.5 * 1024 * 1024 }), sockets: 100_000, workers: 6 });
  assert.is(m.needBytes, Math.round(100_000 * 3896 * 1.35) + 6 * 16 * 1024 ** 2 + Math.round(24 * GiB * 0.05));
  assert.is(m.availableBytes, 1.5 * GiB);
  assert.not.ok(m.ok);
});

test('labs/million.yaml states only its target: sources auto', async () => {
  const { readLab } = await import('../../runner/lab/validate.ts');
  const million = await readLab('labs/million.yaml');
  const ramp = million.steps.find((s) => s.name === 'ramp')!;
  assert.is(ramp.kind === 'connect' && ramp.autoSources, true);
  assert.is(million.hosts.find((h) => h.role === 'client')!.aliases, 0);
});

test.run();
