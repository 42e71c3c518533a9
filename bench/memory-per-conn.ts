// Benchmark check: the memory lab's bytes per connection against an
// independent computation from /proc/slabinfo in the same run. The lab's
// agent reads slabinfo on the server host and the runner fits a line through
// four snapshots; here the controller reads /proc/slabinfo itself (slab is
// the machine's, so the root namespace sees the same caches) right after each
// snapshot, with its own parser, and takes the two-point difference between
// the first and the last. The two must agree within 2%.
// `npm run bench` prints it beside its target (memoryAccuracy()), or alone: npm run bench:memory [-- STEP]

import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { planLab } from '../runner/lab/plan.ts';
import { readLab } from '../runner/lab/validate.ts';
import type { MemoryFit } from '../runner/models/memory.ts';
import { LocalProvider } from '../runner/run/local-provider.ts';
import { runPlan, runtimeName } from '../runner/run/run.ts';

const direct = !!process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1];
const STEP = (direct && process.argv[2]) || '5000';
const AGREE_PERCENT = 2;
const ROOT = fileURLToPath(new URL('..', import.meta.url));

/** cache -> [active objects, object size], parsed here, not by the agent. */
function readSlabinfo(): Map<string, [number, number]> {
  const out = new Map<string, [number, number]>();
  for (const line of readFileSync('/proc/slabinfo', 'utf8').split('\n')) {
    if (!line || line.startsWith('slabinfo') || line.startsWith('#')) continue;
    const [name, active, , size] = line.trim().split(/\s+/);
    out.set(name!, [Number(active), Number(size)]);
  }
  return out;
}

/** Run the memory lab and compare; prints the lines below and returns the difference in percent. */
export async function memoryAccuracy(): Promise<{ percent: number; ok: boolean; how: string }> {
  const lab = await readLab(join(ROOT, 'labs/memory-per-conn.yaml'), { step: STEP });
  const provider = new LocalProvider(lab);
  await provider.reserve();
  const reads: Array<{ connections: number; slab: Map<string, [number, number]> }> = [];
  const result = await runPlan(planLab(lab, provider.bindings()), {
    provider,
    version: 'bench',
    runtime: runtimeName(),
    onEvent: (e) => {
      if (e.kind === 'step-end' && e.observation.kind === 'snapshot') {
        reads.push({ connections: e.observation.metrics.connections!, slab: readSlabinfo() });
      }
    },
  });
  const fitObs = result.steps.find((s) => s.kind === 'fit');
  if (!fitObs?.ok || reads.length < 2) throw new Error(`the lab did not run to its fit: ${JSON.stringify(result.error ?? fitObs?.error)}`);
  const fit = fitObs.detail as unknown as MemoryFit;

  // The same quantity, computed apart: the caches the lab attributed, first and
  // last read, proc inodes' dentries and LSM blobs taken out as the lab does.
  const first = reads[0]!;
  const last = reads[reads.length - 1]!;
  const objs = (r: (typeof reads)[number], c: string) => r.slab.get(c)?.[0] ?? 0;
  const procDelta = objs(last, 'proc_inode_cache') - objs(first, 'proc_inode_cache');
  let bytes = 0;
  for (const { cache } of fit.attributed) {
    const companion = cache === 'dentry' || cache === 'lsm_inode_cache' ? procDelta : 0;
    bytes += (objs(last, cache) - objs(first, cache) - companion) * (last.slab.get(cache)?.[1] ?? 0);
  }
  const independent = bytes / (last.connections - first.connections);
  const lab_ = fit.bytesPerConnection;
  const diff = (100 * (lab_ - independent)) / independent;
  const ok = Math.abs(diff) <= AGREE_PERCENT;
  console.log(`\nlabs/memory-per-conn.yaml (step ${STEP}, ${runtimeName()}): bytes per idle connection, both ends`);
  console.log(`  lab (agent's slabinfo, least squares over ${fit.points} snapshots)  ${lab_.toFixed(1).padStart(8)} B`);
  console.log(`  independent (controller's /proc/slabinfo, ${first.connections} → ${last.connections})  ${independent.toFixed(1).padStart(8)} B`);
  console.log(`  ratio lab ÷ independent ${(lab_ / independent).toFixed(4)} (${diff >= 0 ? '+' : ''}${diff.toFixed(2)}%): ${ok ? 'within' : 'NOT within'} ${AGREE_PERCENT}%`);
  console.log(`  by cache: ${fit.attributed.map((a) => `${a.cache} ${a.bytes}`).join(', ')}; other ${fit.otherBytesPerConnection}, residual ${fit.residualPercent}%`);
  return {
    percent: Math.round(diff * 100) / 100,
    ok: ok && result.verdict === 'pass',
    how: `labs/memory-per-conn.yaml (step ${STEP}): lab ${lab_.toFixed(1)} B per connection against ${independent.toFixed(1)} B from the controller's own /proc/slabinfo, same run`,
  };
}

if (direct) {
  const r = await memoryAccuracy();
  if (!r.ok) process.exitCode = 1;
}
