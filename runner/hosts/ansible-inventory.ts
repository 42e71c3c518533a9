// What an Ansible inventory's variables mean to lab: the connection variables
// map onto the SSH transport's settings (the same InventoryHost lab's own
// format gives), `lab_*` variables add what Ansible has no word for (lab
// address, interface, aliases), any other `ansible_*` variable is an error at
// its file:line (never silently ignored), and the rest are the host's own
// variables, which `--each` hands to a lab's templates.

import { userInfo } from 'node:os';
import { isIP, isIPv4 } from 'node:net';
import { resolve } from 'node:path';
import type { LabProblem } from '../errors.ts';
import { Checker } from '../files/checker.ts';
import { quote } from '../files/quote.ts';
import { groupMembers, hostVars, type AnsibleDoc, type AnsibleVar } from './ansible.ts';
import type { HostKeyPolicy, SshEndpoint } from './ssh.ts';
import {
  checkAlias,
  checkConnectTimeout,
  checkHostKey,
  checkInterface,
  checkSecretEnv,
  checkPython,
  checkUser,
  DEFAULT_CONNECT_TIMEOUT_MS,
  HOST_NAME,
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
  ansible_python_interpreter: 'ansible_python_interpreter',
};

/** lab's own words in an Ansible inventory. */
const LAB_VARS = ['lab_address', 'lab_interface', 'lab_aliases', 'lab_local', 'lab_host_key', 'lab_connect_timeout', 'lab_password_env', 'lab_passphrase_env', 'lab_agent'];

/** Ansible's interpreter discovery: lab's default (the `python3` on the login PATH) stands for it. */
const PYTHON_DISCOVERY = ['auto', 'auto_silent', 'auto_legacy', 'auto_legacy_silent'];

/** Why some Ansible variables cannot be honoured, so the message says what to do instead. */
const UNSUPPORTED_HINTS: Record<string, string> = {
  ansible_password: 'lab never reads passwords from an inventory: name an environment variable with "lab_password_env"',
  ansible_ssh_pass: 'lab never reads passwords from an inventory: name an environment variable with "lab_password_env"',
  ansible_become_password: 'lab needs passwordless sudo',
  ansible_become_pass: 'lab needs passwordless sudo',
  ansible_ssh_extra_args: 'lab reads only "-o UserKnownHostsFile", "-o StrictHostKeyChecking" and "-J"/"ProxyJump", from "ansible_ssh_common_args"',
  ansible_ssh_args: 'lab reads only "-o UserKnownHostsFile", "-o StrictHostKeyChecking" and "-J"/"ProxyJump", from "ansible_ssh_common_args"',
};

export interface AnsibleHostsOptions {
  /** what `~` expands to */
  home: string;
  /** the inventory's directory: relative key files are relative to it */
  dir: string;
}

/**
 * The hosts and groups of an Ansible inventory, as lab's Inventory has them,
 * and every problem found: the reader's, then each value's, through the one
 * Checker on the inventory's SourceDoc (a group variable reaches many hosts
 * but is one mistake: the Checker says it once).
 */
export function ansibleHosts(doc: AnsibleDoc, options: AnsibleHostsOptions): {
  hosts: Record<string, InventoryHost>;
  groups: Record<string, string[]>;
  problems: LabProblem[];
} {
  const check = new Checker(doc.sd);
  check.add(...doc.problems);
  const hosts: Record<string, InventoryHost> = {};
  const owner = new Map<string, string>();
  const aliasOwner = new Map<string, string>();
  for (const name of doc.hosts.keys()) {
    const host = readHost(check, name, doc, options, aliasOwner);
    if (!host) continue;
    // Two names for one machine would share its journal and lock: one run would fight itself.
    const key = `${host.address}:${host.port}`;
    const first = owner.get(key);
    if (first !== undefined) {
      check.at(doc.hosts.get(name)!.at, `Host ${quote(name)} is the same machine as host ${quote(first)} (${key}): name each machine once`);
      continue;
    }
    owner.set(key, name);
    hosts[name] = host;
  }
  const groups: Record<string, string[]> = {};
  for (const g of doc.groups.keys()) groups[g] = groupMembers(doc, g);
  return { hosts, groups, problems: check.problems };
}

function readHost(
  check: Checker,
  name: string,
  doc: AnsibleDoc,
  options: AnsibleHostsOptions,
  aliasOwner: Map<string, string>,
): InventoryHost | undefined {
  const def = doc.hosts.get(name)!;
  const raw = hostVars(doc, name);
  // Older names fold into the current ones; a host var still beats a group var of the other spelling.
  const conn = new Map<string, AnsibleVar>();
  const lab = new Map<string, AnsibleVar>();
  const vars: Record<string, string> = {};
  for (const [k, v] of raw) {
    if (CONNECTION_VARS[k]) {
      conn.set(CONNECTION_VARS[k]!, v);
    } else if (k.startsWith('lab_')) {
      if (LAB_VARS.includes(k)) lab.set(k, v);
      else check.unknown(v.at, 'lab variable', k, LAB_VARS);
    } else if (k.startsWith('ansible_')) {
      const hint = UNSUPPORTED_HINTS[k] ?? `lab reads ${[...new Set(Object.values(CONNECTION_VARS))].map(quote).join(', ')}`;
      check.at(v.at, `Unsupported Ansible variable ${quote(k)}: ${hint}`);
    } else if (typeof v.value === 'string' || typeof v.value === 'number' || typeof v.value === 'boolean') {
      vars[k] = String(v.value);
    }
  }
  /** A string as written: Jinja2 is Ansible's to evaluate, and lab does not pretend to. */
  const text = (v: AnsibleVar): string | undefined => {
    const s = check.string(v.at, typeof v.value === 'number' ? String(v.value) : v.value);
    if (s !== undefined && (s.includes('{{') || s.includes('{%'))) {
      check.at(v.at, `lab does not evaluate Jinja2 in inventories: got ${quote(s)}; write the value itself`);
      return undefined;
    }
    return s;
  };
  const str = (k: string) => {
    const v = conn.get(k);
    return v && text(v);
  };

  // Where SSH connects: ansible_host, else the inventory name itself (as Ansible does).
  let address: string | undefined;
  const hostVar = conn.get('ansible_host');
  if (hostVar) {
    const s = text(hostVar);
    if (s !== undefined) address = check.address(hostVar.at, s);
  } else if (isIP(name) || HOST_NAME.test(name)) address = name;
  else check.at(def.at, `Host ${quote(name)} is not an address: set "ansible_host"`);

  const portVar = conn.get('ansible_port');
  const port = portVar ? check.int(portVar.at, portVar.value, 1, 65535) : 22;

  let user = userInfo().username;
  const userVar = conn.get('ansible_user');
  if (userVar) {
    const s = text(userVar);
    if (s !== undefined) user = checkUser(check, userVar.at, s) ?? user;
  }

  const keyVar = conn.get('ansible_ssh_private_key_file');
  const keyText = keyVar && text(keyVar);
  const identity = keyText === undefined ? undefined : check.filePath(keyVar!.at, keyText, options.dir, options.home);

  const connection = str('ansible_connection');
  if (connection !== undefined && !['ssh', 'smart', 'paramiko'].includes(connection)) {
    check.at(conn.get('ansible_connection')!.at, `Unsupported connection ${quote(connection)}: lab reaches inventory hosts over SSH only`);
  }

  // become: lab needs root; sudo is the one way it gets there.
  const becomeVar = conn.get('ansible_become');
  const become = becomeVar ? check.boolWord(becomeVar.at, becomeVar.value) : false;
  const becomeUser = str('ansible_become_user');
  if (becomeUser !== undefined && becomeUser !== 'root') {
    check.at(conn.get('ansible_become_user')!.at, `Unsupported become user ${quote(becomeUser)}: lab changes sysctls and needs root`);
  }
  const method = str('ansible_become_method');
  if (method !== undefined && method !== 'sudo') {
    check.at(conn.get('ansible_become_method')!.at, `Unsupported become method ${quote(method)}: lab uses "sudo -n"`);
  }
  const sudo = !!become && user !== 'root';

  // The agent's interpreter, as Ansible's modules': a path, or discovery (lab's default).
  let python: string | undefined;
  const pyVar = conn.get('ansible_python_interpreter');
  const pyText = pyVar && text(pyVar);
  if (pyText !== undefined && !PYTHON_DISCOVERY.includes(pyText)) python = checkPython(check, pyVar!.at, pyText);

  const at = (s: string) => (s === '~' ? options.home : s.startsWith('~/') ? resolve(options.home, s.slice(2)) : resolve(options.dir, s));
  let knownHosts = resolve(options.home, '.ssh/known_hosts');
  let hostKey: HostKeyPolicy = 'check';
  let jumpText: string | undefined;
  const argsVar = conn.get('ansible_ssh_common_args');
  const args = argsVar && text(argsVar);
  if (args !== undefined) {
    const parsed = parseSshArgs(args);
    if ('error' in parsed) check.at(argsVar!.at, parsed.error);
    else {
      if (parsed.knownHosts !== undefined) knownHosts = at(parsed.knownHosts);
      if (parsed.hostKey !== undefined) hostKey = parsed.hostKey;
      jumpText = parsed.jump;
    }
  }

  const labVar = (k: string) => lab.get(k);
  let labAddress: string | undefined;
  const la = labVar('lab_address');
  if (la) labAddress = check.ipv4(la.at, la.value);
  else if (address !== undefined && isIPv4(address)) labAddress = address;
  else if (address !== undefined) {
    check.at(hostVar?.at ?? def.at, `Missing "lab_address": lab traffic needs an IPv4 address, and the host's address is ${quote(address)}`);
  }

  const ifv = labVar('lab_interface');
  const iface = ifv && checkInterface(check, ifv.at, ifv.value);

  const aliases: string[] = [];
  const av = labVar('lab_aliases');
  if (av) {
    // INI can only write a string: "198.19.1.1,198.19.1.2"; YAML may write a list.
    if (Array.isArray(av.value)) for (const [i, a] of av.value.entries()) checkAlias(check, [...av.at, i], a, name, aliases, aliasOwner);
    else if (typeof av.value === 'string') {
      for (const a of av.value.split(',').map((s) => s.trim()).filter(Boolean)) checkAlias(check, av.at, a, name, aliases, aliasOwner);
    } else check.mustBe(av.at, 'IPv4 addresses separated by ","', av.value);
  }

  const lv = labVar('lab_local');
  const local = lv ? (check.boolWord(lv.at, lv.value) ?? false) : false;
  const hk = labVar('lab_host_key');
  if (hk) hostKey = checkHostKey(check, hk.at, hk.value) ?? hostKey;
  const tv = labVar('lab_connect_timeout');
  const connectTimeoutMs = (tv && checkConnectTimeout(check, tv.at, tv.value)) ?? DEFAULT_CONNECT_TIMEOUT_MS;
  const pv = labVar('lab_password_env');
  const passwordEnv = pv && checkSecretEnv(check, pv.at, pv.value, 'password');
  const ppv = labVar('lab_passphrase_env');
  const passphraseEnv = ppv && checkSecretEnv(check, ppv.at, ppv.value, 'passphrase');
  const agv = labVar('lab_agent');
  // Without a key file, ssh (and so Ansible) offers the keys of the running ssh-agent.
  const agent = agv ? (check.boolWord(agv.at, agv.value) ?? false) : identity === undefined && passwordEnv === undefined;

  let jump: SshEndpoint | undefined;
  if (jumpText !== undefined) {
    const m = /^(?:([^@\s]+)@)?([^@:\s]+)(?::(\d+))?$/.exec(jumpText);
    const jAddress = m?.[2];
    const jPort = m?.[3] === undefined ? 22 : Number(m[3]);
    const jUser = m?.[1] ?? user;
    if (!m || !jAddress || !(isIP(jAddress) || HOST_NAME.test(jAddress)) || !USER_NAME.test(jUser) || jPort < 1 || jPort > 65535) {
      check.at(argsVar!.at, `Invalid jump host ${quote(jumpText)}: write "[user@]host[:port]"`);
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
  if (python !== undefined) host.python = python;
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
