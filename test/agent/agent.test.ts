// The probe agent against the real kernel: two network namespaces made here
// (and always removed), a veth pair between them, one agent in each, spoken to
// in JSON lines by a small client that lives in this file on purpose (it tests
// the protocol itself, not runner/agent/client.ts).

import { spawn, execFileSync, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { AGENT_PROTOCOL_VERSION, type ArgsOf, type OpName, type ReplyOf } from '../../runner/agent/protocol.ts';
import { agentArtifact } from '../../runner/agent/zipapp.ts';
import type { Step } from '../../runner/lab/types.ts';
import { fdLimit } from '../../runner/models/connections.ts';
import { ioUringSockets, readSysctl } from '../helpers.ts';

/** The C helper closes through io_uring here (its release reply's `batched`). */
const RING = ioUringSockets();

/** The artifact lab ships (written into this suite's temporary directory in before()). */
let AGENT = '';
const NS_CLIENT = `labt-agent-${process.pid}-client`;
const NS_SERVER = `labt-agent-${process.pid}-server`;
const CLIENT_IP = '198.18.200.1';
const SERVER_IP = '198.18.200.2';

// ---------------------------------------------------------------- namespaces

function ip(...args: string[]): void {
  execFileSync('ip', args, { stdio: ['ignore', 'ignore', 'pipe'], timeout: 10_000 });
}

function deleteNamespaces(): void {
  for (const ns of [NS_CLIENT, NS_SERVER]) {
    if (existsSync(`/run/netns/${ns}`)) {
      try {
        ip('netns', 'del', ns);
      } catch {
        // Already gone.
      }
    }
  }
}

function createNamespaces(): void {
  deleteNamespaces();
  ip('netns', 'add', NS_CLIENT);
  ip('netns', 'add', NS_SERVER);
  // The veth pair is made inside the client namespace and its peer moved to the
  // server's: the root namespace never sees it. No default route anywhere.
  ip('-n', NS_CLIENT, 'link', 'add', 'veth0', 'type', 'veth', 'peer', 'name', 'veth1', 'netns', NS_SERVER);
  ip('-n', NS_CLIENT, 'addr', 'add', `${CLIENT_IP}/24`, 'dev', 'veth0');
  ip('-n', NS_SERVER, 'addr', 'add', `${SERVER_IP}/24`, 'dev', 'veth1');
  for (const [ns, dev] of [[NS_CLIENT, 'veth0'], [NS_SERVER, 'veth1']] as const) {
    ip('-n', ns, 'link', 'set', 'lo', 'up');
    ip('-n', ns, 'link', 'set', dev, 'up');
  }
}


/** ESTABLISHED sockets in a namespace whose remote port is `port`, from /proc/net/tcp */
function established(ns: string, port: number): number {
  const text = execFileSync('ip', ['netns', 'exec', ns, 'cat', '/proc/net/tcp'], { encoding: 'utf8', timeout: 10_000 });
  const want = port.toString(16).toUpperCase().padStart(4, '0');
  let n = 0;
  for (const line of text.split('\n').slice(1)) {
    const f = line.trim().split(/\s+/);
    if (f[2]?.endsWith(`:${want}`) && f[3] === '01') n++;
  }
  return n;
}

// ---------------------------------------------------------------- a tiny JSON-lines client

interface Reply {
  id: number;
  ok: boolean;
  result?: any;
  error?: { code: string; message: string };
  events: Array<{ event: string; data: any }>;
}

const live = new Set<Agent>();

class Agent {
  readonly proc: ChildProcessWithoutNullStreams;
  readonly ready: Promise<{ version: number; pid: number }>;
  readonly exited: Promise<number | null>;
  /** events that arrived after their request's reply (listen progress) */
  readonly lateEvents: Array<{ id: number; event: string; data: any }> = [];
  /** replies to no request of ours (a line the agent could not read gets "id": null) */
  readonly orphanReplies: Array<Omit<Reply, 'events'>> = [];
  stderr = '';
  private nextId = 1;
  private buf = '';
  private pending = new Map<number, { resolve: (r: Reply) => void; events: Reply['events'] }>();

  constructor(readonly ns: string) {
    this.proc = spawn('ip', ['netns', 'exec', ns, 'python3', AGENT], { stdio: ['pipe', 'pipe', 'pipe'] });
    live.add(this);
    let onReady!: (v: { version: number; pid: number }) => void;
    let onFail!: (e: Error) => void;
    this.ready = new Promise((res, rej) => ((onReady = res), (onFail = rej)));
    this.proc.stdin.on('error', () => {});
    this.proc.stderr.setEncoding('utf8');
    this.proc.stderr.on('data', (d: string) => (this.stderr += d));
    this.proc.stdout.setEncoding('utf8');
    this.proc.stdout.on('data', (chunk: string) => {
      this.buf += chunk;
      let nl: number;
      while ((nl = this.buf.indexOf('\n')) >= 0) {
        const line = this.buf.slice(0, nl);
        this.buf = this.buf.slice(nl + 1);
        const msg = JSON.parse(line);
        if (msg.event === 'ready' && msg.id === undefined) {
          onReady(msg.data);
          continue;
        }
        const p = this.pending.get(msg.id);
        if (msg.event) {
          if (p) p.events.push({ event: msg.event, data: msg.data });
          else this.lateEvents.push(msg);
        } else if (p) {
          this.pending.delete(msg.id);
          p.resolve({ ...msg, events: p.events });
        } else {
          this.orphanReplies.push(msg);
        }
      }
    });
    this.exited = new Promise((res) =>
      this.proc.on('exit', (code) => {
        live.delete(this);
        onFail(new Error(`agent in ${ns} exited (${code}) before ready: ${this.stderr}`));
        res(code);
      }),
    );
  }

  request(op: string, args: Record<string, unknown> = {}, timeoutMs = 30_000): Promise<Reply> {
    const id = this.nextId++;
    return new Promise<Reply>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new Error(`${op} (id ${id}) in ${this.ns}: no reply within ${timeoutMs} ms; stderr: ${this.stderr}`));
      }, timeoutMs);
      this.pending.set(id, {
        events: [],
        resolve: (r) => {
          clearTimeout(timer);
          resolve(r);
        },
      });
      this.proc.stdin.write(JSON.stringify({ id, op, args }) + '\n');
    });
  }

  /** a request that must succeed: its result, typed by runner/agent/protocol.ts */
  async ok<Op extends OpName>(op: Op, args: ArgsOf<Op> | Record<string, never> = {}, timeoutMs?: number): Promise<ReplyOf<Op>> {
    const r = await this.request(op, args as Record<string, unknown>, timeoutMs);
    if (!r.ok) throw new Error(`${op} failed in ${this.ns}: ${r.error?.code}: ${r.error?.message}`);
    return r.result;
  }

  /**
   * Signal the agent process itself, not through ChildProcess.kill: under Deno
   * that also ends the child's stdin (the agent then starts its EOF cleanup before
   * a SIGKILL lands) and reports the signal it sent instead of the exit code.
   */
  async signal(sig: 'SIGTERM' | 'SIGKILL'): Promise<number | null> {
    process.kill(this.proc.pid!, sig);
    return await this.exited;
  }

  /** close stdin and wait for the agent to exit (SIGKILL after the timeout) */
  async close(timeoutMs = 15_000): Promise<number | null> {
    this.proc.stdin.end();
    const timer = setTimeout(() => this.proc.kill('SIGKILL'), timeoutMs);
    const code = await this.exited;
    clearTimeout(timer);
    return code;
  }
}

async function startAgent(ns: string): Promise<Agent> {
  const a = new Agent(ns);
  await a.ready;
  return a;
}

/** pids whose parent is `pid` (the agent's workers) */
function childrenOf(pid: number): number[] {
  const out: number[] = [];
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const stat = readFileSync(`/proc/${d}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (ppid === pid) out.push(Number(d));
    } catch {
      // Exited while we looked.
    }
  }
  return out;
}

function alive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z';
  } catch {
    return false;
  }
}

async function waitFor(what: string, cond: () => boolean | Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** wait until a listen step holds `n` accepted connections */
async function waitAccepted(server: Agent, id: string, n: number): Promise<any> {
  let held: any;
  await waitFor(`${n} accepted on ${id}`, async () => {
    held = (await server.ok('snapshot')).held[id];
    return held?.open === n;
  });
  return held;
}

// ---------------------------------------------------------------- the suite

const test = suite('agent');
let tmp = '';
let port = 8100; // a fresh server port per test keeps TIME_WAIT of earlier tests out of the way
const nextPort = () => port++;
const pair = (p: number) => ({ source: CLIENT_IP, address: SERVER_IP, port: p });

const onExit = () => deleteNamespaces();
const onSignal = () => {
  for (const a of live) a.proc.kill('SIGKILL');
  deleteNamespaces();
  process.exit(130);
};
test.before(() => {
  // A crash or Ctrl-C must not leave namespaces behind either.
  process.on('exit', onExit);
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  createNamespaces();
  tmp = mkdtempSync(join(tmpdir(), 'labt-agent-'));
  AGENT = join(tmp, agentArtifact().name);
  writeFileSync(AGENT, agentArtifact().bytes);
});

test.after(async () => {
  for (const a of [...live]) a.proc.kill('SIGKILL');
  await Promise.all([...live].map((a) => a.exited));
  deleteNamespaces();
  if (tmp) rmSync(tmp, { recursive: true, force: true });
  process.off('exit', onExit);
  process.off('SIGINT', onSignal);
  process.off('SIGTERM', onSignal);
});

test('ready line, then hello', async () => {
  const a = new Agent(NS_CLIENT);
  try {
    const ready = await a.ready;
    // The Python package's VERSION and runner/agent/protocol.ts must agree.
    assert.is(ready.version, AGENT_PROTOCOL_VERSION);
    assert.type(ready.pid, 'number');
    const hello = await a.ok('hello');
    assert.is(hello.version, AGENT_PROTOCOL_VERSION);
    assert.is(hello.pid, ready.pid);
    assert.is(hello.uid, 0);
    assert.match(hello.python, /^3\.\d+/);
  } finally {
    await a.close();
  }
});

test('a started agent marks its zipapp used and prunes what no agent used for a month from its directory', async () => {
  const dir = dirname(AGENT);
  const month = new Date(Date.now() - 40 * 86400_000);
  const old = join(dir, 'agent-00000000000000aa.pyz');
  const other = join(dir, 'notes.txt');
  writeFileSync(old, 'x');
  writeFileSync(other, 'x');
  for (const p of [old, other, AGENT]) utimesSync(p, month, month);
  const a = await startAgent(NS_CLIENT);
  try {
    await waitFor('the prune of an unused zipapp', () => !existsSync(old));
    assert.ok(existsSync(AGENT), 'the running agent kept its own zipapp');
    assert.ok(statSync(AGENT).mtimeMs > Date.now() - 600_000, 'and marked it used now');
    assert.ok(existsSync(other), 'a file not named by a hash is left alone');
  } finally {
    rmSync(other, { force: true });
    await a.close();
  }
});

test('unknown op and malformed requests: BAD_REQUEST', async () => {
  const a = await startAgent(NS_CLIENT);
  try {
    const r = await a.request('frob');
    assert.is(r.ok, false);
    assert.equal(r.error, { code: 'BAD_REQUEST', message: 'unknown op "frob"' });
    const missing = await a.request('connect', { id: 'x', count: 1 });
    assert.is(missing.error?.code, 'BAD_REQUEST');
    assert.is(missing.error?.message, 'missing argument "pairs"');
    const noBegin = await a.request('sysctlSet', { name: 'net.core.somaxconn', value: '1000' });
    assert.is(noBegin.error?.code, 'BAD_REQUEST');
    assert.is(noBegin.error?.message, 'begin must come before any change');
    const unknown = await a.request('sysctlGet', { name: 'net.ipv4.no_such_thing' });
    assert.is(unknown.error?.code, 'ENOENT');
    // The agent still answers after errors.
    assert.is((await a.ok('hello')).version, 1);
  } finally {
    await a.close();
  }
});

test('requests outside the protocol are refused, and no text in them runs as code', async () => {
  const a = await startAgent(NS_CLIENT);
  const marker = join(tmp, 'pwned');
  const code = `__import__('os').system('touch ${marker}')`;
  try {
    // Wrong argument types, named with the value as sent.
    const cases: Array<[string, Record<string, unknown>, string]> = [
      ['nofile', { soft: '1024' }, 'argument "soft" must be int, got "1024"'],
      ['nofile', { soft: true }, 'argument "soft" must be int, got true'],
      ['listen', { id: 'l', port: 8080, accept: 'yes' }, 'argument "accept" must be bool, got "yes"'],
      ['connect', { id: 'c', pairs: 'all', count: 1 }, 'argument "pairs" must be list, got "all"'],
      ['addrAdd', { address: '198.18.9.9; reboot', device: 'eth0' }, 'argument "address" must be a dotted IPv4 address, got "198.18.9.9; reboot"'],
      ['begin', { journal: 42 }, 'argument "journal" must be str, got 42'],
    ];
    for (const [op, args, message] of cases) {
      const r = await a.request(op, args);
      assert.equal(r.error, { code: 'BAD_REQUEST', message }, `${op} ${JSON.stringify(args)}`);
    }
    // Text that would be code anywhere it was evaluated: an op, a sysctl name, an id.
    assert.equal((await a.request(code)).error, { code: 'BAD_REQUEST', message: `unknown op ${JSON.stringify(code)}` });
    assert.is((await a.request('sysctlGet', { name: code })).ok, false);
    assert.is((await a.request('connect', { id: code, pairs: [{ address: `$(touch ${marker})`, port: 1 }], count: 1 })).ok, false);
    // An oversized line (2 MiB) is refused by its length, read to its end, and the agent goes on.
    a.proc.stdin.write(`{"id": 99, "op": "hello", "args": {"pad": "${'x'.repeat(2 << 20)}"}}\n`);
    // JSON nested deeper than the parser's stack (under the length limit) is refused too, and the agent goes on.
    a.proc.stdin.write(`{"id": 98, "op": "hello", "args": {"a": ${'['.repeat(100_000)}${']'.repeat(100_000)}}}\n`);
    assert.is((await a.ok('hello')).version, 1);
    assert.equal(a.orphanReplies, [
      { id: null, ok: false, error: { code: 'BAD_REQUEST', message: 'a request line may hold at most 1048576 bytes' } },
      { id: null, ok: false, error: { code: 'BAD_REQUEST', message: 'not a JSON line: nested too deeply' } },
    ]);
    assert.not.ok(existsSync(marker), 'no request text was run');
  } finally {
    await a.close();
  }
});

test('facts: HostFacts shape, values from the namespace', async () => {
  const a = await startAgent(NS_CLIENT);
  try {
    await a.ok('begin', { journal: join(tmp, 'facts.journal'), holder: 'facts test' });
    await a.ok('sysctlSet', { name: 'net.ipv4.ip_local_port_range', value: '41000 41999' });
    const f = await a.ok('facts');
    const keys = [
      'hostname', 'kernel', 'python', 'portRange', 'reservedPorts', 'nofileSoft', 'nofileHard', 'canRaiseHardNofile',
      'nrOpen', 'fileMax', 'somaxconn', 'tcpMaxSynBacklog', 'tcpFinTimeout', 'tcpTwReuse', 'memTotalKiB',
      'memAvailableKiB', 'slabObjectSize', 'addresses', 'cpus', 'uid', 'fileMaxExempt', 'workerFds', 'socketsPerWorker',
      'slabAliases', 'bootId', 'tcpTwReuseDelayMs', 'tcpMaxTwBuckets', 'connectEngine',
      'tcpAbortOnOverflow', 'tcpSyncookies', 'pageSize', 'tcpRmem', 'tcpWmem', 'tcpMem', 'memPcpuRsv',
      'conntrackOn', 'conntrackCount', 'conntrackMax',
    ];
    assert.equal(Object.keys(f).sort(), [...keys].sort());
    assert.equal(f.portRange, [41000, 41999]);
    assert.equal(f.addresses, [`${CLIENT_IP}/24`]);
    assert.is(f.kernel, execFileSync('uname', ['-r'], { encoding: 'utf8' }).trim());
    assert.is(f.somaxconn, Number(readSysctl('net.core.somaxconn', NS_CLIENT)));
    assert.is(f.nrOpen, Number(readFileSync('/proc/sys/fs/nr_open', 'utf8')));
    assert.type(f.canRaiseHardNofile, 'boolean');
    assert.ok(f.nofileSoft > 0 && f.nofileSoft <= f.nofileHard);
    assert.ok(f.memTotalKiB > 0 && f.memAvailableKiB > 0 && f.memAvailableKiB <= f.memTotalKiB);
    assert.ok(f.cpus >= 1);
    assert.is(f.uid, 0);
    // Root of the first user namespace, with CAP_SYS_ADMIN: fs.file-max does not bind it.
    assert.is(f.fileMaxExempt, true);
    // A compiler is on this machine's PATH: the helper's small workers, as the memory check prices them.
    assert.is(f.connectEngine, 'c');
    // What data in flight is charged against: per-namespace buffers; tcp_mem is machine-wide, not shown in a namespace.
    assert.equal(f.tcpRmem, readSysctl('net.ipv4.tcp_rmem', NS_CLIENT).split(/\s+/).map(Number));
    assert.ok(f.pageSize! > 0 && f.tcpWmem!.length === 3);
    assert.equal(f.tcpMem, []);
    assert.is(f.tcpSyncookies, Number(readSysctl('net.ipv4.tcp_syncookies', NS_CLIENT)));
    // Root reads /proc/slabinfo: every cache, with the ones a socket costs.
    for (const cache of ['TCP', 'sock_inode_cache', 'filp', 'dentry']) {
      assert.ok(f.slabObjectSize[cache]! > 0, `slab cache ${cache}: ${f.slabObjectSize[cache]}`);
    }
    assert.ok(Object.keys(f.slabObjectSize).some((k) => k.startsWith('kmalloc-')));
    // Every alias names a cache slabinfo lists; the bind buckets are merged somewhere on SLUB kernels.
    for (const [alias, carrier] of Object.entries(f.slabAliases as Record<string, string>)) {
      assert.ok(carrier in f.slabObjectSize, `${alias} -> ${carrier}`);
    }
    assert.is(f.bootId, readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim());
  } finally {
    await a.close();
  }
  assert.is(readSysctl('net.ipv4.ip_local_port_range', NS_CLIENT), '32768 60999');
});

test('sysctlSet journals first; restore puts it back and removes the journal', async () => {
  const journal = join(tmp, 'sysctl.journal');
  const before = readSysctl('net.core.somaxconn', NS_CLIENT);
  const a = await startAgent(NS_CLIENT);
  try {
    assert.equal(await a.ok('begin', { journal, holder: 'sysctl test' }), { journal, pending: 0 });
    assert.is(readFileSync(`${journal}.lock`, 'utf8').trim(), 'sysctl test');
    assert.equal(await a.ok('sysctlSet', { name: 'net.core.somaxconn', value: '1234' }), { old: before, new: '1234' });
    assert.is(readSysctl('net.core.somaxconn', NS_CLIENT), '1234');
    const lines = readFileSync(journal, 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    assert.equal(lines, [{ kind: 'sysctl', name: 'net.core.somaxconn', old: before }]);
    // The same value again changes nothing and journals nothing.
    assert.equal(await a.ok('sysctlSet', { name: 'net.core.somaxconn', value: '1234' }), { old: '1234', new: '1234' });
    assert.is(readFileSync(journal, 'utf8').trim().split('\n').length, 1);
    assert.equal(await a.ok('sysctlGet', { name: 'net.core.somaxconn' }), { value: '1234' });
    // A value the kernel refuses: an errno, and no journal entry for it.
    const refused = await a.request('sysctlSet', { name: 'net.ipv4.ip_local_port_range', value: '50000 40000' });
    assert.is(refused.error?.code, 'EINVAL');
    assert.is(readFileSync(journal, 'utf8').trim().split('\n').length, 1);
    const restored = await a.ok('restore');
    assert.equal(restored, { undone: [{ kind: 'sysctl', name: 'net.core.somaxconn', old: before }], problems: [] });
    assert.is(readSysctl('net.core.somaxconn', NS_CLIENT), before);
    assert.not.ok(existsSync(journal));
  } finally {
    await a.close();
  }
  assert.not.ok(existsSync(`${journal}.lock`), 'the lock file goes with the agent');
});

test('port exhaustion: 1000 ports, then EADDRNOTAVAIL', async () => {
  const p = 8080;
  const client = await startAgent(NS_CLIENT);
  const server = await startAgent(NS_SERVER);
  try {
    await client.ok('begin', { journal: join(tmp, 'ports.journal'), holder: 'port exhaustion test' });
    await client.ok('sysctlSet', { name: 'net.ipv4.ip_local_port_range', value: '40000 40999' });
    const l = await server.ok('listen', { id: 'srv', address: SERVER_IP, port: p, backlog: 4096, accept: true });
    // engine: where the accept loop runs, the C helper or the Python workers (test/agent/fastconn.test.ts)
    assert.equal(l, { address: SERVER_IP, port: p, backlog: 4096, engine: l.engine });
    const r = await client.request('connect', {
      id: 'ramp', pairs: [pair(p)], count: 5000, bind: 'none', rate: 0, timeoutMs: 30_000, connectTimeoutMs: 3000,
    });
    assert.ok(r.ok, JSON.stringify(r.error));
    const c = r.result;
    assert.is(c.established, 1000);
    assert.is(c.firstError!.errno, 'EADDRNOTAVAIL');
    assert.is(c.firstError!.message, 'Cannot assign requested address');
    assert.is(c.firstError!.after, 1000);
    assert.equal(c.errors, { EADDRNOTAVAIL: 1 });
    assert.is(c.attempted, 1001);
    assert.is(c.stopReason, 'exhausted');
    assert.equal(c.perPair, [{ ...pair(p), established: 1000 }]);
    assert.ok(c.localPorts!.min >= 40000, `min ${c.localPorts!.min}`);
    assert.ok(c.localPorts!.max <= 40999, `max ${c.localPorts!.max}`);
    assert.is(c.localPorts!.distinct, 1000);
    for (const e of r.events) assert.is(e.event, 'progress');
    console.log(`    port exhaustion: ${c.established} in ${c.durationMs} ms = ${c.connectsPerSecond}/s`);
    await waitAccepted(server, 'srv', 1000);
    assert.equal(await client.ok('release', { id: 'ramp' }), { closed: 1000, batched: RING ? 1000 : 0 });
    assert.equal(await server.ok('release', { id: 'srv' }), { closed: 1000, batched: RING ? 1000 : 0 });
    const again = await client.request('release', { id: 'ramp' });
    assert.is(again.error?.code, 'BAD_REQUEST');
    await client.ok('restore');
  } finally {
    await client.close();
    await server.close();
  }
  assert.is(readSysctl('net.ipv4.ip_local_port_range', NS_CLIENT), '32768 60999');
});

test('EMFILE: nofile 600 and one process; its full fd table closes one by one until the ring can start', async () => {
  const p = nextPort();
  const client = await startAgent(NS_CLIENT);
  const server = await startAgent(NS_SERVER);
  try {
    assert.equal((await client.ok('nofile', { soft: 600 })).new[0], 600);
    const bad = await client.request('nofile', { soft: 30000, hard: 20000 });
    assert.is(bad.error?.code, 'EINVAL');
    await server.ok('listen', { id: 'srv', address: SERVER_IP, port: p, backlog: 1024 });
    const c = await client.ok('connect', {
      id: 'fd', pairs: [pair(p)], count: 1000, bind: 'none', timeoutMs: 30_000, connectTimeoutMs: 3000, processes: 1,
    });
    assert.is(c.firstError!.errno, 'EMFILE');
    assert.is(c.workers, 1);
    assert.is(c.stopReason, 'error');
    // 600 fds, less the worker's stdio and its two pipes: what the agent's facts say, and the fd-limit model reads.
    assert.is(c.established, 600 - (await client.ok('facts')).workerFds);
    assert.is(c.firstError!.after, c.established);
    assert.equal(c.errors, { EMFILE: 1 });
    // A worker meant to meet EMFILE keeps its sockets in its table, so the table is full at release and
    // io_uring_setup fails (EMFILE): the first batch of 256 closes one by one, the rest through the ring.
    assert.equal(await client.ok('release', { id: 'fd' }), { closed: c.established, batched: RING ? c.established - 256 : 0 });
    await server.ok('release', { id: 'srv' });
  } finally {
    await client.close();
    await server.close();
  }
});

test('EMFILE with processes: 2 ends each worker at its own fd table, not the step (stop_on_error as by default)', async () => {
  const p = nextPort();
  const client = await startAgent(NS_CLIENT);
  const server = await startAgent(NS_SERVER);
  try {
    await client.ok('nofile', { soft: 300 });
    await server.ok('listen', { id: 'srv', address: SERVER_IP, port: p, backlog: 1024 });
    const c = await client.ok('connect', {
      id: 'fd2', pairs: [pair(p)], count: 1000, bind: 'none', timeoutMs: 30_000, connectTimeoutMs: 3000, processes: 2, stopOnError: true,
    });
    const per = 300 - (await client.ok('facts')).workerFds;
    assert.is(c.workers, 2);
    assert.is(c.established, 2 * per);
    assert.is(c.firstError!.errno, 'EMFILE');
    assert.is(c.firstError!.after, per);
    assert.equal(c.errors, { EMFILE: 2 });
    assert.is(c.stopReason, 'error');
    await client.ok('release', { id: 'fd2' });
    await server.ok('release', { id: 'srv' });
  } finally {
    await client.close();
    await server.close();
  }
});

test('connections spread over workers on both sides; release closes them', async () => {
  const p = nextPort();
  const client = await startAgent(NS_CLIENT);
  const server = await startAgent(NS_SERVER);
  try {
    await client.ok('nofile', { soft: 300 });
    await server.ok('nofile', { soft: 300 });
    await server.ok('listen', { id: 'srv', address: SERVER_IP, port: p, backlog: 4096 });
    const inuse0 = (await client.ok('snapshot')).sockstat.TCP!.inuse;
    assert.is(established(NS_CLIENT, p), 0);
    const c = await client.ok('connect', {
      id: 'spread', pairs: [pair(p)], count: 1000, bind: 'ip', timeoutMs: 30_000, connectTimeoutMs: 3000,
    });
    assert.is(c.established, 1000);
    assert.is(c.firstError, null);
    assert.equal(c.errors, {});
    assert.is(c.stopReason, 'count');
    assert.ok(c.workers >= 4, `client workers ${c.workers}`);
    assert.is(c.localPorts!.distinct, 1000);
    const held = await waitAccepted(server, 'srv', 1000);
    assert.ok(held.workers >= 4, `server workers ${held.workers}`);
    const snap = await client.ok('snapshot');
    assert.equal(snap.held.spread, { kind: 'connect', open: 1000, workers: c.workers });
    assert.is(snap.processes, 1 + c.workers);
    // The C helper's workers park full batches of 253 sockets out of their tables (fastconn.c);
    // the Python workers keep every one in theirs.
    if (c.engine === 'c') assert.ok(snap.fds > c.workers && snap.fds < 1000, `fds ${snap.fds}`);
    else assert.ok(snap.fds >= 1000, `fds ${snap.fds}`);
    assert.ok(snap.sockstat.TCP!.inuse! >= inuse0! + 1000);
    assert.ok(snap.meminfo.MemTotal! > 0);
    assert.ok(snap.slab.TCP!.objSize > 0);
    assert.is(established(NS_CLIENT, p), 1000);
    const workerPids = childrenOf((await client.ok('hello')).pid);
    assert.is(workerPids.length, c.workers);

    assert.equal(await client.ok('release', { id: 'spread' }), { closed: 1000, batched: RING ? 1000 : 0 });
    await waitFor('client workers gone', () => workerPids.every((w) => !alive(w)));
    const after = await client.ok('snapshot');
    assert.equal(after.held, {});
    assert.is(after.processes, 1);
    assert.is(established(NS_CLIENT, p), 0);
    assert.equal(await server.ok('release', { id: 'srv' }), { closed: 1000, batched: RING ? 1000 : 0 });
    assert.equal((await server.ok('snapshot')).held, {});
    // The listener is closed too: its port can be taken again.
    await server.ok('listen', { id: 'srv', address: SERVER_IP, port: p, accept: false });
    await server.ok('release', { id: 'srv' });
  } finally {
    await client.close();
    await server.close();
  }
});

test('listen progress events follow the reply; several requests in flight', async () => {
  const p = nextPort();
  const client = await startAgent(NS_CLIENT);
  const server = await startAgent(NS_SERVER);
  try {
    await server.ok('listen', { id: 'srv', address: SERVER_IP, port: p });
    // connect, hello and snapshot at once: the stdin loop is never blocked.
    const [c, hello] = await Promise.all([
      client.ok('connect', { id: 'slow', pairs: [pair(p)], count: 100, rate: 200, timeoutMs: 10_000 }),
      client.ok('hello'),
    ]);
    assert.is(hello.version, 1);
    assert.is(c.established, 100);
    assert.ok(c.durationMs >= 400, `rate 200/s for 100 took ${c.durationMs} ms`);
    await waitFor('an accepted event', () => server.lateEvents.some((e) => e.data.accepted === 100));
    await client.ok('release', { id: 'slow' });
    await server.ok('release', { id: 'srv' });
  } finally {
    await client.close();
    await server.close();
  }
});

test('a second client IP doubles the ports; reuseaddr shares one local port across servers', async () => {
  const p1 = nextPort();
  const p2 = nextPort();
  const extra = '198.18.200.11';
  const client = await startAgent(NS_CLIENT);
  const server = await startAgent(NS_SERVER);
  try {
    await client.ok('begin', { journal: join(tmp, 'multi.journal'), holder: 'multi-IP test' });
    // Ports no earlier test used: a port an earlier bind() left in TIME_WAIT is not free for connect().
    await client.ok('sysctlSet', { name: 'net.ipv4.ip_local_port_range', value: '61000 61099' });
    await client.ok('addrAdd', { address: extra, prefix: 24, device: 'veth0' });
    await server.ok('listen', { id: 's1', address: SERVER_IP, port: p1 });
    await server.ok('listen', { id: 's2', address: SERVER_IP, port: p2 });
    const two = [pair(p1), { ...pair(p1), source: extra }];
    const m = await client.ok('connect', { id: 'multi', pairs: two, count: 1000, bind: 'none' });
    assert.is(m.established, 200);
    assert.equal(m.perPair.map((x: any) => x.established), [100, 100]);
    assert.equal(m.errors, { EADDRNOTAVAIL: 2 });
    assert.is(m.stopReason, 'exhausted');
    assert.equal(m.localPorts, { min: 61000, max: 61099, distinct: 100 });
    await client.ok('release', { id: 'multi' });

    const r = await client.ok('connect', { id: 'reuse', pairs: [pair(p1), pair(p2)], count: 3, bind: 'reuseaddr', port: 61500 });
    assert.is(r.established, 2);
    assert.equal(r.localPorts, { min: 61500, max: 61500, distinct: 1 });
    assert.is(r.firstError!.errno, 'EADDRNOTAVAIL');
    assert.is(r.firstError!.after, 2);
    await client.ok('release', { id: 'reuse' });
    const undone = await client.ok('restore');
    assert.equal(undone.undone.map((e: any) => e.kind), ['address', 'sysctl']);
    assert.equal((await client.ok('facts')).addresses, [`${CLIENT_IP}/24`]);
    await server.ok('release', { id: 's1' });
    await server.ok('release', { id: 's2' });
  } finally {
    await client.close();
    await server.close();
  }
});

// The fd-limit model and the agent must agree on how many workers a connect
// takes (issue 7): the model reads the agent's rule from its facts, and here
// the agent runs at a worker boundary, one connection below and one above.
test('the fd-limit model predicts the workers the agent starts, at a worker boundary', async () => {
  const p = nextPort();
  const client = await startAgent(NS_CLIENT);
  const server = await startAgent(NS_SERVER);
  try {
    await client.ok('nofile', { soft: 300 });
    await server.ok('nofile', { soft: 300 });
    await server.ok('listen', { id: 'srv', address: SERVER_IP, port: p, backlog: 4096 });
    const facts = await client.ok('facts');
    const boundary = 2 * facts.socketsPerWorker;
    for (const count of [boundary, boundary + 1]) {
      const step: Step = {
        name: 'ramp', kind: 'connect', host: 'client', to: [{ role: 'server', port: p }], count, sources: 1,
        bind: 'none', rate: 0, timeoutMs: 30_000, connectTimeoutMs: 3000, stopOnError: true,
      };
      const predicted = fdLimit({ step, steps: [step], metric: 'workers', facts: { client: facts }, addresses: { client: [CLIENT_IP], server: [SERVER_IP] } });
      const id = `edge-${count}`;
      const c = await client.ok('connect', { id, pairs: [pair(p)], count, timeoutMs: 30_000, connectTimeoutMs: 3000 });
      assert.is(c.established, count);
      assert.is(c.workers, predicted.value, `count ${count}: the model says ${predicted.value} (${predicted.derivation}), the agent started ${c.workers}`);
      await client.ok('release', { id, abort: true });
    }
    await server.ok('release', { id: 'srv', abort: true });
  } finally {
    await client.close();
    await server.close();
  }
});

test('a full accept queue: backlog + 1 connect, the rest time out', async () => {
  const p = nextPort();
  const client = await startAgent(NS_CLIENT);
  const server = await startAgent(NS_SERVER);
  try {
    await server.ok('listen', { id: 'q', address: SERVER_IP, port: p, backlog: 8, accept: false });
    const c = await client.ok('connect', {
      id: 'q', pairs: [pair(p)], count: 12, maxAttempts: 12, stopOnError: false, connectTimeoutMs: 300, timeoutMs: 10_000,
    });
    assert.is(c.established, 9);
    assert.equal(c.errors, { ETIMEDOUT: 3 });
    assert.is(c.firstError!.after, 9);
    assert.is(c.stopReason, 'attempts');
    assert.ok(c.durationMs >= 900, `3 timeouts of 300 ms took ${c.durationMs} ms`);
    assert.equal(await client.ok('release', { id: 'q' }), { closed: 9, batched: RING ? 9 : 0 });
    assert.equal(await server.ok('release', { id: 'q' }), { closed: 0, batched: 0 });
  } finally {
    await client.close();
    await server.close();
  }
});

test('timeoutMs bounds a step whose connects hang', async () => {
  const client = await startAgent(NS_CLIENT);
  try {
    // Nobody has .3: ARP goes unanswered, each connect runs into connectTimeoutMs.
    const t0 = Date.now();
    const c = await client.ok('connect', {
      id: 't', pairs: [{ address: '198.18.200.3', port: 80 }], count: 10, stopOnError: false, connectTimeoutMs: 300, timeoutMs: 1000,
    });
    assert.is(c.established, 0);
    assert.is(c.stopReason, 'timeout');
    assert.is(c.firstError!.errno, 'ETIMEDOUT');
    assert.ok(Date.now() - t0 < 2500, `took ${Date.now() - t0} ms`);
    await client.ok('release', { id: 't' });
  } finally {
    await client.close();
  }
});

test('stdin EOF: workers gone, journal undone, lock removed', async () => {
  const p = nextPort();
  const journal = join(tmp, 'eof.journal');
  const before = readSysctl('net.core.somaxconn', NS_CLIENT);
  const client = await startAgent(NS_CLIENT);
  const server = await startAgent(NS_SERVER);
  try {
    await client.ok('begin', { journal, holder: 'eof test' });
    await client.ok('sysctlSet', { name: 'net.core.somaxconn', value: '777' });
    await client.ok('nofile', { soft: 100 });
    await server.ok('listen', { id: 'srv', address: SERVER_IP, port: p });
    const c = await client.ok('connect', { id: 'c', pairs: [pair(p)], count: 300, timeoutMs: 10_000 });
    assert.is(c.established, 300);
    const pid = (await client.ok('hello')).pid;
    const workers = childrenOf(pid);
    assert.is(workers.length, c.workers);
    assert.ok(workers.length >= 3);
    assert.is(await client.close(), 0);
    assert.not.ok(alive(pid));
    for (const w of workers) assert.not.ok(alive(w), `worker ${w} outlived its agent`);
    assert.is(readSysctl('net.core.somaxconn', NS_CLIENT), before);
    assert.not.ok(existsSync(journal));
    assert.not.ok(existsSync(`${journal}.lock`));
    // The server side let go of every connection too when its agent ends.
    const spid = (await server.ok('hello')).pid;
    const sworkers = childrenOf(spid);
    assert.ok(sworkers.length >= 1);
    assert.is(await server.close(), 0);
    for (const w of sworkers) assert.not.ok(alive(w));
  } finally {
    await client.close();
    await server.close();
  }
});

test('SIGTERM restores; SIGKILL of the agent still takes its workers', async () => {
  const p = nextPort();
  const journal = join(tmp, 'term.journal');
  const before = readSysctl('net.core.somaxconn', NS_CLIENT);
  const server = await startAgent(NS_SERVER);
  try {
    await server.ok('listen', { id: 'srv', address: SERVER_IP, port: p });
    const a = await startAgent(NS_CLIENT);
    await a.ok('begin', { journal, holder: 'term test' });
    await a.ok('sysctlSet', { name: 'net.core.somaxconn', value: '555' });
    assert.is(await a.signal('SIGTERM'), 0);
    assert.is(readSysctl('net.core.somaxconn', NS_CLIENT), before);
    assert.not.ok(existsSync(journal));

    const b = await startAgent(NS_CLIENT);
    await b.ok('nofile', { soft: 100 });
    const c = await b.ok('connect', { id: 'c', pairs: [pair(p)], count: 200, timeoutMs: 10_000 });
    const workers = childrenOf((await b.ok('hello')).pid);
    assert.is(workers.length, c.workers);
    await b.signal('SIGKILL');
    await waitFor('workers of a killed agent to die', () => workers.every((w) => !alive(w)), 5000);
  } finally {
    await server.close();
  }
});

test('begin from a second agent on the same journal: LOCKED, naming the holder', async () => {
  const journal = join(tmp, 'locked.journal');
  const a = await startAgent(NS_CLIENT);
  const b = await startAgent(NS_SERVER);
  try {
    await a.ok('begin', { journal, holder: 'lab run by alice (pid 1)' });
    const r = await b.request('begin', { journal, holder: 'lab run by bob' });
    assert.is(r.ok, false);
    assert.is(r.error?.code, 'LOCKED');
    assert.is(r.error?.message, `${journal}.lock: held by lab run by alice (pid 1)`);
    assert.is((await b.request('restoreJournal', { journal })).error?.code, 'LOCKED');
    await a.close();
    // Once the holder is gone the journal is free.
    assert.equal(await b.ok('begin', { journal, holder: 'lab run by bob' }), { journal, pending: 0 });
  } finally {
    await a.close();
    await b.close();
  }
});

test('restoreJournal undoes what a dead agent left behind', async () => {
  const journal = join(tmp, 'dead.journal');
  const before = readSysctl('net.core.somaxconn', NS_CLIENT);
  const a = await startAgent(NS_CLIENT);
  await a.ok('begin', { journal, holder: 'doomed' });
  await a.ok('sysctlSet', { name: 'net.core.somaxconn', value: '321' });
  await a.ok('addrAdd', { address: '198.18.201.1', prefix: 24, device: 'veth0' });
  const dup = await a.request('addrAdd', { address: CLIENT_IP, prefix: 24, device: 'veth0' });
  assert.is(dup.error?.code, 'EEXIST');
  await a.signal('SIGKILL');
  assert.is(readSysctl('net.core.somaxconn', NS_CLIENT), '321');
  const b = await startAgent(NS_CLIENT);
  try {
    assert.ok((await b.ok('facts')).addresses.includes('198.18.201.1/24'));
    const r = await b.ok('restoreJournal', { journal });
    assert.equal(r.problems, []);
    assert.equal(
      r.undone.map((e: any) => e.kind),
      ['address', 'sysctl'],
    );
    assert.is(readSysctl('net.core.somaxconn', NS_CLIENT), before);
    assert.equal((await b.ok('facts')).addresses, [`${CLIENT_IP}/24`]);
    assert.not.ok(existsSync(journal));
    assert.not.ok(existsSync(`${journal}.lock`));
  } finally {
    await b.close();
  }
});

test('throughput: 20000 connections', async () => {
  const p = nextPort();
  const client = await startAgent(NS_CLIENT);
  const server = await startAgent(NS_SERVER);
  try {
    // connect() takes even ports first and, once half the range is in use, walks
    // all of them before each odd one: a wide range keeps this a measure of the agent.
    await client.ok('begin', { journal: join(tmp, 'throughput.journal'), holder: 'throughput test' });
    await client.ok('sysctlSet', { name: 'net.ipv4.ip_local_port_range', value: '10000 60999' });
    await server.ok('listen', { id: 'srv', address: SERVER_IP, port: p });
    const c = await client.ok('connect', { id: 'fast', pairs: [pair(p)], count: 20_000, timeoutMs: 30_000 }, 60_000);
    assert.is(c.established, 20_000);
    // Workers filled in turn to the agent's own budget (its facts say how many sockets each).
    assert.is(c.workers, Math.ceil(20_000 / (await client.ok('facts')).socketsPerWorker));
    assert.is(c.localPorts!.distinct, 20_000);
    console.log(`    throughput: ${c.established} in ${c.durationMs} ms = ${c.connectsPerSecond}/s over ${c.workers} workers`);
    await waitAccepted(server, 'srv', 20_000);
    await client.ok('release', { id: 'fast' });
    await server.ok('release', { id: 'srv' });
  } finally {
    await client.close();
    await server.close();
  }
});

test('shutdown replies, restores and exits 0', async () => {
  const journal = join(tmp, 'shutdown.journal');
  const a = await startAgent(NS_CLIENT);
  await a.ok('begin', { journal, holder: 'shutdown test' });
  const before = readSysctl('net.ipv4.tcp_fin_timeout', NS_CLIENT);
  await a.ok('sysctlSet', { name: 'net.ipv4.tcp_fin_timeout', value: '17' });
  const r = await a.ok('shutdown');
  assert.is(r.undone.length, 1);
  assert.is(await a.exited, 0);
  assert.is(readSysctl('net.ipv4.tcp_fin_timeout', NS_CLIENT), before);
});

test.run();
