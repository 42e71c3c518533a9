// A lab that holds hundreds of thousands of sockets gets a TCP established hash
// per host namespace (net.ipv4.tcp_child_ehash_entries while they are made),
// and the machine's own setting is put back. Real namespaces.

import { readFileSync } from 'node:fs';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { runLocal } from '../../runner/hosts/local.ts';
import { createLocalNetwork, destroyLocalNetwork, ehashEntriesFor } from '../../runner/hosts/netns.ts';

const CHILD = '/proc/sys/net/ipv4/tcp_child_ehash_entries';

test('ehashEntriesFor() sizes a table to the lab, and leaves small labs on the shared one', () => {
  assert.is(ehashEntriesFor(20000), undefined);
  assert.is(ehashEntriesFor(65536), 65536);
  assert.is(ehashEntriesFor(1_000_000), 1_048_576);
  assert.is(ehashEntriesFor(100_000_000), 2 ** 24);
});

test('createLocalNetwork() with ehashEntries gives each host namespace a table of that size, and puts the sysctl back', async () => {
  const before = readFileSync(CHILD, 'utf8').trim();
  const id = `eh${process.pid.toString(36)}`.slice(0, 8);
  // Three hosts: the bridge's namespace is made beside them, with the shared table.
  const net = await createLocalNetwork({ id, roles: ['client', 'server', 'third'], net: 18, purpose: 'test', ehashEntries: 131072 });
  try {
    for (const h of net.hosts) {
      const r = await runLocal(['ip', 'netns', 'exec', h.namespace, 'cat', '/proc/sys/net/ipv4/tcp_ehash_entries']);
      assert.is(r.stdout.trim(), '131072', h.namespace);
    }
    // The bridge's namespace keeps the shared table (a negative size says shared).
    const sw = await runLocal(['ip', 'netns', 'exec', net.switchNamespace!, 'cat', '/proc/sys/net/ipv4/tcp_ehash_entries']);
    assert.ok(sw.stdout.trim().startsWith('-'), sw.stdout);
    assert.is(readFileSync(CHILD, 'utf8').trim(), before);
  } finally {
    await destroyLocalNetwork(id);
  }
});

test.run();
