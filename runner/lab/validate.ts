// Lab file -> typed Lab. Every problem in the file is collected and reported
// at file:line:col, and nothing is returned until there are none, so a lab
// never half-runs on a file that was wrong further down.

import { LabError, type LabProblem } from '../errors.ts';
import { Checker, REPORTED } from '../files/checker.ts';
import { isMapping, setOwn, type DocPath } from '../files/document.ts';
import { formatDuration } from '../files/durations.ts';
import { formatSize } from '../files/sizes.ts';
import { didYouMean, MAX_ALIASES } from '../files/names.ts';
import { quote } from '../files/quote.ts';
import { readUserFile } from '../files/read.ts';
import { parseYaml } from '../files/yaml.ts';
import { mergeVars, renderTree, VAR_NAME, type TemplateVars } from './template.ts';
import {
  FD_CEILINGS,
  FIT_UNITS,
  MODEL_NAMES,
  modelProblem,
  RELEASE_MODES,
  SERVER_MODES,
  STEP_KINDS,
  stepSysctl,
  STEP_METRICS,
  type BindMode,
  type Destination,
  type Expectation,
  type Lab,
  type LabHost,
  type Step,
  type StepKind,
} from './types.ts';

export const DEFAULT_TIMEOUT_MS = 5 * 60_000;
export const MAX_TIMEOUT_MS = 60 * 60_000;
export const MAX_COUNT = 2_000_000;
export const MAX_NOFILE = 1_048_576;
export const MAX_PROCESSES = 1024;
/** `send` on a connect: bytes written on each connection, left unread in the peer's receive queue (the agent's MAX_SEND_BYTES). */
export const MAX_SEND_BYTES = 65536;
/** count × send: the kernel memory a connect step may fill with unread data, at most. */
export const MAX_SEND_TOTAL_BYTES = 1024 * 1024 * 1024;
/** The widest tolerance, as a share of the prediction (see readTolerance). */
export const MAX_TOLERANCE_PERCENT = 25;
/** The widest absolute tolerance against a model's prediction; "N%" scales with the prediction instead. */
export const MAX_TOLERANCE = 1000;
export const BIND_MODES = ['none', 'ip', 'ip-no-port', 'reuseaddr'] as const satisfies readonly BindMode[];
/** A fit needs two points at least; more make its residual mean something. */
export const MIN_FIT_SNAPSHOTS = 2;

export const LAB_NAME = /^[a-z0-9-]+$/;
/** Step names appear in "<step>.<metric>", so they hold no dots. */
export const STEP_NAME = /^[A-Za-z][A-Za-z0-9_-]*$/;
export const SYSCTL_NAME = /^[a-z0-9_-]+(\.[a-z0-9_-]+)+$/;
const PORT_RANGE_SYSCTL = 'net.ipv4.ip_local_port_range';

const ROOT_KEYS = ['name', 'description', 'timeout', 'release', 'acknowledge', 'vars', 'hosts', 'steps', 'expect'];
const HOST_KEYS = ['sysctls', 'aliases', 'nofile', 'conntrack'];
const STEP_KEYS = ['name', ...STEP_KINDS];
const LISTEN_KEYS = ['host', 'port', 'backlog', 'accept', 'defer_accept', 'server', 'stack'];
/** The threads server's stack: threading.stack_size() takes 32 KiB at least, in pages. */
export const STACK_RANGE = [32 * 1024, 64 * 1024 * 1024] as const;
/** TCP_DEFER_ACCEPT is set in whole seconds; the agent's bound (MAX_DEFER_ACCEPT_S). */
export const MAX_DEFER_ACCEPT_MS = 60_000;
const CONNECT_KEYS = [
  'from',
  'to',
  'count',
  'sources',
  'bind',
  'port',
  'rate',
  'timeout',
  'connect_timeout',
  'processes',
  'stop_on_error',
  'send',
];
const SNAPSHOT_KEYS = ['host'];
const FIT_KEYS = ['snapshots', 'per'];
const FILES_KEYS = ['host', 'ceiling', 'count', 'nr_open'];
/** The most files a `files` step with ceiling file-max may ask for (the agent's bound too). */
export const MAX_FILES_COUNT = 100_000;
/** fs.nr_open's range on a 64-bit kernel: BITS_PER_LONG .. sysctl_nr_open_max. */
export const NR_OPEN_RANGE = [64, 2_147_483_584] as const;
const EXPECT_KEYS = ['metric', 'model', 'value', 'tolerance'];

/** How the reader names a lab file in its errors (LAB_NOT_FOUND, LAB_TOO_LARGE…). */
export const LAB_FILE = { what: 'lab file', code: 'LAB' } as const;

/**
 * Read and validate a lab file. A missing file is LAB_NOT_FOUND; a file that
 * is not valid YAML is LAB_YAML; a lab that breaks a rule is LAB_INVALID.
 */
export async function readLab(file: string, overrides?: Record<string, string>): Promise<Lab> {
  return loadLab(file, await readUserFile(file, LAB_FILE), overrides);
}

/**
 * A problem found after validation (by a host, at run time) at the place in
 * the lab file it concerns: `path` as validation names it, with `key` at the
 * mapping key. A path the file does not spell (a value the plan added) falls
 * back to its nearest ancestor.
 */
export function labProblem(lab: Pick<Lab, 'file' | 'source'>, path: DocPath, message: string, key = false): LabProblem {
  return parseYaml(lab.file, lab.source).problem(path, message, key);
}

/** labProblem at a host's sysctl, where the lab sets it (`hosts.<role>.sysctls.<name>`, at its key). */
export function sysctlProblem(lab: Pick<Lab, 'file' | 'source'>, role: string, name: string, message: string): LabProblem {
  return labProblem(lab, ['hosts', role, 'sysctls', name], message, true);
}

/**
 * Validate lab text. `file` is only used in messages. `overrides` are the
 * `--var k=v` values; they win over `vars:` and may add names it lacks.
 */
export function loadLab(file: string, text: string, overrides: Record<string, string> = {}): Lab {
  const sd = parseYaml(file, text);
  const ctx = new Checker(sd);
  const vars = mergeVars(readVars(ctx, sd.value), overrides);
  const rendered = renderTree(sd, vars, (p) => p.length === 1 && p[0] === 'vars');
  for (const [path, template] of rendered.templates) ctx.origins.set(path, `from template ${quote(template)}`);
  ctx.add(...rendered.problems);
  const lab = readLabDocument(ctx, rendered.value, vars);
  if (!ctx.ok || !lab) throw new LabError('LAB_INVALID', `${file}: invalid lab file`, ctx.problems);
  return lab;
}


// ---- the sections of a lab file ----

/** `vars:` is read as written, before templating: it is what templates read. */
function readVars(ctx: Checker, root: unknown): TemplateVars {
  const vars: TemplateVars = {};
  if (!isMapping(root) || root.vars === undefined || root.vars === null) return vars;
  const path = ['vars'];
  const section = root.vars;
  if (!isMapping(section)) return ctx.mustBe(path, 'a mapping of names to values', section) ?? vars;
  for (const [name, value] of Object.entries(section)) {
    if (!VAR_NAME.test(name)) {
      ctx.atKey(path, name, `Invalid variable name ${quote(name)}: use letters, digits and "_", not starting with a digit`);
    }
    if (typeof value === 'string' || typeof value === 'number' || typeof value === 'boolean') setOwn(vars, name, String(value));
    else ctx.mustBe([...path, name], 'a string, number or boolean', value);
  }
  return vars;
}

function readLabDocument(ctx: Checker, value: unknown, vars: TemplateVars): Lab | undefined {
  if (!isMapping(value)) {
    ctx.mustBe([], 'a mapping with "name", "hosts" and "steps"', value);
    return undefined;
  }
  const root = ctx.mapping([], value, ROOT_KEYS, ['name', 'hosts', 'steps'])!;

  let name = '';
  if (root.name !== undefined) {
    const s = ctx.string(['name'], root.name);
    if (s !== undefined && !LAB_NAME.test(s)) ctx.mustBe(['name'], 'lowercase letters, digits and "-"', s);
    name = s ?? '';
  }
  const description = root.description === undefined ? undefined : ctx.string(['description'], root.description);
  const labTimeoutMs = root.timeout === undefined ? DEFAULT_TIMEOUT_MS : ctx.duration(['timeout'], root.timeout, MAX_TIMEOUT_MS);
  const timeoutMs = labTimeoutMs ?? MAX_TIMEOUT_MS;
  const release = root.release === undefined ? 'abort' : (ctx.choice(['release'], root.release, RELEASE_MODES, 'release mode') ?? 'abort');

  const hosts = root.hosts === undefined ? [] : readHosts(ctx, root.hosts);
  const state: StepState = {
    seen: new Map(),
    listening: new Map(),
    listenedOn: new Map(),
    released: new Map(),
    snapshotHost: new Map(),
    uncertain: false,
    unreadable: new Set(),
    // An unreadable timeout has its own error: later bounds then name the longest a lab may have.
    timeoutName: labTimeoutMs === undefined ? `the longest timeout a lab may have, ${formatDuration(MAX_TIMEOUT_MS)}` : `the lab's timeout of ${formatDuration(timeoutMs)}`,
  };
  const steps = root.steps === undefined ? [] : readSteps(ctx, root.steps, hosts, timeoutMs, state);
  // Sleeps cannot be shortened: when they alone fill the lab's time, the run can only time out.
  const slept = steps.reduce((n, s) => n + (s.kind === 'sleep' ? s.durationMs : 0), 0);
  if (labTimeoutMs !== undefined && slept >= timeoutMs) {
    const at = root.timeout === undefined ? ['steps'] : ['timeout'];
    ctx.at(at, `The sleep steps alone take ${formatDuration(slept)}, which leaves no time for the rest within ${state.timeoutName}${root.timeout === undefined ? ' (the default): set a longer "timeout"' : ''}`);
  }
  const acknowledge = root.acknowledge === undefined ? {} : readAcknowledge(ctx, root.acknowledge, hosts, root.steps);
  // Expectations name steps as written, so a step that had its own problem is no second one here.
  const expect = root.expect === undefined || root.expect === null ? [] : readExpectations(ctx, root.expect, state, steps);

  return {
    name,
    ...(description === undefined ? {} : { description }),
    file: ctx.sd.file,
    source: ctx.sd.text,
    vars,
    hosts,
    steps,
    expect,
    timeoutMs,
    release,
    acknowledge,
  };
}

/** `acknowledge: { fs.file-max: "why" }`: machine-wide sysctls the lab sets, each with a reason. */
function readAcknowledge(ctx: Checker, value: unknown, hosts: LabHost[], steps: unknown): Record<string, string> {
  const path = ['acknowledge'];
  // Only sysctls the lab sets (on a host, or in a step) can be acknowledged: any other name is an unknown key, with a guess.
  // Steps as written: a step with a problem of its own still names what it would change.
  const set = [...new Set([...hosts.flatMap((h) => Object.keys(h.sysctls)), ...stepSysctlsAsWritten(steps)])];
  const m = ctx.mapping(path, value, set, [], 'a mapping of sysctl name to the reason it may change machine-wide');
  const out: Record<string, string> = {};
  if (!m) return out;
  for (const [name, why] of Object.entries(m)) {
    if (!set.includes(name)) continue;
    const at = [...path, name];
    const reason = ctx.string(at, why);
    if (reason === undefined) continue;
    if (!reason.trim()) ctx.at(at, 'Must say why the change is acceptable: got an empty reason');
    else out[name] = reason;
  }
  return out;
}

/** The machine-wide sysctls steps change (files: fs.file-max, fs.nr_open), read from the steps as written. */
function stepSysctlsAsWritten(steps: unknown): string[] {
  if (!Array.isArray(steps)) return [];
  return steps.flatMap((item) => {
    const body = isMapping(item) && isMapping(item.files) ? item.files : undefined;
    if (!body) return [];
    const ceiling = body.ceiling === 'nr_open' ? 'nr_open' : 'file-max';
    return stepSysctl({ name: '', kind: 'files', host: '', ceiling, ...(body.nr_open === undefined ? {} : { nrOpen: 0 }) }) ?? [];
  });
}

function readHosts(ctx: Checker, value: unknown): LabHost[] {
  const path = ['hosts'];
  if (!isMapping(value)) return ctx.mustBe(path, 'a mapping of role names to hosts', value) ?? [];
  if (!Object.keys(value).length) {
    ctx.at(path, 'Must name at least one host role: got an empty mapping');
    return [];
  }
  const hosts: LabHost[] = [];
  for (const [role, body] of Object.entries(value)) {
    ctx.roleName(path, role);
    hosts.push(readHost(ctx, [...path, role], role, body));
  }
  return hosts;
}

function readHost(ctx: Checker, path: DocPath, role: string, value: unknown): LabHost {
  const host: LabHost = { role, sysctls: {}, aliases: 0 };
  // `server:` with nothing after it is an empty host, like `server: {}`.
  if (value === null) return host;
  const body = ctx.mapping(path, value, HOST_KEYS);
  if (!body) return host;
  if (body.sysctls !== undefined && body.sysctls !== null) host.sysctls = readSysctls(ctx, [...path, 'sysctls'], body.sysctls);
  if (body.aliases !== undefined) host.aliases = ctx.int([...path, 'aliases'], body.aliases, 0, MAX_ALIASES) ?? 0;
  if (body.nofile !== undefined) {
    const nofile = ctx.int([...path, 'nofile'], body.nofile, 1, MAX_NOFILE);
    if (nofile !== undefined) host.nofile = nofile;
  }
  if (body.conntrack !== undefined) {
    const on = ctx.bool([...path, 'conntrack'], body.conntrack);
    if (on) host.conntrack = true;
  }
  return host;
}

function readSysctls(ctx: Checker, path: DocPath, value: unknown): Record<string, string> {
  const out: Record<string, string> = {};
  if (!isMapping(value)) return ctx.mustBe(path, 'a mapping of sysctl names to values', value) ?? out;
  for (const [name, raw] of Object.entries(value)) {
    const at = [...path, name];
    if (isMapping(raw)) {
      // `net: { core: … }` is a sysctl name spelt as nested keys, one mistake.
      ctx.at(at, `Must be a string or number: got a mapping: write the sysctl name dotted, e.g. "net.core.somaxconn"`);
      continue;
    }
    if (!SYSCTL_NAME.test(name)) {
      const dotted = name.replace(/\//g, '.');
      const hint = SYSCTL_NAME.test(dotted) ? `write it with dots, ${quote(dotted)}` : 'expected a dotted name like "net.core.somaxconn"';
      ctx.atKey(path, name, `Invalid sysctl name ${quote(name)}: ${hint}`);
    }
    if (raw === REPORTED) continue;
    if (typeof raw !== 'string' && typeof raw !== 'number') {
      ctx.mustBe(at, 'a string or number', raw);
      continue;
    }
    // The value is written to a file under /proc/sys: one line, nothing the kernel would read as a second write.
    const text = typeof raw === 'number' ? String(raw) : ctx.line(at, raw, 'a sysctl value on one line without control characters');
    if (text === undefined) continue;
    if (name === PORT_RANGE_SYSCTL) {
      const range = parsePortRange(text);
      if (range) out[name] = `${range[0]} ${range[1]}`;
      else if (/^\s*\d+\s+\d+\s*$/.test(text)) ctx.mustBe(at, 'two ports "LOW HIGH" with 1 <= LOW <= HIGH <= 65535', raw);
      else ctx.mustBe(at, 'two ports "LOW HIGH"', raw);
    } else {
      out[name] = text.trim();
    }
  }
  return out;
}

/** "40000 40999" -> [40000, 40999], or undefined unless 1 <= low <= high <= 65535. */
export function parsePortRange(s: string): [number, number] | undefined {
  const m = /^\s*(\d+)\s+(\d+)\s*$/.exec(s);
  if (!m) return undefined;
  const low = Number(m[1]);
  const high = Number(m[2]);
  return low >= 1 && low <= high && high <= 65535 ? [low, high] : undefined;
}

/** What steps so far left behind, for checks that depend on order. */
export interface StepState {
  /** name -> kind and index of every step read so far, valid or not */
  seen: Map<string, { kind: StepKind; index: number }>;
  /** "role:port" -> the listen step listening there now */
  listening: Map<string, string>;
  /** listen step -> the "role:port" it listens on, kept after release for messages */
  listenedOn: Map<string, string>;
  /** step name -> the release step that released it */
  released: Map<string, string>;
  /** snapshot step -> the role it snapshots */
  snapshotHost: Map<string, string>;
  /**
   * Set once an earlier step could not be read well enough to know what it
   * listens on; "nothing listens" is then not reported, as it may be false.
   */
  uncertain: boolean;
  /** names of steps whose kind could not be read; references to them are not checked */
  unreadable: Set<string>;
  /** what bounds every step's duration, in words: "the lab's timeout of 2 s" */
  timeoutName: string;
}

function readSteps(ctx: Checker, value: unknown, hosts: LabHost[], labTimeoutMs: number, state: StepState): Step[] {
  const path = ['steps'];
  if (!Array.isArray(value) || !value.length) return ctx.mustBe(path, 'a non-empty list of steps', value) ?? [];
  // Every step's name up front, so releasing a later step says "comes later", not "unknown".
  const allNames = value.map((item, i) => stepNameOf(item, i));
  const steps: Step[] = [];
  value.forEach((item, index) => {
    const step = readStep(ctx, [...path, index], index, item, hosts, labTimeoutMs, state, allNames);
    if (step) steps.push(step);
  });
  return steps;
}

/** A step's effective name: its `name`, or "<kind><index>". */
function stepNameOf(item: unknown, index: number): string | undefined {
  if (!isMapping(item)) return undefined;
  if (typeof item.name === 'string') return item.name;
  const kind = STEP_KINDS.find((k) => k in item);
  return kind ? `${kind}${index}` : undefined;
}

function readStep(
  ctx: Checker,
  path: DocPath,
  index: number,
  value: unknown,
  hosts: LabHost[],
  labTimeoutMs: number,
  state: StepState,
  allNames: Array<string | undefined>,
): Step | undefined {
  const item = ctx.mapping(path, value, STEP_KEYS);
  const kinds = item ? STEP_KINDS.filter((k) => k in item) : [];
  if (kinds.length !== 1) {
    state.uncertain = true;
    const name = unreadableStepName(item, kinds, index);
    if (name !== undefined) state.unreadable.add(name);
  }
  if (!item) return undefined;
  if (!kinds.length) {
    // An unknown key was most likely the misspelt kind, and is reported already.
    if (Object.keys(item).every((k) => k === 'name')) {
      ctx.at(path, `Missing step kind: expected one of ${STEP_KINDS.map(quote).join(', ')}`);
    }
    return undefined;
  }
  if (kinds.length > 1) {
    ctx.atKey(path, kinds[1]!, `Must have exactly one step kind: got ${kinds.map(quote).join(' and ')}`);
    return undefined;
  }
  const kind = kinds[0]!;
  const name = readStepName(ctx, path, index, kind, item.name, state);
  const body = item[kind];
  const at = [...path, kind];
  const roles = hosts.map((h) => h.role);
  let step: Step | undefined;
  switch (kind) {
    case 'listen':
      step = readListen(ctx, at, name, body, roles, state);
      break;
    case 'connect':
      step = readConnect(ctx, at, name, body, hosts, labTimeoutMs, state);
      break;
    case 'sleep': {
      const durationMs = ctx.duration(at, body, labTimeoutMs, state.timeoutName);
      if (durationMs !== undefined) step = { name, kind, durationMs };
      break;
    }
    case 'snapshot': {
      const b = ctx.mapping(at, body, SNAPSHOT_KEYS, ['host'], 'a mapping like { host: ROLE }');
      const host = b && b.host !== undefined ? readRole(ctx, [...at, 'host'], b.host, roles) : undefined;
      if (host !== undefined) step = { name, kind, host };
      break;
    }
    case 'fit':
      step = readFit(ctx, at, name, body, state, allNames);
      break;
    case 'release':
      step = readRelease(ctx, at, name, body, state, allNames);
      break;
    case 'files':
      step = readFiles(ctx, at, name, body, roles);
      break;
  }
  if (kind === 'snapshot' && step) state.snapshotHost.set(name, (step as { host: string }).host);
  // The first step with a name keeps it; a duplicate was reported above.
  if (!state.seen.has(name)) state.seen.set(name, { kind, index });
  return step;
}

/** The name a step that could not be read would have had, when it can be told. */
function unreadableStepName(item: Record<string, unknown> | undefined, kinds: StepKind[], index: number): string | undefined {
  if (typeof item?.name === 'string') return item.name;
  if (kinds[0]) return `${kinds[0]}${index}`;
  // `conect:` was most likely meant as "connect", so "connect3" is its default name.
  const meant = Object.keys(item ?? {}).map((k) => didYouMean(k, STEP_KINDS)).find((k) => k !== undefined);
  return meant === undefined ? undefined : `${meant}${index}`;
}

function readStepName(
  ctx: Checker,
  path: DocPath,
  index: number,
  kind: StepKind,
  value: unknown,
  state: StepState,
): string {
  const fallback = `${kind}${index}`;
  if (value === undefined) {
    const other = state.seen.get(fallback);
    if (other) {
      ctx.at(path, `Step name ${quote(fallback)} (this step's default name) is taken by steps[${other.index}]: give this step a name`);
    }
    return fallback;
  }
  const at = [...path, 'name'];
  const name = ctx.string(at, value);
  if (name === undefined) return fallback;
  if (name === 'all') ctx.at(at, 'Step name "all" is reserved: it means every earlier step in "release: all"');
  else if (!STEP_NAME.test(name)) ctx.mustBe(at, 'a letter followed by letters, digits, "_" or "-"', name);
  const other = state.seen.get(name);
  if (other) ctx.at(at, `Duplicate step name ${quote(name)}: steps[${other.index}] has it already`);
  return name;
}

function readRole(ctx: Checker, path: DocPath, value: unknown, roles: string[]): string | undefined {
  const role = ctx.string(path, value);
  if (role === undefined) return undefined;
  if (!roles.includes(role)) {
    ctx.unknown(path, 'role', role, roles);
    return undefined;
  }
  return role;
}

function readListen(
  ctx: Checker,
  path: DocPath,
  name: string,
  value: unknown,
  roles: string[],
  state: StepState,
): Step | undefined {
  const b = ctx.mapping(path, value, LISTEN_KEYS, ['host', 'port']);
  const host = b?.host === undefined ? undefined : readRole(ctx, [...path, 'host'], b.host, roles);
  const port = b?.port === undefined ? undefined : ctx.int([...path, 'port'], b.port, 1, 65535);
  // Read before giving up on the step, so their problems are reported with the others.
  const backlog = b?.backlog === undefined ? 4096 : ctx.int([...path, 'backlog'], b.backlog, 0, 2147483647);
  const accept = b?.accept === undefined ? true : ctx.bool([...path, 'accept'], b.accept);
  let deferMs = b?.defer_accept === undefined ? 0 : ctx.duration([...path, 'defer_accept'], b.defer_accept, MAX_DEFER_ACCEPT_MS);
  if (deferMs !== undefined && deferMs % 1000 !== 0) {
    // The socket option takes seconds: a fraction would be rounded by the kernel, silently.
    ctx.mustBe([...path, 'defer_accept'], 'a whole number of seconds (TCP_DEFER_ACCEPT counts seconds)', b!.defer_accept);
    deferMs = undefined;
  }
  if (!b || host === undefined || port === undefined) {
    state.uncertain = true;
    return undefined;
  }
  const where = `${host}:${port}`;
  const holder = state.listening.get(where);
  if (holder) ctx.at([...path, 'port'], `Port ${port} on ${quote(host)} is already listened on by step ${quote(holder)}`);
  else {
    state.listening.set(where, name);
    state.listenedOn.set(name, where);
  }
  const server = b.server === undefined ? undefined : ctx.choice([...path, 'server'], b.server, SERVER_MODES, 'server');
  let stack: number | undefined;
  if (b.stack !== undefined) {
    if (server !== 'threads') {
      if (b.server !== undefined && server === undefined) return undefined;
      ctx.atKey(path, 'stack', 'Only allowed with server "threads": the thread stack size');
      return undefined;
    }
    stack = ctx.int([...path, 'stack'], b.stack, STACK_RANGE[0], STACK_RANGE[1]);
    if (stack === undefined) return undefined;
    if (stack % 4096) {
      ctx.mustBe([...path, 'stack'], 'a multiple of 4096 (whole pages)', b.stack);
      return undefined;
    }
  }
  if (backlog === undefined || accept === undefined || deferMs === undefined || (b.server !== undefined && server === undefined)) return undefined;
  const step: Step = { name, kind: 'listen', host, port, backlog, accept };
  if (deferMs) step.deferAcceptS = deferMs / 1000;
  if (server) step.server = server;
  if (stack !== undefined) step.stack = stack;
  return step;
}

function readConnect(
  ctx: Checker,
  path: DocPath,
  name: string,
  value: unknown,
  hosts: LabHost[],
  labTimeoutMs: number,
  state: StepState,
): Step | undefined {
  const b = ctx.mapping(path, value, CONNECT_KEYS, ['from', 'to', 'count']);
  if (!b) return undefined;
  const roles = hosts.map((h) => h.role);
  const p = (k: string) => [...path, k];
  const from = b.from === undefined ? undefined : readRole(ctx, p('from'), b.from, roles);
  const to = b.to === undefined ? undefined : readDestinations(ctx, p('to'), b.to, roles, state);
  const count = b.count === undefined ? undefined : ctx.int(p('count'), b.count, 1, MAX_COUNT);

  let sources: number | undefined = 1;
  // "auto": the plan picks the source addresses (and aliases) the count needs (models/scale.ts).
  const autoSources = typeof b.sources === 'string' && b.sources.trim() === 'auto';
  if (b.sources !== undefined && !autoSources) {
    // Sources are the host's primary address plus its aliases.
    const aliases = hosts.find((h) => h.role === from)?.aliases;
    sources =
      aliases === undefined
        ? ctx.int(p('sources'), b.sources, 1, 1 + MAX_ALIASES)
        : ctx.int(p('sources'), b.sources, 1, 1 + aliases, ` (host ${quote(from!)} has ${aliases} alias${aliases === 1 ? '' : 'es'})`);
  }

  const bind = b.bind === undefined ? 'none' : ctx.choice(p('bind'), b.bind, BIND_MODES, 'bind mode');
  let port: number | undefined;
  if (b.port !== undefined) {
    port = ctx.int(p('port'), b.port, 1, 65535);
    if (bind !== undefined && bind !== 'reuseaddr') {
      // At the key, named by it: the key is what is not allowed.
      ctx.add(ctx.sd.problem(p('port'), `Only allowed with bind "reuseaddr" (the local port its connections share): got bind ${quote(bind)}`, true));
    }
  } else if (bind === 'reuseaddr') {
    ctx.at(path, 'Missing required key "port": bind "reuseaddr" binds every connection to one local port');
  }

  const rate = b.rate === undefined ? 0 : ctx.nonNegative(p('rate'), b.rate);
  const maxName = state.timeoutName;
  const timeoutMs = b.timeout === undefined ? Math.min(60_000, labTimeoutMs) : ctx.duration(p('timeout'), b.timeout, labTimeoutMs, maxName);
  const connectTimeoutMs =
    b.connect_timeout === undefined ? 3000 : ctx.duration(p('connect_timeout'), b.connect_timeout, MAX_TIMEOUT_MS);
  const processes = b.processes === undefined ? undefined : ctx.int(p('processes'), b.processes, 1, MAX_PROCESSES);
  const stopOnError = b.stop_on_error === undefined ? true : ctx.bool(p('stop_on_error'), b.stop_on_error);
  let send = b.send === undefined ? 0 : ctx.size(p('send'), b.send, 1, MAX_SEND_BYTES, ' per connection');
  if (send !== undefined && count !== undefined && send * count > MAX_SEND_TOTAL_BYTES) {
    // Unread data is kernel memory held until release: bound what one step may pin.
    ctx.mustBe(p('send'), `at most ${formatSize(MAX_SEND_TOTAL_BYTES)} over the step's ${count} connections (count × send)`, b.send);
    send = undefined;
  }

  if (
    from === undefined ||
    to === undefined ||
    count === undefined ||
    sources === undefined ||
    bind === undefined ||
    rate === undefined ||
    timeoutMs === undefined ||
    connectTimeoutMs === undefined ||
    stopOnError === undefined ||
    send === undefined ||
    (b.processes !== undefined && processes === undefined)
  ) {
    return undefined;
  }
  const step: Step = { name, kind: 'connect', host: from, to, count, sources, bind, rate, timeoutMs, connectTimeoutMs, stopOnError };
  if (port !== undefined) step.port = port;
  if (processes !== undefined) step.processes = processes;
  if (send) step.send = send;
  if (autoSources) step.autoSources = true;
  return step;
}

function readDestinations(
  ctx: Checker,
  path: DocPath,
  value: unknown,
  roles: string[],
  state: StepState,
): Destination[] | undefined {
  const items: Array<[DocPath, unknown]> = Array.isArray(value)
    ? value.map((v, i) => [[...path, i], v])
    : [[path, value]];
  if (Array.isArray(value) && !value.length) return ctx.mustBe(path, 'a "ROLE:PORT" or a non-empty list of them', value);
  const out: Destination[] = [];
  let ok = true;
  const seen = new Set<string>();
  for (const [at, v] of items) {
    const d = readDestination(ctx, at, v, roles, state);
    if (!d) {
      ok = false;
      continue;
    }
    const key = `${d.role}:${d.port}`;
    if (seen.has(key)) {
      ctx.at(at, `Duplicate destination ${quote(key)}`);
      ok = false;
    }
    seen.add(key);
    out.push(d);
  }
  return ok ? out : undefined;
}

function readDestination(
  ctx: Checker,
  path: DocPath,
  value: unknown,
  roles: string[],
  state: StepState,
): Destination | undefined {
  if (value === REPORTED) return undefined;
  const m = typeof value === 'string' ? /^([^:\s]+):(\d+)$/.exec(value.trim()) : null;
  if (!m) return ctx.mustBe(path, '"ROLE:PORT"', value);
  const [, role, portText] = m as unknown as [string, string, string];
  const port = Number(portText);
  if (!roles.includes(role)) {
    ctx.unknown(path, 'role', role, roles);
    return undefined;
  }
  if (port < 1 || port > 65535) return ctx.mustBe(path, '"ROLE:PORT" with a port from 1 to 65535', value);
  const where = `${role}:${port}`;
  if (!state.listening.has(where) && !state.uncertain) {
    const closed = [...state.listenedOn].find(([n, w]) => w === where && state.released.has(n))?.[0];
    const detail = closed
      ? `listen step ${quote(closed)} was released by step ${quote(state.released.get(closed)!)}`
      : `add an earlier listen step with host ${quote(role)} and port ${port}`;
    ctx.at(path, `Nothing listens on ${quote(where)} at this step: ${detail}`);
    return undefined;
  }
  return { role, port };
}

function readRelease(
  ctx: Checker,
  path: DocPath,
  name: string,
  value: unknown,
  state: StepState,
  allNames: Array<string | undefined>,
): Step | undefined {
  if (value === REPORTED) return undefined;
  const holders = [...state.seen].filter(([, s]) => s.kind === 'listen' || s.kind === 'connect').map(([n]) => n);
  if (value === 'all') {
    const open = holders.filter((n) => !state.released.has(n));
    if (!open.length) {
      ctx.at(path, 'Nothing to release: no earlier listen or connect step is still open');
      return undefined;
    }
    for (const n of open) markReleased(state, n, name);
    return { name, kind: 'release', steps: open };
  }
  if (Array.isArray(value) ? !value.length : typeof value !== 'string') {
    return ctx.mustBe(path, '"all", a step name or a non-empty list of step names', value);
  }
  const items: Array<[DocPath, unknown]> = Array.isArray(value)
    ? value.map((v, i) => [[...path, i], v])
    : [[path, value]];
  const steps: string[] = [];
  let ok = true;
  for (const [at, v] of items) {
    const target = ctx.string(at, v);
    if (target === undefined) {
      ok = false;
      continue;
    }
    const seen = state.seen.get(target);
    const by = state.released.get(target);
    let problem: string | undefined;
    if (!seen) {
      if (state.unreadable.has(target)) {
        ok = false;
        continue;
      }
      if (allNames.includes(target)) problem = `Cannot release ${quote(target)}: it comes later; release only earlier steps`;
      else {
        ctx.unknown(at, 'step', target, [...state.seen.keys()]);
        ok = false;
        continue;
      }
    } else if (seen.kind !== 'listen' && seen.kind !== 'connect') {
      problem = `Cannot release ${quote(target)}: a ${seen.kind} step holds nothing to release`;
    } else if (by) {
      problem = `Cannot release ${quote(target)}: step ${quote(by)} already released it`;
    }
    if (problem) {
      ctx.at(at, problem);
      ok = false;
      continue;
    }
    markReleased(state, target, name);
    steps.push(target);
  }
  return ok ? { name, kind: 'release', steps } : undefined;
}

/**
 * `files: { host: ROLE, ceiling: nr_open, nr_open: N }` or
 * `files: { host: ROLE, ceiling: file-max, count: N }`: a machine-wide fd ceiling.
 */
function readFiles(ctx: Checker, path: DocPath, name: string, value: unknown, roles: string[]): Step | undefined {
  const b = ctx.mapping(path, value, FILES_KEYS, ['host', 'ceiling'], 'a mapping like { host: ROLE, ceiling: file-max, count: 4000 }');
  if (!b) return undefined;
  const host = b.host === undefined ? undefined : readRole(ctx, [...path, 'host'], b.host, roles);
  const ceiling = b.ceiling === undefined ? undefined : ctx.choice([...path, 'ceiling'], b.ceiling, FD_CEILINGS, 'fd ceiling');
  let count: number | undefined;
  let nrOpen: number | undefined;
  let ok = true;
  if (b.count !== undefined) {
    if (ceiling === 'nr_open') {
      ctx.atKey(path, 'count', 'Only allowed with ceiling "file-max": the nr_open probe opens no files');
      ok = false;
    } else {
      count = ctx.int([...path, 'count'], b.count, 1, MAX_FILES_COUNT);
      if (count === undefined) ok = false;
    }
  } else if (ceiling === 'file-max') {
    ctx.at(path, 'Missing required key "count": the files the step needs; fs.file-max is set to the files in use plus count');
    ok = false;
  }
  if (b.nr_open !== undefined) {
    if (ceiling === 'file-max') {
      ctx.atKey(path, 'nr_open', 'Only allowed with ceiling "nr_open"');
      ok = false;
    } else {
      nrOpen = ctx.int([...path, 'nr_open'], b.nr_open, NR_OPEN_RANGE[0], NR_OPEN_RANGE[1]);
      if (nrOpen === undefined) ok = false;
    }
  }
  if (!ok || host === undefined || ceiling === undefined) return undefined;
  const step: Step = { name, kind: 'files', host, ceiling };
  if (count !== undefined) step.count = count;
  if (nrOpen !== undefined) step.nrOpen = nrOpen;
  return step;
}

/** `fit: { snapshots: [s0, s1, …], per: connection | time-wait }`: earlier snapshot steps, all of one host. */
function readFit(
  ctx: Checker,
  path: DocPath,
  name: string,
  value: unknown,
  state: StepState,
  allNames: Array<string | undefined>,
): Step | undefined {
  const b = ctx.mapping(path, value, FIT_KEYS, ['snapshots'], 'a mapping like { snapshots: [s0, s1, s2] }');
  if (!b || b.snapshots === undefined) return undefined;
  const at = [...path, 'snapshots'];
  const per = b.per === undefined ? 'connection' : ctx.choice([...path, 'per'], b.per, FIT_UNITS, 'fit unit');
  if (!Array.isArray(b.snapshots)) return ctx.mustBe(at, `a list of at least ${MIN_FIT_SNAPSHOTS} snapshot step names`, b.snapshots);
  if (b.snapshots.length < MIN_FIT_SNAPSHOTS) {
    ctx.at(at, `A fit needs at least ${MIN_FIT_SNAPSHOTS} snapshots: got ${b.snapshots.length}`);
    return undefined;
  }
  const snapshots: string[] = [];
  let host: string | undefined;
  let ok = true;
  b.snapshots.forEach((v, i) => {
    const target = ctx.string([...at, i], v);
    if (target === undefined) return void (ok = false);
    const seen = state.seen.get(target);
    let problem: string | undefined;
    if (!seen) {
      if (state.unreadable.has(target)) return void (ok = false);
      if (!allNames.includes(target)) {
        ctx.unknown([...at, i], 'step', target, [...state.snapshotHost.keys()]);
        return void (ok = false);
      }
      problem = `Cannot fit ${quote(target)}: it comes later; fit only earlier snapshots`;
    } else if (seen.kind !== 'snapshot') problem = `Cannot fit ${quote(target)}: it is a ${seen.kind} step, not a snapshot`;
    else if (snapshots.includes(target)) problem = `Duplicate snapshot ${quote(target)}`;
    else {
      const h = state.snapshotHost.get(target);
      if (host !== undefined && h !== undefined && h !== host) {
        problem = `Cannot fit ${quote(target)}: it snapshots ${quote(h)}, the others ${quote(host)}; a fit reads one host's memory`;
      }
      host ??= h;
    }
    if (problem) {
      ctx.at([...at, i], problem);
      ok = false;
      return;
    }
    snapshots.push(target);
  });
  return ok && host !== undefined && per !== undefined ? { name, kind: 'fit', host, snapshots, per } : undefined;
}

function markReleased(state: StepState, step: string, by: string): void {
  state.released.set(step, by);
  const where = state.listenedOn.get(step);
  if (where !== undefined && state.listening.get(where) === step) state.listening.delete(where);
}

function readExpectations(ctx: Checker, value: unknown, state: StepState, steps: Step[]): Expectation[] {
  const path = ['expect'];
  if (!Array.isArray(value)) return ctx.mustBe(path, 'a list of expectations', value) ?? [];
  const out: Expectation[] = [];
  value.forEach((item, i) => {
    const e = readExpectation(ctx, [...path, i], item, state, steps);
    if (e) out.push(e);
  });
  return out;
}

function readExpectation(ctx: Checker, path: DocPath, value: unknown, state: StepState, steps: Step[]): Expectation | undefined {
  const b = ctx.mapping(path, value, EXPECT_KEYS, ['metric']);
  if (!b) return undefined;
  const p = (k: string) => [...path, k];
  let ok = true;

  const metric = b.metric === undefined ? undefined : ctx.string(p('metric'), b.metric);
  if (metric !== undefined && !checkMetric(ctx, p('metric'), metric, state)) ok = false;

  if (b.model !== undefined && b.value !== undefined) {
    ctx.at(path, 'Must have "model" or "value", not both');
    ok = false;
  } else if (b.model === undefined && b.value === undefined) {
    ctx.at(path, 'Missing required key "model" or "value"');
    ok = false;
  }
  const model = b.model === undefined ? undefined : ctx.choice(p('model'), b.model, MODEL_NAMES, 'model');
  if (model !== undefined && metric !== undefined && ok) {
    // A model with no prediction for this metric would meet "nothing observed" and seem to pass.
    const [stepName, metricName] = metric.split('.') as [string, string];
    const step = steps.find((s) => s.name === stepName);
    const why = step && modelProblem(model, step, metricName);
    if (why) {
      ctx.at(p('model'), `Model ${quote(model)} cannot predict ${quote(metric)}: ${why}`);
      ok = false;
    }
  }
  let literal: number | string | undefined;
  if (b.value !== undefined && b.value !== REPORTED) {
    const v = b.value;
    if (typeof v === 'number') literal = v;
    // A rendered template is a string; a numeric one means the number.
    else if (typeof v === 'string') literal = /^\s*-?\d+(\.\d+)?\s*$/.test(v) ? Number(v) : v;
    else ctx.mustBe(p('value'), 'a number or string', v);
  }

  let tolerance = 0;
  let tolerancePercent = false;
  if (b.tolerance !== undefined && b.tolerance !== REPORTED) {
    const t = readTolerance(ctx, p('tolerance'), b.tolerance, literal);
    if (t === undefined) ok = false;
    else [tolerance, tolerancePercent] = t;
  }

  if (!ok || metric === undefined || (b.model !== undefined && model === undefined)) return undefined;
  if (b.value !== undefined && literal === undefined) return undefined;
  const e: Expectation = { metric, tolerance, tolerancePercent };
  if (model !== undefined) e.model = model;
  if (literal !== undefined) e.value = literal;
  return e;
}

/**
 * A tolerance, absolute or "N%". Bounded so it can still fail: the labs ask
 * whether a limit moved, and the smallest move they look for is a factor of
 * two (a second source address, port or worker), so a tolerance may cover at
 * most a quarter of the prediction, which keeps half and double outside it.
 * An absolute tolerance is known against a literal value only; against a
 * model's prediction it is capped at MAX_TOLERANCE (use "N%" for large values).
 */
function readTolerance(ctx: Checker, path: DocPath, t: unknown, literal: number | string | undefined): [number, boolean] | undefined {
  const pct = typeof t === 'string' ? /^\s*(\d+(?:\.\d+)?)\s*%\s*$/.exec(t) : null;
  if (pct) {
    const n = Number(pct[1]);
    if (n > MAX_TOLERANCE_PERCENT) {
      return ctx.mustBe(path, `at most ${MAX_TOLERANCE_PERCENT}%: a wider tolerance could not tell a limit from its half or double`, t);
    }
    if (typeof literal === 'string' && n !== 0) return ctx.mustBe(path, `0 when "value" is a string`, t);
    return [n, true];
  }
  if (typeof t === 'string' && !/^\s*\d+(\.\d+)?\s*$/.test(t)) return ctx.mustBe(path, 'a number >= 0, or a share of the prediction like "5%"', t);
  const n = ctx.nonNegative(path, t);
  if (n === undefined) return undefined;
  if (typeof literal === 'string') return n === 0 ? [0, false] : ctx.mustBe(path, `0 when "value" is a string`, t);
  const max = typeof literal === 'number' ? Math.abs(literal) * (MAX_TOLERANCE_PERCENT / 100) : MAX_TOLERANCE;
  if (n > max) {
    const why =
      typeof literal === 'number'
        ? ` (${MAX_TOLERANCE_PERCENT}% of the value ${literal}): a wider tolerance could not tell it from its half or double`
        : `: for a wider one, write a share of the prediction, e.g. "${MAX_TOLERANCE_PERCENT}%"`;
    return ctx.mustBe(path, `at most ${max}${why}`, t);
  }
  return [n, false];
}

/** "<step>.<metric>": the step must exist and its kind must measure the metric. */
function checkMetric(ctx: Checker, path: DocPath, metric: string, state: StepState): boolean {
  const parts = metric.split('.');
  if (parts.length !== 2 || !parts[0] || !parts[1]) {
    ctx.mustBe(path, '"<step>.<metric>"', metric);
    return false;
  }
  const [stepName, metricName] = parts as [string, string];
  const step = state.seen.get(stepName);
  if (!step) {
    // A step whose kind could not be read may be the one named here.
    if (!state.unreadable.has(stepName)) ctx.unknown(path, 'step', stepName, [...state.seen.keys()]);
    return false;
  }
  const known: readonly string[] = STEP_METRICS[step.kind];
  if (!known.length) {
    ctx.at(path, `Step ${quote(stepName)} is a ${step.kind} step, which measures nothing`);
    return false;
  }
  if (!known.includes(metricName)) {
    ctx.unknown(path, 'metric', metricName, known, ` for ${step.kind} step ${quote(stepName)}`);
    return false;
  }
  return true;
}
