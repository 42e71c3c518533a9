// lab publish: stable run paths, an index and a page per lab in HTML and
// Markdown, history charts, and publishing into an existing site adds to it.

import { mkdtemp, readFile, readdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import process from 'node:process';
import { writeFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { publish, runPath } from '../../runner/report/publish.ts';
import { readResult } from '../../runner/report/read.ts';

const fixtures = new URL('../fixtures/', import.meta.url);
const result = (name: string) => fileURLToPath(new URL(`results/${name}.result.json`, fixtures));

test('publish() writes each run at a stable path, an index and a page per lab, in HTML and Markdown', async () => {
  const out = await mkdtemp(join(tmpdir(), 'lab-site-'));
  const r = await publish([result('pass'), result('fail'), result('regressed')], out);
  assert.equal({ runs: r.runs, added: r.added, labs: r.labs }, { runs: 3, added: 3, labs: 2 });
  const pass = await readResult(result('pass'));
  assert.is(runPath(pass), 'runs/port-exhaustion/bench-07/2026-11-21T14-30-05Z');
  const runDir = join(out, runPath(pass));
  assert.equal((await readdir(runDir)).sort(), ['junit.xml', 'predicted-vs-observed.svg', 'ramp-ramp.svg', 'report.html', 'report.md', 'result.json']);
  assert.equal((await readdir(join(out, 'port-exhaustion'))).sort(), [
    'history-ramp-connectspersecond.svg', 'history-ramp-durationms.svg', 'history-ramp-established.svg', 'index.html', 'index.md',
  ]);
  const index = await readFile(join(out, 'index.md'), 'utf8');
  const golden = new URL('golden/site.index.md', fixtures);
  if (process.env['UPDATE_GOLDEN'] === '1') await writeFile(golden, index);
  assert.fixture(index, await readFile(golden, 'utf8'), 'index.md differs from golden/site.index.md; if intended, run with UPDATE_GOLDEN=1');
  // The latest port-exhaustion run regressed: the index says which metric.
  assert.match(index, /\| port-exhaustion \| [^|]+ \| ❌ regressed \(ramp.established\) \|/);
  const html = await readFile(join(out, 'index.html'), 'utf8');
  assert.match(html, /<svg class="chart"[^>]*aria-label="ramp.established across runs"/);
  assert.not.match(html, /https?:|<script|<link/);

  // Publishing again, from the site itself plus one run, renders nothing twice.
  const again = await publish([out, result('pass')], out);
  assert.equal({ runs: again.runs, added: again.added }, { runs: 3, added: 0 });

  // Another run of the lab on the machine in the same second: both kept, the second to the millisecond,
  // whether it comes with the first or later into the site.
  const twin = { ...pass, startedAt: pass.startedAt.replace(/(\.\d+)?Z$/, '.745Z'), verdict: 'fail' as const };
  const twinFile = join(await mkdtemp(join(tmpdir(), 'lab-twin-')), 'result.json');
  await writeFile(twinFile, JSON.stringify(twin));
  const later = await publish([out, twinFile], out);
  assert.equal({ runs: later.runs, added: later.added }, { runs: 4, added: 1 });
  assert.equal(JSON.parse(await readFile(join(runDir, 'result.json'), 'utf8')).startedAt, pass.startedAt, 'the first run is not overwritten');
  assert.is(JSON.parse(await readFile(join(`${runDir}-745ms`, 'result.json'), 'utf8')).verdict, 'fail');
  const together = await mkdtemp(join(tmpdir(), 'lab-site-'));
  assert.is((await publish([result('pass'), twinFile], together)).added, 2);
});

test('publish() draws runs of a lab on one machine over other hosts as a line of their own, with a latest verdict of their own', async () => {
  const pass = await readResult(result('pass'));
  // The same lab on the same machine, a day later, over SSH hosts (lab hosts up): its totals are not the namespace run's.
  const overSsh = {
    ...pass,
    startedAt: '2026-11-22T09:00:00.000Z',
    verdict: 'fail' as const,
    hosts: pass.hosts.map((h) => ({ ...h, transport: 'ssh' as const })),
  };
  const file = join(await mkdtemp(join(tmpdir(), 'lab-ssh-')), 'result.json');
  await writeFile(file, JSON.stringify(overSsh));
  const out = await mkdtemp(join(tmpdir(), 'lab-site-'));
  await publish([result('pass'), file], out);
  const index = await readFile(join(out, 'index.md'), 'utf8');
  // Both are the latest of their kind: the namespace run's pass is not hidden by the SSH run's fail.
  assert.match(index, /\| port-exhaustion \| bench-07 \(client: 1 netns, server: 1 netns\) \| ✅ pass \|/);
  assert.match(index, /\| port-exhaustion \| bench-07 \(client: 1 ssh, server: 1 ssh\) \| ❌ fail \|/);
  // Each draws its own line: the chart's key names both.
  const chart = await readFile(join(out, 'port-exhaustion', 'history-ramp-established.svg'), 'utf8');
  assert.match(chart, /client: 1 netns, server: 1 netns/);
  assert.match(chart, /client: 1 ssh, server: 1 ssh/);
  // Runs over one topology keep the machine's plain name (the first test's golden index).
});

test('publish() leaves out a broken result.json found in a folder and says which, so one bad run does not stop the site', async () => {
  const site = await mkdtemp(join(tmpdir(), 'lab-site-'));
  const runs = await mkdtemp(join(tmpdir(), 'lab-runs-'));
  const { mkdir } = await import('node:fs/promises');
  await mkdir(join(runs, 'good'));
  await mkdir(join(runs, 'bad'));
  await writeFile(join(runs, 'good', 'result.json'), await readFile(result('pass'), 'utf8'));
  await writeFile(join(runs, 'bad', 'result.json'), '{"format": "lab-result/1", "lab"');
  const r = await publish([runs], site);
  assert.equal({ runs: r.runs, added: r.added }, { runs: 1, added: 1 });
  assert.equal(r.skipped.map((s) => s.file), [join(runs, 'bad', 'result.json')]);
});

test.run();
