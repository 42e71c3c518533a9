// Inventory file -> typed Inventory: which machine plays each lab role and how
// to reach it over SSH. Every problem is collected and reported at
// file:line:col before any host is touched, like a lab file's.

import { homedir } from 'node:os';
import { isIPv4 } from 'node:net';
import { dirname, resolve } from 'node:path';
import { LabError } from '../errors.ts';
import { Checker, type Mapping } from '../files/checker.ts';
import { isMapping, type DocPath } from '../files/document.ts';
import { quote } from '../files/quote.ts';
import { readUserFile } from '../files/read.ts';
import { parseYaml } from '../files/yaml.ts';
import { SshTransport, type HostKeyPolicy, type SshEndpoint } from './ssh.ts';

export interface InventoryHost extends SshEndpoint {
  role: string;
  /** the address other hosts reach this one on for lab traffic */
  labAddress: string;
  jump?: SshEndpoint;
  sudo: boolean;
  /** the interface IP aliases go on */
  interface?: string;
  /** addresses the lab may add as IP aliases, in order */
  aliases: string[];
  /** a namespace on this machine (`lab hosts up`): global sysctls are the controller's */
  local: boolean;
  /** where the host is defined, "file:line:col", for messages */
  where: string;
}

export interface Inventory {
  file: string;
  hosts: Record<string, InventoryHost>;
}

const HOST_KEY_POLICIES = ['check', 'accept-new'] as const satisfies readonly HostKeyPolicy[];
const MAX_CONNECT_TIMEOUT_MS = 5 * 60_000;
/** What Linux takes for a device name (at most 15 bytes, no "/", ":" or space), and no leading "-" or ".". */
const INTERFACE_NAME = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,14}$/;
const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

const ROOT_KEYS = ['defaults', 'hosts'];
/** How to log in: allowed on a host, in `defaults` and (but for `jump` itself) on a jump host. */
const LOGIN_KEYS = ['port', 'user', 'identity', 'agent', 'password_env', 'known_hosts', 'host_key', 'connect_timeout'];
const JUMP_KEYS = ['address', ...LOGIN_KEYS];
const DEFAULT_KEYS = [...LOGIN_KEYS, 'jump', 'sudo', 'interface'];
const HOST_KEYS = ['address', 'lab_address', ...LOGIN_KEYS, 'jump', 'sudo', 'interface', 'aliases', 'local'];

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
  return loadInventory(file, await readUserFile(file, { what: 'inventory', code: 'INVENTORY' }), options);
}

/** Validate inventory text; `file` names it in messages and anchors relative paths. */
export function loadInventory(file: string, text: string, options: InventoryOptions = {}): Inventory {
  const sd = parseYaml(file, text);
  const ctx: Reading = { check: new Checker(sd), dir: dirname(file), home: options.home ?? homedir(), aliasOwner: new Map() };
  const hosts = readDocument(ctx, sd.value);
  if (!ctx.check.ok) throw new LabError('INVENTORY_INVALID', `${file}: invalid inventory`, ctx.check.problems);
  return { file, hosts };
}

/** The SSH transport for an inventory host; `acceptNewHostKeys` is `--accept-new-host-keys`. */
export function inventoryTransport(host: InventoryHost, role: string, options: { acceptNewHostKeys?: boolean } = {}): SshTransport {
  const policy = (p: HostKeyPolicy): HostKeyPolicy => (options.acceptNewHostKeys ? 'accept-new' : p);
  return new SshTransport({
    role,
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
  knownHosts?: string;
  hostKey?: HostKeyPolicy;
  connectTimeoutMs?: number;
}

interface SectionFields extends LoginFields {
  jump?: { fields: LoginFields & { address?: string }; path: DocPath };
  sudo?: boolean;
  interface?: string;
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
  if (body.interface !== undefined) {
    const name = ctx.check.string([...path, 'interface'], body.interface);
    if (name !== undefined && !INTERFACE_NAME.test(name)) {
      ctx.check.mustBe([...path, 'interface'], 'an interface name (up to 15 letters, digits, "_", ".", "-", not starting with "-" or ".")', name);
    } else fields.interface = name;
  }
  return fields;
}

function readLogin(ctx: Reading, path: DocPath, body: Mapping): LoginFields {
  const at = (key: string): DocPath => [...path, key];
  const fields: LoginFields = {};
  if (body.port !== undefined) fields.port = ctx.check.int(at('port'), body.port, 1, 65535);
  if (body.user !== undefined) {
    const user = ctx.check.line(at('user'), body.user);
    if (user !== undefined && !/^[^\s@:]+$/.test(user)) ctx.check.mustBe(at('user'), 'a user name without spaces, "@" or ":"', user);
    else fields.user = user;
  }
  if (body.identity !== undefined) fields.identity = ctx.check.filePath(at('identity'), body.identity, ctx.dir, ctx.home);
  if (body.agent !== undefined) fields.agent = ctx.check.bool(at('agent'), body.agent);
  if (body.password_env !== undefined) {
    const name = ctx.check.string(at('password_env'), body.password_env);
    if (name !== undefined && !ENV_NAME.test(name)) {
      ctx.check.mustBe(at('password_env'), 'the name of an environment variable (letters, digits and "_"), not a password', name);
    } else fields.passwordEnv = name;
  }
  if (body.known_hosts !== undefined) fields.knownHosts = ctx.check.filePath(at('known_hosts'), body.known_hosts, ctx.dir, ctx.home);
  if (body.host_key !== undefined) fields.hostKey = ctx.check.choice(at('host_key'), body.host_key, HOST_KEY_POLICIES, 'host_key policy');
  if (body.connect_timeout !== undefined) {
    fields.connectTimeoutMs = ctx.check.duration(at('connect_timeout'), body.connect_timeout, MAX_CONNECT_TIMEOUT_MS);
  }
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
    else {
      const seen = new Set<string>();
      for (const [i, a] of body.aliases.entries()) {
        const alias = ctx.check.ipv4([...path, 'aliases', i], a);
        if (alias === undefined) continue;
        const owner = ctx.aliasOwner.get(alias);
        if (seen.has(alias)) ctx.check.at([...path, 'aliases', i], `Alias ${quote(alias)} is listed twice`);
        else if (owner !== undefined) ctx.check.at([...path, 'aliases', i], `Alias ${quote(alias)} is already an alias of host ${quote(owner)}`);
        seen.add(alias);
        ctx.aliasOwner.set(alias, role);
        aliases.push(alias);
      }
    }
  }
  const local = body.local === undefined ? false : ctx.check.bool([...path, 'local'], body.local);

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
  }
  if (address === undefined || labAddress === undefined) return undefined;
  const host: InventoryHost = {
    role,
    address,
    labAddress,
    ...login,
    sudo: own.sudo ?? defaults.sudo ?? false,
    aliases,
    local: local ?? false,
    where: ctx.check.where(path),
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
