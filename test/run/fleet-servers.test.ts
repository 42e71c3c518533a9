// Several hosts on the listening side, over SSH for real: `lab hosts up
// --roles client:2,server:2` makes two clients and two servers. `listen` on
// the server role listens on each server; `to: server:8080` spreads every
// client over both, so each client's ceiling is its port range times two
// destinations, and each server accepts what both clients sent it: per-host
// predictions equal observations. The agent runs with the interpreter the
// INI names (ansible_python_interpreter), and a wrong one stops the run
// naming it, with every host restored.

import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { mkdtempSync, readFileSync, realpathSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { hostsDown, hostsUp } from '../../runner/hosts/hostsup.ts';
import type { LocalNetwork } from '../../runner/hosts/netns.ts';
import type { RunResult } from '../../runner/result.ts';
import { assertSshHostsClean, runCli } from '../helpers.ts';

const work = mkdtempSync(join(tmpdir(), 'lab-fleet-servers-'));
const inventory = join(work, 'inventory.yaml');
const ini = join(work, 'inventory.ini');
let network: LocalNetwork;

test.before(async () => {
  ({ network } = await hostsUp({ roles: ['client:2', 'server:2'], out: inventory }));
});

test.after(async () => {
  const problems = await hostsDown();
  rmSync(work, { recursive: true, force: true });
  assert.equal(problems, [], 'hostsDown() problems');
});

const assertHostsClean = (what: string) => assertSshHostsClean(network.hosts.map((h) => h.namespace), what);

/** The INI with `[all:vars]` lines added. */
function iniWith(name: string, vars: string): string {
  const file = join(work, `${name}.ini`);
  writeFileSync(file, `${readFileSync(ini, 'utf8')}\n[all:vars]\n${vars}\n`);
  return file;
}

test('to: server:8080 with two servers: each client spreads over both, each server accepts from both', async () => {
  // The system's own interpreter, named as an Ansible inventory would.
  const file = iniWith('py', `ansible_python_interpreter=${realpathSync('/usr/bin/python3')}`);
  const dir = join(work, 'pe');
  const r = await runCli(['run', 'labs/port-exhaustion.yaml', '-i', file, '--out', dir]);
  assert.is(r.code, 0, r.stderr + r.stdout);
  const res = JSON.parse(readFileSync(join(dir, 'result.json'), 'utf8')) as RunResult;
  assert.equal(res.hosts.map((h) => [h.role, h.name]), [['client', 'client-1'], ['client', 'client-2'], ['server', 'server-1'], ['server', 'server-2']]);
  // 1000 ports × 2 destinations per client; 5000 asked, 4000 possible.
  const perHost = res.predictions.filter((p) => p.metric === 'ramp.established' && p.host !== undefined);
  assert.equal(perHost.map((p) => [p.host, p.predicted, p.observed, p.verdict]), [
    ['client-1', 2000, 2000, 'pass'],
    ['client-2', 2000, 2000, 'pass'],
  ]);
  assert.match(perHost[0]!.derivation, /2 destinations|× 2/);
  const total = res.predictions.find((p) => p.metric === 'ramp.established' && p.host === undefined)!;
  assert.equal([total.predicted, total.observed, total.verdict], [4000, 4000, 'pass']);
  // Each client used both servers, 1000 connections each.
  const ramp = res.steps.find((s) => s.name === 'ramp')!;
  for (const c of ['client-1', 'client-2']) {
    const pairs = (ramp.detail as Record<string, { perPair: Array<{ address: string; established: number }> }>)[c]!.perPair;
    assert.equal(pairs.map((p) => p.established), [1000, 1000], `${c}: ${JSON.stringify(pairs)}`);
    assert.equal(new Set(pairs.map((p) => p.address)).size, 2, `${c}: two servers`);
  }
  // `listen` on the role listened on each server, and each accepted from both clients.
  const listen = res.steps.find((s) => s.name === 'listen')!;
  assert.equal(Object.keys(listen.hosts ?? {}), ['server-1', 'server-2']);
  assert.equal(Object.values(listen.hosts!).map((h) => h.metrics.accepted), [2000, 2000]);
  assert.is(listen.metrics.accepted, 4000);
  assertHostsClean('after two servers');
});

test('an ansible_python_interpreter the host lacks stops the run naming it; every host is restored', async () => {
  const file = iniWith('nopy', 'ansible_python_interpreter=/nonexistent/bin/python3');
  const dir = join(work, 'nopy');
  const r = await runCli(['run', 'labs/port-exhaustion.yaml', '-i', file, '--out', dir]);
  assert.is(r.code, 3, r.stderr);
  assert.match(r.stderr, 'Cannot run "/nonexistent/bin/python3" (the inventory\'s python interpreter)');
  assert.match(r.stderr, '[HOST_NO_PYTHON]');
  assertHostsClean('after a missing interpreter');
});

test.run();
