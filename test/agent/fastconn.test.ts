// The agent's C connect/accept helper (runner/agent/lab_agent/fastconn.c):
// compiled on the host at first use, cached by source hash, and the Python
// workers as the fallback where no compiler is. Real namespaces, real kernel.

import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { AgentClient } from '../../runner/agent/client.ts';
import { ioUringSockets, ROOT } from '../helpers.ts';
import { mustRunLocal } from '../../runner/hosts/local.ts';
import { createLocalNetwork, destroyLocalNetwork, NetnsTransport, type LocalNetwork } from '../../runner/hosts/netns.ts';

/** The C helper closes through io_uring here (its release reply's `batched`). */
const RING = ioUringSockets();

let net: LocalNetwork;
const id = `fc${process.pid.toString(36)}`.slice(0, 8);
const caches: string[] = [];

test.before(async () => {
  net = await createLocalNetwork({ id, roles: ['client', 'server'], net: 18, purpose: 'test' });
});
test.after(async () => {
  await destroyLocalNetwork(id);
  for (const c of caches) rmSync(c, { recursive: true, force: true });
});

/** Agents for client and server, started with `env` (LAB_AGENT_CC, LAB_AGENT_CACHE) for their helper. */
async function agents(env: Record<string, string>): Promise<[AgentClient, AgentClient]> {
  // Key by key: under Deno, process.env is a view of the real environment, and assigning
  // a plain object to it would cut the tie for every later test.
  const saved = Object.fromEntries(Object.keys(env).map((k) => [k, process.env[k]]));
  Object.assign(process.env, env);
  try {
    const [c, s] = net.hosts;
    return [await AgentClient.start(new NetnsTransport('client', c!.namespace)), await AgentClient.start(new NetnsTransport('server', s!.namespace))];
  } finally {
    for (const [k, v] of Object.entries(saved)) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  }
}

/** Agents for client and server started with `env`, for fn, shut down after it whatever happens. */
async function withAgents(env: Record<string, string>, fn: (client: AgentClient, server: AgentClient) => Promise<void>): Promise<void> {
  const [client, server] = await agents(env);
  try {
    await fn(client, server);
  } finally {
    await client.shutdown();
    await server.shutdown();
  }
}

function freshCache(): string {
  const dir = mkdtempSync(join(tmpdir(), 'lab-fastconn-'));
  caches.push(dir);
  return dir;
}

/** Listen on the server (step l<port>) and connect count from the client (c<port>); both held. */
async function open(client: AgentClient, server: AgentClient, port: number, count: number, extra: { engine?: 'python'; park?: boolean } = {}) {
  const [c, s] = net.hosts;
  const l = await server.request('listen', { id: `l${port}`, address: s!.address, port, backlog: 4096, accept: true, ...extra });
  const r = await client.request('connect', {
    id: `c${port}`, pairs: [{ source: c!.address, address: s!.address, port }], count, bind: 'none', rate: 0,
    timeoutMs: 60_000, connectTimeoutMs: 3000, stopOnError: true, ...extra,
  });
  return { l, r };
}

/** open(), then release both ends by RST. */
async function ramp(client: AgentClient, server: AgentClient, port: number, count: number, engine?: 'python') {
  const { l, r } = await open(client, server, port, count, engine ? { engine } : {});
  const closed = await Promise.all([client.request('release', { id: `c${port}`, abort: true }), server.request('release', { id: `l${port}`, abort: true })]);
  return { l, r, closed: closed.map((x) => x.closed) };
}

test('a 20000-connection ramp runs on the C helper, compiled once into the cache, with the agent\'s counts intact', async () => {
  const cache = freshCache();
  await withAgents({ LAB_AGENT_CACHE: cache }, async (client, server) => {
    const [c] = net.hosts;
    await client.request('begin', { journal: join(cache, 'client.journal'), holder: 'fastconn test' });
    await client.request('sysctlSet', { name: 'net.ipv4.ip_local_port_range', value: '10000 65000' });
    const { l, r, closed } = await ramp(client, server, 8101, 20000);
    assert.is(l.engine, 'c');
    assert.is(r.engine, 'c');
    assert.is(r.established, 20000);
    assert.is(r.attempted, 20000);
    assert.equal(r.errors, {});
    assert.is(r.firstError, null);
    assert.is(r.stopReason, 'count');
    assert.is(r.perPair[0]!.established, 20000);
    assert.is(r.perPair[0]!.source, c!.address);
    assert.is(r.localPorts!.distinct, 20000);
    assert.equal(closed, [20000, 20000]);
    // Compiled once, named by the source's hash; a second agent would find it there.
    assert.equal(readdirSync(cache).filter((f) => f.startsWith('fastconn-')).length, 1);
    // Exhaustion through the helper: errno names and the stop reason as the Python workers give them.
    await client.request('sysctlSet', { name: 'net.ipv4.ip_local_port_range', value: '40000 40099' });
    const [s] = [net.hosts[1]!];
    await server.request('listen', { id: 'lx', address: s.address, port: 8102, backlog: 4096, accept: true });
    const x = await client.request('connect', {
      id: 'cx', pairs: [{ source: c!.address, address: s.address, port: 8102 }], count: 500, bind: 'none', rate: 0,
      timeoutMs: 30_000, connectTimeoutMs: 3000, stopOnError: true,
    });
    assert.is(x.established, 100);
    assert.equal(x.errors, { EADDRNOTAVAIL: 1 });
    assert.is(x.firstError!.errno, 'EADDRNOTAVAIL');
    assert.is(x.firstError!.after, 100);
    assert.is(x.stopReason, 'exhausted');
    await client.request('release', { id: 'cx', abort: true });
    await server.request('release', { id: 'lx', abort: true });
  });
});

test('without a C compiler the agent falls back to its Python workers, and says why', async () => {
  const cache = freshCache();
  await withAgents({ LAB_AGENT_CACHE: cache, LAB_AGENT_CC: '/nonexistent/cc' }, async (client, server) => {
    const { l, r, closed } = await ramp(client, server, 8103, 2000);
    assert.is(l.engine, 'python');
    assert.is(r.engine, 'python');
    assert.match(r.engineNote ?? '', /no C compiler \(\/nonexistent\/cc\)/);
    assert.is(r.established, 2000);
    assert.equal(closed, [2000, 2000]);
    assert.not.ok(existsSync(join(cache, 'fastconn')) || readdirSync(cache).some((f) => f.startsWith('fastconn-')));
  });
});

test('engine "python" runs the Python workers where the helper is available', async () => {
  await withAgents({ LAB_AGENT_CACHE: freshCache() }, async (client, server) => {
    const { l, r } = await ramp(client, server, 8104, 1000, 'python');
    assert.is(l.engine, 'python');
    assert.is(r.engine, 'python');
    assert.is(r.engineNote, undefined);
    assert.is(r.established, 1000);
  });
});

/** Bytes waiting unread in `ns`'s ESTABLISHED sockets on local port `port` (rx_queue of /proc/net/tcp). */
function unreadBytes(ns: string, port: number): number {
  const text = execFileSync('ip', ['netns', 'exec', ns, 'cat', '/proc/net/tcp'], { encoding: 'utf8' });
  let n = 0;
  for (const line of text.trim().split('\n').slice(1)) {
    const p = line.trim().split(/\s+/);
    if (p[3] === '01' && parseInt(p[1]!.split(':')[1]!, 16) === port) n += parseInt(p[4]!.split(':')[1]!, 16);
  }
  return n;
}

test('send: the C helper and the Python workers write the bytes on each connection, and the peer holds them unread', async () => {
  await withAgents({ LAB_AGENT_CACHE: freshCache() }, async (client, server) => {
    const [c, s] = net.hosts;
    for (const [engine, port] of [['c', 8105], ['python', 8106]] as const) {
      await server.request('listen', { id: `l${port}`, address: s!.address, port, backlog: 4096, accept: true, engine });
      const r = await client.request('connect', {
        id: `c${port}`, pairs: [{ source: c!.address, address: s!.address, port }], count: 200, bind: 'none', rate: 0,
        timeoutMs: 30_000, connectTimeoutMs: 3000, stopOnError: true, send: 1000, engine,
      });
      assert.is(r.engine, engine);
      assert.is(r.established, 200);
      assert.is(r.bytesSent, 200 * 1000);
      // The accepting side never reads: every byte is still in its receive queues.
      assert.is(unreadBytes(s!.namespace, port), 200 * 1000, engine);
      await client.request('release', { id: `c${port}`, abort: true });
      await server.request('release', { id: `l${port}`, abort: true });
    }
  });
});

test('snapshot: the listener\'s accept queue and its limit as ss -lnt shows them, and the ESTABLISHED sockets per port', async () => {
  await withAgents({ LAB_AGENT_CACHE: freshCache() }, async (client, server) => {
    const [c, s] = net.hosts;
    await server.request('listen', { id: 'q', address: s!.address, port: 8107, backlog: 3, accept: false });
    const r = await client.request('connect', {
      id: 'cq', pairs: [{ source: c!.address, address: s!.address, port: 8107 }], count: 10, bind: 'none', rate: 0,
      timeoutMs: 30_000, connectTimeoutMs: 300, stopOnError: true,
    });
    assert.is(r.established, 4, 'backlog 3 holds 3 + 1');
    const ss = await server.request('snapshot', { ports: [8107] });
    assert.equal(ss.listeners!.filter((l) => l.port === 8107), [{ address: s!.address, port: 8107, queue: 4, backlog: 3 }]);
    assert.equal(ss.established, { '8107': 4 });
    const cs = await client.request('snapshot', { ports: [8107] });
    assert.equal(cs.established, { '8107': 4 });
    assert.is((await client.request('snapshot', {})).established, undefined, 'no ports asked, none counted');
    await client.request('release', { id: 'cq', abort: true });
    await server.request('release', { id: 'q', abort: true });
  });
});

test('lanes: two chains of workers connect at once, each over its own pairs, and the reply adds them up', async () => {
  const cache = freshCache();
  await withAgents({ LAB_AGENT_CACHE: cache }, async (client, server) => {
    const [c, s] = net.hosts;
    const sources = c!.aliasPool.slice(0, 3);
    await mustRunLocal(['ip', '-n', c!.namespace, '-batch', '-'], { input: sources.map((a) => `addr add ${a}/${c!.prefix} dev ${c!.device}`).join('\n') + '\n' });
    await client.request('begin', { journal: join(cache, 'client.journal'), holder: 'fastconn test' });
    await client.request('sysctlSet', { name: 'net.ipv4.ip_local_port_range', value: '40000 40099' });
    await server.request('listen', { id: 'ln', address: s!.address, port: 8115, backlog: 4096, accept: true });
    const pairs = sources.map((source) => ({ source, address: s!.address, port: 8115 }));
    const args = { pairs, bind: 'none' as const, rate: 0, timeoutMs: 30_000, connectTimeoutMs: 3000, stopOnError: true, lanes: 2 };
    const r = await client.request('connect', { id: 'cn', count: 250, ...args });
    assert.is(r.lanes, 2);
    assert.is(r.established, 250);
    assert.is(r.stopReason, 'count');
    // pairs 0 and 2 in one lane (2/3 of the count), pair 1 in the other
    assert.equal(r.perPair.map((p) => p.established), [84, 83, 83]);
    await client.request('release', { id: 'cn', abort: true });
    // Past the ports of every pair (100 each): each lane exhausts its own pairs.
    const x = await client.request('connect', { id: 'cx', count: 500, ...args });
    assert.is(x.established, 300);
    assert.equal(x.errors, { EADDRNOTAVAIL: 3 });
    assert.is(x.stopReason, 'exhausted');
    assert.equal(x.perPair.map((p) => p.established), [100, 100, 100]);
    await client.request('release', { id: 'cx', abort: true });
    // Below the memory floor (here: above any machine's MemAvailable) every lane stops: short, never the OOM killer.
    await client.request('sysctlSet', { name: 'net.ipv4.ip_local_port_range', value: '10000 65000' });
    const m = await client.request('connect', { id: 'cm', count: 90_000, ...args, memFloorKiB: 2 ** 40 });
    assert.is(m.stopReason, 'memory');
    assert.ok(m.established < 90_000, `stopped short: ${m.established}`);
    assert.is(m.memoryStop!.floorKiB, 2 ** 40);
    assert.ok(m.memoryStop!.memAvailableKiB > 0);
    await client.request('release', { id: 'cm', abort: true });
    await server.request('release', { id: 'ln', abort: true });
  });
});

/** The C helper's workers in namespace `ns`, and the fds in their tables. */
function helperFds(ns: string): { workers: number; fds: number } {
  const pids = execFileSync('ip', ['netns', 'pids', ns], { encoding: 'utf8' }).split('\n').filter(Boolean);
  let workers = 0;
  let fds = 0;
  for (const pid of pids) {
    try {
      if (!readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('fastconn-')) continue;
      workers++;
      fds += readdirSync(`/proc/${pid}/fd`).length;
    } catch {
      // gone meanwhile
    }
  }
  return { workers, fds };
}

/** RSTs `ns` has sent (Tcp OutRsts, /proc/net/snmp). */
function outRsts(ns: string): number {
  const lines = execFileSync('ip', ['netns', 'exec', ns, 'cat', '/proc/net/snmp'], { encoding: 'utf8' }).split('\n').filter((l) => l.startsWith('Tcp:'));
  const names = lines[0]!.split(/\s+/);
  return Number(lines[1]!.split(/\s+/)[names.indexOf('OutRsts')]);
}

/** TIME_WAIT sockets in `ns` (/proc/net/sockstat). */
function timeWait(ns: string): number {
  const text = execFileSync('ip', ['netns', 'exec', ns, 'cat', '/proc/net/sockstat'], { encoding: 'utf8' });
  return Number(/TCP: .* tw (\d+)/.exec(text)![1]);
}

test('parking: the C workers hold their sockets out of their fd tables, ss still counts every one, and release closes them by RST, silently or gracefully', async () => {
  await withAgents({ LAB_AGENT_CACHE: freshCache() }, async (client, server) => {
    const [c, s] = net.hosts;
    const hold = async (port: number, count: number, park?: boolean) => {
      const { r } = await open(client, server, port, count, park === undefined ? {} : { park });
      assert.is(r.engine, 'c');
      assert.is(r.established, count);
      // The accept side may still be taking the last ones off its queue.
      for (let i = 0; i < 100 && (await server.request('snapshot', { ports: [port] })).established?.[String(port)] !== count; i++) await new Promise((ok) => setTimeout(ok, 50));
      assert.equal((await server.request('snapshot', { ports: [port] })).established, { [String(port)]: count });
      assert.equal((await client.request('snapshot', { ports: [port] })).established, { [String(port)]: count });
    };
    // Parked (the default): 15000 held on each side, at most a batch of 252 and the pipes left in each table.
    await hold(8120, 15000);
    const [cp, sp] = [helperFds(c!.namespace), helperFds(s!.namespace)];
    assert.ok(cp.workers >= 1 && sp.workers >= 1);
    assert.ok(cp.fds < cp.workers * 260, `client workers' fd tables: ${cp.fds} fds in ${cp.workers}`);
    assert.ok(sp.fds < sp.workers * 260, `server workers' fd tables: ${sp.fds} fds in ${sp.workers}`);
    const rsts = () => outRsts(c!.namespace) + outRsts(s!.namespace);
    let rst0 = rsts();
    const closed = await Promise.all([client.request('release', { id: 'c8120', abort: true }), server.request('release', { id: 'l8120', abort: true })]);
    assert.equal(closed.map((x) => x.closed), [15000, 15000]);
    assert.equal(closed.map((x) => x.batched), RING ? [15000, 15000] : [0, 0], 'closed through io_uring where it works');
    assert.is(timeWait(c!.namespace) + timeWait(s!.namespace), 0, 'RST: no TIME_WAIT');
    assert.ok(rsts() - rst0 >= 15000, `RSTs sent: ${rsts() - rst0}`);
    // Silent (both ends released at once): TCP_REPAIR, and not one RST or FIN on the wire.
    await hold(8123, 15000);
    rst0 = rsts();
    const silent = await Promise.all([client.request('release', { id: 'c8123', abort: true, silent: true }), server.request('release', { id: 'l8123', abort: true, silent: true })]);
    assert.equal(silent.map((x) => x.closed), [15000, 15000]);
    assert.equal(silent.map((x) => x.batched), RING ? [15000, 15000] : [0, 0], 'TCP_REPAIR and close through io_uring where it works');
    assert.is(rsts() - rst0, 0, 'silent: no RST');
    assert.is(timeWait(c!.namespace) + timeWait(s!.namespace), 0, 'silent: no TIME_WAIT');
    assert.equal((await client.request('snapshot', { ports: [8123] })).established, { '8123': 0 });
    assert.equal((await server.request('snapshot', { ports: [8123] })).established, { '8123': 0 });
    // Graceful: each parked socket is taken back and closed with a FIN; the client, closing first, keeps TIME_WAIT.
    await hold(8121, 3000);
    assert.is((await client.request('release', { id: 'c8121', abort: false })).closed, 3000);
    assert.is((await server.request('release', { id: 'l8121', abort: false })).closed, 3000);
    for (let i = 0; i < 100 && timeWait(c!.namespace) < 3000; i++) await new Promise((ok) => setTimeout(ok, 50));
    assert.is(timeWait(c!.namespace), 3000);
    // park: false keeps every socket in the tables (a worker meant to meet EMFILE; LAB_PARK=0 for benchmarks).
    await hold(8122, 15000, false);
    assert.ok(helperFds(c!.namespace).fds >= 15000, 'client sockets in the tables');
    assert.ok(helperFds(s!.namespace).fds >= 15000, 'server sockets in the tables');
    await Promise.all([client.request('release', { id: 'c8122', abort: true }), server.request('release', { id: 'l8122', abort: true })]);
  });
});

test('LAB_URING=0: the helper closes each socket with its own syscalls, by RST, silently or gracefully, as through the ring', async () => {
  await withAgents({ LAB_AGENT_CACHE: freshCache(), LAB_URING: '0' }, async (client, server) => {
    const [c, s] = net.hosts;
    const rsts = () => outRsts(c!.namespace) + outRsts(s!.namespace);
    const release = (port: number, abort: boolean, silent = false) =>
      Promise.all([client.request('release', { id: `c${port}`, abort, silent }), server.request('release', { id: `l${port}`, abort, silent })]);
    // Parked or not, each socket is set and closed one by one: nothing goes through the ring.
    for (const [port, park] of [[8124, true], [8125, false]] as const) {
      const { r } = await open(client, server, port, 2000, { park });
      assert.is(r.established, 2000);
      const rst0 = rsts();
      const silent = await release(port, true, true);
      assert.equal(silent.map((x) => [x.closed, x.batched]), [[2000, 0], [2000, 0]]);
      assert.is(rsts() - rst0, 0, 'silent: no RST');
      assert.equal((await server.request('snapshot', { ports: [port] })).established, { [String(port)]: 0 });
    }
    await open(client, server, 8126, 2000);
    const rst0 = rsts();
    assert.equal((await release(8126, true)).map((x) => [x.closed, x.batched]), [[2000, 0], [2000, 0]]);
    assert.ok(rsts() - rst0 >= 2000, `RSTs sent: ${rsts() - rst0}`);
    await open(client, server, 8127, 1000);
    assert.is((await client.request('release', { id: 'c8127', abort: false })).closed, 1000);
    assert.is((await server.request('release', { id: 'l8127', abort: false })).closed, 1000);
    // TIME_WAIT toward this port only: an earlier test's may still be in the namespace.
    const waiting = () => execFileSync('ip', ['netns', 'exec', c!.namespace, 'ss', '-Htan', 'state', 'time-wait', 'dport', '=', ':8127'], { encoding: 'utf8' }).split('\n').filter(Boolean).length;
    for (let i = 0; i < 100 && waiting() < 1000; i++) await new Promise((ok) => setTimeout(ok, 50));
    assert.is(waiting(), 1000, 'graceful: the client holds TIME_WAIT');
  });
});

test('parking that fails part way (no CAP_SYS_ADMIN, in-flight fds above nofile) keeps the rest in the table, and release closes every socket', async () => {
  // The helper as an agent compiles it, into a cache of this test's own.
  const cache = freshCache();
  await withAgents({ LAB_AGENT_CACHE: cache }, (client, server) => ramp(client, server, 8130, 10).then(() => {}));
  const helper = join(cache, readdirSync(cache).find((f) => /^fastconn-[0-9a-f]+$/.test(f))!);
  const driver = join(ROOT, 'test/agent/drivers/park_fail.py');
  const run = (prefix: string[]) =>
    JSON.parse(execFileSync('unshare', ['-n', 'sh', '-c', 'ip link set lo up && exec python3 "$@"', 'sh', driver, helper, '1200', ...prefix], { encoding: 'utf8' }));
  // The kernel lets a user hold at most its nofile fds in flight without CAP_SYS_ADMIN or
  // CAP_SYS_RESOURCE (ETOOMANYREFS): with nofile 600, three batches of 253 go out, the fourth fails.
  const failed = run(['prlimit', '--nofile=600', 'setpriv', '--bounding-set=-sys_admin,-sys_resource', '--inh-caps=-sys_admin,-sys_resource']);
  assert.is(failed.established, 1200);
  assert.ok(failed.workerFds > 253 && failed.workerFds < 600, `in the table: ${failed.workerFds}`);
  assert.is(failed.closed, 1200, 'the parked ones are taken back too');
  assert.is(failed.tcpInuseAfter, 1, 'only the driver\'s listener is left');
  // With the capabilities, every batch goes out.
  const parked = run(['prlimit', '--nofile=600']);
  assert.is(parked.established, 1200);
  assert.ok(parked.workerFds < 20, `in the table: ${parked.workerFds}`);
  assert.is(parked.closed, 1200);
  assert.is(parked.tcpInuseAfter, 1);
});

test.run();
