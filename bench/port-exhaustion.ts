// Benchmark: where the time of `lab run labs/port-exhaustion.yaml` goes, and
// how fast the agent's ramp is against a minimal C connect loop on the same
// namespaces. Prints ratios measured in this one run, since this machine is
// shared and absolute times drift. Usage: npm run bench [-- RUNS [RAMP_N]]

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { AgentClient } from '../runner/agent/client.ts';
import { runLocal, mustRunLocal } from '../runner/hosts/local.ts';
import { createLocalNetwork, destroyLocalNetwork, NetnsTransport } from '../runner/hosts/netns.ts';
import { planLab } from '../runner/lab/plan.ts';
import { hostJournalPath } from '../runner/provision/journal.ts';
import { readLab } from '../runner/lab/validate.ts';
import { writeReports } from '../runner/report/write.ts';
import { LocalProvider } from '../runner/run/local-provider.ts';
import { runPlan, runtimeName } from '../runner/run/run.ts';

const RUNS = Number(process.argv[2] ?? 5);
const RAMP_N = Number(process.argv[3] ?? 15000);
const ROOT = fileURLToPath(new URL('..', import.meta.url));

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const pct = (part: number, whole: number) => `${((100 * part) / whole).toFixed(0)}%`;

async function stagesOfTheLab() {
  const lab = await readLab(join(ROOT, 'labs/port-exhaustion.yaml'));
  const rows: Record<string, number[]> = {};
  const add = (k: string, v: number) => (rows[k] ??= []).push(v);
  const out = mkdtempSync(join(tmpdir(), 'lab-bench-'));
  try {
    for (let i = 0; i < RUNS; i++) {
      const provider = new LocalProvider(lab);
      const t0 = performance.now();
      await provider.reserve();
      const result = await runPlan(planLab(lab, provider.bindings()), { provider, version: 'bench', runtime: runtimeName() });
      const t1 = performance.now();
      await writeReports(result, join(out, String(i)));
      const t2 = performance.now();
      if (result.verdict !== 'pass') throw new Error(`run ${i} did not pass: ${JSON.stringify(result.error ?? result.predictions)}`);
      for (const [k, v] of Object.entries(result.stages)) add(k, v);
      add('ramp (connect step)', result.steps.find((s) => s.name === 'ramp')!.durationMs);
      add('reports', t2 - t1);
      add('end to end', t2 - t0);
    }
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
  const total = median(rows['end to end']!);
  console.log(`\nlab run labs/port-exhaustion.yaml, ${RUNS} runs in-process (${runtimeName()}), median ms and share of end to end:`);
  for (const k of ['hosts', 'agents', 'provision', 'steps', 'ramp (connect step)', 'restore', 'reports', 'end to end']) {
    const m = median(rows[k]!);
    console.log(`  ${k.padEnd(20)} ${String(Math.round(m)).padStart(6)} ms  ${pct(m, total).padStart(4)}`);
  }
}

/** The agent's ramp of RAMP_N connections against the C peer's, same namespaces, same server. */
async function rampAgainstPeer() {
  const peer = join(tmpdir(), 'lab-bench-connect');
  const cc = await runLocal(['cc', '-O2', '-o', peer, join(ROOT, 'bench/peer/connect.c')]);
  if (cc.code !== 0) {
    console.log(`\nramp vs. C peer: skipped (no C compiler: ${cc.stderr.trim() || cc.code})`);
    return;
  }
  const id = `b${process.pid.toString(36)}`.slice(0, 8);
  const net = await createLocalNetwork({ id, roles: ['client', 'server'], net: 18, purpose: 'bench' });
  const [client, server] = net.hosts;
  const agents: AgentClient[] = [];
  try {
    const serverAgent = await AgentClient.start(new NetnsTransport('server', server!.namespace));
    const clientAgent = await AgentClient.start(new NetnsTransport('client', client!.namespace));
    agents.push(serverAgent, clientAgent);
    await clientAgent.request('begin', { journal: hostJournalPath(client!.namespace), holder: 'bench' });
    // A range wide enough that ports are not the limit: this measures connect speed.
    await clientAgent.request('sysctlSet', { name: 'net.ipv4.ip_local_port_range', value: '20000 60999' });
    const rates: { agent: number[]; peer: number[] } = { agent: [], peer: [] };
    // Each ramp gets its own listener and port: ports an earlier ramp left in
    // TIME_WAIT toward one destination would otherwise slow the next one down.
    const listen = (port: number) =>
      serverAgent.request('listen', { id: `l${port}`, address: server!.address, port, backlog: 4096, accept: true });
    for (let i = 0; i < 3; i++) {
      const agentPort = 8100 + i;
      await listen(agentPort);
      const r = await clientAgent.request('connect', {
        id: `c${i}`, pairs: [{ source: client!.address, address: server!.address, port: agentPort }],
        count: RAMP_N, bind: 'none', rate: 0, timeoutMs: 60_000, connectTimeoutMs: 3000, stopOnError: true,
      });
      if (r.established !== RAMP_N) throw new Error(`agent ramp opened ${r.established} of ${RAMP_N}: ${JSON.stringify({ ...r, perPair: undefined })}`);
      rates.agent.push(r.established / (r.durationMs / 1000));
      await clientAgent.request('release', { id: `c${i}` });
      await serverAgent.request('release', { id: `l${agentPort}` });

      const peerPort = 8200 + i;
      await listen(peerPort);
      const out = await mustRunLocal(['ip', 'netns', 'exec', client!.namespace, 'sh', '-c', `ulimit -n ${RAMP_N + 100} && exec "$0" "$@"`, peer, server!.address, String(peerPort), String(RAMP_N)], { timeoutMs: 60_000 });
      const [ok, secs, err] = out.trim().split(' ');
      if (Number(ok) !== RAMP_N) throw new Error(`C peer opened ${ok} of ${RAMP_N}: ${err}`);
      rates.peer.push(Number(ok) / Number(secs));
      await serverAgent.request('release', { id: `l${peerPort}` });
    }
    const a = median(rates.agent);
    const p = median(rates.peer);
    console.log(`\nramp of ${RAMP_N} connections between two namespaces, median of 3:`);
    console.log(`  agent (python workers)  ${Math.round(a).toString().padStart(7)} connects/s`);
    console.log(`  C peer (bench/peer)     ${Math.round(p).toString().padStart(7)} connects/s`);
    console.log(`  ratio agent / C peer    ${(a / p).toFixed(2)}`);
  } finally {
    await Promise.all(agents.map((g) => g.shutdown()));
    await destroyLocalNetwork(id);
  }
}

await stagesOfTheLab();
await rampAgainstPeer();
