// The reports' charts: which charts a run (or a history of runs) gets and the
// data each shows, as Vega-Lite specs, rendered to SVG by Vega in-process (no
// browser, no network: data is inline). The same SVG goes inline into the HTML
// and into a file beside report.md.

import type { Prediction, RunResult, StepObservation } from '../result.ts';
import { formatNumber } from './helpers.ts';

/** A chart to render: `name` is its file stem (stable across runs), `title` its caption and accessible name. */
export interface ChartSpec {
  name: string;
  title: string;
  spec: Record<string, unknown>;
}

export interface Chart {
  name: string;
  title: string;
  /** the standalone SVG document, as written to `<name>.svg` */
  svg: string;
}

const WIDTH = 560;
const HEIGHT = 220;
const BLUE = '#0969da';
const AMBER = '#9a6700';
const RED = '#cf222e';
const GREEN = '#1a7f37';

const CONFIG = {
  background: 'white',
  font: 'system-ui, -apple-system, Segoe UI, Roboto, sans-serif',
  view: { stroke: null },
  axis: { labelFontSize: 11, titleFontSize: 12, titleFontWeight: 'normal', gridColor: '#eaeef2', domainColor: '#57606a' },
  title: { fontSize: 13, fontWeight: 'bold', anchor: 'start' },
};

function base(title: string, extra: Record<string, unknown>): Record<string, unknown> {
  return { $schema: 'https://vega.github.io/schema/vega-lite/v6.json', description: title, width: WIDTH, height: HEIGHT, config: CONFIG, ...extra };
}

/** A name safe in a file name and stable for a given step or metric name. */
export function slug(text: string): string {
  return text.toLowerCase().replace(/[^a-z0-9]+/g, '-').replace(/^-|-$/g, '') || 'chart';
}

// ── the charts of one run ──────────────────────────────────────────────────

/** Every chart a run's data supports, in report order. */
export function runChartSpecs(result: RunResult): ChartSpec[] {
  const specs: ChartSpec[] = [];
  for (const step of result.steps) {
    const ramp = rampSpec(result, step);
    if (ramp) specs.push(ramp);
  }
  const pvo = predictedVsObservedSpec(result.predictions);
  if (pvo) specs.push(pvo);
  for (const host of new Set(result.steps.filter((s) => s.kind === 'snapshot').map((s) => s.host))) {
    const points = memoryPoints(result.steps, host);
    const memory = memorySpec(host, points);
    if (memory) specs.push(memory);
    const slab = slabSpec(host, result.steps);
    if (slab) specs.push(slab);
  }
  return specs;
}

/** The ramp of a connect (or listen) step: connections over time, the predicted ceiling and the first error marked. */
export function rampSpec(result: RunResult, step: StepObservation): ChartSpec | undefined {
  const series = step.series ?? [];
  if (step.kind !== 'connect' || series.length === 0) return undefined;
  const title = `${step.name}: connections established over time`;
  const predicted = result.predictions.find((p) => p.metric === `${step.name}.established` && typeof p.predicted === 'number');
  const points = series.map(([ms, n]) => ({ s: ms / 1000, n }));
  const layers: Record<string, unknown>[] = [
    {
      data: { values: points },
      mark: points.length > 1 ? { type: 'line', color: BLUE, strokeWidth: 2.5 } : { type: 'point', color: BLUE, filled: true, size: 60 },
      encoding: {
        x: { field: 's', type: 'quantitative', title: 'seconds since the step started' },
        y: { field: 'n', type: 'quantitative', title: 'connections established' },
      },
    },
  ];
  if (predicted) {
    const value = predicted.predicted as number;
    layers.push(
      { data: { values: [{ n: value }] }, mark: { type: 'rule', color: AMBER, strokeDash: [6, 4] }, encoding: { y: { field: 'n', type: 'quantitative' } } },
      {
        data: { values: [{ n: value, label: `predicted ${formatNumber(value)}` }] },
        mark: { type: 'text', color: AMBER, align: 'left', dx: 4, dy: -7, x: 0 },
        encoding: { y: { field: 'n', type: 'quantitative' }, text: { field: 'label' } },
      },
    );
  }
  const firstError = step.labels.firstError;
  if (firstError) {
    // The agent stops at (or soon after) the first refusal: the last sample is where it happened.
    const [ms, n] = series[series.length - 1]!;
    const at = [{ s: ms / 1000, n, label: `first error ${firstError} at ${formatNumber(n)}` }];
    layers.push(
      { data: { values: at }, mark: { type: 'point', shape: 'cross', size: 140, color: RED, strokeWidth: 3 }, encoding: { x: { field: 's', type: 'quantitative' }, y: { field: 'n', type: 'quantitative' } } },
      {
        data: { values: at },
        mark: { type: 'text', color: RED, align: 'right', dx: -8, dy: 14 },
        encoding: { x: { field: 's', type: 'quantitative' }, y: { field: 'n', type: 'quantitative' }, text: { field: 'label' } },
      },
    );
  }
  return { name: `ramp-${slug(step.name)}`, title, spec: base(title, { layer: layers }) };
}

/** Each numeric prediction's observation as a percentage of the predicted value, with its tolerance band. */
export function predictedVsObservedSpec(predictions: Prediction[]): ChartSpec | undefined {
  const rows = predictions
    .filter((p) => typeof p.predicted === 'number' && p.predicted !== 0 && typeof p.observed === 'number')
    .map((p) => {
      const predicted = p.predicted as number;
      const pct = (v: number) => Math.round((v / predicted) * 1000) / 10;
      return {
        metric: p.metric,
        observed: pct(p.observed as number),
        low: pct(predicted - p.tolerance),
        high: pct(predicted + p.tolerance),
        verdict: p.verdict,
        label: `${formatNumber(p.observed as number)} of ${formatNumber(predicted)}`,
      };
    });
  if (!rows.length) return undefined;
  // A domain that always spans 100 %, the band and every point, with room for the labels.
  const values = rows.flatMap((r) => [r.observed, r.low, r.high]).concat(100);
  const span = Math.max(10, Math.max(...values) - Math.min(...values));
  const domain = [Math.floor(Math.min(...values) - span * 0.15), Math.ceil(Math.max(...values) + span * 0.3)];
  const title = 'observed as a percentage of predicted (band: tolerance)';
  const y = { field: 'metric', type: 'nominal', title: null, sort: null };
  return {
    name: 'predicted-vs-observed',
    title,
    spec: base(title, {
      height: Math.max(40, rows.length * 32),
      data: { values: rows },
      layer: [
        { mark: { type: 'rule', strokeWidth: 10, opacity: 0.25, color: AMBER }, encoding: { y, x: { field: 'low', type: 'quantitative' }, x2: { field: 'high' } } },
        { data: { values: [{ x: 100 }] }, mark: { type: 'rule', color: AMBER, strokeDash: [6, 4] }, encoding: { x: { field: 'x', type: 'quantitative' } } },
        {
          mark: { type: 'point', filled: true, size: 90 },
          encoding: {
            y,
            x: { field: 'observed', type: 'quantitative', title: '% of predicted', scale: { domain, nice: false } },
            color: { field: 'verdict', type: 'nominal', scale: { domain: ['pass', 'fail', 'not-measured'], range: [GREEN, RED, '#6e7781'] }, legend: null },
          },
        },
        { mark: { type: 'text', align: 'left', dx: 8, dy: -10, fontSize: 11 }, encoding: { y, x: { field: 'observed', type: 'quantitative' }, text: { field: 'label' } } },
      ],
    }),
  };
}

export interface MemoryPoint {
  step: string;
  connections: number;
  slabBytes: number;
}

/** The snapshots of one host: connections in use against slab memory. */
export function memoryPoints(steps: StepObservation[], host: string): MemoryPoint[] {
  return steps
    .filter((s) => s.kind === 'snapshot' && s.host === host && s.ok)
    // The connections the lab held when the runner counts them, else the sockets in use on the host.
    .map((s) => ({ step: s.name, connections: s.metrics.connections ?? s.metrics.tcpInuse ?? 0, slabBytes: s.metrics.slabBytes ?? 0 }));
}

/** Least-squares slope and intercept of y on x, or undefined for fewer than two distinct x. */
export function fitLine(points: Array<{ x: number; y: number }>): { slope: number; intercept: number } | undefined {
  const n = points.length;
  if (n < 2) return undefined;
  const mx = points.reduce((a, p) => a + p.x, 0) / n;
  const my = points.reduce((a, p) => a + p.y, 0) / n;
  const sxx = points.reduce((a, p) => a + (p.x - mx) ** 2, 0);
  if (sxx === 0) return undefined;
  const slope = points.reduce((a, p) => a + (p.x - mx) * (p.y - my), 0) / sxx;
  return { slope, intercept: my - slope * mx };
}

export function memorySpec(host: string, points: MemoryPoint[]): ChartSpec | undefined {
  const fit = fitLine(points.map((p) => ({ x: p.connections, y: p.slabBytes })));
  if (!fit) return undefined;
  const kib = points.map((p) => ({ ...p, kib: Math.round(p.slabBytes / 1024) }));
  const xs = points.map((p) => p.connections);
  const [x0, x1] = [Math.min(...xs), Math.max(...xs)];
  const line = [x0, x1].map((x) => ({ connections: x, kib: Math.round((fit.slope * x + fit.intercept) / 1024) }));
  const title = `${host}: slab memory against connections (fitted: ${formatNumber(Math.round(fit.slope))} bytes per connection)`;
  const x = { field: 'connections', type: 'quantitative', title: 'connections held' };
  const y = { field: 'kib', type: 'quantitative', title: 'slab memory (KiB)', scale: { zero: false } };
  return {
    name: `memory-${slug(host)}`,
    title,
    spec: base(title, {
      layer: [
        { data: { values: line }, mark: { type: 'line', color: AMBER, strokeDash: [6, 4] }, encoding: { x, y } },
        { data: { values: kib }, mark: { type: 'point', filled: true, size: 70, color: BLUE }, encoding: { x, y } },
        { data: { values: kib }, mark: { type: 'text', align: 'left', dx: 6, dy: -8, fontSize: 11 }, encoding: { x, y, text: { field: 'step' } } },
      ],
    }),
  };
}

interface SlabCache {
  activeObjs: number;
  objSize: number;
}

/** Bytes per connection each slab cache grew by, between the first and last snapshot of a host. */
export function slabPerConnection(steps: StepObservation[], host: string): Array<{ cache: string; bytes: number }> {
  const snaps = steps.filter((s) => s.kind === 'snapshot' && s.host === host && s.ok && s.detail?.slab);
  if (snaps.length < 2) return [];
  const first = snaps[0]!;
  const last = snaps[snaps.length - 1]!;
  const held = (s: StepObservation) => s.metrics.connections ?? s.metrics.tcpInuse ?? 0;
  const connections = held(last) - held(first);
  if (connections <= 0) return [];
  const a = first.detail!.slab as Record<string, SlabCache>;
  const b = last.detail!.slab as Record<string, SlabCache>;
  const rows: Array<{ cache: string; bytes: number }> = [];
  for (const [cache, after] of Object.entries(b)) {
    const before = a[cache] ?? { activeObjs: 0, objSize: after.objSize };
    const bytes = (after.activeObjs * after.objSize - before.activeObjs * before.objSize) / connections;
    if (bytes >= 1) rows.push({ cache, bytes: Math.round(bytes) });
  }
  return rows.sort((x, y) => y.bytes - x.bytes || x.cache.localeCompare(y.cache)).slice(0, 12);
}

export function slabSpec(host: string, steps: StepObservation[]): ChartSpec | undefined {
  const rows = slabPerConnection(steps, host);
  if (!rows.length) return undefined;
  const total = rows.reduce((a, r) => a + r.bytes, 0);
  const title = `${host}: slab bytes per connection by cache (top ${rows.length}: ${formatNumber(total)} B)`;
  const y = { field: 'cache', type: 'nominal', title: null, sort: null };
  return {
    name: `slab-${slug(host)}`,
    title,
    spec: base(title, {
      height: rows.length * 22,
      data: { values: rows },
      layer: [
        // Room past the longest bar for its label.
        { mark: { type: 'bar', color: BLUE }, encoding: { y, x: { field: 'bytes', type: 'quantitative', title: 'bytes per connection', scale: { domainMax: Math.ceil(rows[0]!.bytes * 1.15) } } } },
        { mark: { type: 'text', align: 'left', dx: 4, fontSize: 11 }, encoding: { y, x: { field: 'bytes', type: 'quantitative' }, text: { field: 'bytes' } } },
      ],
    }),
  };
}

// ── history across runs ────────────────────────────────────────────────────

export interface HistoryPoint {
  /** ISO time of the run */
  at: string;
  value: number;
  predicted?: number;
  verdict?: string;
  /** the machine the run ran on (baseline.ts machineOf): one line per machine */
  machine?: string;
}

/** Line colours for machines; the points keep the verdict colours. */
const MACHINE_COLORS = [BLUE, '#8250df', '#1b7c83', '#bf3989', '#953800', '#57606a'];

/**
 * One metric across runs: each machine's observed values as its own line
 * (machines differ, so one line through all of them would zigzag between
 * kernels, not show a trend), points coloured by verdict, and the predicted
 * value per machine.
 */
export function historySpec(metric: string, points: HistoryPoint[], name = `history-${slug(metric)}`): ChartSpec | undefined {
  if (!points.length) return undefined;
  const title = `${metric} across runs`;
  // Explicit domains: one run, or a metric that never moved, must still get readable axes.
  const values = points.flatMap((p) => (p.predicted === undefined ? [p.value] : [p.value, p.predicted]));
  const [lo, hi] = [Math.min(...values), Math.max(...values)];
  const pad = Math.max((hi - lo) * 0.15, Math.abs(hi) * 0.05, 1);
  const times = points.map((p) => Date.parse(p.at));
  const [t0, t1] = [Math.min(...times), Math.max(...times)];
  const tpad = Math.max((t1 - t0) * 0.05, 600_000);
  const x = {
    field: 'at',
    type: 'temporal',
    title: 'run started (UTC)',
    scale: { domain: [t0 - tpad, t1 + tpad], type: 'utc' },
    axis: { format: '%Y-%m-%d %H:%M', tickCount: 4, labelOverlap: true },
  };
  const yScale = { domain: [Math.floor(lo - pad), Math.ceil(hi + pad)], nice: false };
  const rows = points.map((p) => ({ ...p, machine: p.machine ?? 'this machine' }));
  const machines = [...new Set(rows.map((p) => p.machine))];
  const machineColor = {
    field: 'machine',
    type: 'nominal',
    scale: { domain: machines, range: machines.map((_, i) => MACHINE_COLORS[i % MACHINE_COLORS.length]) },
    // One machine needs no key; several are told apart by it.
    legend: machines.length > 1 ? { title: 'machine', orient: 'bottom' } : null,
  };
  const layers: Record<string, unknown>[] = [
    {
      data: { values: rows },
      mark: { type: 'line' },
      encoding: { x, y: { field: 'value', type: 'quantitative', title: metric, scale: yScale, axis: { format: ',~r', tickCount: 5 } }, color: machineColor },
    },
    {
      data: { values: points.map((p) => ({ ...p, verdict: p.verdict ?? 'pass' })) },
      mark: { type: 'point', filled: true, size: 60 },
      encoding: {
        x,
        y: { field: 'value', type: 'quantitative' },
        color: { field: 'verdict', type: 'nominal', scale: { domain: ['pass', 'fail', 'not-measured'], range: [GREEN, RED, '#6e7781'] }, legend: { title: null, orient: 'bottom' } },
      },
    },
  ];
  const predicted = points.filter((p) => p.predicted !== undefined);
  if (predicted.length) {
    const values = rows.filter((p) => p.predicted !== undefined);
    layers.unshift({ data: { values }, mark: { type: 'line', color: AMBER, strokeDash: [6, 4], interpolate: 'step-after' }, encoding: { x, y: { field: 'predicted', type: 'quantitative' }, detail: { field: 'machine', type: 'nominal' } } });
  }
  // Machines and verdicts each keep their own colours and key.
  return { name, title, spec: base(title, { height: 160, layer: layers, resolve: { scale: { color: 'independent' }, legend: { color: 'independent' } } }) };
}

// ── rendering ──────────────────────────────────────────────────────────────

type VegaModules = { vega: typeof import('vega'); compile: typeof import('vega-lite').compile };
let modules: Promise<VegaModules> | undefined;

/** Vega is loaded on first use: commands that draw nothing never pay for it. */
function loadVega(): Promise<VegaModules> {
  modules ??= Promise.all([import('vega'), import('vega-lite')]).then(([vega, vl]) => ({ vega, compile: vl.compile }));
  return modules;
}

/** Renders a spec to a standalone SVG document. */
export async function renderChart(chart: ChartSpec): Promise<Chart> {
  const { vega, compile } = await loadVega();
  // Vega logs warnings to the console; only cli.ts may print, and a bad spec still throws.
  const quiet = vega.logger(vega.None);
  const view = new vega.View(vega.parse(compile(chart.spec as any, { logger: quiet }).spec), { renderer: 'none', logLevel: vega.None });
  try {
    const svg = await view.toSVG();
    return { name: chart.name, title: chart.title, svg: withTitle(svg, chart.title) };
  } finally {
    view.finalize();
  }
}

export function renderCharts(specs: ChartSpec[]): Promise<Chart[]> {
  return Promise.all(specs.map(renderChart));
}

const XML: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };
const esc = (s: string) => s.replace(/[&<>"']/g, (c) => XML[c]!);

/** The SVG with an accessible name and a <title>, so a reader without the image still learns what it shows. */
function withTitle(svg: string, title: string): string {
  return svg.replace(/^<svg([^>]*)>/, (_m, attrs: string) => {
    const clean = attrs.replace(/\s(role|aria-label|aria-roledescription)="[^"]*"/g, '');
    return `<svg${clean} role="img" aria-label="${esc(title)}"><title>${esc(title)}</title>`;
  });
}

/** The SVG to inline in HTML: no fixed size (CSS scales it to the column), one class for styling. */
export function inlineSvg(chart: Chart): string {
  // HTML needs no namespaces on inline SVG, and a page with no URL in it is easy to check.
  return chart.svg.replace(/^<svg([^>]*)>/, (_m, attrs: string) => `<svg class="chart"${attrs.replace(/\s(width|height|class|xmlns|xmlns:xlink|version)="[^"]*"/g, '')}>`);
}
