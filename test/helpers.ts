// Shared by the integration tests: run the real CLI as a child process on a
// chosen runtime, and look for anything a run may have left on this machine.

import { execFileSync, spawn } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

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
  options: { runtime?: Runtime; env?: Record<string, string>; timeoutMs?: number; onStderr?: (text: string, kill: (sig: NodeJS.Signals) => void) => void } = {},
): Promise<CliRun> {
  const argv = [...cliArgv(options.runtime ?? 'node'), ...args];
  return new Promise((resolve) => {
    const child = spawn(argv[0]!, argv.slice(1), { cwd: ROOT, env: { ...process.env, NO_COLOR: '1', ...options.env } });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => {
      stderr += d;
      // process.kill, not child.kill: under Deno child.kill also closes stdin and reports the signal, not the exit code.
      options.onStderr?.(stderr, (sig) => process.kill(child.pid!, sig));
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
      if (/agent(-[0-9a-f]+)?\.py/.test(cmd) && cmd.includes('python') && cmd.includes(label)) pids.push(Number(d));
    } catch {
      // The process ended while we looked.
    }
  }
  return pids;
}

/** A sysctl as the kernel writes it, whitespace collapsed: in the root namespace, or inside `ns`. */
export function readSysctl(name: string, ns?: string): string {
  const path = `/proc/sys/${name.replaceAll('.', '/')}`;
  const text = ns
    ? execFileSync('ip', ['netns', 'exec', ns, 'cat', path], { encoding: 'utf8', timeout: 10_000 })
    : readFileSync(path, 'utf8');
  return text.trim().replace(/\s+/g, ' ');
}

export function guardRoutePresent(): Promise<boolean> {
  return new Promise((resolve) => {
    const c = spawn('ip', ['route', 'show', 'type', 'unreachable', '198.18.0.0/15']);
    let out = '';
    c.stdout.on('data', (d) => (out += d));
    c.on('close', () => resolve(out.trim() !== ''));
  });
}

/** What a run may leave behind, to compare before and after. */
export async function machineState() {
  return {
    namespaces: namespaces().filter((n) => n.startsWith('lab-')),
    agents: agentPids(),
    guardRoute: await guardRoutePresent(),
    portRange: readSysctl('net.ipv4.ip_local_port_range'),
    somaxconn: readSysctl('net.core.somaxconn'),
  };
}

/**
 * `--var`s that keep a shipped lab short in the test suite (the shipped
 * defaults show more): the same lab, smaller counts.
 */
export const SHIPPED_LAB_TEST_VARS: Record<string, string[]> = {
  'memory-per-conn.yaml': ['--var', 'step=2500'],
};
