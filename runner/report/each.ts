// The side-by-side report of `lab run --each`: one column per host, rows for
// the facts, the lab's variables, every prediction and observation and the
// verdicts, with a row marked where the hosts differ. Reads only the
// EachResult (each column a whole RunResult), like every other report.

import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { EachResult, RunResult } from '../result.ts';
import { escapeXml, formatDuration, formatKiB, formatNumber, formatPortRange, formatValue, formatVerdict } from './helpers.ts';
import { makeDirs } from '../files/dirs.ts';

export interface EachRow {
  label: string;
  cells: string[];
  /** the hosts do not all agree on this row */
  differs: boolean;
  /** verdict rows: a class per cell */
  verdicts?: string[];
}

export interface EachSection {
  title: string;
  rows: EachRow[];
}

/** The facts the side-by-side report compares, as a reader names them. */
const FACTS: Array<[string, (f: RunResult['hosts'][number]['facts']) => string]> = [
  ['hostname', (f) => f.hostname],
  ['kernel', (f) => f.kernel],
  ['net.ipv4.ip_local_port_range', (f) => formatPortRange(f.portRange)],
  ['net.ipv4.ip_local_reserved_ports', (f) => f.reservedPorts || 'none'],
  ['nofile soft / hard', (f) => `${formatNumber(f.nofileSoft)} / ${formatNumber(f.nofileHard)}`],
  ['fs.nr_open', (f) => formatNumber(f.nrOpen)],
  ['fs.file-max', (f) => formatNumber(f.fileMax)],
  ['net.core.somaxconn', (f) => formatNumber(f.somaxconn)],
  ['MemAvailable', (f) => formatKiB(f.memAvailableKiB)],
  ['CPUs', (f) => String(f.cpus)],
  ['python', (f) => f.python],
];

function row(label: string, cells: string[], verdicts?: string[]): EachRow {
  const r: EachRow = { label, cells, differs: new Set(cells).size > 1 };
  if (verdicts) r.verdicts = verdicts;
  return r;
}

/** The comparison both renderers draw: sections of rows, one cell per host. */
export function eachView(each: EachResult): { hosts: string[]; sections: EachSection[] } {
  const runs = each.runs;
  const hostOf = (r: RunResult, host: string) => r.hosts.find((h) => (h.name ?? h.role) === host) ?? r.hosts.find((h) => h.role === each.role);
  const facts: EachRow[] = FACTS.map(([label, get]) =>
    row(label, runs.map(({ host, result }) => {
      const h = hostOf(result, host);
      return h ? get(h.facts) : '—';
    })),
  );
  const varNames = [...new Set(runs.flatMap((r) => Object.keys(r.result.lab.vars)))];
  const vars = varNames.map((v) => row(`var ${v}`, runs.map((r) => r.result.lab.vars[v] ?? '—')));
  const metrics = [...new Set(runs.flatMap((r) => r.result.predictions.map((p) => p.metric)))];
  const predictions: EachRow[] = [];
  for (const metric of metrics) {
    // A role with several hosts has rows per host and a total: the side-by-side compares the totals.
    const pick = (r: EachResult['runs'][number]) => {
      const all = r.result.predictions.filter((p) => p.metric === metric);
      return all.find((p) => p.host === undefined) ?? all[0];
    };
    const ps = runs.map(pick);
    predictions.push(row(`${metric} predicted`, ps.map((p) => (p ? formatValue(p.predicted) : '—'))));
    predictions.push(row(`${metric} observed`, ps.map((p) => (p ? formatValue(p.observed) : '—'))));
    predictions.push(row(`${metric} verdict`, ps.map((p) => (p ? formatVerdict(p.verdict) : '—')), ps.map((p) => p?.verdict ?? 'not-measured')));
  }
  const outcome = [
    row('verdict', runs.map((r) => formatVerdict(r.result.verdict)), runs.map((r) => r.result.verdict)),
    row('error', runs.map((r) => (r.result.error ? `${r.result.error.code}: ${r.result.error.message}` : '—'))),
    row('duration', runs.map((r) => formatDuration(r.result.durationMs))),
    row('restored', runs.map((r) => (r.result.restore.ok ? 'yes' : `no: ${r.result.restore.problems.join('; ')}`))),
  ];
  return {
    hosts: runs.map((r) => r.host),
    sections: [
      { title: 'Facts', rows: facts },
      ...(vars.length ? [{ title: 'Variables', rows: vars }] : []),
      { title: 'Predictions and observations', rows: predictions },
      { title: 'Run', rows: outcome },
    ],
  };
}

const mdCell = (s: string) => s.replace(/\|/g, '\\|').replace(/\r?\n/g, ' ').replace(/</g, '&lt;');

export function renderEachMarkdown(each: EachResult): string {
  const view = eachView(each);
  const lines = [
    `# ${each.lab.name} on each host of "${each.group}": ${each.verdict === 'pass' ? '✅ pass' : '❌ FAIL'}`,
    '',
    `The lab \`${each.lab.file}\` ran once per host of the group "${each.group}" of \`${each.inventory}\` (as role "${each.role}"), ` +
      `${view.hosts.length} runs in ${formatDuration(each.durationMs)}. Rows marked ≠ differ between hosts.`,
  ];
  for (const section of view.sections) {
    lines.push('', `## ${section.title}`, '', `| | ${view.hosts.map(mdCell).join(' | ')} |`, `|---|${view.hosts.map(() => '---').join('|')}|`);
    for (const r of section.rows) {
      const cells = r.cells.map((c) => (r.differs ? `**${mdCell(c)}**` : mdCell(c)));
      lines.push(`| ${r.differs ? '≠ ' : ''}${mdCell(r.label)} | ${cells.join(' | ')} |`);
    }
  }
  lines.push('', 'Each run\'s own report is in the directory named after its host.', '');
  return lines.join('\n');
}

export function renderEachHtml(each: EachResult): string {
  const view = eachView(each);
  const e = escapeXml;
  const verdictClass = (v: string | undefined) => (v === 'pass' || v === 'fail' ? v : 'not-measured');
  const sections = view.sections
    .map(
      (section) => `<h2>${e(section.title)}</h2>
<table>
<tr><th></th>${view.hosts.map((h) => `<th>${e(h)}</th>`).join('')}</tr>
${section.rows
  .map(
    (r) =>
      `<tr${r.differs ? ' class="differs"' : ''}><th>${r.differs ? '≠ ' : ''}${e(r.label)}</th>${r.cells
        .map((c, i) => `<td${r.verdicts ? ` class="verdict ${verdictClass(r.verdicts[i])}"` : ''}>${e(c)}</td>`)
        .join('')}</tr>`,
  )
  .join('\n')}
</table>`,
    )
    .join('\n');
  return `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${e(each.lab.name)} on each host of ${e(each.group)}: ${e(each.verdict)}</title>
<style>
body { font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #1f2328; max-width: 80rem; margin: 2rem auto; padding: 0 1rem; }
table { border-collapse: collapse; margin: .5rem 0 1rem; }
th, td { border: 1px solid #d0d7de; padding: .25rem .6rem; text-align: left; vertical-align: top; }
th { background: #f6f8fa; }
tr.differs td, tr.differs th { background: #fff8c5; font-weight: 600; }
td.verdict.pass { color: #1a7f37; }
td.verdict.fail { color: #cf222e; }
td.verdict.not-measured { color: #6e7781; }
</style>
</head>
<body>
<h1>${e(each.lab.name)} on each host of "${e(each.group)}": ${e(each.verdict === 'pass' ? 'pass' : 'FAIL')}</h1>
<p>The lab <code>${e(each.lab.file)}</code> ran once per host of the group "${e(each.group)}" of <code>${e(each.inventory)}</code> (as role "${e(each.role)}"), ${view.hosts.length} runs in ${e(formatDuration(each.durationMs))}. Highlighted rows (≠) differ between hosts.</p>
${sections}
<p>Each run's own report is in the directory named after its host.</p>
</body>
</html>
`;
}

/** each.json, report.md and report.html in `dir`; each run's own reports go in `dir/<host>/` (the caller's). */
export async function writeEachReports(each: EachResult, dir: string): Promise<{ json: string; markdown: string; html: string }> {
  await makeDirs(dir);
  const paths = { json: join(dir, 'each.json'), markdown: join(dir, 'report.md'), html: join(dir, 'report.html') };
  await writeFile(paths.json, `${JSON.stringify(each, null, 2)}\n`);
  await writeFile(paths.markdown, renderEachMarkdown(each));
  await writeFile(paths.html, renderEachHtml(each));
  return paths;
}
