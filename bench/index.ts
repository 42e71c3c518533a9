// `npm run bench`: every speed figure of issue 9 beside its target, measured
// side by side in this one run (the order of contenders rotates each round,
// medians over rounds), and written as JSON to reports/bench/. This machine is
// shared and its absolute speed drifts, so a target is a ratio wherever a
// peer exists. The million-connection ramp takes minutes: it is
// `npm run bench:million` (bench/million.ts), and this bench prints its latest
// figures from reports/bench/million.json, saying when they were taken.
// Usage: npm run bench [-- ROUNDS [N]]

import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { hostname, cpus, totalmem, release } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { AgentClient } from '../runner/agent/client.ts';
import type { NetnsTransport } from '../runner/hosts/netns.ts';
import { median, PAIRS, rampPairs, type Pair, type Side } from './ramp-pairs.ts';
import { sshStep } from './ssh-request.ts';
import { MEMORY_SAFETY_FACTOR } from '../runner/models/scale.ts';

const ROUNDS = Number(process.argv[2] ?? 5);
const N = Number(process.argv[3] ?? 15000);
const ROOT = fileURLToPath(new URL('..', import.meta.url));
export const BENCH_DIR = join(ROOT, 'reports/bench');

interface Figure {
  name: string;
  value: number | null;
  unit: string;
  target: string;
  met: boolean | null;
  how: string;
}
const figures: Figure[] = [];
const add = (f: Figure) => {
  figures.push(f);
  const v = f.value === null ? 'not measured' : `${Number.isInteger(f.value) && f.unit !== '×' ? f.value : f.value.toFixed(f.value < 10 ? 3 : 1)} ${f.unit}`;
  const verdict = f.met === null ? '' : f.met ? 'MET' : 'NOT MET';
  console.log(`  ${f.name.padEnd(34)} ${v.padStart(16)}   target ${f.target.padEnd(12)} ${verdict}`);
  console.log(`      ${f.how}`);
};

const loadavg = () => readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).map(Number);
const loadBefore = loadavg();
const startedAt = new Date().toISOString();
console.log(`lab bench on ${hostname()} (${cpus().length} CPUs, ${Math.round(totalmem() / 1024 ** 3)} GiB, Linux ${release()}), node ${process.versions.node}, ${startedAt}, load average ${loadBefore.join(' ')}`);

// 1. Ramp: each half of the agent against C, and the agent's Python fallback.
// The same agent, asked to use its Python workers (what a host without a compiler gets).
const PYTHON_AGENT: Side = { name: 'agent (python)', start: (t: NetnsTransport) => AgentClient.start(t), engine: 'python' };
const pairs: Pair[] = [...PAIRS, { name: 'agent (python) → agent (python)', client: PYTHON_AGENT, server: PYTHON_AGENT }];
console.log(`\nramp: ${N} connections between two namespaces, ${ROUNDS} rounds, order rotated, medians:`);
const ramp = await rampPairs(pairs, ROUNDS, N, 2);
if (typeof ramp === 'string') {
  add({ name: 'ramp agent pair / C pair', value: null, unit: '', target: '≥ 0.80', met: null, how: `skipped: ${ramp}` });
} else {
  const cc = median(ramp.rates['C → C']!);
  for (const p of pairs) {
    const m = median(ramp.rates[p.name]!);
    console.log(`    ${p.name.padEnd(34)} ${String(Math.round(m)).padStart(7)}/s  ${(m / cc).toFixed(2)} of C → C`);
  }
  const ratio = median(ramp.rates['agent → agent']!) / cc;
  add({ name: 'ramp agent pair / C pair', value: Math.round(ratio * 100) / 100, unit: '×', target: '≥ 0.80', met: ratio >= 0.8, how: 'agent → agent against C client → C epoll server (SO_REUSEPORT), same run' });
  const py = median(ramp.rates['agent (python) → agent (python)']!) / cc;
  add({ name: 'ramp python fallback / C pair', value: Math.round(py * 100) / 100, unit: '×', target: '(fallback)', met: null, how: 'the agent without its C helper (no compiler on the host)' });
  const rel = median(ramp.releaseMs['agent']!);
  const relC = median(ramp.releaseMs['C']!);
  add({ name: `release ${N} (client side, RST)`, value: Math.round(rel), unit: 'ms', target: `C: ${Math.round(relC)} ms`, met: null, how: 'the agent closing its connect workers\' sockets, against the C client closing the same count' });
}

// 2. The million and the two million: from the latest `npm run bench:million [-- 2000000]`.
const scaleRun = (file: string) => (existsSync(join(BENCH_DIR, file)) ? JSON.parse(readFileSync(join(BENCH_DIR, file), 'utf8')) : undefined);
const m = scaleRun('million.json');
if (m) {
  const load = m.loadavg ? `, load ${m.loadavg.before[0]}→${m.loadavg.after[0]}` : '';
  const when = `from npm run bench:million at ${m.at}${load}: ${m.established} established, ${m.lanes ?? 1} lane(s), ${m.workers ?? '?'} workers`;
  add({ name: 'ramp to 1,000,000', value: m.rampMs / 1000, unit: 's', target: '< 30 s', met: m.rampMs < 30_000, how: when });
  add({ name: 'release of 1,000,000 (both ends)', value: m.releaseMs / 1000, unit: 's', target: '< 5 s', met: m.releaseMs < 5_000, how: `${when}; release closes both ends (2M sockets)${m.releaseClose === 'silent' ? ' silently (TCP_REPAIR: no RST)' : m.releaseClose === 'fin' ? ' by FIN' : ' by RST'}${m.releaseCalls === 'io_uring' ? ', 256 sockets a syscall through io_uring' : m.releaseCalls ? `, closeCalls ${m.releaseCalls}` : ''}${typeof m.pid1CpuMs === 'number' ? `; PID 1 used ${(m.pid1CpuMs / 1000).toFixed(1)} s of CPU meanwhile` : ''}` });
  add({ name: 'controller peak RSS (1M run)', value: Math.round(m.controllerPeakRssKiB / 1024), unit: 'MiB', target: 'flat', met: null, how: when });
  if (m.memory?.measuredFactor) {
    add({
      name: 'memory model at 1M: slab / priced', value: m.memory.measuredFactor, unit: '×', target: `≤ ${MEMORY_SAFETY_FACTOR}`, met: m.memory.measuredFactor <= MEMORY_SAFETY_FACTOR,
      how: `the machine's Slab grew ${m.memory.slabBytesPerSocket} B per socket against ${m.memory.pricedBytesPerSocket} B priced; the refusal multiplies by ${MEMORY_SAFETY_FACTOR} (models/scale.ts)`,
    });
  }
  if (m.cost) {
    add({
      name: 'per connection at 1M: fit vs model', value: m.cost.errorPercent, unit: '%', target: '≤ 3% (the lab\'s tolerance)', met: m.cost.verdict === 'pass',
      how: `the lab's fit between its idle and held snapshots of ${m.established} connections: ${m.cost.observed} B per connection against ${m.cost.predicted} B priced (the bind buckets at the share its sources need)`,
    });
  }
} else {
  add({ name: 'ramp to 1,000,000', value: null, unit: 's', target: '< 30 s', met: null, how: 'run npm run bench:million (minutes, ~10 GiB): it writes reports/bench/million.json' });
}
const t = scaleRun('two-million.json');
if (t && t.established >= 2_000_000) {
  const load = t.loadavg ? `, load ${t.loadavg.before[0]}→${t.loadavg.after[0]}` : '';
  add({
    name: 'ramp to 2,000,000', value: t.rampMs / 1000, unit: 's', target: '< 70 s', met: t.rampMs < 70_000,
    how: `from npm run bench:million -- 2000000 at ${t.at}${load}: ${t.verdict}, ${t.lanes ?? 1} lane(s), ${t.workers ?? '?'} workers; release ${(t.releaseMs / 1000).toFixed(1)} s; slab ${t.memory?.slabBytesPerSocket ?? '?'} B per socket (× ${t.memory?.measuredFactor ?? '?'} of priced)`,
  });
} else {
  add({
    name: 'ramp to 2,000,000', value: null, unit: 's', target: '< 70 s', met: null,
    how: t ? `${t.at}: ${t.error ? `${t.error.code}: ${String(t.error.message).split('\n')[0]}` : `${t.established} established`}` : 'run npm run bench:million -- 2000000 (~19 GiB): it writes reports/bench/two-million.json',
  });
}

// 3. A step over SSH.
try {
  const s = await sshStep(200);
  add({ name: 'agent request over SSH', value: s.sysctlGetMs, unit: 'ms', target: '≤ 2 ms', met: s.sysctlGetMs <= 2, how: `median of a sysctlGet through the agent; a fresh exec of the same read: ${s.execMs.toFixed(1)} ms (${(s.execMs / s.sysctlGetMs).toFixed(0)}×)` });
} catch (e) {
  add({ name: 'agent request over SSH', value: null, unit: 'ms', target: '≤ 2 ms', met: null, how: `skipped: ${(e as Error).message}` });
}

// 4. Provisioning against Ansible on the same SSH hosts.
try {
  const { provisioningVsAnsible } = await import('./ansible.ts');
  const a = await provisioningVsAnsible(3, (s: string) => console.log(`    ${s}`));
  if (typeof a === 'string') add({ name: 'provisioning: ansible / lab', value: null, unit: '×', target: '≥ 20×', met: null, how: `skipped: ${a}` });
  else add({ name: 'provisioning: ansible / lab', value: Math.round(a.ratio * 10) / 10, unit: '×', target: '≥ 20×', met: a.ratio >= 20, how: a.how });
} catch (e) {
  add({ name: 'provisioning: ansible / lab', value: null, unit: '×', target: '≥ 20×', met: null, how: `skipped: ${(e as Error).message.split('\n')[0]}` });
}

// 5. Memory accuracy: the memory lab (issue 8) against the controller's own /proc/slabinfo.
try {
  const { memoryAccuracy } = await import('./memory-per-conn.ts');
  const m = await memoryAccuracy();
  add({ name: 'memory per connection accuracy', value: Math.abs(m.percent), unit: '%', target: '≤ 2%', met: m.ok, how: m.how });
} catch (e) {
  add({ name: 'memory per connection accuracy', value: null, unit: '%', target: '≤ 2%', met: null, how: `failed: ${(e as Error).message.split('\n')[0]}` });
}

mkdirSync(BENCH_DIR, { recursive: true });
const out = join(BENCH_DIR, `bench-${new Date().toISOString().replace(/[:.]/g, '-')}.json`);
const loadAfter = loadavg();
console.log(`\nload average ${loadBefore.join(' ')} at the start, ${loadAfter.join(' ')} at the end`);
writeFileSync(out, JSON.stringify({ at: startedAt, endedAt: new Date().toISOString(), loadavg: { before: loadBefore, after: loadAfter }, host: hostname(), cpus: cpus().length, kernel: release(), rounds: ROUNDS, n: N, figures, ramp }, null, 2) + '\n');
console.log(`\nwritten: ${out}`);
