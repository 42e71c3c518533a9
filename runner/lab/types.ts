// The typed Lab that validation produces from a lab file. Everything after
// validation (plan, run, models) works on these types, never on raw YAML.

export interface Lab {
  name: string;
  description?: string;
  /** the file as given on the command line, and its text */
  file: string;
  source: string;
  /** vars after `--var` overrides, as strings (what templates saw) */
  vars: Record<string, string>;
  /** roles in file order */
  hosts: LabHost[];
  steps: Step[];
  expect: Expectation[];
  /** run-wide bound: the whole run stops after this many ms */
  timeoutMs: number;
  /** how release steps close connections: RST (`abort`, no TIME_WAIT) or FIN (`graceful`) */
  release: ReleaseMode;
  /** machine-wide sysctls the lab may change on the machine it runs on, each with the reason */
  acknowledge: Record<string, string>;
}

/**
 * `abort`: SO_LINGER {on, 0} then close(): an RST, the socket is freed at once,
 * no TIME_WAIT, so a kept host can run the lab again at once.
 * `graceful`: a plain close(): FIN, and the side that closes first holds each
 * port in TIME_WAIT for 60 s.
 */
/** What a fit counts memory per: connections the lab holds, or the host's sockets in TIME_WAIT. */
export type FitUnit = 'connection' | 'time-wait';
export const FIT_UNITS = ['connection', 'time-wait'] as const satisfies readonly FitUnit[];

export type ReleaseMode = 'abort' | 'graceful';
export const RELEASE_MODES = ['abort', 'graceful'] as const satisfies readonly ReleaseMode[];

export interface LabHost {
  role: string;
  /** sysctl name (dotted) -> value as the kernel writes it ("40000 40999") */
  sysctls: Record<string, string>;
  /** extra IPv4 addresses (IP aliases) to add to the host's lab interface */
  aliases: number;
  /** nofile soft limit for the agent's workers; hard too when the host allows */
  nofile?: number;
  /** connection tracking on in the host's network namespace (an nftables table matching `ct state`) */
  conntrack?: boolean;
}

export type BindMode =
  /** plain connect(): the kernel picks a port per 4-tuple */
  | 'none'
  /** bind(ip, 0) then connect(): the port is chosen at bind, unique per source ip */
  | 'ip'
  /** IP_BIND_ADDRESS_NO_PORT + bind(ip, 0): the port is chosen at connect, per 4-tuple */
  | 'ip-no-port'
  /** SO_REUSEADDR + bind(ip, port): one local port shared by connections to different destinations */
  | 'reuseaddr';

export interface Destination {
  role: string;
  port: number;
}

export type Step =
  | {
      name: string;
      kind: 'listen';
      host: string;
      port: number;
      backlog: number;
      accept: boolean;
      /** TCP_DEFER_ACCEPT in whole seconds: a handshake's bare last ACK is ignored until data or this long; absent = off */
      deferAcceptS?: number;
      /** who holds the accepted connections: a thread per connection, or one epoll loop (absent: the agent's accept workers) */
      server?: ServerMode;
      /** the threads server's thread stack size in bytes */
      stack?: number;
    }
  | {
      name: string;
      kind: 'connect';
      host: string;
      to: Destination[];
      /** upper bound on connections this step opens */
      count: number;
      /** how many of the host's addresses to connect from: 1 = the primary, n = primary + n-1 aliases */
      sources: number;
      /** `sources: auto`: the plan sets sources (and the host's aliases) from count (models/scale.ts) */
      autoSources?: boolean;
      bind: BindMode;
      /** the local port for bind: reuseaddr */
      port?: number;
      /** connections per second, 0 = as fast as the kernel allows */
      rate: number;
      timeoutMs: number;
      /** per connect() call */
      connectTimeoutMs: number;
      /** exact number of worker processes; undefined = as many as the fd limit needs */
      processes?: number;
      /** stop at the first error (default) or keep trying the remaining count */
      stopOnError: boolean;
      /** bytes written on each connection once established, left unread by the peer; absent = none */
      send?: number;
    }
  | { name: string; kind: 'sleep'; durationMs: number }
  | { name: string; kind: 'snapshot'; host: string }
  /** least-squares fit of slab memory against connections held, over earlier snapshots of one host */
  | { name: string; kind: 'fit'; host: string; snapshots: string[]; per: FitUnit }
  | { name: string; kind: 'release'; steps: string[] }
  /**
   * A machine-wide fd ceiling, observed on one host: `nr_open` (the highest
   * nofile setrlimit accepts, with fs.nr_open set to `nrOpen` for the step
   * when given) or `file-max` (an unprivileged process opens files until
   * ENFILE, fs.file-max set to the files in use plus `count` for the step).
   * Either sysctl is put back as soon as the step ends.
   */
  | { name: string; kind: 'files'; host: string; ceiling: FdCeiling; count?: number; nrOpen?: number };

/** The two servers a listen step may compare (runner/agent/lab_agent/servers.py). */
export type ServerMode = 'threads' | 'epoll';
export const SERVER_MODES = ['threads', 'epoll'] as const satisfies readonly ServerMode[];

/** The fd ceilings a `files` step observes. */
export type FdCeiling = 'nr_open' | 'file-max';
export const FD_CEILINGS = ['nr_open', 'file-max'] as const satisfies readonly FdCeiling[];

/** The machine-wide sysctl a `files` step changes while it runs, if any. */
export function stepSysctl(step: Step): string | undefined {
  if (step.kind !== 'files') return undefined;
  if (step.ceiling === 'file-max') return 'fs.file-max';
  return step.nrOpen === undefined ? undefined : 'fs.nr_open';
}

export type StepKind = Step['kind'];

export interface Expectation {
  /** "<step>.<metric>" */
  metric: string;
  /** a model name from models/, or undefined when a literal `value` is given */
  model?: string;
  value?: number | string;
  /** absolute tolerance, or relative when `tolerancePercent` */
  tolerance: number;
  tolerancePercent: boolean;
}

/** The step kinds, in the order docs and messages list them. */
export const STEP_KINDS = ['listen', 'connect', 'sleep', 'snapshot', 'fit', 'release', 'files'] as const satisfies readonly StepKind[];

/**
 * The metrics each step kind measures, as named in `expect[].metric`
 * ("<step>.<metric>"). Validation, the models and the report all read this
 * one list, so a metric cannot be valid in one place and unknown in another.
 */
export const STEP_METRICS = {
  listen: ['accepted'],
  connect: ['established', 'attempted', 'firstError', 'connectsPerSecond', 'durationMs', 'workers', 'distinctLocalPorts', 'bytesSent'],
  sleep: [],
  snapshot: ['connections', 'tcpInuse', 'tcpTw', 'tcpMemPages', 'slabBytes', 'memAvailableKiB', 'acceptQueue', 'acceptQueueMax', 'establishedSockets', 'conntrackCount', 'serverThreads', 'serverThreadsPerConnection', 'serverVmBytesPerConnection', 'serverRssBytesPerConnection', 'kernelStackKiB'],
  fit: [
    'bytesPerConnection',
    'clientBytesPerSocket',
    'serverBytesPerSocket',
    'otherBytesPerConnection',
    'rawBytesPerConnection',
    'slabBytesPerConnection',
    'residualPercent',
    'foreignSockets',
    'bufferBytesPerConnection',
  ],
  release: [],
  files: ['reached', 'firstError', 'headroom', 'foreignFiles', 'attempts', 'windowMs'],
} as const satisfies Record<StepKind, readonly string[]>;

export type StepMetric<K extends StepKind = StepKind> = (typeof STEP_METRICS)[K][number];

/** The prediction models a lab may cite in `expect[].model` (their code is in runner/models/). */
export const MODEL_NAMES = ['ephemeral-ports', 'fd-limit', 'connection-ceiling', 'memory-per-connection', 'time-wait', 'accept-queue', 'capacity', 'fd-ceilings', 'buffer-memory', 'conntrack', 'server-memory'] as const;
export type ModelName = (typeof MODEL_NAMES)[number];

/**
 * The metrics each model predicts, by step kind. A model cited for anything
 * else has no prediction to make, and "no prediction" must never meet
 * "nothing observed" and pass, so `lab validate` rejects the pair and compare
 * gives it the verdict not-applicable.
 */
export const MODEL_METRICS: { readonly [M in ModelName]: { readonly [K in StepKind]?: readonly StepMetric<K>[] } } = {
  'ephemeral-ports': { connect: ['established', 'firstError'] },
  'fd-limit': { connect: ['established', 'firstError', 'workers'] },
  'connection-ceiling': { connect: ['established'] },
  'memory-per-connection': { fit: ['bytesPerConnection', 'clientBytesPerSocket', 'serverBytesPerSocket'] },
  'time-wait': { connect: ['established', 'firstError'], snapshot: ['tcpTw'] },
  // Also needs every destination to be a listen step with accept: false; the model says so at run time.
  'accept-queue': { connect: ['established', 'firstError'], snapshot: ['acceptQueue', 'acceptQueueMax', 'establishedSockets'] },
  capacity: { connect: ['established'] },
  'fd-ceilings': { files: ['reached', 'firstError', 'headroom'] },
  'buffer-memory': { fit: ['bufferBytesPerConnection'] },
  conntrack: { connect: ['established', 'firstError'], snapshot: ['conntrackCount'] },
  // Also needs the snapshot's host to hold listen steps with `server`; the model says so at run time.
  'server-memory': { snapshot: ['serverThreadsPerConnection', 'serverVmBytesPerConnection'] },
};

/**
 * Why `model` cannot predict `metric` of `step`, or undefined when it can.
 * The one statement of which pairs apply: validation and compare both read
 * it. (What only the run can tell, e.g. a host that ended up holding no
 * client sockets, the model itself reports, and the verdict is not-applicable.)
 */
export function modelProblem(model: ModelName, step: Step, metric: string): string | undefined {
  const byKind = MODEL_METRICS[model];
  const kinds = Object.keys(byKind) as StepKind[];
  const metrics: readonly string[] | undefined = byKind[step.kind];
  if (!metrics) return `it predicts ${orList(kinds)} steps, and "${step.name}" is a ${step.kind} step`;
  if (!metrics.includes(metric)) return `it predicts ${orList(metrics.map((m) => `"${m}"`))} of a ${step.kind} step, not "${metric}"`;
  // Without `processes` the agent adds workers until every connection fits, so no worker reaches its fd limit.
  if (model === 'fd-limit' && step.kind === 'connect' && metric !== 'workers' && step.processes === undefined) {
    return `without "processes" the agent adds workers until every connection fits, so no fd limit is reached: set "processes" on step "${step.name}", or predict "workers"`;
  }
  // A TIME_WAIT socket is one side's: there is no client and server share to tell apart.
  if (model === 'memory-per-connection' && step.kind === 'fit' && step.per === 'time-wait' && metric !== 'bytesPerConnection') {
    return `a fit per TIME_WAIT socket has one side: predict "bytesPerConnection"`;
  }
  // Unread data is per connection: a TIME_WAIT socket holds none.
  if (model === 'buffer-memory' && step.kind === 'fit' && step.per === 'time-wait') {
    return 'a TIME_WAIT socket holds no data: fit per connection';
  }
  // Only the file-max probe fills the kernel's files: the nofile ceiling opens none.
  if (model === 'fd-ceilings' && step.kind === 'files' && metric === 'headroom' && step.ceiling !== 'file-max') {
    return `"headroom" is the files the kernel let the machine add before ENFILE: a files step with ceiling "file-max" measures it, "${step.name}" has ceiling "${step.ceiling}"`;
  }
  return undefined;
}

function orList(words: readonly string[]): string {
  return words.length > 1 ? `${words.slice(0, -1).join(', ')} or ${words[words.length - 1]}` : words[0]!;
}
