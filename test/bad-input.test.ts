// Bad input is rejected before any host is touched: every file of the corpus
// in test/fixtures/corpus/ (lab files, inventories, result.json files), and
// the cases generated here (binary, 50 MB), through the CLI's own entry point,
// with the exact text a user sees (file:line:col where there is a position,
// in <name>.expected.txt) and exit code 2. UPDATE_GOLDEN=1 rewrites the texts.

import { closeSync, existsSync, mkdtempSync, openSync, readdirSync, readFileSync, rmSync, statSync, truncateSync, writeFileSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import process from 'node:process';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { main } from '../runner/cli.ts';
import { SYSCTL_NAME } from '../runner/lab/validate.ts';
import { ROOT, runCli, type Runtime } from './helpers.ts';
import { golden, readText } from './lab/_fixtures.ts';

const CORPUS = 'test/fixtures/corpus';
const RUNTIME: Runtime = 'Bun' in globalThis ? 'bun' : 'Deno' in globalThis ? 'deno' : 'node';

/** `lab ARGS` in this process: what it prints and the exit code it would exit with. */
async function lab(args: string[]): Promise<{ code: number; out: string; err: string }> {
  const out: string[] = [];
  const err: string[] = [];
  const code = await main(args, { out: (s) => out.push(s), err: (s) => err.push(s), isTTY: false });
  return { code, out: out.join('\n'), err: err.join('\n') };
}

function corpus(kind: string, ext: string): string[] {
  return readdirSync(join(ROOT, CORPUS, kind)).filter((f) => f.endsWith(ext)).sort();
}

/** The exit code is 2 and stderr is exactly the golden text; each problem line leads with FILE:LINE:COL when `positioned`. */
async function rejects(args: string[], expected: string, file: string, positioned: boolean) {
  const r = await lab(args);
  assert.is(r.code, 2, `exit code 2, got ${r.code}: ${r.err}`);
  assert.not.match(r.err, /internal error|    at /, 'no stack trace');
  assert.is(r.err + '\n', golden(expected, r.err + '\n'));
  if (positioned) {
    const lines = r.err.split('\n').slice(0, -1);
    for (const line of lines) assert.ok(line.startsWith(`${file}:`) && /^[^:]+:\d+:\d+: /.test(line), `no position: ${line}`);
  }
}

test('the process runs from the repository root, as the corpus names its files', () => {
  assert.is(resolve(process.cwd()), resolve(ROOT));
});

// ---- lab files: `lab validate` ----

for (const name of corpus('labs', '.yaml')) {
  const file = `${CORPUS}/labs/${name}`;
  test(`lab validate rejects ${file}`, async () => {
    // A first line "# args: [...]" holds extra arguments (--var).
    const first = readText(file).split('\n')[0]!;
    const extra: string[] = first.startsWith('# args: ') ? JSON.parse(first.slice('# args: '.length)) : [];
    await rejects(['validate', ...extra, file], file.replace(/\.yaml$/, '.expected.txt'), file, !extra.length || !first.includes('\\n'));
  });
}

// ---- inventories: `lab plan LAB -i INVENTORY`, refused before any host is contacted ----

// lab's own format (.yaml) and Ansible's INI (.ini): one checker, one way of refusing.
for (const name of [...corpus('inventories', '.yaml'), ...corpus('inventories', '.ini')]) {
  const file = `${CORPUS}/inventories/${name}`;
  test(`lab plan -i rejects ${file}`, async () => {
    await rejects(['plan', 'labs/port-exhaustion.yaml', '-i', file], file.replace(/\.(yaml|ini)$/, '.expected.txt'), file, true);
  });
}

// ---- result.json: `lab report` ----

for (const name of corpus('results', '.json')) {
  const file = `${CORPUS}/results/${name}`;
  test(`lab report rejects ${file}`, async () => {
    const out = mkdtempSync(join(tmpdir(), 'lab-corpus-'));
    try {
      await rejects(['report', file, '--out', out], file.replace(/\.json$/, '.expected.txt'), file, false);
      assert.equal(readdirSync(out), [], 'no report written');
    } finally {
      rmSync(out, { recursive: true, force: true });
    }
  });
}

// ---- generated: binary and very large files ----

function scratch(): { dir: string; done: () => void } {
  const dir = mkdtempSync(join(tmpdir(), 'lab-corpus-'));
  return { dir, done: () => rmSync(dir, { recursive: true, force: true }) };
}

/** A 50 MB YAML file written in 1 MB pieces: the test itself never holds it in memory. */
function writeHuge(file: string, line: string): void {
  const chunk = line.repeat(Math.ceil((1 << 20) / line.length));
  const fd = openSync(file, 'w');
  try {
    writeSync(fd, 'name: huge\nhosts: { a: {} }\nsteps: [{ sleep: 1 }]\nvars:\n');
    for (let i = 0; i < 50; i++) writeSync(fd, chunk);
  } finally {
    closeSync(fd);
  }
}

test('lab validate refuses a 50 MB lab file by its size, without reading it', async () => {
  const { dir, done } = scratch();
  try {
    const file = join(dir, 'huge.yaml');
    writeHuge(file, '  k: "lol lol lol lol lol lol lol lol"\n');
    const before = process.memoryUsage().rss;
    const r = await lab(['validate', file]);
    const grew = process.memoryUsage().rss - before;
    assert.is(r.code, 2);
    assert.is(r.err, `Cannot read lab file "${file}": it is ${statSync(file).size} bytes, over the limit of 1048576 bytes (1 MiB)\n1 problem found`);
    // Reading it would take 50 MB for the bytes and as much again for the text.
    assert.ok(grew < 25 * 1024 * 1024, `rss grew by ${grew} bytes`);
  } finally {
    done();
  }
});

test('lab plan -i refuses a 50 MB inventory by its size', async () => {
  const { dir, done } = scratch();
  try {
    const file = join(dir, 'inventory.yaml');
    writeHuge(file, '# padding padding padding padding padding\n');
    const r = await lab(['plan', 'labs/port-exhaustion.yaml', '-i', file]);
    assert.is(r.code, 2);
    assert.is(r.err, `error: Cannot read inventory "${file}": it is ${statSync(file).size} bytes, over the limit of 1048576 bytes (1 MiB) [INVENTORY_TOO_LARGE]`);
  } finally {
    done();
  }
});

test('lab report refuses a result.json over 64 MiB by its size', async () => {
  const { dir, done } = scratch();
  try {
    const file = join(dir, 'result.json');
    writeFileSync(file, '');
    truncateSync(file, 70 * 1024 * 1024);
    const r = await lab(['report', file, '--out', dir]);
    assert.is(r.code, 2);
    assert.is(r.err, `error: ${file}: cannot read lab result: it is 73400320 bytes, over the limit of 67108864 bytes (64 MiB) [RESULT_TOO_LARGE]`);
  } finally {
    done();
  }
});

test('lab validate and lab plan -i refuse binary files at the first byte that is not text', async () => {
  const { dir, done } = scratch();
  try {
    const labFile = join(dir, 'binary.yaml');
    writeFileSync(labFile, Buffer.concat([Buffer.from('name: binary\nhosts: '), Buffer.from([0x7f, 0x45, 0x4c, 0x46, 0x02, 0xc3, 0x28])]));
    let r = await lab(['validate', labFile]);
    assert.is(r.code, 2);
    assert.is(r.err, `${labFile}:2:13: Cannot read lab file: it is not UTF-8 text (byte 0xc3)\n1 problem found`);
    const inventory = join(dir, 'nul.yaml');
    writeFileSync(inventory, 'hosts:\n  client: { address: "10.0.0.1\0" }\n');
    r = await lab(['plan', 'labs/port-exhaustion.yaml', '-i', inventory]);
    assert.is(r.code, 2);
    assert.is(r.err, `${inventory}:2:31: Cannot read inventory: it is not UTF-8 text (byte 0x00)\n1 problem found`);
    const result = join(dir, 'result.json');
    writeFileSync(result, Buffer.from([0x1f, 0x8b, 0x08, 0x00, 0xff]));
    r = await lab(['report', result, '--out', dir]);
    assert.is(r.code, 2);
    assert.is(r.err, `error: ${result}:1:1: not a lab result: invalid JSON: unexpected "\\u001f" [RESULT_INVALID]`);
  } finally {
    done();
  }
});

// ---- what is accepted is still harmless ----

test('lab report renders hostile strings of a valid result.json as text, and writes only into --out', async () => {
  const { dir, done } = scratch();
  try {
    const result = JSON.parse(readText('test/fixtures/results/pass.result.json'));
    const evil = '<script>alert(1)</script><img src=x onerror=alert(2)>';
    result.lab.name = `../../${evil}`;
    result.lab.description = evil;
    result.hosts[0].facts.hostname = evil;
    result.predictions[0].derivation = evil;
    const file = join(dir, 'result.json');
    writeFileSync(file, JSON.stringify(result));
    const out = join(dir, 'out');
    const r = await lab(['report', file, '--out', out]);
    assert.is(r.code, 0, r.err);
    assert.equal(readdirSync(out).sort(), ['junit.xml', 'predicted-vs-observed.svg', 'ramp-ramp.svg', 'report.html', 'report.md', 'result.json']);
    const html = readFileSync(join(out, 'report.html'), 'utf8');
    assert.not.ok(html.includes('<script>alert') || html.includes('<img src=x'), 'markup from the result is escaped');
    assert.ok(html.includes('&lt;script&gt;alert(1)&lt;/script&gt;'));
    assert.not.ok(existsSync(join(dir, '..', '..', evil)));
  } finally {
    done();
  }
});

test('a sysctl name the lab checker accepts names a file under /proc/sys and nothing else', () => {
  const tries = ['net.core.somaxconn', 'net..core', '..', '../etc/passwd', 'net/../../etc', 'a.b/c', 'a.b\0', 'a.b\n', '.a.b', 'a.b.', 'a.-', 'net.ipv4.conf.all.rp_filter', 'fs.file-max', '-.-', '_._'];
  for (const name of tries) {
    if (!SYSCTL_NAME.test(name)) continue;
    // The agent's rule: dots are path separators under /proc/sys.
    const path = resolve('/proc/sys', name.replaceAll('.', '/'));
    assert.ok(path.startsWith('/proc/sys/') && !path.slice('/proc/sys/'.length).split('/').some((p) => p === '..' || p === '.' || p === ''), `${name} -> ${path}`);
  }
  assert.not.ok(SYSCTL_NAME.test('net..core') || SYSCTL_NAME.test('../etc/passwd') || SYSCTL_NAME.test('a.b\0') || SYSCTL_NAME.test('a.b\n'));
});

// ---- the real process ----

test(`the lab CLI (${RUNTIME}) answers an alias bomb with its position and exit 2, not an internal error`, async () => {
  const file = `${CORPUS}/labs/alias-bomb.yaml`;
  const r = await runCli(['validate', file], { runtime: RUNTIME, timeoutMs: 60_000 });
  assert.is(r.code, 2);
  assert.is(r.stderr, `${file}:7:11: Cannot parse YAML: aliases expand to more than 100000 nodes (is it an alias bomb?)\n1 problem found\n`);
});

test.run();
