// Inline SVG line charts of a step's progress series ([ms, value]: how the
// connections ramped), for the HTML report: no script, no external resources.

import { escapeXml } from './helpers.ts';

export interface ChartMark {
  value: number;
  label: string;
}

export interface ChartOptions {
  /** the accessible name and caption */
  title: string;
  /** what the values count, printed along the y axis */
  yLabel: string;
  /** horizontal lines, e.g. the predicted ceiling */
  marks?: ChartMark[];
}

const WIDTH = 640;
const HEIGHT = 240;
const PAD = { left: 64, right: 16, top: 16, bottom: 40 };

/** An SVG line chart of `series`, or '' when there is nothing to draw. */
export function lineChart(series: Array<[number, number]>, options: ChartOptions): string {
  if (series.length === 0) return '';
  const marks = options.marks ?? [];
  // reduce, not Math.max(...): a long run's series can exceed the engine's argument limit.
  const xMax = niceCeiling(series.reduce((max, [ms]) => Math.max(max, ms), 0) / 1000);
  const yMax = niceCeiling([...series.map(([, v]) => v), ...marks.map((m) => m.value)].reduce((a, b) => Math.max(a, b), 0));
  const plotW = WIDTH - PAD.left - PAD.right;
  const plotH = HEIGHT - PAD.top - PAD.bottom;
  const x = (seconds: number) => PAD.left + (seconds / xMax) * plotW;
  const y = (value: number) => PAD.top + plotH - (value / yMax) * plotH;

  const parts: string[] = [];
  for (const tick of ticks(yMax)) {
    parts.push(
      `<line class="grid" x1="${PAD.left}" y1="${n(y(tick))}" x2="${WIDTH - PAD.right}" y2="${n(y(tick))}"/>`,
      `<text class="tick" x="${PAD.left - 6}" y="${n(y(tick) + 4)}" text-anchor="end">${label(tick, yMax)}</text>`,
    );
  }
  for (const tick of ticks(xMax)) {
    parts.push(
      `<text class="tick" x="${n(x(tick))}" y="${HEIGHT - PAD.bottom + 16}" text-anchor="middle">${label(tick, xMax)}</text>`,
    );
  }
  parts.push(
    `<line class="axis" x1="${PAD.left}" y1="${PAD.top + plotH}" x2="${WIDTH - PAD.right}" y2="${PAD.top + plotH}"/>`,
    `<line class="axis" x1="${PAD.left}" y1="${PAD.top}" x2="${PAD.left}" y2="${PAD.top + plotH}"/>`,
    `<text class="label" x="${PAD.left + plotW / 2}" y="${HEIGHT - 6}" text-anchor="middle">seconds since the step started</text>`,
    `<text class="label" x="14" y="${PAD.top + plotH / 2}" text-anchor="middle" transform="rotate(-90 14 ${PAD.top + plotH / 2})">${escapeXml(options.yLabel)}</text>`,
  );
  for (const mark of marks) {
    parts.push(
      `<line class="mark" x1="${PAD.left}" y1="${n(y(mark.value))}" x2="${WIDTH - PAD.right}" y2="${n(y(mark.value))}"/>`,
      `<text class="mark-label" x="${WIDTH - PAD.right - 4}" y="${n(y(mark.value) - 5)}" text-anchor="end">${escapeXml(mark.label)}</text>`,
    );
  }
  const points = series.map(([ms, v]) => [n(x(ms / 1000)), n(y(v))] as const);
  // One sample draws no line: show it as a dot.
  parts.push(
    points.length === 1
      ? `<circle class="series" cx="${points[0]![0]}" cy="${points[0]![1]}" r="3"/>`
      : `<polyline class="series" points="${points.map(([px, py]) => `${px},${py}`).join(' ')}"/>`,
  );
  const title = escapeXml(options.title);
  return (
    `<svg class="chart" viewBox="0 0 ${WIDTH} ${HEIGHT}" role="img" aria-label="${title}">` +
    `<title>${title}</title>\n${parts.join('\n')}\n</svg>`
  );
}

/** The smallest 1, 2 or 5 × 10ⁿ step times a whole number that reaches `max`, so ticks land on round values. */
function niceCeiling(max: number): number {
  if (!(max > 0)) return 1;
  const step = niceStep(max);
  return Math.ceil(max / step - 1e-9) * step;
}

function niceStep(max: number): number {
  const raw = max / 5;
  const power = 10 ** Math.floor(Math.log10(raw));
  const m = raw / power;
  return (m <= 1 ? 1 : m <= 2 ? 2 : m <= 5 ? 5 : 10) * power;
}

function ticks(max: number): number[] {
  const step = niceStep(max);
  const out: number[] = [];
  for (let i = 0; i * step <= max + step * 1e-9; i++) out.push(i * step);
  return out;
}

function label(tick: number, max: number): string {
  const decimals = Math.max(0, -Math.floor(Math.log10(niceStep(max))));
  return tick.toFixed(decimals);
}

/** Coordinates with one decimal: enough for the eye, stable for golden files. */
function n(value: number): string {
  return String(Math.round(value * 10) / 10);
}
