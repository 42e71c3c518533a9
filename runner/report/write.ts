// Writes a run's reports into a directory: result.json (the contract), then
// the charts (one SVG file each), report.md, report.html and junit.xml, each
// rendered from that result alone.

import { rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { InternalError } from '../errors.ts';
import type { RunResult } from '../result.ts';
import { renderCharts, runChartSpecs, type Chart } from './charts.ts';
import { renderHtml } from './html.ts';
import { renderJunit } from './junit.ts';
import { renderMarkdown } from './markdown.ts';
import { makeDirs } from '../files/dirs.ts';

export { readResult, checkResult, loadResultSchema, RESULT_SCHEMA_URL } from './read.ts';
export { renderHtml, renderJunit, renderMarkdown };
export { renderSuiteJunit } from './junit.ts';

export type ReportName = 'markdown' | 'html' | 'junit';
export type Renderer = (result: RunResult, charts: Chart[]) => string | Promise<string>;

/** Paths of the files written, by report. */
export interface ReportPaths {
  json: string;
  markdown: string;
  html: string;
  junit: string;
  /** one SVG per chart, beside report.md (which links them) */
  charts: string[];
}

export const REPORT_FILES: Record<Exclude<keyof ReportPaths, 'charts'>, string> = {
  json: 'result.json',
  markdown: 'report.md',
  html: 'report.html',
  junit: 'junit.xml',
};

const RENDERERS: Record<ReportName, Renderer> = { markdown: renderMarkdown, html: renderHtml, junit: renderJunit };

export interface WriteReportsOptions {
  /** replaces some renderers (tests use it to make one throw) */
  renderers?: Partial<Record<ReportName, Renderer>>;
}

/**
 * Writes result.json and every report into `dir` (created if missing). A
 * renderer that throws does not stop the others: its file is removed, so no
 * stale report from an earlier run stays beside the new result, and one
 * InternalError naming every failed report is thrown after the rest are written.
 */
export async function writeReports(result: RunResult, dir: string, options: WriteReportsOptions = {}): Promise<ReportPaths> {
  const renderers = { ...RENDERERS, ...options.renderers };
  const paths: ReportPaths = {
    json: join(dir, REPORT_FILES.json),
    markdown: join(dir, REPORT_FILES.markdown),
    html: join(dir, REPORT_FILES.html),
    junit: join(dir, REPORT_FILES.junit),
    charts: [],
  };
  await makeDirs(dir);
  // First and outside the renderers' isolation: with result.json on disk, `lab report` can redo the rest.
  await writeFile(paths.json, `${JSON.stringify(result, null, 2)}\n`);

  const failed: Array<{ name: ReportName | 'charts'; error: unknown }> = [];
  let charts: Chart[] = [];
  try {
    charts = await renderCharts(runChartSpecs(result));
    for (const chart of charts) {
      const path = join(dir, `${chart.name}.svg`);
      await writeFile(path, chart.svg);
      paths.charts.push(path);
    }
  } catch (error) {
    failed.push({ name: 'charts', error });
  }
  for (const name of ['markdown', 'html', 'junit'] as const) {
    try {
      await writeFile(paths[name], await renderers[name](result, charts));
    } catch (error) {
      failed.push({ name, error });
      // Best effort: a stale report beside a new result.json would mislead; a failed rm is no worse than no rm.
      await rm(paths[name], { force: true }).catch(() => {});
    }
  }
  if (failed.length) {
    const what = failed.map(({ name, error }) => `${name === 'charts' ? 'charts' : REPORT_FILES[name]}: ${error instanceof Error ? error.message : String(error)}`);
    const kept = failed.filter((f) => f.name !== 'charts').length < 3 ? 'result.json and the other reports were written' : 'result.json was written';
    const err = new InternalError(`Cannot write reports in ${dir}: ${what.join('; ')} (${kept})`);
    err.cause = failed.length === 1 ? failed[0]!.error : new AggregateError(failed.map((f) => f.error));
    throw err;
  }
  return paths;
}
