// Templating of lab scalars: strict lookups, --var merging, and problems
// placed on the expression that failed.

import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { LabError } from '../../runner/errors.ts';
import { REPORTED } from '../../runner/files/checker.ts';
import {
  isTemplate,
  mergeVars,
  parseVarOverrides,
  renderTemplate,
  renderTree,
} from '../../runner/lab/template.ts';
import { parseYaml } from '../../runner/files/yaml.ts';

test('renderTemplate() fills in vars and escapes nothing', () => {
  assert.equal(renderTemplate('{{low}} {{high}}', { low: '40000', high: '40999' }), { ok: true, value: '40000 40999' });
  assert.equal(renderTemplate('{{ x }}', { x: '<a & "b">' }), { ok: true, value: '<a & "b">' });
  assert.equal(renderTemplate('no template', {}), { ok: true, value: 'no template' });
});

test('renderTemplate() fails on an undefined name, naming it and guessing the meant one', () => {
  assert.equal(renderTemplate('{{low}} {{hgih}}', { low: '1', high: '2' }), {
    ok: false,
    failure: { message: 'Undefined variable "hgih" in template: did you mean "high"?', offset: 10 },
  });
  assert.equal(renderTemplate('a\n{{zzz}}', {}), {
    ok: false,
    failure: { message: 'Undefined variable "zzz" in template: define it under "vars:" or pass --var zzz=VALUE', offset: 4 },
  });
});

test('renderTemplate() reports a template syntax error', () => {
  const r = renderTemplate('{{low', { low: '1' });
  assert.ok(!r.ok);
  assert.match(r.failure.message, /^Cannot parse template "\{\{low": expecting 'ID'/);
});

test('renderTemplate() offers no {{log}} helper that could write to the terminal', () => {
  const r = renderTemplate('{{log "hi"}}', {});
  assert.ok(!r.ok);
  assert.is(r.failure.message, 'Cannot render template: the "log" helper is not available in lab files');
});

test('isTemplate() is true only for strings with an expression', () => {
  assert.ok(isTemplate('{{a}}'));
  assert.not.ok(isTemplate('40000 40999'));
});

test('mergeVars() lets overrides win and add names', () => {
  assert.equal(mergeVars({ low: '1', high: '2' }, { high: '3', extra: 'x' }), { low: '1', high: '3', extra: 'x' });
  assert.equal(mergeVars({ a: '1' }), { a: '1' });
});

test('parseVarOverrides() splits at the first "=" and checks the name', () => {
  assert.equal(parseVarOverrides(['low=40000', 'expr=a=b', 'empty=']), { low: '40000', expr: 'a=b', empty: '' });
  assert.throws(() => parseVarOverrides(['low']), (e: unknown) => e instanceof LabError && e.message === 'Cannot parse --var "low": expected NAME=VALUE');
  assert.throws(
    () => parseVarOverrides(['my-var=1']),
    (e: unknown) => e instanceof LabError && e.code === 'ARGS' && /the name must match/.test(e.message),
  );
});

test('renderTree() renders every string scalar but the skipped ones, and remembers templates', () => {
  const sd = parseYaml('x.yaml', 'vars: { a: "{{b}}" }\nlist: ["{{a}}", 2, plain]\nmap: { k: "{{a}}-{{a}}" }\n');
  const r = renderTree(sd, { a: 'A' }, (p) => p[0] === 'vars');
  assert.equal(r.value, { vars: { a: '{{b}}' }, list: ['A', 2, 'plain'], map: { k: 'A-A' } });
  assert.equal([...r.templates], [
    ['list[0]', '{{a}}'],
    ['map.k', '{{a}}-{{a}}'],
  ]);
  assert.equal(r.problems, []);
});

test('renderTree() places a failed lookup on the expression inside a plain or quoted scalar', () => {
  const text = 'plain: x {{nope}}\ndouble: "x {{nope}}"\nsingle: \'x {{nope}}\'\nblock: |\n  x {{nope}}\n';
  const r = renderTree(parseYaml('x.yaml', text), {});
  assert.equal(
    r.problems.map((p) => [p.path, p.line, p.col]),
    [
      ['plain', 1, 12],
      ['double', 2, 14],
      ['single', 3, 14],
      // A block scalar's text is not the file's text: the problem stays at the scalar.
      ['block', 4, 8],
    ],
  );
  assert.equal(r.value, { plain: REPORTED, double: REPORTED, single: REPORTED, block: REPORTED });
});

test('renderTree() falls back to the scalar when escapes make the source differ from the value', () => {
  const r = renderTree(parseYaml('x.yaml', 'k: "\\t{{nope}}"\n'), {});
  assert.equal(r.problems.map((p) => [p.line, p.col]), [[1, 4]]);
});

test.run();
