// mapLimit(): hosts worked on `forks` at a time; the first failure stops new
// work (one host failing aborts the rest), unless every item must run (restore).

import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { mapLimit } from '../../runner/hosts/forks.ts';
import { parseRoles } from '../../runner/hosts/hostsup.ts';

const tick = () => new Promise((r) => setTimeout(r, 5));

test('mapLimit() never runs more than the limit at once, and keeps the order of results', async () => {
  let running = 0;
  let most = 0;
  const out = await mapLimit([1, 2, 3, 4, 5, 6, 7], 3, async (n) => {
    most = Math.max(most, ++running);
    await tick();
    running--;
    return n * 10;
  });
  assert.is(most, 3);
  assert.equal(out, [10, 20, 30, 40, 50, 60, 70]);
});

test('mapLimit() starts nothing after a failure and throws it once started work settled', async () => {
  const started: number[] = [];
  let settled = 0;
  const err = await mapLimit([1, 2, 3, 4, 5, 6], 2, async (n) => {
    started.push(n);
    await tick();
    settled++;
    if (n === 2) throw new Error('host 2 failed');
  }).catch((e) => e);
  assert.is((err as Error).message, 'host 2 failed');
  assert.equal(started, [1, 2, 3]);
  assert.is(settled, 3);
});

test('mapLimit() with settle runs every item whatever fails', async () => {
  const seen: number[] = [];
  await mapLimit([1, 2, 3], 1, async (n) => {
    seen.push(n);
    if (n === 1) throw new Error('x');
  }, { settle: true });
  assert.equal(seen, [1, 2, 3]);
});

test('parseRoles() makes N hosts for "role:N", one host named like the role otherwise', () => {
  assert.equal(parseRoles(['client:4', 'server']), { client: ['client-1', 'client-2', 'client-3', 'client-4'], server: ['server'] });
  assert.throws(() => parseRoles(['client:0']), /Invalid host count in "client:0": write ROLE:N with N from 1 to 64/);
  assert.throws(() => parseRoles(['client:40', 'server:40']), /"lab hosts up" makes at most 64 hosts: got 80/);
  assert.throws(() => parseRoles(['Client']), /Invalid role name "Client"/);
  assert.throws(() => parseRoles(['client:2', 'client-1']), /Host name "client-1" is made twice/);
});

test.run();
