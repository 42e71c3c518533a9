// Regression against a baseline: reads earlier runs (a result.json, a folder
// of runs such as a suite's results or reports/, or a site `lab publish`
// wrote) and compares a new run's metrics with them. A baseline is just older
// result.json files, so this reads nothing but RunResults.
//
// Three rules, by what a metric is:
// - limit: a prediction with no tolerance (a count, an errno): any move beyond
//   the prediction's own tolerance is a regression.
// - measured: a prediction with a tolerance (memory per connection, a rate):
//   a move beyond the drift tolerance (--drift, default 10 %) is a regression.
// - performance: connect rate, ramp time, memory per connection from the
//   snapshots. These machines are shared and noisy, so with 3 or more earlier
//   runs a figure regresses when it is worse than every one of the last N by
//   more than --perf-drift (default 25 %); with fewer it is only reported.

import { readdir, stat } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { LabError } from '../errors.ts';
import type { BaselineComparison, MetricComparison, RunResult } from '../result.ts';
import { fitLine, memoryPoints } from './charts.ts';
import { formatNumber } from './helpers.ts';
import { readResult } from './read.ts';

export interface BaselineOptions {
  /** allowed relative move of measured quantities, in percent */
  driftPercent: number;
  /** allowed move of a performance figure beyond the worst of the earlier runs, in percent */
  performanceDriftPercent: number;
  /** how many earlier runs the performance rule looks at */
  history: number;
}

export const DEFAULT_BASELINE_OPTIONS: BaselineOptions = { driftPercent: 10, performanceDriftPercent: 25, history: 5 };

/** Performance runs needed before the noise-aware rule may call a regression. */
export const MIN_PERFORMANCE_RUNS = 3;

/** Figures too small to time reliably: a 70 ms ramp that takes 90 ms is noise, not a regression. */
const MIN_DURATION_MOVE_MS = 250;

/** A result.json found in a folder that could not be read: left out, and said so. */
export interface SkippedResult {
  file: string;
  /** the reader's message, with its code */
  problem: string;
}

/**
 * Every result.json of a folder of runs. One that is broken (truncated,
 * unreadable, not a lab result) is left out and reported, rather than stopping
 * every later baseline or publish until someone steps in; one written by a
 * newer lab still stops it (lab itself needs upgrading).
 */
export async function readResultsUnder(dir: string): Promise<{ results: RunResult[]; skipped: SkippedResult[] }> {
  const results: RunResult[] = [];
  const skipped: SkippedResult[] = [];
  for (const file of await findResults(dir)) {
    try {
      results.push(await readResult(file));
    } catch (e) {
      if (!(e instanceof LabError) || e.code === 'RESULT_NEWER') throw e;
      skipped.push({ file, problem: `${e.message} [${e.code}]` });
    }
  }
  return { results, skipped };
}

/** The warning for a result.json left out of a folder. */
export function skippedWarning(s: SkippedResult): string {
  return `warning: left out ${s.file}: ${s.problem.startsWith(s.file) ? s.problem.slice(s.file.length).replace(/^:\s*/, '') : s.problem}; repair or remove it`;
}

/** A baseline named as a file: a result.json; a site's index.html or report.md gets told what to give instead. */
async function readBaselineFile(path: string): Promise<RunResult> {
  try {
    return await readResult(path);
  } catch (e) {
    if (e instanceof LabError && e.code === 'RESULT_INVALID' && !path.endsWith('.json')) {
      throw new LabError(e.code, `${e.message}: --baseline takes a result.json, or a folder of runs (a published site's folder, not its ${basename(path)})`);
    }
    throw e;
  }
}

/** Every result.json under `path` (itself when a file), oldest first; a broken one in a folder is left out, in `skipped`. */
export async function readBaseline(path: string): Promise<{ results: RunResult[]; skipped: SkippedResult[] }> {
  let info;
  try {
    info = await stat(path);
  } catch {
    throw new LabError('BASELINE_UNREADABLE', `Cannot read the baseline "${path}": no such file or folder`);
  }
  const read = info.isDirectory() ? await readResultsUnder(path) : { results: [await readBaselineFile(path)], skipped: [] };
  // Nothing readable at all is no baseline: a nightly gate that compares with nothing must not pass quietly.
  if (!read.results.length) {
    throw new LabError(
      'BASELINE_EMPTY',
      read.skipped.length
        ? `The baseline "${path}" holds no readable result.json: ${read.skipped.map((s) => s.problem).join('; ')}`
        : `The baseline "${path}" holds no result.json: give a result.json, a folder of runs, or a published site`,
    );
  }
  return { results: read.results.sort((a, b) => a.startedAt.localeCompare(b.startedAt)), skipped: read.skipped };
}

/** result.json files below `dir`, in a stable order. */
export async function findResults(dir: string): Promise<string[]> {
  const out: string[] = [];
  const walk = async (d: string) => {
    const entries = await readdir(d, { withFileTypes: true });
    entries.sort((a, b) => a.name.localeCompare(b.name));
    for (const e of entries) {
      if (e.isDirectory() && !e.name.startsWith('.') && e.name !== 'node_modules') await walk(join(d, e.name));
      else if (e.isFile() && e.name === 'result.json') out.push(join(d, e.name));
    }
  };
  await walk(dir);
  return out;
}

/** Where a run ran: the hostnames of its hosts, so history compares like with like. */
export function machineOf(result: RunResult): string {
  if (result.machine) return result.machine;
  const names = [...new Set(result.hosts.map((h) => h.facts.hostname))].sort();
  return names.join(', ') || 'unknown';
}

/** The hosts a run had, as "client: 2 ssh, server: 1 ssh": what its figures are totals over. */
export function topologyOf(result: RunResult): string {
  const count = new Map<string, { role: string; transport: string; n: number }>();
  for (const h of result.hosts) {
    const transport = h.transport ?? 'netns'; // results older than the field were all local
    const key = `${h.role}\0${transport}`;
    const c = count.get(key) ?? { role: h.role, transport, n: 0 };
    c.n++;
    count.set(key, c);
  }
  return [...count.values()].map((c) => `${c.role}: ${c.n} ${c.transport}`).sort().join(', ');
}

/**
 * A run another may be compared with: it passed, ran to its end and moved
 * nothing against its own baseline. A failed or disturbed night is no measure
 * of the next (the next would be blamed for being right), and a regression
 * stays one, night after night, until a run without it is accepted.
 */
export function isGoodBaseline(r: RunResult): boolean {
  if (r.verdict !== 'pass' || r.error) return false;
  // Measured against another machine's run (its first nights), a move says how the machines differ, not that this one moved.
  const against = r.baseline?.machine;
  return !r.baseline?.regressions || (against !== undefined && against !== machineOf(r));
}

/** The earlier runs of the same lab on hosts like these: a role's total over two SSH hosts is no baseline for one local namespace. */
function earlierRuns(result: RunResult, baseline: RunResult[]): RunResult[] {
  return baseline.filter((r) => r.lab.name === result.lab.name && r.startedAt < result.startedAt && topologyOf(r) === topologyOf(result));
}

/** Why a run was compared with nothing: no earlier run of its lab on hosts like these, or none of them good to compare with. */
export function noBaselineReason(result: RunResult, baseline: RunResult[]): string {
  const earlier = earlierRuns(result, baseline);
  const hosts = `on hosts like these (${topologyOf(result)})`;
  if (!earlier.length) return `no earlier run of "${result.lab.name}" ${hosts} in it; nothing compared`;
  return (
    `none of the ${earlier.length} earlier run${earlier.length === 1 ? '' : 's'} of "${result.lab.name}" ${hosts} passed without a regression; nothing compared ` +
    '(the next run compares with this one, if it passes)'
  );
}

/**
 * The comparison of `result` with the earlier good runs of the same lab in
 * `baseline` (runs of the same machine when there are any), or undefined when
 * the baseline has none.
 */
export function compareWithBaseline(
  result: RunResult,
  baseline: RunResult[],
  source: string,
  options: BaselineOptions = DEFAULT_BASELINE_OPTIONS,
): BaselineComparison | undefined {
  const sameLab = earlierRuns(result, baseline).filter(isGoodBaseline);
  const sameMachine = sameLab.filter((r) => machineOf(r) === machineOf(result));
  const history = (sameMachine.length ? sameMachine : sameLab).slice(-options.history);
  const base = history[history.length - 1];
  if (!base) return undefined;

  const metrics: MetricComparison[] = [];
  const before = new Map(base.predictions.map((p) => [p.metric, p]));
  for (const p of result.predictions) {
    const b = before.get(p.metric);
    before.delete(p.metric);
    const measured = typeof p.predicted === 'number' && p.tolerance > 0;
    const kind = measured ? 'measured' : 'limit';
    if (!b) {
      metrics.push({ metric: p.metric, kind, baseline: null, observed: p.observed, status: 'new', rule: 'not in the baseline' });
      continue;
    }
    metrics.push(measured ? compareMeasured(p.metric, b.observed, p.observed, options) : compareLimit(p.metric, b.observed, p.observed, p.tolerance));
  }
  for (const b of before.values()) {
    metrics.push({ metric: b.metric, kind: 'limit', baseline: b.observed, observed: null, status: 'missing', rule: 'in the baseline, not in this run' });
  }
  for (const [metric, figure] of performanceFigures(result)) {
    const earlier = history.map((r) => performanceFigures(r).get(metric)?.value).filter((v): v is number => v !== undefined);
    metrics.push(comparePerformance(metric, figure, earlier, options));
  }
  const changed = differences(base, result);
  return {
    source,
    startedAt: base.startedAt,
    machine: machineOf(base),
    runs: history.length,
    metrics,
    regressions: metrics.filter((m) => m.status === 'regression' || m.status === 'missing').length,
    ...(changed.length ? { changed } : {}),
  };
}

/** What differs between two runs of a lab, one line each: each role's kernel, the lab's variables, the lab file, lab's version. */
export function differences(before: RunResult, now: RunResult): string[] {
  const out: string[] = [];
  if (machineOf(before) !== machineOf(now)) out.push(`machine: ${machineOf(before)} → ${machineOf(now)}`);
  const kernels = (r: RunResult, role: string) => [...new Set(r.hosts.filter((h) => h.role === role).map((h) => h.facts.kernel))].sort().join(', ');
  for (const role of [...new Set(now.hosts.map((h) => h.role))].sort()) {
    const [a, b] = [kernels(before, role), kernels(now, role)];
    if (a && b && a !== b) out.push(`${role}: kernel ${a} → ${b}`);
  }
  const names = [...new Set([...Object.keys(before.lab.vars), ...Object.keys(now.lab.vars)])].sort();
  const vars = names
    .filter((n) => before.lab.vars[n] !== now.lab.vars[n])
    .map((n) => `${n} ${before.lab.vars[n] === undefined ? '(none)' : JSON.stringify(before.lab.vars[n])} → ${now.lab.vars[n] === undefined ? '(none)' : JSON.stringify(now.lab.vars[n])}`);
  if (vars.length) out.push(`vars: ${vars.join(', ')}`);
  // The source is the lab file as written, before templating: a --var leaves it alone, an edit does not.
  if (before.lab.source !== now.lab.source) out.push('the lab file was edited');
  if (before.tool.version !== now.tool.version) out.push(`lab ${before.tool.version} → ${now.tool.version}`);
  return out;
}

function compareLimit(metric: string, baseline: number | string | null, observed: number | string | null, tolerance: number): MetricComparison {
  const m = { metric, kind: 'limit' as const, baseline, observed };
  // A lab refused (or stopped) in the baseline and again now: nothing moved.
  if (observed === null && baseline === null) return { ...m, status: 'same', rule: 'not measured in the baseline, nor now' };
  if (observed === null) return { ...m, status: 'regression', rule: 'measured in the baseline, not measured now' };
  if (baseline === null) return { ...m, status: 'improved', rule: 'not measured in the baseline, measured now' };
  if (typeof baseline === 'number' && typeof observed === 'number') {
    const moved = Math.abs(observed - baseline);
    const tol = tolerance === 0 ? 'exact tolerance' : `tolerance ±${formatNumber(tolerance)}`;
    if (moved === 0) return { ...m, status: 'same', rule: `unchanged (${tol})` };
    if (moved <= tolerance) return { ...m, status: 'within', rule: `moved by ${formatNumber(moved)}, within its ${tol}` };
    return { ...m, status: 'regression', rule: `moved by ${formatNumber(observed - baseline)} (${formatNumber(baseline)} → ${formatNumber(observed)}), beyond its ${tol}` };
  }
  if (String(baseline) === String(observed)) return { ...m, status: 'same', rule: 'unchanged' };
  return { ...m, status: 'regression', rule: `changed: ${formatNumber2(baseline)} → ${formatNumber2(observed)}` };
}

function compareMeasured(metric: string, baseline: number | string | null, observed: number | string | null, options: BaselineOptions): MetricComparison {
  const m = { metric, kind: 'measured' as const, baseline, observed };
  if (typeof baseline !== 'number' || typeof observed !== 'number') return { ...compareLimit(metric, baseline, observed, 0), kind: 'measured' };
  const pct = baseline === 0 ? (observed === 0 ? 0 : Infinity) : ((observed - baseline) / Math.abs(baseline)) * 100;
  const rule = `moved ${signed(pct)} (${formatNumber(baseline)} → ${formatNumber(observed)}), drift tolerance ±${options.driftPercent}%`;
  if (pct === 0) return { ...m, status: 'same', rule };
  return { ...m, status: Math.abs(pct) <= options.driftPercent ? 'within' : 'regression', rule };
}

interface Figure {
  value: number;
  /** which way is better */
  better: 'higher' | 'lower';
  /** smallest move worth a verdict, in the figure's unit */
  minMove: number;
}

/** A run's performance figures by name: connect rate and ramp time per connect step, memory per connection per host. */
export function performanceFigures(result: RunResult): Map<string, Figure> {
  const out = new Map<string, Figure>();
  for (const s of result.steps) {
    if (s.kind !== 'connect' || !s.ok) continue;
    if (typeof s.metrics.connectsPerSecond === 'number') out.set(`${s.name}.connectsPerSecond`, { value: s.metrics.connectsPerSecond, better: 'higher', minMove: 0 });
    if (typeof s.metrics.durationMs === 'number') out.set(`${s.name}.durationMs`, { value: s.metrics.durationMs, better: 'lower', minMove: MIN_DURATION_MOVE_MS });
  }
  for (const host of new Set(result.steps.filter((s) => s.kind === 'snapshot').map((s) => s.host))) {
    const fit = fitLine(memoryPoints(result.steps, host).map((p) => ({ x: p.connections, y: p.slabBytes })));
    // A connection costs memory: a slope of none or less is a fit that something else disturbed, not a figure to compare.
    if (fit && fit.slope > 0) out.set(`${host}.slabBytesPerConnection`, { value: Math.round(fit.slope), better: 'lower', minMove: 0 });
  }
  return out;
}

function comparePerformance(metric: string, figure: Figure, earlier: number[], options: BaselineOptions): MetricComparison {
  const m = { metric, kind: 'performance' as const, baseline: earlier.length ? earlier[earlier.length - 1]! : null, observed: figure.value };
  if (!earlier.length) return { ...m, status: 'new', rule: 'not in the baseline' };
  const worst = figure.better === 'higher' ? Math.min(...earlier) : Math.max(...earlier);
  const best = figure.better === 'higher' ? Math.max(...earlier) : Math.min(...earlier);
  const margin = Math.max(Math.abs(worst) * (options.performanceDriftPercent / 100), figure.minMove);
  const worse = figure.better === 'higher' ? figure.value < worst - margin : figure.value > worst + margin;
  const better = figure.better === 'higher' ? figure.value > best + margin : figure.value < best - margin;
  const range = earlier.length > 1 ? `${formatNumber(Math.min(...earlier))}–${formatNumber(Math.max(...earlier))} over the last ${earlier.length} runs` : `${formatNumber(earlier[0]!)} in the baseline`;
  if (earlier.length < MIN_PERFORMANCE_RUNS) {
    const note = worse ? 'worse' : better ? 'better' : 'about the same';
    return { ...m, status: better ? 'improved' : figure.value === m.baseline ? 'same' : 'within', rule: `${formatNumber(figure.value)} against ${range}: ${note}; a regression needs ${MIN_PERFORMANCE_RUNS} earlier runs (noise)` };
  }
  const rule = `${formatNumber(figure.value)} against ${range}, ${figure.better} is better, margin ${formatNumber(Math.round(margin))} (${options.performanceDriftPercent}% of the worst, at least ${formatNumber(figure.minMove)})`;
  if (worse) return { ...m, status: 'regression', rule };
  if (better) return { ...m, status: 'improved', rule };
  return { ...m, status: figure.value === m.baseline ? 'same' : 'within', rule };
}

function signed(pct: number): string {
  if (!Number.isFinite(pct)) return 'from 0';
  const r = Math.round(pct * 10) / 10;
  return `${r > 0 ? '+' : ''}${r}%`;
}

function formatNumber2(v: number | string): string {
  return typeof v === 'number' ? formatNumber(v) : v;
}

/** A one-line summary of a comparison for the terminal and the reports. */
export function describeComparison(c: BaselineComparison): string {
  const moved = c.metrics.filter((m) => m.status === 'regression' || m.status === 'missing');
  const head = `against the baseline of ${c.startedAt} (${c.source}, ${c.runs} earlier run${c.runs === 1 ? '' : 's'})`;
  return moved.length ? `REGRESSION ${head}: ${moved.map((m) => m.metric).join(', ')}` : `no regression ${head}`;
}
