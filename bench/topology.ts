// Benchmark: how two local hosts are joined, side by side in one run. Three
// wirings of the same two namespaces, each ramping N connections with the C
// peers (bench/peer/: CLIENTS blocking connect processes, one source address
// each, against SO_REUSEPORT epoll acceptors) and releasing them by RST:
//   direct            one veth pair (what `lab run` makes for two hosts)
//   bridge            a veth from each host into a bridge in a namespace of its
//                     own, its netfilter hooks off (three or more hosts, `lab hosts up`)
//   bridge+netfilter  the same with bridge-nf-call-* on (the kernel's default)
// The order rotates every round; medians over rounds; ratios against bridge+netfilter
// (what two hosts had before). Wall time is the machine's load as much as the
// wiring's; the CPU that the peers used per connection (their cgroup, the
// softirqs run in their context included) is the steadier figure.
// Usage: npm run bench:topology -- [ROUNDS] [N] [CLIENTS]   (N above 100k: under flock /tmp/lab-big.lock)
// PIN=1: every peer on CPU 1 (taskset), the cleanest per-connection figure (N ≤ 19000 × CLIENTS).

import { existsSync, mkdirSync, readFileSync, rmdirSync, writeFileSync } from 'node:fs';
import { cpus, release } from 'node:os';
import { fileURLToPath } from 'node:url';
import { mustRunLocal } from '../runner/hosts/local.ts';
import { bridgeNetfilter, createLocalNetwork, destroyLocalNetwork, type LocalNetwork, type Wiring } from '../runner/hosts/netns.ts';
import { compilePeers, median, Peer } from './ramp-pairs.ts';

interface Contender {
  name: string;
  wiring: Wiring;
  /** the bridge's netfilter hooks on, as a fresh namespace has them */
  netfilter?: boolean;
}
const CONTENDERS: Contender[] = [
  { name: 'bridge+netfilter', wiring: 'bridge', netfilter: true },
  { name: 'bridge', wiring: 'bridge' },
  { name: 'direct', wiring: 'direct' },
];

interface TopologyRound {
  /** connections per second, from starting the clients to the last one's last connect */
  rate: number;
  /** ms from closing the clients (RST) to the acceptors' exit */
  releaseMs: number;
  /** µs of CPU the peers used per connection, ramp and release; undefined without a cgroup to count in */
  rampCpuUs?: number;
  releaseCpuUs?: number;
}

/**
 * The CPU time of this process and its children, from a cgroup of its own
 * (cgroup v1 cpuacct, or v2), or undefined where neither can be made.
 */
class CpuMeter {
  private constructor(
    private readonly dir: string,
    private readonly read: () => number,
    private readonly back: string,
  ) {}
  static open(): CpuMeter | undefined {
    const self = readFileSync('/proc/self/cgroup', 'utf8').split('\n');
    const name = `lab-bench-${process.pid}`;
    const v1 = '/sys/fs/cgroup/cpuacct';
    const v2 = existsSync('/sys/fs/cgroup/cgroup.controllers') ? '/sys/fs/cgroup' : existsSync('/sys/fs/cgroup/unified/cgroup.controllers') ? '/sys/fs/cgroup/unified' : undefined;
    try {
      if (existsSync(`${v1}/cpuacct.usage`)) {
        const from = self.find((l) => /^\d+:([^:]*,)?cpuacct(,[^:]*)?:/.test(l))?.split(':')[2] ?? '/';
        const dir = `${v1}/${name}`;
        mkdirSync(dir);
        writeFileSync(`${dir}/cgroup.procs`, String(process.pid));
        return new CpuMeter(dir, () => Number(readFileSync(`${dir}/cpuacct.usage`, 'utf8')) / 1000, `${v1}${from}`);
      }
      if (v2) {
        const from = self.find((l) => l.startsWith('0::'))?.slice(3) ?? '/';
        const dir = `${v2}/${name}`;
        mkdirSync(dir);
        writeFileSync(`${dir}/cgroup.procs`, String(process.pid));
        const usage = () => Number(/usage_usec (\d+)/.exec(readFileSync(`${dir}/cpu.stat`, 'utf8'))![1]);
        return new CpuMeter(dir, usage, `${v2}${from}`);
      }
    } catch {
      return undefined;
    }
    return undefined;
  }
  /** µs used so far */
  usage(): number {
    return this.read();
  }
  close(): void {
    try {
      writeFileSync(`${this.back}/cgroup.procs`, String(process.pid));
      rmdirSync(this.dir);
    } catch {
      // A cgroup still holding a dead peer goes when the machine reboots; nothing of the lab's.
    }
  }
}

async function compareTopologies(
  rounds: number, n: number, clients: number, log: (s: string) => void = () => {}, contenders = CONTENDERS,
): Promise<{ rounds: Record<string, TopologyRound[]>; cpu: boolean } | string> {
  const peers = await compilePeers();
  if (typeof peers === 'string') return peers;
  const per = Math.ceil(n / clients);
  if (per > 19_000) return `${per} connections per client process: the hard nofile here is 20000, use more clients`;
  const acceptProcs = Math.max(2, Math.ceil(n / 15_000));
  const pin = process.env.PIN ? ['taskset', '-c', process.env.PIN] : [];
  const nets = new Map<string, LocalNetwork>();
  const out: Record<string, TopologyRound[]> = Object.fromEntries(contenders.map((c) => [c.name, []]));
  const meter = CpuMeter.open();
  try {
    for (const [i, c] of contenders.entries()) {
      const id = `tp${i}${process.pid.toString(36)}`.slice(0, 8);
      const net = await createLocalNetwork({ id, roles: ['client', 'server'], net: 18, purpose: 'bench', wiring: c.wiring });
      nets.set(c.name, net);
      const client = net.hosts[0]!;
      const sources = client.aliasPool.slice(0, clients);
      if (sources.length < clients) return `at most ${client.aliasPool.length} clients (one source address each)`;
      await mustRunLocal(['ip', '-n', client.namespace, '-batch', '-'], { input: sources.map((a) => `addr add ${a}/32 dev ${client.device}`).join('\n') + '\n' });
      await mustRunLocal(['ip', 'netns', 'exec', client.namespace, 'sysctl', '-qw', 'net.ipv4.ip_local_port_range=10000 65000']);
      if (c.netfilter) {
        await mustRunLocal(['ip', 'netns', 'exec', net.switchNamespace!, 'sh', '-c', bridgeNetfilter(true)]);
      }
    }
    for (let round = 0; round < rounds; round++) {
      const order = contenders.map((_, i) => contenders[(i + round) % contenders.length]!);
      for (const c of round % 2 ? order.reverse() : order) {
        const net = nets.get(c.name)!;
        const [client, server] = net.hosts as [LocalNetwork['hosts'][0], LocalNetwork['hosts'][0]];
        const acceptor = new Peer(server.namespace, [...pin, peers.accept, server.address, '9000', String(acceptProcs)]);
        if ((await acceptor.line()) !== 'ready') throw new Error('C server did not start');
        const u0 = meter?.usage();
        const t0 = performance.now();
        const cs = client.aliasPool.slice(0, clients).map((src) => new Peer(client.namespace, [...pin, peers.connect, server.address, '9000', String(per), src]));
        const oks = await Promise.all(cs.map((p) => p.line()));
        const rampMs = performance.now() - t0;
        const opened = oks.reduce((s, l) => s + Number(l.split(' ')[0]), 0);
        if (opened !== per * clients) throw new Error(`${c.name}: opened ${opened} of ${per * clients}: ${oks.join(' | ')}`);
        // Every connection accepted before the release starts.
        for (let t = 0; ; t++) {
          acceptor.send('count');
          if (Number((await acceptor.line()).split(' ')[1]) >= opened) break;
          if (t > 200) throw new Error(`${c.name}: the acceptors did not accept all ${opened}`);
          await new Promise((r) => setTimeout(r, 50));
        }
        const u1 = meter?.usage();
        const t1 = performance.now();
        // Each client closes its sockets by RST once its stdin ends, says "closed", and exits.
        await Promise.all(cs.map(async (p) => {
          p.child.stdin.end();
          await p.line();
          await p.end();
        }));
        await acceptor.end();
        const releaseMs = performance.now() - t1;
        const u2 = meter?.usage();
        const r: TopologyRound = {
          rate: opened / (rampMs / 1000), releaseMs,
          ...(meter ? { rampCpuUs: (u1! - u0!) / opened, releaseCpuUs: (u2! - u1!) / opened } : {}),
        };
        out[c.name]!.push(r);
        const cpu = meter ? `, CPU ${r.rampCpuUs!.toFixed(1)} + ${r.releaseCpuUs!.toFixed(1)} µs/conn` : '';
        log(`  round ${round + 1} ${c.name.padEnd(17)} ramp ${String(Math.round(r.rate)).padStart(6)}/s, release ${Math.round(releaseMs)} ms${cpu}  (load ${loadavg()[0]})`);
      }
    }
  } finally {
    meter?.close();
    for (const net of nets.values()) await destroyLocalNetwork(net.id);
  }
  return { rounds: out, cpu: meter !== undefined };
}

const loadavg = () => readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3);

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const rounds = Number(process.argv[2] ?? 7);
  const n = Number(process.argv[3] ?? 152_000);
  const clients = Number(process.argv[4] ?? 8);
  const started = new Date().toISOString();
  console.log(`${cpus().length} CPUs, Linux ${release()}, ${started}, load average ${loadavg().join(' ')}${process.env.PIN ? `, peers on CPU ${process.env.PIN}` : ''}`);
  const r = await compareTopologies(rounds, n, clients, (s) => console.log(s));
  if (typeof r === 'string') {
    console.log(`skipped: ${r}`);
  } else {
    const m = (name: string, k: keyof TopologyRound) => median(r.rounds[name]!.map((x) => x[k]!));
    const base = CONTENDERS[0]!.name;
    console.log(`\n${n} connections, ${clients} client processes, median of ${rounds} rounds, order rotated; against ${base}:`);
    for (const c of CONTENDERS) {
      const cpu = r.cpu
        ? `  CPU ramp ${m(c.name, 'rampCpuUs').toFixed(1)} µs/conn (${(m(base, 'rampCpuUs') / m(c.name, 'rampCpuUs')).toFixed(2)}× less), ` +
          `release ${m(c.name, 'releaseCpuUs').toFixed(1)} µs/conn (${(m(base, 'releaseCpuUs') / m(c.name, 'releaseCpuUs')).toFixed(2)}× less)`
        : '';
      console.log(
        `  ${c.name.padEnd(17)} ramp ${String(Math.round(m(c.name, 'rate'))).padStart(6)}/s (${(m(c.name, 'rate') / m(base, 'rate')).toFixed(2)}×), ` +
          `release ${String(Math.round(m(c.name, 'releaseMs'))).padStart(5)} ms (${(m(base, 'releaseMs') / m(c.name, 'releaseMs')).toFixed(2)}× faster)${cpu}`,
      );
    }
    console.log(`load average at the end ${loadavg().join(' ')}, ${new Date().toISOString()}`);
  }
}
