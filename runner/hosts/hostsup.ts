// `lab hosts up` / `lab hosts down`: local namespace hosts that each run a real
// OpenSSH sshd, and an inventory for them, so the SSH transport runs for real
// on one machine and in CI. The sshds outlive the CLI; their state (keys,
// configs, pid files) lives in /run/lab/hosts-up/<id>/ until `hosts down`.

import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { connect as netConnect } from 'node:net';
import { dirname, resolve } from 'node:path';
import { HostError, LabError } from '../errors.ts';
import { makeDirs } from '../files/dirs.ts';
import { roleNameProblem } from '../files/names.ts';
import { mapLimit } from './forks.ts';
import { runLocal } from './local.ts';
import {
  checkLocalPrerequisites,
  createLocalNetwork,
  destroyLocalNetwork,
  listLocalJournals,
  type LocalHost,
  type LocalNetwork,
} from './netns.ts';

export const HOSTS_UP_PURPOSE = 'hosts-up';
export const HOSTS_UP_DIR = '/run/lab/hosts-up';
/** Hosts up live in 198.<HOSTS_UP_NET>.0.0/16, runs' local hosts in 198.18. */
export const HOSTS_UP_NET = 19;
export const SSHD = '/usr/sbin/sshd';
/** How many of a host's alias pool the inventory offers a lab. */
const INVENTORY_ALIASES = 8;
const SSHD_READY_TIMEOUT_MS = 10_000;
/** Keys and sshds are made a few hosts at a time: sixteen one after another would take seconds. */
const SETUP_FORKS = 8;
/** PATH of every SSH session, so `python3` is the system's /usr/bin/python3. */
const SESSION_PATH = '/usr/sbin:/usr/bin:/sbin:/bin';

/** Hosts `lab hosts up` makes at most: each is a namespace with its own sshd. */
export const MAX_HOSTS_UP = 64;

export interface HostsUpOptions {
  /** "server" (one host), or "client:4" (four hosts client-1…client-4, in group "client") */
  roles: string[];
  /** where to write lab's inventory (default ./inventory.yaml) */
  out?: string;
  /** where to write the Ansible INI inventory (default: `out` with ".ini") */
  ansibleOut?: string;
}

/** Create the hosts of each role, each a namespace running sshd, and write both inventories. */
export async function hostsUp(
  options: HostsUpOptions,
): Promise<{ inventoryPath: string; ansiblePath: string; network: LocalNetwork; groups: Record<string, string[]> }> {
  const groups = parseRoles(options.roles);
  const roles = Object.values(groups).flat();
  if (!existsSync(SSHD)) {
    throw new HostError('SSHD_MISSING', `Cannot find ${SSHD}, which "lab hosts up" runs in each host: install OpenSSH's server (apt-get install openssh-server)`);
  }
  await checkLocalPrerequisites();
  // ssh-keygen has no version flag: a usage error exits 1, a missing program 127.
  const keygenProbe = await runLocal(['ssh-keygen', '-?']).catch(() => ({ code: 127 }));
  if (keygenProbe.code === 127) {
    throw new HostError('SSHD_MISSING', 'Cannot run "ssh-keygen", which "lab hosts up" makes keys with: install OpenSSH (apt-get install openssh-server)');
  }
  const existing = (await listLocalJournals()).filter((j) => j.purpose === HOSTS_UP_PURPOSE);
  if (existing.length) {
    const names = existing.flatMap((j) => j.namespaces).join(', ');
    throw new HostError(
      'HOSTS_UP_EXISTS',
      `Local SSH hosts are already up (network "${existing[0]!.id}": ${names}): run "lab hosts down" first`,
    );
  }

  const id = randomBytes(3).toString('hex');
  const network = await createLocalNetwork({ id, roles, net: HOSTS_UP_NET, rootLink: true, purpose: HOSTS_UP_PURPOSE });
  const dir = `${HOSTS_UP_DIR}/${id}`;
  try {
    await mkdir(`${dir}/home`, { recursive: true, mode: 0o700 });
    const identity = `${dir}/id_ed25519`;
    await keygen(identity, 'lab hosts up client');
    await writeFile(`${dir}/authorized_keys`, await readFile(`${identity}.pub`), { mode: 0o600 });
    // sshd refuses to start without its privilege separation directory.
    await mkdir('/run/sshd', { recursive: true, mode: 0o755 });

    const knownHosts = await mapLimit(network.hosts, SETUP_FORKS, async (host) => {
      const hostDir = `${dir}/${host.role}`;
      await mkdir(hostDir, { mode: 0o700 });
      await keygen(`${hostDir}/ssh_host_ed25519_key`, `lab hosts up ${host.role}`);
      const pub = (await readFile(`${hostDir}/ssh_host_ed25519_key.pub`, 'utf8')).trim().split(/\s+/);
      await writeFile(`${hostDir}/sshd_config`, sshdConfig(dir, host));
      const started = await runLocal(['ip', 'netns', 'exec', host.namespace, SSHD, '-f', `${hostDir}/sshd_config`, '-E', `${hostDir}/sshd.log`]);
      if (started.code !== 0) {
        const log = existsSync(`${hostDir}/sshd.log`) ? readFileSync(`${hostDir}/sshd.log`, 'utf8') : '';
        const why = (started.stderr + log).trim() || `exit code ${started.code ?? started.signal}`;
        throw new HostError('SSHD_START', `Cannot start sshd in namespace "${host.namespace}": ${why}`, host.role);
      }
      return `${host.address} ${pub[0]} ${pub[1]}`;
    });
    await writeFile(`${dir}/known_hosts`, knownHosts.join('\n') + '\n');
    await Promise.all(network.hosts.map((h) => waitForPort(h, SSHD_READY_TIMEOUT_MS)));

    const inventoryPath = resolve(options.out ?? 'inventory.yaml');
    const ansiblePath = resolve(options.ansibleOut ?? inventoryPath.replace(/\.ya?ml$/, '') + '.ini');
    await makeDirs(dirname(inventoryPath));
    await makeDirs(dirname(ansiblePath));
    await writeFile(inventoryPath, inventoryText(network, dir, groups));
    await writeFile(ansiblePath, ansibleText(network, dir, groups));
    return { inventoryPath, ansiblePath, network, groups };
  } catch (e) {
    await removeHostsUp(id);
    throw e;
  }
}

/** Stop every `lab hosts up` host: its sshd, its namespace, its state. Returns problems (empty when clean). */
export async function hostsDown(): Promise<string[]> {
  const problems: string[] = [];
  for (const id of await hostsUpIds()) problems.push(...(await removeHostsUp(id)));
  return problems;
}

/** The networks `lab hosts up` made that are still there (journaled, or left without a journal by a crash between the two). */
export async function hostsUpIds(): Promise<Set<string>> {
  const ids = new Set((await listLocalJournals()).filter((j) => j.purpose === HOSTS_UP_PURPOSE).map((j) => j.id));
  for (const name of await readdir(HOSTS_UP_DIR).catch(() => [] as string[])) ids.add(name);
  return ids;
}

async function removeHostsUp(id: string): Promise<string[]> {
  const dir = `${HOSTS_UP_DIR}/${id}`;
  await killSshds(dir);
  const problems = await destroyLocalNetwork(id);
  await rm(dir, { recursive: true, force: true });
  return problems;
}

/** Kill the sshds whose pid files are in `dir` (only if the pid is still an sshd). */
async function killSshds(dir: string): Promise<void> {
  for (const role of await readdir(dir).catch(() => [] as string[])) {
    const pidFile = `${dir}/${role}/sshd.pid`;
    if (!existsSync(pidFile)) continue;
    const pid = Number((await readFile(pidFile, 'utf8')).trim());
    if (!Number.isInteger(pid) || pid <= 1) continue;
    const comm = await readFile(`/proc/${pid}/comm`, 'utf8').catch(() => '');
    if (comm.trim() !== 'sshd') continue;
    try {
      process.kill(pid, 'SIGTERM');
    } catch {
      // Already gone.
    }
  }
}

/**
 * "client:4" → hosts client-1…client-4 in group "client"; "server" → one host
 * named "server" (a group of its own name). Returns group -> host names.
 */
export function parseRoles(specs: string[]): Record<string, string[]> {
  if (!specs.length) throw new LabError('HOSTS_UP_ROLES', 'Name at least one role for "lab hosts up" (--roles client,server)');
  const groups: Record<string, string[]> = {};
  let total = 0;
  for (const spec of specs) {
    const m = /^([^:]*)(?::(.*))?$/.exec(spec)!;
    const role = m[1]!;
    const problem = roleNameProblem(role);
    if (problem) {
      throw new LabError('HOSTS_UP_ROLES', problem);
    }
    if (groups[role]) throw new LabError('HOSTS_UP_ROLES', `Role "${role}" is named twice`);
    const count = m[2] === undefined ? 1 : /^\d+$/.test(m[2]) ? Number(m[2]) : NaN;
    if (!Number.isInteger(count) || count < 1 || count > MAX_HOSTS_UP) {
      throw new LabError('HOSTS_UP_ROLES', `Invalid host count in "${spec}": write ROLE:N with N from 1 to ${MAX_HOSTS_UP}`);
    }
    total += count;
    groups[role] = m[2] === undefined ? [role] : Array.from({ length: count }, (_, i) => `${role}-${i + 1}`);
  }
  if (total > MAX_HOSTS_UP) throw new LabError('HOSTS_UP_ROLES', `"lab hosts up" makes at most ${MAX_HOSTS_UP} hosts: got ${total}`);
  const names = Object.values(groups).flat();
  const clash = names.find((n, i) => names.indexOf(n) !== i || (groups[n] && groups[n]!.length > 1));
  if (clash) throw new LabError('HOSTS_UP_ROLES', `Host name "${clash}" is made twice: rename a role`);
  return groups;
}

async function keygen(file: string, comment: string): Promise<void> {
  const r = await runLocal(['ssh-keygen', '-q', '-t', 'ed25519', '-N', '', '-C', comment, '-f', file]);
  if (r.code !== 0) throw new HostError('SSHD_KEYGEN', `Cannot make key "${file}": ${r.stderr.trim() || `exit code ${r.code}`}`);
}

function sshdConfig(dir: string, host: LocalHost): string {
  const hostDir = `${dir}/${host.role}`;
  return `# Written by "lab hosts up" for role "${host.role}"; "lab hosts down" removes it.
ListenAddress ${host.address}
Port 22
HostKey ${hostDir}/ssh_host_ed25519_key
PidFile ${hostDir}/sshd.pid
AuthorizedKeysFile ${dir}/authorized_keys
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
# The keys live in /run/lab, which need not pass sshd's ownership checks.
StrictModes no
LogLevel ERROR
# In-process SFTP: no dependence on where the distribution put sftp-server.
Subsystem sftp internal-sftp
AllowTcpForwarding yes
# A plain environment, whatever root's dotfiles on this machine do: bash reads
# ~/.bashrc even for "ssh host cmd", which here could put another python3 first
# in PATH and slow every command down.
SetEnv HOME=${dir}/home PATH=${SESSION_PATH}
`;
}

function inventoryText(network: LocalNetwork, dir: string, groups: Record<string, string[]>): string {
  // A host is a group of its own name already: only "client:N" roles need a group.
  const multi = Object.entries(groups).filter(([group, names]) => !(names.length === 1 && names[0] === group));
  const groupText = multi.length ? `groups:\n${multi.map(([g, names]) => `  ${g}: [${names.join(', ')}]\n`).join('')}` : '';
  const hosts = network.hosts
    .map(
      (h) => `  ${h.role}:
    address: ${h.address}
    interface: ${h.device}
    aliases: [${h.aliasPool.slice(0, INVENTORY_ALIASES).join(', ')}]
    local: true
`,
    )
    .join('');
  return `# Written by "lab hosts up" (network "${network.id}"): namespaces on this machine,
# each running OpenSSH sshd. Remove them with "lab hosts down".
defaults:
  user: root
  port: 22
  identity: ${dir}/id_ed25519
  known_hosts: ${dir}/known_hosts
  host_key: check
  connect_timeout: 10s
hosts:
${hosts}${groupText}`;
}

/** The same hosts as an Ansible INI inventory: a group per role, the connection in [all:vars]. */
function ansibleText(network: LocalNetwork, dir: string, groups: Record<string, string[]>): string {
  const byName = new Map(network.hosts.map((h) => [h.role, h]));
  const sections = Object.entries(groups).map(
    ([group, names]) =>
      `[${group}]\n${names
        .map((n) => {
          const h = byName.get(n)!;
          return `${n} ansible_host=${h.address} lab_interface=${h.device} lab_aliases=${h.aliasPool.slice(0, INVENTORY_ALIASES).join(',')}`;
        })
        .join('\n')}\n`,
  );
  return `# Written by "lab hosts up" (network "${network.id}"): namespaces on this machine,
# each running OpenSSH sshd. Remove them with "lab hosts down".
${sections.join('\n')}
[all:vars]
ansible_user=root
ansible_port=22
ansible_ssh_private_key_file=${dir}/id_ed25519
ansible_ssh_common_args='-o UserKnownHostsFile=${dir}/known_hosts -o StrictHostKeyChecking=yes'
lab_local=true
`;
}

/** Resolve once sshd accepts TCP connections (it daemonizes before it listens). */
async function waitForPort(host: LocalHost, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const ok = await new Promise<boolean>((done) => {
      const sock = netConnect({ host: host.address, port: 22 });
      sock.setTimeout(500, () => sock.destroy(new Error('timeout')));
      sock.once('connect', () => {
        sock.destroy();
        done(true);
      });
      sock.once('error', () => done(false));
    });
    if (ok) return;
    if (Date.now() > deadline) {
      throw new HostError('SSHD_START', `sshd in namespace "${host.namespace}" did not accept connections on ${host.address}:22 within ${timeoutMs / 1000}s`, host.role);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
}
