// Where lab's provisioning time over SSH goes, phase by phase: the same path
// as bench/ansible.ts's lab side (SSH connect with the host key check, the
// agent's start, begin, a sysctl, an IP alias, facts, restore, shutdown,
// close), on one `lab hosts up` host, with the algorithms ssh2 negotiated.
// Medians over ROUNDS (after one warm-up round). Needs root; run under
// `flock /tmp/lab-ssh.lock` (it starts `lab hosts up`).
// Usage: node --import tsx bench/ssh-phases.ts [ROUNDS]

import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { connect as netConnect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import ssh2 from 'ssh2';
import { AgentClient } from '../runner/agent/client.ts';
import { hostsDown, hostsUp } from '../runner/hosts/hostsup.ts';
import { inventoryTransport, readInventory } from '../runner/hosts/inventory.ts';
import { median } from './ramp-pairs.ts';

const rounds = Number(process.argv[2] ?? 9);
const work = mkdtempSync(join(tmpdir(), 'lab-bench-phases-'));
try {
  const { inventoryPath } = await hostsUp({ roles: ['client'], out: join(work, 'inventory.yaml') });
  const host = (await readInventory(inventoryPath)).hosts.client!;

  // What ssh2 and this sshd agree on (ssh2's own debug lines).
  const negotiated = await new Promise<string[]>((resolve, reject) => {
    const said: string[] = [];
    const sock = netConnect({ host: host.address, port: host.port }, () => {
      const c = new ssh2.Client();
      c.on('ready', () => (c.end(), resolve(said)));
      c.on('error', reject);
      c.connect({
        sock,
        username: host.user,
        privateKey: readFileSync(host.identity!),
        hostVerifier: () => true, // only looking at algorithms here; the timed rounds check the key
        debug: (s: string) => {
          const m = /^Handshake: (KEX algorithm|Host key format|C->S Cipher|S->C Cipher): (.*)$/.exec(s);
          if (m) said.push(`${m[1]} ${m[2]}`);
        },
      });
    });
    sock.on('error', reject);
  });
  console.log(`negotiated: ${negotiated.join(', ')}`);

  const phases: Record<string, number[]> = {};
  for (let r = 0; r <= rounds; r++) {
    const at: Array<[string, number]> = [['', performance.now()]];
    const mark = (s: string) => at.push([s, performance.now()]);
    const transport = inventoryTransport(host, 'client');
    await transport.connect();
    mark('SSH connect (TCP, kex, host key, auth)');
    const spawn = transport.spawn.bind(transport);
    transport.spawn = async (argv) => {
      const p = await spawn(argv);
      mark('exec channel open');
      return p;
    };
    const agent = await AgentClient.start(transport);
    mark('agent start to its ready line');
    await agent.request('begin', { journal: `/run/lab/host/bench-phases-${host.address}.journal`, holder: 'bench' });
    mark('begin');
    await agent.request('sysctlSet', { name: 'net.ipv4.ip_local_port_range', value: '20000 60999' });
    mark('sysctlSet');
    await agent.request('addrAdd', { address: host.aliases[0]!, prefix: 32, device: host.interface ?? 'eth0' });
    mark('addrAdd');
    await agent.request('facts', {});
    mark('facts');
    await agent.request('restore', {});
    mark('restore');
    await agent.shutdown();
    mark('shutdown');
    await transport.close();
    mark('close');
    if (r === 0) continue; // warm-up: the artifact uploaded and unpacked, once per version
    for (let i = 1; i < at.length; i++) (phases[at[i]![0]] ??= []).push(at[i]![1] - at[i - 1]![1]);
    (phases.total ??= []).push(at.at(-1)![1] - at[0]![1]);
  }
  for (const [name, xs] of Object.entries(phases)) console.log(`  ${name.padEnd(40)} ${median(xs).toFixed(1).padStart(7)} ms`);
  console.log(`(medians of ${rounds} rounds)`);
} finally {
  await hostsDown();
  rmSync(work, { recursive: true, force: true });
}
