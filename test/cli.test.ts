// What a user sees from the CLI before any host is involved: help, version,
// argument errors and their exit codes. In-process, through main().

import { test } from 'uvu';
import { existsSync, readFileSync } from 'node:fs';
import * as assert from 'uvu/assert';
import { main, VERSION } from '../runner/cli.ts';

async function cli(...argv: string[]) {
  const out: string[] = [];
  const err: string[] = [];
  const code = await main(argv, { out: (s) => out.push(s), err: (s) => err.push(s), isTTY: false });
  return { code, out: out.join('\n'), err: err.join('\n') };
}

test('lab --help lists every command and the exit codes', async () => {
  const r = await cli('--help');
  assert.is(r.code, 0);
  assert.ok(r.out.startsWith(`lab ${VERSION}: a declarative lab runner for Linux TCP connection limits`));
  for (const c of ['run', 'validate', 'plan', 'report', 'publish', 'reports', 'restore', 'hosts']) assert.match(r.out, new RegExp(`^  ${c} `, 'm'));
  assert.match(r.out, '4 every prediction held\nbut a metric regressed against the baseline');
  assert.match(r.out, '(or a sysctl a host lacks, found before any change)');
  assert.match(r.out, "(or the lab's timeout ran out)");
  assert.match(r.out, 'Exit codes: 0 every prediction held, 1 a prediction failed, 2 invalid lab file');
});

test('lab with no command prints usage and exits 2', async () => {
  const r = await cli();
  assert.is(r.code, 2);
  assert.match(r.out, 'Usage:');
});

test('every command has its own --help', async () => {
  for (const c of ['run', 'validate', 'plan', 'report', 'publish', 'reports', 'restore', 'hosts']) {
    const r = await cli(c, '--help');
    assert.is(r.code, 0, c);
    assert.ok(r.out.startsWith(`Usage: lab ${c}`), `${c}: ${r.out.split('\n')[0]}`);
  }
});

test('lab --version prints the package version', async () => {
  const r = await cli('--version');
  assert.equal([r.code, r.out], [0, VERSION]);
});

test('bad arguments exit 2 with the exact message', async () => {
  assert.equal(await cli('run'), { code: 2, out: '', err: 'error: lab run needs a FILE or a folder of lab files: run "lab run --help" [ARGS]' });
  assert.equal(await cli('report'), { code: 2, out: '', err: 'error: lab report needs exactly one RESULT.json: run "lab report --help" [ARGS]' });
  assert.equal(await cli('validate'), { code: 2, out: '', err: 'error: lab validate needs at least one FILE or DIR: run "lab validate --help" [ARGS]' });
  assert.equal(await cli('plan', 'labs/port-exhaustion.yaml', '--out', 'x'), { code: 2, out: '', err: 'error: --out is an option of "lab run", not of "lab plan" [ARGS]' });
  const v = await cli('run', 'labs/port-exhaustion.yaml', '--var', 'nope');
  assert.equal(v, { code: 2, out: '', err: 'error: Cannot parse --var "nope": expected NAME=VALUE [ARGS]' });
});

test('an --out that cannot be written is refused before any host is touched', async () => {
  const r = await cli('run', 'labs/port-exhaustion.yaml', '--out', '/proc/version/reports');
  assert.is(r.code, 2);
  assert.match(r.err, /^error: Cannot write reports to "\/proc\/version\/reports": .*\[ARGS\]$/);
  assert.is(r.out, '');
});

test('a machine-wide sysctl on local hosts is refused unless acknowledged, naming it and how', async () => {
  const before = readFileSync('/proc/sys/fs/file-max', 'utf8');
  const r = await cli('run', 'test/fixtures/labs/run/global-unacked.yaml', '--out', '/tmp/lab-cli-test-unacked');
  assert.is(r.code, 2);
  assert.is(
    r.err.trim(),
    'error: test/fixtures/labs/run/global-unacked.yaml changes machine-wide settings on this machine: fs.file-max = 2000000 (on client). ' +
      'Every process here shares them until the run restores them. Acknowledge each in the lab file (acknowledge: { fs.file-max: "why" }) ' +
      'or with --ack fs.file-max [NEEDS_ACK]',
  );
  assert.is(readFileSync('/proc/sys/fs/file-max', 'utf8'), before, 'nothing was touched');
  assert.not.ok(existsSync('/tmp/lab-cli-test-unacked'), 'no report folder for a refused run');
  // lab validate and lab plan say so beforehand.
  const note = 'fs.file-max (on client) is machine-wide: a run here is refused [NEEDS_ACK] unless the lab has acknowledge: { fs.file-max: "why" } or the run --ack fs.file-max';
  const v = await cli('validate', 'test/fixtures/labs/run/global-unacked.yaml');
  assert.is(v.code, 0, v.err);
  assert.match(v.out, `\n  note: ${note}`);
  assert.not.match((await cli('validate', 'test/fixtures/labs/run/global-unacked.yaml', '--ack', 'fs.file-max')).out, 'note:');
  // lab plan exits as the run would before any change, so CI can gate on it.
  const p = await cli('plan', 'test/fixtures/labs/run/global-unacked.yaml');
  assert.is(p.code, 2, p.err);
  assert.match(p.out, `\n  ${note}`);
  assert.match(p.err, 'error: the run would be refused before any change [NEEDS_ACK]');
  assert.is((await cli('plan', 'test/fixtures/labs/run/global-unacked.yaml', '--ack', 'fs.file-max')).code, 0);
  const big = await cli('plan', 'test/fixtures/labs/run/too-big.yaml');
  assert.is(big.code, 3, big.err);
  assert.match(big.err, '[CAPACITY]');
});

test('a --var that no template uses is warned about, with the name meant; it is no error', async () => {
  const r = await cli('validate', 'labs/port-exhaustion.yaml', '--var', 'lo=40000', '--var', 'low=40000');
  assert.is(r.code, 0, r.err);
  assert.is(r.err, 'warning: --var lo is used by no template of the lab, so it changes nothing: did you mean "low"?');
  const suite = await cli('validate', 'labs', '--var', 'count=100');
  assert.is(suite.err, '', 'a --var some lab of the suite uses');
});

test('lab validate takes a folder: every lab file in it', async () => {
  const r = await cli('validate', 'labs');
  assert.is(r.code, 0, r.err);
  assert.match(r.out, /^labs\/accept-queue\.yaml: ok /m);
  assert.match(r.out, /^labs\/two-million\.yaml: ok /m);
  // A folder's lab files are its *.yaml and *.yml, as the help says: the parsed-lab fixtures beside them (*.lab.json) are not.
  const good = await cli('validate', 'test/fixtures/labs/good');
  assert.is(good.code, 0, good.out + good.err);
  assert.not.match(good.out, /\.json/);
});

test('lab plan prices a socket as the run will: merged slab caches found through /sys/kernel/slab, as the agent finds them', async () => {
  const r = await cli('plan', 'labs/million.yaml');
  assert.is(r.code, 0, r.err);
  const perSocket = r.out.split('\n').find((l) => l.trim().startsWith('per socket:'));
  assert.ok(perSocket, r.out);
  // Root reads /proc/slabinfo: the bind buckets are priced under their own cache or the one they are merged into.
  assert.not.match(perSocket!, 'no cache here for tcp_bind_bucket');
  assert.match(perSocket!, /tcp_bind_bucket( \(in [\w-]+\))? \d+ \+ tcp_bind2_bucket/);
});

test('a step that changes a machine-wide sysctl for its own duration needs the acknowledgement too', async () => {
  const before = readFileSync('/proc/sys/fs/file-max', 'utf8');
  const r = await cli('run', 'test/fixtures/labs/run/files-unacked.yaml', '--out', '/tmp/lab-cli-test-files-unacked');
  assert.is(r.code, 2);
  assert.is(
    r.err.trim(),
    'error: test/fixtures/labs/run/files-unacked.yaml changes machine-wide settings on this machine: fs.file-max = files in use + 100, during step "max" (on client). ' +
      'Every process here shares them until the run restores them. Acknowledge each in the lab file (acknowledge: { fs.file-max: "why" }) ' +
      'or with --ack fs.file-max [NEEDS_ACK]',
  );
  assert.is(readFileSync('/proc/sys/fs/file-max', 'utf8'), before, 'nothing was touched');
});

test('a missing lab file exits 2 naming it', async () => {
  const r = await cli('validate', 'labs/port-exhaustio.yaml');
  assert.is(r.code, 2);
  assert.match(r.err, 'labs/port-exhaustio.yaml');
  assert.match(r.err, 'port-exhaustion.yaml');
});

test('lab report on a file that is not a result exits 2 naming the problem', async () => {
  const r = await cli('report', 'package.json');
  assert.is(r.code, 2);
  assert.match(r.err, 'package.json: not a lab result: missing field "format"');
});

test('lab report refuses a result of a newer major format, exit 2', async () => {
  const { mkdtemp, readFile, writeFile } = await import('node:fs/promises');
  const { tmpdir } = await import('node:os');
  const { join } = await import('node:path');
  const dir = await mkdtemp(join(tmpdir(), 'lab-cli-'));
  const sample = JSON.parse(await readFile('test/fixtures/results/pass.result.json', 'utf8'));
  await writeFile(join(dir, 'result.json'), JSON.stringify({ ...sample, format: 'lab-result/2' }));
  const r = await cli('report', join(dir, 'result.json'));
  assert.is(r.code, 2);
  assert.is(r.err, `error: ${join(dir, 'result.json')}: written by a newer lab (format "lab-result/2"); this lab reads lab-result/1: upgrade lab to report it [RESULT_NEWER]`);
});

test('lab report exits as the run did: 3 for a run that stopped and left its restore incomplete, 130 interrupted, 2 a sysctl the host lacks', async () => {
  const { mkdtemp, readFile, writeFile } = await import('node:fs/promises');
  const { tmpdir } = await import('node:os');
  const { join } = await import('node:path');
  const dir = await mkdtemp(join(tmpdir(), 'lab-cli-'));
  // The agent timed out and fs.file-max was not put back: the run exited 3, not 1.
  const failed = await cli('report', 'test/fixtures/results/fail.result.json', '--out', dir);
  assert.is(failed.code, 3, failed.err);
  assert.match(failed.err, 'the run stopped: client: agent: no reply to "snapshot" within 10000 ms');
  assert.match(failed.err, "the run's restore was incomplete:\n  client: sysctl fs.file-max is still");
  const sample = JSON.parse(await readFile('test/fixtures/results/pass.result.json', 'utf8'));
  const exitOf = async (error: { code: string; message: string }) => {
    const file = join(dir, `${error.code}.json`);
    await writeFile(file, JSON.stringify({ ...sample, verdict: 'fail', error }));
    return (await cli('report', file, '--out', dir)).code;
  };
  // A run that passed but could not put a host back exits 3 on that alone.
  const unrestored = join(dir, 'unrestored.json');
  await writeFile(unrestored, JSON.stringify({ ...sample, restore: { ok: false, problems: ['client: sysctl fs.file-max is still "200000"'] } }));
  const r = await cli('report', unrestored, '--out', dir);
  assert.is(r.code, 3, r.err);
  assert.match(r.err, "the run's restore was incomplete:\n  client: sysctl fs.file-max is still");
  assert.is(await exitOf({ code: 'INTERRUPTED', message: 'interrupted (SIGINT)' }), 130);
  assert.is(await exitOf({ code: 'NO_SUCH_SYSCTL', message: 'lab.yaml:7:7: no such sysctl' }), 2);
  assert.is(await exitOf({ code: 'TIMEOUT', message: 'the lab ran out of its timeout' }), 3);
  assert.is((await cli('report', 'test/fixtures/results/pass.result.json', '--out', dir)).code, 0);
});

test('lab run and lab publish check their arguments before touching anything', async () => {
  const { mkdtemp, writeFile } = await import('node:fs/promises');
  const { tmpdir } = await import('node:os');
  const { join } = await import('node:path');
  const drift = await cli('run', 'labs/port-exhaustion.yaml', '--baseline', 'reports/', '--drift', 'lots');
  assert.equal(drift, { code: 2, out: '', err: 'error: --drift must be a percentage, 0 or more: got "lots" [ARGS]' });
  // Options that tune a comparison that is not asked for, or a history of no run, are refused rather than ignored.
  assert.equal(await cli('run', 'labs/port-exhaustion.yaml', '--drift', '10', '--history', '3'), {
    code: 2,
    out: '',
    err: 'error: --drift, --history tune the comparison with --baseline PATH, which is not given [ARGS]',
  });
  assert.equal((await cli('run', 'labs/port-exhaustion.yaml', '--baseline', 'reports/', '--history', '0')).err, 'error: --history must be a whole number of runs, 1 or more: got "0" [ARGS]');
  assert.equal((await cli('run', 'labs/port-exhaustion.yaml', '--machine', 'my runner')).err, 'error: --machine must be a name of letters, digits, ".", "_" and "-" (at most 63, the first a letter or digit): got "my runner" [ARGS]');
  assert.equal((await cli('plan', 'labs/port-exhaustion.yaml', '--machine', 'ci')).err, 'error: --machine is an option of "lab run", not of "lab plan" [ARGS]');
  assert.equal(await cli('publish', 'reports/'), { code: 2, out: '', err: 'error: lab publish needs RESULTS and --out DIR: run "lab publish --help" [ARGS]' });
  // A folder that cannot be made is refused at once (Node's recursive mkdir never returns under /proc).
  assert.equal(await cli('run', 'labs/port-exhaustion.yaml', '--out', '/proc/lab-nope'), {
    code: 2,
    out: '',
    err: 'error: Cannot write reports to "/proc/lab-nope": ENOENT: no such file or directory, mkdir \'/proc/lab-nope\' [ARGS]',
  });
  // Mistyped, repeated or dash-led options are named with what to do.
  assert.equal((await cli('run', 'labs/port-exhaustion.yaml', '--basline', 'reports/')).err, 'error: Unknown option \'--basline\' (did you mean --baseline?): run "lab --help" [ARGS]');
  assert.equal((await cli('run', 'labs/port-exhaustion.yaml', '--out', 'a', '--out=b')).err, 'error: --out is given 2 times ("a", "b"): give it once [ARGS]');
  assert.equal(
    (await cli('run', 'labs/port-exhaustion.yaml', '--baseline', 'reports/', '--perf-drift', '-5')).err,
    'error: --perf-drift takes a value, and "-5" looks like an option: write --perf-drift=-5 if it is the value [ARGS]',
  );
  assert.match((await cli('run', 'labs/port-exhaustion.yaml', '--baseline', 'README.md')).err, ': --baseline takes a result.json, or a folder of runs (a published site\'s folder, not its README.md) [RESULT_INVALID]');
  // --out holding another lab's run would lose its reports: refused; the same lab's is a rerun.
  const other = await mkdtemp(join(tmpdir(), 'lab-cli-out-'));
  await writeFile(join(other, 'result.json'), JSON.stringify({ lab: { name: 'capacity' } }));
  assert.equal((await cli('run', 'labs/port-exhaustion.yaml', '--out', other)).err, `error: "${other}" holds a run of the lab "capacity" (its result.json): running "port-exhaustion" there would replace its reports; give --out another folder [ARGS]`);
  const empty = await cli('run', 'test/fixtures/golden');
  assert.equal(empty, { code: 2, out: '', err: 'error: No lab files (*.yaml, *.yml) in "test/fixtures/golden" [ARGS]' });
});

test.run();
