// readResult(): what `lab report` and baselines accept, the exact errors for
// what they refuse, and schema/result.schema.json kept in sync with the samples.

import { mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { LabError } from '../../runner/errors.ts';
import { loadResultSchema, readResult, type Schema } from '../../runner/report/read.ts';

const results = new URL('../fixtures/results/', import.meta.url);
// fleet: a real run of four client hosts and a server (lab hosts up --roles client:4,server).
const samples = ['pass', 'fail', 'regressed', 'fleet'].map((name) => fileURLToPath(new URL(`${name}.result.json`, results)));

async function tempJson(value: unknown): Promise<string> {
  const path = join(await mkdtemp(join(tmpdir(), 'lab-read-')), 'result.json');
  await writeFile(path, typeof value === 'string' ? value : JSON.stringify(value));
  return path;
}

async function rejection(path: string): Promise<LabError> {
  try {
    await readResult(path);
  } catch (e) {
    assert.instance(e, LabError);
    return e as LabError;
  }
  throw new Error(`readResult(${path}) did not throw`);
}

async function sample(): Promise<Record<string, any>> {
  return JSON.parse(await readFile(samples[0]!, 'utf8'));
}

test('readResult() reads the sample results as written', async () => {
  for (const path of samples) {
    assert.equal(await readResult(path), JSON.parse(await readFile(path, 'utf8')));
  }
});

test('readResult() rejects a JSON file that is not a lab result', async () => {
  const path = await tempJson({ name: 'lab', version: '0.1.0' });
  const e = await rejection(path);
  assert.is(e.code, 'RESULT_INVALID');
  assert.is(e.message, `${path}: not a lab result: missing field "format"`);
});

test('readResult() rejects another format', async () => {
  const path = await tempJson({ ...(await sample()), format: 'lab-plan/1' });
  assert.is((await rejection(path)).message, `${path}: not a lab result: field "format" must be "lab-result/1": got "lab-plan/1"`);
});

test('readResult() rejects a JSON array', async () => {
  const path = await tempJson([1, 2]);
  assert.is((await rejection(path)).message, `${path}: not a lab result: expected a JSON object: got an array`);
});

test('readResult() names the one missing field', async () => {
  const result = await sample();
  delete result['hosts'][0].facts.kernel;
  const path = await tempJson(result);
  assert.is((await rejection(path)).message, `${path}: invalid lab result: missing field "hosts[0].facts.kernel"`);
});

test('readResult() lists every bad field', async () => {
  const result = await sample();
  result['durationMs'] = '4213';
  result['hosts'][0].facts.portRange = [40000];
  result['hosts'][1].changes[0].kind = 'mount';
  result['steps'][1].labels.firstError = null;
  result['predictions'][0].verdict = 'maybe';
  delete result['restore'];
  const path = await tempJson(result);
  assert.is(
    (await rejection(path)).message,
    `${path}: invalid lab result: 6 problems:\n` +
      `  missing field "restore"\n` +
      `  field "durationMs" must be a number: got "4213"\n` +
      `  field "hosts[0].facts.portRange" must have 2 items: got 1\n` +
      `  field "hosts[1].changes[0].kind" must be one of "sysctl", "address", "nftables", "rlimit": got "mount"\n` +
      `  field "steps[1].labels.firstError" must be a string: got null\n` +
      `  field "predictions[0].verdict" must be one of "pass", "fail", "not-measured", "not-applicable": got "maybe"`,
  );
});

test('readResult() ignores fields it does not know, for newer writers of the same format', async () => {
  const path = await tempJson({ ...(await sample()), format: 'lab-result/1.4', comparedWith: 'reports/last/result.json' });
  assert.is((await readResult(path)).lab.name, 'port-exhaustion');
});

test('readResult() refuses a result of a newer major format, saying so', async () => {
  const path = await tempJson({ ...(await sample()), format: 'lab-result/2' });
  const e = await rejection(path);
  assert.is(e.code, 'RESULT_NEWER');
  assert.is(e.message, `${path}: written by a newer lab (format "lab-result/2"); this lab reads lab-result/1: upgrade lab to report it`);
});

test('readResult() rejects a file that is not JSON', async () => {
  const path = await tempJson('name: port-exhaustion\n');
  const e = await rejection(path);
  assert.is(e.code, 'RESULT_INVALID');
  assert.is(e.message, `${path}:1:1: not a lab result: invalid JSON: unexpected "n"`);
});

test('readResult() rejects a missing file', async () => {
  const path = join(tmpdir(), 'lab-no-such-dir', 'result.json');
  const e = await rejection(path);
  assert.is(e.code, 'RESULT_UNREADABLE');
  assert.is(e.message, `${path}: cannot read lab result: no such file`);
});

// The schema and the samples describe each other: every field a sample has is
// declared, and every declared field appears in a sample, so neither can drift.
test('schema/result.schema.json declares exactly the fields of the sample results', async () => {
  const schema = await loadResultSchema();
  const declared = new Set<string>();
  const seen = new Set<string>();
  const undeclared = new Set<string>();

  const resolve = (s: Schema): Schema => (s.$ref ? resolve(schema.$defs![s.$ref.replace('#/$defs/', '')]!) : s);
  const declare = (s: Schema, path: string, depth = 0): void => {
    s = resolve(s);
    if (depth > 8) return;
    for (const branch of s.oneOf ?? []) declare(branch, `${path}<${branch.properties!['kind']!.const}>`, depth + 1);
    for (const [key, sub] of Object.entries(s.properties ?? {})) {
      declared.add(`${path}.${key}`);
      declare(sub, `${path}.${key}`, depth + 1);
    }
    if (s.items) declare(s.items, `${path}[]`, depth + 1);
  };
  const walk = (value: any, s: Schema, path: string): void => {
    s = resolve(s);
    if (s.oneOf) {
      const branch = s.oneOf.find((b) => b.properties!['kind']!.const === value.kind)!;
      return walk(value, branch, `${path}<${value.kind}>`);
    }
    if (Array.isArray(value) && s.items) return value.forEach((item) => walk(item, s.items!, `${path}[]`));
    if (value && typeof value === 'object' && s.properties) {
      for (const [key, item] of Object.entries(value)) {
        const sub = s.properties[key];
        if (!sub) undeclared.add(`${path}.${key}`);
        else {
          seen.add(`${path}.${key}`);
          walk(item, sub, `${path}.${key}`);
        }
      }
    }
  };

  declare(schema, '$');
  for (const path of samples) walk(JSON.parse(await readFile(path, 'utf8')), schema, '$');
  assert.equal([...undeclared], [], 'fields in a sample but not in the schema');
  assert.equal([...declared].filter((p) => !seen.has(p)), [], 'fields in the schema but in no sample');
});

test.run();
