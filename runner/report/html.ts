// Renders report.html from templates/report.html.hbs: one self-contained page
// (inline CSS and SVG, no script, no external URL) to publish or print.

import type { RunResult } from '../result.ts';
import { inlineSvg, renderCharts, runChartSpecs, type Chart } from './charts.ts';
import { createHandlebars, loadTemplate, reportView } from './helpers.ts';

type HtmlView = ReturnType<typeof htmlView>;

let template: Promise<(view: HtmlView) => string> | undefined;

/** `charts`: the run's charts when already rendered (writeReports renders them once for every report). */
export async function renderHtml(result: RunResult, charts?: Chart[]): Promise<string> {
  template ??= loadTemplate('report.html.hbs').then((source) => {
    const hb = createHandlebars();
    hb.registerHelper({
      // A CSS class from a fixed set, never from the result's text.
      verdictClass: (verdict: unknown) =>
        verdict === 'pass' || verdict === 'fail' || verdict === 'not-applicable' ? verdict : 'not-measured',
      statusClass: (status: unknown) => (status === 'regression' || status === 'missing' ? 'fail' : status === 'improved' ? 'pass' : 'same'),
    });
    return hb.compile<HtmlView>(source);
  });
  charts ??= await renderCharts(runChartSpecs(result));
  return (await template)(htmlView(result, charts));
}

function htmlView(result: RunResult, charts: Chart[]) {
  const view = reportView(result);
  // Rendered by Vega from the run's numbers, with the run's text escaped as SVG text; inserted unescaped.
  const svg = (name: string | undefined) => {
    const chart = charts.find((c) => c.name === name);
    return chart ? inlineSvg(chart) : '';
  };
  return {
    ...view,
    charts: view.charts.map((c) => ({ ...c, svg: svg(c.name) })),
    steps: view.steps.map((step) => ({ ...step, chartSvg: svg(step.chart?.name) })),
  };
}
