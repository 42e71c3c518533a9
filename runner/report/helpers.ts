// Formatting shared by the reporters, and the handlebars setup the Markdown and
// HTML reporters share, so a number or a change reads the same in every report.

import { readFile } from 'node:fs/promises';
import Handlebars from 'handlebars';
import type { Change, MetricComparison, Prediction, RunResult, StepObservation, Verdict } from '../result.ts';
import { runChartSpecs, slug } from './charts.ts';

type HandlebarsInstance = ReturnType<typeof Handlebars.create>;

// fs.file-max is LONG_MAX on recent kernels: as a JS number it loses its last digits.
const LONG_MAX_AS_NUMBER = 2 ** 63;

// &#39; rather than &apos;, which HTML 4 lacks: the SVG is inlined in HTML.
const XML_ENTITIES: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };

/** Escapes text for XML (SVG, JUnit) content and attribute values. */
export function escapeXml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => XML_ENTITIES[c]!);
}

/** An integer as the kernel wrote it, or a measurement rounded for reading. */
export function formatNumber(n: number): string {
  if (n >= LONG_MAX_AS_NUMBER) return '9223372036854775807 (LONG_MAX)';
  if (Number.isInteger(n)) return String(n);
  return String(Math.abs(n) < 1 ? Number(n.toPrecision(3)) : Number(n.toFixed(2)));
}

export function formatValue(value: number | string | null | undefined): string {
  if (value === null || value === undefined) return '—';
  return typeof value === 'number' ? formatNumber(value) : value;
}

/** The tolerance as a reader needs it: labels are compared exactly and have none. */
export function formatTolerance(p: Prediction): string {
  if (typeof p.predicted === 'string' || typeof p.observed === 'string') return '—';
  return p.tolerance === 0 ? 'exact' : `±${formatNumber(p.tolerance)}`;
}

export function formatDuration(ms: number): string {
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(2)} s`;
  const seconds = Math.round(ms / 1000);
  return `${Math.floor(seconds / 60)} min ${seconds % 60} s`;
}

export function formatKiB(kib: number): string {
  const [size, unit] = kib >= 1024 ** 2 ? [kib / 1024 ** 2, 'GiB'] : kib >= 1024 ? [kib / 1024, 'MiB'] : [kib, 'KiB'];
  return unit === 'KiB' ? `${kib} KiB` : `${kib} KiB (${size.toFixed(1)} ${unit})`;
}

export function formatVerdict(verdict: Verdict): string {
  return verdict === 'not-measured' ? 'not measured' : verdict === 'not-applicable' ? 'not applicable' : verdict;
}

export function formatChange(c: Change): string {
  switch (c.kind) {
    case 'sysctl': return `sysctl ${c.name}: "${c.old}" → "${c.new}" (${c.scope})`;
    case 'address': return `address ${c.address} added on ${c.device}`;
    case 'rlimit': return `rlimit ${c.name} soft/hard: ${c.old[0]}/${c.old[1]} → ${c.new[0]}/${c.new[1]}`;
    case 'nftables': return `nftables table ${c.table} added (connection tracking on)`;
  }
}

/** The step a prediction's metric belongs to ("<step>.<metric>"). */
export function stepOf(result: RunResult, metric: string) {
  const name = metric.slice(0, metric.lastIndexOf('.'));
  return result.steps.find((s) => s.name === name);
}

/**
 * A run the hosts could not hold (models/scale.ts): refused before any change,
 * so it measured nothing and claimed nothing. A suite shows it as its own
 * verdict, REFUSED; JUnit as errors, with the arithmetic as the message.
 */
export function isRefusal(result: RunResult): boolean {
  return result.error?.code === 'CAPACITY';
}

/**
 * The exit code of the run that wrote this result, the one `lab run` gave and
 * `lab report` gives again: 3 for a restore left incomplete, whatever else
 * happened; then what stopped the run (130 interrupted; 2 a sysctl the host
 * lacks, the lab's mistake found before any change, as invalid input; 3 any
 * other, a refusal for capacity among them); then 1 for a failed prediction and
 * 4 for a regression against the baseline.
 */
export function runExitCode(result: RunResult): number {
  if (!result.restore.ok) return 3;
  if (result.error) return result.error.code === 'INTERRUPTED' ? 130 : result.error.code === 'NO_SUCH_SYSCTL' ? 2 : 3;
  if (result.verdict !== 'pass') return 1;
  return result.baseline?.regressions ? 4 : 0;
}

/** A refusal in one line: its arithmetic's conclusion ("need … > MemAvailable …") when it has one. */
export function refusalReason(result: RunResult): string {
  const lines = (result.error?.message ?? '').split('\n').map((l) => l.trim());
  return lines.find((l) => l.startsWith('need ')) ?? lines[0] ?? '';
}

export function verdictCounts(result: RunResult) {
  const count = (v: Verdict) => result.predictions.filter((p) => p.verdict === v).length;
  return {
    total: result.predictions.length,
    pass: count('pass'),
    fail: count('fail'),
    notMeasured: count('not-measured'),
    notApplicable: count('not-applicable'),
  };
}

/** What a step's series counts, by step kind; the agent streams these as progress. */
const SERIES_METRIC: Record<string, string> = { connect: 'established', listen: 'accepted' };

/**
 * The RunResult with what the templates would otherwise compute: counts,
 * per-step measurements and series summaries, per-host notes. Both Markdown
 * and HTML render this one view, so they cannot disagree.
 */

/** The slab caches an idle TCP connection takes objects from; result.json keeps them all. */
const CONNECTION_SLABS = ['TCP', 'tw_sock_TCP', 'request_sock_TCP', 'sock_inode_cache', 'filp', 'dentry', 'eventpoll_epi', 'eventpoll_pwq', 'skbuff_head_cache'];

/** A prediction's metric, with the host it is for, or "total" for a role's sum (roles with several hosts). */
export function predictionLabel(p: Prediction): string {
  if (p.host !== undefined) return `${p.metric} @${p.host}`;
  if (p.role !== undefined) return `${p.metric} (${p.role} total)`;
  return p.metric;
}

/**
 * For each role with several hosts: one row per host (its address, port
 * range and, per metric, predicted / observed and the verdict) and the total.
 */
export function roleTables(result: RunResult) {
  const roles = [...new Set(result.hosts.filter((h) => h.name !== undefined).map((h) => h.role))];
  return roles
    .map((role) => {
      const hosts = result.hosts.filter((h) => h.role === role);
      const metrics = [...new Set(result.predictions.filter((p) => p.role === role).map((p) => p.metric))];
      const cell = (p: Prediction | undefined) =>
        p ? { text: `${formatValue(p.predicted)} / ${formatValue(p.observed)}`, verdict: p.verdict } : { text: '—', verdict: 'not-measured' as Verdict };
      return {
        role,
        count: hosts.length,
        metrics,
        rows: hosts.map((h) => ({
          host: h.name ?? h.role,
          address: h.address,
          portRange: formatPortRange(h.facts.portRange),
          cells: metrics.map((m) => cell(result.predictions.find((p) => p.metric === m && p.host === (h.name ?? h.role)))),
        })),
        total: metrics.map((m) => cell(result.predictions.find((p) => p.metric === m && p.role === role && p.host === undefined))),
      };
    })
    .filter((t) => t.count > 1);
}

export function reportView(result: RunResult) {
  const charts = runChartSpecs(result).map(({ name, title }) => ({ name, title, file: `${name}.svg` }));
  const stepChart = (step: string) => charts.find((c) => c.name === `ramp-${slug(step)}`);
  return {
    ...result,
    counts: verdictCounts(result),
    refused: isRefusal(result),
    // The charts not drawn under a step: predicted vs observed, memory, slab.
    charts: charts.filter((c) => !c.name.startsWith('ramp-')),
    baseline: result.baseline && {
      ...result.baseline,
      regressed: result.baseline.regressions > 0,
      metrics: result.baseline.metrics.map((m) => ({ ...m, flagged: isRegression(m) })),
    },
    predictions: result.predictions.map((p) => ({ ...p, label: predictionLabel(p) })),
    roles: roleTables(result),
    hosts: result.hosts.map((host) => ({
      ...host,
      title: host.name !== undefined ? `${host.role}: ${host.name}` : host.role,
      note: host.transport === 'netns' ? NETNS_NOTE : undefined,
      portRange: formatPortRange(host.facts.portRange),
      slab: Object.entries(host.facts.slabObjectSize)
        .filter(([cache]) => CONNECTION_SLABS.includes(cache))
        .map(([cache, bytes]) => `${cache} ${bytes} B`)
        .join(', '),
    })),
    steps: result.steps.map((step) => {
      const seriesMetric = SERIES_METRIC[step.kind];
      const series = step.series ?? [];
      const last = series[series.length - 1];
      return {
        ...step,
        chart: stepChart(step.name),
        measurements: [
          ...Object.entries(step.metrics).map(([name, value]) => ({ name, value: formatNumber(value) })),
          ...Object.entries(step.labels).map(([name, value]) => ({ name, value })),
        ],
        errnos: (step.errors ?? []).map((e) => `${e.errno} × ${e.count}`).join(', '),
        // A memory fit's bytes per connection, cache by cache: what it attributed and what it left as other.
        attribution: step.kind === 'fit' ? fitAttribution(step.detail) : [],
        detailJson: step.detail && Object.keys(step.detail).length ? JSON.stringify(readableStepDetail(step)) : undefined,
        seriesLabel: seriesMetric ?? 'value',
        progress: last
          ? `${series.length} sample${series.length === 1 ? '' : 's'}, ${formatNumber(series[0]![1])} → ${formatNumber(last[1])}` +
            `${seriesMetric ? ` ${seriesMetric}` : ''} over ${formatDuration(last[0])}`
          : undefined,
      };
    }),
    stages: Object.entries(result.stages).map(([name, ms]) => ({ name, took: formatDuration(ms) })),
    controllerRss: result.controller?.peakRssKiB ? formatKiB(result.controller.peakRssKiB) : undefined,
    capacity: result.capacity && {
      ...result.capacity,
      machines: result.capacity.machines.map((m) => ({ ...m, title: m.roles.join(' + ') + (m.roles.length > 1 ? ' (one kernel)' : '') })),
    },
  };
}

/** Above this many entries, a detail's table or list (a snapshot's slabinfo or meminfo, two million's 62 pairs) is left to result.json. */
const DETAIL_ENTRIES_SHOWN = 40;

/** A step's detail as a report shows it; a role with several hosts keeps one detail per host, each made readable. */
function readableStepDetail(step: StepObservation): Record<string, unknown> {
  if (!step.hosts) return readableDetail(step.detail!);
  return Object.fromEntries(Object.entries(step.detail!).map(([host, d]) => [host, d && typeof d === 'object' && !Array.isArray(d) ? readableDetail(d as Record<string, unknown>) : d]));
}

/**
 * A step's detail as a report shows it: a long table (every slab cache, every
 * meminfo line of a snapshot) becomes a pointer to result.json, which keeps it
 * whole, so a published report stays a page to read.
 */
export function readableDetail(detail: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(detail)) {
    const n = Array.isArray(value) ? value.length : value && typeof value === 'object' ? Object.keys(value).length : 0;
    out[key] = n > DETAIL_ENTRIES_SHOWN ? `${n} entries, in result.json` : value;
  }
  return out;
}

export type ReportView = ReturnType<typeof reportView>;

/** A compared metric that counts against the run: it moved too far, or vanished. */
export function isRegression(m: MetricComparison): boolean {
  return m.status === 'regression' || m.status === 'missing';
}

interface CacheRow {
  cache: string;
  objects: number;
  bytes: number;
}

function fitAttribution(detail: Record<string, unknown> | undefined): Array<{ cache: string; objects: string; bytes: string; share: string }> {
  const rows = (list: unknown, share: string) =>
    (Array.isArray(list) ? (list as CacheRow[]) : []).map((r) => ({ cache: r.cache, objects: formatNumber(r.objects), bytes: formatNumber(r.bytes), share }));
  return [...rows(detail?.attributed, 'attributed'), ...rows(detail?.other, 'other')];
}

export function formatPortRange([low, high]: [number, number]): string {
  return `${low}–${high} (${high - low + 1} ports)`;
}

/** Why a local host's report needs care: not everything it changed or measured was its own. */
export const NETNS_NOTE =
  'A local namespace host: net.* sysctls are per namespace, but fs.* sysctls and slab memory are global, ' +
  'so fs.* changes applied to the whole machine and memory figures include everything else running on it.';

/**
 * An isolated handlebars instance with the shared formatting helpers, so the
 * reporters never touch (or are touched by) helpers registered globally.
 */
export function createHandlebars(): HandlebarsInstance {
  const hb = Handlebars.create();
  hb.registerHelper({
    num: (n: number) => formatNumber(n),
    fmt: (v: number | string | null) => formatValue(v),
    tolerance: (p: Prediction) => formatTolerance(p),
    duration: (ms: number) => formatDuration(ms),
    kib: (kib: number) => formatKiB(kib),
    verdict: (v: Verdict) => formatVerdict(v),
    change: (c: Change) => formatChange(c),
    eq: (a: unknown, b: unknown) => a === b,
    inc: (n: number) => n + 1,
  });
  return hb;
}

/** Reads a template from templates/, found from this module so any working directory works. */
export async function loadTemplate(name: string): Promise<string> {
  return readFile(new URL(`../../templates/${name}`, import.meta.url), 'utf8');
}
