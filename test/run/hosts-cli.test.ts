// `lab hosts up` and `lab hosts down` through the real CLI: an inventory that
// validates, sshds that answer, and nothing left afterwards.

import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { readInventory } from '../../runner/hosts/inventory.ts';
import { namespaces, runCli } from '../helpers.ts';

const work = mkdtempSync(join(tmpdir(), 'lab-hosts-cli-'));
test.after(async () => {
  await runCli(['hosts', 'down']);
  rmSync(work, { recursive: true, force: true });
});

test('lab hosts up writes an inventory of namespace hosts running sshd; lab hosts down removes them', async () => {
  const file = join(work, 'inventory.yaml');
  const up = await runCli(['hosts', 'up', '--roles', 'alpha,beta', '--out', file]);
  assert.is(up.code, 0, up.stderr);
  assert.match(up.stdout, `hosts up: alpha, beta running sshd; inventory written to ${file}, Ansible inventory to ${join(work, 'inventory.ini')}`);
  const inventory = await readInventory(file);
  assert.equal(Object.keys(inventory.hosts), ['alpha', 'beta']);
  const id = /network "([a-z0-9]+)"/.exec(readFileSync(file, 'utf8'))![1]!;
  assert.ok(namespaces().includes(`lab-${id}-alpha`));

  const again = await runCli(['hosts', 'up', '--out', join(work, 'second.yaml')]);
  assert.is(again.code, 3);
  assert.match(again.stderr, `run "lab hosts down" first [HOSTS_UP_EXISTS]`);
  assert.not.ok(existsSync(join(work, 'second.yaml')));

  // A run holding a host's journal lock: hosts down refuses, naming it, and leaves the hosts up.
  const lock = `/run/lab/host/${inventory.hosts.alpha!.labAddress}.journal.lock`;
  mkdirSync('/run/lab/host', { recursive: true });
  writeFileSync(lock, 'lab run test by pid 1 on here since now\n');
  const holder = spawn('flock', [lock, 'sleep', '30'], { stdio: 'ignore' });
  try {
    await waitFor(() => spawnSync('flock', ['--nonblock', '--conflict-exit-code', '75', lock, 'true']).status === 75);
    const busy = await runCli(['hosts', 'down']);
    assert.is(busy.code, 3, busy.stderr);
    assert.match(busy.stderr, `${inventory.hosts.alpha!.labAddress}: held by lab run test by pid 1 on here since now`);
    assert.match(busy.stderr, '[HOSTS_IN_USE]');
    assert.ok(namespaces().includes(`lab-${id}-alpha`), 'the hosts are still up');
  } finally {
    holder.kill('SIGKILL');
    await new Promise((r) => holder.once('exit', r));
    rmSync(lock, { force: true });
  }

  const down = await runCli(['hosts', 'down']);
  assert.is(down.code, 0, down.stderr);
  assert.is(down.stdout.trim(), 'hosts down: done');
  assert.equal(namespaces().filter((n) => n.startsWith(`lab-${id}-`)), []);
});

async function waitFor(ok: () => boolean, ms = 5000) {
  const end = Date.now() + ms;
  while (!ok()) {
    if (Date.now() > end) throw new Error('timed out waiting');
    await new Promise((r) => setTimeout(r, 50));
  }
}

test('lab hosts with no subcommand says what it needs', async () => {
  const r = await runCli(['hosts']);
  assert.is(r.code, 2);
  assert.is(r.stderr.trim(), 'error: lab hosts needs "up" or "down": got nothing [ARGS]');
});

test.run();
