// Ansible inventories read as they are: host ranges, groups and children,
// Ansible's variable precedence, the connection variables lab maps onto its
// SSH transport, and the corpus of bad inventories, each with its exact
// file:line:col messages, refused with exit 2 before any host is contacted.

import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { readdirSync, readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { expandHostPattern } from '../../runner/hosts/ansible.ts';
import { parseSshArgs } from '../../runner/hosts/ansible-inventory.ts';
import { loadInventory, type Inventory } from '../../runner/hosts/inventory.ts';
import { LabError } from '../../runner/errors.ts';
import { loadLab } from '../../runner/lab/validate.ts';
import { roleHosts } from '../../runner/run/inventory-provider.ts';
import { ROOT, runCli } from '../helpers.ts';

const DIR = 'test/fixtures/inventories/ansible';

function load(name: string): Inventory {
  const file = `${DIR}/${name}`;
  return loadInventory(file, readFileSync(resolve(ROOT, file), 'utf8'), { home: '/home/lab' });
}

test('expandHostPattern() expands numeric, zero-padded, stepped, lettered and repeated ranges', () => {
  assert.equal(expandHostPattern('web[01:04].example.net'), { names: ['web01.example.net', 'web02.example.net', 'web03.example.net', 'web04.example.net'] });
  assert.equal(expandHostPattern('db-[a:c]'), { names: ['db-a', 'db-b', 'db-c'] });
  assert.equal(expandHostPattern('h[1:10:4]'), { names: ['h1', 'h5', 'h9'] });
  assert.equal(expandHostPattern('r[1:2]c[a:b]'), { names: ['r1ca', 'r1cb', 'r2ca', 'r2cb'] });
  assert.equal(expandHostPattern('198.18.0.[8:9]'), { names: ['198.18.0.8', '198.18.0.9'] });
  assert.equal(expandHostPattern('plain'), { names: ['plain'] });
});

test('expandHostPattern() refuses ranges that would make more hosts than the bound', () => {
  assert.equal(expandHostPattern('h[1:100][1:100]'), { error: 'Invalid host range in "h[1:100][1:100]": more than 4096 hosts' });
});

test('parseSshArgs() reads known_hosts, host key checking and the jump host, in both spellings', () => {
  assert.equal(parseSshArgs('-o UserKnownHostsFile=/k -oStrictHostKeyChecking=yes -J ops@bastion:2200'), {
    knownHosts: '/k',
    hostKey: 'check',
    jump: 'ops@bastion:2200',
  });
  assert.equal(parseSshArgs('-o "ProxyJump=bastion" -o StrictHostKeyChecking=accept-new'), { jump: 'bastion', hostKey: 'accept-new' });
  assert.equal(parseSshArgs('-C'), {
    error: 'Unsupported ssh argument "-C": lab reads "-o UserKnownHostsFile=…", "-o StrictHostKeyChecking=…" and "-J"/"-o ProxyJump=…"',
  });
});

test('an INI inventory: ranges, children, precedence (all < parent < child < host), connection variables', () => {
  const inv = load('good.ini');
  assert.is(inv.format, 'ansible-ini');
  const clients = ['198.18.10.1', '198.18.10.2', '198.18.10.3', '198.18.10.4'];
  assert.equal(inv.groups.loadgen, clients);
  assert.equal(inv.groups.fleet, [...clients, 'srv']);
  assert.equal(inv.groups.ungrouped, ['lone.example.net']);
  assert.equal(inv.groups.all, ['lone.example.net', ...clients, 'srv']);
  const key = resolve(DIR, 'keys/id_ed25519');
  const jump = {
    address: '198.18.10.254',
    port: 2200,
    user: 'jump',
    agent: false,
    knownHosts: '/home/lab/lab/known_hosts',
    hostKey: 'accept-new',
    connectTimeoutMs: 10_000,
    identity: key,
  };
  assert.equal(inv.hosts['198.18.10.3'], {
    name: '198.18.10.3',
    address: '198.18.10.3',
    labAddress: '198.18.10.3',
    port: 22,
    user: 'ops',
    agent: false,
    knownHosts: '/home/lab/lab/known_hosts',
    hostKey: 'accept-new',
    connectTimeoutMs: 10_000,
    // ansible_become as a non-root user: sudo.
    sudo: true,
    aliases: [],
    local: false,
    where: `${DIR}/good.ini:5:1`,
    // loadgen's vars beat fleet's and all's.
    vars: { low: '50000', high: '50999' },
    identity: key,
    jump,
    interface: 'eth0',
  });
  const srv = inv.hosts.srv!;
  // [server:vars] ansible_user=root beats [all:vars]; become as root needs no sudo.
  assert.equal([srv.user, srv.sudo, srv.port, srv.address, srv.aliases], ['root', false, 2222, '198.18.10.100', ['198.18.11.1', '198.18.11.2']]);
  assert.equal({ ...srv.jump, user: 'x' }, { ...jump, user: 'x' });
  const lone = inv.hosts['lone.example.net']!;
  // Outside "fleet": no become, no ssh args: ~/.ssh/known_hosts, checked.
  assert.equal([lone.address, lone.labAddress, lone.sudo, lone.hostKey, lone.knownHosts, lone.jump, lone.vars], [
    '203.0.113.9',
    '198.18.10.9',
    false,
    'check',
    '/home/lab/.ssh/known_hosts',
    undefined,
    { low: '40000' },
  ]);
});

test('the same inventory in Ansible YAML reads the same hosts and groups', () => {
  const ini = load('good.ini');
  const yaml = load('good.yaml');
  assert.is(yaml.format, 'ansible-yaml');
  const strip = (inv: Inventory) =>
    Object.fromEntries(Object.entries(inv.hosts).map(([k, h]) => [k, { ...h, where: '' }]));
  assert.equal(strip(yaml), strip(ini));
  const sorted = (g: Record<string, string[]>) => Object.fromEntries(Object.entries(g).sort(([a], [b]) => a.localeCompare(b)));
  assert.equal(sorted(yaml.groups), sorted(ini.groups));
  assert.is(yaml.hosts.srv!.where, `${DIR}/good.yaml:26:13`);
});

test('roleHosts() gives each role the group of its name, or the one --role names, and says what is missing', () => {
  const lab = loadLab('labs/port-exhaustion.yaml', readFileSync(resolve(ROOT, 'labs/port-exhaustion.yaml'), 'utf8'));
  const inv = load('good.ini');
  assert.equal(roleHosts(lab, inv, { client: 'loadgen' }), { client: ['198.18.10.1', '198.18.10.2', '198.18.10.3', '198.18.10.4'], server: ['srv'] });
  const message = (f: () => unknown) => {
    try {
      f();
    } catch (e) {
      return (e as LabError).message;
    }
    return '';
  };
  assert.is(
    message(() => roleHosts(lab, inv)),
    `${DIR}/good.ini: role "client" takes the group "client", which the inventory does not define (it has "loadgen", "server", "fleet"); map a role to a group with --role client=GROUP`,
  );
  assert.is(
    message(() => roleHosts(lab, inv, { client: 'loadgn', clients: 'fleet' })),
    [
      '--role clients=fleet: the lab "port-exhaustion" has no role "clients": did you mean "client"?',
      `${DIR}/good.ini: --role client=loadgn names the group "loadgn", which the inventory does not define (did you mean "loadgen"? it has "loadgen", "server", "fleet"); map a role to a group with --role client=GROUP`,
    ].join('\n'),
  );
  assert.is(
    message(() => roleHosts(lab, inv, { client: 'fleet' })),
    `${DIR}/good.ini: host "srv" is in role "client" and role "server": a host plays one role in a run`,
  );
});

test('ansible_python_interpreter is the agent\'s interpreter; Ansible\'s discovery words mean lab\'s default', () => {
  const text = '[client]\nc1 ansible_host=198.18.0.1 ansible_python_interpreter=/opt/py/bin/python3.11\nc2 ansible_host=198.18.0.2 ansible_python_interpreter=auto_silent\nc3 ansible_host=198.18.0.3\n';
  const inv = loadInventory('py.ini', text, { home: '/home/lab' });
  assert.equal(['c1', 'c2', 'c3'].map((h) => inv.hosts[h]!.python), ['/opt/py/bin/python3.11', undefined, undefined]);
});

test('lab\'s format and an Ansible inventory say one mistake in the same words: one Checker, one rule', () => {
  const message = (file: string, text: string) => {
    try {
      loadInventory(file, text, { home: '/home/lab' });
    } catch (e) {
      return (e as LabError).problems.map((p) => p.message);
    }
    return [];
  };
  const lab = message('i.yaml', 'hosts:\n  c1: { address: 198.18.0.1, agent: true, user: "a b", interface: "-x", python: "python3" }\n');
  const ini = message('i.ini', '[c]\nc1 ansible_host=198.18.0.1 ansible_user="a b" lab_interface=-x ansible_python_interpreter=python3\n');
  assert.equal(ini, lab);
  assert.is(lab.length, 3);
});

const corpus = readdirSync(resolve(ROOT, DIR)).filter((f) => f.endsWith('.expected')).map((f) => f.replace(/\.expected$/, ''));

for (const name of corpus) {
  test(`the bad inventory ${name} is refused with every problem at its file:line:col`, () => {
    const expected = readFileSync(resolve(ROOT, DIR, `${name}.expected`), 'utf8').trimEnd();
    let error: unknown;
    try {
      load(name);
    } catch (e) {
      error = e;
    }
    assert.instance(error, LabError);
    assert.is((error as LabError).code, 'INVENTORY_INVALID');
    assert.fixture((error as LabError).message, expected);
  });
}

test('lab plan with a bad inventory exits 2, printing the same problems, before any host is contacted', async () => {
  // One of each format: each CLI start costs seconds; the corpus above checks every file's messages.
  for (const name of ['injection.ini', 'bad-vars.yaml']) {
    const expected = readFileSync(resolve(ROOT, DIR, `${name}.expected`), 'utf8').trimEnd();
    const n = expected.split('\n').length;
    const r = await runCli(['plan', 'labs/port-exhaustion.yaml', '-i', `${DIR}/${name}`]);
    assert.is(r.code, 2, `${name}: ${r.stderr}`);
    assert.fixture(r.stderr.trimEnd(), `${expected}\n${n} problem${n > 1 ? 's' : ''} found`);
  }
});

test.run();
