// Machine-wide ceilings a lab observes directly: the fd ceilings (fs.nr_open,
// fs.file-max), the conntrack table (net.netfilter.nf_conntrack_max), and
// what a connection costs a thread-per-connection server against an event loop. Pure functions of a step's settings and the host's facts.

import type { ModelContext, ModelOutput } from './connections.ts';
import { ModelNotApplicable, releasedIn } from './connections.ts';

/**
 * `fd-ceilings`, of a `files` step.
 *
 * nr_open: setrlimit(RLIMIT_NOFILE) refuses a hard limit above fs.nr_open with
 * EPERM, root included. Raising the hard limit at all also needs
 * CAP_SYS_RESOURCE: without it the ceiling is the lower of the current hard
 * limit and fs.nr_open (EPERM either way).
 *
 * file-max: a process without CAP_SYS_ADMIN cannot get a struct file once the
 * kernel holds fs.file-max of them (ENFILE, "Too many open files in system").
 * The step sets fs.file-max to the files in use plus `count`, so an
 * unprivileged process opens `count` files and then gets ENFILE.
 */
export function fdCeilings(ctx: ModelContext): ModelOutput {
  const step = ctx.step;
  if (step.kind !== 'files') throw new ModelNotApplicable(`Model "fd-ceilings" applies to files steps, not "${step.kind}"`);
  const facts = ctx.facts[step.host];
  if (!facts) throw new ModelNotApplicable(`No facts for host "${step.host}"`);
  if (step.ceiling === 'nr_open') {
    if (ctx.metric === 'firstError') {
      return {
        value: 'EPERM',
        derivation: 'setrlimit(RLIMIT_NOFILE) one above the ceiling: EPERM (above fs.nr_open, or raising the hard limit without CAP_SYS_RESOURCE)',
        explanation: 'The kernel refuses a nofile hard limit above fs.nr_open with EPERM, even for root.',
      };
    }
    const nrOpen = step.nrOpen ?? facts.nrOpen;
    const nrOpenText = step.nrOpen === undefined ? `fs.nr_open ${nrOpen} (the host's)` : `fs.nr_open ${nrOpen} (set by the step; the host's is ${facts.nrOpen})`;
    if (facts.canRaiseHardNofile) {
      return {
        value: nrOpen,
        derivation: `${nrOpenText}; the agent may raise its hard limit (CAP_SYS_RESOURCE), so fs.nr_open alone bounds it: ${nrOpen}`,
        explanation: 'ulimit -n can go no higher than fs.nr_open: setrlimit(RLIMIT_NOFILE) above it fails with EPERM.',
      };
    }
    const value = Math.min(nrOpen, facts.nofileHard);
    return {
      value,
      derivation:
        `min(${nrOpenText}, hard limit ${facts.nofileHard}: no CAP_SYS_RESOURCE to raise it) = ${value}` +
        (value === nrOpen ? ': fs.nr_open binds' : ': the hard limit binds, fs.nr_open is above it'),
      explanation:
        'ulimit -n can go no higher than fs.nr_open (setrlimit fails with EPERM above it), nor, without CAP_SYS_RESOURCE, above the hard limit it has.',
    };
  }
  const count = step.count!;
  if (ctx.metric === 'firstError') {
    return {
      value: 'ENFILE',
      derivation: `fs.file-max is set to the files in use plus ${count}: the next open() of an unprivileged process fails with ENFILE`,
      explanation: 'Once the kernel holds fs.file-max files, open() fails with ENFILE for every process without CAP_SYS_ADMIN.',
    };
  }
  if (ctx.metric === 'headroom') {
    return {
      value: count,
      derivation: `fs.file-max = fs.file-nr (files allocated, read as the probe starts) + ${count}: the kernel lets the machine add ${count} files, then refuses the unprivileged probe`,
      explanation:
        'fs.file-max counts struct files kernel-wide; at ENFILE the files in use equal it, whoever opened them (root, exempt, may go past it).',
    };
  }
  return {
    value: count,
    derivation: `fs.file-max = fs.file-nr (files allocated, read as the probe starts) + ${count}: the unprivileged probe opens ${count} files before ENFILE, less what other processes open meanwhile`,
    explanation:
      'fs.file-max counts struct files kernel-wide: the probe gets the headroom between what is in use and the limit, less what other processes open meanwhile.',
  };
}

/**
 * `conntrack`: with connection tracking on in a namespace, every connection
 * it sees takes an entry in its table; past net.netfilter.nf_conntrack_max
 * entries (the machine's one setting, against each namespace's own count)
 * the kernel drops the packet that would make a new one ("nf_conntrack:
 * table full, dropping packet"). An established TCP entry is "assured" and
 * never evicted early, so a server's namespace holds max − (entries it had)
 * connections; the next client SYN is dropped, retransmitted, and connect()
 * times out.
 */
export function conntrack(ctx: ModelContext): ModelOutput {
  const step = ctx.step;
  if (step.kind === 'snapshot') {
    const f = ctx.facts[step.host];
    if (!f || typeof f.conntrackMax !== 'number' || typeof f.conntrackCount !== 'number') {
      throw new ModelNotApplicable(`Host "${step.host}" has no conntrack table (no /proc/sys/net/netfilter)`);
    }
    if (!f.conntrackOn) throw new ModelNotApplicable(`Host "${step.host}" does not turn connection tracking on ("conntrack: true")`);
    return {
      value: f.conntrackMax,
      derivation: `the table fills: nf_conntrack_max ${f.conntrackMax} entries in ${step.host}'s namespace`,
      explanation: 'Once the table holds nf_conntrack_max entries, the kernel makes no new one: the count stays at the maximum.',
    };
  }
  if (step.kind !== 'connect') throw new ModelNotApplicable(`Model "conntrack" applies to connect and snapshot steps, not "${step.kind}"`);
  // The destinations' namespaces that track connections, each with its own room left.
  const rooms: Array<{ role: string; room: number; text: string }> = [];
  for (const role of new Set(step.to.map((d) => d.role))) {
    const f = ctx.facts[role];
    if (!f?.conntrackOn) continue;
    if (!f || typeof f.conntrackMax !== 'number' || typeof f.conntrackCount !== 'number') {
      throw new ModelNotApplicable(`Host "${role}" has no conntrack table (no /proc/sys/net/netfilter)`);
    }
    const room = Math.max(0, f.conntrackMax - f.conntrackCount);
    // A connect step's destinations are "role/host" (models/fleet.ts): name the host.
    const host = role.includes('/') ? role.slice(role.indexOf('/') + 1) : role;
    rooms.push({ role, room, text: `nf_conntrack_max ${f.conntrackMax} − ${f.conntrackCount} entries ${host}'s namespace held as the run began = ${room}` });
  }
  if (!rooms.length) throw new ModelNotApplicable(`No destination of step "${step.name}" turns connection tracking on ("conntrack: true")`);
  if (rooms.length > 1 || step.to.length > 1) throw new ModelNotApplicable(`Model "conntrack" predicts a step toward one destination; "${step.name}" has ${step.to.length}`);
  const { room, text } = rooms[0]!;
  const value = Math.min(step.count, room);
  if (ctx.metric === 'firstError') {
    return {
      value: step.count > room ? 'ETIMEDOUT' : null,
      derivation: step.count > room ? `${text} < count ${step.count}: the next SYN is dropped, connect() times out → ETIMEDOUT` : `${text} ≥ count ${step.count}: no error`,
      explanation: 'A SYN the conntrack table has no room for is dropped, not refused: the client retransmits until its connect timeout.',
    };
  }
  return {
    value,
    derivation: `min(count ${step.count}, ${text}) = ${value}`,
    explanation: 'Each connection takes one conntrack entry in the server\'s namespace; nf_conntrack_max bounds the entries, so it bounds the connections.',
  };
}


/** CPython 3.11+ gives each thread its first frame ("data stack") chunk, 16 KiB, mapped on its own. */
export const PY_DATA_STACK_CHUNK = 16 * 1024;

/**
 * `server-memory`, of a snapshot of a host whose open listen steps all use one
 * `server`. threads: each connection is a thread, so 1 thread per connection,
 * and its address space grows by the thread's stack mapping, the stack size
 * plus one guard page (glibc adds the guard to the mapping), plus CPython's
 * first frame chunk of the thread (16 KiB, since 3.11); the interpreter's
 * heap per thread (its thread state and objects, a few KiB) is not modelled
 * and stays inside the lab's tolerance. epoll: no thread per connection.
 */
export function serverMemory(ctx: ModelContext): ModelOutput {
  const step = ctx.step;
  if (step.kind !== 'snapshot') throw new ModelNotApplicable(`Model "server-memory" applies to snapshot steps, not "${step.kind}"`);
  const at = ctx.steps.findIndex((s) => s.name === step.name);
  const released = releasedIn(ctx.steps.slice(0, at));
  const open = ctx.steps.slice(0, at).filter((s): s is Extract<typeof s, { kind: 'listen' }> => s.kind === 'listen' && s.host === step.host && !released.has(s.name));
  if (!open.length || open.some((l) => !l.server)) {
    throw new ModelNotApplicable(`Snapshot "${step.name}" of ${step.host}: every open listen step there must set "server" (threads or epoll)`);
  }
  const modes = new Set(open.map((l) => l.server));
  const stacks = new Set(open.map((l) => l.stack ?? 262144));
  if (modes.size > 1 || stacks.size > 1) throw new ModelNotApplicable(`Snapshot "${step.name}": the open listen steps of ${step.host} mix servers or stacks`);
  const mode = open[0]!.server!;
  const names = open.map((l) => l.name).join(', ');
  if (ctx.metric === 'serverThreadsPerConnection') {
    return mode === 'threads'
      ? { value: 1, derivation: `server threads (${names}): one thread per connection`, explanation: 'A thread-per-connection server starts a thread for every connection it accepts.' }
      : { value: 0, derivation: `server epoll (${names}): one loop holds every connection, no thread per connection`, explanation: 'An event-loop server holds every connection in one epoll set, on the thread it already has.' };
  }
  if (mode !== 'threads') throw new ModelNotApplicable(`Snapshot "${step.name}": an epoll server's address space grows only with its heap (sockets, the epoll set), which the model does not price`);
  const f = ctx.facts[step.host];
  if (!f) throw new ModelNotApplicable(`No facts for host "${step.host}"`);
  const page = f.pageSize ?? 4096;
  const stack = [...stacks][0]!;
  const [major, minor] = f.python.split('.').map(Number);
  const chunk = major! > 3 || (major === 3 && minor! >= 11) ? PY_DATA_STACK_CHUNK : 0;
  const value = stack + page + chunk;
  return {
    value,
    derivation: `stack ${stack} B + guard page ${page} B${chunk ? ` + CPython ${f.python}'s frame chunk ${chunk} B` : ''} = ${value} B of address space per connection (glibc malloc held to one arena)`,
    explanation:
      'Each thread maps its own stack (and a guard page): a thread-per-connection server pays that for every connection, an event loop does not. Most of it is never touched: RSS grows far less than VmSize.',
  };
}
