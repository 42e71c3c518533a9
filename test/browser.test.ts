// test/browser.ts against pages built to trip it: it must see every request a
// page attempts (and block it), console errors, dialogs and scripts, and read layout.

import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { Browser, LAYOUT_FACTS, type LayoutFacts } from './browser.ts';

let dir: string;
let browser: Browser;
test.before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'lab-browser-'));
  browser = await Browser.launch();
});
test.after(async () => {
  await browser?.close();
  await rm(dir, { recursive: true, force: true });
});

test('open() blocks and reports every request that leaves the page', async () => {
  const file = join(dir, 'leaky.html');
  await writeFile(
    file,
    `<!DOCTYPE html><title>leaky</title><link rel="stylesheet" href="https://cdn.example.com/x.css">` +
      `<img src="http://198.18.0.1/pixel.png"><img src="data:image/gif;base64,R0lGODlhAQABAAAAACw=">` +
      `<style>body { background: url("file:///etc/hostname") }</style><p>hi</p>`,
  );
  const page = await browser.open(file);
  assert.equal([...page.blockedRequests].sort(), ['file:///etc/hostname', 'http://198.18.0.1/pixel.png', 'https://cdn.example.com/x.css']);
  assert.is(page.scripts, 0);
  await page.close();
});

test('open() reports scripts, console errors, exceptions and dialogs', async () => {
  const file = join(dir, 'noisy.html');
  await writeFile(
    file,
    `<!DOCTYPE html><title>noisy</title><script>console.error("bad " + 1); alert("xss");</script>` +
      `<img src="data:," onerror="throw new Error('boom')">`,
  );
  const page = await browser.open(file);
  assert.ok(page.scripts >= 1, `scripts ${page.scripts}`);
  assert.equal(page.dialogs, ['xss']);
  assert.ok(page.consoleErrors.includes('bad 1'), page.consoleErrors.join('\n'));
  assert.ok(page.consoleErrors.some((e) => e.includes('boom')), page.consoleErrors.join('\n'));
  await page.close();
});

test('LAYOUT_FACTS tells a page that fits a phone from one that scrolls sideways', async () => {
  const file = join(dir, 'wide.html');
  await writeFile(
    file,
    `<!DOCTYPE html><meta name="viewport" content="width=device-width"><title>w</title><style>body{margin:0}</style><h1>Wide</h1>` +
      `<svg viewBox="0 0 10 10" style="width:100%" aria-label="a chart"><rect width="5" height="5"/></svg>` +
      `<div id="wide" style="width:900px">x</div><a href="runs/1.html">run</a>`,
  );
  const page = await browser.open(file, { width: 390, height: 800 });
  const facts = await page.evaluate<LayoutFacts>(LAYOUT_FACTS);
  assert.is(facts.title, 'w');
  assert.ok(facts.overflowsX);
  assert.equal(facts.tooWide, ['div#wide']);
  assert.equal(facts.charts, [{ label: 'a chart', width: 390, height: 390 }]);
  assert.equal(facts.headings, ['Wide']);
  assert.equal(facts.links, ['runs/1.html']);
  const pdf = await page.pdf();
  assert.is(Buffer.from(pdf.slice(0, 5)).toString(), '%PDF-');
  await page.close();
});

test.run();
