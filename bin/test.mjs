#!/usr/bin/env node
// Runs the uvu suites under test/ on one runtime (through bin/test-run.mjs,
// which counts honestly) and ends with the line CI reads: "N passed, N failed".
// Usage: node bin/test.mjs [--runtime node|bun|deno] [dir] [pattern]
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
const runner = new URL('./test-run.mjs', import.meta.url).pathname;
const argv = {
  node: ['node', ['--import', 'tsx', runner, dir, pattern]],
  bun: ['node_modules/.bin/bun', [runner, dir, pattern]],
  deno: ['node_modules/.bin/deno', ['run', '-A', runner, dir, pattern]],
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
child.on('close', (code, signal) => {
  const closing = /^(\d+) passed, (\d+) failed/m.exec(out.trimEnd().split('\n').at(-1) ?? '');
  if (closing) {
    process.exit(Number(closing[2]) > 0 || code ? 1 : 0);
  }
  // The runner died before its summary (a test called process.exit, a crash):
  // count what uvu printed per suite, "(passed / total)", and the death itself.
  let passed = 0;
  let failed = 1;
  for (const m of out.matchAll(/\((\d+) \/ (\d+)\)/g)) {
    passed += Number(m[1]);
    failed += Number(m[2]) - Number(m[1]);
  }
  console.log(`\nthe test process ended before its summary (${signal ? `signal ${signal}` : `exit code ${code}`})`);
  console.log(`${passed} passed, ${failed} failed`);
  process.exit(1);
});
