// Suites and baselines through the real CLI on real namespaces: every shipped
// lab in one run on kept hosts with one summary and one JUnit file, nothing
// left behind; a second run against it passes; a narrower port range is a
// regression (exit 4) that the terminal, report and JUnit name.

import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { cpSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { RunResult } from '../../runner/result.ts';
import { agentPids, disturbedByOthers, machineState, ROOT, runCli } from '../helpers.ts';

const out = mkdtempSync(join(tmpdir(), 'lab-suite-test-'));
test.after(() => rmSync(out, { recursive: true, force: true }));

// The million-connection labs run at their shipped size only in the bench (labs.test.ts runs them
// smaller with --var): the suite here is every other shipped lab, as a folder of links to labs/.
const shipped = readdirSync(join(ROOT, 'labs')).filter((f) => f.endsWith('.yaml') && !f.includes('million')).sort();
const labsDir = join(out, 'labs');
mkdirSync(labsDir);
for (const f of shipped) symlinkSync(join(ROOT, 'labs', f), join(labsDir, f));
const first = join(out, 'first');
const read = (dir: string, lab: string) => JSON.parse(readFileSync(join(dir, lab, 'result.json'), 'utf8')) as RunResult;

test('lab run DIR runs every shipped lab on kept hosts, with one summary and one JUnit file, leaving nothing', async () => {
  const before = await machineState();
  const junit = join(out, 'suite.xml');
  const r = await runCli(['run', labsDir, '--out', first, '--junit', junit], { timeoutMs: 900_000 });
  const names = shipped.map((f) => f.replace(/\.yaml$/, ''));
  const results = names.map((n) => read(first, n));
  // A memory lab on a machine where other runs come and go may fail (see disturbedByOthers); nothing else may.
  const failed = results.filter((x) => x.verdict !== 'pass');
  assert.equal(failed.filter((x) => !disturbedByOthers(x)).map((x) => x.lab.name), [], r.stderr + r.stdout);
  assert.is(r.code, failed.length ? 1 : 0, r.stderr + r.stdout);
  // The summary: one row per lab, in order.
  const summary = r.stdout.slice(r.stdout.indexOf('\nsuite: '));
  assert.match(summary, new RegExp(`^\\nsuite: ${names.length} labs, ${names.length - failed.length} passed, ${failed.length} did not, in [\\d.]+ s\\n  lab +verdict +passed +failed +duration\\n`));
  const rows = summary.split('\n').slice(4).filter(Boolean);
  assert.equal(rows.map((l) => l.trim().split(/\s+/).slice(0, 2)), results.map((x) => [x.lab.name, x.verdict.toUpperCase()]));
  // Hosts made once: labs with the same roles reuse the first lab's namespaces.
  const ids = new Set(results.map((x) => x.hosts[0]!.target.split('-')[1]));
  const sameRoles = results.filter((x) => x.hosts.map((h) => h.role).join() === results[0]!.hosts.map((h) => h.role).join());
  assert.ok(sameRoles.length > 1, 'labs sharing roles');
  assert.is(new Set(sameRoles.map((x) => x.hosts[0]!.target)).size, 1, 'one set of namespaces for the labs with the same roles');
  for (const x of sameRoles.slice(1)) assert.ok(x.stages['hosts']! < 50, `${x.lab.name} made hosts in ${x.stages['hosts']} ms`);
  // One JUnit file: a testsuite per lab, a testcase per prediction.
  const xml = readFileSync(junit, 'utf8');
  assert.equal([...xml.matchAll(/<testsuite name="([^"]+)"/g)].map((m) => m[1]), names);
  for (const x of results) {
    for (const p of x.predictions) assert.match(xml, `<testcase classname="${x.lab.name}" name="${p.metric}"`);
  }
  // Off a terminal: line-oriented, no cursor movement or carriage returns.
  assert.not.match(r.stderr + r.stdout, /\r|\x1b\[/);
  const after = await machineState();
  for (const id of ids) {
    assert.equal(after.namespaces.filter((n) => n.startsWith(`lab-${id}-`)), [], 'namespaces left behind');
    assert.equal(agentPids(`lab:lab-${id}-`), [], 'agents left behind');
  }
  // (The guard route is shared with any other run on this machine: run.test.ts checks it alone.)
  assert.is(after.portRange, before.portRange);
});

test('a second run with --baseline on the unchanged machine passes', async () => {
  // --machine names the machine for later baselines and the site (a hosted CI runner's hostname changes every job).
  const r = await runCli(['run', 'labs/port-exhaustion.yaml', 'labs/multi-ip.yaml', '--out', join(out, 'second'), '--baseline', first, '--machine', 'ci-runner']);
  assert.is(r.code, 0, r.stderr + r.stdout);
  assert.match(r.stdout, /baseline: no regression against the baseline of .* \(.*first, 1 earlier run\)/);
  assert.match(r.stdout, /port-exhaustion +PASS +2 +0 +no regression/);
  assert.is(read(join(out, 'second'), 'port-exhaustion').machine, 'ci-runner');
});

test('a narrower port range is a regression: exit 4, and the terminal, report and JUnit name the metric', async () => {
  const dir = join(out, 'narrow');
  const r = await runCli(['run', 'labs/port-exhaustion.yaml', '--var', 'high=40499', '--out', dir, '--baseline', first]);
  assert.is(r.code, 4, r.stderr + r.stdout);
  assert.match(r.stdout, /\n {2}REGRESSION ramp.established: moved by -500 \(1000 → 500\), beyond its exact tolerance\n/);
  // The first place to look: what differs from the baseline run.
  assert.match(r.stdout, '\n  since then: vars: high "40999" → "40499"\n');
  assert.match(r.stderr, /error: 1 metric regressed against the baseline \[REGRESSION\]/);
  const result = JSON.parse(readFileSync(join(dir, 'result.json'), 'utf8')) as RunResult;
  assert.is(result.verdict, 'pass');
  assert.is(result.baseline!.regressions, 1);
  const md = readFileSync(join(dir, 'report.md'), 'utf8');
  assert.match(md, /## Against the baseline: ❌ 1 regressed/);
  assert.match(md, /\| `ramp.established` \| limit \| 1000 \| 500 \| ❌ \*\*regression\*\* \|/);
  assert.match(readFileSync(join(dir, 'junit.xml'), 'utf8'), /<failure message="regression against the baseline of [^"]+: ramp.established" type="regression">/);
  assert.match(readFileSync(join(dir, 'report.html'), 'utf8'), /<span class="badge fail">regressed<\/span>/);
});

test('a regression stays one the next night: the regressed run is no baseline, the last good one is; the summary counts them as regressed', async () => {
  const baseline = join(out, 'nights');
  mkdirSync(baseline);
  cpSync(first, join(baseline, 'first'), { recursive: true });
  cpSync(join(out, 'narrow'), join(baseline, 'narrow'), { recursive: true });
  const r = await runCli(['run', 'labs/port-exhaustion.yaml', 'labs/multi-ip.yaml', '--var', 'high=40499', '--out', join(out, 'night3'), '--baseline', baseline]);
  assert.is(r.code, 4, r.stderr + r.stdout);
  assert.match(r.stdout, /\n {2}REGRESSION ramp.established: moved by -500 \(1000 → 500\)/);
  assert.match(r.stdout, /\nsuite: 2 labs, 0 passed, 2 passed but regressed, 0 did not, in /);
  assert.match(r.stdout, /port-exhaustion +PASS +2 +0 +1 REGRESSED/);
});

test('a lab after one whose kept hosts were discarded (a graceful release) runs on new hosts', async () => {
  const dir = join(out, 'after-discard');
  const r = await runCli(['run', 'labs/time-wait.yaml', 'labs/port-exhaustion.yaml', '--out', dir]);
  const tw = read(dir, 'time-wait');
  const pe = read(dir, 'port-exhaustion');
  // time-wait's memory fit may be disturbed by other runs on this machine; port-exhaustion's counts may not.
  assert.is(pe.error, undefined, r.stderr + r.stdout);
  assert.is(pe.verdict, 'pass', r.stderr + r.stdout);
  assert.is.not(pe.hosts[0]!.target, tw.hosts[0]!.target, 'new namespaces after the graceful release');
  assert.ok(r.code === 0 || r.code === 1, r.stderr);
});

test('a lab the machine cannot hold is REFUSED in a suite: its arithmetic, JUnit errors (no skip), exit 3', async () => {
  // too-big.yaml holds 6M connections at once (~62 GiB): refused on any machine below that.
  const dir = join(out, 'refused');
  const junit = join(out, 'refused.xml');
  const r = await runCli(['run', 'labs/port-exhaustion.yaml', 'test/fixtures/labs/run/too-big.yaml', '--out', dir, '--junit', junit]);
  assert.is(r.code, 3, r.stderr + r.stdout);
  assert.is(read(dir, 'port-exhaustion').verdict, 'pass', r.stderr + r.stdout);
  assert.match(r.stdout, /\nsuite: 2 labs, 1 passed, 1 refused \(this machine cannot hold it\), 0 did not, in /);
  assert.match(r.stdout, /too-big +REFUSED/);
  assert.match(r.stdout, /too-big: refused, not started: need [\d.]+ GiB .* > MemAvailable [\d.]+ GiB \[CAPACITY\]/);
  const xml = readFileSync(junit, 'utf8');
  assert.match(xml, /<testsuite name="too-big" tests="3" failures="0" errors="2" skipped="0" /);
  assert.match(xml, /<testcase classname="too-big" name="ramp1.established" time="0.000">\n\s*<error message="refused: the hosts cannot hold this lab: need [^"]+" type="CAPACITY">/);
  assert.not.match(xml, /<skipped/);
  // The refused lab's result keeps the check it failed, and its report shows it.
  const refused = read(dir, 'too-big');
  assert.is(refused.capacity?.ok, false);
  assert.ok(refused.capacity!.machines[0]!.lines.some((l) => / > MemAvailable /.test(l)), 'the memory line that refused it');
  assert.match(readFileSync(join(dir, 'too-big', 'report.md'), 'utf8'), /## Capacity, checked before any change\n/);
});

test('a bad baseline or a bad lab in a suite stops it before any host is touched', async () => {
  const missing = await runCli(['run', 'labs/', '--baseline', join(out, 'nope')]);
  assert.is(missing.code, 2, missing.stderr);
  assert.match(missing.stderr, /^error: Cannot read the baseline ".*nope": no such file or folder \[BASELINE_UNREADABLE\]/);
  const bad = await runCli(['run', 'labs/port-exhaustion.yaml', 'test/fixtures/labs/bad/bind.yaml']);
  assert.is(bad.code, 2, bad.stderr);
  assert.match(bad.stderr, /test\/fixtures\/labs\/bad\/bind.yaml:\d+:\d+: /);
  // Nothing ran: no lab started (other runs on this machine may make namespaces meanwhile).
  assert.is(missing.stdout + bad.stdout, '');
});

test.run();
