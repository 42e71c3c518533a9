// The python3 a host runs the agent with: how to find it, and the one rule
// about which versions will do (3.7+), for every transport and for the local
// prerequisites check.

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
export const PYTHON_PROBE = ['python3', '-c', 'import sys; print(sys.executable); print("%d.%d" % sys.version_info[:2])'];

export function parsePythonProbe(r: ExecResult): PythonInfo | undefined {
  if (r.code !== 0) return undefined;
  const [executable, version] = r.stdout.trim().split('\n');
  const m = /^(\d+)\.(\d+)$/.exec(version ?? '');
  if (!executable || !m) return undefined;
  return { executable, version: [Number(m[1]), Number(m[2])] };
}

/** The interpreter, when it is new enough; a HostError that says what to install otherwise. */
export function requirePython(python: PythonInfo | undefined, role?: string): PythonInfo {
  if (!python) {
    throw new HostError(
      'HOST_NO_PYTHON',
      'Cannot run "python3", which the probe agent needs: install it (Debian/Ubuntu: apt-get install python3; RHEL: dnf install python3)',
      role,
    );
  }
  const [major, minor] = python.version;
  if (major < MIN_PYTHON[0] || (major === MIN_PYTHON[0] && minor < MIN_PYTHON[1])) {
    throw new HostError('HOST_OLD_PYTHON', `python3 is ${major}.${minor}: the probe agent needs ${MIN_PYTHON.join('.')} or newer`, role);
  }
  return python;
}

let localPython: Promise<PythonInfo | undefined> | undefined;

/** The `python3` on this machine's PATH, resolved once per process; undefined when there is none. */
export function resolveLocalPython(): Promise<PythonInfo | undefined> {
  localPython ??= runLocal(PYTHON_PROBE).then(parsePythonProbe, () => undefined);
  return localPython;
}
