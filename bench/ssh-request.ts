// Benchmark: what a step costs over SSH as a message to the running agent,
// against a fresh `exec` on the same SSH connection (what a runner without a
// resident agent pays per command). Prints both and their ratio, measured in
// this one run against `lab hosts up` hosts. Usage: npm run bench:ssh [-- N]; bench/index.ts
// imports sshStep().

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { AgentClient } from '../runner/agent/client.ts';
import { hostsDown, hostsUp } from '../runner/hosts/hostsup.ts';
import { inventoryTransport, readInventory } from '../runner/hosts/inventory.ts';

const N = Number((process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1] && process.argv[2]) || 200);
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

export interface SshStepFigures {
  connectMs: number;
  agentStartMs: number;
  /** median ms of one agent request ("hello"), and of a sysctl read through the agent */
  requestMs: number;
  sysctlGetMs: number;
  /** median ms of a fresh exec reading the same sysctl */
  execMs: number;
  n: number;
}

/** Measure an agent request over SSH against a fresh exec, on a `lab hosts up` host. */
export async function sshStep(n = N): Promise<SshStepFigures> {
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
    const agentStartMs = performance.now() - tStart;
    try {
      // Warm both paths once, so neither pays a first-use cost in the figures.
      await agent.request('hello', {});
      await transport.exec(['true']);
      const request = await time(n, () => agent.request('hello', {}));
      const sysctl = await time(Math.min(n, 50), () => agent.request('sysctlGet', { name: 'net.ipv4.ip_local_port_range' }));
      const exec = await time(Math.min(n, 50), () => transport.exec(['cat', '/proc/sys/net/ipv4/ip_local_port_range']));
      return { connectMs, agentStartMs, requestMs: median(request), sysctlGetMs: median(sysctl), execMs: median(exec), n };
    } finally {
      await agent.shutdown();
      await transport.close();
    }
  } finally {
    await hostsDown();
    rmSync(work, { recursive: true, force: true });
  }
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const f = await sshStep();
  console.log(`SSH to a lab hosts up host (node ${process.versions.node}), medians:`);
  console.log(`  connect (TCP + handshake + key auth)   ${f.connectMs.toFixed(1).padStart(7)} ms  (once per host per run)`);
  console.log(`  agent start (upload check + python)    ${f.agentStartMs.toFixed(1).padStart(7)} ms  (once per host per run)`);
  console.log(`  agent request "hello"                  ${f.requestMs.toFixed(3).padStart(7)} ms  (n=${f.n})`);
  console.log(`  agent request "sysctlGet"              ${f.sysctlGetMs.toFixed(3).padStart(7)} ms  (n=${Math.min(f.n, 50)})`);
  console.log(`  fresh exec "cat /proc/sys/…"           ${f.execMs.toFixed(3).padStart(7)} ms  (n=${Math.min(f.n, 50)})`);
  console.log(`  ratio exec / agent request (same read) ${(f.execMs / f.sysctlGetMs).toFixed(1).padStart(7)}×`);
}
