// The python3 a host runs the agent with: how to find it, and the one rule
// about which versions will do (3.7+), for every transport and for the local
// prerequisites check.

import { mkdir, readFile, rename, stat, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { HostError } from '../errors.ts';
import { runLocal } from './local.ts';
import type { ExecResult } from './transport.ts';

export interface PythonInfo {
  /** the interpreter itself (sys.executable), so later starts skip wrappers such as pyenv shims */
  executable: string;
  version: [number, number];
}

/** The oldest Python the agent runs on (docs/agent-protocol.md). */
export const MIN_PYTHON: [number, number] = [3, 7];

/** The command that finds a host's python3 interpreter and version; parsePythonProbe reads its output. */
export const PYTHON_PROBE = pythonProbe('python3');

/** The probe run with `interpreter` (an inventory's `python`, `ansible_python_interpreter`). */
export function pythonProbe(interpreter: string): string[] {
  return [interpreter, '-c', 'import sys; print(sys.executable); print("%d.%d" % sys.version_info[:2])'];
}

export function parsePythonProbe(r: ExecResult): PythonInfo | undefined {
  if (r.code !== 0) return undefined;
  const [executable, version] = r.stdout.trim().split('\n');
  const m = /^(\d+)\.(\d+)$/.exec(version ?? '');
  if (!executable || !m) return undefined;
  return { executable, version: [Number(m[1]), Number(m[2])] };
}

/** The interpreter, when it is new enough; a HostError that says what to install otherwise. */
export function requirePython(python: PythonInfo | undefined, role?: string, interpreter?: string): PythonInfo {
  if (!python) {
    const how = interpreter
      ? `Cannot run "${interpreter}" (the inventory's python interpreter), which the probe agent needs: install python3 there or fix the path`
      : 'Cannot run "python3", which the probe agent needs: install it (Debian/Ubuntu: apt-get install python3; RHEL: dnf install python3)';
    throw new HostError('HOST_NO_PYTHON', how, role);
  }
  const [major, minor] = python.version;
  if (major < MIN_PYTHON[0] || (major === MIN_PYTHON[0] && minor < MIN_PYTHON[1])) {
    throw new HostError('HOST_OLD_PYTHON', `${interpreter ?? 'python3'} is ${major}.${minor}: the probe agent needs ${MIN_PYTHON.join('.')} or newer`, role);
  }
  return python;
}

let localPython: Promise<PythonInfo | undefined> | undefined;

/**
 * Where the resolved interpreter is remembered between runs. Resolving runs
 * `python3`, which behind a pyenv shim is a chain of bash scripts: ~0.6 s of
 * CPU, and 9–10 s of a run's 12 s host setup when five runs start at once.
 */
export const PYTHON_CACHE = '/var/cache/lab/python3.json';

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
