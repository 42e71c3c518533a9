// The charts: which a run's data supports, what each shows, and that Vega
// renders them to standalone SVG with no URL to fetch (on every runtime).

import { fileURLToPath } from 'node:url';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import type { RunResult, StepObservation } from '../../runner/result.ts';
import { fitLine, historySpec, inlineSvg, memoryPoints, renderChart, runChartSpecs, slabPerConnection } from '../../runner/report/charts.ts';
import { readResult } from '../../runner/report/read.ts';

const load = (name: string) => readResult(fileURLToPath(new URL(`../fixtures/results/${name}.result.json`, import.meta.url)));

/** A snapshot step as the runner records it, holding `conns` connections with `tcpBytes` in the TCP slab. */
function snapshot(name: string, conns: number, slab: Record<string, [number, number]>): StepObservation {
  let slabBytes = 0;
  for (const [n, size] of Object.values(slab)) slabBytes += n * size;
  return {
    name, kind: 'snapshot', host: 'server', startedAt: '2026-01-01T00:00:00Z', durationMs: 5, ok: true,
    metrics: { tcpInuse: conns, slabBytes }, labels: {},
    detail: { slab: Object.fromEntries(Object.entries(slab).map(([k, [activeObjs, objSize]]) => [k, { activeObjs, numObjs: activeObjs, objSize }])) },
  };
}

test('runChartSpecs() draws the ramp with its prediction and first error, and predicted vs observed', async () => {
  const specs = runChartSpecs(await load('pass'));
  assert.equal(specs.map((s) => s.name), ['ramp-ramp', 'predicted-vs-observed']);
  const layers = (specs[0]!.spec as any).layer as any[];
  assert.equal(layers[1].data.values, [{ n: 1000 }]);
  assert.match(JSON.stringify(layers), /first error EADDRNOTAVAIL at 1000/);
  assert.equal((specs[1]!.spec as any).data.values.map((v: any) => [v.metric, v.observed, v.verdict]), [['ramp.established', 100, 'pass']]);
});

test('memory against connections is fitted by least squares; the slab breakdown is per connection', () => {
  assert.equal(fitLine([{ x: 0, y: 100 }, { x: 10, y: 300 }, { x: 20, y: 500 }]), { slope: 20, intercept: 100 });
  assert.is(fitLine([{ x: 5, y: 1 }, { x: 5, y: 2 }]), undefined);
  const steps = [
    snapshot('idle', 10, { TCP: [10, 2432], filp: [500, 256], kmalloc: [9, 8] }),
    snapshot('held', 1010, { TCP: [1010, 2432], filp: [1500, 256], kmalloc: [9, 8], dentry: [1000, 192] }),
  ];
  assert.equal(memoryPoints(steps, 'server').map((p) => p.connections), [10, 1010]);
  assert.equal(slabPerConnection(steps, 'server'), [{ cache: 'TCP', bytes: 2432 }, { cache: 'filp', bytes: 256 }, { cache: 'dentry', bytes: 192 }]);
  const result = { steps, predictions: [] } as unknown as RunResult;
  const specs = runChartSpecs(result);
  assert.equal(specs.map((s) => s.name), ['memory-server', 'slab-server']);
  assert.match(specs[0]!.title, /fitted: 2880 bytes per connection/);
});

test('renderChart() makes a standalone SVG with its title; inlineSvg() one with no URL and no fixed size', async () => {
  const [spec] = runChartSpecs(await load('pass'));
  const chart = await renderChart(spec!);
  assert.match(chart.svg, /^<svg xmlns="http:\/\/www.w3.org\/2000\/svg"[^>]* width="\d+" height="\d+"[^>]* role="img" aria-label="ramp: connections established over time"><title>ramp: connections established over time<\/title>/);
  assert.match(chart.svg, />first error EADDRNOTAVAIL at 1000</);
  const inline = inlineSvg(chart);
  assert.not.match(inline, /https?:|xlink|<script|<image|href=/);
  assert.match(inline, /^<svg class="chart" viewBox="0 0 \d+ \d+"/);
});

test('historySpec() keeps readable axes for a single run', async () => {
  const chart = await renderChart(historySpec('ramp.established', [{ at: '2026-01-01T02:00:00.000Z', value: 1000, predicted: 1000 }])!);
  assert.match(chart.svg, />2026-01-01 02:00</);
  assert.not.match(chart.svg, /\d\.0000/);
});

test('historySpec() draws one line per machine, each in its own colour, with a key naming them', async () => {
  const at = (h: number) => `2026-01-0${h}T02:00:00.000Z`;
  const points = [
    { at: at(1), value: 1000, machine: 'bench-07' },
    { at: at(2), value: 1010, machine: 'ci-runner' },
    { at: at(3), value: 1000, machine: 'bench-07' },
    { at: at(4), value: 1020, machine: 'ci-runner' },
  ];
  const spec = historySpec('ramp.established', points)!;
  const chart = await renderChart(spec);
  // One path per machine's line: two lines, not one zigzag through both.
  const lines = [...chart.svg.matchAll(/<path[^>]*aria-roledescription="line mark"[^>]*>/g)];
  assert.is(lines.length, 2, chart.svg.slice(0, 400));
  assert.match(chart.svg, />bench-07</);
  assert.match(chart.svg, />ci-runner</);
  // One machine needs no key.
  const one = await renderChart(historySpec('ramp.established', points.filter((p) => p.machine === 'bench-07'))!);
  assert.not.match(one.svg, />bench-07</);
});

test.run();
