// What every inventory reader produces (lab's own format, Ansible INI or
// YAML): hosts by name, each with how to reach it, and groups of host names,
// plus the value rules both readers share. Each rule checks through the one
// Checker (files/checker.ts), so a user name or an interface is judged, and
// its mistake worded, the same whichever format wrote it.

import type { Checker } from '../files/checker.ts';
import type { DocPath } from '../files/document.ts';
import { quote } from '../files/quote.ts';
import type { HostKeyPolicy, SshEndpoint } from './ssh.ts';

export interface InventoryHost extends SshEndpoint {
  /** the host's name in the inventory (lab's format: the key under `hosts`) */
  name: string;
  /** the address other hosts reach this one on for lab traffic */
  labAddress: string;
  jump?: SshEndpoint;
  sudo: boolean;
  /** the interface IP aliases go on */
  interface?: string;
  /** addresses the lab may add as IP aliases, in order */
  aliases: string[];
  /** a namespace on this machine (`lab hosts up`): global sysctls are the controller's */
  local: boolean;
  /** the interpreter the agent runs with (absolute path); default: `python3` from the login PATH */
  python?: string;
  /** where the host is defined, "file:line:col", for messages */
  where: string;
  /** the host's own variables (not connection settings), as strings: what `--each` gives a lab's templates */
  vars: Record<string, string>;
}

export interface Inventory {
  file: string;
  format: 'lab' | 'ansible-ini' | 'ansible-yaml';
  /** host name -> host, in inventory order */
  hosts: Record<string, InventoryHost>;
  /** group name -> its host names, in inventory order; "all" holds every host */
  groups: Record<string, string[]>;
}

export const HOST_KEY_POLICIES = ['check', 'accept-new'] as const satisfies readonly HostKeyPolicy[];
export const MAX_CONNECT_TIMEOUT_MS = 5 * 60_000;
export const DEFAULT_CONNECT_TIMEOUT_MS = 10_000;
/** What Linux takes for a device name (at most 15 bytes, no "/", ":" or space), and no leading "-" or ".". */
export const INTERFACE_NAME = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,14}$/;
export const HOST_NAME = /^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?$/;
export const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;
/** POSIX-portable user names (and Samba's trailing "$"): nothing a shell or ssh would read twice. */
export const USER_NAME = /^[A-Za-z0-9_][A-Za-z0-9_.-]*\$?$/;
/** An interpreter path: absolute, and nothing a shell would read as more than one word. */
const PYTHON_PATH = /^\/[A-Za-z0-9_.+\/-]*[A-Za-z0-9_.+-]$/;

// ---- the value rules both readers share ----

export function checkUser(check: Checker, path: DocPath, v: unknown): string | undefined {
  const s = check.line(path, v);
  if (s === undefined) return undefined;
  if (!USER_NAME.test(s)) return check.mustBe(path, 'a user name (letters, digits, "_", ".", "-")', s);
  return s;
}

export function checkInterface(check: Checker, path: DocPath, v: unknown): string | undefined {
  const s = check.string(path, v);
  if (s === undefined) return undefined;
  if (!INTERFACE_NAME.test(s)) {
    return check.mustBe(path, 'an interface name (up to 15 letters, digits, "_", ".", "-", not starting with "-" or ".")', s);
  }
  return s;
}

/** `password_env` / `passphrase_env`: the name of a variable that holds the secret, never the secret itself. */
export function checkSecretEnv(check: Checker, path: DocPath, v: unknown, secret: 'password' | 'passphrase'): string | undefined {
  const s = check.string(path, v);
  if (s === undefined) return undefined;
  if (!ENV_NAME.test(s)) return check.mustBe(path, `the name of an environment variable (letters, digits and "_"), not a ${secret}`, s);
  return s;
}

export function checkConnectTimeout(check: Checker, path: DocPath, v: unknown): number | undefined {
  return check.duration(path, v, MAX_CONNECT_TIMEOUT_MS);
}

export function checkHostKey(check: Checker, path: DocPath, v: unknown): HostKeyPolicy | undefined {
  return check.choice(path, v, HOST_KEY_POLICIES, 'host_key policy');
}

/** The agent's interpreter: an absolute path (the agent is started by it directly, never through a shell). */
export function checkPython(check: Checker, path: DocPath, v: unknown): string | undefined {
  const s = check.line(path, v);
  if (s === undefined) return undefined;
  if (!PYTHON_PATH.test(s)) return check.mustBe(path, 'the absolute path of a python3 (letters, digits, "_", ".", "+", "-", "/")', s);
  return s;
}

/**
 * One IP alias of host `host`: an IPv4 address no host has listed yet (an
 * address can be an alias of one host only). Adds it to `mine` and `owners`.
 */
export function checkAlias(check: Checker, path: DocPath, v: unknown, host: string, mine: string[], owners: Map<string, string>): void {
  const alias = check.ipv4(path, v);
  if (alias === undefined) return;
  const owner = owners.get(alias);
  if (mine.includes(alias)) check.at(path, `Alias ${quote(alias)} is listed twice`);
  else if (owner !== undefined) check.at(path, `Alias ${quote(alias)} is already an alias of host ${quote(owner)}`);
  else {
    owners.set(alias, host);
    mine.push(alias);
  }
}
