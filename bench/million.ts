// `npm run bench:million`: labs/million.yaml in this process, as `lab run`
// does it: the ramp time and its curve, the release time, the controller's
// peak RSS, written to reports/bench/million.json for `npm run bench` to print
// beside its targets. Minutes long and ~10 GiB of kernel memory: not part of
// `npm run bench`. Run it under the heavy lock, with the memory free (the run
// itself refuses when MemAvailable cannot hold it).
// Usage: npm run bench:million [-- COUNT]   (COUNT 2000000: labs/two-million.yaml, written to two-million.json;
// a refusal there is recorded with its arithmetic)

import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { planLab } from '../runner/lab/plan.ts';
import { readLab } from '../runner/lab/validate.ts';
import { LocalProvider } from '../runner/run/local-provider.ts';
import { runPlan, runtimeName } from '../runner/run/run.ts';
import { MEMORY_SAFETY_FACTOR, socketCost } from '../runner/models/scale.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const count = process.argv[2] ?? '1000000';
const two = Number(count) >= 2_000_000;
const name = two ? 'two-million' : 'million';
const lab = await readLab(join(ROOT, `labs/${name}.yaml`), { count });
/** PID 1's CPU time (utime + stime, ms): on the VM this was built on it lists every process's fds. */
const pid1Cpu = () => {
  const f = readFileSync('/proc/1/stat', 'utf8').split(') ')[1]!.split(' ');
  return ((Number(f[11]) + Number(f[12])) * 1000) / 100;
};
const pid1Before = pid1Cpu();
const loadBefore = readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).map(Number);
const provider = new LocalProvider(lab);
await provider.reserve();
const plan = planLab(lab, provider.bindings());
// The machine's own meminfo, sampled while the lab runs (both hosts are namespaces of this kernel).
const meminfo = () => Object.fromEntries(readFileSync('/proc/meminfo', 'utf8').split('\n').filter(Boolean).map((l) => [l.split(':')[0]!, parseInt(l.split(':')[1]!, 10)]));
const before = meminfo();
let peakSlabKiB = before.Slab!;
let minAvailableKiB = before.MemAvailable!;
const sampler = setInterval(() => {
  const m = meminfo();
  peakSlabKiB = Math.max(peakSlabKiB, m.Slab!);
  minAvailableKiB = Math.min(minAvailableKiB, m.MemAvailable!);
}, 250);
let last = 0;
const result = await runPlan(plan, {
  provider,
  version: 'bench',
  runtime: runtimeName(),
  onEvent: (e) => {
    if (e.kind === 'progress' && e.elapsedMs - last >= 5000) {
      last = e.elapsedMs;
      console.log(`  ${(e.elapsedMs / 1000).toFixed(0).padStart(4)} s  ${e.value} established`);
    }
  },
});
clearInterval(sampler);
const ramp = result.steps.find((s) => s.name === 'ramp');
const established = Number(ramp?.metrics.established ?? 0);
const hostFacts = result.hosts?.find((h) => h.role === 'client')?.facts;
const priced = hostFacts ? socketCost(hostFacts).bytes : null;
// Both ends are on this kernel: two sockets per connection.
const slabPerSocket = established ? Math.round(((peakSlabKiB - before.Slab!) * 1024) / (2 * established)) : null;
const availablePerSocket = established ? Math.round(((before.MemAvailable! - minAvailableKiB) * 1024) / (2 * established)) : null;
const memory = {
  slabBeforeKiB: before.Slab, peakSlabKiB, memAvailableBeforeKiB: before.MemAvailable, minMemAvailableKiB: minAvailableKiB,
  slabBytesPerSocket: slabPerSocket, memAvailableBytesPerSocket: availablePerSocket, pricedBytesPerSocket: priced,
  measuredFactor: priced && slabPerSocket ? Number((slabPerSocket / priced).toFixed(3)) : null, modelFactor: MEMORY_SAFETY_FACTOR,
};
const release = result.steps.find((s) => s.name === 'release');
// The lab's own fit at the full count (idle → held snapshots) against the model's price.
const costPrediction = result.predictions.find((p) => p.metric === 'cost.bytesPerConnection');
const cost =
  costPrediction && typeof costPrediction.observed === 'number' && typeof costPrediction.predicted === 'number'
    ? {
        observed: costPrediction.observed,
        predicted: costPrediction.predicted,
        errorPercent: Number(((Math.abs(costPrediction.observed - costPrediction.predicted) / costPrediction.predicted) * 100).toFixed(3)),
        verdict: costPrediction.verdict,
      }
    : null;
const out = {
  at: new Date().toISOString(),
  lab: `labs/${name}.yaml`,
  loadavg: { before: loadBefore, after: readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).map(Number) },
  count: Number(count),
  verdict: result.verdict,
  error: result.error,
  established: ramp?.metrics.established ?? 0,
  rampMs: ramp?.metrics.durationMs ?? null,
  releaseMs: release?.durationMs ?? null,
  releaseOk: release?.ok ?? false,
  releaseClose: release?.labels.close ?? null,
  releaseCalls: release?.labels.closeCalls ?? null,
  pid1CpuMs: pid1Cpu() - pid1Before,
  controllerPeakRssKiB: result.controller?.peakRssKiB ?? 0,
  lanes: ramp?.metrics.lanes ?? null,
  workers: ramp?.metrics.workers ?? null,
  memory,
  cost,
  stages: result.stages,
  curve: ramp?.series ?? [],
};
mkdirSync(join(ROOT, 'reports/bench'), { recursive: true });
writeFileSync(join(ROOT, `reports/bench/${name}.json`), JSON.stringify(out, null, 2) + '\n');
console.log(
  `${name}: ${out.established} in ${((out.rampMs ?? 0) / 1000).toFixed(1)} s (target < ${two ? 70 : 30} s), ${out.lanes} lanes, ${out.workers} workers, release ${((out.releaseMs ?? 0) / 1000).toFixed(1)} s (target < 5 s, ${out.releaseClose}${out.releaseCalls ? `, ${out.releaseCalls}` : ''}), ` +
    `controller peak RSS ${Math.round(out.controllerPeakRssKiB / 1024)} MiB, verdict ${out.verdict}${out.error ? ` (${out.error.code})` : ''}`,
);
console.log(
  `memory: slab +${(((peakSlabKiB - before.Slab!) * 1024) / 1e9).toFixed(2)} GB, MemAvailable −${(((before.MemAvailable! - minAvailableKiB) * 1024) / 1e9).toFixed(2)} GB: ` +
    `${slabPerSocket} B slab, ${availablePerSocket} B MemAvailable per socket against ${priced} B priced (slab × ${memory.measuredFactor}; the model's factor ${MEMORY_SAFETY_FACTOR}; MemAvailable counts half the pinned reclaimable slab as free)`,
);
if (cost) console.log(`per connection at the full count (the lab's fit, idle → held): ${cost.observed} B against ${cost.predicted} B priced, ${cost.errorPercent}% apart, ${cost.verdict}`);
console.log(`load average ${out.loadavg.before.join(' ')} before, ${out.loadavg.after.join(' ')} after; PID 1 used ${(out.pid1CpuMs / 1000).toFixed(1)} s of CPU meanwhile (it lists every /proc/<pid>/fd on this VM)`);
if (out.error) console.log(`error: ${out.error.message ?? JSON.stringify(out.error)}`);
console.log(`written: reports/bench/${name}.json`);
