// Security over SSH, against `lab hosts up` hosts (namespaces running a real
// OpenSSH sshd), through the real CLI: a host key replaced on the host stops
// the run before anything changes; a non-root user logs in with a password and
// runs the lab through sudo, a key is unlocked with a passphrase (from the
// environment, or held by an ssh-agent), and neither secret shows up in any output; a connection dropped mid-run (sshd stays up)
// ends with the host restored; hostile text from a lab file, a host's hostname
// and a host-side error is shown, never run, in report.html.
//
// The non-root user exists only for the client's sshd: its passwd, shadow,
// group and sudoers are files in /etc/netns/<namespace>/, which `ip netns exec`
// binds over /etc for what it starts there (and so for sshd, its sessions and
// sudo). Nothing in the machine's own /etc changes.

import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import {
  appendFileSync,
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse, stringify } from 'yaml';
import { hostsDown, hostsUp, HOSTS_UP_DIR, SSHD } from '../../runner/hosts/hostsup.ts';
import type { LocalNetwork } from '../../runner/hosts/netns.ts';
import { readInventory } from '../../runner/hosts/inventory.ts';
import { SshTransport } from '../../runner/hosts/ssh.ts';
import { HostError } from '../../runner/errors.ts';
import type { RunResult } from '../../runner/result.ts';
import { Browser } from '../browser.ts';
import { agentPids, assertSshHostsClean, inventoryWith, parentPid, ROOT, runCli, sshHostJournals, waitForListener } from '../helpers.ts';

const work = mkdtempSync(join(tmpdir(), 'lab-ssh-security-'));
const inventory = join(work, 'inventory.yaml');
let network: LocalNetwork;
let stateDir: string;
/** /etc/netns/<namespace> directories this suite made, removed afterwards. */
const netnsEtc: string[] = [];
const holders: ChildProcess[] = [];
/** Lock files this suite planted on the hosts, removed afterwards. */
const plantedLocks: string[] = [];

test.before(async () => {
  // What a killed earlier run of this suite may have left: /etc/netns files of namespaces that are gone.
  for (const d of existsSync('/etc/netns') ? readdirSync('/etc/netns') : []) {
    if (d.startsWith('lab-') && !existsSync(`/run/netns/${d}`)) rmSync(`/etc/netns/${d}`, { recursive: true, force: true });
  }
  ({ network } = await hostsUp({ roles: ['client', 'server'], out: inventory }));
  stateDir = `${HOSTS_UP_DIR}/${network.id}`;
});

test.after(async () => {
  for (const h of holders) h.kill('SIGKILL');
  for (const l of plantedLocks) rmSync(l, { force: true });
  const problems = await hostsDown();
  for (const d of netnsEtc) rmSync(d, { recursive: true, force: true });
  rmSync(work, { recursive: true, force: true });
  assert.equal(problems, [], 'hostsDown() problems');
});

const ns = (role: string) => network.hosts.find((h) => h.role === role)!.namespace;
const addressOf = (role: string) => network.hosts.find((h) => h.role === role)!.address;

// Agents are matched by address: this file's runs also log in as users other than root.
const assertHostsClean = (what: string) => assertSshHostsClean(['client', 'server'].map(ns), what, '@198.19.0.');

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

/** The sshd processes in a role's namespace: the listener, and the sessions (its descendants). */
function sshds(role: string): { listener: number[]; sessions: number[] } {
  const pids = execFileSync('ip', ['netns', 'pids', ns(role)], { encoding: 'utf8' }).split(/\s+/).filter(Boolean).map(Number);
  const sshd = pids.filter((p) => {
    try {
      return readFileSync(`/proc/${p}/comm`, 'utf8').trim() === 'sshd';
    } catch {
      return false;
    }
  });
  const parentOf = (p: number) => {
    try {
      return parentPid(p);
    } catch {
      return 0;
    }
  };
  const listener = sshd.filter((p) => !sshd.includes(parentOf(p)));
  return { listener, sessions: sshd.filter((p) => !listener.includes(p)) };
}

/**
 * (Re)start a role's sshd with `config` (default: the one `lab hosts up` wrote),
 * optionally with its own hostname (a UTS namespace of its own), and wait until it listens.
 */
async function restartSshd(role: string, options: { config?: string; hostname?: string } = {}) {
  const dir = `${stateDir}/${role}`;
  const { listener, sessions } = sshds(role);
  if (listener.length + sessions.length) execFileSync('kill', ['-KILL', ...[...listener, ...sessions].map(String)]);
  const sshd = [SSHD, '-f', options.config ?? `${dir}/sshd_config`, '-E', `${dir}/sshd.log`];
  const argv = options.hostname
    ? ['unshare', '--uts', 'python3', '-c', 'import os, socket, sys; socket.sethostname(sys.argv[1]); os.execv(sys.argv[2], sys.argv[2:])', options.hostname, ...sshd]
    : sshd;
  execFileSync('ip', ['netns', 'exec', ns(role), ...argv]);
  await waitForListener(addressOf(role), 22, `sshd in ${ns(role)}`);
}


function readResult(dir: string): RunResult {
  return JSON.parse(readFileSync(join(dir, 'result.json'), 'utf8')) as RunResult;
}

/** Every regular file under `dir`, recursively. */
function filesUnder(dir: string): string[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir, { recursive: true, encoding: 'utf8' })
    .map((f) => join(dir, f))
    .filter((f) => {
      try {
        return statSync(f).isFile();
      } catch {
        return false;
      }
    });
}

// ---------------------------------------------------------------------------

test('a host key replaced on the host stops the run before anything changes, naming the host and the known_hosts line', async () => {
  const key = `${stateDir}/client/ssh_host_ed25519_key`;
  const saved = join(work, 'client_host_key');
  copyFileSync(key, saved);
  copyFileSync(`${key}.pub`, `${saved}.pub`);
  const fp = (pub: string) => execFileSync('ssh-keygen', ['-lf', pub], { encoding: 'utf8' }).split(' ')[1]!;
  const was = fp(`${saved}.pub`);
  const knownHosts = `${stateDir}/known_hosts`;
  const knownBefore = readFileSync(knownHosts, 'utf8');
  try {
    // The host is "reinstalled": a new host key, sshd restarted with it.
    rmSync(key);
    rmSync(`${key}.pub`);
    execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', key]);
    await restartSshd('client');
    const now = fp(`${key}.pub`);
    assert.is.not(now, was);
    const dir = join(work, 'replaced-key');
    const r = await runCli(['run', 'labs/port-exhaustion.yaml', '-i', inventory, '--accept-new-host-keys', '--out', dir]);
    assert.is(r.code, 3, r.stderr);
    assert.match(
      r.stderr,
      `client: Host key of 198.19.0.1 has changed: ${knownHosts}:1 has ssh-ed25519 ${was}, the host offers ssh-ed25519 ${now}: ` +
        `lab never accepts a changed key; if the host was reinstalled, remove the old one with: ssh-keygen -R 198.19.0.1 -f ${knownHosts} [SSH_HOSTKEY_CHANGED]`,
    );
    // Nothing was changed on either host: no change recorded, no restore needed, no step run.
    const result = readResult(dir);
    assert.is(result.error?.code, 'SSH_HOSTKEY_CHANGED');
    assert.equal(result.steps, []);
    // The client was never logged in to (no agent, no facts); the server's agent changed nothing.
    assert.equal(result.hosts.map((h) => h.role), ['server']);
    assert.ok(result.hosts.every((h) => h.changes.length === 0), JSON.stringify(result.hosts.map((h) => h.changes)));
    assert.equal(result.restore, { ok: true, problems: [] });
    assert.is(result.verdict, 'fail');
    assert.not.match(r.stderr, /sysctl net\.ipv4\.ip_local_port_range/);
    // --accept-new-host-keys accepts new hosts only: known_hosts is unchanged.
    assert.is(readFileSync(knownHosts, 'utf8'), knownBefore);
    assertHostsClean('after the changed host key');
  } finally {
    copyFileSync(saved, key);
    copyFileSync(`${saved}.pub`, `${key}.pub`);
    await restartSshd('client');
  }
});

// ---------------------------------------------------------------------------
// A non-root user with a password, and sudo.

const USER = 'labsec';
const UID = 4242;

/** The client's sshd, with a user `labsec` (with `password`, sudo as `sudoers` says) and password logins allowed. */
async function clientWithUser(password: string, sudoers: string) {
  const etc = `/etc/netns/${ns('client')}`;
  if (!netnsEtc.includes(etc)) netnsEtc.push(etc);
  mkdirSync(etc, { recursive: true });
  const hash = execFileSync('openssl', ['passwd', '-6', '-stdin'], { input: password, encoding: 'utf8' }).trim();
  // Home "/": sshd changes into it, and the sessions' HOME is the one sshd_config sets.
  writeFileSync(`${etc}/passwd`, readFileSync('/etc/passwd', 'utf8') + `${USER}:x:${UID}:${UID}::/:/bin/sh\n`);
  writeFileSync(`${etc}/group`, readFileSync('/etc/group', 'utf8') + `${USER}:x:${UID}:\n`);
  writeFileSync(`${etc}/shadow`, readFileSync('/etc/shadow', 'utf8') + `${USER}:${hash}:19000:0:99999:7:::\n`, { mode: 0o640 });
  writeFileSync(`${etc}/sudoers`, readFileSync('/etc/sudoers', 'utf8') + sudoers, { mode: 0o440 });
  const config = `${stateDir}/client/sshd_config.password`;
  writeFileSync(config, readFileSync(`${stateDir}/client/sshd_config`, 'utf8').replace('PasswordAuthentication no', 'PasswordAuthentication yes'));
  await restartSshd('client', { config });
}

/** Plants `secret` in every output it can reach, and says where it was found. */
function findSecret(secrets: string[], texts: Record<string, string>, files: string[]): string[] {
  const found: string[] = [];
  for (const [where, text] of Object.entries(texts)) {
    for (const s of secrets) if (text.includes(s)) found.push(`${where} holds "${s}"`);
  }
  for (const f of files) {
    let bytes: Buffer;
    try {
      bytes = readFileSync(f);
    } catch {
      continue;
    }
    for (const s of secrets) if (bytes.includes(s)) found.push(`${f} holds "${s}"`);
  }
  return found;
}

test('a non-root user logs in with a password from the environment, the lab runs through sudo and is restored, and no secret shows anywhere', async () => {
  const password = `pw-${randomBytes(12).toString('hex')}`;
  const passphrase = `pp-${randomBytes(12).toString('hex')}`;
  await clientWithUser(password, `${USER} ALL=(root) NOPASSWD: ALL\n`);
  // The server logs in with a key locked by a passphrase.
  const lockedKey = join(work, 'locked_key');
  execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', passphrase, '-f', lockedKey]);
  appendFileSync(`${stateDir}/authorized_keys`, readFileSync(`${lockedKey}.pub`));
  const file = inventoryWith(inventory, work, 'password', (inv) => {
    Object.assign(inv.hosts.client, { user: USER, identity: undefined, password_env: 'LAB_TEST_SSH_PASSWORD', sudo: true });
    Object.assign(inv.hosts.server, { identity: lockedKey, passphrase_env: 'LAB_TEST_KEY_PASSPHRASE' });
    delete inv.defaults.identity;
  });
  const inv = readFileSync(file, 'utf8');
  assert.not.match(inv, /identity: .*id_ed25519/, 'the client has no key: only the password lets it in');
  const env = { LAB_TEST_SSH_PASSWORD: password, LAB_TEST_KEY_PASSPHRASE: passphrase };
  const dir = join(work, 'password-run');
  // Mid-run, what the host sees: the journal, and the agent's command line and environment.
  const midRun: Record<string, string> = {};
  const r = await runCli(['run', 'labs/port-exhaustion.yaml', '-i', file, '--out', dir], {
    env,
    onStderr: (text) => {
      if (Object.keys(midRun).length || !text.includes('step ramp')) return;
      for (const f of sshHostJournals()) midRun[`/run/lab/host/${f}`] = readFileSync(`/run/lab/host/${f}`, 'utf8');
      for (const pid of agentPids('@198.19.0.')) {
        for (const what of ['cmdline', 'environ']) {
          try {
            midRun[`agent ${pid} ${what}`] = readFileSync(`/proc/${pid}/${what}`, 'latin1');
          } catch {
            // ended meanwhile
          }
        }
      }
    },
  });
  assert.is(r.code, 0, r.stderr + r.stdout);
  const result = readResult(dir);
  const client = result.hosts.find((h) => h.role === 'client')!;
  assert.is(client.target, `${USER}@198.19.0.1:22`);
  // Logged in as labsec, yet the agent ran as root (through sudo) and changed a sysctl.
  assert.is(client.facts.uid, 0);
  assert.equal(client.changes, [{ kind: 'sysctl', name: 'net.ipv4.ip_local_port_range', old: '32768 60999', new: '40000 40999', scope: 'namespace' }]);
  assert.ok(result.predictions.every((p) => p.verdict === 'pass'), JSON.stringify(result.predictions));
  assert.match(r.stderr, 'restored client');
  assert.ok(Object.keys(midRun).some((k) => k.endsWith('.journal')), `a journal was seen mid-run: ${Object.keys(midRun).join(', ')}`);
  assert.ok(Object.keys(midRun).some((k) => k.endsWith('environ')), 'the agents were seen mid-run');
  const agentEnv = Object.entries(midRun).find(([k]) => k.endsWith('environ'))![1];
  assert.not.ok(/LAB_TEST_SSH_PASSWORD|LAB_TEST_KEY_PASSPHRASE/.test(agentEnv), 'the variables themselves never reach the host');
  assertHostsClean('after the run through sudo');
  // Every output: the terminal, every report file, the journals and agents seen mid-run, every file under /run/lab (sshd logs too) and /var/tmp/lab-agent.
  const outputs = [
    ...filesUnder(dir),
    ...filesUnder('/run/lab'),
    // What the run puts on the hosts (the agent, its compiled helper); namespaces share this machine's files.
    ...filesUnder('/var/tmp/lab-agent'),
    ...filesUnder(work).filter((f) => !f.startsWith(lockedKey)),
  ];
  assert.ok(['result.json', 'report.md', 'report.html', 'junit.xml'].every((f) => outputs.includes(join(dir, f))), readdirSync(dir).join(', '));
  assert.equal(findSecret([password, passphrase], { stdout: r.stdout, stderr: r.stderr, ...midRun }, outputs), []);
});

test('a missing passphrase variable, a wrong passphrase and sudo that asks for a password: clear errors naming the host, no secret shown, nothing changed', async () => {
  const password = `pw-${randomBytes(12).toString('hex')}`;
  const passphrase = `pp-${randomBytes(12).toString('hex')}`;
  const wrong = `wrong-${randomBytes(12).toString('hex')}`;
  // sudo for labsec, but only with its password: lab uses `sudo -n`, which then refuses.
  await clientWithUser(password, `${USER} ALL=(root) ALL\n`);
  const lockedKey = join(work, 'locked_key_2');
  execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', passphrase, '-f', lockedKey]);
  appendFileSync(`${stateDir}/authorized_keys`, readFileSync(`${lockedKey}.pub`));
  const file = inventoryWith(inventory, work, 'password-errors', (inv) => {
    Object.assign(inv.hosts.client, { user: USER, password_env: 'LAB_TEST_SSH_PASSWORD', sudo: true });
    Object.assign(inv.hosts.server, { identity: lockedKey, passphrase_env: 'LAB_TEST_KEY_PASSPHRASE' });
    delete inv.defaults.identity;
  });
  const cases: Array<[string, Record<string, string>, string[]]> = [
    ['no passphrase variable', { LAB_TEST_SSH_PASSWORD: password }, [
      'server: passphrase_env names "LAB_TEST_KEY_PASSPHRASE", but that environment variable is not set [SSH_IDENTITY]',
    ]],
    ['wrong passphrase', { LAB_TEST_SSH_PASSWORD: password, LAB_TEST_KEY_PASSPHRASE: wrong }, [
      `server: Cannot use identity "${lockedKey}": `,
      ': check the passphrase in $LAB_TEST_KEY_PASSPHRASE [SSH_IDENTITY]',
    ]],
    ['wrong password', { LAB_TEST_SSH_PASSWORD: wrong, LAB_TEST_KEY_PASSPHRASE: passphrase }, [
      `client: Authentication failed for ${USER}@198.19.0.1:22: tried password (from $LAB_TEST_SSH_PASSWORD); the server accepts publickey, password [SSH_AUTH]`,
    ]],
    ['sudo asks for a password', { LAB_TEST_SSH_PASSWORD: password, LAB_TEST_KEY_PASSPHRASE: passphrase }, [
      `client: "sudo -n true" failed for ${USER}@198.19.0.1:22: sudo: a password is required: give the user passwordless sudo, or log in as root [SSH_SUDO]`,
    ]],
  ];
  for (const [name, env, expected] of cases) {
    const dir = join(work, `errors-${name.replaceAll(' ', '-')}`);
    const r = await runCli(['run', 'labs/port-exhaustion.yaml', '-i', file, '--out', dir], { env });
    assert.is(r.code, 3, `${name}: ${r.stderr}`);
    for (const line of expected) assert.ok(r.stderr.includes(line), `${name}: expected "${line}" in:\n${r.stderr}`);
    const result = readResult(dir);
    assert.equal(result.hosts.flatMap((h) => h.changes), [], `${name}: nothing changed`);
    await eventuallyClean(`after "${name}"`);
    assert.equal(findSecret([password, passphrase, wrong], { stdout: r.stdout, stderr: r.stderr }, filesUnder(dir)), [], name);
  }
});

test('an ssh-agent holding a passphrase-locked key logs in (agent: true), and without SSH_AUTH_SOCK the error says what to do', async () => {
  const passphrase = `pp-${randomBytes(12).toString('hex')}`;
  const key = join(work, 'agent_key');
  execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', passphrase, '-f', key]);
  appendFileSync(`${stateDir}/authorized_keys`, readFileSync(`${key}.pub`));
  const sock = join(work, 'agent.sock');
  const agentOut = execFileSync('ssh-agent', ['-s', '-a', sock], { encoding: 'utf8' });
  const agentPid = Number(/SSH_AGENT_PID=(\d+)/.exec(agentOut)![1]);
  try {
    // The passphrase reaches ssh-add through an askpass program, as a desktop's would.
    const askpass = join(work, 'askpass.sh');
    writeFileSync(askpass, '#!/bin/sh\nprintf "%s\\n" "$LAB_TEST_KEY_PASSPHRASE"\n', { mode: 0o700 });
    execFileSync('ssh-add', [key], {
      env: { PATH: process.env.PATH, SSH_AUTH_SOCK: sock, SSH_ASKPASS: askpass, SSH_ASKPASS_REQUIRE: 'force', LAB_TEST_KEY_PASSPHRASE: passphrase },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    const inv = await readInventory(inventory);
    const server = { ...inv.hosts.server!, identity: undefined, agent: true, role: 'server' };
    const t = new SshTransport({ ...server, env: { SSH_AUTH_SOCK: sock } });
    try {
      await t.connect();
      assert.equal(await t.exec(['id', '-u']), { code: 0, signal: null, stdout: '0\n', stderr: '' });
    } finally {
      await t.close();
    }
    const none = new SshTransport({ ...server, env: {} });
    try {
      await none.connect();
      assert.unreachable('connected without an agent');
    } catch (e) {
      assert.is((e as HostError).code, 'SSH_AUTH');
      assert.is((e as Error).message, 'server: "agent: true" needs an SSH agent, but SSH_AUTH_SOCK is not set: start ssh-agent, or use "identity"');
    } finally {
      await none.close();
    }
  } finally {
    process.kill(agentPid, 'SIGTERM');
  }
});

// ---------------------------------------------------------------------------

test('report.html shows, and never runs, markup from a lab file, a host\'s hostname and a host-side error', async () => {
  // Each payload would change the page's title (or open a dialog) if it ran.
  const fromLab = `<script>document.title="pwned-lab"</script>"><img src=x onerror="alert('pwned-lab')">`;
  const fromHostname = '<script>document.title="pwned-host"</script>';
  const fromError = `"><img src=x onerror="document.title='pwned-error'">`;
  // The client's sshd, and so its sessions and the agent, in a UTS namespace with that hostname.
  await restartSshd('client', { hostname: fromHostname });
  const lab = parse(readFileSync(join(ROOT, 'labs/port-exhaustion.yaml'), 'utf8'));
  lab.description = `Hostile: ${fromLab}`;
  const labFile = join(work, 'hostile.yaml');
  writeFileSync(labFile, stringify(lab));
  const lock = `/run/lab/host/${addressOf('server')}.journal.lock`;
  const dir = join(work, 'hostile');
  // The server's lock is held by another process, which wrote its own description there, as a holder does:
  // the run reads both hosts' facts, then stops at the server's lock, quoting that text.
  mkdirSync('/run/lab/host', { recursive: true });
  writeFileSync(lock, `${fromError}\n`);
  plantedLocks.push(lock);
  // One process holds the lock (no child to outlive it), and says so once it does.
  const holder = spawn('python3', ['-c', 'import fcntl, sys, time\nf = open(sys.argv[1], "a")\nfcntl.flock(f, fcntl.LOCK_EX)\nprint("held", flush=True)\ntime.sleep(60)', lock]);
  holders.push(holder);
  const browser = await Browser.launch();
  try {
    try {
      await new Promise<void>((resolve, reject) => {
        holder.stdout!.once('data', () => resolve());
        holder.once('exit', (code) => reject(new Error(`the lock holder exited (${code})`)));
      });
      const r = await runCli(['run', labFile, '-i', inventory, '--out', dir]);
      assert.is(r.code, 3, r.stderr);
      assert.match(r.stderr, `${lock}: held by ${fromError} [LOCKED]`);
    } finally {
      holder.kill('SIGKILL');
      rmSync(lock, { force: true });
    }
    const result = readResult(dir);
    assert.is(result.hosts.find((h) => h.role === 'client')?.facts.hostname, fromHostname, 'the hostname came from the host');
    assert.ok(result.error?.message.includes(fromError), 'the error quotes the host');
    const html = join(dir, 'report.html');
    const page = await browser.open(html);
    try {
      assert.equal(page.dialogs, [], 'dialogs');
      assert.is(page.scripts, 0, 'ran a script');
      assert.equal(page.blockedRequests, [], 'asked for a resource');
      assert.equal(page.consoleErrors, [], 'console errors');
      assert.not.match(await page.evaluate<string>('document.title'), /pwned/);
      assert.is(await page.evaluate<number>('document.querySelectorAll("script, img").length'), 0, 'markup became elements');
      const text = await page.evaluate<string>('document.body.innerText');
      for (const t of [fromLab, fromHostname, fromError]) assert.ok(text.includes(t), `report.html shows ${t} as text`);
    } finally {
      await page.close();
    }
  } finally {
    await browser.close();
    await restartSshd('client');
  }
  await eventuallyClean('after the hostile runs');
});

// ---------------------------------------------------------------------------

test('the SSH connection dropped mid-run while sshd stays up: the run says so, and the client ends restored', async () => {
  const dir = join(work, 'dropped');
  let dropped = '';
  const r = await runCli(['run', 'test/fixtures/labs/run/slow.yaml', '-i', inventory, '--out', dir], {
    onStderr: (text) => {
      if (dropped || !text.includes('step hold')) return;
      dropped = '-';
      // Destroy the client's established SSH sockets (what a cut link or a reset does to them); sshd keeps listening.
      dropped = execFileSync('ip', ['netns', 'exec', ns('client'), 'ss', '-K', '-n', '-t', 'state', 'established', '( sport = :22 )'], {
        encoding: 'utf8',
      });
    },
  });
  assert.match(dropped, /198\.19\.0\.1:22 /, 'an SSH connection to the client was dropped');
  assert.is(sshds('client').listener.length, 1, 'sshd still listens');
  assert.is(r.code, 3, r.stderr);
  assert.match(r.stderr, 'client: Lost the agent on root@198.19.0.1:22 (exit code null): the host or its connection went away [HOST_LOST]');
  // sshd still takes logins: the run connects again and a fresh agent replays what is left of the journal.
  assert.match(r.stderr, 'restored client (its agent was lost: a fresh agent replayed its journal)');
  assert.match(r.stderr, 'restored server');
  const result = readResult(dir);
  assert.equal(result.restore, { ok: true, problems: [] });
  assert.ok(result.notes.some((n) => n.startsWith('client: the agent was lost; its journal was replayed by a fresh agent')), result.notes.join('\n'));
  assertHostsClean('after the connection was dropped');
});

test.run();
