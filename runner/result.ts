// The RunResult: the contract between running and reporting. `run/` writes it,
// `report/` reads only it, and a baseline is just an older result.json.

// The format's major version: a reader refuses a result of a newer major
// (fields it cannot read); optional fields are added within a major.
export const RESULT_MAJOR = 1;
export const RESULT_FORMAT = `lab-result/${RESULT_MAJOR}` as const;

/**
 * Only pass passes. not-measured: the step did not run or observe the metric;
 * not-applicable: the model had no prediction to make for it (see modelProblem).
 */
export type Verdict = 'pass' | 'fail' | 'not-measured' | 'not-applicable';

/** What the agent learned about a host before anything changed. */
export interface HostFacts {
  hostname: string;
  kernel: string; // uname -r
  python: string;
  /** net.ipv4.ip_local_port_range as [low, high] */
  portRange: [number, number];
  /** net.ipv4.ip_local_reserved_ports, as written by the kernel */
  reservedPorts: string;
  nofileSoft: number;
  nofileHard: number;
  /** true when setrlimit may raise the hard nofile limit (CAP_SYS_RESOURCE) */
  canRaiseHardNofile: boolean;
  nrOpen: number; // fs.nr_open
  /** entries in this namespace's conntrack table after provisioning, and net.netfilter.nf_conntrack_max (the machine's); null without conntrack */
  conntrackCount?: number | null;
  /** true when this run's agent turned connection tracking on in the host's namespace (`conntrack: true`) */
  conntrackOn?: boolean;
  conntrackMax?: number | null;
  fileMax: number; // fs.file-max
  somaxconn: number;
  tcpMaxSynBacklog: number;
  tcpFinTimeout: number;
  tcpTwReuse: number;
  memTotalKiB: number;
  memAvailableKiB: number;
  /** slab cache name -> object size in bytes (from /proc/slabinfo, when readable) */
  slabObjectSize: Record<string, number>;
  /**
   * merged slab cache -> the cache /proc/slabinfo counts its objects in (SLUB
   * merges caches of one size; /sys/kernel/slab names the aliases). Absent
   * from agents that predate it.
   */
  slabAliases?: Record<string, string>;
  /** net.ipv4.tcp_tw_reuse_delay in ms (6.13+), and net.ipv4.tcp_max_tw_buckets, when the agent reads them */
  tcpTwReuseDelayMs?: number;
  tcpMaxTwBuckets?: number;
  /** net.ipv4.tcp_abort_on_overflow and net.ipv4.tcp_syncookies (per namespace), when the agent reads them */
  tcpAbortOnOverflow?: number;
  tcpSyncookies?: number;
  /** the page size in bytes: /proc/net/sockstat counts TCP buffer memory ("mem") in pages */
  pageSize?: number;
  /** net.ipv4.tcp_rmem and tcp_wmem (min, default, max bytes per socket), tcp_mem (min, pressure, max pages, kernel-wide) */
  tcpRmem?: number[];
  tcpWmem?: number[];
  tcpMem?: number[];
  /** net.core.mem_pcpu_rsv: pages each CPU may charge before the kernel-wide counter sees them; null where the kernel has no such sysctl */
  memPcpuRsv?: number | null;
  /** /proc/sys/kernel/random/boot_id: two hosts with one boot id share one kernel (namespaces) */
  bootId?: string;
  /** addresses on the host, "ip/prefix" */
  addresses: string[];
  cpus: number;
  uid: number;
  /** the agent has CAP_SYS_ADMIN in the first user namespace, which alloc_empty_file() lets past fs.file-max; absent from older agents (then: uid 0) */
  fileMaxExempt?: boolean;
  /** fds a worker of the agent holds before its first socket: it opens nofile − workerFds sockets before EMFILE */
  workerFds: number;
  /** sockets the agent puts in each worker when a step leaves "processes" unset (its rule, under nofileSoft) */
  socketsPerWorker: number;
  /** where connect and accept loops will run: "c" (the agent's helper: built, or a compiler on PATH) or "python"; absent from older agents */
  connectEngine?: 'c' | 'python';
}

export interface HostResult {
  role: string;
  /** the host's name, when it is not the role's (a role with several hosts, or an inventory's name) */
  name?: string;
  /** 'netns' for a local namespace host, 'ssh' for a host reached over SSH */
  transport: 'netns' | 'ssh';
  /** where the host is: the namespace name, or user@address:port */
  target: string;
  /** the address other hosts reach this one on */
  address: string;
  facts: HostFacts;
  /** what provisioning changed, in order; each entry was undone at restore */
  changes: Change[];
}

export type Change =
  | { kind: 'sysctl'; name: string; old: string; new: string; scope: 'namespace' | 'global' }
  | { kind: 'address'; address: string; device: string }
  | { kind: 'rlimit'; name: 'nofile'; old: [number, number]; new: [number, number] }
  /** an nftables table the run added ("inet lab_conntrack": connection tracking on in the namespace) */
  | { kind: 'nftables'; table: string };

export interface ErrnoCount {
  errno: string; // symbolic, e.g. "EADDRNOTAVAIL"
  count: number;
}

/** What one step observed. Fields are present for the step kinds that measure them. */
export interface StepObservation {
  name: string;
  kind: string; // 'listen' | 'connect' | 'sleep' | 'snapshot' | 'release'
  host: string;
  startedAt: string;
  durationMs: number;
  ok: boolean;
  /** a step that failed outright (not a kernel refusal a lab measures) */
  error?: string;
  /** numeric measurements by name, e.g. established, attempted, connectsPerSecond */
  metrics: Record<string, number>;
  /** symbolic measurements, e.g. firstError: "EADDRNOTAVAIL" */
  labels: Record<string, string>;
  errors?: ErrnoCount[];
  /** progress samples taken while the step ran: [msSinceStart, value] */
  series?: Array<[number, number]>;
  detail?: Record<string, unknown>;
  /**
   * A role with several hosts: what each host saw, by host name. `metrics`
   * above then add up over the hosts (durationMs is the longest), and a label
   * is set only when every host saw the same.
   */
  hosts?: Record<string, HostObservation>;
}

export interface HostObservation {
  ok: boolean;
  error?: string;
  /** this host's share of the step's count (connect) */
  count?: number;
  metrics: Record<string, number>;
  labels: Record<string, string>;
  errors?: ErrnoCount[];
}

export interface Prediction {
  /** "<step>.<metric>", e.g. "ramp.established" */
  metric: string;
  /** the model's name, or "literal" for a value stated in the lab */
  model: string;
  predicted: number | string | null;
  observed: number | string | null;
  /** absolute tolerance for numbers (0 = exact); not used for labels */
  tolerance: number;
  verdict: Verdict;
  /** the formula with numbers filled in, e.g. "40999 − 40000 + 1 = 1000 ports for …" */
  derivation: string;
  explanation?: string;
  /** a published figure to show beside this kernel's prediction */
  reference?: { value: number | string; source: string };
  /** a role with several hosts: this host's prediction (`host` set), or the role's total (only `role` set) */
  host?: string;
  role?: string;
}

export interface RunResult {
  format: typeof RESULT_FORMAT;
  lab: {
    name: string;
    description?: string;
    /** the lab file's path as given, and its text as written (templates not yet expanded: vars holds what they took) */
    file: string;
    source: string;
    vars: Record<string, string>;
  };
  tool: { name: 'lab'; version: string; runtime: string };
  /** `--machine NAME`: what baselines and the published site call the machine (else its hosts' hostnames) */
  machine?: string;
  startedAt: string;
  endedAt: string;
  durationMs: number;
  /** wall time of the stages: namespaces, agents, provision, steps, restore, reports */
  stages: Record<string, number>;
  hosts: HostResult[];
  steps: StepObservation[];
  predictions: Prediction[];
  verdict: 'pass' | 'fail';
  /** set when the run stopped early; predictions then carry not-measured */
  error?: { code: string; message: string };
  restore: { ok: boolean; problems: string[] };
  notes: string[];
  /**
   * What the run checked before any change, that the hosts can hold the lab
   * (models/scale.ts): per machine its memory and fd arithmetic, and the ports
   * of auto-planned steps. Present for labs that open connections.
   */
  capacity?: CapacityRecord;
  /** the controller process itself: it holds no per-connection state, so this stays flat however many connections run */
  controller?: { peakRssKiB: number };
  /** the comparison with earlier runs, when the run was given `--baseline` */
  baseline?: BaselineComparison;
}

export interface CapacityRecord {
  ok: boolean;
  /** one entry per machine (roles sharing a kernel): the arithmetic, one line per term */
  machines: Array<{ roles: string[]; lines: string[] }>;
  ports: string[];
}

/** How a run's metrics moved against a baseline (report/baseline.ts decides). */
export interface BaselineComparison {
  /** the path the baseline was read from */
  source: string;
  /** the baseline run compared with: the latest earlier good run of the same lab */
  startedAt: string;
  /** the machine that run was on (baseline.ts machineOf): another machine's when this one had none */
  machine?: string;
  /** runs of this lab in the baseline's history (the noise-aware rule needs 3) */
  runs: number;
  metrics: MetricComparison[];
  /** how many metrics regressed; a run with any exits 4 when its predictions held */
  regressions: number;
  /**
   * What differs between the baseline run and this one, the first place to look
   * when a metric moved: each role's kernel, the lab's variables, the lab file,
   * lab's own version. Absent when nothing did.
   */
  changed?: string[];
}

export interface MetricComparison {
  /** "<step>.<metric>", e.g. "ramp.established" or "ramp.connectsPerSecond" */
  metric: string;
  /**
   * limit: a prediction compared exactly or within its own tolerance;
   * measured: a prediction with a tolerance, compared within the drift tolerance;
   * performance: a speed or cost figure, compared against the spread of earlier runs
   */
  kind: 'limit' | 'measured' | 'performance';
  baseline: number | string | null;
  observed: number | string | null;
  status: 'same' | 'within' | 'improved' | 'regression' | 'new' | 'missing';
  /** the rule applied, numbers filled in */
  rule: string;
}

export const EACH_FORMAT = 'lab-each/1';

/**
 * `lab run LAB -i INVENTORY --each GROUP`: the same lab once per host of a
 * group, each run a whole RunResult; the side-by-side report reads only this.
 */
export interface EachResult {
  format: typeof EACH_FORMAT;
  /** the lab's name and file */
  lab: { name: string; file: string };
  inventory: string;
  group: string;
  /** the role that took the group's hosts one at a time */
  role: string;
  startedAt: string;
  durationMs: number;
  /** one per host of the group, in inventory order */
  runs: Array<{ host: string; result: RunResult }>;
  verdict: 'pass' | 'fail';
}
