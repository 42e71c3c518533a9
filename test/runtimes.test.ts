// The CLI on Bun and Deno: `lab validate` and the shipped port-exhaustion lab,
// end to end on real namespaces, give the same verdict as on Node.

import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { RunResult } from '../runner/result.ts';
import { agentPids, namespaces, runCli, type Runtime } from './helpers.ts';

const out = mkdtempSync(join(tmpdir(), 'lab-runtimes-'));
test.after(() => rmSync(out, { recursive: true, force: true }));

for (const runtime of ['bun', 'deno'] as Runtime[]) {
  test(`lab validate runs under ${runtime}`, async () => {
    const r = await runCli(['validate', 'labs/port-exhaustion.yaml'], { runtime });
    assert.is(r.code, 0, r.stderr);
    assert.match(r.stdout, 'labs/port-exhaustion.yaml: ok');
  });

  test(`lab run labs/port-exhaustion.yaml passes under ${runtime} and leaves nothing`, async () => {
    const dir = join(out, runtime);
    const r = await runCli(['run', 'labs/port-exhaustion.yaml', '--out', dir], { runtime });
    assert.is(r.code, 0, r.stderr + r.stdout);
    const result = JSON.parse(readFileSync(join(dir, 'result.json'), 'utf8')) as RunResult;
    assert.is(result.verdict, 'pass');
    assert.ok(result.tool.runtime.startsWith(runtime), result.tool.runtime);
    assert.equal(result.predictions.map((p) => p.observed), [1000, 'EADDRNOTAVAIL']);
    const id = result.hosts[0]!.target.split('-')[1]!;
    assert.equal(namespaces().filter((n) => n.startsWith(`lab-${id}-`)), []);
    assert.equal(agentPids(`lab:lab-${id}-`), []);
  });
}

test.run();
