// Benchmark: provisioning by lab against Ansible on the same SSH hosts. The
// same changes: a sysctl (net.ipv4.ip_local_port_range), an IP alias, a fact
// read, and both undone, on one `lab hosts up` host. lab: SSH connect, agent
// start, one request per step, restore. Ansible: `ansible-playbook` (Debian's
// ansible-core, pipelining on) end to end, and `ansible -m …` per step. Rounds
// alternate which goes first; medians. Needs root and the heavy lock (hosts up).
// Usage: node --import tsx bench/ansible.ts [ROUNDS]; bench/index.ts imports it.

import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { AgentClient } from '../runner/agent/client.ts';
import { hostsDown, hostsUp } from '../runner/hosts/hostsup.ts';
import { inventoryTransport, readInventory } from '../runner/hosts/inventory.ts';
import { runLocal } from '../runner/hosts/local.ts';

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const RANGE = '20000 60999';
/** both contenders run this interpreter on the host */
const PYTHON = '/usr/bin/python3';

export interface AnsibleFigures {
  /** ansible end to end ÷ lab end to end */
  ratio: number;
  labMs: number;
  ansibleMs: number;
  /** median per step */
  labStepMs: number;
  ansibleStepMs: number;
  how: string;
}

/** Install ansible-core with apt-get when ansible-playbook is missing; returns why not, or undefined. */
async function ensureAnsible(log: (s: string) => void): Promise<string | undefined> {
  if ((await runLocal(['sh', '-c', 'command -v ansible-playbook'])).code === 0) return undefined;
  log('ansible-playbook is missing: installing Debian\'s ansible-core (apt-get install ansible-core)');
  const r = await runLocal(['apt-get', 'install', '-y', '--no-install-recommends', 'ansible-core'], { timeoutMs: 600_000 });
  return r.code === 0 ? undefined : `cannot install ansible-core: ${r.stderr.trim().split('\n').at(-1)}`;
}

export async function provisioningVsAnsible(rounds = 3, log: (s: string) => void = () => {}): Promise<AnsibleFigures | string> {
  const missing = await ensureAnsible(log);
  if (missing) return missing;
  const work = mkdtempSync(join(tmpdir(), 'lab-bench-ansible-'));
  try {
    const { inventoryPath } = await hostsUp({ roles: ['client'], out: join(work, 'inventory.yaml') });
    const host = (await readInventory(inventoryPath)).hosts.client!;
    const alias = host.aliases[0]!;
    const device = host.interface ?? 'eth0';
    const original = (await runLocal(['ip', 'netns', 'exec', (await netnsOf(host.address))!, 'cat', '/proc/sys/net/ipv4/ip_local_port_range'])).stdout
      .trim()
      .replace(/\s+/g, ' ');
    writeFileSync(
      join(work, 'hosts.ini'),
      `client ansible_host=${host.address} ansible_port=${host.port} ansible_user=${host.user} ` +
        `ansible_ssh_private_key_file=${host.identity} ansible_python_interpreter=${PYTHON} ` +
        `ansible_ssh_common_args='-o UserKnownHostsFile=${host.knownHosts} -o StrictHostKeyChecking=yes'\n`,
    );
    const steps: Array<[string, [string, string]]> = [
      ['sysctl', ['command', `sysctl -w "net.ipv4.ip_local_port_range=${RANGE}"`]],
      ['alias', ['command', `ip addr add ${alias}/32 dev ${device}`]],
      ['facts', ['setup', 'gather_subset=!all']],
      ['undo alias', ['command', `ip addr del ${alias}/32 dev ${device}`]],
      ['undo sysctl', ['command', `sysctl -w "net.ipv4.ip_local_port_range=${original}"`]],
    ];
    writeFileSync(
      join(work, 'play.yaml'),
      `- hosts: client\n  gather_facts: false\n  tasks:\n` +
        steps.map(([name, [mod, a]]) => `    - name: ${name}\n      ansible.builtin.${mod}: ${JSON.stringify(a)}\n`).join(''),
    );
    // An empty config of our own: no ansible.cfg of the machine's or the user's changes the comparison.
    writeFileSync(join(work, 'ansible.cfg'), '');
    const env = ['env', `ANSIBLE_CONFIG=${work}/ansible.cfg`, 'ANSIBLE_PIPELINING=1', 'ANSIBLE_HOST_KEY_CHECKING=1', 'ANSIBLE_NOCOLOR=1', `ANSIBLE_LOCAL_TEMP=${work}/tmp`];

    const ansibleRun = async (): Promise<{ total: number; perStep: number[] }> => {
      const t = performance.now();
      const r = await runLocal([...env, 'ansible-playbook', '-i', join(work, 'hosts.ini'), join(work, 'play.yaml')], { timeoutMs: 300_000 });
      const total = performance.now() - t;
      if (r.code !== 0) throw new Error(`ansible-playbook failed: ${r.stdout.slice(-500)}`);
      const perStep: number[] = [];
      for (const [, [mod, a]] of steps) {
        const s = performance.now();
        const one = await runLocal([...env, 'ansible', '-i', join(work, 'hosts.ini'), 'client', '-m', mod, '-a', a], { timeoutMs: 120_000 });
        if (one.code !== 0) throw new Error(`ansible -m ${mod} failed: ${one.stdout.slice(-300)}`);
        perStep.push(performance.now() - s);
      }
      return { total, perStep };
    };

    const labRun = async (): Promise<{ total: number; perStep: number[] }> => {
      const t = performance.now();
      // The interpreter Ansible is given above, named rather than found on the host's PATH.
      const transport = inventoryTransport({ ...host, python: PYTHON }, 'client');
      await transport.connect();
      const agent = await AgentClient.start(transport);
      const perStep: number[] = [];
      const step = async (fn: () => Promise<unknown>) => {
        const s = performance.now();
        await fn();
        perStep.push(performance.now() - s);
      };
      try {
        await agent.request('begin', { journal: `/run/lab/host/bench-ansible-${host.address}.journal`, holder: 'bench' });
        await step(() => agent.request('sysctlSet', { name: 'net.ipv4.ip_local_port_range', value: RANGE }));
        await step(() => agent.request('addrAdd', { address: alias, prefix: 32, device }));
        await step(() => agent.request('facts', {}));
        await step(() => agent.request('restore', {}));
      } finally {
        await agent.shutdown();
        await transport.close();
      }
      return { total: performance.now() - t, perStep };
    };

    const lab: number[] = [];
    const ans: number[] = [];
    const labSteps: number[] = [];
    const ansSteps: number[] = [];
    for (let i = 0; i < rounds; i++) {
      const order = i % 2 ? ['ansible', 'lab'] : ['lab', 'ansible'];
      for (const who of order) {
        const r = who === 'lab' ? await labRun() : await ansibleRun();
        (who === 'lab' ? lab : ans).push(r.total);
        (who === 'lab' ? labSteps : ansSteps).push(...r.perStep);
        log(`round ${i + 1} ${who.padEnd(7)} end to end ${Math.round(r.total)} ms, steps ${r.perStep.map((x) => x.toFixed(1)).join(' / ')} ms`);
      }
    }
    const labMs = median(lab);
    const ansibleMs = median(ans);
    return {
      ratio: ansibleMs / labMs,
      labMs,
      ansibleMs,
      labStepMs: median(labSteps),
      ansibleStepMs: median(ansSteps),
      how:
        `sysctl + IP alias + fact read + undo on one lab hosts up host, median of ${rounds}: ansible-playbook ${Math.round(ansibleMs)} ms, ` +
        `lab ${Math.round(labMs)} ms (SSH connect and agent start included); per step: ansible -m ${Math.round(median(ansSteps))} ms, lab request ${median(labSteps).toFixed(1)} ms`,
    };
  } finally {
    await hostsDown();
    rmSync(work, { recursive: true, force: true });
  }
}

/** The namespace a `lab hosts up` address lives in. */
async function netnsOf(address: string): Promise<string | undefined> {
  const list = (await runLocal(['ip', 'netns', 'list'])).stdout.split('\n').map((l) => l.split(' ')[0]!).filter(Boolean);
  for (const ns of list) {
    const a = await runLocal(['ip', '-n', ns, '-4', '-o', 'addr', 'show']);
    if (a.stdout.includes(` ${address}/`)) return ns;
  }
  return undefined;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const r = await provisioningVsAnsible(Number(process.argv[2] ?? 3), console.log);
  console.log(typeof r === 'string' ? `skipped: ${r}` : `ansible / lab = ${r.ratio.toFixed(1)}×: ${r.how}`);
}
