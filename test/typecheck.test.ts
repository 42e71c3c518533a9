// The whole tree type-checks under `strict`: runner, tests and benches.

import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawnSync } from 'node:child_process';
import { ROOT } from './helpers.ts';

test('tsc -p . reports no type errors', () => {
  const r = spawnSync('node', ['node_modules/typescript/bin/tsc', '-p', '.'], { cwd: ROOT, encoding: 'utf8' });
  assert.is(r.status, 0, r.stdout + r.stderr);
});

test.run();
