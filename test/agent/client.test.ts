// AgentClient.start() decides what a host needs before the agent runs: is there
// a python3, is it new enough, is this agent already uploaded. That logic is
// tested against a scripted transport; the agent itself runs for real in
// agent.test.ts and in every run test.

import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { AgentClient, agentScript, remoteAgentPath } from '../../runner/agent/client.ts';
import { HostError } from '../../runner/errors.ts';
import type { ExecResult, HostProcess, Transport } from '../../runner/hosts/transport.ts';

/** A transport whose exec answers from a script and whose spawn never succeeds. */
function scripted(answers: (argv: string[]) => Partial<ExecResult>) {
  const calls: string[][] = [];
  const puts: string[] = [];
  const transport: Transport = {
    role: 'client',
    kind: 'ssh',
    target: 'root@192.0.2.10:22',
    capabilities: { localNamespace: false, needsSudo: false },
    async connect() {},
    async exec(argv) {
      calls.push(argv);
      return { code: 0, signal: null, stdout: '', stderr: '', ...answers(argv) };
    },
    async spawn(argv): Promise<HostProcess> {
      calls.push(['spawn', ...argv]);
      throw new Error('spawned');
    },
    async putFile(path) {
      puts.push(path);
    },
    async close() {},
  };
  return { transport, calls, puts };
}

const python = (stdout: string) => (argv: string[]) => (argv[0] === 'python3' ? { stdout } : {});

async function startError(transport: Transport): Promise<Error> {
  try {
    await AgentClient.start(transport);
  } catch (e) {
    return e as Error;
  }
  throw new Error('start() resolved');
}

test('start() on a host without python3 says what to install', async () => {
  const { transport } = scripted((argv) => (argv[0] === 'python3' ? { code: 127, stderr: 'sh: python3: not found' } : {}));
  const e = await startError(transport);
  assert.instance(e, HostError);
  assert.is((e as HostError).code, 'HOST_NO_PYTHON');
  assert.is(e.message, 'client: Cannot run "python3", which the probe agent needs: install it (Debian/Ubuntu: apt-get install python3; RHEL: dnf install python3)');
});

test('start() refuses a python3 older than 3.7', async () => {
  const { transport } = scripted(python('/usr/bin/python3\n3.6\n'));
  const e = await startError(transport);
  assert.is((e as HostError).code, 'HOST_OLD_PYTHON');
  assert.is(e.message, 'client: python3 is 3.6: the probe agent needs 3.7 or newer');
});

test('start() uploads the agent once, by content hash, and runs it with the resolved interpreter', async () => {
  const path = remoteAgentPath(agentScript().hash);
  const missing = scripted((argv) => (argv[0] === 'test' ? { code: 1 } : python('/opt/py/bin/python3.12\n3.12\n')(argv)));
  assert.match((await startError(missing.transport)).message, 'spawned');
  assert.equal(missing.puts, [path]);
  assert.equal(missing.calls.at(-1), ['spawn', '/opt/py/bin/python3.12', '-u', path, '--label', 'lab:root@192.0.2.10:22']);

  const present = scripted(python('/usr/bin/python3\n3.11\n'));
  await startError(present.transport);
  assert.equal(present.puts, [], 'an agent already on the host is not uploaded again');
  assert.equal(present.calls[0], ['test', '-f', path]);
});

test.run();
