// `lab publish`: a static site from any number of runs. Each run gets a page
// at a stable path (runs/<lab>/<machine>/<start time>/, with all its reports);
// the index shows the latest verdict per lab and machine and each metric's
// history across runs (the nightly trend); each lab gets a page listing its
// runs. Every page exists as self-contained HTML and as Markdown that a docs
// generator (MkDocs, VitePress, GitHub Pages) renders as it is. Reads only
// result.json files, so publishing into the site it read from adds to it.

import { readFile, stat, writeFile } from 'node:fs/promises';
import { join, relative } from 'node:path';
import { LabError } from '../errors.ts';
import type { RunResult } from '../result.ts';
import { machineOf, performanceFigures, readResultsUnder, topologyOf, type SkippedResult } from './baseline.ts';
import { historySpec, inlineSvg, renderCharts, slug, type Chart, type HistoryPoint } from './charts.ts';
import { escapeXml, formatDuration, formatValue, isRefusal, isRegression, refusalReason, verdictCounts } from './helpers.ts';
import { readResult } from './read.ts';
import { writeReports } from './write.ts';
import { makeDirs } from '../files/dirs.ts';

export interface PublishSummary {
  runs: number;
  /** runs rendered now; the others were already in the site */
  added: number;
  labs: number;
  index: { html: string; markdown: string };
  /** broken result.json files found in the folders, left out of the site */
  skipped: SkippedResult[];
}

interface Run {
  result: RunResult;
  /** the machine (baseline.ts machineOf), and the hosts' topology where its runs of the lab had several: one line of history each */
  machine: string;
  /** the run's folder, relative to the site root, with forward slashes */
  path: string;
}

/** A run's stable folder in the site: the same run always lands at the same place. */
export function runPath(result: RunResult): string {
  const stamp = result.startedAt.replace(/\.\d+Z$/, 'Z').replaceAll(':', '-');
  return `runs/${slug(result.lab.name)}/${slug(machineOf(result))}/${stamp}`;
}

/** A run's folder when another run took its second: the start time to the millisecond. */
function finerPath(result: RunResult): string {
  return `${runPath(result)}-${/\.(\d+)Z$/.exec(result.startedAt)?.[1] ?? '0'}ms`;
}

/** Reads every result.json under `inputs` (files or folders); the same run found twice counts once; a broken one in a folder is left out, in `skipped`. */
export async function readRuns(inputs: string[]): Promise<{ runs: Run[]; skipped: SkippedResult[] }> {
  const byPath = new Map<string, Run>();
  const skipped: SkippedResult[] = [];
  for (const input of inputs) {
    let info;
    try {
      info = await stat(input);
    } catch {
      throw new LabError('ARGS', `Cannot read "${input}": no such file or folder`);
    }
    let results: RunResult[];
    if (info.isDirectory()) {
      const read = await readResultsUnder(input);
      results = read.results;
      skipped.push(...read.skipped);
    } else results = [await readResult(input)];
    for (const result of results) {
      let path = runPath(result);
      // Another run of the lab on the machine in the same second: it gets its milliseconds too.
      const other = byPath.get(path);
      if (other && other.result.startedAt !== result.startedAt) path = finerPath(result);
      byPath.set(path, { result, machine: machineOf(result), path });
    }
  }
  if (!byPath.size) {
    const broken = skipped.length ? ` (${skipped.length} broken: ${skipped.map((s) => s.problem).join('; ')})` : '';
    throw new LabError('ARGS', `No readable result.json in ${inputs.map((i) => `"${i}"`).join(', ')}${broken}: nothing to publish`);
  }
  return { runs: [...byPath.values()].sort((a, b) => a.result.startedAt.localeCompare(b.result.startedAt)), skipped };
}

export async function publish(inputs: string[], out: string): Promise<PublishSummary> {
  const { runs, skipped } = await readRuns(inputs);
  let added = 0;
  for (const run of runs) {
    const serialized = `${JSON.stringify(run.result, null, 2)}\n`;
    const read = (path: string) => readFile(join(out, path, 'result.json'), 'utf8').catch(() => undefined);
    let existing = await read(run.path);
    // The folder holds another run of the same second (published before): this one takes its milliseconds.
    if (existing !== undefined && existing !== serialized && startOf(existing) !== run.result.startedAt) {
      run.path = finerPath(run.result);
      existing = await read(run.path);
    }
    const dir = join(out, run.path);
    // A run already in the site is not rendered again: its pages are stable.
    if (existing === serialized) continue;
    await writeReports(run.result, dir);
    added++;
  }

  const labs = new Map<string, Run[]>();
  for (const run of runs) labs.set(run.result.lab.name, [...(labs.get(run.result.lab.name) ?? []), run]);
  const sections: LabSection[] = [];
  for (const [name, labRuns] of [...labs.entries()].sort(([a], [b]) => a.localeCompare(b))) {
    apartByTopology(labRuns);
    const dir = join(out, slug(name));
    await makeDirs(dir);
    const charts = await renderCharts(historySpecs(labRuns));
    for (const c of charts) await writeFile(join(dir, `${c.name}.svg`), c.svg);
    const section: LabSection = { name, slug: slug(name), runs: labRuns, charts };
    sections.push(section);
    await writeFile(join(dir, 'index.html'), labHtml(section));
    await writeFile(join(dir, 'index.md'), labMarkdown(section));
  }
  const index = { html: join(out, 'index.html'), markdown: join(out, 'index.md') };
  await writeFile(index.html, indexHtml(sections));
  await writeFile(index.markdown, indexMarkdown(sections));
  return { runs: runs.length, added, labs: sections.length, index, skipped };
}

/**
 * A lab run on one machine over different hosts (one namespace, then two SSH
 * clients) measured different things: a role's total over two clients is no
 * regression of one. Such runs are told apart by their topology, so that each
 * draws its own line of history and keeps its own latest verdict.
 */
function apartByTopology(runs: Run[]): void {
  const topologies = new Map<string, Set<string>>();
  for (const run of runs) topologies.set(run.machine, (topologies.get(run.machine) ?? new Set()).add(topologyOf(run.result)));
  for (const run of runs) {
    if (topologies.get(run.machine)!.size > 1) run.machine = `${run.machine} (${topologyOf(run.result)})`;
  }
}

/** The start time a published result.json records, or undefined when it cannot be read. */
function startOf(text: string): string | undefined {
  try {
    return (JSON.parse(text) as { startedAt?: string }).startedAt;
  } catch {
    return undefined;
  }
}

interface LabSection {
  name: string;
  slug: string;
  runs: Run[];
  charts: Chart[];
}

/** Each numeric prediction and performance figure of a lab, across its runs (one machine's runs per line of points). */
function historySpecs(runs: Run[]) {
  const series = new Map<string, HistoryPoint[]>();
  const add = (metric: string, point: HistoryPoint) => series.set(metric, [...(series.get(metric) ?? []), point]);
  for (const { result, machine } of runs) {
    for (const p of result.predictions) {
      if (typeof p.observed !== 'number') continue;
      add(p.metric, { at: result.startedAt, machine, value: p.observed, verdict: p.verdict, ...(typeof p.predicted === 'number' ? { predicted: p.predicted } : {}) });
    }
    for (const [metric, figure] of performanceFigures(result)) add(metric, { at: result.startedAt, machine, value: figure.value, verdict: 'pass' });
  }
  return [...series.entries()].map(([metric, points]) => historySpec(metric, points)!).filter(Boolean);
}

/** The latest run per machine, newest first. */
function latestPerMachine(runs: Run[]): Run[] {
  const latest = new Map<string, Run>();
  for (const run of runs) latest.set(run.machine, run);
  return [...latest.values()].sort((a, b) => b.result.startedAt.localeCompare(a.result.startedAt));
}

function status(result: RunResult): { text: string; cls: 'pass' | 'fail' | 'refused' } {
  if (isRefusal(result)) return { text: `refused: ${refusalReason(result)}`, cls: 'refused' };
  if (result.error) return { text: `error ${result.error.code}`, cls: 'fail' };
  if (result.verdict !== 'pass') return { text: 'fail', cls: 'fail' };
  if (result.baseline?.regressions) return { text: `regressed (${result.baseline.metrics.filter(isRegression).map((m) => m.metric).join(', ')})`, cls: 'fail' };
  return { text: 'pass', cls: 'pass' };
}

function predictionsLine(result: RunResult): string {
  const c = verdictCounts(result);
  return `${c.pass}/${c.total}`;
}

// ── HTML: one self-contained page each (inline CSS and SVG, no script, no URL) ──

const e = escapeXml;

const CSS = `:root { --pass: #1a7f37; --fail: #cf222e; --line: #d0d7de; --muted: #57606a; }
body { font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #1f2328; max-width: 62rem; margin: 2rem auto; padding: 0 1rem; }
h2 { border-bottom: 1px solid var(--line); padding-bottom: .2rem; margin-top: 2rem; }
code { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: .9em; }
table { border-collapse: collapse; margin: .5rem 0 1rem; }
th, td { border: 1px solid var(--line); padding: .25rem .6rem; text-align: left; vertical-align: top; }
th { background: #f6f8fa; }
.scroll { overflow-x: auto; }
.pass { color: var(--pass); font-weight: 600; }
.fail { color: var(--fail); font-weight: 600; }
.refused { color: var(--muted, #6e7781); font-weight: 600; }
.muted { color: var(--muted); }
figure { margin: .5rem 0 1rem; }
figcaption { color: var(--muted); font-size: .9em; }
svg.chart { width: 100%; max-width: 40rem; height: auto; display: block; }
@media (max-width: 40rem) { body { margin: 1rem auto; font-size: 14px; } }
@media print { body { margin: 0; max-width: none; font-size: 10pt; } figure, table { break-inside: avoid; } h2 { break-after: avoid; } }`;

function page(title: string, body: string[]): string {
  return [
    '<!DOCTYPE html>',
    '<html lang="en">',
    '<head>',
    '<meta charset="utf-8">',
    '<meta name="viewport" content="width=device-width, initial-scale=1">',
    `<title>${e(title)}</title>`,
    `<style>\n${CSS}\n</style>`,
    '</head>',
    '<body>',
    ...body,
    '</body>',
    '</html>',
    '',
  ].join('\n');
}

function runsTable(runs: Run[], from: string, ext: 'html' | 'md'): string[] {
  const link = (run: Run) => `${relative(from, run.path) || '.'}/report.${ext}`;
  if (ext === 'md') {
    return [
      '| lab | machine | verdict | predictions passed | started | duration | report |',
      '|---|---|---|--:|---|--:|---|',
      ...runs.map((r) => `| ${cell(r.result.lab.name)} | ${cell(r.machine)} | ${{ pass: '✅', fail: '❌', refused: '⏸' }[status(r.result).cls]} ${cell(status(r.result).text)} | ${predictionsLine(r.result)} | ${r.result.startedAt} | ${formatDuration(r.result.durationMs)} | [report](${link(r)}) |`),
    ];
  }
  return [
    '<div class="scroll"><table>',
    '<thead><tr><th>lab</th><th>machine</th><th>verdict</th><th>predictions passed</th><th>started</th><th>duration</th><th>report</th></tr></thead>',
    '<tbody>',
    ...runs.map((r) => {
      const s = status(r.result);
      return `<tr><td>${e(r.result.lab.name)}</td><td>${e(r.machine)}</td><td class="${s.cls}">${e(s.text)}</td><td>${predictionsLine(r.result)}</td><td>${e(r.result.startedAt)}</td><td>${formatDuration(r.result.durationMs)}</td><td><a href="${e(link(r))}">report</a> · <a href="${e(`${relative(from, r.path) || '.'}/result.json`)}">result.json</a></td></tr>`;
    }),
    '</tbody></table></div>',
  ];
}

function indexHtml(sections: LabSection[]): string {
  const latest = sections.flatMap((s) => latestPerMachine(s.runs));
  const total = sections.reduce((a, s) => a + s.runs.length, 0);
  return page('lab: published runs', [
    '<h1>lab: published runs</h1>',
    `<p class="muted">${sections.length} labs, ${total} runs. The latest run of each lab on each machine; each lab's page lists all its runs.</p>`,
    '<h2 id="latest">Latest verdicts</h2>',
    ...runsTable(latest, '.', 'html'),
    ...sections.flatMap((s) => [
      `<section id="lab-${e(s.slug)}">`,
      `<h2>${e(s.name)}</h2>`,
      `<p><a href="${e(s.slug)}/index.html">all ${s.runs.length} run${s.runs.length === 1 ? '' : 's'} of ${e(s.name)}</a></p>`,
      ...s.charts.map((c) => `<figure>\n${inlineSvg(c)}\n<figcaption>${e(c.title)}</figcaption>\n</figure>`),
      '</section>',
    ]),
  ]);
}

function labHtml(s: LabSection): string {
  const runs = [...s.runs].reverse();
  const description = s.runs[s.runs.length - 1]!.result.lab.description;
  return page(`${s.name}: runs`, [
    `<p><a href="../index.html">all labs</a></p>`,
    `<h1>${e(s.name)}</h1>`,
    ...(description ? [`<p>${e(description)}</p>`] : []),
    '<h2>History</h2>',
    ...s.charts.map((c) => `<figure>\n${inlineSvg(c)}\n<figcaption>${e(c.title)}</figcaption>\n</figure>`),
    '<h2>Runs</h2>',
    ...runsTable(runs, s.slug, 'html'),
    ...metricsTable(runs, 'html'),
  ]);
}

/** Observed value of each prediction per run, newest first: the numbers behind the charts. */
function metricsTable(runs: Run[], ext: 'html' | 'md'): string[] {
  const metrics = [...new Set(runs.flatMap((r) => r.result.predictions.map((p) => p.metric)))];
  if (!metrics.length) return [];
  const value = (r: Run, m: string) => formatValue(r.result.predictions.find((p) => p.metric === m)?.observed);
  if (ext === 'md') {
    return [
      '',
      '## Observed values',
      '',
      `| started | ${metrics.map(cell).join(' | ')} |`,
      `|---|${metrics.map(() => '--:').join('|')}|`,
      ...runs.map((r) => `| ${r.result.startedAt} | ${metrics.map((m) => cell(value(r, m))).join(' | ')} |`),
    ];
  }
  return [
    '<h2>Observed values</h2>',
    '<div class="scroll"><table>',
    `<thead><tr><th>started</th>${metrics.map((m) => `<th><code>${e(m)}</code></th>`).join('')}</tr></thead>`,
    '<tbody>',
    ...runs.map((r) => `<tr><td>${e(r.result.startedAt)}</td>${metrics.map((m) => `<td>${e(value(r, m))}</td>`).join('')}</tr>`),
    '</tbody></table></div>',
  ];
}

// ── Markdown: the same pages for a docs generator ──

function cell(text: string): string {
  return text.replace(/\|/g, '\\|').replace(/\r?\n/g, ' ').replace(/</g, '&lt;');
}

function indexMarkdown(sections: LabSection[]): string {
  const latest = sections.flatMap((s) => latestPerMachine(s.runs));
  const total = sections.reduce((a, s) => a + s.runs.length, 0);
  return [
    '# lab: published runs',
    '',
    `${sections.length} labs, ${total} runs. The latest run of each lab on each machine; each lab's page lists all its runs.`,
    '',
    '## Latest verdicts',
    '',
    ...runsTable(latest, '.', 'md'),
    '',
    ...sections.flatMap((s) => [
      `## ${s.name}`,
      '',
      `[All ${s.runs.length} run${s.runs.length === 1 ? '' : 's'} of ${s.name}](${s.slug}/index.md)`,
      '',
      ...s.charts.flatMap((c) => [`![${cell(c.title)}](${s.slug}/${c.name}.svg)`, '']),
    ]),
  ].join('\n');
}

function labMarkdown(s: LabSection): string {
  const runs = [...s.runs].reverse();
  return [
    `# ${s.name}`,
    '',
    '[All labs](../index.md)',
    '',
    '## History',
    '',
    ...s.charts.flatMap((c) => [`![${cell(c.title)}](${c.name}.svg)`, '']),
    '## Runs',
    '',
    ...runsTable(runs, s.slug, 'md'),
    ...metricsTable(runs, 'md'),
    '',
  ].join('\n');
}

