// Lab traffic stays on this machine: a run's thousands of packets cross only
// the veths (and bridge, beyond two hosts) inside its own namespaces. Every
// interface of the root namespace (eth0, lo…) is read before and after a run;
// none may carry the lab's packets. Only interfaces lab itself makes in the
// root namespace (the `lab hosts up` link, "lab<id>") may move.

import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { RunResult } from '../../runner/result.ts';
import { runCli } from '../helpers.ts';

const out = mkdtempSync(join(tmpdir(), 'lab-isolation-'));
test.after(() => rmSync(out, { recursive: true, force: true }));

/** Packets in and out of every root-namespace interface that lab did not make. */
function counters(): Map<string, number> {
  const m = new Map<string, number>();
  for (const dev of readdirSync('/sys/class/net')) {
    if (/^lab[a-z0-9]+$/.test(dev)) continue;
    const read = (what: string) => Number(readFileSync(`/sys/class/net/${dev}/statistics/${what}`, 'utf8'));
    m.set(dev, read('tx_packets') + read('rx_packets'));
  }
  return m;
}

test('no packet of a lab leaves through the machine\'s own interfaces', async () => {
  const before = counters();
  const r = await runCli(['run', 'labs/port-exhaustion.yaml', '--out', out]);
  const after = counters();
  assert.is(r.code, 0, r.stderr);
  const result = JSON.parse(readFileSync(join(out, 'result.json'), 'utf8')) as RunResult;
  const established = result.steps.find((s) => s.name === 'ramp')!.metrics.established!;
  // Each connection is at least a SYN, a SYN-ACK and an ACK, and a RST when released.
  const labPackets = established * 4;
  assert.ok(labPackets >= 4000, `the lab made traffic: ${labPackets} packets`);
  const moved = [...after].map(([dev, n]) => [dev, n - (before.get(dev) ?? n)] as const);
  assert.ok(moved.length > 0, 'root-namespace interfaces were read');
  // The machine's own background traffic (another user, a package download)
  // is a few packets in a run's seconds; a leak would be thousands.
  for (const [dev, n] of moved) assert.ok(n < labPackets / 20, `${dev} moved ${n} packets while the lab sent ${labPackets}`);
});

test.run();
