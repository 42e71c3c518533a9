// Lab file -> typed Lab. Every problem in the file is collected and reported
// at file:line:col, and nothing is returned until there are none, so a lab
// never half-runs on a file that was wrong further down.

import { readdir, readFile } from 'node:fs/promises';
import { basename, dirname } from 'node:path';
import { LabError, type LabProblem } from '../errors.ts';
import { MODEL_NAMES } from '../models/names.ts';
import { didYouMean, mergeVars, renderTree, TEMPLATE_FAILED, VAR_NAME, type TemplateVars } from './template.ts';
import {
  FIT_UNITS,
  RELEASE_MODES,
  STEP_KINDS,
  STEP_METRICS,
  type BindMode,
  type Destination,
  type Expectation,
  type Lab,
  type LabHost,
  type Step,
  type StepKind,
} from './types.ts';
import { describe, isMapping, parseYaml, pathText, sortProblems, type SourceDoc, type YamlPath } from './yaml.ts';

export const DEFAULT_TIMEOUT_MS = 5 * 60_000;
export const MAX_TIMEOUT_MS = 60 * 60_000;
export const MAX_ALIASES = 64;
export const MAX_COUNT = 2_000_000;
export const MAX_NOFILE = 1_048_576;
export const MAX_PROCESSES = 1024;
export const BIND_MODES = ['none', 'ip', 'ip-no-port', 'reuseaddr'] as const satisfies readonly BindMode[];
/** A fit needs two points at least; more make its residual mean something. */
export const MIN_FIT_SNAPSHOTS = 2;

/** Role names become namespace and host names, so they stay short and plain. */
export const ROLE_NAME = /^[a-z][a-z0-9-]*$/;
export const LAB_NAME = /^[a-z0-9-]+$/;
/** Step names appear in "<step>.<metric>", so they hold no dots. */
export const STEP_NAME = /^[A-Za-z][A-Za-z0-9_-]*$/;
export const SYSCTL_NAME = /^[a-z0-9_-]+(\.[a-z0-9_-]+)+$/;
const DURATION = /^(\d+(?:\.\d+)?)(ms|s|m|h)?$/;
const PORT_RANGE_SYSCTL = 'net.ipv4.ip_local_port_range';

const ROOT_KEYS = ['name', 'description', 'timeout', 'release', 'vars', 'hosts', 'steps', 'expect'];
const HOST_KEYS = ['sysctls', 'aliases', 'nofile'];
const STEP_KEYS = ['name', ...STEP_KINDS];
const LISTEN_KEYS = ['host', 'port', 'backlog', 'accept'];
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
];
const SNAPSHOT_KEYS = ['host'];
const FIT_KEYS = ['snapshots', 'per'];
const EXPECT_KEYS = ['metric', 'model', 'value', 'tolerance'];

/**
 * Read and validate a lab file. A missing file is LAB_NOT_FOUND; a file that
 * is not valid YAML is LAB_YAML; a lab that breaks a rule is LAB_INVALID.
 */
export async function readLab(file: string, overrides?: Record<string, string>): Promise<Lab> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (e) {
    const code = (e as { code?: string }).code;
    if (code === 'ENOENT') {
      const guess = didYouMean(basename(file), await yamlFilesBeside(file));
      const hint = guess ? `: did you mean "${joinDir(file, guess)}"?` : '';
      throw new LabError('LAB_NOT_FOUND', `Cannot find lab file "${file}"${hint}`);
    }
    if (code === 'EISDIR') throw new LabError('LAB_NOT_FOUND', `Cannot read lab file "${file}": it is a directory`);
    throw new LabError('LAB_UNREADABLE', `Cannot read lab file "${file}": ${(e as Error).message}`);
  }
  return loadLab(file, text, overrides);
}

async function yamlFilesBeside(file: string): Promise<string[]> {
  try {
    return (await readdir(dirname(file))).filter((f) => /\.ya?ml$/.test(f));
  } catch {
    return [];
  }
}

function joinDir(file: string, name: string): string {
  const dir = dirname(file);
  return dir === '.' && !file.startsWith('./') ? name : `${dir}/${name}`;
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
  ctx.templates = rendered.templates;
  ctx.problems.push(...rendered.problems);
  const lab = readLabDocument(ctx, rendered.value, vars);
  if (ctx.problems.length || !lab) {
    const problems = sortProblems(ctx.problems);
    throw new LabError('LAB_INVALID', `${file}: invalid lab file`, problems);
  }
  return lab;
}


/** Collects problems while reading; each `read*` returns undefined after reporting one. */
class Checker {
  problems: LabProblem[] = [];
  templates = new Map<string, string>();
  constructor(readonly sd: SourceDoc) {}

  at(path: YamlPath, message: string): void {
    this.problems.push(this.sd.problem(path, message));
  }

  /** A problem with a mapping key: located on the key, named by its parent's path. */
  atKey(parent: YamlPath, key: string, message: string): void {
    const { line, col } = this.sd.locate([...parent, key], true);
    this.problems.push({ file: this.sd.file, line, col, path: pathText(parent), message });
  }

  /** How a value reads in "got …", with the template it came from when there was one. */
  got(path: YamlPath, v: unknown): string {
    const template = this.templates.get(pathText(path));
    return template === undefined ? describe(v) : `${describe(v)} (from template ${quote(template)})`;
  }

  mustBe(path: YamlPath, what: string, v: unknown): undefined {
    this.at(path, `Must be ${what}: got ${this.got(path, v)}`);
    return undefined;
  }

  /** A mapping with only `keys`; reports unknown and missing keys. `shape` says what it should look like. */
  mapping(path: YamlPath, v: unknown, keys: readonly string[], required: readonly string[] = [], shape = 'a mapping') {
    if (v === TEMPLATE_FAILED) return undefined;
    if (!isMapping(v)) return this.mustBe(path, shape, v);
    const meant = new Set<string>();
    for (const k of Object.keys(v)) {
      if (keys.includes(k)) continue;
      const guess = this.unknownKey(path, k, keys);
      if (guess) meant.add(guess);
    }
    // A misspelt required key is one mistake: "did you mean" says it, "missing" would say it twice.
    const missing = required.filter((k) => v[k] === undefined && !meant.has(k));
    if (missing.length) {
      this.at(path, `Missing required key${missing.length > 1 ? 's' : ''} ${missing.map(quote).join(', ')}`);
    }
    return v;
  }

  /** Reports an unknown key; returns the key it probably meant. */
  unknownKey(parent: YamlPath, key: string, keys: readonly string[]): string | undefined {
    const guess = didYouMean(key, keys);
    const hint = guess ? `did you mean ${quote(guess)}?` : `expected one of ${keys.map(quote).join(', ')}`;
    this.atKey(parent, key, `Unknown key ${quote(key)}: ${hint}`);
    return guess;
  }

  string(path: YamlPath, v: unknown): string | undefined {
    if (v === TEMPLATE_FAILED) return undefined;
    if (typeof v !== 'string') return this.mustBe(path, 'a string', v);
    return v;
  }

  /** An integer in [min, max]; `why` explains the bounds in the message. */
  int(path: YamlPath, v: unknown, min: number, max: number, why = ''): number | undefined {
    if (v === TEMPLATE_FAILED) return undefined;
    // Templates render to strings; an integer-looking one is the number it spells.
    const n = typeof v === 'string' && /^\s*-?\d+\s*$/.test(v) ? Number(v) : v;
    if (typeof n !== 'number' || !Number.isInteger(n) || n < min || n > max) {
      return this.mustBe(path, `an integer from ${min} to ${max}${why}`, v);
    }
    return n;
  }

  nonNegative(path: YamlPath, v: unknown): number | undefined {
    if (v === TEMPLATE_FAILED) return undefined;
    const n = typeof v === 'string' && /^\s*-?\d+(\.\d+)?\s*$/.test(v) ? Number(v) : v;
    if (typeof n !== 'number' || !Number.isFinite(n) || n < 0) return this.mustBe(path, 'a number >= 0', v);
    return n;
  }

  bool(path: YamlPath, v: unknown): boolean | undefined {
    if (v === TEMPLATE_FAILED) return undefined;
    if (typeof v === 'boolean') return v;
    if (v === 'true' || v === 'false') return v === 'true';
    return this.mustBe(path, 'true or false', v);
  }

  /** A duration in ms, more than 0 and at most `max`. */
  duration(path: YamlPath, v: unknown, max: number, maxName = formatDuration(max)): number | undefined {
    if (v === TEMPLATE_FAILED) return undefined;
    const ms = parseDuration(v);
    if (ms === undefined) {
      return this.mustBe(path, 'a duration like "500ms", "30s", "5m" or "1h", or a number of seconds', v);
    }
    if (ms <= 0) return this.mustBe(path, 'more than 0', v);
    if (ms > max) return this.mustBe(path, `at most ${maxName}`, v);
    return ms;
  }

  /** One of `choices`, with a guess when the value is close to one. */
  choice<T extends string>(path: YamlPath, v: unknown, choices: readonly T[], what: string): T | undefined {
    const s = this.string(path, v);
    if (s === undefined) return undefined;
    if ((choices as readonly string[]).includes(s)) return s as T;
    this.unknown(path, what, s, choices);
    return undefined;
  }

  /** `Unknown role "clinet": did you mean "client"?`; `context` follows the name. */
  unknown(path: YamlPath, what: string, name: string, known: readonly string[], context = ''): void {
    const guess = didYouMean(name, known);
    const hint = guess
      ? `did you mean ${quote(guess)}?`
      : known.length
        ? `expected one of ${known.map(quote).join(', ')}`
        : 'there are none';
    this.at(path, `Unknown ${what} ${quote(name)}${context}: ${hint}`);
  }
}

/** Parse "500ms", "30s", "5m", "1h", or seconds (a number or a bare numeric string) into ms. */
export function parseDuration(v: unknown): number | undefined {
  if (typeof v === 'number') return Number.isFinite(v) && v >= 0 ? Math.round(v * 1000) : undefined;
  if (typeof v !== 'string') return undefined;
  const m = DURATION.exec(v.trim());
  if (!m) return undefined;
  const unitMs = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[(m[2] ?? 's') as 'ms' | 's' | 'm' | 'h'];
  return Math.round(Number(m[1]) * unitMs);
}

/** The shortest exact spelling of a duration: 300000 -> "5m". */
export function formatDuration(ms: number): string {
  for (const [unit, size] of [['h', 3_600_000], ['m', 60_000], ['s', 1000]] as const) {
    if (ms >= size && ms % size === 0) return `${ms / size}${unit}`;
  }
  return `${ms}ms`;
}


function quote(s: string): string {
  return JSON.stringify(s);
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
    if (typeof value === 'string' || typeof value === 'number' || typeof value === 'boolean') vars[name] = String(value);
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
  const timeoutMs =
    root.timeout === undefined ? DEFAULT_TIMEOUT_MS : (ctx.duration(['timeout'], root.timeout, MAX_TIMEOUT_MS) ?? MAX_TIMEOUT_MS);
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
  };
  const steps = root.steps === undefined ? [] : readSteps(ctx, root.steps, hosts, timeoutMs, state);
  // Expectations name steps as written, so a step that had its own problem is no second one here.
  const expect = root.expect === undefined || root.expect === null ? [] : readExpectations(ctx, root.expect, state);

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
  };
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
    if (role === 'all') ctx.atKey(path, role, 'Role name "all" is reserved: choose another name');
    else if (!ROLE_NAME.test(role)) {
      ctx.atKey(path, role, `Invalid role name ${quote(role)}: use lowercase letters, digits and "-", starting with a letter`);
    }
    hosts.push(readHost(ctx, [...path, role], role, body));
  }
  return hosts;
}

function readHost(ctx: Checker, path: YamlPath, role: string, value: unknown): LabHost {
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
  return host;
}

function readSysctls(ctx: Checker, path: YamlPath, value: unknown): Record<string, string> {
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
    if (raw === TEMPLATE_FAILED) continue;
    if (typeof raw !== 'string' && typeof raw !== 'number') {
      ctx.mustBe(at, 'a string or number', raw);
      continue;
    }
    const text = String(raw);
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
  path: YamlPath,
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
      const durationMs = ctx.duration(at, body, labTimeoutMs, `the lab's timeout of ${formatDuration(labTimeoutMs)}`);
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
  path: YamlPath,
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

function readRole(ctx: Checker, path: YamlPath, value: unknown, roles: string[]): string | undefined {
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
  path: YamlPath,
  name: string,
  value: unknown,
  roles: string[],
  state: StepState,
): Step | undefined {
  const b = ctx.mapping(path, value, LISTEN_KEYS, ['host', 'port']);
  const host = b?.host === undefined ? undefined : readRole(ctx, [...path, 'host'], b.host, roles);
  const port = b?.port === undefined ? undefined : ctx.int([...path, 'port'], b.port, 1, 65535);
  if (!b || host === undefined || port === undefined) {
    state.uncertain = true;
    return undefined;
  }
  const backlog = b.backlog === undefined ? 4096 : ctx.int([...path, 'backlog'], b.backlog, 0, 2147483647);
  const accept = b.accept === undefined ? true : ctx.bool([...path, 'accept'], b.accept);
  const where = `${host}:${port}`;
  const holder = state.listening.get(where);
  if (holder) ctx.at([...path, 'port'], `Port ${port} on ${quote(host)} is already listened on by step ${quote(holder)}`);
  else {
    state.listening.set(where, name);
    state.listenedOn.set(name, where);
  }
  if (backlog === undefined || accept === undefined) return undefined;
  return { name, kind: 'listen', host, port, backlog, accept };
}

function readConnect(
  ctx: Checker,
  path: YamlPath,
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
      ctx.atKey(path, 'port', `Only allowed with bind "reuseaddr": got bind ${quote(bind)}`);
    }
  } else if (bind === 'reuseaddr') {
    ctx.at(path, 'Missing required key "port": bind "reuseaddr" binds every connection to one local port');
  }

  const rate = b.rate === undefined ? 0 : ctx.nonNegative(p('rate'), b.rate);
  const maxName = `the lab's timeout of ${formatDuration(labTimeoutMs)}`;
  const timeoutMs = b.timeout === undefined ? Math.min(60_000, labTimeoutMs) : ctx.duration(p('timeout'), b.timeout, labTimeoutMs, maxName);
  const connectTimeoutMs =
    b.connect_timeout === undefined ? 3000 : ctx.duration(p('connect_timeout'), b.connect_timeout, MAX_TIMEOUT_MS);
  const processes = b.processes === undefined ? undefined : ctx.int(p('processes'), b.processes, 1, MAX_PROCESSES);
  const stopOnError = b.stop_on_error === undefined ? true : ctx.bool(p('stop_on_error'), b.stop_on_error);

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
    (b.processes !== undefined && processes === undefined)
  ) {
    return undefined;
  }
  const step: Step = { name, kind: 'connect', host: from, to, count, sources, bind, rate, timeoutMs, connectTimeoutMs, stopOnError };
  if (port !== undefined) step.port = port;
  if (processes !== undefined) step.processes = processes;
  if (autoSources) step.autoSources = true;
  return step;
}

function readDestinations(
  ctx: Checker,
  path: YamlPath,
  value: unknown,
  roles: string[],
  state: StepState,
): Destination[] | undefined {
  const items: Array<[YamlPath, unknown]> = Array.isArray(value)
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
  path: YamlPath,
  value: unknown,
  roles: string[],
  state: StepState,
): Destination | undefined {
  if (value === TEMPLATE_FAILED) return undefined;
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
  path: YamlPath,
  name: string,
  value: unknown,
  state: StepState,
  allNames: Array<string | undefined>,
): Step | undefined {
  if (value === TEMPLATE_FAILED) return undefined;
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
  const items: Array<[YamlPath, unknown]> = Array.isArray(value)
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

/** `fit: { snapshots: [s0, s1, …], per: connection | time-wait }`: earlier snapshot steps, all of one host. */
function readFit(
  ctx: Checker,
  path: YamlPath,
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

function readExpectations(ctx: Checker, value: unknown, state: StepState): Expectation[] {
  const path = ['expect'];
  if (!Array.isArray(value)) return ctx.mustBe(path, 'a list of expectations', value) ?? [];
  const out: Expectation[] = [];
  value.forEach((item, i) => {
    const e = readExpectation(ctx, [...path, i], item, state);
    if (e) out.push(e);
  });
  return out;
}

function readExpectation(ctx: Checker, path: YamlPath, value: unknown, state: StepState): Expectation | undefined {
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
  let literal: number | string | undefined;
  if (b.value !== undefined && b.value !== TEMPLATE_FAILED) {
    const v = b.value;
    if (typeof v === 'number') literal = v;
    // A rendered template is a string; a numeric one means the number.
    else if (typeof v === 'string') literal = /^\s*-?\d+(\.\d+)?\s*$/.test(v) ? Number(v) : v;
    else ctx.mustBe(p('value'), 'a number or string', v);
  }

  let tolerance = 0;
  let tolerancePercent = false;
  if (b.tolerance !== undefined && b.tolerance !== TEMPLATE_FAILED) {
    const t = b.tolerance;
    const pct = typeof t === 'string' ? /^\s*(\d+(?:\.\d+)?)\s*%\s*$/.exec(t) : null;
    if (pct) {
      tolerance = Number(pct[1]);
      tolerancePercent = true;
    } else {
      const n = ctx.nonNegative(p('tolerance'), t);
      if (n === undefined) ok = false;
      else tolerance = n;
    }
    if (typeof literal === 'string' && tolerance !== 0) {
      ctx.mustBe(p('tolerance'), `0 when "value" is a string`, t);
      ok = false;
    }
  }

  if (!ok || metric === undefined || (b.model !== undefined && model === undefined)) return undefined;
  if (b.value !== undefined && literal === undefined) return undefined;
  const e: Expectation = { metric, tolerance, tolerancePercent };
  if (model !== undefined) e.model = model;
  if (literal !== undefined) e.value = literal;
  return e;
}

/** "<step>.<metric>": the step must exist and its kind must measure the metric. */
function checkMetric(ctx: Checker, path: YamlPath, metric: string, state: StepState): boolean {
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
