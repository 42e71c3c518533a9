// Renders report.html from templates/report.html.hbs: one self-contained page
// (inline CSS and SVG, no script, no external URL) to publish or print.

import type { RunResult } from '../result.ts';
import { lineChart } from './chart.ts';
import { createHandlebars, loadTemplate, reportView } from './helpers.ts';

type HtmlView = ReturnType<typeof htmlView>;

let template: Promise<(view: HtmlView) => string> | undefined;

export async function renderHtml(result: RunResult): Promise<string> {
  template ??= loadTemplate('report.html.hbs').then((source) => {
    const hb = createHandlebars();
    hb.registerHelper({
      // A CSS class from a fixed set, never from the result's text.
      verdictClass: (verdict: unknown) =>
        verdict === 'pass' || verdict === 'fail' || verdict === 'not-applicable' ? verdict : 'not-measured',
    });
    return hb.compile<HtmlView>(source);
  });
  return (await template)(htmlView(result));
}

function htmlView(result: RunResult) {
  const view = reportView(result);
  return {
    ...view,
    steps: view.steps.map((step) => ({
      ...step,
      // Built and escaped by chart.ts; the template inserts it unescaped.
      chart: step.series?.length
        ? lineChart(step.series, {
            title: `${step.name}: ${step.seriesLabel} over time`,
            yLabel: step.seriesLabel,
            marks: step.marks,
          })
        : '',
    })),
  };
}
