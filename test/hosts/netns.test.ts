// Local namespace hosts: the wiring and the safety promises — lab traffic
// cannot leave 198.18.0.0/15, nothing is made before it is journaled, and
// everything goes again.

import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import {
  createLocalNetwork,
  destroyLocalNetwork,
  GUARD_ROUTE,
  LOCAL_JOURNAL_DIR,
  localAddresses,
  NetnsTransport,
  type LocalNetwork,
} from '../../runner/hosts/netns.ts';
import { namespaces } from '../helpers.ts';

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
  const a = localAddresses(18, 1);
  assert.is(a.address, '198.18.0.2');
  assert.equal(a.aliasPool.slice(0, 2), ['198.18.2.1', '198.18.2.2']);
  assert.is(a.aliasPool.length, 64);
});

test('createLocalNetwork() makes a namespace per role and one for the bridge, journaled', () => {
  const names = namespaces();
  for (const n of [`lab-${id}-sw`, `lab-${id}-client`, `lab-${id}-server`]) assert.ok(names.includes(n), n);
  const journal = JSON.parse(readFileSync(`${LOCAL_JOURNAL_DIR}/${id}.json`, 'utf8'));
  assert.equal(journal.namespaces, [`lab-${id}-sw`, `lab-${id}-client`, `lab-${id}-server`]);
  assert.is(journal.pid, process.pid);
});

test('the namespaces have no default route: only their own /16 is reachable', () => {
  for (const h of network.hosts) {
    const routes = ip('-n', h.namespace, '-4', 'route', 'show').trim().split('\n');
    assert.equal(routes, [`198.18.0.0/16 dev eth0 proto kernel scope link src ${h.address} `.trim()], routes.join('|'));
    const r = execFileSync('sh', ['-c', `ip -n ${h.namespace} route get 192.0.2.1 2>&1 || true`], { encoding: 'utf8' });
    assert.match(r, 'Network is unreachable');
  }
});

test('the root namespace guards 198.18.0.0/15 with an unreachable route and gets no link', () => {
  assert.match(ip('route', 'show', 'type', 'unreachable', GUARD_ROUTE), GUARD_ROUTE);
  assert.not.match(ip('-o', 'link', 'show'), `lab${id}`);
});

test('hosts reach each other through the bridge', async () => {
  const [client, server] = network.hosts;
  const listener = await new NetnsTransport('server', server!.namespace).spawn([
    'python3', '-c',
    `import socket; s = socket.create_server(("${server!.address}", 9000)); print("up", flush=True); c, a = s.accept(); print(a[0], flush=True)`,
  ]);
  let heard = '';
  listener.stdout.on('data', (d) => (heard += d));
  while (!heard.includes('up')) await new Promise((r) => setTimeout(r, 20));
  const r = await new NetnsTransport('client', client!.namespace).exec([
    'python3', '-c', `import socket; socket.create_connection(("${server!.address}", 9000), timeout=3)`,
  ]);
  assert.is(r.code, 0, r.stderr);
  await listener.exited;
  assert.match(heard, client!.address);
});

test('NetnsTransport runs commands inside its namespace and reports exit codes', async () => {
  const t = new NetnsTransport('server', network.hosts[1]!.namespace);
  await t.connect();
  const r = await t.exec(['sh', '-c', 'ip -o -4 addr show dev eth0; exit 3']);
  assert.is(r.code, 3);
  assert.match(r.stdout, '198.18.0.2/16');
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
