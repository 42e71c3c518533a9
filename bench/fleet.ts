// Benchmark: end-to-end time of `lab run labs/port-exhaustion.yaml` over SSH
// on a fleet of 1, 4 and 16 client hosts (and one server) made by
// `lab hosts up --roles client:N,server`, read from its Ansible INI. Hosts are
// connected, provisioned and restored `--forks` at a time, so the time should
// grow far slower than the number of hosts. Prints each time and its ratio to
// the one-host run, measured in this one run.
// Usage: node --import tsx bench/fleet.ts [FORKS] [SIZES…]   (as root, under flock /tmp/lab-ssh.lock: it makes `lab hosts up` networks)

import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { hostsDown, hostsUp } from '../runner/hosts/hostsup.ts';
import type { RunResult } from '../runner/result.ts';

const forks = process.argv[2] ?? '10';
const sizes = process.argv.length > 3 ? process.argv.slice(3).map(Number) : [1, 4, 16];
const ROOT = new URL('..', import.meta.url).pathname;
const work = mkdtempSync(join(tmpdir(), 'lab-bench-fleet-'));
const rows: Array<{ n: number; ms: number; stages: Record<string, number>; established: number }> = [];
try {
  for (const n of sizes) {
    const { ansiblePath } = await hostsUp({ roles: [`client:${n}`, 'server'], out: join(work, `fleet-${n}.yaml`) });
    try {
      const out = join(work, `run-${n}`);
      const t = performance.now();
      const r = spawnSync('node', ['bin/lab.mjs', 'run', 'labs/port-exhaustion.yaml', '-i', ansiblePath, '--forks', forks, '--out', out], {
        cwd: ROOT,
        encoding: 'utf8',
      });
      const ms = performance.now() - t;
      if (r.status !== 0) throw new Error(`the run on ${n} hosts exited ${r.status}:\n${r.stderr}${r.stdout}`);
      const result = JSON.parse(readFileSync(join(out, 'result.json'), 'utf8')) as RunResult;
      const established = result.steps.find((s) => s.name === 'ramp')!.metrics.established!;
      rows.push({ n, ms, stages: result.stages, established });
    } finally {
      const problems = await hostsDown();
      if (problems.length) throw new Error(`hosts down: ${problems.join('; ')}`);
    }
  }
} finally {
  rmSync(work, { recursive: true, force: true });
}

const base = rows[0]!.ms;
console.log(`lab run labs/port-exhaustion.yaml over SSH, --forks ${forks}, end to end (CLI start to exit):`);
console.log('  clients  connections  time      × 1 host  stages (hosts/agents/provision/steps/restore ms)');
for (const r of rows) {
  const st = ['hosts', 'agents', 'provision', 'steps', 'restore'].map((s) => r.stages[s] ?? 0).join('/');
  console.log(`  ${String(r.n).padStart(7)}  ${String(r.established).padStart(11)}  ${(r.ms / 1000).toFixed(2).padStart(6)} s  ${(r.ms / base).toFixed(2).padStart(8)}  ${st}`);
}
