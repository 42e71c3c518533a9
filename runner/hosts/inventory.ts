// Inventory file -> typed Inventory: which machine plays each lab role and how
// to reach it over SSH. Every problem is collected and reported at
// file:line:col before any host is touched, like a lab file's.

import { readFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { isIP, isIPv4 } from 'node:net';
import { dirname, extname, resolve } from 'node:path';
import { LabError, type LabProblem } from '../errors.ts';
import { didYouMean } from '../lab/template.ts';
import { formatDuration, parseDuration, ROLE_NAME } from '../lab/validate.ts';
import { describe, isMapping, parseYaml, pathText, sortProblems, type SourceDoc, type YamlPath } from '../lab/yaml.ts';
import { parseAnsibleIni, parseAnsibleYaml } from './ansible.ts';
import { ansibleHosts } from './ansible-inventory.ts';
import { ENV_NAME, HOST_NAME, INTERFACE_NAME, MAX_CONNECT_TIMEOUT_MS, USER_NAME, type Inventory, type InventoryHost } from './inventory-host.ts';
import { SshTransport, type HostKeyPolicy, type SshEndpoint } from './ssh.ts';

export type { Inventory, InventoryHost } from './inventory-host.ts';

const HOST_KEY_POLICIES = ['check', 'accept-new'] as const satisfies readonly HostKeyPolicy[];

const ROOT_KEYS = ['defaults', 'hosts', 'groups'];
/** How to log in: allowed on a host, in `defaults` and (but for `jump` itself) on a jump host. */
const LOGIN_KEYS = ['port', 'user', 'identity', 'agent', 'password_env', 'known_hosts', 'host_key', 'connect_timeout'];
const JUMP_KEYS = ['address', ...LOGIN_KEYS];
const DEFAULT_KEYS = [...LOGIN_KEYS, 'jump', 'sudo', 'interface'];
const HOST_KEYS = ['address', 'lab_address', ...LOGIN_KEYS, 'jump', 'sudo', 'interface', 'aliases', 'local', 'vars'];

const BUILTIN = {
  port: 22,
  user: 'root',
  hostKey: 'check' as HostKeyPolicy,
  connectTimeoutMs: 10_000,
};

export interface InventoryOptions {
  /** what `~` expands to (default: the user's home) */
  home?: string;
}

/** Read and validate an inventory file: INVENTORY_NOT_FOUND, LAB_YAML or INVENTORY_INVALID. */
export async function readInventory(file: string, options: InventoryOptions = {}): Promise<Inventory> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (e) {
    const code = (e as { code?: string }).code;
    if (code === 'ENOENT') throw new LabError('INVENTORY_NOT_FOUND', `Cannot find inventory "${file}"`);
    throw new LabError('INVENTORY_UNREADABLE', `Cannot read inventory "${file}": ${(e as Error).message}`);
  }
  return loadInventory(file, text, options);
}

/**
 * Validate inventory text; `file` names it in messages and anchors relative
 * paths. Three formats: lab's own (YAML with `hosts:` of hosts with an
 * `address`), and Ansible's YAML and INI, read as Ansible writes them. A
 * `.yaml`, `.yml` or `.json` file is YAML; anything else is INI, as Ansible's
 * `hosts` files are.
 */
export function loadInventory(file: string, text: string, options: InventoryOptions = {}): Inventory {
  const home = options.home ?? homedir();
  if (!['.yaml', '.yml', '.json'].includes(extname(file))) {
    const r = ansibleHosts(parseAnsibleIni(file, text), { home, dir: dirname(file) });
    return checked(file, 'ansible-ini', r);
  }
  const sd = parseYaml(file, text);
  if (!isLabFormat(sd.value)) {
    const r = ansibleHosts(parseAnsibleYaml(file, text, sd), { home, dir: dirname(file) });
    return checked(file, 'ansible-yaml', r);
  }
  const ctx = new Checker(sd, dirname(file), home);
  const hosts = readDocument(ctx, sd.value);
  const groups = readGroups(ctx, sd.value, hosts);
  return checked(file, 'lab', { hosts, groups, problems: ctx.problems });
}

function checked(
  file: string,
  format: Inventory['format'],
  r: { hosts: Record<string, InventoryHost>; groups: Record<string, string[]>; problems: LabProblem[] },
): Inventory {
  if (r.problems.length) throw new LabError('INVENTORY_INVALID', `${file}: invalid inventory`, sortProblems(r.problems));
  return { file, format, hosts: r.hosts, groups: r.groups };
}

/** lab's own format has `hosts:` (and only `defaults:`/`groups:` beside it); an Ansible YAML inventory has groups at the top. */
function isLabFormat(value: unknown): boolean {
  if (!isMapping(value)) return true;
  const keys = Object.keys(value);
  return keys.includes('hosts') || keys.includes('defaults') || !keys.length;
}

/**
 * Every host is a group of its own name (so a one-host role needs no
 * `groups:`); `groups:` names more, each a list of host names.
 */
function readGroups(ctx: Checker, value: unknown, hosts: Record<string, InventoryHost>): Record<string, string[]> {
  const groups: Record<string, string[]> = { all: Object.keys(hosts) };
  for (const name of Object.keys(hosts)) groups[name] = [name];
  if (!isMapping(value) || value.groups === undefined || value.groups === null) return groups;
  if (!isMapping(value.groups)) {
    ctx.mustBe(['groups'], 'a mapping of group names to lists of host names', value.groups);
    return groups;
  }
  for (const [group, members] of Object.entries(value.groups)) {
    const path = ['groups', group];
    if (!ROLE_NAME.test(group)) ctx.atKey(['groups'], group, `Invalid group name ${quote(group)}: use lowercase letters, digits and "-", starting with a letter`);
    else if (groups[group] && hosts[group]) ctx.atKey(['groups'], group, `Group ${quote(group)} has the name of a host: a host is already a group of its own name`);
    if (!Array.isArray(members) || !members.length) {
      ctx.mustBe(path, 'a non-empty list of host names', members);
      continue;
    }
    const list: string[] = [];
    for (const [i, m] of members.entries()) {
      if (typeof m !== 'string' || !(m in hosts)) {
        const guess = typeof m === 'string' ? didYouMean(m, Object.keys(hosts)) : undefined;
        ctx.at([...path, i], `Unknown host ${describe(m)}${guess ? `: did you mean ${quote(guess)}?` : ': list hosts named under "hosts"'}`);
      } else if (list.includes(m)) ctx.at([...path, i], `Host ${quote(m)} is listed twice`);
      else list.push(m);
    }
    groups[group] = list;
  }
  return groups;
}

/** The SSH transport for an inventory host, named `label` in messages; `acceptNewHostKeys` is `--accept-new-host-keys`. */
export function inventoryTransport(host: InventoryHost, label: string, options: { acceptNewHostKeys?: boolean } = {}): SshTransport {
  const policy = (p: HostKeyPolicy): HostKeyPolicy => (options.acceptNewHostKeys ? 'accept-new' : p);
  return new SshTransport({
    role: label,
    address: host.address,
    port: host.port,
    user: host.user,
    identity: host.identity,
    agent: host.agent,
    passwordEnv: host.passwordEnv,
    knownHosts: host.knownHosts,
    hostKey: policy(host.hostKey),
    connectTimeoutMs: host.connectTimeoutMs,
    jump: host.jump && { ...host.jump, hostKey: policy(host.jump.hostKey) },
    sudo: host.sudo,
    localNamespace: host.local,
  });
}

// ---- reading ----

type Mapping = Record<string, unknown>;

/** The login settings as written (undefined = not given), before merging. */
interface LoginFields {
  port?: number;
  user?: string;
  identity?: string;
  agent?: boolean;
  passwordEnv?: string;
  knownHosts?: string;
  hostKey?: HostKeyPolicy;
  connectTimeoutMs?: number;
}

interface SectionFields extends LoginFields {
  jump?: { fields: LoginFields & { address?: string }; path: YamlPath };
  sudo?: boolean;
  interface?: string;
}

function readDocument(ctx: Checker, value: unknown): Record<string, InventoryHost> {
  const hosts: Record<string, InventoryHost> = {};
  if (!isMapping(value)) {
    ctx.mustBe([], 'a mapping with "hosts"', value);
    return hosts;
  }
  const root = ctx.mapping([], value, ROOT_KEYS, ['hosts']);
  if (!root) return hosts;
  let defaults: SectionFields = {};
  if (root.defaults !== undefined && root.defaults !== null) {
    const body = ctx.mapping(['defaults'], root.defaults, DEFAULT_KEYS);
    if (body) defaults = readSection(ctx, ['defaults'], body);
  }
  if (root.hosts === undefined) return hosts;
  const path = ['hosts'];
  if (!isMapping(root.hosts)) {
    ctx.mustBe(path, 'a mapping of role names to hosts', root.hosts);
    return hosts;
  }
  if (!Object.keys(root.hosts).length) {
    ctx.at(path, 'Must name at least one host: got an empty mapping');
    return hosts;
  }
  for (const [role, body] of Object.entries(root.hosts)) {
    if (!ROLE_NAME.test(role)) {
      ctx.atKey(path, role, `Invalid host name ${quote(role)}: use lowercase letters, digits and "-", starting with a letter`);
    }
    const host = readHost(ctx, [...path, role], role, body, defaults);
    if (host) hosts[role] = host;
  }
  return hosts;
}

function readSection(ctx: Checker, path: YamlPath, body: Mapping): SectionFields {
  const fields: SectionFields = readLogin(ctx, path, body);
  if (body.jump !== undefined) {
    const jumpPath = [...path, 'jump'];
    const jump = ctx.mapping(jumpPath, body.jump, JUMP_KEYS, ['address']);
    if (jump) {
      const address = jump.address === undefined ? undefined : ctx.address([...jumpPath, 'address'], jump.address);
      fields.jump = { fields: { ...readLogin(ctx, jumpPath, jump), address }, path: jumpPath };
    }
  }
  if (body.sudo !== undefined) fields.sudo = ctx.bool([...path, 'sudo'], body.sudo);
  if (body.interface !== undefined) {
    const name = ctx.string([...path, 'interface'], body.interface);
    if (name !== undefined && !INTERFACE_NAME.test(name)) {
      ctx.mustBe([...path, 'interface'], 'an interface name (up to 15 letters, digits, "_", ".", "-")', name);
    } else fields.interface = name;
  }
  return fields;
}

function readLogin(ctx: Checker, path: YamlPath, body: Mapping): LoginFields {
  const at = (key: string): YamlPath => [...path, key];
  const fields: LoginFields = {};
  if (body.port !== undefined) fields.port = ctx.int(at('port'), body.port, 1, 65535);
  if (body.user !== undefined) {
    const user = ctx.string(at('user'), body.user);
    if (user !== undefined && !USER_NAME.test(user)) ctx.mustBe(at('user'), 'a user name (letters, digits, "_", ".", "-")', user);
    else fields.user = user;
  }
  if (body.identity !== undefined) fields.identity = ctx.path(at('identity'), body.identity);
  if (body.agent !== undefined) fields.agent = ctx.bool(at('agent'), body.agent);
  if (body.password_env !== undefined) {
    const name = ctx.string(at('password_env'), body.password_env);
    if (name !== undefined && !ENV_NAME.test(name)) {
      ctx.mustBe(at('password_env'), 'the name of an environment variable (letters, digits and "_"), not a password', name);
    } else fields.passwordEnv = name;
  }
  if (body.known_hosts !== undefined) fields.knownHosts = ctx.path(at('known_hosts'), body.known_hosts);
  if (body.host_key !== undefined) fields.hostKey = ctx.choice(at('host_key'), body.host_key, HOST_KEY_POLICIES, 'host_key policy');
  if (body.connect_timeout !== undefined) {
    fields.connectTimeoutMs = ctx.duration(at('connect_timeout'), body.connect_timeout, MAX_CONNECT_TIMEOUT_MS);
  }
  return fields;
}

function readHost(ctx: Checker, path: YamlPath, role: string, value: unknown, defaults: SectionFields): InventoryHost | undefined {
  const body = ctx.mapping(path, value, HOST_KEYS, ['address']);
  if (!body) return undefined;
  const own = readSection(ctx, path, body);
  const address = body.address === undefined ? undefined : ctx.address([...path, 'address'], body.address);
  let labAddress: string | undefined;
  if (body.lab_address !== undefined) labAddress = ctx.ipv4([...path, 'lab_address'], body.lab_address);
  else if (address !== undefined && !isIPv4(address)) {
    ctx.at([...path, 'address'], `Missing "lab_address": lab traffic needs an IPv4 address, and "address" is ${quote(address)}`);
  } else labAddress = address;
  const aliases: string[] = [];
  if (body.aliases !== undefined && body.aliases !== null) {
    if (!Array.isArray(body.aliases)) ctx.mustBe([...path, 'aliases'], 'a list of IPv4 addresses', body.aliases);
    else {
      const seen = new Set<string>();
      for (const [i, a] of body.aliases.entries()) {
        const alias = ctx.ipv4([...path, 'aliases', i], a);
        if (alias === undefined) continue;
        const owner = ctx.aliasOwner.get(alias);
        if (seen.has(alias)) ctx.at([...path, 'aliases', i], `Alias ${quote(alias)} is listed twice`);
        else if (owner !== undefined) ctx.at([...path, 'aliases', i], `Alias ${quote(alias)} is already an alias of host ${quote(owner)}`);
        seen.add(alias);
        ctx.aliasOwner.set(alias, role);
        aliases.push(alias);
      }
    }
  }
  const local = body.local === undefined ? false : ctx.bool([...path, 'local'], body.local);
  const vars: Record<string, string> = {};
  if (body.vars !== undefined && body.vars !== null) {
    if (!isMapping(body.vars)) ctx.mustBe([...path, 'vars'], 'a mapping of variable names to values', body.vars);
    else {
      for (const [k, v] of Object.entries(body.vars)) {
        if (typeof v === 'string' || typeof v === 'number' || typeof v === 'boolean') vars[k] = String(v);
        else ctx.mustBe([...path, 'vars', k], 'a string, a number or true/false', v);
      }
    }
  }

  const login = mergeLogin(own, defaults, resolve(ctx.home, '.ssh/known_hosts'));
  if (login.identity === undefined && !login.agent && login.passwordEnv === undefined) {
    ctx.at(path, 'No way to log in: set "identity", "agent: true" or "password_env" (on the host or in "defaults")');
  }
  const jumpSpec = own.jump ?? defaults.jump;
  let jump: SshEndpoint | undefined;
  if (jumpSpec?.fields.address !== undefined) {
    // A jump host logs in like its target, but on its own port.
    const j = jumpSpec.fields;
    jump = {
      address: j.address!,
      port: j.port ?? BUILTIN.port,
      user: j.user ?? login.user,
      agent: j.agent ?? login.agent,
      knownHosts: j.knownHosts ?? login.knownHosts,
      hostKey: j.hostKey ?? login.hostKey,
      connectTimeoutMs: j.connectTimeoutMs ?? login.connectTimeoutMs,
    };
    const identity = j.identity ?? login.identity;
    if (identity !== undefined) jump.identity = identity;
    const passwordEnv = j.passwordEnv ?? login.passwordEnv;
    if (passwordEnv !== undefined) jump.passwordEnv = passwordEnv;
  }
  if (address === undefined || labAddress === undefined) return undefined;
  const host: InventoryHost = {
    name: role,
    address,
    labAddress,
    ...login,
    sudo: own.sudo ?? defaults.sudo ?? false,
    aliases,
    local: local ?? false,
    where: ctx.where(path),
    vars,
  };
  if (jump) host.jump = jump;
  const iface = own.interface ?? defaults.interface;
  if (iface !== undefined) host.interface = iface;
  return host;
}

function mergeLogin(own: LoginFields, defaults: LoginFields, knownHosts: string): Omit<SshEndpoint, 'address'> {
  const merged: Omit<SshEndpoint, 'address'> = {
    port: own.port ?? defaults.port ?? BUILTIN.port,
    user: own.user ?? defaults.user ?? BUILTIN.user,
    agent: own.agent ?? defaults.agent ?? false,
    knownHosts: own.knownHosts ?? defaults.knownHosts ?? knownHosts,
    hostKey: own.hostKey ?? defaults.hostKey ?? BUILTIN.hostKey,
    connectTimeoutMs: own.connectTimeoutMs ?? defaults.connectTimeoutMs ?? BUILTIN.connectTimeoutMs,
  };
  const identity = own.identity ?? defaults.identity;
  if (identity !== undefined) merged.identity = identity;
  const passwordEnv = own.passwordEnv ?? defaults.passwordEnv;
  if (passwordEnv !== undefined) merged.passwordEnv = passwordEnv;
  return merged;
}

// ---- checking values (messages worded like the lab file's) ----

class Checker {
  problems: LabProblem[] = [];
  /** which host each alias was first listed on: an address can be an alias of one host only */
  aliasOwner = new Map<string, string>();
  constructor(
    readonly sd: SourceDoc,
    readonly dir: string,
    readonly home: string,
  ) {}

  at(path: YamlPath, message: string): void {
    this.problems.push(this.sd.problem(path, message));
  }

  atKey(parent: YamlPath, key: string, message: string): void {
    const { line, col } = this.sd.locate([...parent, key], true);
    this.problems.push({ file: this.sd.file, line, col, path: pathText(parent), message });
  }

  where(path: YamlPath): string {
    const { line, col } = this.sd.locate(path, true);
    return `${this.sd.file}:${line}:${col}`;
  }

  mustBe(path: YamlPath, what: string, v: unknown): undefined {
    this.at(path, `Must be ${what}: got ${describe(v)}`);
    return undefined;
  }

  mapping(path: YamlPath, v: unknown, keys: readonly string[], required: readonly string[] = []): Mapping | undefined {
    if (!isMapping(v)) return this.mustBe(path, 'a mapping', v);
    for (const k of Object.keys(v)) {
      if (keys.includes(k)) continue;
      const guess = didYouMean(k, keys);
      const hint = guess ? `did you mean ${quote(guess)}?` : `expected one of ${keys.map(quote).join(', ')}`;
      this.atKey(path, k, `Unknown key ${quote(k)}: ${hint}`);
    }
    const missing = required.filter((k) => v[k] === undefined);
    if (missing.length) this.at(path, `Missing required key${missing.length > 1 ? 's' : ''} ${missing.map(quote).join(', ')}`);
    return v;
  }

  string(path: YamlPath, v: unknown): string | undefined {
    if (typeof v !== 'string' || v === '') return this.mustBe(path, 'a non-empty string', v);
    return v;
  }

  int(path: YamlPath, v: unknown, min: number, max: number): number | undefined {
    if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) {
      return this.mustBe(path, `an integer from ${min} to ${max}`, v);
    }
    return v;
  }

  bool(path: YamlPath, v: unknown): boolean | undefined {
    if (typeof v !== 'boolean') return this.mustBe(path, 'true or false', v);
    return v;
  }

  duration(path: YamlPath, v: unknown, max: number): number | undefined {
    const ms = parseDuration(v);
    if (ms === undefined) return this.mustBe(path, 'a duration like "500ms", "10s" or "1m", or a number of seconds', v);
    if (ms <= 0) return this.mustBe(path, 'more than 0', v);
    if (ms > max) return this.mustBe(path, `at most ${formatDuration(max)}`, v);
    return ms;
  }

  choice<T extends string>(path: YamlPath, v: unknown, choices: readonly T[], what: string): T | undefined {
    const s = this.string(path, v);
    if (s === undefined) return undefined;
    if ((choices as readonly string[]).includes(s)) return s as T;
    const guess = didYouMean(s, choices);
    this.at(path, `Unknown ${what} ${quote(s)}: ${guess ? `did you mean ${quote(guess)}?` : `expected one of ${choices.map(quote).join(', ')}`}`);
    return undefined;
  }

  /** Where SSH connects: an IP address or a host name. */
  address(path: YamlPath, v: unknown): string | undefined {
    const s = typeof v === 'string' ? v : undefined;
    if (s === undefined || !(isIP(s) || HOST_NAME.test(s))) return this.mustBe(path, 'an IP address or a host name', v);
    return s;
  }

  ipv4(path: YamlPath, v: unknown): string | undefined {
    if (typeof v !== 'string' || !isIPv4(v)) return this.mustBe(path, 'an IPv4 address', v);
    return v;
  }

  /** A file path: `~` is the home directory, a relative path is relative to the inventory. */
  path(path: YamlPath, v: unknown): string | undefined {
    const s = this.string(path, v);
    if (s === undefined) return undefined;
    if (s === '~') return this.home;
    if (s.startsWith('~/')) return resolve(this.home, s.slice(2));
    return resolve(this.dir, s);
  }
}



function quote(s: string): string {
  return JSON.stringify(s);
}

