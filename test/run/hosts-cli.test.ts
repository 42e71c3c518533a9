// `lab hosts up` and `lab hosts down` through the real CLI: an inventory that
// validates, sshds that answer, and nothing left afterwards.

import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
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

  const down = await runCli(['hosts', 'down']);
  assert.is(down.code, 0, down.stderr);
  assert.is(down.stdout.trim(), 'hosts down: done');
  assert.equal(namespaces().filter((n) => n.startsWith(`lab-${id}-`)), []);
});

test('lab hosts with no subcommand says what it needs', async () => {
  const r = await runCli(['hosts']);
  assert.is(r.code, 2);
  assert.is(r.stderr.trim(), 'error: lab hosts needs "up" or "down": got nothing [ARGS]');
});

test.run();
