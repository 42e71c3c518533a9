// AgentClient.start() asks the host's Transport for two things, the python3 to
// run and the path of the agent artifact, or, where the transport can, for both
// in one spawnInstalled() (SSH), falling back to the long way when that ends
// before the agent is ready: tested against a scripted transport. The agent itself runs for real in
// agent.test.ts and in every run test; python.ts and artifact.ts (what the
// transports do) have their own tests under test/hosts/.

import { PassThrough } from 'node:stream';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { AgentClient } from '../../runner/agent/client.ts';
import { agentArtifact } from '../../runner/agent/zipapp.ts';
import { HostError } from '../../runner/errors.ts';
import { requirePython } from '../../runner/hosts/python.ts';
import type { Artifact, HostProcess, Transport } from '../../runner/hosts/transport.ts';

/** A transport that records what start() asks of it; spawn() runs nothing. */
function scripted(python: () => Promise<{ executable: string; version: [number, number] }>) {
  const spawned: string[][] = [];
  const installed: Artifact[] = [];
  const transport: Transport = {
    role: 'client',
    kind: 'ssh',
    target: 'root@192.0.2.10:22',
    capabilities: { localNamespace: false, needsSudo: false },
    async connect() {},
    async exec() {
      throw new Error('start() must not run commands itself');
    },
    async spawn(argv): Promise<HostProcess> {
      spawned.push(argv);
      throw new Error('spawned');
    },
    async putFile() {
      throw new Error('start() must not write files itself');
    },
    async install(artifact) {
      installed.push(artifact);
      return `/cache/${artifact.name}`;
    },
    python,
    async close() {},
  };
  return { transport, spawned, installed };
}

async function startError(transport: Transport): Promise<Error> {
  try {
    await AgentClient.start(transport);
  } catch (e) {
    return e as Error;
  }
  throw new Error('start() resolved');
}

test('start() installs the agent artifact and runs it with the interpreter the transport resolved', async () => {
  const { transport, spawned, installed } = scripted(async () => ({ executable: '/opt/py/bin/python3.12', version: [3, 12] }));
  assert.match((await startError(transport)).message, 'spawned');
  assert.equal(installed.map((a) => a.name), [agentArtifact().name]);
  assert.equal(spawned, [['/opt/py/bin/python3.12', '-u', '-S', `/cache/${agentArtifact().name}`, '--label', 'lab:root@192.0.2.10:22']]);
});

test('start() on a host whose python3 is missing or old fails with the transport\'s error and spawns nothing', async () => {
  const { transport, spawned } = scripted(async () => requirePython({ executable: '/usr/bin/python3', version: [3, 6] }, 'client'));
  const e = await startError(transport);
  assert.instance(e, HostError);
  assert.is((e as HostError).code, 'HOST_OLD_PYTHON');
  assert.equal(spawned, []);
});

/** A process that prints `lines` on stdout, then exits with `code` (null: never exits). */
function fakeProcess(lines: string[], code: number | null): HostProcess {
  const stdout = new PassThrough();
  let exit!: (v: { code: number | null; signal: string | null }) => void;
  const exited = new Promise<{ code: number | null; signal: string | null }>((r) => (exit = r));
  setImmediate(() => {
    for (const l of lines) stdout.write(l + '\n');
    if (code !== null) setImmediate(() => exit({ code, signal: null }));
  });
  return { stdin: new PassThrough(), stdout, stderr: new PassThrough(), exited, kill() {} };
}

test('start() with spawnInstalled() starts the agent in that one step when it gets ready: no probe, no install', async () => {
  const { transport, spawned, installed } = scripted(async () => {
    throw new Error('start() must not probe python3 when the agent started');
  });
  const asked: string[][] = [];
  transport.spawnInstalled = async (artifact, pythonArgs) => {
    asked.push([artifact.name, ...pythonArgs(`/cache/${artifact.name}`)]);
    return fakeProcess(['{"event":"ready","data":{"version":1,"pid":7}}'], null);
  };
  const client = await AgentClient.start(transport);
  assert.ok(client.alive);
  assert.equal(asked, [[agentArtifact().name, '-u', '-S', `/cache/${agentArtifact().name}`, '--label', 'lab:root@192.0.2.10:22']]);
  assert.equal([spawned, installed], [[], []]);
});

test('start() takes the long way when spawnInstalled() ends before the ready line (file or python3 missing)', async () => {
  const { transport, spawned, installed } = scripted(async () => ({ executable: '/usr/bin/python3', version: [3, 11] }));
  transport.spawnInstalled = async () => fakeProcess([], 90);
  assert.match((await startError(transport)).message, 'spawned');
  assert.equal(installed.map((a) => a.name), [agentArtifact().name]);
  assert.equal(spawned.length, 1);
  // …and the long way's errors are what the caller sees: an old python3 is named.
  const old = scripted(async () => requirePython({ executable: '/usr/bin/python3', version: [3, 6] }, 'client'));
  old.transport.spawnInstalled = async () => fakeProcess([], 3);
  assert.is(((await startError(old.transport)) as HostError).code, 'HOST_OLD_PYTHON');
  assert.equal(old.spawned, []);
});

test('request() rejects with AGENT_TIMEOUT when no reply comes within the bound', async () => {
  const stdin = new PassThrough();
  const stdout = new PassThrough();
  const proc: HostProcess = { stdin, stdout, stderr: new PassThrough(), exited: new Promise(() => {}), kill() {} };
  const { transport } = scripted(async () => ({ executable: 'python3', version: [3, 11] }));
  transport.spawn = async () => proc;
  const started = AgentClient.start(transport);
  stdout.write('{"event":"ready","data":{"version":1,"pid":1}}\n');
  const client = await started;
  const e = (await client.request('hello', {}, { timeoutMs: 20 }).catch((x: Error) => x)) as Error;
  assert.instance(e, Error);
  assert.is((e as HostError).code, 'AGENT_TIMEOUT');
  assert.is(e.message, 'client: agent: hello: no reply within 20 ms');
  // A reply to a request still pending is delivered, typed by its op.
  const hello = client.request('hello', {});
  stdout.write('{"id":2,"ok":true,"result":{"version":1,"pid":1,"python":"3.11.2","uid":0}}\n');
  assert.is((await hello).python, '3.11.2');
});

test.run();
