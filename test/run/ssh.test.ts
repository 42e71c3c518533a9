// The same labs over SSH, against `lab hosts up` hosts (namespaces running a
// real OpenSSH sshd): every shipped lab passes, under Node, Bun and Deno; and
// every way a host can fail — bad auth, unknown or changed host key,
// unreachable, sshd killed mid-run, the controller killed mid-run — gives a
// clear error and leaves the hosts as they were.

import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { hostsDown, hostsUp, HOSTS_UP_DIR, SSHD } from '../../runner/hosts/hostsup.ts';
import type { LocalNetwork } from '../../runner/hosts/netns.ts';
import type { RunResult } from '../../runner/result.ts';
import { agentPids, assertSshHostsClean, inventoryWith, parentPid, readSysctl, ROOT, runCli, runShippedLab, waitForListener, type Runtime } from '../helpers.ts';

const work = mkdtempSync(join(tmpdir(), 'lab-ssh-run-'));
const inventory = join(work, 'inventory.yaml');
let network: LocalNetwork;

test.before(async () => {
  ({ network } = await hostsUp({ roles: ['client', 'server'], out: inventory }));
});

test.after(async () => {
  const problems = await hostsDown();
  rmSync(work, { recursive: true, force: true });
  assert.equal(problems, [], 'hostsDown() problems');
});

const ns = (role: string) => network.hosts.find((h) => h.role === role)!.namespace;


/** No agent, no journal, no lock, the fresh-namespace port range: the host is as it was. */
const assertHostsClean = (what: string) => assertSshHostsClean(['client', 'server'].map(ns), what);

/** assertHostsClean, allowing `ms` for an agent that is still undoing its own journal. */
async function eventuallyClean(what: string, ms = 15_000) {
  const deadline = Date.now() + ms;
  for (;;) {
    try {
      return assertHostsClean(what);
    } catch (e) {
      if (Date.now() > deadline) throw e;
      await new Promise((r) => setTimeout(r, 250));
    }
  }
}

/** Kill -9 the probe agent (and its workers) on a role's host: a host-side crash in small. */
function killAgentOn(role: string): number {
  const address = network.hosts.find((h) => h.role === role)!.address;
  let killed = 0;
  for (const pid of agentPids(`lab:root@${address}:`)) {
    try {
      process.kill(pid, 'SIGKILL');
      killed++;
    } catch {
      // It ended between the listing and the kill (a short-lived fork of the agent).
    }
  }
  return killed;
}

/** Start a role's sshd again (after killSshdIn), as `lab hosts up` did, and wait until it listens. */
async function restartSshd(role: string) {
  const dir = `${HOSTS_UP_DIR}/${network.id}/${role}`;
  killSshdIn(role);
  execFileSync('ip', ['netns', 'exec', ns(role), SSHD, '-f', `${dir}/sshd_config`, '-E', `${dir}/sshd.log`]);
  const address = network.hosts.find((h) => h.role === role)!.address;
  // sshd daemonizes before it listens: wait until port 22 takes a connection (the root namespace reaches 198.19.0.0/16).
  await waitForListener(address, 22, `sshd in ${ns(role)}`);
}


const shippedLabs = readdirSync(join(ROOT, 'labs')).filter((f) => f.endsWith('.yaml'));

for (const lab of shippedLabs) {
  test(`labs/${lab} passes over SSH on lab hosts up hosts`, async () => {
    const dir = join(work, `lab-${lab}`);
    const { run: r, results } = await runShippedLab(lab, ['-i', inventory], dir);
    assert.is(r.code, 0, r.stderr + r.stdout);
    const result = results[results.length - 1]!;
    assert.ok(result.hosts.every((h) => h.transport === 'ssh'));
    assert.ok(result.predictions.length > 0 && result.predictions.every((p) => p.verdict === 'pass'));
    assertHostsClean(`after labs/${lab}`);
  });
}

for (const runtime of ['bun', 'deno'] as Runtime[]) {
  test(`labs/port-exhaustion.yaml passes over SSH under ${runtime}`, async () => {
    const dir = join(work, `pe-${runtime}`);
    const r = await runCli(['run', 'labs/port-exhaustion.yaml', '-i', inventory, '--out', dir], { runtime });
    assert.is(r.code, 0, r.stderr + r.stdout);
    const result = JSON.parse(readFileSync(join(dir, 'result.json'), 'utf8')) as RunResult;
    assert.equal(result.predictions.map((p) => p.observed), [1000, 'EADDRNOTAVAIL']);
    assert.match(result.tool.runtime, runtime);
    assertHostsClean(`after port-exhaustion under ${runtime}`);
  });
}

test('lab plan -i shows the hosts\' current values → the lab\'s, and changes nothing', async () => {
  const r = await runCli(['plan', 'labs/port-exhaustion.yaml', '-i', inventory]);
  assert.is(r.code, 0, r.stderr);
  assert.match(r.stdout, 'host client: root@198.19.0.1:22 over SSH (a namespace on this machine), address 198.19.0.1');
  assert.match(r.stdout, 'sysctl net.ipv4.ip_local_port_range: 32768 60999 → 40000 40999');
  assertHostsClean('after plan');
});

test('lab run on real (non-local) hosts asks for --yes before changing anything', async () => {
  const real = inventoryWith(inventory, work, 'real', (inv) => {
    for (const h of Object.values<any>(inv.hosts)) h.local = false;
  });
  const r = await runCli(['run', 'labs/port-exhaustion.yaml', '-i', real, '--out', join(work, 'real')]);
  assert.is(r.code, 2, r.stderr);
  assert.match(r.stderr, 'This run changes real hosts (above): run again with --yes to go ahead [NEEDS_YES]');
  assert.match(r.stderr, '32768 60999 → 40000 40999');
  assert.not.ok(existsSync(join(work, 'real', 'result.json')));
  const yes = await runCli(['run', 'labs/port-exhaustion.yaml', '-i', real, '--yes', '--out', join(work, 'real')]);
  assert.is(yes.code, 0, yes.stderr);
  assertHostsClean('after --yes');
});

/** A run that fails on the server's connection: exit 3, the server and the cause named, the client restored. */
async function failsOnServer(name: string, change: (server: any) => void, expected: RegExp) {
  const file = inventoryWith(inventory, work, name, (inv) => change(inv.hosts.server));
  const r = await runCli(['run', 'labs/port-exhaustion.yaml', '-i', file, '--out', join(work, name)]);
  assert.is(r.code, 3, r.stderr);
  assert.match(r.stderr, expected);
  const result = JSON.parse(readFileSync(join(work, name, 'result.json'), 'utf8')) as RunResult;
  assert.is(result.verdict, 'fail');
  assert.ok(result.predictions.every((p) => p.verdict === 'not-measured'));
  assertHostsClean(`after ${name}`);
}

test('a refused login names the host and the methods tried, and restores the others', async () => {
  const wrongKey = join(work, 'wrong_key');
  execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', wrongKey]);
  await failsOnServer('auth', (s) => (s.identity = wrongKey), /server: .*\[SSH_AUTH\]/);
});

test('an unknown host key is refused unless accepted, naming the host', async () => {
  const empty = join(work, 'empty_known_hosts');
  writeFileSync(empty, '');
  await failsOnServer('unknown-key', (s) => (s.known_hosts = empty), /server: .*host_key: accept-new.*\[SSH_HOSTKEY_UNKNOWN\]/s);
});

test('unknown host keys on several hosts are all named in one refusal, not one run per key', async () => {
  const empty = join(work, 'empty_known_hosts_all');
  writeFileSync(empty, '');
  const file = inventoryWith(inventory, work, 'unknown-all', (inv) => {
    for (const h of Object.values(inv.hosts) as any[]) h.known_hosts = empty;
  });
  const r = await runCli(['run', 'labs/port-exhaustion.yaml', '-i', file, '--out', join(work, 'unknown-all')]);
  assert.is(r.code, 3, r.stderr);
  assert.match(r.stderr, /client: Host key of .* is unknown/);
  assert.match(r.stderr, /server: Host key of .* is unknown/);
  assert.match(r.stderr, '  client: not reached, nothing to restore');
  assertHostsClean('after unknown keys on every host');
});

test('a changed host key is refused, naming the host and both fingerprints', async () => {
  const other = join(work, 'other_key');
  execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', other]);
  const changed = join(work, 'changed_known_hosts');
  writeFileSync(changed, `198.19.0.2 ${readFileSync(`${other}.pub`, 'utf8').split(' ').slice(0, 2).join(' ')}\n`);
  await failsOnServer('changed-key', (s) => (s.known_hosts = changed), /server: .*SHA256:.*SHA256:.*\[SSH_HOSTKEY_CHANGED\]/s);
});

test('an unreachable host is reported within its connect timeout, naming it', async () => {
  await failsOnServer(
    'unreachable',
    (s) => {
      s.address = '198.19.0.200';
      s.connect_timeout = '2s';
    },
    /server: .*198\.19\.0\.200.*\[SSH_(UNREACHABLE|TIMEOUT)\]/s,
  );
});

test('a second run on the same hosts is refused by the lock, naming the first run', async () => {
  let second: Awaited<ReturnType<typeof runCli>> | undefined;
  const first = await runCli(['run', 'test/fixtures/labs/run/slow.yaml', '-i', inventory, '--out', join(work, 'lock-1')], {
    onStderr: (text, kill) => {
      if (second || !text.includes('step hold')) return;
      second = {} as never;
      runCli(['run', 'labs/port-exhaustion.yaml', '-i', inventory, '--out', join(work, 'lock-2')]).then((r) => {
        second = r;
        kill('SIGINT');
      });
    },
  });
  assert.is(first.code, 130, first.stderr);
  assert.is(second!.code, 3, second!.stderr);
  assert.match(second!.stderr, /\/run\/lab\/host\/198\.19\.0\.\d\.journal\.lock: held by lab run slow by pid \d+ on .* since .*\[LOCKED\]/);
  assertHostsClean('after two runs on one host');
  // The interrupted run's 50 connections were closed by RST: no TIME_WAIT toward server:8080 for the next run
  // (labs/time-wait.yaml, run above, leaves its own toward 8090).
  assert.equal(['client', 'server'].map(timeWaitOn8080), [0, 0], 'TIME_WAIT sockets left by an interrupted run');
});

/** TCP sockets in TIME_WAIT in a role's namespace on connections to or from port 8080. */
function timeWaitOn8080(role: string): number {
  const filter = '( dport = :8080 or sport = :8080 )';
  return execFileSync('ip', ['netns', 'exec', ns(role), 'ss', '-tanH', 'state', 'time-wait', filter], { encoding: 'utf8' }).split('\n').filter(Boolean).length;
}

/** Kill every sshd in a role's namespace, or with `listenerOnly` the one that listens (its sessions live on). */
function killSshdIn(role: string, listenerOnly = false) {
  const pids = execFileSync('ip', ['netns', 'pids', ns(role)], { encoding: 'utf8' }).split(/\s+/).filter(Boolean);
  const sshd = pids.filter((p) => {
    try {
      return readFileSync(`/proc/${p}/comm`, 'utf8').trim() === 'sshd';
    } catch {
      return false;
    }
  });
  const victims = listenerOnly
    ? sshd.filter((p) => {
        try {
          return !sshd.includes(String(parentPid(Number(p))));
        } catch {
          return false;
        }
      })
    : sshd;
  if (victims.length) execFileSync('kill', ['-KILL', ...victims]);
  return victims.length;
}

test('sshd killed mid-run: the run stops at once naming the host, says the client is not confirmed restored, and both hosts end as they were', async () => {
  const t0 = Date.now();
  let killed = 0;
  const dir = join(work, 'sshd-killed');
  const r = await runCli(['run', 'test/fixtures/labs/run/slow.yaml', '-i', inventory, '--out', dir], {
    onStderr: (text) => {
      if (!killed && text.includes('step hold')) killed = killSshdIn('client');
    },
  }).finally(() => killed > 0 && restartSshd('client'));
  assert.ok(killed > 0, 'sshd was running in the client namespace');
  assert.is(r.code, 3, r.stderr);
  assert.match(r.stderr, /client: Lost the agent on root@198\.19\.0\.1:22 .*\[HOST_LOST\]/);
  assert.ok(Date.now() - t0 < 30_000, 'the 60 s hold was cut short');
  // The run cannot reach the client to replay its journal, so it must not claim it did.
  assert.not.match(r.stderr, /restored client/);
  assert.match(r.stderr, `lab restore -i ${inventory}`);
  const result = JSON.parse(readFileSync(join(dir, 'result.json'), 'utf8')) as RunResult;
  assert.is(result.restore.ok, false);
  // The client's agent lost its stdin with the connection: it undoes its own journal and exits.
  await eventuallyClean('after sshd was killed');
});

test('agent killed mid-ramp: the run replays the client\'s journal with a fresh agent, says so, and both hosts end as they were', async () => {
  let killed = 0;
  const dir = join(work, 'agent-killed');
  const r = await runCli(['run', 'test/fixtures/labs/run/slow-ramp.yaml', '-i', inventory, '--out', dir], {
    onStderr: (text) => {
      if (!killed && text.includes('step ramp')) {
        killed = -1;
        setTimeout(() => (killed = killAgentOn('client')), 1000);
      }
    },
  });
  assert.ok(killed > 0, 'the client agent was running mid-ramp');
  assert.is(r.code, 3, r.stderr);
  assert.match(r.stderr, /client: Lost the agent on root@198\.19\.0\.1:22 \(.*\).*\[HOST_LOST\]/);
  assert.match(r.stderr, 'restored client (its agent was lost: a fresh agent replayed its journal)');
  const result = JSON.parse(readFileSync(join(dir, 'result.json'), 'utf8')) as RunResult;
  assert.is(result.restore.ok, true, result.restore.problems.join('\n'));
  assert.ok(result.notes.some((n) => n.startsWith('client: the agent was lost; its journal was replayed by a fresh agent')), result.notes.join('\n'));
  assertHostsClean('after the agent was killed mid-ramp');
});

test('agent killed and sshd gone mid-ramp: the client is reported not restored, with what is still changed and the command, which undoes it', async () => {
  let killed = 0;
  const dir = join(work, 'agent-and-sshd-killed');
  const r = await runCli(['run', 'test/fixtures/labs/run/slow-ramp.yaml', '-i', inventory, '--out', dir], {
    onStderr: (text) => {
      if (!killed && text.includes('step ramp')) {
        killed = -1;
        setTimeout(() => {
          // No way back in first (the listening sshd only: the agent's session lives on),
          // then the agent, so nothing undoes its journal, then every session.
          killSshdIn('client', true);
          killed = killAgentOn('client');
          killSshdIn('client');
        }, 1000);
      }
    },
  }).finally(() => killed !== 0 && restartSshd('client'));
  assert.ok(killed > 0, 'the client agent was running mid-ramp');
  assert.is(r.code, 3, r.stderr);
  assert.match(r.stderr, /\[HOST_LOST\]/);
  assert.not.match(r.stderr, /restored client/);
  assert.match(r.stderr, 'client not restored: ');
  assert.match(r.stderr, 'sysctl net.ipv4.ip_local_port_range is 40000 42999 (was 32768 60999)');
  assert.match(r.stderr, `lab restore -i ${inventory}`);
  assert.match(r.stderr, '[RESTORE_INCOMPLETE]');
  const result = JSON.parse(readFileSync(join(dir, 'result.json'), 'utf8')) as RunResult;
  assert.is(result.restore.ok, false);
  assert.ok(result.restore.problems.some((p) => p.startsWith('client: ')), result.restore.problems.join('\n'));
  assert.not.ok(result.restore.problems.some((p) => p.startsWith('server: ')), 'the server was restored');
  // What the run said is true: the change is still there, and so is the journal.
  assert.is(readSysctl('net.ipv4.ip_local_port_range', ns('client')), '40000 42999');
  assert.ok(existsSync('/run/lab/host/198.19.0.1.journal'));
  // And the command it named undoes it.
  const restore = await runCli(['restore', '-i', inventory]);
  assert.is(restore.code, 0, restore.stderr);
  assert.match(restore.stdout, 'client: restored sysctl net.ipv4.ip_local_port_range = 32768 60999');
  assertHostsClean('after lab restore -i');
});

test('controller killed mid-run: the agents undo their journals, and lab restore -i finds nothing left', async () => {
  let killed = false;
  await runCli(['run', 'test/fixtures/labs/run/slow.yaml', '-i', inventory, '--out', join(work, 'controller-killed')], {
    onStderr: (text, kill) => {
      if (!killed && text.includes('step hold')) {
        killed = true;
        kill('SIGKILL');
      }
    },
  });
  assert.ok(killed);
  await new Promise((r) => setTimeout(r, 1500));
  const r = await runCli(['restore', '-i', inventory]);
  assert.is(r.code, 0, r.stderr);
  assert.match(r.stdout, 'client: nothing to restore');
  assertHostsClean('after the controller was killed');
});

test('controller and agent killed mid-run: lab restore -i undoes the journal left on the host', async () => {
  let killed = false;
  await runCli(['run', 'test/fixtures/labs/run/slow.yaml', '-i', inventory, '--out', join(work, 'both-killed')], {
    onStderr: (text, kill) => {
      if (!killed && text.includes('step hold')) {
        killed = true;
        // The agent dies first, so nothing undoes its journal: a host crash in small.
        const agents = agentPids('lab:root@198.19.0.1');
        if (agents.length) execFileSync('kill', ['-KILL', ...agents.map(String)]);
        kill('SIGKILL');
      }
    },
  });
  assert.ok(killed);
  assert.is(readSysctl('net.ipv4.ip_local_port_range', ns('client')), '40000 40099', 'the killed run left its sysctl');
  const r = await runCli(['restore', '-i', inventory]);
  assert.is(r.code, 0, r.stderr);
  assert.match(r.stdout, 'client: restored sysctl net.ipv4.ip_local_port_range = 32768 60999');
  assertHostsClean('after lab restore -i');
});

test.run();
