// Local hosts: one network namespace per lab role on this machine. Two hosts
// are joined by one veth pair; three or more, or hosts the root namespace must
// reach, through a bridge that lives in a namespace of its own. Either way the
// root namespace only ever gets an `unreachable` guard route (and, for
// `lab hosts up`, one veth into the bridge). Addresses come from
// 198.18.0.0/15 (RFC 2544): each run holds a slice of 198.18.0.0/16 of its
// own and a guard route of its own, so any number of runs can share the
// machine without coordinating.

import { existsSync, readFileSync } from 'node:fs';
import { link, mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { HostError } from '../errors.ts';
import { MAX_ALIASES } from '../files/names.ts';
import { installLocal } from './artifact.ts';
import { mustRunLocal, runLocal, spawnLocal } from './local.ts';
import { requirePython, resolveLocalPython, type PythonInfo } from './python.ts';
import type { Artifact, ExecOptions, ExecResult, HostProcess, Transport } from './transport.ts';

/** Every namespace lab creates starts with this, so leftovers are easy to find. */
export const NAMESPACE_PREFIX = 'lab-';
export const GUARD_ROUTE = '198.18.0.0/15';
/** Controller-side journals of local networks, for `lab restore` after a crash. */
export const LOCAL_JOURNAL_DIR = '/run/lab/local';
/**
 * Left by lab versions that shared one guard route between runs (metric 0,
 * reference counted through this marker); `lab restore` still removes it.
 */
const LEGACY_GUARD_MARKER = `${LOCAL_JOURNAL_DIR}/guard-route.added`;
/** Runs take slices of 198.18.0.0/16: 16 of /20 (16 × 256 addresses) each. */
export const RUN_SLICES = 16;
const SLICE_ROWS = 256 / RUN_SLICES;
export const RUN_PREFIX = 20;

export interface LocalNetworkSpec {
  /** short unique id, [a-z0-9]{1,8}: part of every name */
  id: string;
  roles: string[];
  /** second octet: 18 for lab runs, 19 for `lab hosts up` (reachable from the root namespace) */
  net: 18 | 19;
  /** net 18: the slice reserveSlice() gave this id (one is reserved when absent) */
  slice?: number;
  /** give the root namespace an address on the bridge, so it can reach the hosts (SSH) */
  rootLink?: boolean;
  /**
   * How the hosts are joined; default: "direct" for exactly two hosts without
   * a root link, else "bridge". A benchmark may ask for a bridge between two.
   */
  wiring?: Wiring;
  /** what created it, recorded in the journal */
  purpose: string;
  /**
   * A TCP established-hash table of this many buckets for each host namespace
   * of its own (net.ipv4.tcp_child_ehash_entries), for a lab that holds
   * hundreds of thousands of sockets; absent: the machine's shared table.
   */
  ehashEntries?: number;
}

/** Where the kernel reads the ehash size a new namespace gets (in the namespace that creates it). */
const CHILD_EHASH = '/proc/sys/net/ipv4/tcp_child_ehash_entries';

/**
 * The per-namespace ehash size for a lab that holds up to `sockets` sockets in
 * one namespace, or undefined below 65536, where the shared table serves.
 * Why: every namespace shares the machine's table by default (262144 buckets
 * here), so a million connections make chains of 8, and worse, each namespace
 * torn down anywhere on the machine walks the whole shared table to purge its
 * TIME_WAIT sockets (inet_twsk_purge): with other runs coming and going, that
 * took a tenth of the CPU during a million-connection ramp. A table of its
 * own is sized to the lab and walked by nobody else.
 */
export function ehashEntriesFor(sockets: number): number | undefined {
  if (sockets < 65536) return undefined;
  return Math.min(2 ** 24, 2 ** Math.ceil(Math.log2(sockets)));
}

/**
 * "direct": the two hosts' eth0s are the two ends of one veth pair. "bridge":
 * each host's eth0 is a veth into br0 in the switch namespace lab-<id>-sw.
 * Why direct when it can be: every packet of a handshake and every RST of a
 * release crosses one veth instead of two and no bridge (nor the bridge's
 * netfilter hooks): 5–11% less kernel CPU per connection on the ramp, 3–11%
 * on the release here, and one namespace fewer to make and tear down
 * (docs/performance.md, npm run bench:topology).
 */
export type Wiring = 'bridge' | 'direct';

/** Run in a switch namespace: bridged frames go through netfilter or not (createLocalNetwork: not). */
export function bridgeNetfilter(on: boolean): string {
  return `cd /proc/sys/net/bridge 2>/dev/null || exit 0; for k in iptables ip6tables arptables; do echo ${on ? 1 : 0} > bridge-nf-call-$k; done`;
}

/** The wiring a network gets when its spec names none. */
export function defaultWiring(hosts: number, rootLink?: boolean): Wiring {
  return hosts === 2 && !rootLink ? 'direct' : 'bridge';
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
  slice?: number;
  hosts: LocalHost[];
  wiring: Wiring;
  /** the bridge's namespace (wiring "bridge") */
  switchNamespace?: string;
  /** the root namespace's address on the bridge, when rootLink */
  rootAddress?: string;
  rootDevice?: string;
}

interface LocalJournal {
  id: string;
  purpose: string;
  pid: number;
  /** the creator's start time (/proc/<pid>/stat), so a reused pid does not look like it */
  pidStart?: string;
  createdAt: string;
  namespaces: string[];
  rootDevice?: string;
  /** the slice of 198.18.0.0/16 this network holds */
  slice?: number;
  /** the metric of this network's own guard route */
  guardMetric?: number;
  network?: LocalNetwork;
}


/**
 * Addresses of host `index` (0-based). In slice s of a run (rows r = 16s…16s+15):
 * primary 198.18.r.(i+1), aliases 198.18.(r+1+i).(k+1), so hosts beyond the
 * 15th have no aliases. Without a slice (`lab hosts up`, the whole /16):
 * primary 198.N.0.(i+1), aliases 198.N.(i+1).(k+1).
 */
export function localAddresses(net: number, index: number, slice?: number): { address: string; aliasPool: string[] } {
  const row = slice === undefined ? 0 : slice * SLICE_ROWS;
  const rows = slice === undefined ? 255 : SLICE_ROWS;
  return {
    address: `198.${net}.${row}.${index + 1}`,
    aliasPool: index + 1 < rows ? Array.from({ length: MAX_ALIASES }, (_, k) => `198.${net}.${row + index + 1}.${k + 1}`) : [],
  };
}

/** The prefix of a host's address: its slice, or the whole /16 for `lab hosts up`. */
export function localPrefix(slice?: number): number {
  return slice === undefined ? 16 : RUN_PREFIX;
}

/** Each network's own guard route differs by metric, so none is ever shared or counted. */
export function guardMetric(net: number, slice?: number): number {
  return net * 100 + (slice ?? 0);
}

function sliceFile(slice: number): string {
  return `${LOCAL_JOURNAL_DIR}/slice-${slice}`;
}

/** The start time of a process (clock ticks since boot), or undefined when it is gone. */
export function processStart(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Field 22; the command name (field 2) may hold spaces and parentheses.
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19];
  } catch {
    return undefined;
  }
}

/** Whether the process that wrote a journal still runs: same pid and, when recorded, same start time. */
export function isAlive(pid: number, start?: string): boolean {
  const now = processStart(pid);
  return now !== undefined && (start === undefined || now === start);
}

/**
 * Take the first free slice of 198.18.0.0/16 for network `id`. The slice's
 * file is the lock: link() of a written file onto its name is atomic and fails
 * when it exists, so concurrent runs never get the same slice and nobody ever
 * reads a half-written holder. The network's journal releases it when undone.
 */
export async function reserveSlice(id: string): Promise<number> {
  await mkdir(LOCAL_JOURNAL_DIR, { recursive: true });
  const mine = `${LOCAL_JOURNAL_DIR}/.slice-${id}-${process.pid}`;
  await writeFile(mine, JSON.stringify({ id, pid: process.pid, pidStart: processStart(process.pid) }) + '\n');
  try {
    for (let slice = 0; slice < RUN_SLICES; slice++) {
      try {
        await link(mine, sliceFile(slice));
        return slice;
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'EEXIST') {
          throw new HostError('LOCAL_NETWORK', `Cannot reserve addresses in ${LOCAL_JOURNAL_DIR}: ${(e as Error).message}`);
        }
      }
    }
  } finally {
    await rm(mine, { force: true });
  }
  throw new HostError(
    'LOCAL_BUSY',
    `All ${RUN_SLICES} address slices of 198.18.0.0/16 are held by other runs: wait for one to end, or run "lab restore" if they died`,
  );
}

async function releaseSlice(slice: number, id: string): Promise<void> {
  // Only our own: after a crash the slice may already be someone else's.
  if (readHolder(await readFile(sliceFile(slice), 'utf8').catch(() => '')).id === id) await rm(sliceFile(slice), { force: true });
}

function readHolder(text: string): { id?: string; pid?: number; pidStart?: string } {
  try {
    return JSON.parse(text);
  } catch {
    return {};
  }
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

/** The journal a run writes when it reserves its slice, before it makes anything. */
export async function reserveLocalNetwork(id: string, purpose: string): Promise<number> {
  const slice = await reserveSlice(id);
  await writeJournal(newJournal(id, purpose, slice));
  return slice;
}

function newJournal(id: string, purpose: string, slice?: number): LocalJournal {
  return {
    id,
    purpose,
    pid: process.pid,
    pidStart: processStart(process.pid),
    createdAt: new Date().toISOString(),
    namespaces: [],
    ...(slice === undefined ? {} : { slice }),
  };
}

/**
 * Create the namespaces, the bridge and the addresses. The journal is written
 * before each change, so a crash at any point can be undone by `lab restore`;
 * a failure here undoes what was made and rethrows.
 */
export async function createLocalNetwork(spec: LocalNetworkSpec): Promise<LocalNetwork> {
  if (!/^[a-z0-9]{1,8}$/.test(spec.id)) throw new HostError('LOCAL_BAD_ID', `Bad network id "${spec.id}"`);
  const wiring = spec.wiring ?? defaultWiring(spec.roles.length, spec.rootLink);
  if (wiring === 'direct' && (spec.roles.length !== 2 || spec.rootLink)) {
    throw new HostError('LOCAL_BAD_WIRING', 'A direct veth pair joins exactly two hosts and no root link');
  }
  // Runs (net 18) each hold a slice; `lab hosts up` (net 19) is one network with the whole /16.
  const slice = spec.net === 18 ? (spec.slice ?? (await reserveSlice(spec.id))) : undefined;
  const journal = newJournal(spec.id, spec.purpose, slice);
  const sw = wiring === 'bridge' ? namespaceName(spec.id, 'sw') : undefined;
  const network: LocalNetwork = {
    id: spec.id, net: spec.net, hosts: [], wiring, ...(sw ? { switchNamespace: sw } : {}), ...(slice === undefined ? {} : { slice }),
  };
  for (const [i, role] of spec.roles.entries()) {
    const { address, aliasPool } = localAddresses(spec.net, i, slice);
    network.hosts.push({ role, namespace: namespaceName(spec.id, role), device: 'eth0', address, prefix: localPrefix(slice), aliasPool });
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
    journal.namespaces = [...(sw ? [sw] : []), ...network.hosts.map((h) => h.namespace)];
    journal.rootDevice = network.rootDevice;
    journal.guardMetric = guardMetric(spec.net, slice);
    await writeJournal(journal);
    // A guard of this network's own (its metric is its slice's): nothing to
    // count or share, and a guard route of the machine's own is never touched.
    // `replace` is idempotent: a retry after a crash in this slice cannot fail.
    await mustRunLocal(['ip', 'route', 'replace', 'unreachable', GUARD_ROUTE, 'metric', String(journal.guardMetric)]);
    if (spec.ehashEntries && existsSync(CHILD_EHASH)) {
      // The switch first, with the shared table; then the hosts, each with a table
      // of its own. The sysctl is the machine's: set only while the namespaces are
      // made, under a lock so that concurrent runs restore the value they found.
      if (sw) await batch([`netns add ${sw}`]);
      const hosts = network.hosts.map((h) => `ip netns add ${h.namespace}`).join(' && ');
      const script = `old=$(cat ${CHILD_EHASH}) && echo ${spec.ehashEntries} > ${CHILD_EHASH} && { ${hosts}; rc=$?; echo $old > ${CHILD_EHASH}; exit $rc; }`;
      // The lock is on the sysctl file itself: nothing is left behind to clean up.
      await mustRunLocal(['flock', CHILD_EHASH, 'sh', '-c', script]);
    } else {
      await batch(journal.namespaces.map((ns) => `netns add ${ns}`));
    }
    if (sw) {
      await batch([
        'link set lo up',
        'link add br0 type bridge',
        'link set br0 up',
        ...network.hosts.flatMap((h, i) => [
          `link add p${i} type veth peer name ${h.device} netns ${h.namespace}`,
          `link set p${i} master br0 up`,
        ]),
      ], sw);
    } else {
      const [a, b] = network.hosts as [LocalHost, LocalHost];
      await batch([`link add ${a.device} type veth peer name ${b.device} netns ${b.namespace}`], a.namespace);
    }
    await Promise.all([
      ...network.hosts.map((h) =>
        batch(['link set lo up', `addr add ${h.address}/${h.prefix} dev ${h.device}`, `link set ${h.device} up`], h.namespace),
      ),
      // No netfilter in the switch: bridged frames skip the IPv4/IPv6/ARP hooks
      // (0–8% of a connection's kernel CPU here). These sysctls are the
      // namespace's own where the kernel shows them inside it (Linux ≥ 5.3);
      // elsewhere they are the machine's, and are left alone.
      ...(sw ? [mustRunLocal(['ip', 'netns', 'exec', sw, 'sh', '-c', bridgeNetfilter(false)])] : []),
    ]);
    if (network.rootDevice && sw) {
      await mustRunLocal(['ip', 'link', 'add', network.rootDevice, 'type', 'veth', 'peer', 'name', 'up0', 'netns', sw]);
      await batch(['link set up0 master br0 up'], sw);
      // A /16 beside the /15 guard: more specific, so only this network is reachable.
      await batch([`addr add ${network.rootAddress}/${localPrefix(slice)} dev ${network.rootDevice}`, `link set ${network.rootDevice} up`]);
    }
    journal.network = network;
    await writeJournal(journal);
    return network;
  } catch (e) {
    await undoLocalJournal(journal);
    throw new HostError('LOCAL_NETWORK', `Cannot create local hosts: ${(e as Error).message}`, undefined, { cause: e });
  }
}

/**
 * Called for each namespace once nothing runs in it, before it is deleted:
 * what the namespace alone does not take away (a lost agent's journal) is undone here.
 */
export type BeforeDelete = (namespace: string) => Promise<string[]>;

/** Undo one journal: kill what runs in the namespaces, delete them, the root link, the guard route, the slice. */
async function undoLocalJournal(j: LocalJournal, beforeDelete?: BeforeDelete): Promise<string[]> {
  const problems: string[] = [];
  // Host namespaces first, the switch (when bridged) last: it was made first.
  for (const ns of [...j.namespaces].reverse()) {
    if (!existsSync(`/run/netns/${ns}`)) continue;
    const pids = await runLocal(['ip', 'netns', 'pids', ns]);
    const list = pids.stdout.split(/\s+/).filter(Boolean);
    if (list.length) await runLocal(['kill', '-KILL', ...list]);
    if (beforeDelete) problems.push(...(await beforeDelete(ns)));
    const del = await runLocal(['ip', 'netns', 'del', ns]);
    // Gone anyway: another `lab restore` undid the same dead run at the same moment.
    if (del.code !== 0 && existsSync(`/run/netns/${ns}`)) problems.push(`Cannot delete namespace "${ns}": ${del.stderr.trim()}`);
  }
  if (j.rootDevice) {
    const show = await runLocal(['ip', 'link', 'show', j.rootDevice]);
    if (show.code === 0) await runLocal(['ip', 'link', 'del', j.rootDevice]);
  }
  // The guard goes last: it stays while anything of this network could still send.
  if (!problems.length && j.guardMetric !== undefined) {
    const del = await runLocal(['ip', 'route', 'del', 'unreachable', GUARD_ROUTE, 'metric', String(j.guardMetric)]);
    // "No such process": it was never added, or a retry already removed it.
    if (del.code !== 0 && !/No such process/.test(del.stderr)) {
      problems.push(`Cannot delete route "unreachable ${GUARD_ROUTE} metric ${j.guardMetric}": ${del.stderr.trim()}`);
    }
  }
  if (!problems.length) {
    await rm(`${LOCAL_JOURNAL_DIR}/${j.id}.json`, { force: true });
    if (j.slice !== undefined) await releaseSlice(j.slice, j.id);
  }
  return problems;
}

/** The shared guard of older lab versions: removed once no lab network is left. */
async function undoLegacyGuard(): Promise<string[]> {
  if (!existsSync(LEGACY_GUARD_MARKER) || (await listLocalJournals()).length) return [];
  const del = await runLocal(['ip', 'route', 'del', 'unreachable', GUARD_ROUTE, 'metric', '0']);
  if (del.code !== 0 && !/No such process/.test(del.stderr)) return [`Cannot delete route "unreachable ${GUARD_ROUTE}": ${del.stderr.trim()}`];
  await rm(LEGACY_GUARD_MARKER, { force: true });
  return [];
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
export async function destroyLocalNetwork(id: string, beforeDelete?: BeforeDelete): Promise<string[]> {
  const j = (await listLocalJournals()).find((x) => x.id === id);
  if (!j) return [];
  return undoLocalJournal(j, beforeDelete);
}

/**
 * Undo every local network whose creator is gone (`lab restore` without an
 * inventory), but those made for a purpose in `keep`.
 */
export async function restoreLocalNetworks(options: { keep?: string[]; beforeDelete?: BeforeDelete } = {}): Promise<{
  undone: string[];
  problems: string[];
}> {
  const undone: string[] = [];
  const problems: string[] = [];
  for (const j of await listLocalJournals()) {
    if (options.keep?.includes(j.purpose)) continue;
    if (j.pid !== process.pid && isAlive(j.pid, j.pidStart)) continue;
    problems.push(...(await undoLocalJournal(j, options.beforeDelete)));
    undone.push(...j.namespaces);
  }
  problems.push(...(await releaseDeadSlices()), ...(await undoLegacyGuard()));
  return { undone, problems };
}

/** The namespaces of local networks whose creator still runs. */
export async function liveLocalNamespaces(): Promise<Set<string>> {
  const live = new Set<string>();
  for (const j of await listLocalJournals()) if (isAlive(j.pid, j.pidStart)) for (const n of j.namespaces) live.add(n);
  return live;
}

/** Slices whose holder died before it wrote a journal. */
async function releaseDeadSlices(): Promise<string[]> {
  const journals = new Set((await listLocalJournals()).map((j) => j.id));
  for (const name of await readdir(LOCAL_JOURNAL_DIR).catch(() => [] as string[])) {
    if (!/^slice-\d+$/.test(name)) continue;
    const holder = readHolder(await readFile(`${LOCAL_JOURNAL_DIR}/${name}`, 'utf8').catch(() => ''));
    // Slices are linked in whole, so one that does not parse was not written by lab: leave it.
    if (!holder.pid || (holder.id && journals.has(holder.id))) continue;
    if (isAlive(holder.pid, holder.pidStart)) continue;
    await rm(`${LOCAL_JOURNAL_DIR}/${name}`, { force: true });
  }
  return [];
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
