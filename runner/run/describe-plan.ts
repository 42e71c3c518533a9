// `lab plan`: a dry run that describes a plan with each host's current values
// (sysctls old → new), the steps and the expectations. Reads, changes nothing.

import { existsSync } from 'node:fs';
import { readdir, readFile, readlink } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { hostname, release } from 'node:os';
import { formatProblem } from '../errors.ts';
import { formatSize } from '../files/sizes.ts';
import { sysctlProblem } from '../lab/validate.ts';
import { runLocal } from '../hosts/local.ts';
import type { Plan, PlannedHost } from '../lab/plan.ts';
import { capacityCheck, WORKER_FD_MARGIN } from '../models/scale.ts';
import { sysctlReadCommand } from '../provision/sysctl-read.ts';
import { mapLimit } from '../hosts/forks.ts';
import type { HostFacts } from '../result.ts';
import type { HostProvider } from './provider.ts';

/** Current values of a host's sysctls: a fresh namespace's for per-namespace ones on local hosts. */
async function currentSysctls(host: PlannedHost, provider: HostProvider): Promise<string[]> {
  const names = host.sysctls.map((s) => s.name);
  if (!names.length) return [];
  if (host.kind === 'netns') {
    // A namespace that does not exist yet starts from the kernel's defaults:
    // read per-namespace sysctls in a throwaway one, global ones here.
    const read = async (scope: 'namespace' | 'global') => {
      const wanted = host.sysctls.filter((s) => s.scope === scope).map((s) => s.name);
      if (!wanted.length) return new Map<string, string>();
      const argv = scope === 'namespace' ? ['unshare', '--net', ...sysctlReadCommand(wanted)] : sysctlReadCommand(wanted);
      const r = await runLocal(argv);
      const lines = r.code === 0 ? r.stdout.split('\n') : [];
      return new Map(wanted.map((name, i) => [name, lines[i]?.trim() || '?']));
    };
    const [ns, global] = await Promise.all([read('namespace'), read('global')]);
    return names.map((n) => ns.get(n) ?? global.get(n) ?? '?');
  }
  const t = provider.transport(host.name);
  await t.connect();
  try {
    const r = await t.exec(sysctlReadCommand(names));
    return r.stdout.split('\n').slice(0, names.length);
  } finally {
    await t.close();
  }
}

/** What a run of the plan would refuse, as `lab plan` finds it: exit 2 for the lab's mistakes, 3 for what the hosts cannot hold. */
export interface PlanRefusals {
  /** sysctls a host lacks, located in the lab file */
  noSuchSysctl: string[];
  /** the capacity check does not fit */
  capacity: boolean;
}

export async function describePlan(plan: Plan, provider: HostProvider, options: { forks?: number; refusals?: PlanRefusals } = {}): Promise<string> {
  const lines = [`Plan for lab "${plan.lab.name}" (${plan.lab.file})`];
  if (provider.kind === 'local') {
    lines.push('  root namespace: a route "unreachable 198.18.0.0/15" of the run\'s own (its metric is its slice\'s), removed afterwards');
    lines.push('  addresses: the first free slice of 198.18.0.0/16 (shown: the first, what a run alone gets)');
  } else {
    for (const [role, names] of Object.entries(plan.roles)) {
      const group = provider.groupOf?.(role);
      lines.push(`  role ${role}: ${group ? `group "${group}", ` : ''}${names.length} host${names.length > 1 ? 's' : ''}: ${names.join(', ')}`);
    }
  }
  // Current values from every host at once (bounded), printed in plan order.
  const olds = await mapLimit(plan.hosts, options.forks, (h) => currentSysctls(h, provider));
  for (const [n, h] of plan.hosts.entries()) {
    const where = h.kind === 'netns' ? `new namespace ${h.target}` : `${h.target} over SSH${h.local ? ' (a namespace on this machine)' : ''}`;
    lines.push(`  host ${h.name === h.role ? h.role : `${h.name} (${h.role})`}: ${where}, address ${h.address}`);
    if (h.aliases.length > 4) lines.push(`    + ${h.aliases.length} addresses ${h.aliases[0]} … ${h.aliases.at(-1)}, each /32 on ${h.device}`);
    else for (const a of h.aliases) lines.push(`    + address ${a}/32 on ${h.device}`);
    const old = olds[n]!;
    for (const [i, s] of h.sysctls.entries()) {
      const before = old[i] ?? '?';
      // "-": the read found no such file (sysctlReadCommand); the run refuses it before any change.
      const change =
        before === '-' ? `${s.value}: no such sysctl on ${h.kind === 'netns' ? 'this machine' : h.target}: the run will refuse it [NO_SUCH_SYSCTL]` : before === s.value ? `${s.value} (unchanged)` : `${before} → ${s.value}`;
      if (before === '-' && options.refusals) {
        const p = sysctlProblem(plan.lab, h.role, s.name, `No sysctl "${s.name}" on ${h.kind === 'netns' ? 'this machine' : h.target}`);
        options.refusals.noSuchSysctl.push(formatProblem(p));
      }
      const global = s.scope === 'global' ? (h.local ? '  [global: this machine]' : '  [global]') : '';
      lines.push(`    sysctl ${s.name}: ${change}${global}`);
    }
    if (h.nofile !== undefined) lines.push(`    nofile (agent workers): soft ${h.nofile}`);
    if (h.conntrack) lines.push('    connection tracking: on (nftables table inet lab_conntrack, removed at restore)');
  }
  lines.push('  steps:');
  for (const [i, s] of plan.steps.entries()) {
    let what: string;
    switch (s.kind) {
      case 'listen':
        what = `listen on ${s.host} ${s.listeners.map((l) => `${l.address}:${s.port}`).join(', ')}, backlog ${s.backlog}${s.accept ? '' : ', not accepting'}${s.deferAcceptS ? `, TCP_DEFER_ACCEPT ${s.deferAcceptS} s` : ''}`;
        break;
      case 'connect':
        what = `connect from ${s.host}${s.parts.length > 1 ? ` (${s.parts.length} hosts, the count shared out by each host's capacity)` : ''}: ${pairsText(s.parts.flatMap((part) => part.pairs))}; at most ${s.count}, bind ${s.bind}${s.processes ? `, ${s.processes} process${s.processes > 1 ? 'es' : ''}` : ''}${s.send ? `, ${formatSize(s.send)} sent on each (left unread)` : ''}, timeout ${s.timeoutMs / 1000} s`;
        break;
      case 'sleep':
        what = `sleep ${s.durationMs / 1000} s`;
        break;
      case 'snapshot':
        what = `snapshot memory on ${s.host}`;
        break;
      case 'fit':
        what = `fit memory per connection on ${s.host} over ${s.snapshots.join(', ')}`;
        break;
      case 'release':
        what = `release ${s.steps.join(', ')}${plan.lab.release === 'graceful' ? ' (graceful: FIN, TIME_WAIT)' : ''}`;
        break;
      case 'files':
        what =
          s.ceiling === 'nr_open'
            ? `find the nofile ceiling on ${s.host}${s.nrOpen === undefined ? '' : ` with fs.nr_open ${s.nrOpen} for the step (put back at once)`}`
            : `open files as an unprivileged user on ${s.host} until ENFILE, fs.file-max = files in use + ${s.count} for the step (put back at once)`;
        break;
    }
    lines.push(`    ${i + 1}. ${s.name}: ${what}`);
    if (s.kind === 'connect' && s.autoPlan) lines.push(`       ${s.autoPlan}`);
  }
  // Local hosts share this machine's kernel: what a run will check before it starts, with today's numbers.
  if (provider.kind === 'local' && plan.steps.some((s) => s.kind === 'connect')) {
    const facts = await thisMachineFacts();
    if (facts) {
      const check = capacityCheck(plan, Object.fromEntries(plan.hosts.map((h) => [h.role, facts])));
      lines.push(`  capacity (checked again when the run starts; ${check.ok ? 'fits' : 'does NOT fit: the run will refuse'}):`);
      if (!check.ok && options.refusals) options.refusals.capacity = true;
      for (const m of check.machines) for (const l of [...m.check.lines, ...m.fds.lines]) lines.push(`    ${l}`);
      for (const l of check.ports.lines) lines.push(`    ${l}`);
    }
  }
  if (plan.lab.expect.length) {
    lines.push('  expect:');
    for (const e of plan.lab.expect) {
      const tol = e.tolerance ? ` ± ${e.tolerance}${e.tolerancePercent ? '%' : ''}` : '';
      lines.push(`    ${e.metric}: ${e.model ? `model ${e.model}` : JSON.stringify(e.value)}${tol}`);
    }
  }
  lines.push('  afterwards: every change above is undone' + (provider.kind === 'local' ? ' and the namespaces removed' : ''));
  return lines.join('\n');
}


/** "a → b:p, …", or for many pairs their count and the first and last. */
function pairsText(pairs: Array<{ source: string; address: string; port: number }>): string {
  const one = (p: (typeof pairs)[number]) => `${p.source} → ${p.address}:${p.port}`;
  return pairs.length > 4 ? `${pairs.length} pairs ${one(pairs[0]!)} … ${one(pairs.at(-1)!)}` : pairs.map(one).join(', ');
}

/** The facts the memory check needs, of this machine (the kernel local hosts share); undefined when /proc is unreadable. */
async function thisMachineFacts(): Promise<HostFacts | undefined> {
  try {
    const mem = Object.fromEntries(
      (await readFile('/proc/meminfo', 'utf8')).split('\n').map((l) => l.split(/:\s+/)).map(([k, v]) => [k, parseInt(v ?? '0', 10)]),
    );
    const slabObjectSize: Record<string, number> = {};
    try {
      for (const l of (await readFile('/proc/slabinfo', 'utf8')).split('\n').slice(2)) {
        const f = l.split(/\s+/);
        if (f.length > 3) slabObjectSize[f[0]!] = Number(f[3]);
      }
    } catch {
      // not root: the socket cost is then unknown, and the check says which caches it missed
    }
    const sysctl = async (name: string) => Number((await readFile(`/proc/sys/${name.replace(/\./g, '/')}`, 'utf8').catch(() => '0')).split(/\s+/)[0]);
    // Local agents inherit this process's limits (ip netns exec keeps them): its nofile is theirs.
    const limits = await readFile('/proc/self/limits', 'utf8').catch(() => '');
    const [soft, hard] = (/^Max open files\s+(\d+)\s+(\d+)/m.exec(limits) ?? []).slice(1).map(Number);
    const nofileSoft = soft || 1024;
    // The agent's guess (fastconn.likely_engine): a C compiler on PATH means its small C workers.
    const cc = (process.env.PATH ?? '').split(':').some((d) => d && existsSync(join(d, 'cc')));
    return {
      hostname: hostname(), kernel: release(), python: '', portRange: [32768, 60999], reservedPorts: '',
      nofileSoft, nofileHard: hard || nofileSoft, canRaiseHardNofile: false, nrOpen: await sysctl('fs.nr_open'), fileMax: await sysctl('fs.file-max'), somaxconn: 0,
      tcpMaxSynBacklog: 0, tcpFinTimeout: 0, tcpTwReuse: 0,
      memTotalKiB: mem.MemTotal ?? 0, memAvailableKiB: mem.MemAvailable ?? 0, slabObjectSize, slabAliases: await slabAliases(Object.keys(slabObjectSize)),
      addresses: [], cpus: 0, uid: process.getuid?.() ?? 0,
      // No agent here: its rule at this nofile (workerFds: the agent's WORKER_FDS; socketsPerWorker: nofile − FD_MARGIN),
      // so that a lab without nofile is planned with the workers the agent would start.
      workerFds: 5, socketsPerWorker: nofileSoft - WORKER_FD_MARGIN, connectEngine: cc ? 'c' : 'python',
    };
  } catch {
    return undefined;
  }
}

/**
 * {merged cache: the cache /proc/slabinfo lists its objects under}, as the
 * agent's facts give it (lab_agent/probes/slabinfo.py, aliases): SLUB merges
 * caches of one size and flags, /sys/kernel/slab keeps a symlink per name to
 * the merged cache, and slabinfo lists it once. Without it the plan would
 * price the bind buckets at nothing where the run prices them in full.
 */
async function slabAliases(listed: string[], root = '/sys/kernel/slab'): Promise<Record<string, string>> {
  let names: string[];
  try {
    names = await readdir(root);
  } catch {
    return {};
  }
  const target = new Map<string, string>();
  await Promise.all(
    names.map(async (n) => {
      const p = join(root, n);
      target.set(n, await readlink(p).then((l) => resolve(root, l), () => p));
    }),
  );
  const carrier = new Map<string, string>();
  for (const n of listed) {
    const t = target.get(n);
    if (t !== undefined && !carrier.has(t)) carrier.set(t, n);
  }
  const listedSet = new Set(listed);
  const out: Record<string, string> = {};
  for (const [n, t] of target) {
    const c = carrier.get(t);
    if (c !== undefined && c !== n && !listedSet.has(n)) out[n] = c;
  }
  return out;
}
