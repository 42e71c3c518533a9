// End to end on real namespaces: the shipped lab through the real CLI, and the
// promise that nothing is left behind — after a pass, a failed step, a failed
// prediction and a Ctrl-C.

import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { RunResult } from '../../runner/result.ts';
import { agentAndWorkers, machineState, namespaces, readSysctl, runCli, runLeftovers, strayGuardRoutes, unjournaledNamespaces } from '../helpers.ts';

const out = mkdtempSync(join(tmpdir(), 'lab-run-test-'));
test.after(() => rmSync(out, { recursive: true, force: true }));

/** The run's id, from the namespace names in its result (lab-<id>-<role>). */
function runId(dir: string): string {
  const result = JSON.parse(readFileSync(join(dir, 'result.json'), 'utf8')) as RunResult;
  return result.hosts[0]!.target.split('-')[1]!;
}

async function assertClean(before: Awaited<ReturnType<typeof machineState>>, what: string, dir?: string) {
  const after = await machineState();
  if (dir) {
    assert.equal(runLeftovers(runId(dir)), [], `${what}: left behind`);
  } else {
    // Other runs on this machine (other test files, other users) may come and go meanwhile.
    assert.equal(unjournaledNamespaces(), [], `${what}: namespaces left behind`);
    assert.equal(strayGuardRoutes(), [], `${what}: guard routes left behind`);
  }
  assert.is(after.portRange, before.portRange, `${what}: root namespace port range changed`);
  assert.is(after.somaxconn, before.somaxconn, `${what}: root namespace somaxconn changed`);
}

test('lab run labs/port-exhaustion.yaml observes 1000 connections and EADDRNOTAVAIL, as predicted, and leaves nothing', async () => {
  const before = await machineState();
  const dir = join(out, 'pass');
  const r = await runCli(['run', 'labs/port-exhaustion.yaml', '--out', dir]);
  assert.is(r.code, 0, r.stderr + r.stdout);
  const result = JSON.parse(readFileSync(join(dir, 'result.json'), 'utf8')) as RunResult;
  assert.is(result.verdict, 'pass');
  const est = result.predictions.find((p) => p.metric === 'ramp.established')!;
  assert.is(est.predicted, 1000);
  assert.is(est.observed, 1000);
  // The addresses are the run's slice of 198.18.0.0/16: 198.18.0.x when it runs alone.
  const [c, s] = ['client', 'server'].map((role) => result.hosts.find((h) => h.role === role)!.address);
  assert.match(c!, /^198\.18\.(\d+)\.1$/);
  assert.is(est.derivation, `40999 − 40000 + 1 = 1000 ports for ${c} → ${s}:8080`);
  const firstError = result.predictions.find((p) => p.metric === 'ramp.firstError')!;
  assert.is(firstError.observed, 'EADDRNOTAVAIL');
  assert.is(firstError.verdict, 'pass');
  const client = result.hosts.find((h) => h.role === 'client')!;
  assert.equal(client.facts.portRange, [40000, 40999]);
  assert.ok(client.changes.some((c) => c.kind === 'sysctl' && c.name === 'net.ipv4.ip_local_port_range' && c.new === '40000 40999'));
  assert.ok(result.restore.ok);
  for (const f of ['report.md', 'report.html', 'junit.xml']) assert.ok(existsSync(join(dir, f)), `${f} written`);
  assert.match(r.stdout, /ramp\.established\s+ephemeral-ports\s+1000\s+1000\s+0\s+PASS/);
  assert.match(r.stderr, /ramp: /);
  await assertClean(before, 'after a pass', dir);
});

test('lab run exits 1 when a prediction fails, and still restores', async () => {
  const before = await machineState();
  const r = await runCli(['run', 'test/fixtures/labs/run/mispredict.yaml', '--out', join(out, 'mispredict')]);
  assert.is(r.code, 1, r.stderr);
  const result = JSON.parse(readFileSync(join(out, 'mispredict', 'result.json'), 'utf8')) as RunResult;
  assert.equal(result.predictions.map((p) => [p.observed, p.verdict]), [[100, 'fail'], ['EADDRNOTAVAIL', 'pass']]);
  await assertClean(before, 'after a failed prediction', join(out, 'mispredict'));
});

test('lab run exits 3 when provisioning fails halfway, names the cause, and restores every host', async () => {
  const before = await machineState();
  const r = await runCli(['run', 'test/fixtures/labs/run/bad-sysctl.yaml', '--out', join(out, 'bad')]);
  assert.is(r.code, 3, r.stderr);
  assert.match(r.stderr, 'bad-sysctl.yaml:7:7: sysctl net.ipv4.tcp_tw_reuse = "7" refused: ');
  const result = JSON.parse(readFileSync(join(out, 'bad', 'result.json'), 'utf8')) as RunResult;
  assert.is(result.verdict, 'fail');
  assert.ok(result.error);
  assert.ok(result.restore.ok, result.restore.problems.join('\n'));
  const client = result.hosts.find((h) => h.role === 'client')!;
  assert.equal(
    client.changes.map((c) => c.kind === 'sysctl' && [c.name, c.old, c.new]),
    [['net.ipv4.ip_local_port_range', '32768 60999', '40000 40999']],
    'the change made before the failure is reported',
  );
  await assertClean(before, 'after a failed step', join(out, 'bad'));
});

test('lab run refuses a sysctl the kernel lacks before any change: exit 2, at its line, with the name meant', async () => {
  const before = await machineState();
  const r = await runCli(['run', 'test/fixtures/labs/run/no-such-sysctl.yaml', '--out', join(out, 'no-such')]);
  assert.is(r.code, 2, r.stderr);
  assert.match(r.stderr, /no-such-sysctl\.yaml:7:7: hosts\.client\.sysctls\.net\.ipv4\.tcp_tw_reus: No sysctl "net\.ipv4\.tcp_tw_reus" on client \(kernel [^)]+\): \/proc\/sys\/net\/ipv4\/tcp_tw_reus does not exist: did you mean "net\.ipv4\.tcp_tw_reuse"\? \[NO_SUCH_SYSCTL\]/);
  const result = JSON.parse(readFileSync(join(out, 'no-such', 'result.json'), 'utf8')) as RunResult;
  assert.is(result.error?.code, 'NO_SUCH_SYSCTL');
  // Checked before provisioning: not even the valid port range was set.
  assert.equal(result.hosts.flatMap((h) => h.changes), []);
  await assertClean(before, 'after a sysctl the kernel lacks', join(out, 'no-such'));
});

/** slow.yaml, sent SIGINT once it holds its connections in its sleep step: to the pid, or (`group`) to its process group, as a terminal does. */
async function interruptedInSleep(name: string, group = false) {
  let sent = false;
  const r = await runCli(['run', 'test/fixtures/labs/run/slow.yaml', '--out', join(out, name)], {
    group,
    onStderr: (text, kill) => {
      if (!sent && text.includes('step hold')) {
        sent = true;
        kill('SIGINT');
      }
    },
  });
  assert.ok(sent, 'the run reached its sleep step');
  assert.is(r.code, 130, r.stderr);
  assert.match(r.stderr, 'restored client');
  return r;
}

test('lab run restores every host when interrupted with Ctrl-C', async () => {
  const before = await machineState();
  await interruptedInSleep('slow');
  const result = JSON.parse(readFileSync(join(out, 'slow', 'result.json'), 'utf8')) as RunResult;
  assert.is(result.error?.code, 'INTERRUPTED');
  assert.is(result.predictions[0]!.observed, 50);
  await assertClean(before, 'after Ctrl-C', join(out, 'slow'));
});

test('lab run that reaches its lab timeout exits 3 with TIMEOUT, not as a Ctrl-C, and restores every host', async () => {
  const before = await machineState();
  const lab = join(out, 'overtime.yaml');
  // The sleep alone fits the timeout (lab validate accepts it); with the hosts made first, the run cannot.
  writeFileSync(lab, readFileSync('test/fixtures/labs/run/slow.yaml', 'utf8').replace('name: slow', 'name: overtime\ntimeout: 2s').replace('sleep: 60s', 'sleep: 1900ms'));
  const r = await runCli(['run', lab, '--out', join(out, 'overtime')]);
  assert.is(r.code, 3, r.stderr);
  assert.match(r.stderr, /error: Lab timeout of 2s reached \(the lab's "timeout" bounds the run from setup to its last step\) \[TIMEOUT\]/);
  const result = JSON.parse(readFileSync(join(out, 'overtime', 'result.json'), 'utf8')) as RunResult;
  assert.is(result.error?.code, 'TIMEOUT');
  // The step it stopped in stays in the result, as far as it got.
  const hold = result.steps.find((s) => s.name === 'hold');
  assert.ok(hold, result.steps.map((s) => s.name).join(', '));
  assert.is(hold!.ok, false);
  assert.match(hold!.error!, /^stopped: Lab timeout of 2s reached/);
  assert.match(readFileSync(join(out, 'overtime', 'junit.xml'), 'utf8'), 'type="TIMEOUT"');
  await assertClean(before, 'after a lab timeout', join(out, 'overtime'));
});

test('Ctrl-C on a terminal (SIGINT to the whole process group) restores every host and exits 130, not a false incomplete restore', async () => {
  const before = await machineState();
  const r = await interruptedInSleep('group', true);
  assert.not.match(r.stderr, 'RESTORE_INCOMPLETE');
  const result = JSON.parse(readFileSync(join(out, 'group', 'result.json'), 'utf8')) as RunResult;
  assert.ok(result.restore.ok, result.restore.problems.join('\n'));
  await assertClean(before, 'after Ctrl-C to the process group', join(out, 'group'));
});

test('lab run whose reader goes away (| head -1) goes on: every host restored, the reports written, its own exit code', async () => {
  const before = await machineState();
  const dir = join(out, 'epipe');
  const r = await runCli(['run', 'labs/port-exhaustion.yaml', '--out', dir], { closeStdout: true });
  assert.is(r.stdout.split('\n')[0], 'lab 0.1.0: running "port-exhaustion" on client (namespace), server (namespace)');
  assert.not.match(r.stdout, 'PASS', 'the verdicts were written after the reader left');
  assert.is(r.code, 0, r.stderr);
  assert.not.match(r.stderr, 'EPIPE');
  assert.match(r.stderr, 'restored client');
  assert.is((JSON.parse(readFileSync(join(dir, 'result.json'), 'utf8')) as RunResult).verdict, 'pass');
  await assertClean(before, 'after its stdout closed', dir);
});

test('lab run interrupted while its agents start still restores every host', async () => {
  const before = await machineState();
  let sent = false;
  const r = await runCli(['run', 'labs/port-exhaustion.yaml', '--out', join(out, 'early')], {
    onStderr: (text, kill) => {
      if (!sent && /hosts\s+\d+ ms/.test(text)) {
        sent = true;
        kill('SIGINT');
      }
    },
  });
  assert.ok(sent);
  assert.is(r.code, 130, r.stderr);
  await assertClean(before, 'after Ctrl-C while agents start', join(out, 'early'));
});

test('lab run killed outright leaves its namespaces for lab restore, which removes them', async () => {
  let killed = false;
  const { stderr } = await runCli(['run', 'test/fixtures/labs/run/slow.yaml', '--out', join(out, 'killed')], {
    onStderr: (text, kill) => {
      if (!killed && text.includes('step hold')) {
        killed = true;
        kill('SIGKILL');
      }
    },
  });
  assert.ok(killed);
  const id = /host client: lab-([a-z0-9]+)-client/.exec(stderr)![1]!;
  const left = namespaces().filter((n) => n.startsWith(`lab-${id}-`));
  // Two hosts, joined by one veth pair: no switch namespace.
  assert.equal(left.sort(), [`lab-${id}-client`, `lab-${id}-server`], `the killed run's namespaces: ${left}`);
  const r = await runCli(['restore']);
  assert.is(r.code, 0, r.stderr);
  // Another `lab restore` on this machine (another test file) may have removed them first.
  assert.equal(runLeftovers(id), []);
  const again = await runCli(['restore']);
  assert.is(again.code, 0, again.stderr);
  assert.not.match(again.stdout, `lab-${id}-`, 'a second restore finds nothing of it');
});

test('an agent killed mid-ramp on a local host: the run says so, and its journal is replayed, global sysctls too', async () => {
  const fileMax = Number(readSysctl('fs.file-max'));
  let killed = '';
  const dir = join(out, 'agent-killed');
  const r = await runCli(['run', 'test/fixtures/labs/run/slow-ramp-global.yaml', '--var', `file_max=${fileMax + 7}`, '--out', dir], {
    onStderr: (text) => {
      const id = /host client: lab-([a-z0-9]+)-client/.exec(text)?.[1];
      if (killed || !id || !/ramp: \d+ of at most/.test(text)) return;
      const pid = agentAndWorkers(`lab:lab-${id}-client`).agent;
      if (pid) {
        killed = id;
        process.kill(pid, 'SIGKILL');
      }
    },
  });
  assert.ok(killed, 'the agent was killed mid-ramp');
  assert.is(r.code, 3, r.stderr);
  assert.match(r.stderr, /Lost the agent on lab-[a-z0-9]+-client \(signal SIGKILL\).*\[HOST_LOST\]/);
  assert.is(readSysctl('fs.file-max'), String(fileMax), 'the global sysctl is put back');
  const result = JSON.parse(readFileSync(join(dir, 'result.json'), 'utf8')) as RunResult;
  assert.ok(result.restore.ok, result.restore.problems.join('\n'));
  assert.match(result.notes.join('\n'), 'client: the agent was lost; its journal was replayed');
  assert.equal(runLeftovers(killed), [], 'journal, lock, namespaces');
});

test('lab restore puts back the global sysctls of a journal whose namespace is gone, and removes it', async () => {
  const fileMax = readSysctl('fs.file-max');
  const ns = `lab-zz${process.pid.toString(36)}`.slice(0, 12) + '-client';
  const journal = `/run/lab/host/${ns}.journal`;
  mkdirSync('/run/lab/host', { recursive: true });
  // What an agent killed with its namespace leaves: a namespace sysctl (gone with it) and a global one.
  writeFileSync(`/proc/sys/fs/file-max`, String(Number(fileMax) + 11));
  writeFileSync(
    journal,
    `{"kind":"sysctl","name":"net.ipv4.ip_local_port_range","old":"1 2"}\n{"kind":"sysctl","name":"fs.file-max","old":"${fileMax}"}\n`,
  );
  writeFileSync(`${journal}.lock`, 'lab run x by pid 1\n');
  const r = await runCli(['restore']);
  assert.is(r.code, 0, r.stderr);
  // Says what it put back (unless another `lab restore` on this machine got there first).
  if (r.stdout.includes(journal)) assert.match(r.stdout, `put back sysctl fs.file-max = ${fileMax} (from ${journal})`);
  assert.is(readSysctl('fs.file-max'), fileMax);
  assert.not.ok(existsSync(journal) || existsSync(`${journal}.lock`), 'journal and lock removed');
  assert.not.match(readSysctl('net.ipv4.ip_local_port_range'), /^1 2$/, 'a namespace sysctl is never written in the root namespace');
});

test('lab restore judges a run dead by pid and start time: a reused pid does not keep a dead run\'s namespaces', async () => {
  // A live process stands in for a run's controller: its pid, with the start
  // time recorded (alive), or another start time (the pid was reused: dead).
  const standIn = spawn('sleep', ['30']);
  try {
    const start = readFileSync(`/proc/${standIn.pid}/stat`, 'utf8').split(') ')[1]!.split(' ')[19]!;
    const make = (id: string, pidStart: string) => {
      const ns = `lab-${id}-client`;
      execFileSync('ip', ['netns', 'add', ns]);
      writeFileSync(
        `/run/lab/local/${id}.json`,
        JSON.stringify({ id, purpose: 'run', pid: standIn.pid, pidStart, createdAt: new Date().toISOString(), namespaces: [ns] }),
      );
      return ns;
    };
    const tag = process.pid.toString(36).slice(-4);
    const alive = make(`al${tag}`, start);
    const reused = make(`re${tag}`, String(Number(start) + 1));
    const r = await runCli(['restore']);
    assert.is(r.code, 0, r.stderr);
    assert.not.match(r.stdout, alive);
    assert.ok(namespaces().includes(alive), 'a live run is left alone');
    // (Another `lab restore` on this machine may have been the one that removed it.)
    assert.not.ok(namespaces().includes(reused), 'a dead run behind a reused pid is restored');
    assert.not.ok(existsSync(`/run/lab/local/re${tag}.json`));
    // Its controller gone for real, the other one goes too.
    standIn.kill('SIGKILL');
    await new Promise((done) => standIn.once('exit', done));
    const again = await runCli(['restore']);
    assert.is(again.code, 0, again.stderr);
    assert.not.ok(namespaces().includes(alive), 'restored once its controller is gone');
  } finally {
    standIn.kill('SIGKILL');
  }
});

test('five lab runs at once on local hosts all pass, each in a slice of its own, and leave nothing', async () => {
  const dirs = [1, 2, 3, 4, 5].map((i) => join(out, `concurrent-${i}`));
  const runs = await Promise.all(dirs.map((dir) => runCli(['run', 'labs/port-exhaustion.yaml', '--out', dir])));
  for (const r of runs) assert.is(r.code, 0, r.stderr + r.stdout);
  const results = dirs.map((d) => JSON.parse(readFileSync(join(d, 'result.json'), 'utf8')) as RunResult);
  const clients = results.map((r) => r.hosts.find((h) => h.role === 'client')!.address);
  assert.is(new Set(clients).size, 5, `each run its own addresses: ${clients}`);
  for (const r of results) assert.is(r.verdict, 'pass');
  for (const d of dirs) assert.equal(runLeftovers(runId(d)), [], `${d}: left behind`);
});

test('lab plan shows old → new sysctl values and the steps, touching nothing', async () => {
  const before = await machineState();
  const r = await runCli(['plan', 'labs/port-exhaustion.yaml']);
  assert.is(r.code, 0, r.stderr);
  assert.match(r.stdout, 'sysctl net.ipv4.ip_local_port_range: 32768 60999 → 40000 40999');
  assert.match(r.stdout, 'connect from client: 198.18.0.1 → 198.18.0.2:8080; at most 5000');
  await assertClean(before, 'after plan');
});

test('lab report re-renders an earlier run from its result.json alone', async () => {
  const dir = join(out, 'rerender');
  const r = await runCli(['report', join(out, 'pass', 'result.json'), '--out', dir]);
  assert.is(r.code, 0, r.stderr);
  assert.is(readFileSync(join(dir, 'report.md'), 'utf8'), readFileSync(join(out, 'pass', 'report.md'), 'utf8'));
});

test('lab validate reports a bad lab at file:line:col and exits 2', async () => {
  const r = await runCli(['validate', 'labs/port-exhaustion.yaml', 'test/fixtures/labs/run/nope.yaml']);
  assert.is(r.code, 2);
  assert.match(r.stdout, 'labs/port-exhaustion.yaml: ok');
  assert.match(r.stderr, 'test/fixtures/labs/run/nope.yaml');
});

test('lab with an unknown command or option exits 2 with a hint', async () => {
  const a = await runCli(['rnu']);
  assert.is(a.code, 2);
  assert.is(a.stderr.trim(), 'error: Unknown command "rnu": did you mean "run"? [ARGS]');
  const b = await runCli(['run', 'labs/port-exhaustion.yaml', '--frob']);
  assert.is(b.code, 2);
  assert.match(b.stderr, "Unknown option '--frob'");
});

test.run();
