// What an Ansible inventory's variables mean to lab: the connection variables
// map onto the SSH transport's settings (the same InventoryHost lab's own
// format gives), `lab_*` variables add what Ansible has no word for (lab
// address, interface, aliases), any other `ansible_*` variable is an error at
// its file:line (never silently ignored), and the rest are the host's own
// variables, which `--each` hands to a lab's templates.

import { userInfo } from 'node:os';
import { isIP, isIPv4 } from 'node:net';
import { resolve } from 'node:path';
import type { LabProblem, SourcePos } from '../errors.ts';
import { didYouMean } from '../files/names.ts';
import { formatDuration, parseDuration } from '../files/durations.ts';
import { groupMembers, hostVars, type AnsibleDoc, type AnsibleVar } from './ansible.ts';
import type { HostKeyPolicy, SshEndpoint } from './ssh.ts';
import {
  ENV_NAME,
  HOST_NAME,
  INTERFACE_NAME,
  MAX_CONNECT_TIMEOUT_MS,
  USER_NAME,
  type InventoryHost,
} from './inventory-host.ts';

/** The connection variables lab reads, with the older names Ansible still accepts. */
const CONNECTION_VARS: Record<string, string> = {
  ansible_host: 'ansible_host',
  ansible_ssh_host: 'ansible_host',
  ansible_port: 'ansible_port',
  ansible_ssh_port: 'ansible_port',
  ansible_user: 'ansible_user',
  ansible_ssh_user: 'ansible_user',
  ansible_ssh_private_key_file: 'ansible_ssh_private_key_file',
  ansible_private_key_file: 'ansible_ssh_private_key_file',
  ansible_become: 'ansible_become',
  ansible_become_user: 'ansible_become_user',
  ansible_become_method: 'ansible_become_method',
  ansible_ssh_common_args: 'ansible_ssh_common_args',
  ansible_connection: 'ansible_connection',
};

/** lab's own words in an Ansible inventory. */
const LAB_VARS = ['lab_address', 'lab_interface', 'lab_aliases', 'lab_local', 'lab_host_key', 'lab_connect_timeout', 'lab_password_env', 'lab_passphrase_env', 'lab_agent'];

/** Why some Ansible variables cannot be honoured, so the message says what to do instead. */
const UNSUPPORTED_HINTS: Record<string, string> = {
  ansible_password: 'lab never reads passwords from an inventory: name an environment variable with "lab_password_env"',
  ansible_ssh_pass: 'lab never reads passwords from an inventory: name an environment variable with "lab_password_env"',
  ansible_become_password: 'lab needs passwordless sudo',
  ansible_become_pass: 'lab needs passwordless sudo',
  ansible_python_interpreter: 'lab runs its agent with the "python3" on the host\'s PATH',
  ansible_ssh_extra_args: 'lab reads only "-o UserKnownHostsFile", "-o StrictHostKeyChecking" and "-J"/"ProxyJump", from "ansible_ssh_common_args"',
  ansible_ssh_args: 'lab reads only "-o UserKnownHostsFile", "-o StrictHostKeyChecking" and "-J"/"ProxyJump", from "ansible_ssh_common_args"',
};

const quote = (s: string) => JSON.stringify(s);

/** Checks one value at its position; problems are collected, never thrown. */
class VarChecker {
  problems: LabProblem[] = [];
  constructor(readonly host: string) {}

  /** A problem where the variable is written (a group's vars too), or at the host for a variable it lacks. */
  at(v: AnsibleVar | { pos: SourcePos }, name: string, message: string): undefined {
    this.problems.push({ ...v.pos, path: 'path' in v ? v.path : `${this.host}.${name}`, message });
    return undefined;
  }

  mustBe(v: AnsibleVar, name: string, what: string): undefined {
    return this.at(v, name, `Must be ${what}: got ${describeValue(v.value)}`);
  }

  string(v: AnsibleVar, name: string): string | undefined {
    const s = typeof v.value === 'number' ? String(v.value) : v.value;
    if (typeof s !== 'string' || s === '') return this.mustBe(v, name, 'a non-empty string');
    if (s.includes('{{') || s.includes('{%')) {
      return this.at(v, name, `lab does not evaluate Jinja2 in inventories: got ${quote(s)}; write the value itself`);
    }
    return s;
  }

  int(v: AnsibleVar, name: string, min: number, max: number): number | undefined {
    const n = typeof v.value === 'string' && /^\d+$/.test(v.value.trim()) ? Number(v.value) : v.value;
    if (typeof n !== 'number' || !Number.isInteger(n) || n < min || n > max) return this.mustBe(v, name, `an integer from ${min} to ${max}`);
    return n;
  }

  /** Ansible's booleans: true/false, yes/no, on/off, 1/0, any case. */
  bool(v: AnsibleVar, name: string): boolean | undefined {
    if (typeof v.value === 'boolean') return v.value;
    if (typeof v.value !== 'string' && typeof v.value !== 'number') return this.mustBe(v, name, 'a boolean (true or false)');
    const s = String(v.value).trim().toLowerCase();
    if (['true', 'yes', 'on', '1', 'y', 't'].includes(s)) return true;
    if (['false', 'no', 'off', '0', 'n', 'f'].includes(s)) return false;
    return this.mustBe(v, name, 'a boolean (true or false)');
  }
}

function describeValue(v: unknown): string {
  if (v === null || v === undefined) return 'nothing';
  if (typeof v === 'string') return quote(v);
  if (Array.isArray(v)) return 'a list';
  if (typeof v === 'object') return 'a mapping';
  return String(v);
}

export interface AnsibleHostsOptions {
  /** what `~` expands to */
  home: string;
  /** the inventory's directory: relative key files are relative to it */
  dir: string;
}

/** The hosts and groups of an Ansible inventory, as lab's Inventory has them, and every problem found. */
export function ansibleHosts(doc: AnsibleDoc, options: AnsibleHostsOptions): {
  hosts: Record<string, InventoryHost>;
  groups: Record<string, string[]>;
  problems: LabProblem[];
} {
  const problems = [...doc.problems];
  // A group variable is checked once per host it reaches, but is one mistake: said once.
  const said = new Set<string>();
  const add = (list: LabProblem[]) => {
    for (const p of list) {
      const key = `${p.file}:${p.line}:${p.col}:${p.message}`;
      if (!said.has(key)) (said.add(key), problems.push(p));
    }
  };
  const hosts: Record<string, InventoryHost> = {};
  const owner = new Map<string, string>();
  const aliasOwner = new Map<string, string>();
  for (const name of doc.hosts.keys()) {
    const c = new VarChecker(name);
    const host = readHost(c, name, doc, options, aliasOwner);
    add(c.problems);
    if (!host) continue;
    // Two names for one machine would share its journal and lock: one run would fight itself.
    const key = `${host.address}:${host.port}`;
    const first = owner.get(key);
    if (first !== undefined) {
      problems.push({ ...doc.hosts.get(name)!.pos, path: name, message: `Host ${quote(name)} is the same machine as host ${quote(first)} (${key}): name each machine once` });
      continue;
    }
    owner.set(key, name);
    hosts[name] = host;
  }
  const groups: Record<string, string[]> = {};
  for (const g of doc.groups.keys()) groups[g] = groupMembers(doc, g);
  return { hosts, groups, problems };
}

function readHost(
  c: VarChecker,
  name: string,
  doc: AnsibleDoc,
  options: AnsibleHostsOptions,
  aliasOwner: Map<string, string>,
): InventoryHost | undefined {
  const def = doc.hosts.get(name)!;
  const raw = hostVars(doc, name);
  // Older names fold into the current ones; a host var still beats a group var of the other spelling.
  const conn = new Map<string, { v: AnsibleVar; as: string }>();
  const lab = new Map<string, AnsibleVar>();
  const vars: Record<string, string> = {};
  for (const [k, v] of raw) {
    if (CONNECTION_VARS[k]) {
      conn.set(CONNECTION_VARS[k]!, { v, as: k });
    } else if (k.startsWith('lab_')) {
      if (LAB_VARS.includes(k)) lab.set(k, v);
      else {
        const guess = didYouMean(k, LAB_VARS);
        c.at(v, k, `Unknown lab variable ${quote(k)}: ${guess ? `did you mean ${quote(guess)}?` : `expected one of ${LAB_VARS.map(quote).join(', ')}`}`);
      }
    } else if (k.startsWith('ansible_')) {
      const hint = UNSUPPORTED_HINTS[k] ?? `lab reads ${[...new Set(Object.values(CONNECTION_VARS))].map(quote).join(', ')}`;
      c.at(v, k, `Unsupported Ansible variable ${quote(k)}: ${hint}`);
    } else if (typeof v.value === 'string' || typeof v.value === 'number' || typeof v.value === 'boolean') {
      vars[k] = String(v.value);
    }
  }
  const get = (k: string) => conn.get(k);
  const str = (k: string) => {
    const e = get(k);
    return e && c.string(e.v, e.as);
  };

  // Where SSH connects: ansible_host, else the inventory name itself (as Ansible does).
  let address: string | undefined;
  const hostVar = get('ansible_host');
  if (hostVar) {
    const s = c.string(hostVar.v, hostVar.as);
    if (s !== undefined && !(isIP(s) || HOST_NAME.test(s))) c.mustBe(hostVar.v, hostVar.as, 'an IP address or a host name');
    else address = s;
  } else if (isIP(name) || HOST_NAME.test(name)) address = name;
  else c.at(def, 'ansible_host', `Host ${quote(name)} is not an address: set "ansible_host"`);

  const portVar = get('ansible_port');
  const port = portVar ? c.int(portVar.v, portVar.as, 1, 65535) : 22;

  let user = userInfo().username;
  const userVar = get('ansible_user');
  if (userVar) {
    const s = c.string(userVar.v, userVar.as);
    if (s !== undefined && !USER_NAME.test(s)) c.mustBe(userVar.v, userVar.as, 'a user name (letters, digits, "_", ".", "-")');
    else if (s !== undefined) user = s;
  }

  const path = (s: string) => (s === '~' ? options.home : s.startsWith('~/') ? resolve(options.home, s.slice(2)) : resolve(options.dir, s));
  const keyVar = get('ansible_ssh_private_key_file');
  const identityText = str('ansible_ssh_private_key_file');
  if (identityText !== undefined && /[\n\r\0]/.test(identityText)) c.mustBe(keyVar!.v, keyVar!.as, 'a file path on one line');
  const identity = identityText !== undefined && !/[\n\r\0]/.test(identityText) ? path(identityText) : undefined;

  const connection = str('ansible_connection');
  if (connection !== undefined && !['ssh', 'smart', 'paramiko'].includes(connection)) {
    const e = get('ansible_connection')!;
    c.at(e.v, e.as, `Unsupported connection ${quote(connection)}: lab reaches inventory hosts over SSH only`);
  }

  // become: lab needs root; sudo is the one way it gets there.
  let sudo = false;
  const becomeVar = get('ansible_become');
  const become = becomeVar ? c.bool(becomeVar.v, becomeVar.as) : false;
  const becomeUser = str('ansible_become_user');
  if (becomeUser !== undefined && becomeUser !== 'root') {
    const e = get('ansible_become_user')!;
    c.at(e.v, e.as, `Unsupported become user ${quote(becomeUser)}: lab changes sysctls and needs root`);
  }
  const method = str('ansible_become_method');
  if (method !== undefined && method !== 'sudo') {
    const e = get('ansible_become_method')!;
    c.at(e.v, e.as, `Unsupported become method ${quote(method)}: lab uses "sudo -n"`);
  }
  if (become && user !== 'root') sudo = true;

  let knownHosts = resolve(options.home, '.ssh/known_hosts');
  let hostKey: HostKeyPolicy = 'check';
  let jumpText: { text: string; v: AnsibleVar; as: string } | undefined;
  const argsVar = get('ansible_ssh_common_args');
  if (argsVar) {
    const args = c.string(argsVar.v, argsVar.as);
    if (args !== undefined) {
      const parsed = parseSshArgs(args);
      if ('error' in parsed) c.at(argsVar.v, argsVar.as, parsed.error);
      else {
        if (parsed.knownHosts !== undefined) knownHosts = path(parsed.knownHosts);
        if (parsed.hostKey !== undefined) hostKey = parsed.hostKey;
        if (parsed.jump !== undefined) jumpText = { text: parsed.jump, v: argsVar.v, as: argsVar.as };
      }
    }
  }

  const labVar = (k: string) => lab.get(k);
  let labAddress: string | undefined;
  const la = labVar('lab_address');
  if (la) {
    const s = c.string(la, 'lab_address');
    if (s !== undefined && !isIPv4(s)) c.mustBe(la, 'lab_address', 'an IPv4 address');
    else labAddress = s;
  } else if (address !== undefined && isIPv4(address)) labAddress = address;
  else if (address !== undefined) {
    c.at(hostVar?.v ?? def, hostVar?.as ?? 'ansible_host', `Missing "lab_address": lab traffic needs an IPv4 address, and the host's address is ${quote(address)}`);
  }

  let iface: string | undefined;
  const ifv = labVar('lab_interface');
  if (ifv) {
    const s = c.string(ifv, 'lab_interface');
    if (s !== undefined && !INTERFACE_NAME.test(s)) c.mustBe(ifv, 'lab_interface', 'an interface name (up to 15 letters, digits, "_", ".", "-")');
    else iface = s;
  }

  const aliases: string[] = [];
  const av = labVar('lab_aliases');
  if (av) {
    // INI can only write a string: "198.19.1.1,198.19.1.2"; YAML may write a list.
    const items = Array.isArray(av.value) ? av.value : typeof av.value === 'string' ? av.value.split(',').map((s) => s.trim()).filter(Boolean) : undefined;
    if (!items) c.mustBe(av, 'lab_aliases', 'IPv4 addresses separated by ","');
    for (const a of items ?? []) {
      if (typeof a !== 'string' || !isIPv4(a)) {
        c.at(av, 'lab_aliases', `Must be IPv4 addresses separated by ",": got ${describeValue(a)}`);
        continue;
      }
      const first = aliasOwner.get(a);
      if (aliases.includes(a)) c.at(av, 'lab_aliases', `Alias ${quote(a)} is listed twice`);
      else if (first !== undefined) c.at(av, 'lab_aliases', `Alias ${quote(a)} is already an alias of host ${quote(first)}`);
      else {
        aliasOwner.set(a, name);
        aliases.push(a);
      }
    }
  }

  const lv = labVar('lab_local');
  const local = lv ? (c.bool(lv, 'lab_local') ?? false) : false;
  const hk = labVar('lab_host_key');
  if (hk) {
    const s = c.string(hk, 'lab_host_key');
    if (s === 'check' || s === 'accept-new') hostKey = s;
    else if (s !== undefined) c.mustBe(hk, 'lab_host_key', '"check" or "accept-new"');
  }
  let connectTimeoutMs = 10_000;
  const tv = labVar('lab_connect_timeout');
  if (tv) {
    const ms = parseDuration(tv.value);
    if (ms === undefined || ms <= 0 || ms > MAX_CONNECT_TIMEOUT_MS) c.mustBe(tv, 'lab_connect_timeout', `a duration from "1ms" to "${formatDuration(MAX_CONNECT_TIMEOUT_MS)}"`);
    else connectTimeoutMs = ms;
  }
  let passwordEnv: string | undefined;
  const pv = labVar('lab_password_env');
  if (pv) {
    const s = c.string(pv, 'lab_password_env');
    if (s !== undefined && !ENV_NAME.test(s)) c.mustBe(pv, 'lab_password_env', 'the name of an environment variable (letters, digits and "_"), not a password');
    else passwordEnv = s;
  }
  let passphraseEnv: string | undefined;
  const ppv = labVar('lab_passphrase_env');
  if (ppv) {
    const s = c.string(ppv, 'lab_passphrase_env');
    if (s !== undefined && !ENV_NAME.test(s)) c.mustBe(ppv, 'lab_passphrase_env', 'the name of an environment variable (letters, digits and "_"), not a passphrase');
    else passphraseEnv = s;
  }
  const agv = labVar('lab_agent');
  // Without a key file, ssh (and so Ansible) offers the keys of the running ssh-agent.
  const agent = agv ? (c.bool(agv, 'lab_agent') ?? false) : identity === undefined && passwordEnv === undefined;

  let jump: SshEndpoint | undefined;
  if (jumpText) {
    const m = /^(?:([^@\s]+)@)?([^@:\s]+)(?::(\d+))?$/.exec(jumpText.text);
    const jAddress = m?.[2];
    const jPort = m?.[3] === undefined ? 22 : Number(m[3]);
    const jUser = m?.[1] ?? user;
    if (!m || !jAddress || !(isIP(jAddress) || HOST_NAME.test(jAddress)) || !USER_NAME.test(jUser) || jPort < 1 || jPort > 65535) {
      c.at(jumpText.v, jumpText.as, `Invalid jump host ${quote(jumpText.text)}: write "[user@]host[:port]"`);
    } else {
      jump = { address: jAddress, port: jPort, user: jUser, agent, knownHosts, hostKey, connectTimeoutMs };
      if (identity !== undefined) jump.identity = identity;
      if (passwordEnv !== undefined) jump.passwordEnv = passwordEnv;
      if (passphraseEnv !== undefined) jump.passphraseEnv = passphraseEnv;
    }
  }

  if (address === undefined || labAddress === undefined || port === undefined) return undefined;
  const host: InventoryHost = {
    name,
    address,
    labAddress,
    port,
    user,
    agent,
    knownHosts,
    hostKey,
    connectTimeoutMs,
    sudo,
    aliases,
    local,
    where: `${def.pos.file}:${def.pos.line}:${def.pos.col}`,
    vars,
  };
  if (identity !== undefined) host.identity = identity;
  if (passwordEnv !== undefined) host.passwordEnv = passwordEnv;
  if (passphraseEnv !== undefined) host.passphraseEnv = passphraseEnv;
  if (jump) host.jump = jump;
  if (iface !== undefined) host.interface = iface;
  return host;
}

/**
 * The options of `ansible_ssh_common_args` that lab honours; anything else is
 * an error naming the option, so no setting is silently dropped.
 */
export function parseSshArgs(text: string): { knownHosts?: string; hostKey?: HostKeyPolicy; jump?: string } | { error: string } {
  const words = text.trim().split(/\s+/).filter(Boolean).map((w) => w.replace(/^(['"])(.*)\1$/, '$2'));
  const out: { knownHosts?: string; hostKey?: HostKeyPolicy; jump?: string } = {};
  const option = (kv: string): string | undefined => {
    const m = /^([A-Za-z]+)[= ](.+)$/.exec(kv);
    if (!m) return `Invalid ssh option ${quote(kv)}: write "-o Name=value"`;
    const [, key, value] = m as unknown as [string, string, string];
    switch (key.toLowerCase()) {
      case 'userknownhostsfile':
        if (/\s/.test(value)) return `lab reads one known_hosts file: got ${quote(value)}`;
        out.knownHosts = value;
        return undefined;
      case 'stricthostkeychecking': {
        const v = value.toLowerCase();
        if (v === 'yes') out.hostKey = 'check';
        else if (v === 'accept-new') out.hostKey = 'accept-new';
        else return `Unsupported "StrictHostKeyChecking=${value}": lab always checks host keys; use "yes" or "accept-new"`;
        return undefined;
      }
      case 'proxyjump':
        out.jump = value;
        return undefined;
      default:
        return `Unsupported ssh option ${quote(key)}: lab reads "UserKnownHostsFile", "StrictHostKeyChecking" and "ProxyJump" (or "-J")`;
    }
  };
  for (let i = 0; i < words.length; i++) {
    const w = words[i]!;
    let err: string | undefined;
    if (w === '-o' || w === '-J') {
      const next = words[++i];
      if (next === undefined) return { error: `"${w}" needs a value` };
      err = w === '-o' ? option(next) : ((out.jump = next), undefined);
    } else if (w.startsWith('-o')) err = option(w.slice(2));
    else if (w.startsWith('-J')) out.jump = w.slice(2);
    else err = `Unsupported ssh argument ${quote(w)}: lab reads "-o UserKnownHostsFile=…", "-o StrictHostKeyChecking=…" and "-J"/"-o ProxyJump=…"`;
    if (err) return { error: err };
  }
  if (out.jump !== undefined && out.jump.includes(',')) return { error: `lab supports one jump host: got ${quote(out.jump)}` };
  return out;
}
