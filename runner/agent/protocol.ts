// The agent's protocol as types: one entry per op with its arguments, its
// reply and the events it streams, so `client.request('connect', args)` infers
// its reply, and the time each request may take, in one table.
// The prose is docs/agent-protocol.md; the Python side is runner/agent/lab_agent/.

import type { HostFacts } from '../result.ts';

/** The agent's `ready` line and `hello` reply carry this; a mismatch means a stale artifact. */
export const AGENT_PROTOCOL_VERSION = 1;

export type StepId = string | number;

export interface ReadyData {
  version: number;
  pid: number;
}

export interface HelloReply {
  version: number;
  pid: number;
  python: string;
  uid: number;
}

/** A journal entry as the agent writes it (and hands back from restore). */
export type JournalEntry =
  | { kind: 'sysctl'; name: string; old: string }
  | { kind: 'address'; address: string; prefix: number; device: string }
  | { kind: 'nft-table'; family: string; table: string };

export interface RestoreReply {
  undone: JournalEntry[];
  problems: string[];
}

export interface ConnectPair {
  source?: string | null;
  address: string;
  port: number;
}

export type BindMode = 'none' | 'ip' | 'ip-no-port' | 'reuseaddr';

export interface ConnectArgs {
  id: StepId;
  pairs: ConnectPair[];
  count: number;
  bind?: BindMode;
  /** the local port every socket shares, for bind: reuseaddr */
  port?: number;
  /** connects per second in total; 0 or absent: as fast as possible */
  rate?: number;
  timeoutMs?: number;
  connectTimeoutMs?: number;
  stopOnError?: boolean;
  /** exactly this many workers share count; absent: each worker holds facts.socketsPerWorker */
  processes?: number;
  maxAttempts?: number;
  /**
   * worker chains connecting at once, each over its own share of the pairs;
   * absent: one per CPU (at most 4) for 65536 connections or more over two
   * pairs or more without processes or rate, else 1
   */
  lanes?: number;
  /** stop (reason "memory") when MemAvailable falls below this; default 2% of MemTotal, at least 128 MiB */
  memFloorKiB?: number;
  /** bytes to write on each connection once it is established (at most 65536; absent or 0: none) */
  send?: number;
  /** the per-connection loop: the C helper where it compiles ("auto", the default), or the Python workers */
  engine?: Engine | 'auto';
  /**
   * the C helper's workers park held sockets out of their fd tables (SCM_RIGHTS to
   * themselves: docs/agent-protocol.md), when a worker's share fits its fd budget;
   * default true, false keeps every socket in the table (LAB_PARK=0, for benchmarks)
   */
  park?: boolean;
}

/** Where a step's per-connection loop runs: the agent's C helper (fastconn.c) or its Python workers. */
export type Engine = 'c' | 'python';

export type StopReason = 'count' | 'exhausted' | 'error' | 'timeout' | 'attempts' | 'released' | 'full' | 'memory';

export interface ConnectReply {
  established: number;
  attempted: number;
  /** errno name -> how many connects failed with it */
  errors: Record<string, number>;
  firstError: { errno: string; message: string; after: number } | null;
  durationMs: number;
  workers: number;
  connectsPerSecond: number;
  stopReason: StopReason;
  perPair: Array<ConnectPair & { established: number }>;
  localPorts: { min: number; max: number; distinct: number } | null;
  /** bytes written in all, on the connections established (send × established when every write went through) */
  bytesSent?: number;
  engine: Engine;
  /** worker chains that connected at once */
  lanes: number;
  /** ms the workers spent in their connect loops (the longest lane; the C helper reports it, else 0): durationMs less forks and hand-overs */
  loopMs: number;
  /** with stopReason "memory": MemAvailable when the ramp stopped, and the floor it crossed */
  memoryStop?: { memAvailableKiB: number; floorKiB: number };
  /** why the Python workers ran when the helper was wanted (no compiler, a failed build) */
  engineNote?: string;
}

export interface ConnectProgress {
  established: number;
  /** attempts that failed so far */
  failed: number;
  /** /proc/meminfo Slab, KiB: the kernel's memory as the connections grow */
  slabKiB: number;
  elapsedMs: number;
}

export interface ListenArgs {
  id: StepId;
  address?: string;
  port: number;
  backlog?: number;
  accept?: boolean;
  /** TCP_DEFER_ACCEPT in seconds (at most 60): a bare last ACK waits in the SYN queue for data or for this long */
  deferAcceptS?: number;
  engine?: Engine | 'auto';
  /** hold accepted connections with a thread each, or in one epoll loop (runner/agent/lab_agent/servers.py) */
  server?: 'threads' | 'epoll';
  /** the threads server's thread stack, bytes (default 256 KiB) */
  stackBytes?: number;
  /** the C helper's accept workers park what they hold out of their fd tables (as ConnectArgs.park); default true */
  park?: boolean;
}

export interface ListenReply {
  address: string;
  port: number;
  backlog: number;
  engine: Engine;
  deferAcceptS?: number;
}

export interface ListenProgress {
  accepted: number;
  workers: number;
  elapsedMs: number;
}

export interface SlabCache {
  activeObjs: number;
  numObjs: number;
  objSize: number;
}

export interface SnapshotReply {
  /** /proc/meminfo in KiB by key */
  meminfo: Record<string, number>;
  /** /proc/slabinfo by cache; empty when unreadable (not root) */
  slab: Record<string, SlabCache>;
  /** /proc/net/sockstat: {"TCP": {"inuse": …, "tw": …, "mem": …}, "sockets": {"used": …}, …} */
  sockstat: Record<string, Record<string, number>>;
  /**
   * The host's listening TCP sockets, as `ss -lnt` shows them (sock_diag
   * netlink): `queue` is the accept queue's current length, `backlog` the most
   * it holds (listen()'s backlog capped at somaxconn); null where netlink was
   * refused and /proc/net/tcp, which lacks it, was read. Absent from agents that predate it.
   */
  listeners?: Array<{ address: string; port: number; queue: number; backlog: number | null }>;
  /** per port asked for (args.ports): ESTABLISHED sockets of the host whose local or remote port it is */
  established?: Record<string, number>;
  /** open fds of the agent and all its workers */
  fds: number;
  /** the agent plus its workers */
  processes: number;
  /** this namespace's conntrack table: entries and nf_conntrack_max; empty without conntrack */
  conntrack?: { count?: number; max?: number };
  /** per open step id; a listen step with `server` also has what its server processes use now and used before their first accept */
  held: Record<string, { kind: 'listen' | 'connect'; open: number; workers: number; server?: ServerUse }>;
}

/** `files`: a machine-wide fd ceiling observed (runner/agent/lab_agent/files.py). */
export interface FilesArgs {
  ceiling: 'nr_open' | 'file-max';
  /** file-max: the files the probe needs; fs.file-max is set to those in use plus count for the step */
  count?: number;
  /** nr_open: fs.nr_open for the step (put back at once); absent: the host's */
  nrOpen?: number;
}

export interface FilesReply {
  ceiling: 'nr_open' | 'file-max';
  /** nr_open: the highest nofile setrlimit accepted; file-max: files the unprivileged probe opened */
  reached: number;
  /** the errno one above (nr_open) or of the open() that failed (file-max) */
  firstError: string | null;
  /** how long the sysctl was changed, ms */
  windowMs?: number;
  // nr_open
  nrOpen?: number;
  nrOpenBefore?: number;
  nrOpenAfter?: number;
  hardBefore?: number;
  tries?: number;
  search?: string;
  // file-max
  count?: number;
  allocatedBefore?: number;
  allocatedAtStart?: number | null;
  allocatedAtLimit?: number | null;
  fileMaxSet?: number;
  fileMaxBefore?: number;
  fileMaxAfter?: number;
  /** files in use at the limit less those before: what the kernel let the whole machine add (count, ± the counter's slack) */
  headroom?: number;
  /** the others' files, net, while the probe ran (what it could not open): headroom − reached */
  foreignFiles?: number | null;
  user?: string;
  uid?: number;
  openMs?: number;
  nofileSoft?: number;
  /** each try; the probe is tried again (at most 5 times) when others' files moved more than 2% of count */
  attempts?: Array<{ reached: number; headroom?: number; firstError: string | null; foreignFiles: number | null; windowMs: number }>;
}

export interface ServerUse {
  mode: 'threads' | 'epoll';
  stackBytes: number;
  now: { threads?: number; vmSizeKiB?: number; rssKiB?: number };
  base: { threads?: number; vmSizeKiB?: number; rssKiB?: number };
  /** glibc's malloc arenas were limited to one (mallopt), so threads add no 64 MiB arena reservations */
  oneArena: boolean;
}

type NoArgs = Record<string, never>;

/** Every op: its arguments, its reply, and the data of its `progress` events (never, for ops without). */
export interface AgentOps {
  hello: { args: NoArgs; reply: HelloReply; event: never };
  facts: { args: NoArgs; reply: HostFacts; event: never };
  begin: { args: { journal: string; holder?: string }; reply: { journal: string; pending: number }; event: never };
  sysctlGet: { args: { name: string; /** a name the kernel lacks is no error: value null, and the names beside it */ missingOk?: boolean }; reply: { value: string | null; near?: string[] }; event: never };
  sysctlSet: { args: { name: string; value: string | number }; reply: { old: string; new: string }; event: never };
  addrAdd: { args: { address: string; prefix?: number; device: string }; reply: Record<string, never>; event: never };
  nofile: { args: { soft: number; hard?: number }; reply: { old: [number, number]; new: [number, number] }; event: never };
  conntrack: { args: NoArgs; reply: { family: string; table: string }; event: never };
  listen: { args: ListenArgs; reply: ListenReply; event: ListenProgress };
  connect: { args: ConnectArgs; reply: ConnectReply; event: ConnectProgress };
  /** silent (with abort): the C helper closes without an RST (TCP_REPAIR), for a release that closes the peer too */
  release: { args: { id: StepId; abort?: boolean; silent?: boolean; timeoutMs?: number }; reply: { closed: number; /** of those, closed by the C helper through io_uring */ batched?: number }; event: never };
  snapshot: { args: { ports?: number[] }; reply: SnapshotReply; event: never };
  files: { args: FilesArgs; reply: FilesReply; event: never };
  restore: { args: NoArgs; reply: RestoreReply; event: never };
  restoreJournal: { args: { journal: string }; reply: RestoreReply; event: never };
  shutdown: { args: NoArgs; reply: RestoreReply; event: never };
}

export type OpName = keyof AgentOps;
export type ArgsOf<Op extends OpName> = AgentOps[Op]['args'];
export type ReplyOf<Op extends OpName> = AgentOps[Op]['reply'];
export type EventOf<Op extends OpName> = AgentOps[Op]['event'];

/** The ops a request may name, for tests and for checking an agent's answers. */
export const OP_NAMES = [
  'hello', 'facts', 'begin', 'sysctlGet', 'sysctlSet', 'addrAdd', 'nofile', 'conntrack',
  'listen', 'connect', 'release', 'snapshot', 'files', 'restore', 'restoreJournal', 'shutdown',
] as const satisfies readonly OpName[];

// ---------------------------------------------------------------- time bounds

/** How long the agent may take to write its ready line (a cold python3 over SSH included). */
export const AGENT_START_TIMEOUT_MS = 15_000;

/** Default `timeoutMs` of a connect, as the agent applies it. */
export const CONNECT_DEFAULT_TIMEOUT_MS = 60_000;

/**
 * How long the controller waits for each op's reply. The agent bounds its own
 * work (a connect by its timeoutMs); these are backstops against a hung host.
 */
const REPLY_TIMEOUT_MS: Record<Exclude<OpName, 'connect'>, number> = {
  hello: 30_000,
  // facts forks once (can the hard limit be raised?) and runs `ip addr`
  facts: 30_000,
  begin: 30_000,
  sysctlGet: 30_000,
  sysctlSet: 30_000,
  addrAdd: 30_000,
  nofile: 30_000,
  conntrack: 30_000,
  listen: 30_000,
  // release waits up to 60 s in the agent for workers to close their sockets
  release: 90_000,
  snapshot: 30_000,
  // up to 5 tries of a few hundred ms each, and the agent's own 20 s bound per child
  files: 60_000,
  restore: 30_000,
  restoreJournal: 60_000,
  shutdown: 15_000,
};

/** A connect may run its whole timeoutMs (plus one connectTimeoutMs) before it replies. */
const CONNECT_REPLY_MARGIN_MS = 30_000;

export function replyTimeoutMs<Op extends OpName>(op: Op, args: ArgsOf<Op>): number {
  if (op === 'connect') {
    const a = args as ConnectArgs;
    return (a.timeoutMs ?? CONNECT_DEFAULT_TIMEOUT_MS) + CONNECT_REPLY_MARGIN_MS;
  }
  // A release given its own wait (a step holding many sockets) gets that wait and the usual margin.
  if (op === 'release' && typeof (args as { timeoutMs?: number }).timeoutMs === 'number') {
    return (args as { timeoutMs: number }).timeoutMs + CONNECT_REPLY_MARGIN_MS;
  }
  return REPLY_TIMEOUT_MS[op as Exclude<OpName, 'connect'>];
}
