// The lab file JSON Schema: the committed file is what schema.ts builds, and
// the schema agrees with validation on the fixtures (checked with a small
// evaluator for exactly the keywords the schema uses).

import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { parse } from 'yaml';
import { labSchema, labSchemaJson } from '../../runner/lab/schema.ts';
import { fixtures, readText, yamlFiles } from './_fixtures.ts';

type Schema = Record<string, unknown> | boolean;

const KNOWN = new Set([
  '$schema', 'title', 'description', '$ref', '$defs', 'type', 'properties', 'required',
  'additionalProperties', 'propertyNames', 'minProperties', 'items', 'minItems', 'enum', 'const',
  'pattern', 'minimum', 'maximum', 'anyOf', 'oneOf', 'allOf', 'not', 'if', 'then', 'else',
]);

/** Every keyword in `schema`, so the test fails if the schema grows one the evaluator ignores. */
function keywords(schema: unknown, out = new Set<string>()): Set<string> {
  if (Array.isArray(schema)) schema.forEach((s) => keywords(s, out));
  else if (schema && typeof schema === 'object') {
    for (const [k, v] of Object.entries(schema)) {
      out.add(k);
      if (k === 'properties' || k === '$defs') Object.values(v as object).forEach((s) => keywords(s, out));
      else if (k !== 'enum' && k !== 'const' && k !== 'required') keywords(v, out);
    }
  }
  return out;
}

function typeOf(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'array';
  if (typeof v === 'number') return Number.isInteger(v) ? 'integer' : 'number';
  return typeof v;
}

/** Errors of `v` against `s`, as "path: keyword" strings; [] when valid. */
function check(root: Record<string, unknown>, s: Schema, v: unknown, path = ''): string[] {
  if (s === true) return [];
  if (s === false) return [`${path}: false`];
  const errs: string[] = [];
  const fail = (k: string) => errs.push(`${path || '/'}: ${k}`);
  if (typeof s.$ref === 'string') {
    const name = s.$ref.replace('#/$defs/', '');
    errs.push(...check(root, (root.$defs as Record<string, Schema>)[name]!, v, path));
  }
  if (s.type !== undefined) {
    const types = ([] as string[]).concat(s.type as string);
    const t = typeOf(v);
    if (!types.includes(t) && !(t === 'integer' && types.includes('number'))) fail('type');
  }
  if (s.enum && !(s.enum as unknown[]).includes(v)) fail('enum');
  if ('const' in s && s.const !== v) fail('const');
  if (typeof v === 'string' && typeof s.pattern === 'string' && !new RegExp(s.pattern, 'u').test(v)) fail('pattern');
  if (typeof v === 'number') {
    if (typeof s.minimum === 'number' && v < s.minimum) fail('minimum');
    if (typeof s.maximum === 'number' && v > s.maximum) fail('maximum');
  }
  if (Array.isArray(v)) {
    if (typeof s.minItems === 'number' && v.length < s.minItems) fail('minItems');
    if (s.items !== undefined) v.forEach((item, i) => errs.push(...check(root, s.items as Schema, item, `${path}/${i}`)));
  }
  if (v && typeof v === 'object' && !Array.isArray(v)) {
    const obj = v as Record<string, unknown>;
    const props = (s.properties ?? {}) as Record<string, Schema>;
    for (const k of (s.required ?? []) as string[]) if (!(k in obj)) fail(`required ${k}`);
    if (typeof s.minProperties === 'number' && Object.keys(obj).length < s.minProperties) fail('minProperties');
    for (const [k, item] of Object.entries(obj)) {
      if (s.propertyNames !== undefined && check(root, s.propertyNames as Schema, k).length) fail(`propertyNames ${k}`);
      if (k in props) errs.push(...check(root, props[k]!, item, `${path}/${k}`));
      else if (s.additionalProperties !== undefined) {
        errs.push(...check(root, s.additionalProperties as Schema, item, `${path}/${k}`));
      }
    }
  }
  const valid = (sub: Schema) => check(root, sub, v, path).length === 0;
  if (s.allOf) for (const sub of s.allOf as Schema[]) errs.push(...check(root, sub, v, path));
  if (s.anyOf && !(s.anyOf as Schema[]).some(valid)) fail('anyOf');
  if (s.oneOf && (s.oneOf as Schema[]).filter(valid).length !== 1) fail('oneOf');
  if (s.not !== undefined && valid(s.not as Schema)) fail('not');
  if (s.if !== undefined) {
    const branch = valid(s.if as Schema) ? s.then : s.else;
    if (branch !== undefined) errs.push(...check(root, branch as Schema, v, path));
  }
  return errs;
}

const schema = labSchema as unknown as Record<string, unknown>;
const validate = (v: unknown) => check(schema, schema, v);

test('schema/lab.schema.json is what runner/lab/schema.ts builds (run `npm run schema` after a change)', () => {
  assert.is(readText('schema/lab.schema.json'), labSchemaJson());
});

test('labSchema is draft 2020-12 and uses only keywords this test evaluates', () => {
  assert.is(labSchema.$schema, 'https://json-schema.org/draft/2020-12/schema');
  const unknown = [...keywords(labSchema)].filter((k) => !KNOWN.has(k));
  assert.equal(unknown, []);
});

for (const f of fixtures('test/fixtures/labs/good')) {
  test(`labSchema accepts good/${f.name}.yaml`, () => {
    assert.equal(validate(parse(f.text)), []);
  });
}

for (const name of yamlFiles('labs')) {
  test(`labSchema accepts the shipped labs/${name}`, () => {
    assert.equal(validate(parse(readText(`labs/${name}`))), []);
  });
}

// Bad fixtures whose mistakes are of shape, which a schema can see.
for (const name of ['unknown-key', 'missing-keys', 'empty', 'bind', 'types', 'step-names', 'many-problems']) {
  test(`labSchema rejects bad/${name}.yaml`, () => {
    const errs = validate(parse(readText(`test/fixtures/labs/bad/${name}.yaml`)));
    assert.ok(errs.length > 0, 'no schema errors');
  });
}

test('labSchema points at the misspelt key', () => {
  const errs = validate(parse(readText('test/fixtures/labs/bad/unknown-key.yaml')));
  assert.equal(errs, ['/hosts/client: anyOf']);
});

test('labSchema requires "port" with bind reuseaddr and refuses it otherwise', () => {
  const lab = (connect: Record<string, unknown>) => ({
    name: 'x',
    hosts: { c: {}, s: {} },
    steps: [{ listen: { host: 's', port: 80 } }, { connect: { from: 'c', to: 's:80', count: 1, ...connect } }],
  });
  assert.equal(validate(lab({ bind: 'reuseaddr', port: 50000 })), []);
  assert.ok(validate(lab({ bind: 'reuseaddr' })).length > 0);
  assert.ok(validate(lab({ bind: 'ip', port: 50000 })).length > 0);
  assert.ok(validate(lab({ port: 50000 })).length > 0);
});

test.run();
