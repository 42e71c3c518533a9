// The HTML report and the published site in headless chromium: they lay out
// on a desktop and a phone without sideways scrolling, print, show their
// charts, run no script and send no request anywhere.

import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { publish, runPath } from '../../runner/report/publish.ts';
import { readResult } from '../../runner/report/read.ts';
import { writeReports } from '../../runner/report/write.ts';
import { Browser, LAYOUT_FACTS, type LayoutFacts } from '../browser.ts';

const fixture = (name: string) => fileURLToPath(new URL(`../fixtures/results/${name}.result.json`, import.meta.url));

let browser: Browser;
let dir: string;
test.before(async () => {
  browser = await Browser.launch();
  dir = await mkdtemp(join(tmpdir(), 'lab-browser-reports-'));
});
test.after(async () => {
  await browser?.close();
});

/** Opens `file` at `width`, checks what every page must hold, returns its layout facts. */
async function check(file: string, width: number): Promise<LayoutFacts> {
  const page = await browser.open(file, { width, height: 900 });
  try {
    assert.equal(page.blockedRequests, [], `${file} at ${width} px asked for resources`);
    assert.equal(page.consoleErrors, [], `${file} at ${width} px logged errors`);
    assert.is(page.scripts, 0, `${file} ran a script`);
    const facts = await page.evaluate<LayoutFacts>(LAYOUT_FACTS);
    assert.not.ok(facts.overflowsX, `${file} scrolls sideways at ${width} px: ${facts.tooWide.join(', ')}`);
    for (const c of facts.charts) assert.ok(c.width > 200 && c.height > 20, `chart "${c.label}" is drawn at ${c.width}×${c.height}`);
    assert.ok(facts.charts.every((c) => c.width <= width), 'every chart fits the page');
    return facts;
  } finally {
    await page.close();
  }
}

test('report.html lays out on a desktop and a phone, with its charts, requesting nothing', async () => {
  for (const name of ['pass', 'regressed', 'fail']) {
    const paths = await writeReports(await readResult(fixture(name)), join(dir, name));
    for (const width of [1280, 390]) {
      const facts = await check(paths.html, width);
      if (name !== 'fail') {
        assert.equal(facts.charts.map((c) => c.label), ['observed as a percentage of predicted (band: tolerance)', 'ramp: connections established over time']);
      }
      if (name === 'regressed') assert.ok(facts.headings.includes('Against the baseline 1 regressed'), facts.headings.join(' | '));
    }
  }
});

test('report.html runs none of the markup a result carries, in text or in chart titles', async () => {
  const r = await readResult(fixture('regressed'));
  const evil = `<img src="http://198.18.0.9/x" onerror="alert(1)"><script>alert(2)</script>`;
  r.lab.name = `pe ${evil}`;
  r.lab.description = evil;
  r.steps[1]!.name = `ramp ${evil}`;
  r.predictions[0]!.metric = `ramp.established ${evil}`;
  r.predictions[0]!.derivation = evil;
  r.baseline!.metrics[0]!.rule = evil;
  r.baseline!.source = evil;
  const paths = await writeReports(r, join(dir, 'hostile'));
  const page = await browser.open(paths.html);
  assert.equal(page.dialogs, []);
  assert.is(page.scripts, 0);
  assert.equal(page.blockedRequests, []);
  const text = await page.evaluate<string>('document.body.innerText');
  assert.ok(text.includes('<script>alert(2)</script>'), 'the markup shows as text');
  await page.close();
});

test('report.html prints', async () => {
  const paths = await writeReports(await readResult(fixture('pass')), join(dir, 'print'));
  const page = await browser.open(paths.html, { media: 'print' });
  const pdf = await page.pdf();
  assert.ok(pdf.length > 10_000, `PDF of ${pdf.length} bytes`);
  assert.is(Buffer.from(pdf.slice(0, 5)).toString(), '%PDF-');
  await page.close();
});

test('the published index and lab pages lay out with their history charts, requesting nothing', async () => {
  const out = join(dir, 'site');
  await publish([fixture('pass'), fixture('regressed'), fixture('fail')], out);
  for (const width of [1280, 390]) {
    const index = await check(join(out, 'index.html'), width);
    assert.ok(index.charts.length >= 6, `${index.charts.length} charts`);
    assert.ok(index.charts.some((c) => c.label === 'ramp.established across runs'));
    const pass = await readResult(fixture('pass'));
    // Links go to the stable run paths, and to each lab's page.
    assert.ok(index.links.includes(`${runPath(await readResult(fixture('regressed')))}/report.html`), index.links.join('\n'));
    assert.ok(index.links.includes('port-exhaustion/index.html'));
    const lab = await check(join(out, 'port-exhaustion', 'index.html'), width);
    assert.ok(lab.links.includes(`../${runPath(pass)}/report.html`), lab.links.join('\n'));
  }
});

test.run();
