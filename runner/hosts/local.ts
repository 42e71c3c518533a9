// Commands on the controller's own machine: one-shot commands go through zx
// (quoting, timeouts, stdin), long-running ones through child_process so their
// output is streamed rather than buffered.

import { spawn } from 'node:child_process';
import type { ExecOptions, ExecResult, HostProcess } from './transport.ts';

const DEFAULT_TIMEOUT_MS = 30_000;

// zx loads with the first command (about 130 ms), not with every `lab` command.
let zx: Promise<typeof import('zx')> | undefined;

/** Run argv to completion on this machine; never throws on a non-zero exit. */
export async function runLocal(argv: string[], options: ExecOptions = {}): Promise<ExecResult> {
  const { $ } = await (zx ??= import('zx'));
  const r = await $({
    nothrow: true,
    quiet: true,
    input: options.input,
    timeout: options.timeoutMs ?? DEFAULT_TIMEOUT_MS,
  })`${argv}`;
  return { code: r.exitCode, signal: r.signal, stdout: r.stdout, stderr: r.stderr };
}

/** Like runLocal, but a non-zero exit throws with the command and its stderr. */
export async function mustRunLocal(argv: string[], options: ExecOptions = {}): Promise<string> {
  const r = await runLocal(argv, options);
  if (r.code !== 0) {
    const why = r.stderr.trim() || r.stdout.trim() || `exit code ${r.code ?? r.signal}`;
    throw new Error(`Command failed: ${argv.join(' ')}: ${why}`);
  }
  return r.stdout;
}

/** Start a long-running local process with piped stdio. */
export function spawnLocal(argv: string[]): HostProcess {
  // A session of its own: Ctrl-C on a terminal signals the whole foreground process
  // group, and an agent that got it would restore and exit before the controller asks,
  // which then finds it gone (a false "restore was incomplete"). The controller alone
  // handles the signal and restores; stdin's EOF still ends the agent if the controller dies.
  const child = spawn(argv[0]!, argv.slice(1), { stdio: ['pipe', 'pipe', 'pipe'], detached: true });
  const exited = new Promise<{ code: number | null; signal: string | null }>((resolve) => {
    child.once('error', () => resolve({ code: 127, signal: null }));
    child.once('close', (code, signal) => resolve({ code, signal }));
  });
  return {
    stdin: child.stdin!,
    stdout: child.stdout!,
    stderr: child.stderr!,
    exited,
    kill() {
      child.stdin?.end();
      // Closing stdin asks the agent to clean up; the signal is the fallback.
      setTimeout(() => child.exitCode === null && child.kill('SIGTERM'), 2000).unref();
    },
  };
}
