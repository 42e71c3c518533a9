// SshTransport against real OpenSSH sshds: namespace hosts made by hostsUp()
// (alpha, beta, gamma on 198.19.0.1-3). Every way in, every way it fails, and
// what happens when sshd goes away mid-session. hostsDown() runs afterwards,
// whatever happened.

import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { copyFileSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { HostError } from '../../runner/errors.ts';
import { hostsDown, hostsUp, HOSTS_UP_DIR } from '../../runner/hosts/hostsup.ts';
import { inventoryTransport, readInventory, type Inventory, type InventoryHost } from '../../runner/hosts/inventory.ts';
import type { LocalNetwork } from '../../runner/hosts/netns.ts';
import { remoteCommand, SshTransport, type HostKeyAdded, type SshTransportOptions } from '../../runner/hosts/ssh.ts';

const work = mkdtempSync(join(tmpdir(), 'lab-ssh-test-'));
let inventory: Inventory;
let network: LocalNetwork;
let stateDir: string;
const open: SshTransport[] = [];

test.before(async () => {
  const up = await hostsUp({ roles: ['alpha', 'beta', 'gamma'], out: join(work, 'inventory.yaml') });
  network = up.network;
  stateDir = `${HOSTS_UP_DIR}/${network.id}`;
  inventory = await readInventory(up.inventoryPath);
});

test.after(async () => {
  await Promise.all(open.map((t) => t.close().catch(() => undefined)));
  const problems = await hostsDown();
  rmSync(work, { recursive: true, force: true });
  assert.equal(problems, [], 'hostsDown() problems');
});

function host(role: string): InventoryHost {
  return inventory.hosts[role]!;
}

/** A transport to `role`'s host, with some settings changed; closed after the suite. */
function transport(role: string, changes: Partial<SshTransportOptions> = {}): SshTransport {
  const t = new SshTransport({ ...host(role), role, ...changes });
  open.push(t);
  return t;
}

async function rejection(p: Promise<unknown>): Promise<HostError> {
  try {
    await p;
  } catch (e) {
    if (e instanceof HostError) return e;
    throw e;
  }
  assert.unreachable('resolved');
  throw new Error('unreachable');
}

/** The fingerprint OpenSSH itself prints for a host's key. */
function opensshFingerprint(role: string): string {
  const out = execFileSync('ssh-keygen', ['-lf', `${stateDir}/${role}/ssh_host_ed25519_key.pub`], { encoding: 'utf8' });
  return out.split(' ')[1]!;
}

function hostKeyLine(role: string): string {
  return readFileSync(`${stateDir}/${role}/ssh_host_ed25519_key.pub`, 'utf8').trim().split(/\s+/).slice(0, 2).join(' ');
}

/** sshd processes in a host's namespace, apart from the listener when `sessionsOnly`. */
function sshdPids(role: string, sessionsOnly: boolean): number[] {
  const ns = network.hosts.find((h) => h.role === role)!.namespace;
  const listener = Number(readFileSync(`${stateDir}/${role}/sshd.pid`, 'utf8'));
  return execFileSync('ip', ['netns', 'pids', ns], { encoding: 'utf8' })
    .split(/\s+/)
    .filter(Boolean)
    .map(Number)
    .filter((pid) => {
      try {
        return readFileSync(`/proc/${pid}/comm`, 'utf8').trim() === 'sshd' && !(sessionsOnly && pid === listener);
      } catch {
        return false;
      }
    });
}

function signal(pids: number[], sig: NodeJS.Signals): void {
  for (const pid of pids) {
    try {
      process.kill(pid, sig);
    } catch {
      // gone already
    }
  }
}

test('hostsUp() writes an inventory of local hosts with addresses, aliases and a known_hosts file', () => {
  assert.equal(Object.keys(inventory.hosts), ['alpha', 'beta', 'gamma']);
  const alpha = host('alpha');
  assert.is(alpha.address, '198.19.0.1');
  assert.is(alpha.labAddress, '198.19.0.1');
  assert.is(host('gamma').address, '198.19.0.3');
  assert.is(alpha.user, 'root');
  assert.is(alpha.identity, `${stateDir}/id_ed25519`);
  assert.is(alpha.knownHosts, `${stateDir}/known_hosts`);
  assert.is(alpha.interface, 'eth0');
  assert.equal(alpha.aliases, ['198.19.1.1', '198.19.1.2', '198.19.1.3', '198.19.1.4', '198.19.1.5', '198.19.1.6', '198.19.1.7', '198.19.1.8']);
  assert.is(alpha.local, true);
  assert.is(
    readFileSync(alpha.knownHosts, 'utf8'),
    `198.19.0.1 ${hostKeyLine('alpha')}\n198.19.0.2 ${hostKeyLine('beta')}\n198.19.0.3 ${hostKeyLine('gamma')}\n`,
  );
});

test('hostsUp() refuses a second set of hosts while one is up', async () => {
  const e = await rejection(hostsUp({ roles: ['delta'], out: join(work, 'second.yaml') }));
  assert.is(e.code, 'HOSTS_UP_EXISTS');
  const id = network.id;
  assert.is(
    e.message,
    `Local SSH hosts are already up (network "${id}": lab-${id}-sw, lab-${id}-alpha, lab-${id}-beta, lab-${id}-gamma): run "lab hosts down" first`,
  );
  assert.not.ok(existsSync(join(work, 'second.yaml')));
});

test('exec() returns the exit code, stdout and stderr of one command', async () => {
  const t = inventoryTransport(host('alpha'), 'alpha');
  open.push(t);
  assert.is(t.kind, 'ssh');
  assert.is(t.target, 'root@198.19.0.1:22');
  assert.equal(t.capabilities, { localNamespace: true, needsSudo: false });
  await t.connect();
  assert.equal(await t.exec(['sh', '-c', 'echo out; echo err >&2; exit 3']), { code: 3, signal: null, stdout: 'out\n', stderr: 'err\n' });
  assert.equal(await t.exec(['true']), { code: 0, signal: null, stdout: '', stderr: '' });
  const ip = await t.exec(['ip', '-o', '-4', 'addr', 'show', 'dev', 'eth0']);
  assert.match(ip.stdout, / 198\.19\.0\.1\/16 /);
});

test('exec() passes every argument through the remote shell unchanged', async () => {
  const t = transport('alpha');
  const args = ['', ' ', "it's", '"', '\\', '$(id)', '`id`', '${HOME}', '*', '~', 'a\nb', 'ünïcødé', '; rm -rf /tmp/nothing', 'a=b'];
  const r = await t.exec(['printf', '%s\\0', ...args]);
  assert.equal(r.stdout.split('\0').slice(0, -1), args);
});

test('exec() feeds input to stdin and closes it', async () => {
  const t = transport('alpha');
  assert.is((await t.exec(['wc', '-l'], { input: 'a\nb\nc\n' })).stdout.trim(), '3');
  // Without input, stdin is closed at once: cat must not wait.
  assert.is((await t.exec(['cat'], { timeoutMs: 5000 })).code, 0);
});

test('exec() stops a command that runs out of time, on the host too', async () => {
  const t = transport('alpha');
  const started = Date.now();
  const r = await t.exec(['sleep', '30'], { timeoutMs: 300 });
  const elapsed = Date.now() - started;
  assert.equal(r, { code: null, signal: 'SIGTERM', stdout: '', stderr: '' });
  assert.ok(elapsed < 2000, `took ${elapsed}ms`);
  assert.is((await t.exec(['sh', '-c', 'exit 124'])).code, 124, 'a quick exit 124 is just an exit code');
  // The host's sshd ends the command after the channel closes: give it a moment, no more.
  let left = '';
  for (const until = Date.now() + 3000; Date.now() < until; await new Promise((r) => setTimeout(r, 100))) {
    left = (await t.exec(['sh', '-c', 'for p in /proc/[0-9]*; do cat $p/cmdline 2>/dev/null | tr "\\0" " "; echo; done'])).stdout;
    if (!/^sleep 30 $/m.test(left)) break;
  }
  assert.not.match(left, /^sleep 30 $/m);
});

test('python3 over SSH is the system\'s /usr/bin/python3', async () => {
  const t = transport('beta');
  const r = await t.exec(['python3', '-c', 'import sys; print(sys.executable)']);
  assert.equal(r, { code: 0, signal: null, stdout: '/usr/bin/python3\n', stderr: '' });
});

test('spawn() streams stdin to stdout as it comes, and kill() ends it', async () => {
  const t = transport('alpha');
  const p = await t.spawn(['python3', '-u', '-c', 'import sys\nfor line in sys.stdin: print("got " + line.strip(), flush=True)']);
  const lines: string[] = [];
  let wake = () => {};
  p.stdout.on('data', (d: Buffer) => {
    lines.push(...String(d).split('\n').filter(Boolean));
    wake();
  });
  const next = (n: number) => new Promise<void>((r) => (wake = () => lines.length >= n && r()));
  p.stdin.write('one\n');
  await next(1);
  assert.equal(lines, ['got one']);
  p.stdin.write('two\n');
  await next(2);
  assert.equal(lines, ['got one', 'got two']);
  p.kill();
  assert.equal(await p.exited, { code: 0, signal: null });
});

test('spawn() kill() ends a process that ignores EOF and TERM, with its children', async () => {
  const t = transport('alpha');
  // Odd durations, so no other process on this machine is mistaken for these.
  const p = await t.spawn(['sh', '-c', 'trap "" TERM; sleep 60.417 & sleep 61.417; wait']);
  p.stdout.resume();
  const started = Date.now();
  p.kill();
  assert.equal(await p.exited, { code: null, signal: 'SIGKILL' });
  assert.ok(Date.now() - started < 8000);
  const left = await t.exec(['sh', '-c', 'for p in /proc/[0-9]*; do cat $p/cmdline 2>/dev/null | tr "\\0" " "; echo; done']);
  assert.not.match(left.stdout, /^sleep 6[01]\.417 $/m);
});

test('putFile() creates parent directories, writes the bytes and sets the mode', async () => {
  const t = transport('beta');
  const dir = `${work}/put/a/b`;
  const bytes = Uint8Array.from([0, 1, 2, 255, 10, 13]);
  await t.putFile(`${dir}/data.bin`, bytes, 0o600);
  // Namespaces share this machine's file system, so the result can be read here.
  assert.equal([...readFileSync(`${dir}/data.bin`)], [...bytes]);
  assert.is((await t.exec(['stat', '-c', '%a', `${dir}/data.bin`])).stdout, '600\n');
  await t.putFile(`${dir}/data.bin`, 'replaced\n', 0o755);
  assert.is(readFileSync(`${dir}/data.bin`, 'utf8'), 'replaced\n');
  assert.is((await t.exec(['stat', '-c', '%a', `${dir}/data.bin`])).stdout, '755\n');
});

test('install() puts an artifact on the host once, by name; python() resolves and checks python3 once', async () => {
  const t = transport('beta');
  const hash = randomBytes(8).toString('hex');
  const artifact = { name: `agent-${hash}.pyz`, hash, bytes: Uint8Array.from([80, 75, 0, 255, 10]) };
  const path = await t.install(artifact);
  try {
    assert.is(path, `/var/tmp/lab-agent/agent-${hash}.pyz`);
    // Namespaces share this machine's file system, so the result can be read here.
    assert.equal([...readFileSync(path)], [...artifact.bytes]);
    assert.is((await t.exec(['stat', '-c', '%a', path])).stdout, '644\n');
    const before = statSync(path).mtimeMs;
    await new Promise((r) => setTimeout(r, 20));
    assert.is(await t.install(artifact), path);
    assert.is(statSync(path).mtimeMs, before, 'a second install finds it and writes nothing');
    assert.equal(readdirSync('/var/tmp/lab-agent').filter((f) => f.includes(hash)), [artifact.name], 'no temporary file left');
  } finally {
    rmSync(path, { force: true });
  }
  const python = await t.python();
  assert.is(python.executable, '/usr/bin/python3');
  assert.ok(python.version[0] === 3 && python.version[1] >= 7);
  assert.is(await t.python(), python);
});

test('spawnInstalled() runs an installed artifact in one exec: its unpacked copy first, else the file; exit 90 when absent', async () => {
  const t = transport('beta');
  const hash = randomBytes(8).toString('hex');
  // Python runs a file that is not a zip as source: a stand-in for the zipapp.
  const artifact = { name: `agent-${hash}.pyz`, hash, bytes: new TextEncoder().encode('import sys; print("zip", sys.argv[1:])\n') };
  const dir = `/var/tmp/lab-agent/agent-${hash}.d`;
  const run = async () => {
    const p = await t.spawnInstalled(artifact, (path) => ['-S', path, 'a b', "it's"]);
    let out = '';
    p.stdout.on('data', (d: Buffer) => (out += d.toString()));
    const how = await p.exited;
    return [how.code, out.trim()];
  };
  try {
    assert.equal(await run(), [90, '']);
    await t.install(artifact);
    assert.equal(await run(), [0, "zip ['a b', \"it's\"]"]);
    execFileSync('mkdir', ['-p', dir]);
    writeFileSync(`${dir}/__main__.py`, 'import sys; print("dir", sys.argv[1:])\n');
    assert.equal(await run(), [0, "dir ['a b', \"it's\"]"]);
  } finally {
    rmSync(`/var/tmp/lab-agent/${artifact.name}`, { force: true });
    rmSync(dir, { recursive: true, force: true });
  }
});

test('remoteCommand() wraps a non-root user\'s commands in sudo -n, inside the timeout and marker', () => {
  assert.is(remoteCommand(['cat', '/etc/x y']), "cat '/etc/x y'");
  assert.is(remoteCommand(['cat', '/etc/x y'], { sudo: true }), "sudo -n -- cat '/etc/x y'");
  assert.is(remoteCommand(['sleep', '5'], { sudo: true, timeoutMs: 1500 }), 'sudo -n -- timeout -k 1 1.5 sleep 5');
  assert.is(remoteCommand(['sleep', '5'], { timeoutMs: 30_000 }), 'timeout -k 1 30 sleep 5');
  assert.is(remoteCommand(['python3', '/tmp/agent.py'], { sudo: true, marker: 'abc' }), 'sudo -n -- env LAB_SPAWN=abc python3 /tmp/agent.py');
  assert.equal(inventoryTransport({ ...host('alpha'), user: 'lab', sudo: true }, 'alpha').capabilities, { localNamespace: true, needsSudo: true });
});

test('connect() with a key the host does not know fails with SSH_AUTH, naming what was tried', async () => {
  const wrong = join(work, 'wrong_key');
  execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', wrong]);
  const e = await rejection(transport('alpha', { identity: wrong }).connect());
  assert.is(e.code, 'SSH_AUTH');
  assert.is(e.host, 'alpha');
  assert.is(e.message, `alpha: Authentication failed for root@198.19.0.1:22: tried publickey (${wrong}); the server accepts publickey`);
});

test('connect() with a password from an unset environment variable fails before connecting', async () => {
  const t = transport('alpha', { identity: undefined, passwordEnv: 'LAB_TEST_NO_SUCH_PASSWORD', env: {} });
  const e = await rejection(t.connect());
  assert.is(e.code, 'SSH_AUTH');
  assert.is(e.message, 'alpha: password_env names "LAB_TEST_NO_SUCH_PASSWORD", but that environment variable is not set');
});

test('connect() with a password the server does not take fails with SSH_AUTH, never showing it', async () => {
  const t = transport('alpha', { identity: undefined, passwordEnv: 'LAB_TEST_PASSWORD', env: { LAB_TEST_PASSWORD: 's3cret-Value' } });
  const e = await rejection(t.connect());
  assert.is(e.code, 'SSH_AUTH');
  assert.is(e.message, 'alpha: Authentication failed for root@198.19.0.1:22: tried password (from $LAB_TEST_PASSWORD); the server accepts publickey');
  assert.not.match(e.message, /s3cret/);
});

test('connect() with an empty known_hosts fails with SSH_HOSTKEY_UNKNOWN, saying how to accept', async () => {
  const known = join(work, 'empty_known_hosts');
  writeFileSync(known, '');
  const e = await rejection(transport('alpha', { knownHosts: known }).connect());
  assert.is(e.code, 'SSH_HOSTKEY_UNKNOWN');
  assert.is(
    e.message,
    `alpha: Host key of 198.19.0.1 is unknown: ssh-ed25519 ${opensshFingerprint('alpha')} is not in ${known}: ` +
      'to trust it, set "host_key: accept-new" in the inventory or pass --accept-new-host-keys',
  );
  assert.is(readFileSync(known, 'utf8'), '', 'check must not write known_hosts');
});

test('--accept-new-host-keys writes the key to known_hosts, and the key is then known', async () => {
  const known = join(work, 'new_known_hosts');
  const added: HostKeyAdded[] = [];
  const t = inventoryTransport({ ...host('beta'), knownHosts: known }, 'beta', { acceptNewHostKeys: true, onHostKeyAdded: (a) => added.push(a) });
  open.push(t);
  await t.connect();
  assert.is((await t.exec(['echo', 'in'])).stdout, 'in\n');
  assert.is(readFileSync(known, 'utf8'), `198.19.0.2 ${hostKeyLine('beta')}\n`);
  // It says which key it trusted, and where it wrote it (the CLI prints it, as OpenSSH's "Permanently added").
  assert.equal(added, [{ role: 'beta', who: '', host: '198.19.0.2', key: `ssh-ed25519 ${opensshFingerprint('beta')}`, file: known }]);
  // With the default policy, the written key now checks out.
  await transport('beta', { knownHosts: known, hostKey: 'check' }).connect();
});

test('connect() refuses a changed host key with SSH_HOSTKEY_CHANGED, showing both fingerprints', async () => {
  const known = join(work, 'changed_known_hosts');
  writeFileSync(known, `# alpha with beta's key\n198.19.0.1 ${hostKeyLine('beta')}\n`);
  const e = await rejection(transport('alpha', { knownHosts: known, hostKey: 'accept-new' }).connect());
  assert.is(e.code, 'SSH_HOSTKEY_CHANGED');
  assert.is(
    e.message,
    `alpha: Host key of 198.19.0.1 has changed: ${known}:2 has ssh-ed25519 ${opensshFingerprint('beta')}, ` +
      `the host offers ssh-ed25519 ${opensshFingerprint('alpha')}: lab never accepts a changed key; ` +
      `if the host was reinstalled, remove the old one with: ssh-keygen -R 198.19.0.1 -f ${known}`,
  );
  assert.is(readFileSync(known, 'utf8'), `# alpha with beta's key\n198.19.0.1 ${hostKeyLine('beta')}\n`, 'accept-new must not add a key for a changed host');
});

test('connect() matches hashed known_hosts entries', async () => {
  const known = join(work, 'hashed_known_hosts');
  copyFileSync(host('alpha').knownHosts, known);
  execFileSync('ssh-keygen', ['-H', '-f', known], { stdio: 'ignore' });
  assert.match(readFileSync(known, 'utf8'), /^\|1\|/);
  const t = transport('gamma', { knownHosts: known });
  await t.connect();
  assert.is((await t.exec(['true'])).code, 0);
});

test('connect() to an address with nothing there fails fast, naming the host and the address', async () => {
  const started = Date.now();
  const e = await rejection(transport('alpha', { role: 'ghost', address: '198.19.0.200', connectTimeoutMs: 1000 }).connect());
  const elapsed = Date.now() - started;
  assert.ok(['SSH_TIMEOUT', 'SSH_UNREACHABLE'].includes(e.code), e.code);
  assert.is(e.host, 'ghost');
  assert.ok(
    [
      'ghost: Timed out after 1s connecting to 198.19.0.200:22',
      'ghost: Cannot connect to 198.19.0.200:22: EHOSTUNREACH (no route to host)',
    ].includes(e.message),
    e.message,
  );
  assert.ok(elapsed < 4000, `took ${elapsed}ms`);
});

test('connect() to a port where nothing listens fails with SSH_UNREACHABLE and the errno', async () => {
  const e = await rejection(transport('alpha', { port: 2222 }).connect());
  assert.is(e.code, 'SSH_UNREACHABLE');
  assert.is(e.message, 'alpha: Cannot connect to 198.19.0.1:2222: ECONNREFUSED (connection refused)');
});

test('connect() through a jump host reaches the target from the jump host', async () => {
  const alpha = host('alpha');
  const t = transport('beta', { jump: { ...alpha } });
  assert.is(t.target, 'root@198.19.0.2:22 via root@198.19.0.1:22');
  await t.connect();
  // sshd on beta sees the connection come from alpha.
  const r = await t.exec(['sh', '-c', 'echo $SSH_CLIENT']);
  assert.match(r.stdout, /^198\.19\.0\.1 \d+ 22\n$/);
  assert.match((await t.exec(['ip', '-o', '-4', 'addr', 'show', 'dev', 'eth0'])).stdout, / 198\.19\.0\.2\/16 /);
});

test('connect() through a jump host names the jump host when its key is unknown, and the target when unreachable', async () => {
  const empty = join(work, 'jump_empty_known_hosts');
  writeFileSync(empty, '');
  const unknown = await rejection(transport('beta', { jump: { ...host('alpha'), knownHosts: empty } }).connect());
  assert.is(unknown.code, 'SSH_HOSTKEY_UNKNOWN');
  assert.match(unknown.message, /^beta: Host key of jump host 198\.19\.0\.1 is unknown: /);
  const refused = await rejection(transport('beta', { port: 2222, jump: { ...host('alpha') } }).connect());
  assert.is(refused.code, 'SSH_UNREACHABLE');
  assert.is(refused.message, 'beta: Cannot connect to 198.19.0.2:2222 through jump host root@198.19.0.1:22: the jump host says "Connection refused"');
});

test('a hung sshd is noticed by the keepalive, and the next exec fails with SSH_CLOSED', async () => {
  const t = transport('gamma');
  await t.connect();
  const sessions = sshdPids('gamma', true);
  assert.ok(sessions.length > 0);
  signal(sessions, 'SIGSTOP');
  try {
    const started = Date.now();
    const e = await rejection(t.exec(['sleep', '30']));
    const elapsed = Date.now() - started;
    assert.is(e.code, 'SSH_CLOSED');
    assert.is(e.message, 'gamma: Connection to root@198.19.0.3:22 was lost: no answer to 3 keepalives, 2s apart');
    assert.ok(elapsed < 12_000, `took ${elapsed}ms`);
  } finally {
    signal(sessions, 'SIGKILL');
    signal(sessions, 'SIGCONT');
  }
});

test('sshd killed mid-session: a pending exec rejects, spawn exits, and the next exec fails with SSH_CLOSED', async () => {
  const t = transport('gamma');
  await t.connect();
  const p = await t.spawn(['cat']);
  p.stdout.resume();
  const pending = t.exec(['sleep', '30']);
  await new Promise((r) => setTimeout(r, 200));
  signal(sshdPids('gamma', false), 'SIGKILL');
  const e = await rejection(pending);
  assert.is(e.code, 'SSH_CLOSED');
  assert.match(e.message, /^gamma: Connection to root@198\.19\.0\.3:22 was lost/);
  assert.equal(await p.exited, { code: null, signal: null });
  const next = await rejection(t.exec(['true']));
  assert.is(next.code, 'SSH_CLOSED');
  assert.is(next.message, e.message);
  const reconnect = await rejection(t.connect());
  assert.is(reconnect.code, 'SSH_CLOSED');
});

test('close() is idempotent, and exec() after it fails with SSH_CLOSED', async () => {
  const t = transport('alpha');
  await t.connect();
  await t.close();
  await t.close();
  const e = await rejection(t.exec(['true']));
  assert.is(e.code, 'SSH_CLOSED');
  assert.is(e.message, 'alpha: Connection to root@198.19.0.1:22 is closed');
});

test('hostsDown() stops every sshd and removes the namespaces and the state', async () => {
  assert.equal(await hostsDown(), []);
  const namespaces = existsSync('/run/netns') ? readdirSync('/run/netns') : [];
  assert.equal(namespaces.filter((n) => n.startsWith(`lab-${network.id}-`)), []);
  assert.not.ok(existsSync(stateDir));
  assert.equal(await hostsDown(), [], 'a second hostsDown() finds nothing');
});

test.run();
