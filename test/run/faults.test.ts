// Faults injected into real runs on local hosts: signals at each stage, a
// second Ctrl-C, a killed worker, a namespace deleted under its agent, a
// reports folder that fills up or turns read-only. After each, every host is
// restored — namespaces, agents and workers, host journals and locks, the
// run's slice and guard route — and what the user sees says what happened.
// (Ctrl-C mid-step, the controller or an agent killed: run.test.ts.)

import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { agentAndWorkers, readSysctl, runCli, runLeftovers, type CliRun } from '../helpers.ts';

const out = mkdtempSync(join(tmpdir(), 'lab-faults-'));
const rootPortRange = readSysctl('net.ipv4.ip_local_port_range');
test.after(() => {
  for (const d of readdirSync(out)) spawnUmount(join(out, d));
  rmSync(out, { recursive: true, force: true });
});

function spawnUmount(dir: string) {
  try {
    execFileSync('umount', [dir], { stdio: 'ignore' });
  } catch {
    // Not a mount point.
  }
}

const idOf = (stderr: string) => /host client: lab-([a-z0-9]+)-client/.exec(stderr)?.[1];

/** The run whose local journal names pid `pid` (the CLI's), once it has reserved its slice. */
function runIdOfPid(pid: number): string | undefined {
  for (const f of existsSync('/run/lab/local') ? readdirSync('/run/lab/local') : []) {
    if (!f.endsWith('.json')) continue;
    try {
      const j = JSON.parse(readFileSync(`/run/lab/local/${f}`, 'utf8'));
      if (j.pid === pid) return j.id;
    } catch {
      // Being written.
    }
  }
  return undefined;
}

function assertRestored(id: string | undefined, what: string, r: CliRun) {
  assert.ok(id, `${what}: the run started (${r.stderr})`);
  assert.equal(runLeftovers(id!), [], `${what}: left behind`);
}

test('SIGTERM mid-ramp stops the run, restores every host and says so', async () => {
  let id: string | undefined;
  const r = await runCli(['run', 'test/fixtures/labs/run/workers.yaml', '--out', join(out, 'term')], {
    onStderr: (text, kill) => {
      if (!id && /ramp: \d+ of at most/.test(text)) {
        id = idOf(text);
        kill('SIGTERM');
      }
    },
  });
  assert.is(r.code, 130, r.stderr);
  assert.match(r.stderr, 'SIGTERM: stopping and restoring every host');
  assert.match(r.stderr, 'restored client');
  assert.match(r.stderr, 'error: Interrupted [INTERRUPTED]');
  assertRestored(id, 'SIGTERM mid-ramp', r);
});

test('Ctrl-C while the hosts are being made: nothing is left', async () => {
  let id: string | undefined;
  let timer: ReturnType<typeof setInterval> | undefined;
  const r = await runCli(['run', 'labs/port-exhaustion.yaml', '--out', join(out, 'early-hosts')], {
    // The moment the run journals its network, it is making its hosts.
    onSpawn: (pid) => {
      timer = setInterval(() => {
        id = runIdOfPid(pid);
        if (id) {
          clearInterval(timer);
          process.kill(pid, 'SIGINT');
        }
      }, 5);
    },
  });
  clearInterval(timer);
  assert.is(r.code, 130, r.stderr + r.stdout);
  assert.match(r.stderr, 'SIGINT: stopping and restoring every host');
  assertRestored(id, 'Ctrl-C during host creation', r);
});

test('Ctrl-C while the hosts are provisioned: every change made so far is undone', async () => {
  let id: string | undefined;
  const r = await runCli(['run', 'test/fixtures/labs/run/many-aliases.yaml', '--out', join(out, 'provisioning')], {
    onStderr: (text, kill) => {
      if (!id && /agents\s+\d+ ms/.test(text)) {
        id = idOf(text);
        kill('SIGINT');
      }
    },
  });
  assert.is(r.code, 130, r.stderr);
  assert.match(r.stderr, 'restored client');
  assertRestored(id, 'Ctrl-C during provisioning', r);
});

test('Ctrl-C while the run restores: the restore finishes', async () => {
  let id: string | undefined;
  const r = await runCli(['run', 'labs/port-exhaustion.yaml', '--out', join(out, 'restoring')], {
    onStderr: (text, kill) => {
      if (!id && /restored (client|server)/.test(text)) {
        id = idOf(text);
        kill('SIGINT');
      }
    },
  });
  assert.ok(r.code === 0 || r.code === 130, `exit ${r.code}: ${r.stderr}`);
  assert.match(r.stderr, 'restored client');
  assert.match(r.stderr, 'restored server');
  assertRestored(id, 'Ctrl-C during restore', r);
});

test('a second Ctrl-C leaves at once, says to run lab restore, and lab restore (two at once) finishes the job', async () => {
  let id: string | undefined;
  let second = false;
  const r = await runCli(['run', 'test/fixtures/labs/run/slow.yaml', '--out', join(out, 'twice')], {
    onStderr: (text, kill) => {
      if (!id && text.includes('step hold')) {
        id = idOf(text);
        kill('SIGINT');
      } else if (id && !second && text.includes('SIGINT: stopping')) {
        // Two signals sent at once may arrive as one: the second follows the first's message.
        second = true;
        kill('SIGINT');
      }
    },
  });
  assert.is(r.code, 130, r.stderr);
  assert.match(r.stderr, 'SIGINT: leaving now; run "lab restore" to clean up');
  // Two at once (two users, two terminals) undo the same dead run without tripping over each other.
  const restores = await Promise.all([runCli(['restore']), runCli(['restore'])]);
  for (const x of restores) assert.is(x.code, 0, x.stderr);
  assertRestored(id, 'a second Ctrl-C, then lab restore', r);
});

test('a worker killed mid-ramp: the step fails naming it, and every host is restored', async () => {
  let id: string | undefined;
  let worker = 0;
  const r = await runCli(['run', 'test/fixtures/labs/run/workers.yaml', '--out', join(out, 'worker')], {
    onStderr: (text) => {
      if (worker || !/ramp: \d+ of at most/.test(text)) return;
      id = idOf(text);
      worker = agentAndWorkers(`lab:lab-${id}-client`).workers[0] ?? 0;
      if (worker) process.kill(worker, 'SIGKILL');
    },
  });
  assert.ok(worker, 'a worker was killed');
  assert.is(r.code, 3, r.stderr);
  assert.match(r.stderr, /Step "ramp" failed: .*worker/i);
  assertRestored(id, 'a worker killed', r);
});

test('the host\'s namespace deleted under its agent: the run ends, and nothing is left', async () => {
  let id: string | undefined;
  const r = await runCli(['run', 'test/fixtures/labs/run/slow.yaml', '--out', join(out, 'ns-deleted')], {
    onStderr: (text, kill) => {
      if (!id && text.includes('step hold')) {
        id = idOf(text);
        execFileSync('ip', ['netns', 'del', `lab-${id}-client`]);
        // The agent lives on in the namespace it is in; the run goes on until stopped.
        setTimeout(() => kill('SIGINT'), 200);
      }
    },
  });
  assert.is(r.code, 130, r.stderr);
  assert.match(r.stderr, 'restored client');
  assertRestored(id, 'namespace deleted under the agent', r);
});

test('a full disk for the reports: the verdicts still reach the terminal, the hosts are restored, exit 3 says why', async () => {
  const dir = join(out, 'full');
  mkdirSync(dir);
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=4k', 'tmpfs', dir]);
  try {
    const r = await runCli(['run', 'labs/port-exhaustion.yaml', '--out', dir]);
    assert.is(r.code, 3, r.stderr);
    assert.match(r.stdout, /port-exhaustion: PASS in/);
    assert.match(r.stdout, /ramp\.established\s+ephemeral-ports\s+1000\s+1000\s+0\s+PASS/);
    assert.match(r.stderr, `error: Cannot write the reports to "${dir}": ENOSPC`);
    assert.match(r.stderr, '[REPORTS_UNWRITTEN]');
    assertRestored(idOf(r.stderr), 'a full disk', r);
  } finally {
    spawnUmount(dir);
  }
});

test('a reports folder that turns read-only mid-run: the verdicts still reach the terminal, the hosts are restored', async () => {
  const dir = join(out, 'readonly');
  mkdirSync(dir);
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', dir]);
  try {
    let id: string | undefined;
    const r = await runCli(['run', 'labs/port-exhaustion.yaml', '--out', dir], {
      onStderr: (text) => {
        if (!id && text.includes('step ramp')) {
          id = idOf(text);
          execFileSync('mount', ['-o', 'remount,ro', dir]);
        }
      },
    });
    assert.is(r.code, 3, r.stderr);
    assert.match(r.stdout, /port-exhaustion: PASS in/);
    assert.match(r.stderr, `error: Cannot write the reports to "${dir}": EROFS`);
    assertRestored(id, 'a read-only reports folder', r);
  } finally {
    spawnUmount(dir);
  }
});

test('after all of it, the root namespace\'s own sysctls are untouched', () => {
  assert.is(readSysctl('net.ipv4.ip_local_port_range'), rootPortRange);
});

test.run();
