// Benchmark: what a step costs over SSH as a message to the running agent,
// against a fresh `exec` on the same SSH connection (what a runner without a
// resident agent pays per command). Prints both and their ratio, measured in
// this one run against `lab hosts up` hosts. Usage: node --import tsx bench/ssh-request.ts [N]

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AgentClient } from '../runner/agent/client.ts';
import { hostsDown, hostsUp } from '../runner/hosts/hostsup.ts';
import { inventoryTransport, readInventory } from '../runner/hosts/inventory.ts';

const N = Number(process.argv[2] ?? 200);
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

async function time(n: number, fn: () => Promise<unknown>): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const t = performance.now();
    await fn();
    out.push(performance.now() - t);
  }
  return out;
}

const work = mkdtempSync(join(tmpdir(), 'lab-bench-ssh-'));
try {
  const { inventoryPath } = await hostsUp({ roles: ['client'], out: join(work, 'inventory.yaml') });
  const inventory = await readInventory(inventoryPath);
  const transport = inventoryTransport(inventory.hosts.client!, 'client');
  const tConnect = performance.now();
  await transport.connect();
  const connectMs = performance.now() - tConnect;
  const tStart = performance.now();
  const agent = await AgentClient.start(transport);
  const startMs = performance.now() - tStart;
  try {
    // Warm both paths once, so neither pays a first-use cost in the figures.
    await agent.request('hello', {});
    await transport.exec(['true']);
    const request = await time(N, () => agent.request('hello', {}));
    const snapshot = await time(Math.min(N, 50), () => agent.request('sysctlGet', { name: 'net.ipv4.ip_local_port_range' }));
    const exec = await time(Math.min(N, 50), () => transport.exec(['cat', '/proc/sys/net/ipv4/ip_local_port_range']));
    const r = median(request);
    const s = median(snapshot);
    const e = median(exec);
    console.log(`SSH to a lab hosts up host (${process.versions.node ? `node ${process.versions.node}` : ''}), medians:`);
    console.log(`  connect (TCP + handshake + key auth)   ${connectMs.toFixed(1).padStart(7)} ms  (once per host per run)`);
    console.log(`  agent start (upload check + python)    ${startMs.toFixed(1).padStart(7)} ms  (once per host per run)`);
    console.log(`  agent request "hello"                  ${r.toFixed(3).padStart(7)} ms  (n=${request.length})`);
    console.log(`  agent request "sysctlGet"              ${s.toFixed(3).padStart(7)} ms  (n=${snapshot.length})`);
    console.log(`  fresh exec "cat /proc/sys/…"           ${e.toFixed(3).padStart(7)} ms  (n=${exec.length})`);
    console.log(`  ratio exec / agent request (same read) ${(e / s).toFixed(1).padStart(7)}×`);
  } finally {
    await agent.shutdown();
    await transport.close();
  }
} finally {
  await hostsDown();
  rmSync(work, { recursive: true, force: true });
}
