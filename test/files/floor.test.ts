// The floor under every reader of user files: names and did-you-mean,
// durations, positioned documents (YAML, and hand-built ones as an INI reader
// would make), the Checker, and the bounds on what a file may be.

import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { formatProblem, LabError } from '../../runner/errors.ts';
import { Checker, REPORTED } from '../../runner/files/checker.ts';
import { PositionTable, SourceDoc } from '../../runner/files/document.ts';
import { formatDuration, parseDuration } from '../../runner/files/durations.ts';
import { didYouMean, editDistance, roleNameProblem } from '../../runner/files/names.ts';
import { MAX_FILE_BYTES, readUserFile } from '../../runner/files/read.ts';
import { MAX_DEPTH, parseYaml } from '../../runner/files/yaml.ts';

/** The LabError `fn` throws, formatted one problem a line (or its message when it has none). */
function failure(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    if (!(e instanceof LabError)) throw e;
    return e.problems.length ? e.problems.map(formatProblem).join('\n') : e.message;
  }
  assert.unreachable('no LabError');
  return '';
}

async function failureOf(p: Promise<unknown>): Promise<LabError> {
  try {
    await p;
  } catch (e) {
    if (e instanceof LabError) return e;
    throw e;
  }
  assert.unreachable('no LabError');
  throw new Error('unreachable');
}

test('didYouMean() finds close words and prefixes, not far ones', () => {
  assert.is(didYouMean('sysctl', ['sysctls', 'aliases', 'nofile']), 'sysctls');
  assert.is(didYouMean('hgih', ['low', 'high']), 'high');
  assert.is(didYouMean('conn', ['listen', 'connect']), 'connect');
  assert.is(didYouMean('Name', ['name']), 'name');
  assert.is(didYouMean('nap', ['ramp']), undefined);
  assert.is(didYouMean('zzz', ['name', 'hosts']), undefined);
  assert.is(didYouMean('x', []), undefined);
  assert.is(didYouMean('x'.repeat(100_000), ['name']), undefined);
});

test('editDistance() counts a swap of neighbours as one edit', () => {
  assert.is(editDistance('hgih', 'high'), 1);
  assert.is(editDistance('kitten', 'sitting'), 3);
  assert.is(editDistance('', 'abc'), 3);
});

test('roleNameProblem() is the one rule for role names', () => {
  assert.is(roleNameProblem('client'), undefined);
  assert.is(roleNameProblem('web-2'), undefined);
  assert.is(roleNameProblem('all'), 'Role name "all" is reserved: choose another name');
  assert.is(roleNameProblem('Web'), 'Invalid role name "Web": use lowercase letters, digits and "-", starting with a letter');
  assert.is(roleNameProblem('a;rm -rf /'), 'Invalid role name "a;rm -rf /": use lowercase letters, digits and "-", starting with a letter');
});

test('parseDuration() reads units and bare seconds; formatDuration() writes the shortest form', () => {
  assert.is(parseDuration('500ms'), 500);
  assert.is(parseDuration('30s'), 30_000);
  assert.is(parseDuration('5m'), 300_000);
  assert.is(parseDuration('1h'), 3_600_000);
  assert.is(parseDuration('1.5s'), 1500);
  assert.is(parseDuration(2), 2000);
  assert.is(parseDuration('2'), 2000);
  assert.is(parseDuration('2 minutes'), undefined);
  assert.is(parseDuration(-1), undefined);
  assert.is(parseDuration(true), undefined);
  assert.is(formatDuration(300_000), '5m');
  assert.is(formatDuration(90_000), '90s');
  assert.is(formatDuration(1500), '1500ms');
});

/**
 * A reader of "[section]" and "key=value" lines, as small as a test can make
 * it: what an Ansible INI reader does, to show the same Checker reports its
 * problems at file:line:col through a PositionTable.
 */
function readIni(file: string, text: string): SourceDoc {
  const table = new PositionTable();
  const value: Record<string, Record<string, string>> = {};
  let section: string | undefined;
  let offset = 0;
  for (const line of text.split('\n')) {
    const m = /^\[(\w+)\]$/.exec(line);
    if (m) {
      section = m[1]!;
      value[section] = {};
      table.set([section], offset, offset + 1);
    } else if (section && line.includes('=')) {
      const eq = line.indexOf('=');
      const key = line.slice(0, eq);
      value[section]![key] = line.slice(eq + 1);
      table.set([section, key], offset + eq + 1, offset, offset + eq + 1);
    }
    offset += line.length + 1;
  }
  return new SourceDoc(file, text, value, table);
}

test('Checker reports problems of a hand-built (INI-like) document at file:line:col, sorted, with did-you-mean', () => {
  const sd = readIni('hosts.ini', '[web]\nansible_port=99999\nansible_usr=lab\n[db]\nansible_become=maybe\n');
  const check = new Checker(sd);
  const web = check.mapping(['web'], (sd.value as Record<string, unknown>).web, ['ansible_port', 'ansible_user'], ['ansible_user']);
  check.bool(['db', 'ansible_become'], (sd.value as Record<string, Record<string, unknown>>).db!.ansible_become);
  check.int(['web', 'ansible_port'], web!.ansible_port, 1, 65535);
  check.at(['db', 'nowhere'], 'A problem on a path the reader never saw lands on its nearest ancestor');
  assert.is(
    check.problems.map(formatProblem).join('\n'),
    [
      'hosts.ini:2:14: web.ansible_port: Must be an integer from 1 to 65535: got "99999"',
      'hosts.ini:3:1: web: Unknown key "ansible_usr": did you mean "ansible_user"?',
      'hosts.ini:4:1: db.nowhere: A problem on a path the reader never saw lands on its nearest ancestor',
      'hosts.ini:5:16: db.ansible_become: Must be true or false: got "maybe"',
    ].join('\n'),
  );
  assert.is(sd.verbatimStart(['web', 'ansible_port']), 19);
});

test('Checker passes over a value reported already, so one mistake is one problem', () => {
  const check = new Checker(parseYaml('x.yaml', 'a: 1\n'));
  assert.is(check.int(['a'], REPORTED, 0, 1), undefined);
  assert.is(check.string(['a'], REPORTED), undefined);
  assert.is(check.mapping(['a'], REPORTED, []), undefined);
  assert.ok(check.ok);
});

test('Checker.string() wants a non-empty string; line() no control characters; both say what they got', () => {
  const sd = parseYaml('x.yaml', 'a: ""\nb: 5\nc: "x\\ny"\nd: "tab\\there"\n');
  const check = new Checker(sd);
  const v = sd.value as Record<string, unknown>;
  check.string(['a'], v.a);
  check.string(['b'], v.b);
  check.line(['c'], v.c);
  assert.is(check.line(['d'], v.d), 'tab\there');
  assert.is(
    check.problems.map(formatProblem).join('\n'),
    [
      'x.yaml:1:4: a: Must be a non-empty string: got ""',
      'x.yaml:2:4: b: Must be a string: got 5',
      'x.yaml:3:4: c: Must be a single line without control characters: got "x\\ny"',
    ].join('\n'),
  );
});

test('parseYaml() refuses nesting deeper than MAX_DEPTH at the line where it gets too deep, before parsing', () => {
  const block = Array.from({ length: MAX_DEPTH + 5 }, (_, i) => `${' '.repeat(i)}a:`).join('\n');
  assert.is(failure(() => parseYaml('deep.yaml', block)), `deep.yaml:${MAX_DEPTH + 1}:${MAX_DEPTH + 1}: Cannot parse YAML: nested more than ${MAX_DEPTH} levels deep`);
  assert.is(failure(() => parseYaml('flow.yaml', `a: ${'['.repeat(100_000)}`)), `flow.yaml:1:${4 + MAX_DEPTH - 1}: Cannot parse YAML: nested more than ${MAX_DEPTH} levels deep`);
  assert.is(failure(() => parseYaml('dash.yaml', `${'- '.repeat(MAX_DEPTH + 1)}x`)), `dash.yaml:1:${2 * MAX_DEPTH - 1}: Cannot parse YAML: nested more than ${MAX_DEPTH} levels deep`);
  // Brackets in quotes and comments are text.
  assert.equal(parseYaml('ok.yaml', `a: "${'['.repeat(200)}" # ${'{'.repeat(200)}\nb: '${'['.repeat(200)}'\n`).value, { a: '['.repeat(200), b: '['.repeat(200) });
});

/** The classic "billion laughs": each level is nine aliases of the one before. */
export const ALIAS_BOMB = [
  'name: bomb',
  'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]',
  'b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]',
  'c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]',
  'd: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]',
  'e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]',
  'f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]',
  'g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]',
  '',
].join('\n');

test('parseYaml() refuses an alias bomb at the alias that expands past MAX_NODES', () => {
  assert.is(failure(() => parseYaml('bomb.yaml', ALIAS_BOMB)), 'bomb.yaml:7:11: Cannot parse YAML: aliases expand to more than 100000 nodes (is it an alias bomb?)');
});

test('parseYaml() still reads a file that uses aliases modestly', () => {
  const sd = parseYaml('ok.yaml', 'a: &x [1, 2]\nb: *x\nc: *x\n');
  assert.equal(sd.value, { a: [1, 2], b: [1, 2], c: [1, 2] });
});

test('readUserFile() refuses a file larger than MAX_FILE_BYTES by its size, without reading it', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'lab-floor-'));
  try {
    const big = join(dir, 'big.yaml');
    // Sparse: 50 MB on paper, nothing on disk and nothing in memory.
    writeFileSync(big, '');
    const { truncateSync } = await import('node:fs');
    truncateSync(big, 50 * 1024 * 1024);
    const e = await failureOf(readUserFile(big, { what: 'lab file', code: 'LAB' }));
    assert.is(e.code, 'LAB_TOO_LARGE');
    assert.is(e.message, `Cannot read lab file ${JSON.stringify(big)}: it is 52428800 bytes, over the limit of ${MAX_FILE_BYTES} bytes (1 MiB)`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('readUserFile() refuses bytes that are not UTF-8 text at their line and column', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'lab-floor-'));
  try {
    const bin = join(dir, 'bin.yaml');
    writeFileSync(bin, Buffer.from('name: x\nhosts: \xff\xfe', 'latin1'));
    let e = await failureOf(readUserFile(bin, { what: 'inventory', code: 'INVENTORY' }));
    assert.is(e.code, 'INVENTORY_NOT_TEXT');
    assert.is(e.message, `${bin}:2:8: Cannot read inventory: it is not UTF-8 text (byte 0xff)`);
    writeFileSync(bin, Buffer.from('name: x\0y\n'));
    e = await failureOf(readUserFile(bin, { what: 'lab file', code: 'LAB' }));
    assert.is(e.message, `${bin}:1:8: Cannot read lab file: it is not UTF-8 text (byte 0x00)`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test.run();
