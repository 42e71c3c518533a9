#!/usr/bin/env node
// Runs the uvu suites under test/ on one runtime and ends with the line CI
// reads: "N passed, N failed". Usage: node bin/test.mjs [--runtime node|bun|deno] [dir] [pattern]
import { spawn } from 'node:child_process';

const args = process.argv.slice(2);
let runtime = 'node';
const ri = args.indexOf('--runtime');
if (ri >= 0) {
  runtime = args[ri + 1];
  args.splice(ri, 2);
}
const dir = args[0] ?? 'test';
const pattern = args[1] ?? '\\.test\\.ts$';
const uvu = 'node_modules/uvu/bin.js';
const argv = {
  node: ['node', ['--import', 'tsx', uvu, dir, pattern]],
  bun: ['node_modules/.bin/bun', [uvu, dir, pattern]],
  deno: ['node_modules/.bin/deno', ['run', '-A', uvu, dir, pattern]],
}[runtime];
if (!argv) {
  console.error(`unknown runtime "${runtime}": use node, bun or deno`);
  process.exit(2);
}

const child = spawn(argv[0], argv[1], { stdio: ['ignore', 'pipe', 'inherit'], env: { ...process.env, FORCE_COLOR: '0', NO_COLOR: '1' } });
let out = '';
child.stdout.on('data', (d) => {
  out += d;
  process.stdout.write(d);
});
child.on('close', (code) => {
  const num = (label) => Number((out.match(new RegExp(`${label}:\\s+(\\d+)`)) ?? [])[1] ?? NaN);
  const total = num('Total');
  const passed = num('Passed');
  if (Number.isNaN(total) || Number.isNaN(passed)) {
    // uvu stopped before its summary (a file failed to load): count that as a failure.
    console.log(`0 passed, 1 failed`);
    process.exit(code || 1);
  }
  const skipped = num('Skipped') || 0;
  const failed = total - passed - skipped;
  console.log(`${passed} passed, ${failed} failed${skipped ? `, ${skipped} skipped` : ''}`);
  process.exit(failed > 0 || code ? 1 : 0);
});
