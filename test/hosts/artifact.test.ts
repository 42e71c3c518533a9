// Artifacts reach a host once per content: on this machine through its cache
// directory (real files in a temporary directory here), over commands through
// test -f, an upload beside the final name and a move (a scripted host here;
// test/hosts/ssh.test.ts and test/run/ssh.test.ts do it over a real sshd).

import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { installLocal, installOverExec } from '../../runner/hosts/artifact.ts';
import type { Artifact, ExecResult } from '../../runner/hosts/transport.ts';

const artifact: Artifact = { name: 'agent-00112233aabbccdd.pyz', hash: '00112233aabbccdd', bytes: new TextEncoder().encode('PK fake zip') };

test('installLocal() writes the artifact once, readable by all, and leaves no temporary file', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'labt-artifact-'));
  try {
    const cache = join(dir, 'cache');
    const path = await installLocal(artifact, cache);
    assert.is(path, join(cache, artifact.name));
    assert.is(readFileSync(path, 'utf8'), 'PK fake zip');
    assert.is(statSync(path).mode & 0o777, 0o644);
    // Already there (and a month unused): not written again, only marked used now (lab_agent/cache.py prunes by it).
    writeFileSync(path, 'PK the copy already there');
    const month = new Date(Date.now() - 30 * 86400_000);
    utimesSync(path, month, month);
    assert.is(await installLocal(artifact, cache), path);
    assert.is(readFileSync(path, 'utf8'), 'PK the copy already there', 'an artifact already there is not written again');
    assert.ok(statSync(path).mtimeMs > Date.now() - 60_000, 'and is marked used now');
    assert.equal(readdirSync(cache), [artifact.name]);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

function scriptedHost(have: boolean) {
  const calls: string[][] = [];
  const puts: string[] = [];
  const host = {
    role: 'client',
    async exec(argv: string[]): Promise<ExecResult> {
      calls.push(argv);
      return { code: argv[0] === 'test' && !have ? 1 : 0, signal: null, stdout: '', stderr: '' };
    },
    async putFile(path: string) {
      puts.push(path);
    },
  };
  return { host, calls, puts };
}

test('installOverExec() uploads beside the final name and moves into place when the hash is new', async () => {
  const { host, calls, puts } = scriptedHost(false);
  const path = await installOverExec(host, artifact);
  assert.is(path, `/var/tmp/lab-agent/${artifact.name}`);
  assert.is(puts.length, 1);
  assert.match(puts[0]!, new RegExp(`^/var/tmp/lab-agent/${artifact.name}\\.[0-9a-f]{12}\\.tmp$`));
  assert.equal(calls, [['test', '-f', path], ['mv', '-f', puts[0]!, path]]);
});

test('installOverExec() costs one test -f when the host has that hash already', async () => {
  const { host, calls, puts } = scriptedHost(true);
  await installOverExec(host, artifact);
  assert.equal(puts, []);
  assert.equal(calls, [['test', '-f', `/var/tmp/lab-agent/${artifact.name}`]]);
});

test.run();
