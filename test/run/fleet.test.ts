// Fleets over SSH, for real: `lab hosts up --roles client:4,server` makes four
// client hosts and one server, each a namespace running OpenSSH sshd, and an
// Ansible INI inventory for them. The multi-IP and port-exhaustion labs run
// against that INI (keys, user, known_hosts from it) with per-host and
// per-role predictions equal to the observations; `--each` runs a lab once per
// client, one with a narrower port range from an inventory host var; one host
// that cannot be reached aborts the run and every other host is restored.

import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { hostsDown, hostsUp } from '../../runner/hosts/hostsup.ts';
import { loadInventory } from '../../runner/hosts/inventory.ts';
import type { LocalNetwork } from '../../runner/hosts/netns.ts';
import type { EachResult, RunResult } from '../../runner/result.ts';
import { assertSshHostsClean, runCli } from '../helpers.ts';

const work = mkdtempSync(join(tmpdir(), 'lab-fleet-'));
const inventory = join(work, 'inventory.yaml');
const ini = join(work, 'inventory.ini');
const CLIENTS = ['client-1', 'client-2', 'client-3', 'client-4'];
let network: LocalNetwork;

test.before(async () => {
  ({ network } = await hostsUp({ roles: ['client:4', 'server'], out: inventory }));
});

test.after(async () => {
  const problems = await hostsDown();
  rmSync(work, { recursive: true, force: true });
  assert.equal(problems, [], 'hostsDown() problems');
});

const assertHostsClean = (what: string) => assertSshHostsClean(network.hosts.map((h) => h.namespace), what);

/** The INI with lines changed, written beside it. */
function iniWith(name: string, change: (text: string) => string): string {
  const file = join(work, `${name}.ini`);
  writeFileSync(file, change(readFileSync(ini, 'utf8')));
  return file;
}

function result(dir: string): RunResult {
  return JSON.parse(readFileSync(join(dir, 'result.json'), 'utf8')) as RunResult;
}

/** Per-host predictions equal observations, and the role's total is their sum. */
function assertFleetPredictions(r: RunResult, metric: string, perHost: number) {
  const hosts = r.predictions.filter((p) => p.metric === metric && p.host !== undefined);
  assert.equal(hosts.map((p) => p.host), CLIENTS);
  for (const p of hosts) {
    assert.is(p.predicted, perHost, `${p.host}: ${p.derivation}`);
    assert.is(p.observed, perHost, `${p.host}: observed`);
  }
  const total = r.predictions.find((p) => p.metric === metric && p.host === undefined && p.role === 'client')!;
  assert.equal([total.predicted, total.observed, total.verdict], [perHost * 4, perHost * 4, 'pass']);
}

test('lab hosts up --roles client:4,server writes an Ansible INI that reads back as four clients and a server', () => {
  const inv = loadInventory(ini, readFileSync(ini, 'utf8'));
  assert.is(inv.format, 'ansible-ini');
  assert.equal(inv.groups.client, CLIENTS);
  assert.equal(inv.groups.server, ['server']);
  const c1 = inv.hosts['client-1']!;
  assert.equal([c1.address, c1.user, c1.hostKey, c1.local, c1.aliases.length], ['198.19.0.1', 'root', 'check', true, 8]);
  assert.match(c1.identity!, /\/run\/lab\/hosts-up\/[0-9a-f]+\/id_ed25519$/);
  assert.match(c1.knownHosts, /\/run\/lab\/hosts-up\/[0-9a-f]+\/known_hosts$/);
});

test('lab plan -i INI shows which hosts each role got', async () => {
  const r = await runCli(['plan', 'labs/port-exhaustion.yaml', '-i', ini]);
  assert.is(r.code, 0, r.stderr);
  assert.match(r.stdout, 'role client: group "client", 4 hosts: client-1, client-2, client-3, client-4');
  assert.match(r.stdout, 'role server: group "server", 1 host: server');
  assert.match(r.stdout, 'host client-3 (client): root@198.19.0.3:22 over SSH (a namespace on this machine), address 198.19.0.3');
  assertHostsClean('after plan');
});

test('port-exhaustion over the INI: each client exhausts its own range, the role sums them', async () => {
  const dir = join(work, 'pe');
  const r = await runCli(['run', 'labs/port-exhaustion.yaml', '-i', ini, '--out', dir, '--forks', '3']);
  assert.is(r.code, 0, r.stderr + r.stdout);
  const res = result(dir);
  assert.is(res.hosts.length, 5);
  assert.ok(res.hosts.every((h) => h.transport === 'ssh'));
  assertFleetPredictions(res, 'ramp.established', 1000);
  const errors = res.predictions.filter((p) => p.metric === 'ramp.firstError');
  assert.equal(errors.map((p) => [p.host, p.predicted, p.observed]), CLIENTS.map((c) => [c, 'EADDRNOTAVAIL', 'EADDRNOTAVAIL']));
  assert.is(res.steps.find((s) => s.name === 'ramp')!.metrics.established, 4000);
  const md = readFileSync(join(dir, 'report.md'), 'utf8');
  assert.match(md, '### client: 4 hosts');
  assert.match(md, '| client-2 | 198.19.0.2 | 40000–40999 (1000 ports) | 1000 / 1000 ✅ | EADDRNOTAVAIL / EADDRNOTAVAIL ✅ |');
  assert.match(md, '| **total** | | | **4000 / 4000** ✅ |');
  assertHostsClean('after port-exhaustion');
});

test('multi-ip over the INI: two source addresses on each of four clients, each exhausted', async () => {
  const dir = join(work, 'mi');
  // 10000 is more than the four clients' 4 × 2 × 1000: each reaches its own limit.
  const r = await runCli(['run', 'labs/multi-ip.yaml', '-i', ini, '--var', 'count=10000', '--out', dir]);
  assert.is(r.code, 0, r.stderr + r.stdout);
  assertFleetPredictions(result(dir), 'ramp.established', 2000);
  assertHostsClean('after multi-ip');
});

test('--each client: one run per client, a host var narrows one range, one side-by-side report', async () => {
  // Ansible host vars: client-3's "high" is what the lab's template reads for it.
  const file = iniWith('each', (t) => t.replace(/^(client-3 .*)$/m, '$1 high=40499'));
  const dir = join(work, 'each');
  const r = await runCli(['run', 'labs/port-exhaustion.yaml', '-i', file, '--each', 'client', '--out', dir], { timeoutMs: 240_000 });
  assert.is(r.code, 0, r.stderr + r.stdout);
  const each = JSON.parse(readFileSync(join(dir, 'each.json'), 'utf8')) as EachResult;
  assert.equal(each.runs.map((x) => x.host), CLIENTS);
  const established = each.runs.map((x) => x.result.predictions.find((p) => p.metric === 'ramp.established')!);
  assert.equal(established.map((p) => [p.predicted, p.observed, p.verdict]), [
    [1000, 1000, 'pass'],
    [1000, 1000, 'pass'],
    [500, 500, 'pass'],
    [1000, 1000, 'pass'],
  ]);
  // Each run had one client: the host of its column.
  assert.equal(each.runs.map((x) => x.result.hosts.filter((h) => h.role === 'client').map((h) => h.name)), CLIENTS.map((c) => [c]));
  const md = readFileSync(join(dir, 'report.md'), 'utf8');
  assert.match(md, '| | client-1 | client-2 | client-3 | client-4 |');
  assert.match(md, '| ≠ net.ipv4.ip_local_port_range | **40000–40999 (1000 ports)** | **40000–40999 (1000 ports)** | **40000–40499 (500 ports)** | **40000–40999 (1000 ports)** |');
  assert.match(md, '| ≠ ramp.established observed | **1000** | **1000** | **500** | **1000** |');
  assert.match(md, '| ramp.firstError observed | EADDRNOTAVAIL | EADDRNOTAVAIL | EADDRNOTAVAIL | EADDRNOTAVAIL |');
  assert.ok(existsSync(join(dir, 'client-3', 'report.html')));
  assertHostsClean('after --each');
});

test('--each on hosts of this machine asks for the acknowledgement of a machine-wide sysctl, as a single run does', async () => {
  const before = readFileSync('/proc/sys/fs/file-max', 'utf8');
  const dir = join(work, 'each-unacked');
  const r = await runCli(['run', 'test/fixtures/labs/run/global-unacked.yaml', '-i', ini, '--each', 'client', '--out', dir]);
  assert.is(r.code, 2, r.stderr + r.stdout);
  assert.match(r.stderr, 'changes machine-wide settings on this machine: fs.file-max = 2000000 (on client). ');
  assert.match(r.stderr, '--ack fs.file-max [NEEDS_ACK]');
  assert.is(readFileSync('/proc/sys/fs/file-max', 'utf8'), before, 'nothing was touched');
  assert.not.ok(existsSync(dir), 'no report folder for a refused run');
});

test('one client unreachable: the run stops naming it, and every other host is restored', async () => {
  const file = iniWith('down', (t) => t.replace(/^(client-4 .*)$/m, '$1 ansible_port=2222 lab_connect_timeout=2s'));
  const dir = join(work, 'down');
  const r = await runCli(['run', 'labs/port-exhaustion.yaml', '-i', file, '--out', dir]);
  assert.is(r.code, 3, r.stderr);
  assert.match(r.stderr, /client-4.*\[SSH_(UNREACHABLE|TIMEOUT)\]/s, r.stderr);
  const res = result(dir);
  assert.is(res.verdict, 'fail');
  assert.ok(res.restore.ok);
  assertHostsClean('after an unreachable client');
});

test.run();
