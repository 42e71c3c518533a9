// Local hosts: one network namespace per lab role on this machine, wired
// through a bridge that lives in a namespace of its own, so the root namespace
// only ever gets the `unreachable` guard route (and, for `lab hosts up`, one
// veth into the bridge). Addresses come from 198.18.0.0/15 (RFC 2544).

import { existsSync } from 'node:fs';
import { mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { HostError } from '../errors.ts';
import { installLocal } from './artifact.ts';
import { mustRunLocal, runLocal, spawnLocal } from './local.ts';
import { requirePython, resolveLocalPython, type PythonInfo } from './python.ts';
import type { Artifact, ExecOptions, ExecResult, HostProcess, Transport } from './transport.ts';

/** Every namespace lab creates starts with this, so leftovers are easy to find. */
export const NAMESPACE_PREFIX = 'lab-';
export const GUARD_ROUTE = '198.18.0.0/15';
/** Controller-side journals of local networks, for `lab restore` after a crash. */
export const LOCAL_JOURNAL_DIR = '/run/lab/local';
/** Present while the guard route is one lab added (not the machine's own). */
export const GUARD_MARKER = `${LOCAL_JOURNAL_DIR}/guard-route.added`;

export interface LocalNetworkSpec {
  /** short unique id, [a-z0-9]{1,8}: part of every name */
  id: string;
  roles: string[];
  /** second octet: 18 for lab runs, 19 for `lab hosts up` (reachable from the root namespace) */
  net: 18 | 19;
  /** give the root namespace an address on the bridge, so it can reach the hosts (SSH) */
  rootLink?: boolean;
  /** what created it, recorded in the journal */
  purpose: string;
}

export interface LocalHost {
  role: string;
  namespace: string;
  /** the interface inside the namespace that carries lab traffic */
  device: string;
  address: string;
  prefix: number;
  /** addresses reserved for this host's IP aliases (added by provisioning, not here) */
  aliasPool: string[];
}

export interface LocalNetwork {
  id: string;
  net: 18 | 19;
  hosts: LocalHost[];
  switchNamespace: string;
  /** the root namespace's address on the bridge, when rootLink */
  rootAddress?: string;
  rootDevice?: string;
}

interface LocalJournal {
  id: string;
  purpose: string;
  pid: number;
  createdAt: string;
  namespaces: string[];
  rootDevice?: string;
  network?: LocalNetwork;
}

const MAX_ALIASES = 64;

/** Addresses of host `index` (0-based): primary 198.N.0.(i+1), aliases 198.N.(i+1).(k+1). */
export function localAddresses(net: number, index: number): { address: string; aliasPool: string[] } {
  return {
    address: `198.${net}.0.${index + 1}`,
    aliasPool: Array.from({ length: MAX_ALIASES }, (_, k) => `198.${net}.${index + 1}.${k + 1}`),
  };
}

export function namespaceName(id: string, role: string): string {
  return `${NAMESPACE_PREFIX}${id}-${role}`;
}

/** Fail early, with what to do, when this machine cannot host local namespaces. */
export async function checkLocalPrerequisites(): Promise<void> {
  if (typeof process.getuid === 'function' && process.getuid() !== 0) {
    throw new HostError('LOCAL_NOT_ROOT', 'Local hosts need root: run lab as root (network namespaces, veth, sysctls)');
  }
  const [ip, py] = await Promise.all([
    runLocal(['ip', '-V']).catch(() => ({ code: 127 }) as ExecResult),
    resolveLocalPython(),
  ]);
  if (ip.code !== 0) throw new HostError('LOCAL_NO_IP', 'Cannot run "ip": install iproute2 (apt-get install iproute2)');
  requirePython(py);
}

async function journalPath(id: string): Promise<string> {
  await mkdir(LOCAL_JOURNAL_DIR, { recursive: true });
  return `${LOCAL_JOURNAL_DIR}/${id}.json`;
}

async function writeJournal(j: LocalJournal): Promise<void> {
  await writeFile(await journalPath(j.id), JSON.stringify(j, null, 2) + '\n');
}

async function guardRoutePresent(): Promise<boolean> {
  const out = await mustRunLocal(['ip', 'route', 'show', 'table', 'main', 'type', 'unreachable', GUARD_ROUTE]);
  return out.trim() !== '';
}

/**
 * Create the namespaces, the bridge and the addresses. The journal is written
 * before each change, so a crash at any point can be undone by `lab restore`;
 * a failure here undoes what was made and rethrows.
 */
export async function createLocalNetwork(spec: LocalNetworkSpec): Promise<LocalNetwork> {
  if (!/^[a-z0-9]{1,8}$/.test(spec.id)) throw new HostError('LOCAL_BAD_ID', `Bad network id "${spec.id}"`);
  const journal: LocalJournal = {
    id: spec.id,
    purpose: spec.purpose,
    pid: process.pid,
    createdAt: new Date().toISOString(),
    namespaces: [],
  };
  const sw = namespaceName(spec.id, 'sw');
  const network: LocalNetwork = { id: spec.id, net: spec.net, hosts: [], switchNamespace: sw };
  for (const [i, role] of spec.roles.entries()) {
    const { address, aliasPool } = localAddresses(spec.net, i);
    network.hosts.push({ role, namespace: namespaceName(spec.id, role), device: 'eth0', address, prefix: 16, aliasPool });
  }
  if (spec.rootLink) {
    network.rootAddress = `198.${spec.net}.255.254`;
    network.rootDevice = `lab${spec.id}`;
  }
  // One `ip -batch` per namespace: a separate command per line would cost ~10 ms each.
  const batch = (lines: string[], ns?: string) =>
    mustRunLocal(['ip', ...(ns ? ['-n', ns] : []), '-batch', '-'], { input: lines.join('\n') + '\n' });

  try {
    // Everything is journaled before it is made, so a crash at any point can be undone.
    journal.namespaces = [sw, ...network.hosts.map((h) => h.namespace)];
    journal.rootDevice = network.rootDevice;
    await writeJournal(journal);
    if (!(await guardRoutePresent())) {
      // The marker says lab added the guard, so the last lab network removes it
      // (and a guard route of the machine's own is never touched).
      await writeFile(GUARD_MARKER, `${process.pid}\n`);
      await mustRunLocal(['ip', 'route', 'add', 'unreachable', GUARD_ROUTE]);
    }
    await batch(journal.namespaces.map((ns) => `netns add ${ns}`));
    await batch([
      'link set lo up',
      'link add br0 type bridge',
      'link set br0 up',
      ...network.hosts.flatMap((h, i) => [
        `link add p${i} type veth peer name ${h.device} netns ${h.namespace}`,
        `link set p${i} master br0 up`,
      ]),
    ], sw);
    await Promise.all(
      network.hosts.map((h) =>
        batch(['link set lo up', `addr add ${h.address}/${h.prefix} dev ${h.device}`, `link set ${h.device} up`], h.namespace),
      ),
    );
    if (network.rootDevice) {
      await mustRunLocal(['ip', 'link', 'add', network.rootDevice, 'type', 'veth', 'peer', 'name', 'up0', 'netns', sw]);
      await batch(['link set up0 master br0 up'], sw);
      // A /16 beside the /15 guard: more specific, so only this network is reachable.
      await batch([`addr add ${network.rootAddress}/16 dev ${network.rootDevice}`, `link set ${network.rootDevice} up`]);
    }
    journal.network = network;
    await writeJournal(journal);
    return network;
  } catch (e) {
    await undoLocalJournal(journal);
    throw new HostError('LOCAL_NETWORK', `Cannot create local hosts: ${(e as Error).message}`, undefined, { cause: e });
  }
}

/** Undo one journal: kill what runs in the namespaces, delete them, the root link, the guard route. */
async function undoLocalJournal(j: LocalJournal): Promise<string[]> {
  const problems: string[] = [];
  // Host namespaces first, the switch last (it was made first).
  for (const ns of [...j.namespaces].reverse()) {
    if (!existsSync(`/run/netns/${ns}`)) continue;
    const pids = await runLocal(['ip', 'netns', 'pids', ns]);
    const list = pids.stdout.split(/\s+/).filter(Boolean);
    if (list.length) await runLocal(['kill', '-KILL', ...list]);
    const del = await runLocal(['ip', 'netns', 'del', ns]);
    if (del.code !== 0) problems.push(`Cannot delete namespace "${ns}": ${del.stderr.trim()}`);
  }
  if (j.rootDevice) {
    const show = await runLocal(['ip', 'link', 'show', j.rootDevice]);
    if (show.code === 0) await runLocal(['ip', 'link', 'del', j.rootDevice]);
  }
  if (!problems.length) await rm(`${LOCAL_JOURNAL_DIR}/${j.id}.json`, { force: true });
  // The guard stays while any lab network still relies on it.
  if (existsSync(GUARD_MARKER) && !(await listLocalJournals()).some((o) => o.id !== j.id)) {
    if (await guardRoutePresent()) {
      const del = await runLocal(['ip', 'route', 'del', 'unreachable', GUARD_ROUTE]);
      if (del.code !== 0) problems.push(`Cannot delete route "unreachable ${GUARD_ROUTE}": ${del.stderr.trim()}`);
    }
    if (!problems.length) await rm(GUARD_MARKER, { force: true });
  }
  return problems;
}

export async function listLocalJournals(): Promise<LocalJournal[]> {
  let names: string[] = [];
  try {
    names = await readdir(LOCAL_JOURNAL_DIR);
  } catch {
    return [];
  }
  const out: LocalJournal[] = [];
  for (const n of names.filter((n) => n.endsWith('.json'))) {
    try {
      out.push(JSON.parse(await readFile(`${LOCAL_JOURNAL_DIR}/${n}`, 'utf8')) as LocalJournal);
    } catch {
      // A half-written journal: its namespaces are still found by prefix below.
    }
  }
  return out;
}

/** Remove the local network with this id; returns problems (empty when clean). */
export async function destroyLocalNetwork(id: string): Promise<string[]> {
  const j = (await listLocalJournals()).find((x) => x.id === id);
  if (!j) return [];
  return undoLocalJournal(j);
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/**
 * Undo every local network whose creator is gone (`lab restore` without an
 * inventory), but those made for a purpose in `keep`.
 */
export async function restoreLocalNetworks(options: { keep?: string[] } = {}): Promise<{
  undone: string[];
  problems: string[];
}> {
  const undone: string[] = [];
  const problems: string[] = [];
  for (const j of await listLocalJournals()) {
    if (options.keep?.includes(j.purpose)) continue;
    if (j.pid !== process.pid && alive(j.pid)) continue;
    problems.push(...(await undoLocalJournal(j)));
    undone.push(...j.namespaces);
  }
  return { undone, problems };
}

/** A host that is a namespace on this machine: commands run through `ip netns exec`. */
export class NetnsTransport implements Transport {
  readonly kind = 'netns' as const;
  readonly capabilities = { localNamespace: true, needsSudo: false };
  readonly target: string;
  constructor(
    readonly role: string,
    readonly namespace: string,
  ) {
    this.target = namespace;
  }

  async connect(): Promise<void> {
    if (!existsSync(`/run/netns/${this.namespace}`)) {
      throw new HostError('NETNS_GONE', `Namespace "${this.namespace}" does not exist`, this.role);
    }
  }

  exec(argv: string[], options?: ExecOptions): Promise<ExecResult> {
    return runLocal(['ip', 'netns', 'exec', this.namespace, ...argv], options);
  }

  async spawn(argv: string[]): Promise<HostProcess> {
    return spawnLocal(['ip', 'netns', 'exec', this.namespace, ...argv]);
  }

  async putFile(path: string, content: string | Uint8Array, mode = 0o644): Promise<void> {
    // Namespaces share the controller's file system.
    await mkdir(path.replace(/\/[^/]*$/, '') || '/', { recursive: true });
    await writeFile(path, content, { mode });
  }

  /** Namespaces share this machine's file system: one copy in its cache serves them all. */
  install(artifact: Artifact): Promise<string> {
    return installLocal(artifact);
  }

  async python(): Promise<PythonInfo> {
    return requirePython(await resolveLocalPython(), this.role);
  }

  async close(): Promise<void> {}
}
