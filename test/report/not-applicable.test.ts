// A prediction whose model could not apply is no pass in any report: the
// Markdown and HTML say "not applicable" and count it, JUnit fails the case,
// and result.json with it still reads back.

import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import type { RunResult } from '../../runner/result.ts';
import { readResult, renderHtml, renderJunit, renderMarkdown, writeReports } from '../../runner/report/write.ts';

const PASS = fileURLToPath(new URL('../fixtures/results/pass.result.json', import.meta.url));
const DERIVATION = 'Model "fd-limit" cannot predict "ramp.firstError": without "processes" the agent adds workers until every connection fits';

async function withNotApplicable(): Promise<RunResult> {
  const r = await readResult(PASS);
  r.predictions[1] = { ...r.predictions[1]!, model: 'fd-limit', predicted: null, observed: null, verdict: 'not-applicable', derivation: DERIVATION };
  r.verdict = 'fail';
  return r;
}

test('renderMarkdown() marks a not-applicable prediction as such and counts it', async () => {
  const md = await renderMarkdown(await withNotApplicable());
  assert.match(md, /predictions: 1 pass, 0 fail, 0 not measured, 1 not applicable\./);
  assert.match(md, /\| ❌ \*\*not applicable\*\* \|/);
  assert.not.match(md, /✅ pass/.source + '.*not applicable');
});

test('renderHtml() shows not applicable with the failure colour', async () => {
  const html = await renderHtml(await withNotApplicable());
  assert.match(html, /<td class="verdict not-applicable">not applicable<\/td>/);
  assert.match(html, /1 not applicable\./);
});

test('renderJunit() fails a not-applicable testcase with the reason', async () => {
  const xml = await renderJunit(await withNotApplicable());
  assert.match(xml, /<testsuites name="lab" tests="\d+" failures="1"/);
  assert.match(xml, /<failure message="not applicable: Model &quot;fd-limit&quot; cannot predict/);
});

test('a result.json with a not-applicable prediction reads back', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'lab-na-'));
  const paths = await writeReports(await withNotApplicable(), dir);
  const back = await readResult(paths.json);
  assert.is(back.predictions[1]!.verdict, 'not-applicable');
});

test.run();
