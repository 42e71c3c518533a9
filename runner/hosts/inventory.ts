// Inventory file -> typed Inventory: which machine plays each lab role and how
// to reach it over SSH. Every problem is collected and reported at
// file:line:col before any host is touched, like a lab file's.

import { homedir } from 'node:os';
import { isIPv4 } from 'node:net';
import { dirname, extname, resolve } from 'node:path';
import { LabError, type LabProblem } from '../errors.ts';
import { Checker, type Mapping } from '../files/checker.ts';
import { isMapping, type DocPath } from '../files/document.ts';
import { quote } from '../files/quote.ts';
import { readUserFile } from '../files/read.ts';
import { parseYaml } from '../files/yaml.ts';
import { parseAnsibleIni, parseAnsibleYaml } from './ansible.ts';
import { ansibleHosts } from './ansible-inventory.ts';
import {
  checkAlias,
  checkConnectTimeout,
  checkHostKey,
  checkInterface,
  checkSecretEnv,
  checkPython,
  checkUser,
  DEFAULT_CONNECT_TIMEOUT_MS,
  type Inventory,
  type InventoryHost,
} from './inventory-host.ts';
import { SshTransport, type HostKeyAdded, type HostKeyPolicy, type SshEndpoint } from './ssh.ts';

export type { Inventory, InventoryHost } from './inventory-host.ts';

const ROOT_KEYS = ['defaults', 'hosts', 'groups'];
/** How to log in: allowed on a host, in `defaults` and (but for `jump` itself) on a jump host. */
const LOGIN_KEYS = ['port', 'user', 'identity', 'passphrase_env', 'agent', 'password_env', 'known_hosts', 'host_key', 'connect_timeout'];
const JUMP_KEYS = ['address', ...LOGIN_KEYS];
const DEFAULT_KEYS = [...LOGIN_KEYS, 'jump', 'sudo', 'interface', 'python'];
const HOST_KEYS = ['address', 'lab_address', ...LOGIN_KEYS, 'jump', 'sudo', 'interface', 'python', 'aliases', 'local', 'vars'];

const BUILTIN = {
  port: 22,
  user: 'root',
  hostKey: 'check' as HostKeyPolicy,
  connectTimeoutMs: DEFAULT_CONNECT_TIMEOUT_MS,
};

export interface InventoryOptions {
  /** what `~` expands to (default: the user's home) */
  home?: string;
}

/** Read and validate an inventory file: INVENTORY_NOT_FOUND, LAB_YAML or INVENTORY_INVALID. */
export async function readInventory(file: string, options: InventoryOptions = {}): Promise<Inventory> {
  return loadInventory(file, await readUserFile(file, { what: 'inventory', code: 'INVENTORY' }), options);
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
    return checked(file, 'ansible-ini', ansibleHosts(parseAnsibleIni(file, text), { home, dir: dirname(file) }));
  }
  const sd = parseYaml(file, text);
  if (!isLabFormat(sd.value)) {
    return checked(file, 'ansible-yaml', ansibleHosts(parseAnsibleYaml(file, text, sd), { home, dir: dirname(file) }));
  }
  const ctx: Reading = { check: new Checker(sd), dir: dirname(file), home, aliasOwner: new Map() };
  const hosts = readDocument(ctx, sd.value);
  const groups = readGroups(ctx, sd.value, hosts);
  if (!ctx.check.ok) throw new LabError('INVENTORY_INVALID', `${file}: invalid inventory`, ctx.check.problems);
  return { file, format: 'lab', hosts, groups };
}

/** An Ansible inventory's hosts, or its problems (in file order: the Checker sorted them). */
function checked(
  file: string,
  format: Inventory['format'],
  r: { hosts: Record<string, InventoryHost>; groups: Record<string, string[]>; problems: LabProblem[] },
): Inventory {
  if (r.problems.length) throw new LabError('INVENTORY_INVALID', `${file}: invalid inventory`, r.problems);
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
function readGroups(ctx: Reading, value: unknown, hosts: Record<string, InventoryHost>): Record<string, string[]> {
  const groups: Record<string, string[]> = { all: Object.keys(hosts) };
  for (const name of Object.keys(hosts)) groups[name] = [name];
  if (!isMapping(value) || value.groups === undefined || value.groups === null) return groups;
  if (!isMapping(value.groups)) {
    ctx.check.mustBe(['groups'], 'a mapping of group names to lists of host names', value.groups);
    return groups;
  }
  for (const [group, members] of Object.entries(value.groups)) {
    const path = ['groups', group];
    if (!ctx.check.roleName(['groups'], group)) continue;
    if (hosts[group]) ctx.check.atKey(['groups'], group, `Group ${quote(group)} has the name of a host: a host is already a group of its own name`);
    if (!Array.isArray(members) || !members.length) {
      ctx.check.mustBe(path, 'a non-empty list of host names', members);
      continue;
    }
    const list: string[] = [];
    for (const [i, m] of members.entries()) {
      if (typeof m !== 'string' || !(m in hosts)) ctx.check.at([...path, i], `Unknown host ${JSON.stringify(m)}: list hosts named under "hosts"`);
      else if (list.includes(m)) ctx.check.at([...path, i], `Host ${quote(m)} is listed twice`);
      else list.push(m);
    }
    groups[group] = list;
  }
  return groups;
}

/** How SSH host keys not yet known are met: every layer that opens inventory hosts passes these on. */
export interface HostKeyOptions {
  /** `--accept-new-host-keys`: trust and remember them */
  acceptNewHostKeys?: boolean;
  /** told each key trusted that way (the CLI says so, as OpenSSH's "Permanently added" does) */
  onHostKeyAdded?: (added: HostKeyAdded) => void;
}

/** The SSH transport for an inventory host. */
export function inventoryTransport(host: InventoryHost, role: string, options: HostKeyOptions = {}): SshTransport {
  const policy = (p: HostKeyPolicy): HostKeyPolicy => (options.acceptNewHostKeys ? 'accept-new' : p);
  return new SshTransport({
    role,
    address: host.address,
    port: host.port,
    user: host.user,
    identity: host.identity,
    agent: host.agent,
    passwordEnv: host.passwordEnv,
    passphraseEnv: host.passphraseEnv,
    knownHosts: host.knownHosts,
    hostKey: policy(host.hostKey),
    connectTimeoutMs: host.connectTimeoutMs,
    jump: host.jump && { ...host.jump, hostKey: policy(host.jump.hostKey) },
    sudo: host.sudo,
    localNamespace: host.local,
    ...(host.python !== undefined ? { python: host.python } : {}),
    ...(options.onHostKeyAdded ? { onHostKeyAdded: options.onHostKeyAdded } : {}),
  });
}

// ---- reading ----

/** The Checker, and what this inventory's values are read against. */
interface Reading {
  check: Checker;
  /** the inventory's directory: relative paths are relative to it */
  dir: string;
  /** what `~` expands to */
  home: string;
  /** which host each alias was first listed on: an address can be an alias of one host only */
  aliasOwner: Map<string, string>;
}

/** The login settings as written (undefined = not given), before merging. */
interface LoginFields {
  port?: number;
  user?: string;
  identity?: string;
  agent?: boolean;
  passwordEnv?: string;
  passphraseEnv?: string;
  knownHosts?: string;
  hostKey?: HostKeyPolicy;
  connectTimeoutMs?: number;
}

interface SectionFields extends LoginFields {
  jump?: { fields: LoginFields & { address?: string }; path: DocPath };
  sudo?: boolean;
  interface?: string;
  python?: string;
}

function readDocument(ctx: Reading, value: unknown): Record<string, InventoryHost> {
  const hosts: Record<string, InventoryHost> = {};
  if (!isMapping(value)) {
    ctx.check.mustBe([], 'a mapping with "hosts"', value);
    return hosts;
  }
  const root = ctx.check.mapping([], value, ROOT_KEYS, ['hosts']);
  if (!root) return hosts;
  let defaults: SectionFields = {};
  if (root.defaults !== undefined && root.defaults !== null) {
    const body = ctx.check.mapping(['defaults'], root.defaults, DEFAULT_KEYS);
    if (body) defaults = readSection(ctx, ['defaults'], body);
  }
  if (root.hosts === undefined) return hosts;
  const path = ['hosts'];
  if (!isMapping(root.hosts)) {
    ctx.check.mustBe(path, 'a mapping of role names to hosts', root.hosts);
    return hosts;
  }
  if (!Object.keys(root.hosts).length) {
    ctx.check.at(path, 'Must name at least one host: got an empty mapping');
    return hosts;
  }
  for (const [role, body] of Object.entries(root.hosts)) {
    ctx.check.roleName(path, role);
    const host = readHost(ctx, [...path, role], role, body, defaults);
    if (host) hosts[role] = host;
  }
  return hosts;
}

function readSection(ctx: Reading, path: DocPath, body: Mapping): SectionFields {
  const fields: SectionFields = readLogin(ctx, path, body);
  if (body.jump !== undefined) {
    const jumpPath = [...path, 'jump'];
    const jump = ctx.check.mapping(jumpPath, body.jump, JUMP_KEYS, ['address']);
    if (jump) {
      const address = jump.address === undefined ? undefined : ctx.check.address([...jumpPath, 'address'], jump.address);
      fields.jump = { fields: { ...readLogin(ctx, jumpPath, jump), address }, path: jumpPath };
    }
  }
  if (body.sudo !== undefined) fields.sudo = ctx.check.bool([...path, 'sudo'], body.sudo);
  if (body.interface !== undefined) fields.interface = checkInterface(ctx.check, [...path, 'interface'], body.interface);
  if (body.python !== undefined) fields.python = checkPython(ctx.check, [...path, 'python'], body.python);
  return fields;
}

function readLogin(ctx: Reading, path: DocPath, body: Mapping): LoginFields {
  const at = (key: string): DocPath => [...path, key];
  const fields: LoginFields = {};
  if (body.port !== undefined) fields.port = ctx.check.int(at('port'), body.port, 1, 65535);
  if (body.user !== undefined) fields.user = checkUser(ctx.check, at('user'), body.user);
  if (body.identity !== undefined) fields.identity = ctx.check.filePath(at('identity'), body.identity, ctx.dir, ctx.home);
  if (body.agent !== undefined) fields.agent = ctx.check.bool(at('agent'), body.agent);
  if (body.password_env !== undefined) fields.passwordEnv = checkSecretEnv(ctx.check, at('password_env'), body.password_env, 'password');
  if (body.passphrase_env !== undefined) fields.passphraseEnv = checkSecretEnv(ctx.check, at('passphrase_env'), body.passphrase_env, 'passphrase');
  if (body.known_hosts !== undefined) fields.knownHosts = ctx.check.filePath(at('known_hosts'), body.known_hosts, ctx.dir, ctx.home);
  if (body.host_key !== undefined) fields.hostKey = checkHostKey(ctx.check, at('host_key'), body.host_key);
  if (body.connect_timeout !== undefined) fields.connectTimeoutMs = checkConnectTimeout(ctx.check, at('connect_timeout'), body.connect_timeout);
  return fields;
}

function readHost(ctx: Reading, path: DocPath, role: string, value: unknown, defaults: SectionFields): InventoryHost | undefined {
  const body = ctx.check.mapping(path, value, HOST_KEYS, ['address']);
  if (!body) return undefined;
  const own = readSection(ctx, path, body);
  const address = body.address === undefined ? undefined : ctx.check.address([...path, 'address'], body.address);
  let labAddress: string | undefined;
  if (body.lab_address !== undefined) labAddress = ctx.check.ipv4([...path, 'lab_address'], body.lab_address);
  else if (address !== undefined && !isIPv4(address)) {
    ctx.check.at([...path, 'address'], `Missing "lab_address": lab traffic needs an IPv4 address, and "address" is ${quote(address)}`);
  } else labAddress = address;
  const aliases: string[] = [];
  if (body.aliases !== undefined && body.aliases !== null) {
    if (!Array.isArray(body.aliases)) ctx.check.mustBe([...path, 'aliases'], 'a list of IPv4 addresses', body.aliases);
    else for (const [i, a] of body.aliases.entries()) checkAlias(ctx.check, [...path, 'aliases', i], a, role, aliases, ctx.aliasOwner);
  }
  const local = body.local === undefined ? false : ctx.check.bool([...path, 'local'], body.local);
  const vars: Record<string, string> = {};
  if (body.vars !== undefined && body.vars !== null) {
    if (!isMapping(body.vars)) ctx.check.mustBe([...path, 'vars'], 'a mapping of variable names to values', body.vars);
    else {
      for (const [k, v] of Object.entries(body.vars)) {
        if (typeof v === 'string' || typeof v === 'number' || typeof v === 'boolean') vars[k] = String(v);
        else ctx.check.mustBe([...path, 'vars', k], 'a string, a number or true/false', v);
      }
    }
  }

  const login = mergeLogin(own, defaults, resolve(ctx.home, '.ssh/known_hosts'));
  if (login.identity === undefined && !login.agent && login.passwordEnv === undefined) {
    ctx.check.at(path, 'No way to log in: set "identity", "agent: true" or "password_env" (on the host or in "defaults")');
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
    // The passphrase belongs to the key: it goes with the identity it came with.
    const passphraseEnv = j.identity !== undefined ? j.passphraseEnv : (j.passphraseEnv ?? login.passphraseEnv);
    if (passphraseEnv !== undefined) jump.passphraseEnv = passphraseEnv;
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
    where: ctx.check.where(path),
    vars,
  };
  if (jump) host.jump = jump;
  const iface = own.interface ?? defaults.interface;
  if (iface !== undefined) host.interface = iface;
  const python = own.python ?? defaults.python;
  if (python !== undefined) host.python = python;
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
  const passphraseEnv = own.passphraseEnv ?? defaults.passphraseEnv;
  if (passphraseEnv !== undefined) merged.passphraseEnv = passphraseEnv;
  return merged;
}
