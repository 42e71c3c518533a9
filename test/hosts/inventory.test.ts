// readInventory() and loadInventory(): the typed hosts of a good inventory,
// and the exact text of every problem in the bad ones.

import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { LabError } from '../../runner/errors.ts';
import { inventoryTransport, loadInventory, readInventory, type Inventory } from '../../runner/hosts/inventory.ts';

const DIR = 'test/fixtures/inventories';
const ROOT = new URL('../../', import.meta.url);

/** Load a fixture as a user names it from the repository root, with `~` as /home/lab. */
function load(name: string): Inventory {
  const file = `${DIR}/${name}`;
  return loadInventory(file, readFileSync(new URL(file, ROOT), 'utf8'), { home: '/home/lab' });
}

function failure(name: string): LabError {
  try {
    load(name);
  } catch (e) {
    if (e instanceof LabError) return e;
    throw e;
  }
  assert.unreachable(`${name} loaded without a problem`);
  throw new Error('unreachable');
}

test('loadInventory() merges defaults under each host and resolves paths against the inventory', () => {
  const inv = load('good.yaml');
  const file = `${DIR}/good.yaml`;
  const key = resolve(DIR, 'keys/id_ed25519');
  const bastion = {
    address: 'bastion.example.net',
    port: 22,
    user: 'jumper',
    identity: key,
    agent: false,
    knownHosts: '/home/lab/lab/known_hosts',
    hostKey: 'check',
    connectTimeoutMs: 5000,
  };
  assert.equal(inv, {
    file,
    format: 'lab',
    groups: { all: ['client', 'server', 'edge'], client: ['client'], server: ['server'], edge: ['edge'] },
    hosts: {
      client: {
        name: 'client',
        address: '198.18.10.1',
        labAddress: '198.18.10.1',
        port: 2222,
        user: 'lab',
        agent: false,
        knownHosts: '/home/lab/lab/known_hosts',
        hostKey: 'check',
        connectTimeoutMs: 5000,
        identity: key,
        sudo: true,
        aliases: ['198.18.11.1', '198.18.11.2'],
        local: false,
        where: `${file}:13:3`,
        jump: bastion,
        interface: 'ens3',
        vars: {},
      },
      server: {
        name: 'server',
        address: 'db1.example.net',
        labAddress: '198.18.10.2',
        port: 22,
        user: 'lab',
        agent: true,
        knownHosts: '/home/lab/lab/known_hosts',
        hostKey: 'check',
        connectTimeoutMs: 5000,
        identity: key,
        sudo: true,
        aliases: [],
        local: false,
        where: `${file}:16:3`,
        // The jump logs in like its host, but on its own port.
        jump: {
          address: '198.18.10.254',
          port: 2200,
          user: 'lab',
          identity: '/etc/lab/jump_key',
          agent: true,
          knownHosts: '/home/lab/lab/known_hosts',
          hostKey: 'accept-new',
          connectTimeoutMs: 5000,
        },
        interface: 'ens3',
        vars: {},
      },
      edge: {
        name: 'edge',
        address: '198.18.10.3',
        labAddress: '198.18.10.3',
        port: 2222,
        user: 'root',
        agent: false,
        knownHosts: '/var/lib/lab/known_hosts',
        hostKey: 'accept-new',
        connectTimeoutMs: 1500,
        identity: resolve(DIR, '../keys/edge'),
        passphraseEnv: 'LAB_EDGE_KEY_PASSPHRASE',
        passwordEnv: 'LAB_SSH_PASSWORD',
        sudo: false,
        aliases: [],
        local: true,
        where: `${file}:22:3`,
        jump: {
          ...bastion,
          identity: resolve(DIR, '../keys/edge'),
          passphraseEnv: 'LAB_EDGE_KEY_PASSPHRASE',
          passwordEnv: 'LAB_SSH_PASSWORD',
          knownHosts: '/var/lib/lab/known_hosts',
          hostKey: 'accept-new',
          connectTimeoutMs: 1500,
        },
        interface: 'ens3',
        vars: {},
      },
    },
  });
});

test('loadInventory() defaults to root on port 22, ~/.ssh/known_hosts, host key check and 10s', () => {
  const inv = loadInventory('inv.yaml', 'hosts:\n  client:\n    address: 198.18.0.1\n    agent: true\n', { home: '/home/lab' });
  assert.equal(inv.hosts.client, {
    name: 'client',
    address: '198.18.0.1',
    labAddress: '198.18.0.1',
    port: 22,
    user: 'root',
    agent: true,
    knownHosts: '/home/lab/.ssh/known_hosts',
    hostKey: 'check',
    connectTimeoutMs: 10_000,
    sudo: false,
    aliases: [],
    local: false,
    where: 'inv.yaml:2:3',
    vars: {},
  });
});

test('loadInventory() reports unknown keys with a guess, each at its line and column', () => {
  const f = `${DIR}/bad-keys.yaml`;
  const e = failure('bad-keys.yaml');
  assert.is(e.code, 'INVENTORY_INVALID');
  assert.is(
    e.message,
    [
      `${f}:2:3: defaults: Unknown key "usr": did you mean "user"?`,
      `${f}:4:1: Unknown key "host": did you mean "hosts"?`,
      `${f}:8:5: hosts.client: Unknown key "adress": did you mean "address"?`,
      `${f}:9:5: hosts.client: Unknown key "identy": did you mean "identity"?`,
      `${f}:10:34: hosts.client.jump: Unknown key "prot": did you mean "port"?`,
      `${f}:11:5: hosts.client: Unknown key "lab_adress": did you mean "lab_address"?`,
      `${f}:12:3: hosts: Invalid role name "Server": use lowercase letters, digits and "-", starting with a letter`,
      `${f}:14:5: hosts.Server: Unknown key "foo": expected one of "address", "lab_address", "port", "user", "identity", "passphrase_env", "agent", "password_env", "known_hosts", "host_key", "connect_timeout", "jump", "sudo", "interface", "python", "aliases", "local", "vars"`,
    ].join('\n'),
  );
});

test('loadInventory() reports every bad value, and never echoes a password back as one', () => {
  const f = `${DIR}/bad-values.yaml`;
  const e = failure('bad-values.yaml');
  assert.is(e.code, 'INVENTORY_INVALID');
  assert.is(
    e.message,
    [
      `${f}:3:20: defaults.connect_timeout: Must be a duration like "500ms", "30s", "5m" or "1h", or a number of seconds: got "soon"`,
      `${f}:7:11: hosts.client.port: Must be an integer from 1 to 65535: got 70000`,
      `${f}:8:11: hosts.client.user: Must be a user name (letters, digits, "_", ".", "-"): got "lab user"`,
      `${f}:9:15: hosts.client.host_key: Unknown host_key policy "acept-new": did you mean "accept-new"?`,
      `${f}:10:19: hosts.client.password_env: Must be the name of an environment variable (letters, digits and "_"), not a password: got "hunter2 is my password"`,
      `${f}:11:11: hosts.client.sudo: Must be true or false: got "yes"`,
      `${f}:12:16: hosts.client.interface: Must be an interface name (up to 15 letters, digits, "_", ".", "-", not starting with "-" or "."): got "an-interface-name-too-long"`,
      `${f}:13:27: hosts.client.aliases[1]: Must be an IPv4 address: got "198.18.1"`,
      `${f}:13:37: hosts.client.aliases[2]: Alias "198.18.1.1" is listed twice`,
      `${f}:14:12: hosts.client.local: Must be true or false: got 1`,
      `${f}:16:14: hosts.server.address: Must be an IP address or a host name: got "not a host!"`,
      `${f}:17:12: hosts.server.agent: Must be true or false: got "yes please"`,
      `${f}:18:11: hosts.server.jump: Must be a mapping: got "198.18.0.9"`,
      `${f}:19:22: hosts.server.connect_timeout: Must be at most 5m: got "10m"`,
      `${f}:21:14: hosts.db.address: Missing "lab_address": lab traffic needs an IPv4 address, and "address" is "db.example.net"`,
      `${f}:22:14: hosts.db.aliases: Must be a list of IPv4 addresses: got "198.18.3.1"`,
      `${f}:25:15: hosts.web.aliases[0]: Alias "198.18.1.1" is already an alias of host "client"`,
      `${f}:26:18: hosts.web.lab_address: Must be an IPv4 address: got "198.18.0.4.5"`,
    ].join('\n'),
  );
});

test('loadInventory() reports a missing address and a host with no way to log in', () => {
  const f = `${DIR}/missing.yaml`;
  assert.is(
    failure('missing.yaml').message,
    [
      `${f}:3:5: hosts.client: Missing required key "address"`,
      `${f}:3:5: hosts.client: No way to log in: set "identity", "agent: true" or "password_env" (on the host or in "defaults")`,
      `${f}:5:5: hosts.server: No way to log in: set "identity", "agent: true" or "password_env" (on the host or in "defaults")`,
      `${f}:6:11: hosts.server.jump: Missing required key "address"`,
    ].join('\n'),
  );
});

test('loadInventory() rejects an inventory without hosts', () => {
  assert.is(failure('empty-hosts.yaml').message, `${DIR}/empty-hosts.yaml:3:8: hosts: Must name at least one host: got an empty mapping`);
  const e = (() => {
    try {
      loadInventory('inv.yaml', '- just\n- a list\n');
    } catch (err) {
      return err as LabError;
    }
    throw new Error('loaded');
  })();
  assert.is(e.message, 'inv.yaml:1:1: Must be a mapping with "hosts": got a list');
});

test('loadInventory() reports a YAML syntax error at its position as LAB_YAML', () => {
  const e = failure('not-yaml.yaml');
  assert.is(e.code, 'LAB_YAML');
  assert.is(
    e.message,
    `${DIR}/not-yaml.yaml:4:1: Cannot parse YAML: Flow sequence in block collection must be sufficiently indented and end with a ]`,
  );
});

test('readInventory() names a missing file with INVENTORY_NOT_FOUND', async () => {
  try {
    await readInventory(`${DIR}/nope.yaml`);
    assert.unreachable('read a missing file');
  } catch (e) {
    assert.instance(e, LabError);
    assert.is((e as LabError).code, 'INVENTORY_NOT_FOUND');
    assert.is((e as LabError).message, `Cannot find inventory "${DIR}/nope.yaml"`);
  }
});

test('inventoryTransport() makes an SshTransport named after the role, with the host\'s capabilities', () => {
  const inv = load('good.yaml');
  const client = inventoryTransport(inv.hosts.client!, 'client');
  assert.is(client.kind, 'ssh');
  assert.is(client.role, 'client');
  assert.is(client.target, 'lab@198.18.10.1:2222 via jumper@bastion.example.net:22');
  assert.equal(client.capabilities, { localNamespace: false, needsSudo: true });
  const edge = inventoryTransport(inv.hosts.edge!, 'edge', { acceptNewHostKeys: true });
  assert.equal(edge.capabilities, { localNamespace: true, needsSudo: false });
});

test.run();
