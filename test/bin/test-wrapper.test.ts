// bin/test.mjs, the line CI trusts: "N passed, N failed". Each case runs the
// wrapper on small throwaway uvu files: skips are reported (and not failures),
// files that ran no test and files that cannot load count as failures, and a
// suite hook that throws shows its reason and counts.

import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ROOT } from '../helpers.ts';

const dir = mkdtempSync(join(tmpdir(), 'lab-wrapper-test-'));
// The throwaway files import uvu as test files do.
symlinkSync(join(ROOT, 'node_modules'), join(dir, 'node_modules'));
test.after(() => rmSync(dir, { recursive: true, force: true }));

function files(name: string, contents: Record<string, string>): string {
  const d = join(dir, name);
  mkdirSync(d);
  for (const [f, text] of Object.entries(contents)) writeFileSync(join(d, f), `import { test, suite } from 'uvu';\nimport * as assert from 'uvu/assert';\n${text}\n`);
  return d;
}

function wrapper(d: string, pattern = '\\.test\\.mjs$') {
  const r = spawnSync('node', ['bin/test.mjs', d, pattern], { cwd: ROOT, encoding: 'utf8', timeout: 60_000 });
  const lines = r.stdout.trimEnd().split('\n');
  return { code: r.status, last: lines.at(-1), out: r.stdout + r.stderr };
}

test('skipped tests are reported as skipped, not failed (uvu\'s total already leaves them out)', () => {
  const d = files('skips', {
    'a.test.mjs': `test('passes', () => {});\ntest.skip('later', () => {});\ntest('fails', () => assert.is(1, 2));\ntest.run();`,
  });
  const r = wrapper(d);
  assert.is(r.last, '1 passed, 1 failed, 1 skipped', r.out);
  assert.is(r.code, 1);
  const ok = wrapper(files('skips-ok', { 'a.test.mjs': `test('passes', () => {});\ntest.skip('later', () => {});\ntest.run();` }));
  assert.is(ok.last, '1 passed, 0 failed, 1 skipped', ok.out);
  assert.is(ok.code, 0);
});

test('a test registered after its suite\'s run() counts as failed, by name (uvu would drop it without a word)', () => {
  // uvu's default suite is one for every file: a late test there would run with the next file's; the last file has one.
  const d = files('late', {
    'a.test.mjs': `const s = suite('named');\ns('first', () => {});\ns.run();\ns("second", () => {});\nconst $t = suite('other');\n$t('third', () => {});\n$t.run();`,
    'b.test.mjs': `const s = suite('two');\ns('x', () => {});\ntest('y', () => {});\ns.run();\ntest.run();`,
    'c.test.mjs': `test('early', () => {});\ntest.run();\n\ntest('late one', () => {});`,
  });
  const r = wrapper(d);
  assert.is(r.last, '5 passed, 2 failed', r.out);
  // "second" comes before another suite's run(), after its own.
  assert.match(r.out, /a\.test\.mjs: registers 1 test\(s\) after its suite's last \.run\(\), which uvu does not run as this file's: "second"/);
  assert.match(r.out, /c\.test\.mjs: registers 1 test\(s\) after its suite's last \.run\(\), which uvu does not run as this file's: "late one"/);
});

test('a before hook that throws shows its reason and fails the tests it kept from running', () => {
  const d = files('before', {
    'a.test.mjs': `test.before(() => { throw new Error('sshd is not installed'); });\ntest('one', () => {});\ntest('two', () => {});\ntest.run();`,
    'b.test.mjs': `const s = suite('named');\ns.before(async () => { throw new Error('not root'); });\ns('three', () => {});\ns.run();`,
    'c.test.mjs': `test('fine', () => {});\ntest.run();`,
  });
  const r = wrapper(d);
  assert.is(r.last, '1 passed, 3 failed', r.out);
  assert.is(r.code, 1);
  assert.match(r.out, /a\.test\.mjs: before hook threw: Error: sshd is not installed/);
  assert.match(r.out, /b\.test\.mjs: before hook of suite "named" threw: Error: not root/);
});

test('an after hook that throws counts as a failure with its reason, and later files still run', () => {
  const d = files('after', {
    'a.test.mjs': `test.after(() => { throw new Error('could not clean up'); });\ntest('one', () => {});\ntest.run();`,
    'b.test.mjs': `test('two', () => {});\ntest.run();`,
  });
  const r = wrapper(d);
  assert.is(r.last, '2 passed, 1 failed', r.out);
  assert.match(r.out, /a\.test\.mjs: after hook threw: Error: could not clean up/);
});

test('a file that ran no test, or cannot load, is a failure', () => {
  const d = files('empty', {
    'none.test.mjs': `// every test here was deleted`,
    'broken.test.mjs': `throw new Error('syntax of the setup');`,
    'ok.test.mjs': `test('fine', () => {});\ntest.run();`,
  });
  const r = wrapper(d);
  assert.is(r.last, '1 passed, 2 failed', r.out);
  assert.match(r.out, /none\.test\.mjs: ran no test/);
  assert.match(r.out, /broken\.test\.mjs: cannot load: Error: syntax of the setup/);
});

test('no test file at all is a failure, not success', () => {
  const r = wrapper(files('nothing', {}));
  assert.is(r.last, '0 passed, 1 failed', r.out);
  assert.match(r.out, 'no test file under');
  assert.is(r.code, 1);
});

test('a test process that dies before its summary is a failure, counting what ran', () => {
  const d = files('dies', {
    'a.test.mjs': `test('one', () => {});\ntest.run();`,
    'b.test.mjs': `test('exits', () => process.exit(0));\ntest.run();`,
  });
  const r = wrapper(d);
  assert.match(r.out, /the test process ended before its summary \(exit code \d+\)/);
  assert.is(r.last, '1 passed, 1 failed', r.out);
  assert.is(r.code, 1);
});

test.run();
