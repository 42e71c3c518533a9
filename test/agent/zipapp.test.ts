// The agent artifact: a zip that Python's own zipfile accepts and python3
// runs, byte for byte the same on every build.

import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { agentArtifact, agentEntries, buildZip, crc32 } from '../../runner/agent/zipapp.ts';

const text = (s: string) => new TextEncoder().encode(s);

test('crc32() matches the standard check value', () => {
  assert.is(crc32(text('123456789')), 0xcbf43926);
  assert.is(crc32(new Uint8Array(0)), 0);
});

test('buildZip() is deterministic: entry order does not matter, equal input gives equal bytes', () => {
  const a = buildZip([{ name: 'b.py', data: text('b') }, { name: 'a/x.py', data: text('x') }]);
  const b = buildZip([{ name: 'a/x.py', data: text('x') }, { name: 'b.py', data: text('b') }]);
  assert.equal(a, b);
  assert.equal(agentArtifact().bytes, buildZip(agentEntries()));
  assert.match(agentArtifact().name, /^agent-[0-9a-f]{16}\.pyz$/);
});

test('buildZip() refuses two entries with one name', () => {
  assert.throws(() => buildZip([{ name: 'a', data: text('1') }, { name: 'a', data: text('2') }]), /duplicate entry "a"/);
});

test('the artifact holds __main__.py and every module of lab_agent, and Python reads it', () => {
  const dir = mkdtempSync(join(tmpdir(), 'labt-zipapp-'));
  try {
    const path = join(dir, agentArtifact().name);
    writeFileSync(path, agentArtifact().bytes);
    const listing = execFileSync('python3', ['-c', [
      'import sys, zipfile',
      'z = zipfile.ZipFile(sys.argv[1])',
      'assert z.testzip() is None',
      'print("\\n".join(sorted(i.filename + " " + str(i.date_time[0]) for i in z.infolist())))',
    ].join('\n'), path], { encoding: 'utf8' }).trim().split('\n');
    assert.ok(listing.includes('__main__.py 1980'));
    assert.ok(listing.includes('lab_agent/dispatch.py 1980'));
    assert.ok(listing.includes('lab_agent/probes/__init__.py 1980'));
    assert.ok(listing.every((l) => l.endsWith(' 1980')), 'every timestamp is fixed');
    // python3 runs it directly: the ready line, then an answer, then exit on EOF.
    const run = spawnSync('python3', [path, '--label', 'lab:test'], { input: '{"id":1,"op":"hello"}\n', encoding: 'utf8', timeout: 20_000 });
    const lines = run.stdout.trim().split('\n').map((l) => JSON.parse(l));
    assert.equal(lines[0].event, 'ready');
    assert.equal(lines[1].id, 1);
    assert.equal(lines[1].ok, true);
    assert.is(run.status, 0, run.stderr);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test.run();
