// The agent's replies that run/ reads, typed (see docs/agent-protocol.md).
// Interim: these move to runner/agent/protocol.ts, one type per op shared by
// the client and the tests, when that lands.

export interface ListenReply {
  address: string;
  port: number;
  backlog: number;
}

/** progress events of a listen: connections accepted so far */
export interface ListenProgress {
  accepted?: number;
  workers?: number;
  elapsedMs?: number;
}

export interface ConnectFirstError {
  errno: string;
  message: string;
  /** connections established before it */
  after: number;
}

export interface ConnectReply {
  established: number;
  attempted: number;
  /** errno name → count */
  errors: Record<string, number>;
  firstError: ConnectFirstError | null;
  durationMs: number;
  workers: number;
  connectsPerSecond: number;
  stopReason: string;
  perPair: Array<{ source: string; address: string; port: number; established: number }>;
  localPorts: { min: number; max: number; distinct: number } | null;
}

/** progress events of a connect */
export interface ConnectProgress {
  established?: number;
  elapsedMs?: number;
}

export interface SnapshotReply {
  /** /proc/meminfo, kB */
  meminfo: Record<string, number>;
  /** /proc/slabinfo: cache → counts and object size; empty when unreadable */
  slab: Record<string, { activeObjs: number; numObjs: number; objSize: number }>;
  /** /proc/net/sockstat: protocol → field → value */
  sockstat: Record<string, Record<string, number>>;
  fds: number;
  processes: number;
  held: Record<string, { kind: string; open: number; workers: number }>;
}

export interface ReleaseReply {
  closed: number;
}
