// `npm run bench:million`: labs/million.yaml in this process, as `lab run`
// does it: the ramp time and its curve, the release time, the controller's
// peak RSS, written to reports/bench/million.json for `npm run bench` to print
// beside its targets. Minutes long and ~10 GiB of kernel memory: not part of
// `npm run bench`. Run it under the heavy lock, with the memory free (the run
// itself refuses when MemAvailable cannot hold it).
// Usage: npm run bench:million [-- COUNT]

import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { planLab } from '../runner/lab/plan.ts';
import { readLab } from '../runner/lab/validate.ts';
import { LocalProvider } from '../runner/run/local-provider.ts';
import { runPlan, runtimeName } from '../runner/run/run.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const count = process.argv[2] ?? '1000000';
const lab = await readLab(join(ROOT, 'labs/million.yaml'), { count });
const provider = new LocalProvider(lab);
await provider.reserve();
const plan = planLab(lab, provider.bindings());
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
const ramp = result.steps.find((s) => s.name === 'ramp');
const release = result.steps.find((s) => s.name === 'release');
const out = {
  at: new Date().toISOString(),
  count: Number(count),
  verdict: result.verdict,
  error: result.error,
  established: ramp?.metrics.established ?? 0,
  rampMs: ramp?.metrics.durationMs ?? null,
  releaseMs: release?.durationMs ?? null,
  releaseOk: release?.ok ?? false,
  controllerPeakRssKiB: result.controller?.peakRssKiB ?? 0,
  stages: result.stages,
  curve: ramp?.series ?? [],
};
mkdirSync(join(ROOT, 'reports/bench'), { recursive: true });
writeFileSync(join(ROOT, 'reports/bench/million.json'), JSON.stringify(out, null, 2) + '\n');
console.log(
  `million: ${out.established} in ${((out.rampMs ?? 0) / 1000).toFixed(1)} s (target < 30 s), release ${((out.releaseMs ?? 0) / 1000).toFixed(1)} s (target < 5 s), ` +
    `controller peak RSS ${Math.round(out.controllerPeakRssKiB / 1024)} MiB, verdict ${out.verdict}${out.error ? ` (${out.error.code})` : ''}`,
);
console.log('written: reports/bench/million.json');
