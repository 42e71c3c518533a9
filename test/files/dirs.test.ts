// makeDirs(): mkdir -p for folders a user names, which fails at once where
// Node's recursive mkdir never returns (a path under /proc).

import { existsSync, mkdtempSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { makeDirs, makeDirsSync } from '../../runner/files/dirs.ts';

const code = async (p: Promise<unknown>) => p.then(() => 'made', (e: NodeJS.ErrnoException) => e.code);
const codeSync = (f: () => void) => {
  try {
    f();
    return 'made';
  } catch (e) {
    return (e as NodeJS.ErrnoException).code;
  }
};

test('makeDirs() makes the missing folders and is a no-op when they exist', async () => {
  const root = mkdtempSync(join(tmpdir(), 'lab-dirs-'));
  await makeDirs(join(root, 'a', 'b', 'c'));
  assert.ok(statSync(join(root, 'a', 'b', 'c')).isDirectory());
  await makeDirs(join(root, 'a', 'b', 'c'));
  makeDirsSync(join(root, 'x', 'y'), 0o700);
  assert.is(statSync(join(root, 'x', 'y')).mode & 0o777, 0o700);
});

test('makeDirs() fails at once with the kernel\'s error under /proc and below a file (Node\'s recursive mkdir spins forever there)', async () => {
  assert.is(await code(makeDirs('/proc/lab-nope/out')), 'ENOENT');
  assert.is(codeSync(() => makeDirsSync('/proc/lab-nope')), 'ENOENT');
  assert.not.ok(existsSync('/proc/lab-nope'));
  const file = join(mkdtempSync(join(tmpdir(), 'lab-dirs-')), 'f');
  writeFileSync(file, '');
  assert.is(await code(makeDirs(join(file, 'sub'))), 'ENOTDIR');
  assert.is(codeSync(() => makeDirsSync(join(file, 'sub'))), 'ENOTDIR');
  // A file where the folder should be is no folder: --out FILE is refused before the run, not after it.
  assert.is(await code(makeDirs(file)), 'EEXIST');
  assert.is(codeSync(() => makeDirsSync(file)), 'EEXIST');
});

test.run();
