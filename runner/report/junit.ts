// Renders junit.xml: one testsuite per lab, one testcase per prediction, so CI
// systems that run labs nightly show a moved kernel limit as a failed test. A
// suite's runs go into one file.

import type { Prediction, RunResult } from '../result.ts';
import { escapeXml, formatTolerance, formatValue, isRefusal, predictionLabel, refusalReason, stepOf, verdictCounts } from './helpers.ts';

/** junit.xml of one run: a testsuites element holding its one testsuite. */
export function renderJunit(result: RunResult): string {
  return renderSuiteJunit([result]);
}

/** junit.xml of a suite: one testsuite per lab, one testcase per prediction. */
export function renderSuiteJunit(results: RunResult[]): string {
  const suites = results.map(testsuite);
  const sum = (k: 'tests' | 'failures' | 'errors' | 'skipped') => suites.reduce((a, s) => a + s.counts[k], 0);
  const time = results.reduce((a, r) => a + r.durationMs, 0);
  return [
    '<?xml version="1.0" encoding="UTF-8"?>',
    `<testsuites name="lab" tests="${sum('tests')}" failures="${sum('failures')}" errors="${sum('errors')}" skipped="${sum('skipped')}" time="${seconds(time)}">`,
    ...suites.map((s) => s.xml),
    '</testsuites>',
    '',
  ].join('\n');
}

function testsuite(result: RunResult): { xml: string; counts: { tests: number; failures: number; errors: number; skipped: number } } {
  if (isRefusal(result)) return refusedSuite(result);
  const suite = result.lab.name;
  const counts = verdictCounts(result);
  const regressions = result.baseline?.regressions ?? 0;
  // A model that could not apply is no pass: CI must see it fail.
  const failures = counts.fail + counts.notApplicable + (result.restore.ok ? 0 : 1) + (regressions ? 1 : 0);
  // A prediction that could not be measured is an error, never a skip: CI must not read it as fine.
  const errors = (result.error ? 1 : 0) + counts.notMeasured;
  const skipped = 0;
  // Every prediction, then `run`, `restore` (and `baseline`), so the count of tests stays the same from night to night.
  const tests = counts.total + 2 + (result.baseline ? 1 : 0);
  const attrs = `tests="${tests}" failures="${failures}" errors="${errors}" skipped="${skipped}" time="${seconds(result.durationMs)}"`;

  const cases = result.predictions.map((p) => {
    const open = `<testcase classname="${x(suite)}" name="${x(predictionLabel(p))}" time="${seconds(stepOf(result, p.metric)?.durationMs ?? 0)}"`;
    if (p.verdict === 'pass') return `${open}/>`;
    if (p.verdict === 'not-measured') {
      const why = `not measured: ${result.error ? `the run stopped early (${result.error.code})` : 'no observation'}`;
      return `${open}>\n      <error message="${x(why)}" type="not-measured">${x(failureText(p))}</error>\n    </testcase>`;
    }
    if (p.verdict === 'not-applicable') {
      return `${open}>\n      <failure message="${x(`not applicable: ${p.derivation}`)}" type="not-applicable">${x(failureText(p))}</failure>\n    </testcase>`;
    }
    const message = `predicted ${formatValue(p.predicted)}, observed ${formatValue(p.observed)} (tolerance ${formatTolerance(p)})`;
    return `${open}>\n      <failure message="${x(message)}" type="fail">${x(failureText(p))}</failure>\n    </testcase>`;
  });

  const run = `<testcase classname="${x(suite)}" name="run" time="${seconds(result.durationMs)}"`;
  cases.push(
    result.error
      ? `${run}>\n      <error message="${x(result.error.message)}" type="${x(result.error.code)}">${x(`${result.error.code}: ${result.error.message}`)}</error>\n    </testcase>`
      : `${run}/>`,
  );
  const restore = `<testcase classname="${x(suite)}" name="restore" time="${seconds(result.stages['restore'] ?? 0)}"`;
  cases.push(
    result.restore.ok
      ? `${restore}/>`
      : `${restore}>\n      <failure message="${x('restore left changes on a host')}" type="restore">${x(result.restore.problems.join('\n'))}</failure>\n    </testcase>`,
  );
  if (result.baseline) {
    const b = result.baseline;
    const open = `<testcase classname="${x(suite)}" name="baseline" time="0.000"`;
    const moved = b.metrics.filter((m) => m.status === 'regression' || m.status === 'missing');
    cases.push(
      moved.length
        ? `${open}>\n      <failure message="${x(`regression against the baseline of ${b.startedAt}: ${moved.map((m) => m.metric).join(', ')}`)}" type="regression">${x(moved.map((m) => `${m.metric}: ${m.rule}`).join('\n'))}</failure>\n    </testcase>`
        : `${open}/>`,
    );
  }

  const properties = [
    ['lab.file', result.lab.file],
    ['tool', `${result.tool.name} ${result.tool.version} on ${result.tool.runtime}`],
    ...result.hosts.map((h) => [`host.${h.role}.kernel`, h.facts.kernel]),
    ...(result.baseline ? [['baseline', `${result.baseline.source} (${result.baseline.startedAt})`]] : []),
  ].map(([name, value]) => `      <property name="${x(name!)}" value="${x(value!)}"/>`);

  const xml = [
    `  <testsuite name="${x(suite)}" ${attrs} timestamp="${x(result.startedAt)}">`,
    '    <properties>',
    ...properties,
    '    </properties>',
    ...cases.map((c) => `    ${c}`),
    '  </testsuite>',
  ].join('\n');
  return { xml, counts: { tests, failures, errors, skipped } };
}

/**
 * A lab the hosts could not hold: nothing ran, so nothing passed or failed.
 * Its testcases are all there (the count stays the same from night to
 * night), each an error with the refusal's arithmetic, as every prediction
 * that could not be measured is: CI shows red with the reason, never a pass
 * or a skip that a moved limit (a kernel whose sockets cost more) could hide
 * behind.
 */
function refusedSuite(result: RunResult): { xml: string; counts: { tests: number; failures: number; errors: number; skipped: number } } {
  const suite = result.lab.name;
  const reason = `refused: the hosts cannot hold this lab: ${refusalReason(result)} [${result.error!.code}]`;
  const refused = (name: string) =>
    `<testcase classname="${x(suite)}" name="${x(name)}" time="0.000">\n      <error message="${x(reason)}" type="${x(result.error!.code)}">${x(result.error!.message)}</error>\n    </testcase>`;
  const cases = [...result.predictions.map((p) => refused(predictionLabel(p))), refused('run')];
  const restore = `<testcase classname="${x(suite)}" name="restore" time="${seconds(result.stages['restore'] ?? 0)}"`;
  const restored = result.restore.ok;
  cases.push(restored ? `${restore}/>` : `${restore}>\n      <failure message="restore left changes on a host" type="restore">${x(result.restore.problems.join('\n'))}</failure>\n    </testcase>`);
  const counts = { tests: cases.length, failures: restored ? 0 : 1, errors: cases.length - 1, skipped: 0 };
  const xml = [
    `  <testsuite name="${x(suite)}" tests="${counts.tests}" failures="${counts.failures}" errors="${counts.errors}" skipped="0" time="${seconds(result.durationMs)}" timestamp="${x(result.startedAt)}">`,
    '    <properties>',
    `      <property name="lab.file" value="${x(result.lab.file)}"/>`,
    `      <property name="refused" value="${x(result.error!.code)}"/>`,
    '    </properties>',
    ...cases.map((c) => `    ${c}`),
    '  </testsuite>',
  ].join('\n');
  return { xml, counts };
}

function failureText(p: Prediction): string {
  const lines = [
    `predicted: ${formatValue(p.predicted)} (${p.model})`,
    `observed: ${formatValue(p.observed)}`,
    `tolerance: ${formatTolerance(p)}`,
    `derivation: ${p.derivation}`,
  ];
  if (p.explanation) lines.push(`explanation: ${p.explanation}`);
  return lines.join('\n');
}

/** Escaped text, without the control characters XML 1.0 cannot hold at all (an agent's stderr may carry them). */
function x(text: string): string {
  return escapeXml(text.replace(/[\u0000-\u0008\u000b\u000c\u000e-\u001f\ufffe\uffff]/g, '\ufffd'));
}

function seconds(ms: number): string {
  return (ms / 1000).toFixed(3);
}
