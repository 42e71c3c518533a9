// loadLab() and readLab(): every fixture's exact error text, the typed Lab of
// every good fixture, and the rules one at a time.

import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { formatProblem, LabError } from '../../runner/errors.ts';
import type { Lab } from '../../runner/lab/types.ts';
import { loadLab, readLab } from '../../runner/lab/validate.ts';
import { fixtures, golden, readText, ROOT, yamlFiles } from './_fixtures.ts';
import { fileURLToPath } from 'node:url';

/** The LabError loadLab throws for `text`; fails the test if it returns. */
function problemsOf(text: string, overrides?: Record<string, string>, file = 'labs/x.yaml'): LabError {
  try {
    loadLab(file, text, overrides);
  } catch (e) {
    if (e instanceof LabError) return e;
    throw e;
  }
  assert.unreachable('loadLab() returned a Lab');
  throw new Error('unreachable');
}

/** The Lab as goldens hold it: without the source text, which is the fixture itself. */
function labJson(lab: Lab): string {
  const { source: _source, ...rest } = lab;
  return JSON.stringify(rest, null, 2) + '\n';
}

const GOOD = fixtures('test/fixtures/labs/good');
const BAD = fixtures('test/fixtures/labs/bad');

test('fixtures are there', () => {
  assert.ok(GOOD.length >= 4, 'good fixtures');
  assert.ok(BAD.length >= 8, 'bad fixtures');
});

for (const f of BAD) {
  test(`loadLab() rejects bad/${f.name}.yaml with the exact text of ${f.name}.expected.txt`, () => {
    const err = problemsOf(f.text, undefined, f.file);
    const actual = err.message + '\n';
    assert.is(actual, golden(`test/fixtures/labs/bad/${f.name}.expected.txt`, actual));
    // The message is the problems, one a line, so the CLI can print either.
    assert.is(err.problems.map(formatProblem).join('\n'), err.message);
  });
}

for (const f of GOOD) {
  test(`loadLab() reads good/${f.name}.yaml into the Lab of ${f.name}.lab.json`, () => {
    const lab = loadLab(f.file, f.text);
    assert.is(lab.source, f.text);
    const actual = labJson(lab);
    assert.is(actual, golden(`test/fixtures/labs/good/${f.name}.lab.json`, actual));
  });
}

for (const name of yamlFiles('labs')) {
  test(`readLab() validates the shipped labs/${name}`, async () => {
    const lab = await readLab(fileURLToPath(new URL(`labs/${name}`, ROOT)));
    assert.is(`${lab.name}.yaml`, name, 'a shipped lab is named after its file');
    assert.ok(lab.description, 'a shipped lab says what it shows');
  });
}

test('the shipped port-exhaustion lab narrows the port range and predicts both metrics with ephemeral-ports', () => {
  const lab = loadLab('labs/port-exhaustion.yaml', readText('labs/port-exhaustion.yaml'));
  assert.equal(lab.hosts.find((h) => h.role === 'client')?.sysctls, { 'net.ipv4.ip_local_port_range': '40000 40999' });
  const ramp = lab.steps.find((s) => s.name === 'ramp');
  assert.ok(ramp?.kind === 'connect' && ramp.count === 5000);
  assert.equal(
    lab.expect.map((e) => [e.metric, e.model ?? e.value]),
    [
      ['ramp.established', 'ephemeral-ports'],
      ['ramp.firstError', 'ephemeral-ports'],
    ],
  );
});

test('loadLab() collects every problem in one file, sorted by position', () => {
  const err = problemsOf(readText('test/fixtures/labs/bad/many-problems.yaml'));
  assert.is(err.code, 'LAB_INVALID');
  assert.is(err.exitCode, 2);
  assert.ok(err.problems.length >= 7, `got ${err.problems.length} problems`);
  const positions = err.problems.map((p) => p.line * 1000 + p.col);
  assert.equal(positions, [...positions].sort((a, b) => a - b));
});

test('loadLab() reports a YAML syntax error at its line and column', () => {
  const err = problemsOf('name: x\nhosts:\n  a: {}\nsteps:\n  - sleep: 1s\nname: y\n');
  assert.is(err.code, 'LAB_YAML');
  assert.is(err.message, 'labs/x.yaml:6:1: Cannot parse YAML: duplicate key "name"');
  assert.equal(err.problems, [{ file: 'labs/x.yaml', line: 6, col: 1, path: '', message: 'Cannot parse YAML: duplicate key "name"' }]);
});

test('loadLab() names an unknown key at the key, with the key it probably meant', () => {
  const err = problemsOf('name: x\nhosts:\n  client:\n    sysctl: {}\nsteps:\n  - sleep: 1s\n');
  assert.is(err.message, 'labs/x.yaml:4:5: hosts.client: Unknown key "sysctl": did you mean "sysctls"?');
});

test('loadLab() refuses sleeps that alone fill the lab timeout, and names no timeout the lab lacks', () => {
  const err = problemsOf('name: x\ntimeout: 2s\nhosts: { client: {} }\nsteps:\n  - sleep: 1500ms\n  - sleep: 1500ms\n');
  assert.is(err.message, 'labs/x.yaml:2:10: timeout: The sleep steps alone take 3s, which leaves no time for the rest within the lab\'s timeout of 2s');
  const bad = problemsOf('name: x\ntimeout: 2 minutes\nhosts: { client: {} }\nsteps:\n  - sleep: 2h\n');
  assert.match(bad.message, 'labs/x.yaml:5:12: steps[0].sleep: Must be at most the longest timeout a lab may have, 1h: got "2h"');
});

test('loadLab() lists the known keys when no key is close', () => {
  const err = problemsOf('name: x\nhosts: { a: {} }\nsteps: [{ sleep: 1 }]\nzzz: 1\n');
  assert.is(
    err.message,
    'labs/x.yaml:4:1: Unknown key "zzz": expected one of "name", "description", "timeout", "release", "acknowledge", "vars", "hosts", "steps", "expect"',
  );
});

test('loadLab() reports an undefined template variable where it is used', () => {
  const text = [
    'name: x',
    'vars: { low: 40000, high: 40999 }',
    'hosts:',
    '  client:',
    '    sysctls:',
    '      net.ipv4.ip_local_port_range: "{{low}} {{hgih}}"',
    'steps: [{ sleep: 1s }]',
    '',
  ].join('\n');
  const err = problemsOf(text);
  assert.is(
    err.message,
    'labs/x.yaml:6:48: hosts.client.sysctls.net.ipv4.ip_local_port_range: Undefined variable "hgih" in template: did you mean "high"?',
  );
  // --var supplies what vars: lacks.
  const lab = loadLab('labs/x.yaml', text, { hgih: '40100' });
  assert.is(lab.hosts[0]!.sysctls['net.ipv4.ip_local_port_range'], '40000 40100');
});

test('loadLab() lets --var override vars: and add names it lacks', () => {
  const text = readText('labs/port-exhaustion.yaml');
  const lab = loadLab('labs/port-exhaustion.yaml', text, { low: '40500', extra: 'yes' });
  assert.equal(lab.vars, { low: '40500', high: '40999', extra: 'yes' });
  assert.is(lab.hosts[0]!.sysctls['net.ipv4.ip_local_port_range'], '40500 40999');
  // An override is checked like the file: 50000 > 40999 is no range.
  const err = problemsOf(text, { low: '50000', high: '1' });
  assert.match(err.message, /ip_local_port_range: Must be two ports "LOW HIGH" with 1 <= LOW <= HIGH <= 65535: got "50000 1" \(from template "\{\{low\}\} \{\{high\}\}"\)$/);
});

test('loadLab() does not template the vars section', () => {
  const lab = loadLab('labs/x.yaml', 'name: x\nvars: { a: "{{b}}" }\nhosts: { h: {} }\nsteps: [{ sleep: 1s }]\ndescription: "{{a}}"\n');
  assert.is(lab.vars.a, '{{b}}');
  assert.is(lab.description, '{{b}}');
});

test('loadLab() turns a numeric field rendered to an integer into a number', () => {
  const text = (count: string) =>
    `name: x\nvars: { n: ${count} }\nhosts: { c: {}, s: {} }\nsteps:\n  - listen: { host: s, port: 80 }\n  - connect: { from: c, to: "s:80", count: "{{n}}" }\n`;
  const step = loadLab('labs/x.yaml', text('5000')).steps[1]!;
  assert.ok(step.kind === 'connect');
  assert.is(step.count, 5000);
  assert.is(typeof step.count, 'number');
  assert.is(
    problemsOf(text('"many"')).message,
    'labs/x.yaml:6:44: steps[1].connect.count: Must be an integer from 1 to 2000000: got "many" (from template "{{n}}")',
  );
  assert.is(
    problemsOf(text('1.5')).message,
    'labs/x.yaml:6:44: steps[1].connect.count: Must be an integer from 1 to 2000000: got "1.5" (from template "{{n}}")',
  );
});

test('loadLab() fills in defaults', () => {
  const lab = loadLab(
    'labs/x.yaml',
    'name: x\nhosts: { c: {}, s: }\nsteps:\n  - listen: { host: s, port: 80 }\n  - connect: { from: c, to: "s:80", count: 1 }\n  - sleep: 2\n  - release: all\n',
  );
  assert.is(lab.timeoutMs, 300_000);
  assert.equal(lab.hosts[1], { role: 's', sysctls: {}, aliases: 0 });
  assert.equal(lab.steps, [
    { name: 'listen0', kind: 'listen', host: 's', port: 80, backlog: 4096, accept: true },
    {
      name: 'connect1',
      kind: 'connect',
      host: 'c',
      to: [{ role: 's', port: 80 }],
      count: 1,
      sources: 1,
      bind: 'none',
      rate: 0,
      timeoutMs: 60_000,
      connectTimeoutMs: 3000,
      stopOnError: true,
    },
    { name: 'sleep2', kind: 'sleep', durationMs: 2000 },
    { name: 'release3', kind: 'release', steps: ['listen0', 'connect1'] },
  ]);
  assert.equal(lab.expect, []);
});

test('loadLab() bounds a connect step\'s default timeout by the lab\'s', () => {
  const lab = loadLab(
    'labs/x.yaml',
    'name: x\ntimeout: 20s\nhosts: { c: {}, s: {} }\nsteps:\n  - listen: { host: s, port: 80 }\n  - connect: { from: c, to: "s:80", count: 1 }\n',
  );
  const step = lab.steps[1]!;
  assert.ok(step.kind === 'connect');
  assert.is(step.timeoutMs, 20_000);
});

test('loadLab() reads tolerances as absolute or percent', () => {
  const lab = loadLab(
    'labs/x.yaml',
    'name: x\nhosts: { s: {} }\nsteps:\n  - name: l\n    listen: { host: s, port: 80 }\nexpect:\n  - { metric: l.accepted, value: 10, tolerance: 2.5% }\n  - { metric: l.accepted, value: "10", tolerance: 2 }\n',
  );
  assert.equal(lab.expect, [
    { metric: 'l.accepted', tolerance: 2.5, tolerancePercent: true, value: 10 },
    { metric: 'l.accepted', tolerance: 2, tolerancePercent: false, value: 10 },
  ]);
});

test('readLab() reports a missing file as LAB_NOT_FOUND, with the file it probably meant', async () => {
  const dir = fileURLToPath(new URL('labs/', ROOT));
  try {
    await readLab(`${dir}port-exhaustoin.yaml`);
    assert.unreachable('readLab() returned');
  } catch (e) {
    assert.instance(e, LabError);
    const err = e as LabError;
    assert.is(err.code, 'LAB_NOT_FOUND');
    assert.is(err.message, `Cannot find lab file "${dir}port-exhaustoin.yaml": did you mean "${dir}port-exhaustion.yaml"?`);
  }
  try {
    await readLab(`${dir}nothing-like-it.yaml`);
    assert.unreachable('readLab() returned');
  } catch (e) {
    assert.is((e as LabError).code, 'LAB_NOT_FOUND');
    assert.is((e as LabError).message, `Cannot find lab file "${dir}nothing-like-it.yaml"`);
  }
});

test.run();
