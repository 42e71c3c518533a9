// Shared by the integration tests: run the real CLI as a child process on a
// chosen runtime, and look for anything a run may have left on this machine.

import { execFileSync, spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { connect as netConnect } from 'node:net';
import { join } from 'node:path';
import * as assert from 'uvu/assert';
import { parse, stringify } from 'yaml';
import { fileURLToPath } from 'node:url';
import type { RunResult } from '../runner/result.ts';

export const ROOT = fileURLToPath(new URL('..', import.meta.url));

export type Runtime = 'node' | 'bun' | 'deno';

export function cliArgv(runtime: Runtime): string[] {
  switch (runtime) {
    case 'node':
      return ['node', 'bin/lab.mjs'];
    case 'bun':
      return ['node_modules/.bin/bun', 'runner/main.ts'];
    case 'deno':
      return ['node_modules/.bin/deno', 'run', '-A', 'runner/main.ts'];
  }
}

export interface CliRun {
  code: number | null;
  signal: string | null;
  stdout: string;
  stderr: string;
}

/** Run `lab ARGS` from the project root; `onStderr` sees output as it comes (to time a Ctrl-C). */
export function runCli(
  args: string[],
  options: {
    runtime?: Runtime;
    env?: Record<string, string>;
    timeoutMs?: number;
    onStderr?: (text: string, kill: (sig: NodeJS.Signals) => void) => void;
    /** called once the child runs, with its pid (to watch what it makes) */
    onSpawn?: (pid: number) => void;
    /** run it in a process group of its own and signal the whole group, as a terminal's Ctrl-C does */
    group?: boolean;
    /** close the read end of its stdout after the first output, as `| head -1` does: its later writes meet EPIPE */
    closeStdout?: boolean;
  } = {},
): Promise<CliRun> {
  const argv = [...cliArgv(options.runtime ?? 'node'), ...args];
  return new Promise((resolve) => {
    const child = spawn(argv[0]!, argv.slice(1), { cwd: ROOT, env: { ...process.env, NO_COLOR: '1', ...options.env }, detached: !!options.group });
    if (child.pid) options.onSpawn?.(child.pid);
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => {
      stdout += d;
      if (options.closeStdout) child.stdout.destroy();
    });
    child.stderr.on('data', (d) => {
      stderr += d;
      // process.kill, not child.kill: under Deno child.kill also closes stdin and reports the signal, not the exit code.
      options.onStderr?.(stderr, (sig) => process.kill(options.group ? -child.pid! : child.pid!, sig));
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs ?? 120_000);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
  });
}

export function namespaces(): string[] {
  try {
    return readdirSync('/run/netns');
  } catch {
    return [];
  }
}

/** pids of probe agents (those whose `--label` contains `label`, when given), from every process's command line */
export function agentPids(label = ''): number[] {
  const pids: number[] = [];
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const cmd = readFileSync(`/proc/${d}/cmdline`, 'utf8');
      // agent-<hash>.pyz, its unpacked copy agent-<hash>.d/__main__.py (SSH), or runner/agent/__main__.py
      if (/agent(-[0-9a-f]+)?(\.py|\.d\/)/.test(cmd) && cmd.includes('python') && cmd.includes(label)) pids.push(Number(d));
    } catch {
      // The process ended while we looked.
    }
  }
  return pids;
}

/** The parent of a process. */
export function parentPid(pid: number): number {
  return Number(readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ')[1]);
}

/** A run's agent on a host, and its workers (forked: the same command line, the agent as parent). */
export function agentAndWorkers(label: string): { agent?: number; workers: number[] } {
  const pids = agentPids(label).filter((p) => existsSync(`/proc/${p}`));
  const parents = new Map(pids.map((p) => [p, parentPid(p)]));
  const agent = pids.find((p) => !pids.includes(parents.get(p)!));
  // A worker may have exec'd the agent's C helper (fastconn), so it is found by its parent, not its command line.
  const workers = agent === undefined ? [] : readdirSync('/proc').filter((d) => /^\d+$/.test(d)).map(Number).filter((p) => {
    try {
      return parentPid(p) === agent;
    } catch {
      return false; // ended while we looked
    }
  });
  return { agent, workers };
}

/**
 * Whether the C helper's release can close through io_uring here: a ring can be
 * set up (not refused by kernel.io_uring_disabled or a seccomp filter such as
 * Docker's) and the kernel has socket commands (setsockopt, Linux 6.7). Asked of
 * python3, the agent's own interpreter, in this process's place: its children
 * inherit the same filter. Tests expect `batched` = closed where it is true, 0
 * where it is not.
 */
export function ioUringSockets(): boolean {
  const probe =
    'import ctypes, os\n' +
    'libc = ctypes.CDLL(None, use_errno=True)\n' +
    'fd = libc.syscall(425, 4, ctypes.create_string_buffer(120))\n' +
    'major, minor = (int(x) for x in os.uname().release.split(".")[:2])\n' +
    'print(1 if fd >= 0 and (major, minor) >= (6, 7) else 0)\n';
  return execFileSync('python3', ['-c', probe], { encoding: 'utf8' }).trim() === '1';
}

/** A sysctl as the kernel writes it, whitespace collapsed: in the root namespace, or inside `ns`. */
export function readSysctl(name: string, ns?: string): string {
  const path = `/proc/sys/${name.replaceAll('.', '/')}`;
  const text = ns
    ? execFileSync('ip', ['netns', 'exec', ns, 'cat', path], { encoding: 'utf8', timeout: 10_000 })
    : readFileSync(path, 'utf8');
  return text.trim().replace(/\s+/g, ' ');
}

/** The `unreachable 198.18.0.0/15` guard routes in the root namespace, as "metric N". */
export function guardRoutes(): string[] {
  const out = execFileSync('ip', ['route', 'show', 'type', 'unreachable', '198.18.0.0/15'], { encoding: 'utf8' });
  return out.split('\n').filter((l) => l.trim()).map((l) => `metric ${/metric (\d+)/.exec(l)?.[1] ?? '0'}`);
}

/**
 * Guard routes of runs that are gone: a run's route has metric 1800 + its
 * slice, and a live run holds /run/lab/local/slice-<slice> for as long as its
 * route exists. Other runs on this machine (other test files, other users)
 * do not count, so this holds while they run too.
 */
export function strayGuardRoutes(): string[] {
  return guardRoutes().filter((r) => {
    const metric = Number(r.split(' ')[1]);
    return metric >= 1800 && metric < 1900 && !existsSync(`/run/lab/local/slice-${metric - 1800}`);
  });
}

/**
 * lab-* namespaces that no journal in /run/lab/local names: left by nobody
 * who can still undo them. Runs of other tests or users on this machine are
 * journaled, so they do not count.
 */
export function unjournaledNamespaces(): string[] {
  const named = new Set<string>();
  const dir = '/run/lab/local';
  for (const f of existsSync(dir) ? readdirSync(dir) : []) {
    if (!f.endsWith('.json')) continue;
    try {
      for (const n of JSON.parse(readFileSync(`${dir}/${f}`, 'utf8')).namespaces ?? []) named.add(n);
    } catch {
      // Being written by a run that is starting.
    }
  }
  return namespaces().filter((n) => n.startsWith('lab-') && !named.has(n));
}

/** Everything of run `id` that may be left on this machine: namespaces, agents, journals, locks, slices. */
export function runLeftovers(id: string): string[] {
  const left: string[] = [];
  for (const n of namespaces()) if (n.startsWith(`lab-${id}-`)) left.push(`namespace ${n}`);
  for (const p of agentPids(`lab:lab-${id}-`)) left.push(`agent pid ${p}`);
  const dir = (d: string) => (existsSync(d) ? readdirSync(d) : []);
  for (const f of dir('/run/lab/host')) if (f.startsWith(`lab-${id}-`)) left.push(`/run/lab/host/${f}`);
  for (const f of dir('/run/lab/local')) {
    const path = `/run/lab/local/${f}`;
    if (f === `${id}.json` || (f.startsWith('slice-') && readFileSync(path, 'utf8').includes(`"id":"${id}"`))) left.push(path);
  }
  for (const r of strayGuardRoutes()) left.push(`guard route ${r}`);
  return left;
}

/** What a run may leave behind, to compare before and after. */
export async function machineState() {
  return {
    namespaces: namespaces().filter((n) => n.startsWith('lab-')),
    agents: agentPids(),
    portRange: readSysctl('net.ipv4.ip_local_port_range'),
    somaxconn: readSysctl('net.core.somaxconn'),
  };
}

/**
 * `--var`s that keep a shipped lab short in the test suite (the shipped
 * defaults show more): the same lab, smaller counts.
 */
/**
 * A memory lab measures slab caches that every process on the machine shares.
 * When its fit saw other TCP sockets come and go (`foreignSockets` > 0) and a
 * prediction failed, the machine was busy, not the lab wrong: the test runs it
 * again, a bounded number of times. On a quiet machine one run decides.
 */
// ---- hosts made by `lab hosts up` (198.19.0.0/16), shared by the SSH tests ----

/** Journals and locks that runs left for hosts up hosts (named by address). */
export function sshHostJournals(): string[] {
  return existsSync('/run/lab/host') ? readdirSync('/run/lab/host').filter((f) => f.startsWith('198.19.')) : [];
}

/** Every hosts up host as the network made it: no agent, the default port range, one address, no journal. */
export function assertSshHostsClean(namespaces: string[], what: string, agents = 'lab:root@'): void {
  assert.equal(agentPids(agents), [], `${what}: agents left on the SSH hosts`);
  for (const ns of namespaces) {
    assert.is(readSysctl('net.ipv4.ip_local_port_range', ns), '32768 60999', `${what}: ${ns} port range not restored`);
    const left = execFileSync('ip', ['-n', ns, '-o', '-4', 'addr', 'show', 'dev', 'eth0'], { encoding: 'utf8' });
    assert.is(left.trim().split('\n').length, 1, `${what}: ${ns} has addresses left: ${left}`);
  }
  assert.equal(sshHostJournals(), [], `${what}: journals or locks left`);
}

/** Resolves once `address:port` takes a TCP connection (a daemon that forks before it listens); throws after ~10 s. */
export async function waitForListener(address: string, port: number, what: string): Promise<void> {
  for (let i = 0; i < 100; i++) {
    const up = await new Promise<boolean>((resolve) => {
      const sock = netConnect({ host: address, port }, () => (sock.destroy(), resolve(true)));
      sock.on('error', () => resolve(false));
    });
    if (up) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`${what} did not come back`);
}

/** A copy of a YAML inventory, changed by `change`, written as DIR/NAME.yaml. */
export function inventoryWith(inventory: string, dir: string, name: string, change: (inv: any) => void): string {
  const inv = parse(readFileSync(inventory, 'utf8'));
  change(inv);
  const file = join(dir, `${name}.yaml`);
  writeFileSync(file, stringify(inv));
  return file;
}

export const BUSY_MACHINE_ATTEMPTS = 4;
export function disturbedByOthers(result: RunResult): boolean {
  const busy = result.steps.some((s) => s.kind === 'fit' && (s.metrics.foreignSockets ?? 0) > 0);
  return busy && result.predictions.some((p) => p.verdict === 'fail');
}

export async function runShippedLab(lab: string, extra: string[], dir: string): Promise<{ run: CliRun; results: RunResult[] }> {
  return runLabUntilQuiet(`labs/${lab}`, [...(SHIPPED_LAB_TEST_VARS[lab] ?? []), ...extra], dir);
}

/** `lab run FILE ARGS --out DIR`, again while disturbedByOthers() (at most BUSY_MACHINE_ATTEMPTS runs). */
export async function runLabUntilQuiet(file: string, args: string[], dir: string): Promise<{ run: CliRun; results: RunResult[] }> {
  const results: RunResult[] = [];
  for (let attempt = 1; ; attempt++) {
    const out = attempt === 1 ? dir : `${dir}-attempt${attempt}`;
    // A kept (SSH) host still holds the TIME_WAIT sockets the last attempt left, for 60 s, and a
    // lab that counts or weighs them would meet them: a retry there waits them out.
    const leftTimeWait = results.at(-1)?.steps.some((st) => (st.metrics['tcpTw'] ?? 0) > 0);
    if (attempt > 1 && args.includes('-i') && leftTimeWait) await new Promise((r) => setTimeout(r, 61_000));
    const run = await runCli(['run', file, ...args, '--out', out]);
    let result: RunResult | undefined;
    try {
      result = JSON.parse(readFileSync(join(out, 'result.json'), 'utf8')) as RunResult;
    } catch {
      return { run, results };
    }
    results.push(result);
    if (!disturbedByOthers(result) || attempt >= BUSY_MACHINE_ATTEMPTS) return { run, results };
  }
}

export const SHIPPED_LAB_TEST_VARS: Record<string, string[]> = {
  'memory-per-conn.yaml': ['--var', 'step=2500'],
  'capacity.yaml': ['--var', 'count=4100'],
  // The million labs at a size a test run can afford (npm run bench:million runs the real one):
  // 40000 still needs a second source address, so sources: auto plans an alias.
  'million.yaml': ['--var', 'count=40000'],
  'two-million.yaml': ['--var', 'count=20000'],
};
