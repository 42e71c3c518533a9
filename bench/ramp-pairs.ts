// Benchmark: the agent's connect and accept paths, each half against C, side
// by side in one run. Four pairs between two namespaces, each ramping N
// connections client → server:
//   C → C          bench/peer/connect.c → bench/peer/accept.c (the physical anchor)
//   agent → C      the agent's connect step → the C epoll server
//   C → agent      the C client → the agent's listen step
//   agent → agent  what `lab run` does
// The order of the pairs rotates every round; medians over rounds; ratios
// against C → C. Exported for bench/index.ts; run alone: npm run bench:ramp -- ROUNDS N

import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { createInterface } from 'node:readline';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { AgentClient } from '../runner/agent/client.ts';
import { runLocal } from '../runner/hosts/local.ts';
import { createLocalNetwork, destroyLocalNetwork, NetnsTransport, type LocalHost } from '../runner/hosts/netns.ts';
import { hostJournalPath } from '../runner/provision/journal.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
export const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

/** A C peer in a namespace, talked to through stdin/stdout lines. */
export class Peer {
  private lines: string[] = [];
  private waiters: ((l: string) => void)[] = [];
  readonly child: ChildProcessWithoutNullStreams;
  private readonly closed: Promise<unknown>;
  constructor(namespace: string, argv: string[]) {
    this.child = spawn('ip', ['netns', 'exec', namespace, ...argv], { stdio: ['pipe', 'pipe', 'pipe'] });
    this.closed = new Promise((r) => this.child.once('close', r));
    createInterface({ input: this.child.stdout }).on('line', (l) => {
      const w = this.waiters.shift();
      if (w) w(l);
      else this.lines.push(l);
    });
    this.child.stderr.on('data', (d) => process.stderr.write(`peer ${argv[0]}: ${d}`));
  }
  line(timeoutMs = 120_000): Promise<string> {
    const l = this.lines.shift();
    if (l !== undefined) return Promise.resolve(l);
    return new Promise((res, rej) => {
      const t = setTimeout(() => rej(new Error('C peer: no output in time')), timeoutMs);
      this.waiters.push((x) => (clearTimeout(t), res(x)));
    });
  }
  send(s: string) {
    this.child.stdin.write(s + '\n');
  }
  async end(): Promise<void> {
    this.child.stdin.end();
    await this.closed;
  }
}

const engine = (side: Side) => (side.engine ? { engine: side.engine } : {});

export async function compilePeers(): Promise<{ connect: string; accept: string } | string> {
  const out = { connect: join(tmpdir(), 'lab-bench-connect'), accept: join(tmpdir(), 'lab-bench-accept') };
  for (const [k, bin] of Object.entries(out)) {
    const cc = await runLocal(['cc', '-O2', '-o', bin, join(ROOT, `bench/peer/${k}.c`)]);
    if (cc.code !== 0) return `no C compiler: ${cc.stderr.trim() || cc.code}`;
  }
  return out;
}

/** One side of a pair: the C peer, or an agent started by `start`. */
export interface Side {
  name: string;
  /** undefined: the C peer */
  start?: (t: NetnsTransport) => Promise<AgentClient>;
  /** the agent's engine for listen and connect ("python": its fallback workers); default its choice */
  engine?: 'python' | 'c';
}
export const C_SIDE: Side = { name: 'C' };
export const AGENT_SIDE: Side = { name: 'agent', start: (t) => AgentClient.start(t) };
export interface Pair {
  name: string;
  client: Side;
  server: Side;
}
export const PAIRS: Pair[] = [
  { name: 'C → C', client: C_SIDE, server: C_SIDE },
  { name: 'agent → C', client: AGENT_SIDE, server: C_SIDE },
  { name: 'C → agent', client: C_SIDE, server: AGENT_SIDE },
  { name: 'agent → agent', client: AGENT_SIDE, server: AGENT_SIDE },
];

export interface PairRates {
  n: number;
  rounds: number;
  /** connections per second, one per round, by pair name */
  rates: Record<string, number[]>;
  /** ms to release the client's N connections (RST), by client side */
  releaseMs: Record<string, number[]>;
}

/**
 * Ramp N connections per pair, ROUNDS rounds, the order rotated each round.
 * acceptProcs: the C server's SO_REUSEPORT processes.
 */
export async function rampPairs(pairs: Pair[], rounds: number, n: number, acceptProcs = 2, log: (s: string) => void = () => {}): Promise<PairRates | string> {
  const peers = await compilePeers();
  if (typeof peers === 'string') return peers;
  const id = `r${process.pid.toString(36)}`.slice(0, 8);
  const net = await createLocalNetwork({ id, roles: ['client', 'server'], net: 18, purpose: 'bench' });
  const [client, server] = net.hosts as [LocalHost, LocalHost];
  const agents = new Map<string, AgentClient>();
  const rates: PairRates['rates'] = Object.fromEntries(pairs.map((p) => [p.name, [] as number[]]));
  const releaseMs: PairRates['releaseMs'] = {};
  const agentOf = async (side: Side, host: LocalHost): Promise<AgentClient> => {
    const key = `${side.name}@${host.role}`;
    let a = agents.get(key);
    if (!a) {
      a = await side.start!(new NetnsTransport(host.role, host.namespace));
      agents.set(key, a);
      if (host === client && agents.size === 1) {
        await a.request('begin', { journal: hostJournalPath(client.namespace), holder: 'bench' });
        // Wide enough that N stays below half of it, where connect() slows sharply.
        await a.request('sysctlSet', { name: 'net.ipv4.ip_local_port_range', value: '10000 65000' });
      }
    }
    return a;
  };
  try {
    // The port range is the client namespace's: the first agent there sets it, before any pair runs.
    await agentOf(pairs.find((p) => p.client.start)?.client ?? AGENT_SIDE, client);
    let port = 9000;
    for (let round = 0; round < rounds; round++) {
      const order = pairs.map((_, i) => pairs[(i + round) % pairs.length]!);
      for (const pair of order) {
        port++; // a fresh destination: an earlier ramp's ports never slow this one
        let cs: Peer | undefined;
        let sa: AgentClient | undefined;
        if (!pair.server.start) {
          cs = new Peer(server.namespace, [peers.accept, server.address, String(port), String(acceptProcs)]);
          if ((await cs.line()) !== 'ready') throw new Error('C server did not start');
        } else {
          sa = await agentOf(pair.server, server);
          await sa.request('listen', { id: `l${port}`, address: server.address, port, backlog: 4096, accept: true, ...engine(pair.server) });
        }
        let rate: number;
        let overhead = '';
        if (!pair.client.start) {
          const cc = new Peer(client.namespace, [peers.connect, server.address, String(port), String(n)]);
          const [ok, secs, err] = (await cc.line()).split(' ');
          if (Number(ok) !== n) throw new Error(`${pair.name}: C client opened ${ok} of ${n}: ${err}`);
          rate = n / Number(secs);
          // It closes by RST when its stdin ends, and says how long that took.
          cc.child.stdin.end();
          const closed = (await cc.line()).split(' ');
          if (closed[0] === 'closed') (releaseMs[pair.client.name] ??= []).push(Number(closed[1]) * 1000);
          await cc.end();
        } else {
          const ca = await agentOf(pair.client, client);
          const r = await ca.request('connect', {
            id: `c${port}`, pairs: [{ source: client.address, address: server.address, port }],
            count: n, bind: 'none', rate: 0, timeoutMs: 120_000, connectTimeoutMs: 3000, stopOnError: true, ...engine(pair.client),
          });
          if (r.established !== n) throw new Error(`${pair.name}: agent opened ${r.established} of ${n}: ${JSON.stringify(r.firstError)}`);
          rate = n / (r.durationMs / 1000);
          // The step's time beyond its workers' loops: starting them, handing over, replying.
          overhead = `  (${r.durationMs - r.loopMs} ms outside the connect loops)`;
          const t = performance.now();
          await ca.request('release', { id: `c${port}`, abort: true });
          (releaseMs[pair.client.name] ??= []).push(performance.now() - t);
        }
        if (cs) await cs.end();
        else await sa!.request('release', { id: `l${port}`, abort: true });
        rates[pair.name]!.push(rate);
        log(`  round ${round + 1} ${pair.name.padEnd(22)} ${Math.round(rate)}/s${overhead}`);
      }
    }
  } finally {
    await Promise.all([...agents.values()].map((g) => g.shutdown()));
    await destroyLocalNetwork(id);
  }
  return { n, rounds, rates, releaseMs };
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const rounds = Number(process.argv[2] ?? 5);
  const n = Number(process.argv[3] ?? 15000);
  const r = await rampPairs(PAIRS, rounds, n, Number(process.argv[4] ?? 2), (s) => console.log(s));
  if (typeof r === 'string') {
    console.log(`skipped: ${r}`);
  } else {
    const anchor = median(r.rates[PAIRS[0]!.name]!);
    console.log(`\nramp of ${n} connections between two namespaces, median of ${rounds} rounds, order rotated:`);
    for (const p of PAIRS) {
      const m = median(r.rates[p.name]!);
      console.log(`  ${p.name.padEnd(14)} ${String(Math.round(m)).padStart(7)}/s  ${(m / anchor).toFixed(2)} of C → C`);
    }
  }
}
