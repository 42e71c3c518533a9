// Benchmark: one connect loop against parallel lanes (one per CPU) at scale,
// side by side in one run: N connections from S source addresses between two
// namespaces, agent → agent, the order alternated, medians.
// Usage: npm run bench:lanes -- [ROUNDS] [N] [SOURCES]   (N above 100k: under flock /tmp/lab-big.lock)
// RELEASE_ORDER=alternate: every other round releases the connect side first, then the listen side.

import { fileURLToPath } from 'node:url';
import { AgentClient } from '../runner/agent/client.ts';
import { mustRunLocal } from '../runner/hosts/local.ts';
import { createLocalNetwork, destroyLocalNetwork, ehashEntriesFor, NetnsTransport, type LocalHost } from '../runner/hosts/netns.ts';
import { hostJournalPath } from '../runner/provision/journal.ts';
import { median } from './ramp-pairs.ts';

export interface LaneRates {
  n: number;
  rounds: number;
  /** connections per second by lanes ("1", "auto"), one per round */
  rates: Record<string, number[]>;
  /** ms to release both sides (RST), by lanes */
  releaseMs: Record<string, number[]>;
}

export async function rampLanes(rounds: number, n: number, sources: number, log: (s: string) => void = () => {}): Promise<LaneRates> {
  const id = `n${process.pid.toString(36)}`.slice(0, 8);
  const net = await createLocalNetwork({ id, roles: ['client', 'server'], net: 18, purpose: 'bench', ehashEntries: ehashEntriesFor(n) });
  const [client, server] = net.hosts as [LocalHost, LocalHost];
  const srcs = client.aliasPool.slice(0, sources);
  await mustRunLocal(['ip', '-n', client.namespace, '-batch', '-'], { input: srcs.map((a) => `addr add ${a}/${client.prefix} dev ${client.device}`).join('\n') + '\n' });
  const ca = await AgentClient.start(new NetnsTransport('client', client.namespace));
  const sa = await AgentClient.start(new NetnsTransport('server', server.namespace));
  const rates: LaneRates['rates'] = { '1': [], auto: [] };
  const releaseMs: LaneRates['releaseMs'] = { '1': [], auto: [] };
  try {
    await ca.request('begin', { journal: hostJournalPath(client.namespace), holder: 'bench' });
    await ca.request('sysctlSet', { name: 'net.ipv4.ip_local_port_range', value: '1024 65535' });
    let port = 9000;
    for (let round = 0; round < rounds; round++) {
      for (const lanes of round % 2 ? ['auto', '1'] : ['1', 'auto']) {
        port++;
        await sa.request('listen', { id: `l${port}`, address: server.address, port, backlog: 4096, accept: true });
        const r = await ca.request('connect', {
          id: `c${port}`, pairs: srcs.map((s) => ({ source: s, address: server.address, port })),
          count: n, bind: 'none', rate: 0, timeoutMs: 600_000, connectTimeoutMs: 3000, stopOnError: true,
          ...(lanes === '1' ? { lanes: 1 } : {}),
        });
        if (r.established !== n) throw new Error(`lanes ${lanes}: ${r.established} of ${n}: ${JSON.stringify(r.firstError)}`);
        const rate = n / (r.durationMs / 1000);
        const t = performance.now();
        let order = 'both at once';
        if (process.env.RELEASE_ORDER === 'alternate' && round % 2 === 1) {
          // The connect side first: its RSTs reset the accepted sockets, which then close sending nothing.
          order = 'connect, then listen';
          await ca.request('release', { id: `c${port}`, abort: true });
          await sa.request('release', { id: `l${port}`, abort: true });
        } else {
          await Promise.all([ca.request('release', { id: `c${port}`, abort: true }), sa.request('release', { id: `l${port}`, abort: true })]);
        }
        const rel = performance.now() - t;
        rates[lanes]!.push(rate);
        releaseMs[lanes]!.push(rel);
        log(`  round ${round + 1} lanes ${lanes.padEnd(4)} (${r.lanes}) ${Math.round(rate)}/s, ${r.workers} workers, release ${Math.round(rel)} ms (${order})`);
      }
    }
  } finally {
    await Promise.all([ca.shutdown(), sa.shutdown()]);
    await destroyLocalNetwork(id);
  }
  return { n, rounds, rates, releaseMs };
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const rounds = Number(process.argv[2] ?? 3);
  const n = Number(process.argv[3] ?? 200_000);
  const sources = Number(process.argv[4] ?? 8);
  const r = await rampLanes(rounds, n, sources, (s) => console.log(s));
  const one = median(r.rates['1']!);
  console.log(`\n${n} connections from ${sources} sources, agent → agent, median of ${rounds} rounds, order alternated:`);
  for (const k of ['1', 'auto']) {
    const m = median(r.rates[k]!);
    console.log(`  lanes ${k.padEnd(4)} ${String(Math.round(m)).padStart(7)}/s  ${(m / one).toFixed(2)} of one lane, release ${Math.round(median(r.releaseMs[k]!))} ms`);
  }
}
