// Runs the uvu test files under DIR matching PATTERN in this process and ends
// with the line CI reads, which never lies: "N passed, N failed, N skipped".
// A failed test, a file that cannot load, a file that ran no test and a
// suite hook that threw (with its reason) each count as failures.
// Usage: <runtime> bin/test-run.mjs DIR PATTERN (bin/test.mjs picks the runtime).
import { readFileSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
import { isUvuModule, UVU_PATCH } from './test-uvu-patch.mjs';

const [dir = 'test', pattern = '\\.test\\.ts$'] = process.argv.slice(2);

// uvu swallows hook errors; patch it as it loads (Node: loader hooks; Bun: a
// plugin). Deno has no load hook: there a swallowed hook shows as tests that
// did not run, without the reason.
if (globalThis.Bun) {
  globalThis.Bun.plugin({
    name: 'uvu-hook-errors',
    setup(build) {
      build.onLoad({ filter: /uvu[\\/]dist[\\/]index\.mjs$/ }, async (args) => ({
        contents: (await globalThis.Bun.file(args.path).text()) + UVU_PATCH,
        loader: 'js',
      }));
    },
  });
} else if (!globalThis.Deno) {
  const { register } = await import('node:module');
  register('./test-loader.mjs', import.meta.url);
}

globalThis.UVU_DEFER = 1;
globalThis.LAB_HOOK_ERRORS = [];
const uvu = await import('uvu');
const { parse } = await import(new URL('../node_modules/uvu/parse/index.mjs', import.meta.url).href);
const { suites } = await parse(dir, pattern);

const files = [];
let current;
for (const [index, s] of suites.entries()) {
  const file = { name: s.name, total: 0, passed: 0, skipped: 0, problems: [] };
  files.push(file);
  globalThis.UVU_INDEX = index;
  globalThis.UVU_QUEUE.push([s.name]);
  try {
    await import(pathToFileURL(s.file).href);
  } catch (e) {
    file.problems.push(`cannot load: ${e?.stack ?? e}`);
  }
  const late = testsAfterRun(s.file);
  if (late.length) {
    file.problems.push(`registers ${late.length} test(s) after its suite's last .run(), which uvu does not run as this file's: ${late.join(', ')}`);
    file.late = late.length;
  }
  // Each test.run() queued one suite: count what it ran, per file.
  const group = globalThis.UVU_QUEUE[index];
  for (let i = 1; i < group.length; i++) {
    const run = group[i];
    group[i] = async () => {
      current = file;
      const hooksBefore = globalThis.LAB_HOOK_ERRORS.length;
      const t0 = performance.now();
      const r = await run();
      file.ms = (file.ms ?? 0) + (performance.now() - t0);
      const [errors, passed, skipped, total] = r;
      file.total += total;
      file.passed += passed;
      file.skipped += skipped;
      // uvu formats each failed test once, under " FAIL ".
      const reported = typeof errors === 'string' ? errors.split(' FAIL ').length - 1 : 0;
      file.unreported = (file.unreported ?? 0) + Math.max(0, total - passed - reported);
      for (const h of globalThis.LAB_HOOK_ERRORS.slice(hooksBefore)) {
        file.problems.push(`${h.hook} hook${h.suite ? ` of suite "${h.suite}"` : ''} threw: ${h.error}`);
        // Tests a before hook kept from running count below (total − passed); an after hook's error counts on its own.
        if (h.hook === 'after') file.afterErrors = (file.afterErrors ?? 0) + 1;
      }
      return r;
    };
  }
}

try {
  await uvu.exec();
} catch (e) {
  // Only an unpatched uvu rejects here (an after hook threw): the file that was running fails.
  (current ?? files.at(-1) ?? { problems: [] }).problems.push(`uvu stopped: ${e?.stack ?? e}`);
}

let passed = 0;
let failed = 0;
let skipped = 0;
const report = [];
for (const f of files) {
  let fileFailed = f.total - f.passed + (f.afterErrors ?? 0) + (f.late ?? 0);
  if (f.problems.some((p) => p.startsWith('cannot load') || p.startsWith('uvu stopped'))) fileFailed += 1;
  else if (f.total === 0) {
    f.problems.push(f.skipped ? `ran no test: all ${f.skipped} skipped` : 'ran no test (none registered, or test.run() never called)');
    fileFailed += 1;
  }
  if (f.unreported && !f.problems.length) {
    // uvu printed nothing for tests it did not run: a hook threw and the patch was not in place (Deno).
    f.problems.push(`${f.unreported} test(s) neither passed nor failed: a suite hook threw${globalThis.LAB_UVU_PATCHED ? '' : ' (the reason is not available on this runtime)'}`);
  }
  passed += f.passed;
  failed += fileFailed;
  skipped += f.skipped;
  for (const p of f.problems) report.push(`${f.name}: ${p}`);
}
if (!files.length) {
  report.push(`no test file under "${dir}" matches /${pattern}/`);
  failed += 1;
}
// Where the time goes, so the suite stays short enough to run often.
const slowest = files.filter((f) => f.ms).sort((a, b) => b.ms - a.ms).slice(0, 5);
if (slowest.length) console.log(`\nSlowest: ${slowest.map((f) => `${f.name} ${(f.ms / 1000).toFixed(1)} s`).join(', ')}`);
if (report.length) console.log(`\nProblems:\n${report.map((r) => `  ${r.replaceAll('\n', '\n    ')}`).join('\n')}`);
console.log(`${passed} passed, ${failed} failed${skipped ? `, ${skipped} skipped` : ''}`);
process.exitCode = failed ? 1 : 0;

/**
 * Tests a file registers below its suite's last `<suite>.run()`: uvu queues a
 * suite's tests when run() is called, and one added later is never run as this
 * file's (a named suite's is dropped; the shared default `test` passes it to
 * the next file that runs it). Read from the source (every runtime, no hook
 * needed): calls of `test`, or of a suite made with suite(), at a line's start.
 */
function testsAfterRun(path) {
  const text = readFileSync(path, 'utf8');
  const names = new Set(['test', ...[...text.matchAll(/\b([A-Za-z_$][\w$]*)\s*=\s*suite\(/g)].map((m) => m[1])]);
  const late = [];
  for (const name of names) {
    const n = name.replace(/\$/g, '\\$');
    const runs = [...text.matchAll(new RegExp(`^${n}\\.run\\(\\)`, 'gm'))];
    if (!runs.length) continue;
    const after = text.slice(runs.at(-1).index);
    const call = new RegExp(`^${n}(?:\\.only)?\\(\\s*(['"\`])(.*?)\\1`, 'gm');
    late.push(...[...after.matchAll(call)].map((m) => JSON.stringify(m[2])));
  }
  return late;
}
