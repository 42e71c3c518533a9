// Commands on the controller's own machine: one-shot commands go through zx
// (quoting, timeouts, stdin), long-running ones through child_process so their
// output is streamed rather than buffered.

import { spawn } from 'node:child_process';
import { mkdir, readFile, rename, stat, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { $ } from 'zx';
import type { ExecOptions, ExecResult, HostProcess } from './transport.ts';

const DEFAULT_TIMEOUT_MS = 30_000;

/** Run argv to completion on this machine; never throws on a non-zero exit. */
export async function runLocal(argv: string[], options: ExecOptions = {}): Promise<ExecResult> {
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
  const child = spawn(argv[0]!, argv.slice(1), { stdio: ['pipe', 'pipe', 'pipe'] });
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

export interface PythonInfo {
  /** the interpreter itself (sys.executable), so later starts skip wrappers such as pyenv shims */
  executable: string;
  version: [number, number];
}

/** The command that finds a host's python3 interpreter and version; parsePythonProbe reads its output. */
export const PYTHON_PROBE = ['python3', '-c', 'import sys; print(sys.executable); print("%d.%d" % sys.version_info[:2])'];

export function parsePythonProbe(r: ExecResult): PythonInfo | undefined {
  if (r.code !== 0) return undefined;
  const [executable, version] = r.stdout.trim().split('\n');
  const [major, minor] = (version ?? '').split('.').map(Number);
  if (!executable || Number.isNaN(major) || Number.isNaN(minor)) return undefined;
  return { executable, version: [major!, minor!] };
}

let localPython: Promise<PythonInfo | undefined> | undefined;

/**
 * Where the resolved interpreter is remembered between runs. Resolving runs
 * `python3`, which behind a pyenv shim is a chain of bash scripts: ~0.6 s of
 * CPU, and 9–10 s of a run's 12 s host setup when five runs start at once.
 */
export const PYTHON_CACHE = '/run/lab/python3.json';

interface PythonCacheEntry {
  info: PythonInfo;
  /** the interpreter file as it was, so a reinstalled one is probed again */
  mtimeMs: number;
  size: number;
}

/** One entry per key: runs from different directories (or PATHs) may find different interpreters. */
type PythonCache = Record<string, PythonCacheEntry>;
const PYTHON_CACHE_ENTRIES = 32;

function pythonKey(): string {
  // pyenv picks a version by these and by .python-version files above cwd.
  return JSON.stringify([process.env.PATH ?? '', process.env.PYENV_VERSION ?? '', process.cwd()]);
}

export async function probeLocalPython(cache = PYTHON_CACHE): Promise<PythonInfo | undefined> {
  const key = pythonKey();
  let entries: PythonCache = {};
  try {
    entries = JSON.parse(await readFile(cache, 'utf8')) as PythonCache;
    const c = entries[key];
    if (c) {
      const st = await stat(c.info.executable);
      if (st.mtimeMs === c.mtimeMs && st.size === c.size) return c.info;
    }
  } catch {
    // No cache yet, or its interpreter is gone: probe.
  }
  const info = await runLocal(PYTHON_PROBE).then(parsePythonProbe, () => undefined);
  if (info) {
    try {
      const st = await stat(info.executable);
      // The newest entries stay; a concurrent writer's entry may be lost, and is probed again.
      const kept = Object.entries(entries)
        .filter(([k, e]) => k !== key && typeof e?.info?.executable === 'string')
        .slice(-(PYTHON_CACHE_ENTRIES - 1));
      const next: PythonCache = Object.fromEntries([...kept, [key, { info, mtimeMs: st.mtimeMs, size: st.size }]]);
      // Written aside and renamed: a concurrent run never reads half a file.
      const tmp = `${cache}.${process.pid}`;
      await mkdir(dirname(cache), { recursive: true });
      await writeFile(tmp, JSON.stringify(next) + '\n');
      await rename(tmp, cache);
    } catch {
      // Not root, or /run unwritable: the next run probes again.
    }
  }
  return info;
}

/** The `python3` on this machine's PATH, resolved once per process (and remembered in /run between runs); undefined when there is none. */
export function resolveLocalPython(): Promise<PythonInfo | undefined> {
  localPython ??= probeLocalPython();
  return localPython;
}
