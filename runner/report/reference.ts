// The committed reference runs in reports/: one run of each shipped lab, kept
// so a reader sees real reports without running anything and a nightly job has
// a baseline (`lab run labs/ --baseline reports/`). `lab reports refresh` writes them.

import { readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { RunResult } from '../result.ts';
import { formatKiB, isRefusal, refusalReason } from './helpers.ts';
import { readResult } from './read.ts';

/** The reference runs: reports/<lab>/result.json, by lab name. */
export async function readReferences(dir: string): Promise<RunResult[]> {
  const entries = await readdir(dir, { withFileTypes: true }).catch(() => []);
  const results: RunResult[] = [];
  for (const e of entries.filter((e) => e.isDirectory()).sort((a, b) => a.name.localeCompare(b.name))) {
    const r = await readResult(join(dir, e.name, 'result.json')).catch(() => undefined);
    if (r) results.push(r);
  }
  return results;
}

/** Removes a lab's previous reference files; folders (git-ignored runs of `lab run`) stay. */
export async function clearReference(dir: string): Promise<void> {
  const entries = await readdir(dir, { withFileTypes: true }).catch(() => []);
  for (const e of entries) if (e.isFile()) await rm(join(dir, e.name), { force: true });
}

/** reports/README.md: what the reference runs are, and the machine they ran on. */
export function referenceReadme(results: RunResult[]): string {
  const machines = new Map<string, RunResult>();
  for (const r of results) for (const h of r.hosts) machines.set(`${h.facts.hostname} ${h.facts.kernel}`, r);
  const lines = [
    '# Reference runs',
    '',
    'One run of each shipped lab, kept in the repository: read the reports without running anything, and',
    'compare a new run with them (`lab run labs/ --baseline reports/`, the nightly job in the README).',
    'Refreshed with `lab reports refresh` (or `npm run reports:refresh`); only `result.json`, `report.md`',
    'and the charts are committed, every other file a run writes here is git-ignored.',
    '',
    '| lab | verdict | predictions passed | started | report |',
    '|---|---|--:|---|---|',
    ...results.map((r) => {
      const passed = r.predictions.filter((p) => p.verdict === 'pass').length;
      return `| ${r.lab.name} | ${r.verdict === 'pass' ? '✅ pass' : isRefusal(r) ? `⏸ refused: ${refusalReason(r)}` : '❌ fail'} | ${isRefusal(r) ? '—' : `${passed}/${r.predictions.length}`} | ${r.startedAt} | [report.md](${r.lab.name}/report.md) |`;
    }),
    '',
    '## The machine',
    '',
  ];
  for (const r of machines.values()) {
    const f = r.hosts[0]!.facts;
    lines.push(
      `- hostname \`${f.hostname}\`, kernel \`${f.kernel}\`, ${f.cpus} CPUs, MemTotal ${formatKiB(f.memTotalKiB)}, ` +
        `Python ${f.python}, ${r.tool.name} ${r.tool.version} on ${r.tool.runtime}; local namespace hosts (the default)`,
    );
  }
  lines.push('');
  return lines.join('\n');
}
