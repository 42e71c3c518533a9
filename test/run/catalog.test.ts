// The labs of what a connection costs, in the variants their shipped defaults
// do not run (test/run/labs.test.ts and ssh.test.ts run the defaults): each on
// real namespaces through the CLI, every prediction holding, nothing left.

import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { RunResult } from '../../runner/result.ts';
import { runLabUntilQuiet, runLeftovers } from '../helpers.ts';

const out = mkdtempSync(join(tmpdir(), 'lab-catalog-test-'));
test.after(() => rmSync(out, { recursive: true, force: true }));

async function runLab(file: string, vars: string[], name: string): Promise<RunResult> {
  const { run: r, results } = await runLabUntilQuiet(file, vars.flatMap((v) => ['--var', v]), join(out, name));
  const result = results[results.length - 1]!;
  for (const p of result.predictions) assert.is(p.verdict, 'pass', `${name}: ${p.metric}: predicted ${p.predicted}, observed ${p.observed} (${p.derivation})`);
  assert.is(r.code, 0, r.stderr + r.stdout);
  assert.ok(result.restore.ok, result.restore.problems.join('\n'));
  for (const each of results) assert.equal(runLeftovers(each.hosts[0]!.target.split('-')[1]!), [], `${name}: left behind`);
  return result;
}

const observed = (result: RunResult, metric: string) => result.predictions.find((p) => p.metric === metric)?.observed;

test('time-wait: tcp_tw_reuse = 1 takes every port in TIME_WAIT over once it is 1 s old', async () => {
  const result = await runLab('labs/time-wait.yaml', ['reuse=1'], 'tw-reuse-1');
  assert.is(observed(result, 'waiting.tcpTw'), 5000);
  assert.is(observed(result, 'again.established'), 5000);
  assert.is(observed(result, 'again.firstError'), null);
});

test('time-wait: a server that closes past the client\'s tcp_fin_timeout leaves no TIME_WAIT: the ports come free', async () => {
  const result = await runLab('test/fixtures/labs/run/late-close.yaml', [], 'late-close');
  assert.is(observed(result, 'waiting.tcpTw'), 0);
  assert.is(observed(result, 'again.established'), 1000);
  assert.match(result.predictions.find((p) => p.metric === 'waiting.tcpTw')!.derivation, '1000 of ramp left FIN_WAIT2 after tcp_fin_timeout 1 s (the server closed in close_server 2 s after close)');
});

test('time-wait: tcp_tw_reuse = 2 is loopback only, so over a veth no port in TIME_WAIT is reused', async () => {
  const result = await runLab('labs/time-wait.yaml', ['reuse=2'], 'tw-reuse-2');
  assert.is(observed(result, 'again.established'), 0);
  assert.is(observed(result, 'again.firstError'), 'EADDRNOTAVAIL');
});

test('time-wait: too short a wait for tcp_tw_reuse_delay reuses nothing even with tcp_tw_reuse = 1', async () => {
  const result = await runLab('labs/time-wait.yaml', ['reuse=1', 'sleep=100ms'], 'tw-reuse-early');
  assert.is(observed(result, 'again.established'), 0);
});

test('accept-queue: somaxconn below the backlog caps the queue: min(8, 4) + 1 = 5 complete, the next SYN is dropped', async () => {
  const result = await runLab('labs/accept-queue.yaml', ['somaxconn=4'], 'aq-somaxconn-4');
  assert.is(observed(result, 'ramp.established'), 5);
  assert.is(observed(result, 'ramp.firstError'), 'ETIMEDOUT');
  // The queue as ss -lnt shows it: 5 waiting, a limit of 4; the client still holds all 5.
  assert.is(observed(result, 'queue.acceptQueue'), 5);
  assert.is(observed(result, 'queue.acceptQueueMax'), 4);
  assert.is(observed(result, 'seen.establishedSockets'), 5);
});

test('accept-queue-overflow: with tcp_abort_on_overflow = 0 the overflowing ACKs are dropped, and the client keeps connections the server never had', async () => {
  const result = await runLab('labs/accept-queue-overflow.yaml', ['abort_on_overflow=0'], 'aqo-abort-0');
  assert.is(observed(result, 'ramp.established'), 10);
  assert.is(observed(result, 'seen.establishedSockets'), 10);
  assert.is(observed(result, 'queue.acceptQueue'), 5);
});

test('accept-queue-overflow: without syncookies the SYN queue is the limit, tcp_max_syn_backlog − 1/4 of it below the backlog, and nothing overflows', async () => {
  const result = await runLab('labs/accept-queue-overflow.yaml', ['syncookies=0', 'max_syn_backlog=4', 'backlog=8'], 'aqo-cookies-0');
  // 4 − 4/4 + 1 = 4 requests wait; the rest of the SYNs are dropped; all 4 then fit the queue of 9.
  assert.is(observed(result, 'ramp.established'), 4);
  assert.is(observed(result, 'seen.establishedSockets'), 4);
  assert.is(observed(result, 'queue.acceptQueue'), 4);
});

test('memory-in-flight: 1 KiB per connection still costs the receiver a whole page', async () => {
  const result = await runLab('labs/memory-in-flight.yaml', ['send=1KiB', 'count=20000'], 'mif-1k');
  const p = result.predictions.find((x) => x.metric === 'buffers.bufferBytesPerConnection')!;
  assert.is(p.predicted, 4096);
});

const globals = () => ['fs/file-max', 'fs/nr_open', 'net/netfilter/nf_conntrack_max'].map((f) => readFileSync(`/proc/sys/${f}`, 'utf8'));

// files=3000: the lab's 5% must cover fs.file-nr's per-CPU drift, up to 32 per CPU at each of
// its two reads (128 on 2 CPUs); at 1000 files 5% is 50, and a run here once read 1056.
test('fd-ceilings: fs.nr_open 1000 caps nofile at 1000; fs.file-max gives 3000 files of headroom; both put back', async () => {
  const before = globals();
  const result = await runLab('labs/fd-ceilings.yaml', ['nr_open=1000', 'files=3000'], 'fd-ceilings-1000');
  assert.is(observed(result, 'nr-open.reached'), 1000);
  assert.is(observed(result, 'file-max.firstError'), 'ENFILE');
  assert.equal(globals(), before, 'fs.file-max, fs.nr_open and nf_conntrack_max as they were');
  // Changed for its step only: the run's own changes list none of them.
  assert.equal(result.hosts.flatMap((h) => h.changes), []);
});

test('conntrack: nf_conntrack_max 50 lets 50 connections in, then the SYN is dropped; the setting and the table go', async () => {
  const before = globals();
  const result = await runLab('labs/conntrack.yaml', ['max=50', 'count=80'], 'conntrack-50');
  assert.is(observed(result, 'ramp.established'), 50);
  assert.is(observed(result, 'ramp.firstError'), 'ETIMEDOUT');
  assert.is(observed(result, 'table.conntrackCount'), 50);
  assert.equal(globals(), before, 'nf_conntrack_max as it was');
  const server = result.hosts.find((h) => h.role === 'server')!;
  assert.ok(server.changes.some((c) => c.kind === 'nftables'), 'the nftables table was a change, undone at restore');
});

test('threads-vs-epoll: a 2 MiB stack per thread is what each connection costs the threaded server in address space', async () => {
  const result = await runLab('labs/threads-vs-epoll.yaml', ['stack=2097152', 'count=300'], 'threads-2m');
  assert.is(observed(result, 't.serverThreadsPerConnection'), 1);
  // CPython 3.11+ maps a 16 KiB frame chunk per thread too.
  const [major, minor] = result.hosts.find((h) => h.role === 'server')!.facts.python.split('.').map(Number);
  const chunk = major! > 3 || (major === 3 && minor! >= 11) ? 16384 : 0;
  assert.is(result.predictions.find((p) => p.metric === 't.serverVmBytesPerConnection')!.predicted, 2097152 + 4096 + chunk);
  assert.is(observed(result, 'e.serverThreadsPerConnection'), 0);
});


test('fd-limit with processes: 2: each worker fills its own fd table, EMFILE ends it and the next goes on', async () => {
  const result = await runLab('labs/fd-limit.yaml', ['processes=2'], 'fd-limit-2');
  const workerFds = result.hosts.find((h) => h.role === 'client')!.facts!.workerFds;
  assert.is(observed(result, 'ramp.established'), 2 * (256 - workerFds));
  assert.is(observed(result, 'ramp.firstError'), 'EMFILE');
  assert.is(result.steps.find((s) => s.name === 'ramp')!.metrics.workers, 2);
});

test('ephemeral-ports: connections still held take their ports from later steps, by the kernel\'s rules', async () => {
  const result = await runLab('test/fixtures/labs/run/held-ports.yaml', [], 'held-ports');
  // 1000 ports a pair: 2 pairs less the 600 held on one; 2 sources less the 300 bound ports on each; 2 sources less 600 on one.
  assert.is(observed(result, 'wide.established'), 1400);
  assert.is(observed(result, 'after_bound.established'), 1400);
  assert.is(observed(result, 'bind_after.established'), 1400);
  assert.is(observed(result, 'bind_after.firstError'), 'EADDRINUSE');
});

test.run();
