// Renders junit.xml: one testsuite per lab, one testcase per prediction, so CI
// systems that run labs nightly show a moved kernel limit as a failed test.

import type { Prediction, RunResult } from '../result.ts';
import { escapeXml, formatTolerance, formatValue, stepOf, verdictCounts } from './helpers.ts';

export function renderJunit(result: RunResult): string {
  const suite = result.lab.name;
  const counts = verdictCounts(result);
  // A model that could not apply is no pass: CI must see it fail.
  const failures = counts.fail + counts.notApplicable + (result.restore.ok ? 0 : 1);
  const errors = result.error ? 1 : 0;
  // Every prediction, then `run` and `restore`, so the count of tests stays the same from night to night.
  const tests = counts.total + 2;
  const attrs = `tests="${tests}" failures="${failures}" errors="${errors}" skipped="${counts.notMeasured}" time="${seconds(result.durationMs)}"`;

  const cases = result.predictions.map((p) => {
    const open = `<testcase classname="${x(suite)}" name="${x(p.metric)}" time="${seconds(stepOf(result, p.metric)?.durationMs ?? 0)}"`;
    if (p.verdict === 'pass') return `${open}/>`;
    if (p.verdict === 'not-measured') {
      return `${open}>\n      <skipped message="${x(`not measured: ${result.error ? 'the run stopped early' : 'no observation'}`)}"/>\n    </testcase>`;
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

  const properties = [
    ['lab.file', result.lab.file],
    ['tool', `${result.tool.name} ${result.tool.version} on ${result.tool.runtime}`],
    ...result.hosts.map((h) => [`host.${h.role}.kernel`, h.facts.kernel]),
  ].map(([name, value]) => `      <property name="${x(name!)}" value="${x(value!)}"/>`);

  return [
    '<?xml version="1.0" encoding="UTF-8"?>',
    `<testsuites name="lab" ${attrs}>`,
    `  <testsuite name="${x(suite)}" ${attrs} timestamp="${x(result.startedAt)}">`,
    '    <properties>',
    ...properties,
    '    </properties>',
    ...cases.map((c) => `    ${c}`),
    '  </testsuite>',
    '</testsuites>',
    '',
  ].join('\n');
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
