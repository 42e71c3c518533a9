// Local namespace hosts: the wiring (two hosts: one veth pair; more: a
// bridge) and the safety promises — lab traffic
// cannot leave 198.18.0.0/15, nothing is made before it is journaled,
// concurrent networks never share addresses or a guard route, and everything
// goes again.

import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import {
  createLocalNetwork,
  defaultWiring,
  destroyLocalNetwork,
  guardMetric,
  LOCAL_JOURNAL_DIR,
  localAddresses,
  RUN_SLICES,
  NetnsTransport,
  type LocalHost,
  type LocalNetwork,
} from '../../runner/hosts/netns.ts';
import { guardRoutes, namespaces } from '../helpers.ts';

/** The machine's own bridge-netfilter setting before any test network: a switch must not change it. */
const rootNfCall = existsSync('/proc/sys/net/bridge/bridge-nf-call-iptables')
  ? readFileSync('/proc/sys/net/bridge/bridge-nf-call-iptables', 'utf8').trim()
  : '';

const id = `t${process.pid.toString(36)}`.slice(0, 8);
let network: LocalNetwork;

test.before(async () => {
  network = await createLocalNetwork({ id, roles: ['client', 'server'], net: 18, purpose: 'test' });
});
test.after(async () => {
  await destroyLocalNetwork(id);
});

const ip = (...args: string[]) => execFileSync('ip', args, { encoding: 'utf8' });

test('localAddresses() gives host i 198.N.0.(i+1) and aliases 198.N.(i+1).k', () => {
  const a = localAddresses(19, 1);
  assert.is(a.address, '198.19.0.2');
  assert.equal(a.aliasPool.slice(0, 2), ['198.19.2.1', '198.19.2.2']);
  assert.is(a.aliasPool.length, 128);
});

test('localAddresses() in slice s of 198.18.0.0/16 stays inside 198.18.16s.0/20', () => {
  assert.is(RUN_SLICES, 16);
  const a = localAddresses(18, 1, 2);
  assert.is(a.address, '198.18.32.2');
  assert.equal(a.aliasPool.slice(0, 2), ['198.18.34.1', '198.18.34.2']);
  assert.is(localAddresses(18, 14, 15).aliasPool.at(-1), '198.18.255.128');
  // A 16th host would reach into the next slice: it gets no aliases.
  assert.equal(localAddresses(18, 15, 0).aliasPool, []);
  assert.is(localAddresses(18, 15, 0).address, '198.18.0.16');
});

test('createLocalNetwork() makes a namespace per role, two hosts joined by one veth pair, journaled', () => {
  const names = namespaces();
  for (const n of [`lab-${id}-client`, `lab-${id}-server`]) assert.ok(names.includes(n), n);
  assert.not.ok(names.includes(`lab-${id}-sw`), 'no bridge between two hosts');
  assert.is(network.wiring, 'direct');
  assert.is(network.switchNamespace, undefined);
  const journal = JSON.parse(readFileSync(`${LOCAL_JOURNAL_DIR}/${id}.json`, 'utf8'));
  assert.equal(journal.namespaces, [`lab-${id}-client`, `lab-${id}-server`]);
  assert.is(journal.pid, process.pid);
  // Each eth0 is a veth whose peer is the other host's eth0: nothing between them.
  for (const [h, other] of [network.hosts, [...network.hosts].reverse()] as LocalHost[][]) {
    const link = ip('-n', h!.namespace, '-d', '-o', 'link', 'show', 'eth0');
    assert.match(link, 'veth');
    assert.match(link, `link-netns ${other!.namespace}`);
    assert.match(ip('-n', h!.namespace, '-o', 'link', 'show'), /^1: lo.*\n2: eth0@/s);
  }
});

test('defaultWiring(): a direct pair for exactly two hosts without a root link, else a bridge', () => {
  assert.is(defaultWiring(2), 'direct');
  assert.is(defaultWiring(2, true), 'bridge');
  assert.is(defaultWiring(1), 'bridge');
  assert.is(defaultWiring(3), 'bridge');
});

test('a direct pair refuses any other number of hosts, or a root link, before anything is made', async () => {
  const wid = `${id}w`.slice(-8);
  for (const spec of [{ roles: ['a', 'b', 'c'] }, { roles: ['a', 'b'], rootLink: true }]) {
    try {
      await createLocalNetwork({ id: wid, net: 18, purpose: 'test', wiring: 'direct', ...spec });
      assert.unreachable();
    } catch (e) {
      assert.match((e as Error).message, 'A direct veth pair joins exactly two hosts and no root link');
    }
  }
  assert.not.ok(existsSync(`${LOCAL_JOURNAL_DIR}/${wid}.json`));
  assert.not.ok(namespaces().some((n) => n.startsWith(`lab-${wid}-`)));
});

test('three hosts are joined by a bridge in a namespace of its own, its netfilter hooks off, and reach each other', async () => {
  const bid = `${id}3`.slice(-8);
  const net = await createLocalNetwork({ id: bid, roles: ['a', 'b', 'c'], net: 18, purpose: 'test' });
  try {
    assert.is(net.wiring, 'bridge');
    assert.is(net.switchNamespace, `lab-${bid}-sw`);
    const journal = JSON.parse(readFileSync(`${LOCAL_JOURNAL_DIR}/${bid}.json`, 'utf8'));
    assert.equal(journal.namespaces, [`lab-${bid}-sw`, `lab-${bid}-a`, `lab-${bid}-b`, `lab-${bid}-c`]);
    assert.match(ip('-n', net.switchNamespace!, '-o', 'link', 'show', 'master', 'br0'), /p0@.*p1@.*p2@/s);
    if (existsSync('/proc/sys/net/bridge/bridge-nf-call-iptables')) {
      const nf = execFileSync('ip', ['netns', 'exec', net.switchNamespace!, 'cat', '/proc/sys/net/bridge/bridge-nf-call-iptables'], { encoding: 'utf8' });
      assert.is(nf.trim(), '0');
      // The machine's own setting is not the switch's.
      assert.is(readFileSync('/proc/sys/net/bridge/bridge-nf-call-iptables', 'utf8').trim(), rootNfCall);
    }
    for (const [from, to] of [[0, 2], [2, 1]] as const) assert.match(await dial(net.hosts[from]!, net.hosts[to]!), net.hosts[from]!.address);
  } finally {
    assert.equal(await destroyLocalNetwork(bid), []);
  }
  assert.not.ok(namespaces().some((n) => n.startsWith(`lab-${bid}-`)));
});

test('the namespaces have no default route: only their own slice is reachable', () => {
  for (const h of network.hosts) {
    const routes = ip('-n', h.namespace, '-4', 'route', 'show').trim().split('\n');
    const slice = `198.18.${network.slice! * 16}.0/20`;
    assert.equal(routes, [`${slice} dev eth0 proto kernel scope link src ${h.address} `.trim()], routes.join('|'));
    const r = execFileSync('sh', ['-c', `ip -n ${h.namespace} route get 192.0.2.1 2>&1 || true`], { encoding: 'utf8' });
    assert.match(r, 'Network is unreachable');
  }
});

test('the root namespace guards 198.18.0.0/15 with an unreachable route of the network\'s own and gets no link', () => {
  assert.ok(guardRoutes().includes(`metric ${guardMetric(18, network.slice)}`), guardRoutes().join('|'));
  const get = execFileSync('sh', ['-c', 'ip route get 198.18.250.250 2>&1 || true'], { encoding: 'utf8' });
  assert.match(get, 'No route to host');
  assert.not.match(ip('-o', 'link', 'show'), `lab${id}`);
});

test('networks made at once get distinct slices and guard routes, and each goes without the others\'', async () => {
  const ids = [1, 2, 3, 4].map((n) => `${id}${n}`.slice(-8));
  const made = await Promise.all(ids.map((i) => createLocalNetwork({ id: i, roles: ['a', 'b'], net: 18, purpose: 'test' })));
  const slices = made.map((m) => m.slice!);
  assert.is(new Set([network.slice, ...slices]).size, 5, `slices ${slices}`);
  for (const m of made) assert.ok(guardRoutes().includes(`metric ${guardMetric(18, m.slice)}`));
  // Removing half of them leaves the others' guard routes, and then the rest go too.
  assert.equal((await Promise.all(ids.slice(0, 2).map((i) => destroyLocalNetwork(i)))).flat(), []);
  for (const m of made.slice(2)) assert.ok(guardRoutes().includes(`metric ${guardMetric(18, m.slice)}`), 'a live network keeps its guard');
  assert.equal((await Promise.all(ids.slice(2).map((i) => destroyLocalNetwork(i)))).flat(), []);
  for (const m of made) {
    assert.not.ok(guardRoutes().includes(`metric ${guardMetric(18, m.slice)}`), 'guard route removed');
    assert.not.ok(existsSync(`${LOCAL_JOURNAL_DIR}/slice-${m.slice}`), 'slice released');
    assert.not.ok(namespaces().some((n) => n.startsWith(`lab-${m.id}-`)));
  }
  assert.ok(guardRoutes().includes(`metric ${guardMetric(18, network.slice)}`), 'the first network keeps its guard');
});

/** One TCP connection from host `from` to host `to`; returns the source address `to` saw. */
async function dial(from: LocalHost, to: LocalHost): Promise<string> {
  const listener = await new NetnsTransport(to.role, to.namespace).spawn([
    'python3', '-c',
    `import socket; s = socket.create_server(("${to.address}", 9000)); print("up", flush=True); c, a = s.accept(); print(a[0], flush=True)`,
  ]);
  let heard = '';
  listener.stdout.on('data', (d) => (heard += d));
  while (!heard.includes('up')) await new Promise((r) => setTimeout(r, 20));
  const r = await new NetnsTransport(from.role, from.namespace).exec([
    'python3', '-c', `import socket; socket.create_connection(("${to.address}", 9000), timeout=3)`,
  ]);
  assert.is(r.code, 0, r.stderr);
  await listener.exited;
  return heard;
}

test('two hosts reach each other through their veth pair', async () => {
  const [client, server] = network.hosts;
  assert.match(await dial(client!, server!), client!.address);
});

test('NetnsTransport runs commands inside its namespace and reports exit codes', async () => {
  const t = new NetnsTransport('server', network.hosts[1]!.namespace);
  await t.connect();
  const r = await t.exec(['sh', '-c', 'ip -o -4 addr show dev eth0; exit 3']);
  assert.is(r.code, 3);
  assert.match(r.stdout, `${network.hosts[1]!.address}/20`);
  const gone = new NetnsTransport('x', 'lab-no-such-namespace');
  try {
    await gone.connect();
    assert.unreachable();
  } catch (e) {
    assert.is((e as Error).message, 'x: Namespace "lab-no-such-namespace" does not exist');
  }
});

test('destroyLocalNetwork() removes the namespaces, their processes and the journal', async () => {
  const other = await createLocalNetwork({ id: `${id}b`.slice(0, 8), roles: ['solo'], net: 18, purpose: 'test' });
  const sleeper = new NetnsTransport('solo', other.hosts[0]!.namespace);
  await sleeper.spawn(['sleep', '30.123']);
  assert.equal(await destroyLocalNetwork(other.id), []);
  assert.not.ok(namespaces().some((n) => n.startsWith(`lab-${other.id}-`)));
  assert.not.ok(existsSync(`${LOCAL_JOURNAL_DIR}/${other.id}.json`));
  const left = execFileSync('sh', ['-c', 'pgrep -f "slee[p] 30.123" || true'], { encoding: 'utf8' });
  assert.is(left.trim(), '');
});

test.run();
