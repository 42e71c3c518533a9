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
  | { name: string; kind: 'listen'; host: string; port: number; backlog: number; accept: boolean }
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
    }
  | { name: string; kind: 'sleep'; durationMs: number }
  | { name: string; kind: 'snapshot'; host: string }
  /** least-squares fit of slab memory against connections held, over earlier snapshots of one host */
  | { name: string; kind: 'fit'; host: string; snapshots: string[]; per: FitUnit }
  | { name: string; kind: 'release'; steps: string[] };

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
export const STEP_KINDS = ['listen', 'connect', 'sleep', 'snapshot', 'fit', 'release'] as const satisfies readonly StepKind[];

/**
 * The metrics each step kind measures, as named in `expect[].metric`
 * ("<step>.<metric>"). Validation, the models and the report all read this
 * one list, so a metric cannot be valid in one place and unknown in another.
 */
export const STEP_METRICS = {
  listen: ['accepted'],
  connect: ['established', 'attempted', 'firstError', 'connectsPerSecond', 'durationMs', 'workers', 'distinctLocalPorts'],
  sleep: [],
  snapshot: ['connections', 'tcpInuse', 'tcpTw', 'tcpMemPages', 'slabBytes', 'memAvailableKiB'],
  fit: [
    'bytesPerConnection',
    'clientBytesPerSocket',
    'serverBytesPerSocket',
    'otherBytesPerConnection',
    'rawBytesPerConnection',
    'slabBytesPerConnection',
    'residualPercent',
    'foreignSockets',
  ],
  release: [],
} as const satisfies Record<StepKind, readonly string[]>;
