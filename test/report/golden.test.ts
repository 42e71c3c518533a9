// Golden files for each reporter: a change in any report's text shows up as a
// diff here. Run with UPDATE_GOLDEN=1 to rewrite them after a deliberate change.

import { readFile, writeFile } from 'node:fs/promises';
import process from 'node:process';
import { fileURLToPath } from 'node:url';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { readResult, renderHtml, renderJunit, renderMarkdown } from '../../runner/report/write.ts';

const fixtures = new URL('../fixtures/', import.meta.url);
const update = process.env['UPDATE_GOLDEN'] === '1';

async function expectGolden(name: string, actual: string): Promise<void> {
  const url = new URL(`golden/${name}`, fixtures);
  if (update) {
    await writeFile(url, actual);
    return;
  }
  let expected: string;
  try {
    expected = await readFile(url, 'utf8');
  } catch {
    throw new Error(`${fileURLToPath(url)}: missing golden file; run with UPDATE_GOLDEN=1 to write it`);
  }
  assert.fixture(actual, expected, `${name} differs from its golden file; if intended, run with UPDATE_GOLDEN=1`);
}

for (const name of ['pass', 'fail', 'regressed']) {
  const load = () => readResult(fileURLToPath(new URL(`results/${name}.result.json`, fixtures)));

  test(`renderMarkdown() matches golden/${name}.report.md`, async () => {
    await expectGolden(`${name}.report.md`, await renderMarkdown(await load()));
  });

  test(`renderHtml() matches golden/${name}.report.html`, async () => {
    await expectGolden(`${name}.report.html`, await renderHtml(await load()));
  });

  test(`renderJunit() matches golden/${name}.junit.xml`, async () => {
    await expectGolden(`${name}.junit.xml`, renderJunit(await load()));
  });
}

test.run();
