// writeReports() and the properties every report must keep whatever the golden
// files say: self-contained HTML, well-formed JUnit, escaping, isolation of a failing reporter.

import { mkdtemp, readFile, readdir, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { InternalError } from '../../runner/errors.ts';
import type { RunResult } from '../../runner/result.ts';
import { readResult, renderHtml, renderJunit, renderMarkdown, writeReports } from '../../runner/report/write.ts';
import { renderSuiteJunit } from '../../runner/report/junit.ts';

const results = new URL('../fixtures/results/', import.meta.url);
const load = (name: string) => readResult(fileURLToPath(new URL(`${name}.result.json`, results)));

/** A result whose every text field carries markup, to prove each report escapes it. */
async function hostile(): Promise<RunResult> {
  const r = await load('fail');
  const evil = `<script>alert("x")</script> & ']]>`;
  r.lab.name = `fd-cap ${evil}`;
  r.lab.description = evil;
  r.steps[1]!.name = `ramp ${evil}`;
  r.predictions[0]!.metric = `ramp.established ${evil}`;
  r.predictions[0]!.derivation = evil;
  r.error = { code: 'X<&>', message: `${evil}\u0007` };
  return r;
}

/**
 * A small XML well-formedness check: one root, tags nested and closed, attributes
 * quoted, and every `&` an entity; enough to catch an escaping bug.
 */
function assertWellFormed(xml: string): void {
  const entity = /&(?:amp|lt|gt|quot|apos|#\d+|#x[0-9a-fA-F]+);/g;
  const checkText = (text: string, where: string) => {
    const bare = text.replace(entity, '');
    assert.not.ok(/[<&]/.test(bare), `bare < or & in ${where}: ${JSON.stringify(text)}`);
    assert.not.ok(/[\u0000-\u0008\u000b\u000c\u000e-\u001f]/.test(text), `control character in ${where}`);
  };
  const body = xml.replace(/^<\?xml version="1\.0" encoding="UTF-8"\?>\n/, '');
  assert.ok(body !== xml, 'XML declaration first');
  const stack: string[] = [];
  let roots = 0;
  const token = /<(\/?)([A-Za-z_][\w.-]*)((?:\s+[A-Za-z_][\w.-]*="[^"]*")*)\s*(\/?)>|([^<]+)|(<)/gy;
  for (let m = token.exec(body); m; m = token.exec(body)) {
    const [, close, name, attrs, selfClose, text, stray] = m;
    assert.is(stray, undefined, `stray "<" at ${m.index}: ${body.slice(m.index, m.index + 40)}`);
    if (text !== undefined) {
      if (!stack.length) assert.ok(/^\s*$/.test(text), 'text outside the root element');
      checkText(text, 'text');
    } else if (close) {
      assert.is(stack.pop(), name, `</${name}> closes the open element`);
    } else {
      for (const [, value] of attrs!.matchAll(/="([^"]*)"/g)) checkText(value!, `an attribute of <${name}>`);
      if (!stack.length) roots++;
      if (!selfClose) stack.push(name!);
    }
  }
  assert.equal(stack, [], 'every element is closed');
  assert.is(roots, 1, 'one root element');
}

test('renderHtml() refers to nothing outside the file', async () => {
  for (const name of ['pass', 'fail']) {
    const html = await renderHtml(await load(name));
    assert.not.match(html, /https?:\/\//i);
    assert.not.match(html, /<script|<link|\ssrc=|@import|url\(/i);
    assert.match(html, /<svg class="chart"/);
  }
});

test('renderHtml() escapes text from the result, in the page and in the SVG', async () => {
  const html = await renderHtml(await hostile());
  assert.not.match(html, /<script/i);
  assert.match(html, /<title>ramp &lt;script&gt;alert\(&quot;x&quot;\)&lt;\/script&gt; &amp; &#39;\]\]&gt;: connections established over time<\/title>/);
});

test('a snapshot\'s slabinfo and meminfo stay in result.json: the reports point there instead of printing every cache', async () => {
  const r = await load('pass');
  const held = r.steps.find((s) => s.kind === 'snapshot')!;
  const slab = Object.fromEntries(Array.from({ length: 300 }, (_, i) => [`cache_${i}`, { activeObjs: i, numObjs: i, objSize: 64 }]));
  held.detail = { ...held.detail, slab, pairs: Array.from({ length: 62 }, (_, i) => ({ source: `198.18.1.${i}` })), sockstat: { TCP: { inuse: 5 } } };
  const md = await renderMarkdown(r);
  assert.not.match(md, 'cache_299');
  assert.match(md, '"slab":"300 entries, in result.json"');
  assert.match(md, '"pairs":"62 entries, in result.json"');
  assert.match(md, '"sockstat":{"TCP":{"inuse":5}}');
  assert.not.match(await renderHtml(r), 'cache_299');
  // A role with several hosts keeps a detail per host: each is made readable, the hosts all named.
  const fleet = await load('fleet');
  const ramp = fleet.steps.find((s) => s.hosts)!;
  ramp.detail = Object.fromEntries(Object.keys(ramp.hosts!).map((h) => [h, { slab, first: h }]));
  const fmd = await renderMarkdown(fleet);
  assert.not.match(fmd, 'cache_299');
  for (const h of Object.keys(ramp.hosts!)) assert.match(fmd, `"${h}":{"slab":"300 entries, in result.json","first":"${h}"}`);
});

test('renderJunit() writes well-formed XML', async () => {
  for (const name of ['pass', 'fail']) assertWellFormed(renderJunit(await load(name)));
  const hostileXml = renderJunit(await hostile());
  assertWellFormed(hostileXml);
  assert.match(hostileXml, /<testcase classname="fd-cap &lt;script&gt;alert\(&quot;x&quot;\)&lt;\/script&gt; &amp; &#39;\]\]&gt;" name="run"/);
});

test('renderJunit() has one testcase per prediction, plus run and restore; not measured is an error, not a skip', async () => {
  const xml = renderJunit(await load('fail'));
  const names = [...xml.matchAll(/<testcase classname="fd-cap" name="([^"]+)"/g)].map((m) => m[1]);
  assert.equal(names, ['ramp.established', 'ramp.firstError', 'held.slabBytes', 'run', 'restore']);
  assert.match(xml, /<testsuite name="fd-cap" tests="5" failures="2" errors="2" skipped="0"/);
  assert.match(xml, /<testcase classname="fd-cap" name="held.slabBytes" time="[\d.]+">\n\s*<error message="not measured: the run stopped early \(AGENT_TIMEOUT\)" type="not-measured">/);
  assert.not.match(xml, /<skipped/);
});

test('renderSuiteJunit() holds one testsuite per lab and totals them', async () => {
  const xml = renderSuiteJunit([await load('pass'), await load('fail')]);
  assertWellFormed(xml);
  assert.equal([...xml.matchAll(/<testsuite name="([^"]+)"/g)].map((m) => m[1]), ['port-exhaustion', 'fd-cap']);
  assert.match(xml, /<testsuites name="lab" tests="9" failures="2" errors="2" skipped="0" time="[\d.]+">/);
});

/** A run the hosts could not hold: refused before any change, as models/scale.ts words it. */
async function refused(): Promise<RunResult> {
  const r = await load('pass');
  r.lab.name = 'two-million';
  r.verdict = 'fail';
  r.steps = [];
  for (const p of r.predictions) Object.assign(p, { observed: null, verdict: 'not-measured' });
  r.error = {
    code: 'CAPACITY',
    message: 'The hosts cannot hold this lab: not started, nothing was changed\n  client + server (one kernel):\n    need 21.77 GiB + 3.16 GiB + 1.18 GiB = 26.10 GiB > MemAvailable 18.28 GiB\n  Lower the count, or free memory on the host (MemAvailable)',
  };
  return r;
}

test('renderSuiteJunit() shows a refused lab as errors with the arithmetic, every testcase kept, none passed or skipped', async () => {
  const xml = renderSuiteJunit([await load('pass'), await refused()]);
  assertWellFormed(xml);
  assert.match(xml, /<testsuite name="two-million" tests="4" failures="0" errors="3" skipped="0" /);
  const reason = 'refused: the hosts cannot hold this lab: need 21.77 GiB + 3.16 GiB + 1.18 GiB = 26.10 GiB &gt; MemAvailable 18.28 GiB [CAPACITY]';
  const errors = [...xml.matchAll(/<testcase classname="two-million" name="([^"]+)" time="0.000">\n\s*<error message="([^"]+)" type="CAPACITY"/g)];
  assert.equal(errors.map((m) => m[1]), ['ramp.established', 'ramp.firstError', 'run']);
  assert.ok(errors.every((m) => m[2] === reason), errors.map((m) => m[2]).join('\n'));
  assert.not.match(xml, /<skipped/);
  assert.match(xml, /<testcase classname="two-million" name="restore" time="[\d.]+"\/>/);
  assert.match(xml, /<testsuites name="lab" tests="8" failures="0" errors="3" skipped="0" /);
});

test('a refused run\'s reports say refused, not fail', async () => {
  const out = await mkdtemp(join(tmpdir(), 'lab-refused-'));
  await writeReports(await refused(), out);
  const md = await readFile(join(out, 'report.md'), 'utf8');
  assert.match(md, /^# two-million: ⏸ refused \(the hosts cannot hold it\)\n/);
  assert.match(md, '> **Not started: the hosts cannot hold this lab.** `CAPACITY`');
  assert.match(await readFile(join(out, 'report.html'), 'utf8'), '<h1>two-million <span class="badge not-measured">refused</span>');
});

test('renderJunit() fails a "baseline" testcase naming each regressed metric', async () => {
  const r = await load('pass');
  r.baseline = {
    source: 'reports/',
    startedAt: '2026-01-01T00:00:00.000Z',
    runs: 1,
    regressions: 1,
    metrics: [{ metric: 'ramp.established', kind: 'limit', baseline: 1000, observed: 500, status: 'regression', rule: 'moved by -500 (1000 → 500), beyond its exact' }],
  };
  const xml = renderJunit(r);
  assertWellFormed(xml);
  assert.match(xml, /<testcase classname="port-exhaustion" name="baseline" time="0.000">\n\s*<failure message="regression against the baseline of 2026-01-01T00:00:00.000Z: ramp.established" type="regression">ramp.established: moved by -500/);
  assert.match(xml, /tests="5" failures="1" errors="0"/);
});

test('writeReports() writes result.json and the three reports', async () => {
  const dir = join(await mkdtemp(join(tmpdir(), 'lab-reports-')), 'new', 'dir');
  const result = await load('pass');
  const paths = await writeReports(result, dir);
  assert.equal(paths, {
    json: join(dir, 'result.json'),
    markdown: join(dir, 'report.md'),
    html: join(dir, 'report.html'),
    junit: join(dir, 'junit.xml'),
    charts: [join(dir, 'ramp-ramp.svg'), join(dir, 'predicted-vs-observed.svg')],
  });
  assert.match(await readFile(paths.charts[0]!, 'utf8'), /^<svg [^>]*role="img" aria-label="ramp: connections established over time"><title>/);
  assert.is(await readFile(paths.json, 'utf8'), `${JSON.stringify(result, null, 2)}\n`);
  assert.equal(await readResult(paths.json), JSON.parse(JSON.stringify(result)));
  const md = await readFile(paths.markdown, 'utf8');
  assert.match(md, /^# port-exhaustion: ✅ pass\n/);
  assert.match(md, /\n!\[ramp: connections established over time\]\(ramp-ramp.svg\)\n/);
});

test('writeReports() writes the other reports when one renderer throws, then names it', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'lab-reports-'));
  await writeFile(join(dir, 'report.html'), 'stale report from an earlier run');
  let error: unknown;
  try {
    await writeReports(await load('pass'), dir, {
      renderers: {
        html: () => {
          throw new Error('template exploded');
        },
      },
    });
  } catch (e) {
    error = e;
  }
  assert.instance(error, InternalError);
  assert.is(
    (error as Error).message,
    `Cannot write reports in ${dir}: report.html: template exploded (result.json and the other reports were written)`,
  );
  assert.is(((error as Error).cause as Error).message, 'template exploded');
  assert.equal((await readdir(dir)).sort(), ['junit.xml', 'predicted-vs-observed.svg', 'ramp-ramp.svg', 'report.md', 'result.json']);
});

test.run();
