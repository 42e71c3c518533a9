// compareWithBaseline() and readBaseline(): which moves are regressions, by
// the rule of each kind of metric, and which baselines are refused.

import { mkdtemp, mkdir, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { LabError } from '../../runner/errors.ts';
import type { RunResult } from '../../runner/result.ts';
import { compareWithBaseline, describeComparison, machineOf, noBaselineReason, readBaseline, skippedWarning, topologyOf } from '../../runner/report/baseline.ts';
import { readResult } from '../../runner/report/read.ts';

const fixture = (name: string) => fileURLToPath(new URL(`../fixtures/results/${name}.result.json`, import.meta.url));
const load = (name: string) => readResult(fixture(name));

/** `base` as a run started `minutes` later, with `edit` applied. */
function later(base: RunResult, minutes: number, edit: (r: RunResult) => void = () => {}): RunResult {
  const r = structuredClone(base);
  delete r.baseline;
  r.startedAt = new Date(Date.parse(base.startedAt) + minutes * 60_000).toISOString();
  edit(r);
  return r;
}

const ramp = (r: RunResult) => r.steps.find((s) => s.name === 'ramp')!;

test('compareWithBaseline() finds no regression in an unchanged run', async () => {
  const base = await load('pass');
  const c = compareWithBaseline(later(base, 60), [base], 'reports/')!;
  assert.is(c.regressions, 0);
  assert.equal(c.metrics.map((m) => [m.metric, m.kind, m.status]), [
    ['ramp.established', 'limit', 'same'],
    ['ramp.firstError', 'limit', 'same'],
    ['ramp.connectsPerSecond', 'performance', 'same'],
    ['ramp.durationMs', 'performance', 'same'],
  ]);
  assert.is(describeComparison(c), `no regression against the baseline of ${base.startedAt} (reports/, 1 earlier run)`);
});

test('compareWithBaseline() compares only runs on hosts like these: a total over two SSH clients is no baseline for one namespace', async () => {
  const base = await load('pass');
  assert.is(topologyOf(base), 'client: 1 netns, server: 1 netns');
  const fleet = later(base, -60, (r) => {
    const client = r.hosts.find((h) => h.role === 'client')!;
    r.hosts = [...r.hosts.filter((h) => h.role !== 'client'), { ...client, name: 'c1', transport: 'ssh' }, { ...client, name: 'c2', transport: 'ssh' }];
  });
  assert.is(topologyOf(fleet), 'client: 2 ssh, server: 1 netns');
  assert.is(compareWithBaseline(base, [fleet], 'reports/'), undefined);
  assert.ok(compareWithBaseline(base, [fleet, later(base, -30)], 'reports/'));
});

test('compareWithBaseline() flags a limit that moved beyond its own tolerance, and a changed errno', async () => {
  const base = await load('pass');
  const now = later(base, 60, (r) => {
    r.predictions[0]!.observed = 500;
    r.predictions[1]!.observed = 'EMFILE';
  });
  const c = compareWithBaseline(now, [base], 'reports/')!;
  assert.is(c.regressions, 2);
  assert.equal(c.metrics[0], { metric: 'ramp.established', kind: 'limit', baseline: 1000, observed: 500, status: 'regression', rule: 'moved by -500 (1000 → 500), beyond its exact tolerance' });
  assert.equal(c.metrics[1]!.rule, 'changed: EADDRNOTAVAIL → EMFILE');
  assert.match(describeComparison(c), /^REGRESSION against .*: ramp.established, ramp.firstError$/);

  const within = later(base, 60, (r) => {
    r.predictions[0]!.tolerance = 5;
    r.predictions[0]!.observed = 996;
  });
  // A tolerance makes it a measured quantity: judged by the drift tolerance (10 %), not its own.
  assert.equal(compareWithBaseline(within, [base], 'b')!.metrics[0]!.status, 'within');
});

test('compareWithBaseline() judges measured quantities by the drift tolerance', async () => {
  const base = later(await load('pass'), 0, (r) => (r.predictions[0]!.tolerance = 100));
  const moved = (observed: number, driftPercent = 10) =>
    compareWithBaseline(later(base, 60, (r) => (r.predictions[0]!.observed = observed)), [base], 'b', { driftPercent, performanceDriftPercent: 25, history: 5 })!.metrics[0]!;
  assert.is(moved(1090).status, 'within');
  assert.is(moved(1150).status, 'regression');
  assert.is(moved(1150).rule, 'moved +15% (1000 → 1150), drift tolerance ±10%');
  assert.is(moved(1150, 20).status, 'within');
});

test('compareWithBaseline() calls a performance regression only beyond the spread of 3 or more earlier runs', async () => {
  const base = await load('pass');
  const rate = (r: RunResult, v: number) => (ramp(r).metrics.connectsPerSecond = v);
  const slow = (history: RunResult[]) => compareWithBaseline(later(base, 600, (r) => rate(r, 300)), history, 'b')!.metrics.find((m) => m.metric === 'ramp.connectsPerSecond')!;
  // One earlier run says nothing about noise: reported, not a regression.
  const one = slow([later(base, 0, (r) => rate(r, 1000))]);
  assert.is(one.status, 'within');
  assert.match(one.rule, /worse; a regression needs 3 earlier runs/);
  const three = [800, 1000, 1200].map((v, i) => later(base, i, (r) => rate(r, v)));
  const s = slow(three);
  assert.is(s.status, 'regression');
  assert.is(s.rule, '300 against 800–1200 over the last 3 runs, higher is better, margin 200 (25% of the worst, at least 0)');
  // Inside the spread: noise.
  const noisy = compareWithBaseline(later(base, 600, (r) => rate(r, 700)), three, 'b')!.metrics.find((m) => m.metric === 'ramp.connectsPerSecond')!;
  assert.is(noisy.status, 'within');
  // A short ramp that took a little longer is below what can be timed.
  const dur = compareWithBaseline(later(base, 600, (r) => (ramp(r).metrics.durationMs = 2200)), three, 'b')!.metrics.find((m) => m.metric === 'ramp.durationMs')!;
  assert.is(dur.status, 'within');
});

test('machineOf() is the name --machine gave, else the hosts\' hostnames; runs of the same machine are the baseline first', async () => {
  const base = await load('pass');
  assert.is(machineOf(base), 'bench-07');
  assert.is(machineOf(await load('fleet')), 'bench-fleet');
  // Two runners of one CI job, the later on a new hostname: named alike, they compare with each other.
  const runnerA = later(base, 0, (r) => {
    r.machine = 'ci';
    r.hosts = r.hosts.map((h) => ({ ...h, facts: { ...h.facts, hostname: 'fv-az101-1' } }));
  });
  const otherMachine = later(base, 30, (r) => (r.predictions[0]!.observed = 500));
  const now = later(runnerA, 60, (r) => (r.hosts = r.hosts.map((h) => ({ ...h, facts: { ...h.facts, hostname: 'fv-az202-7' } }))));
  assert.is(compareWithBaseline(now, [runnerA, otherMachine], 'site/')!.startedAt, runnerA.startedAt);
});

test('compareWithBaseline() uses the latest earlier run of the same lab, never the run itself or a later one', async () => {
  const base = await load('pass');
  const other = later(await load('fail'), 30);
  const old = later(base, -60, (r) => (r.predictions[0]!.observed = 1));
  const future = later(base, 120, (r) => (r.predictions[0]!.observed = 2));
  const now = later(base, 60);
  const c = compareWithBaseline(now, [old, base, other, now, future], 'b')!;
  assert.is(c.startedAt, base.startedAt);
  assert.is(c.runs, 2);
  assert.is(compareWithBaseline(now, [other], 'b'), undefined);
});

test('compareWithBaseline() compares with the latest good run: a regression stays one night after night, a failed night blames nobody', async () => {
  const good = await load('pass');
  // Night 2: the limit moved (1000 → 500) and was flagged.
  const night2 = later(good, 60, (r) => (r.predictions[0]!.observed = 500));
  night2.baseline = compareWithBaseline(night2, [good], 'site/')!;
  assert.is(night2.baseline.regressions, 1);
  // Night 3, still 500: compared with night 1, not with the regressed night 2, so still a regression.
  const night3 = later(good, 120, (r) => (r.predictions[0]!.observed = 500));
  const c3 = compareWithBaseline(night3, [good, night2], 'site/')!;
  assert.is(c3.startedAt, good.startedAt);
  assert.is(c3.regressions, 1);
  // Fixed on night 4 (1000 again): no regression, where the regressed night would have called the fix one.
  assert.is(compareWithBaseline(later(good, 180), [good, night2], 'site/')!.regressions, 0);
  // A disturbed night (a failed prediction) is no baseline either: the right value after it is not blamed.
  const disturbed = later(good, 240, (r) => {
    r.verdict = 'fail';
    r.predictions[0]!.observed = 17;
  });
  const stopped = later(good, 250, (r) => (r.error = { code: 'TIMEOUT', message: 'Lab timeout' }));
  const c5 = compareWithBaseline(later(good, 300), [good, night2, disturbed, stopped], 'site/')!;
  assert.is(c5.startedAt, good.startedAt);
  assert.is(c5.runs, 1);
  assert.is(c5.regressions, 0);
  // Only bad runs: nothing compared, and the terminal says why.
  const now = later(good, 360);
  assert.is(compareWithBaseline(now, [night2, disturbed], 'site/'), undefined);
  assert.is(
    noBaselineReason(now, [night2, disturbed]),
    'none of the 2 earlier runs of "port-exhaustion" on hosts like these (client: 1 netns, server: 1 netns) passed without a regression; nothing compared (the next run compares with this one, if it passes)',
  );
  assert.is(noBaselineReason(now, []), 'no earlier run of "port-exhaustion" on hosts like these (client: 1 netns, server: 1 netns) in it; nothing compared');
});

test('compareWithBaseline(): a machine first compared with another machine\'s run is its own baseline the next night', async () => {
  const onA = await load('pass');
  const onB = (minutes: number) => later(onA, minutes, (r) => {
    r.machine = 'b';
    r.predictions[0]!.observed = 500;
  });
  // B's first night has only A's run to go by: the machines differ, so it regresses, and says so.
  const night1 = onB(60);
  night1.baseline = compareWithBaseline(night1, [onA], 'site/')!;
  assert.is(night1.baseline.regressions, 1);
  assert.is(night1.baseline.machine, 'bench-07');
  assert.ok(night1.baseline.changed!.includes('machine: bench-07 → b'), night1.baseline.changed!.join('; '));
  // The next night compares with B's own first night, not with A's again, and passes.
  const c = compareWithBaseline(onB(120), [onA, night1], 'site/')!;
  assert.is(c.startedAt, night1.startedAt);
  assert.is(c.regressions, 0);
});

test('compareWithBaseline() says what changed since the baseline run: a role\'s kernel, the lab\'s variables, the lab file, lab\'s version', async () => {
  const base = await load('pass');
  assert.is(compareWithBaseline(later(base, 60), [base], 'b')!.changed, undefined);
  const now = later(base, 60, (r) => {
    r.hosts = r.hosts.map((h) => (h.role === 'client' ? { ...h, facts: { ...h.facts, kernel: '6.19.0' } } : h));
    r.lab.vars = { ...r.lab.vars, high: '40499', extra: '1' };
    r.tool = { ...r.tool, version: '0.2.0' };
  });
  assert.equal(compareWithBaseline(now, [base], 'b')!.changed, [
    `client: kernel ${base.hosts[0]!.facts.kernel} → 6.19.0`,
    'vars: extra (none) → "1", high "40999" → "40499"',
    `lab ${base.tool.version} → 0.2.0`,
  ]);
  const edited = later(base, 60, (r) => (r.lab.source = r.lab.source.replace('rate: 500', 'rate: 400')));
  assert.equal(compareWithBaseline(edited, [base], 'b')!.changed, ['the lab file was edited']);
});

test('readBaseline() reads a result.json, or every run in a folder, oldest first', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'lab-baseline-'));
  const base = await load('pass');
  for (const [name, minutes] of [['b', 0], ['a', 60]] as const) {
    await mkdir(join(dir, name, 'run'), { recursive: true });
    await writeFile(join(dir, name, 'run', 'result.json'), JSON.stringify(later(base, minutes)));
  }
  const { results, skipped } = await readBaseline(dir);
  assert.equal(results.map((r) => r.startedAt), [later(base, 0).startedAt, later(base, 60).startedAt]);
  assert.equal(skipped, []);
  assert.is((await readBaseline(fixture('pass'))).results.length, 1);
  // One truncated run in the folder (a full disk, a killed job) is left out and named, not a stop for every later night.
  await mkdir(join(dir, 'c', 'run'), { recursive: true });
  const broken = join(dir, 'c', 'run', 'result.json');
  await writeFile(broken, JSON.stringify(later(base, 90)).slice(0, 200));
  const again = await readBaseline(dir);
  assert.is(again.results.length, 2);
  assert.equal(again.skipped.map((s) => s.file), [broken]);
  assert.match(skippedWarning(again.skipped[0]!), new RegExp(`^warning: left out ${broken}: 1:201: not a lab result: invalid JSON: .* \\[RESULT_INVALID\\]; repair or remove it$`));
  // A folder of broken runs only is no baseline: refused, naming them, rather than comparing with nothing.
  const onlyBroken = await mkdtemp(join(tmpdir(), 'lab-baseline-'));
  await writeFile(join(onlyBroken, 'result.json'), '{');
  assert.match(await readBaseline(onlyBroken).then(() => 'read', (e: LabError) => `${e.code}: ${e.message}`), /^BASELINE_EMPTY: The baseline ".*" holds no readable result\.json: .*result\.json:1:2: not a lab result/);
  // Named on its own, it is still refused.
  assert.is(await readBaseline(broken).then(() => 'read', (e: LabError) => e.code), 'RESULT_INVALID');
});

test('readBaseline() refuses a missing path, an empty folder and a newer format, before any host is touched', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'lab-baseline-'));
  const fail = async (path: string) => {
    try {
      await readBaseline(path);
    } catch (e) {
      assert.instance(e, LabError);
      return e as LabError;
    }
    throw new Error('expected a LabError');
  };
  assert.is((await fail(join(dir, 'nope'))).message, `Cannot read the baseline "${join(dir, 'nope')}": no such file or folder`);
  assert.is((await fail(dir)).code, 'BASELINE_EMPTY');
  await writeFile(join(dir, 'result.json'), JSON.stringify({ ...(await load('pass')), format: 'lab-result/2' }));
  assert.is((await fail(dir)).code, 'RESULT_NEWER');
});

test('the regressed fixture is what compareWithBaseline() says of it (golden JSON)', async () => {
  const regressed = await load('regressed');
  const again = compareWithBaseline(regressed, [await load('pass')], regressed.baseline!.source);
  assert.equal(again, regressed.baseline);
});

test.run();
