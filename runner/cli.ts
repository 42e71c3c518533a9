// argv → command. The only module that writes to the terminal or decides the
// exit code: 0 every prediction held, 1 a prediction failed, 2 the lab file or
// arguments are invalid, 3 a host or the environment failed.

import { constants, existsSync, readFileSync } from 'node:fs';
import { access, stat, writeFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { formatProblem, isLabFailure, LabError } from './errors.ts';
import { planLab, unacknowledgedGlobals, type Plan } from './lab/plan.ts';
import { LAB_FILE, readLab } from './lab/validate.ts';
import { didYouMean } from './files/names.ts';
import { shellQuote } from './files/quote.ts';
import { readUserFile } from './files/read.ts';
import { parseVarOverrides, unusedOverrides } from './lab/template.ts';
import type { RunResult, StepObservation } from './result.ts';
import type { RunEvent } from './run/events.ts';
import type { HostKeyOptions } from './hosts/inventory.ts';
import { describePlan } from './run/describe-plan.ts';
import { hostsDownCommand, hostsUpCommand } from './run/hosts-up.ts';
import { restoreLeftovers } from './run/leftovers.ts';
import { STOPPED } from './run/steps.ts';
import { openProvider } from './run/provider.ts';
import { runPlan, runtimeName } from './run/run.ts';
import { writeReports, renderSuiteJunit } from './report/write.ts';
import { writeEachReports } from './report/each.ts';
import { isRefusal, predictionLabel, refusalReason, runExitCode } from './report/helpers.ts';
import { readResult } from './report/read.ts';
import { compareWithBaseline, DEFAULT_BASELINE_OPTIONS, describeComparison, noBaselineReason, readBaseline, skippedWarning, type BaselineOptions } from './report/baseline.ts';
import { isRegression } from './report/helpers.ts';
import { expandLabFiles, HostPool, readSuite } from './run/suite.ts';
import { publish } from './report/publish.ts';
import { clearReference, readReferences, referenceReadme } from './report/reference.ts';
import type { Lab } from './lab/types.ts';
import { makeDirs } from './files/dirs.ts';

export const VERSION: string = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')).version;

export interface Io {
  out: (s: string) => void;
  err: (s: string) => void;
  isTTY: boolean;
  /** aborted on Ctrl-C */
  signal?: AbortSignal;
}

const USAGE = `lab ${VERSION}: a declarative lab runner for Linux TCP connection limits

Usage:
  lab run FILE|DIR... [--out DIR] [--var k=v ...] [-i INVENTORY [--role ROLE=GROUP ...] [--forks N]] [--yes]
                      [--ack SYSCTL ...] [--junit FILE] [--baseline PATH]
  lab run FILE -i INVENTORY --each GROUP [--out DIR] [--var k=v ...] [--yes]
  lab validate FILE|DIR... [--var k=v ...] [--ack SYSCTL ...]
  lab plan FILE [--var k=v ...] [-i INVENTORY [--role ROLE=GROUP ...] [--forks N]] [--ack SYSCTL ...]
  lab report RESULT.json [--out DIR]
  lab publish RESULTS... --out DIR
  lab reports refresh [FILE|DIR...]
  lab restore [-i INVENTORY [--forks N] [--accept-new-host-keys]]
  lab hosts up [--roles client:4,server] [--out inventory.yaml] [--ansible inventory.ini]
  lab hosts down

Commands:
  run       provision the hosts, run the lab's steps, compare every observation
            with its prediction, restore the hosts, write the reports; several
            files or a folder run as a suite
  validate  check lab files without touching any host
  plan      a dry run: what each host would get and which steps would run
  report    re-render the reports of an earlier run from its result.json
  publish   build a static site (HTML and Markdown) from any number of runs
  reports   refresh the committed reference runs in reports/
  restore   undo what a run whose controller died left on its hosts
  hosts     make (or remove) local namespace hosts running a real sshd, and an
            inventory for them

Run "lab COMMAND --help" for a command's options.

Exit codes: 0 every prediction held, 1 a prediction failed, 2 invalid lab file
or arguments (or a sysctl a host lacks, found before any change), 3 a host or
the environment failed (or the lab's timeout ran out), 4 every prediction held
but a metric regressed against the baseline, 130 interrupted`;

const HELP: Record<string, string> = {
  run: `Usage: lab run FILE|DIR... [options]

Provision the lab's hosts (local network namespaces, or the hosts of an
inventory over SSH), run its steps, compare observations with predictions,
restore every host, and write result.json, report.md, report.html, junit.xml
and the charts (SVG). Several files, or a folder of lab files, run as a suite:
one lab after the other on the same local hosts (each lab's changes undone in
between; a lab whose release is graceful hands on no hosts), ending with a
summary.

Options:
  --out DIR              where the reports go (default reports/<lab>/<timestamp>/;
                         for a suite, DIR/<lab>/)
  --junit FILE           also write one JUnit file for all the labs run
  --baseline PATH        compare with earlier runs: a result.json, a folder of
                         runs (e.g. reports/) or a published site; the latest
                         that passed without a regression is the baseline, and a
                         metric that moved beyond its rule is a regression (exit 4)
  --drift PCT            drift tolerance of measured quantities (default ${DEFAULT_BASELINE_OPTIONS.driftPercent})
  --perf-drift PCT       how far a performance figure may fall beyond the worst
                         of the earlier runs (default ${DEFAULT_BASELINE_OPTIONS.performanceDriftPercent}; needs 3 earlier runs)
  --history N            earlier runs the performance rule looks at (default ${DEFAULT_BASELINE_OPTIONS.history})
  --machine NAME         what baselines and published sites call this machine
                         (default: the hosts' hostnames; name a CI runner)
  --var k=v              set a template variable (repeatable)
  -i, --inventory FILE   run on the hosts of this inventory, over SSH: lab's own
                         format, or an Ansible inventory (INI, or YAML) as it is
  --role ROLE=GROUP      the inventory group a lab role takes (default: the
                         group of the role's name); repeatable
  --forks N              hosts connected, provisioned and restored at once (default 10)
  --each GROUP           run the lab once per host of GROUP (its inventory vars
                         given to the lab's templates), and write one report with
                         a column per host
  --yes                  allow changes on real (non-local) hosts
  --ack SYSCTL           allow a machine-wide sysctl (fs.*, vm.*, kernel.*…) to change on this machine
  --accept-new-host-keys accept and remember SSH host keys not yet known
  -h, --help             show this help`,
  validate: `Usage: lab validate FILE|DIR... [--var k=v ...] [--ack SYSCTL ...]

Check lab files (YAML syntax, schema, templates, references) without touching
any host; a folder means its *.yaml and *.yml files. Every problem is printed
as FILE:LINE:COL: path: message. A valid lab that a run on this machine would
still refuse (a machine-wide sysctl not acknowledged) gets a note.

Options:
  --var k=v              set a template variable (repeatable), as lab run does
  --ack SYSCTL           count a machine-wide sysctl as acknowledged, as lab run does`,
  plan: `Usage: lab plan FILE [options]

A dry run: the hosts that would be made or used, their addresses, each sysctl
with its current and planned value (old → new; a sysctl the kernel lacks is
marked, as the run would refuse it), the steps in order, the capacity check
and a line for each machine-wide sysctl the run would refuse unacknowledged.
Exits as the run would before any change: 2 for a sysctl a host lacks or one
not acknowledged, 3 when local hosts cannot hold the lab, 0 otherwise. The
capacity of inventory hosts is checked by the run, once their agents report
their facts.

Options:
  --var k=v              set a template variable (repeatable)
  -i, --inventory FILE   plan for the hosts of this inventory (which hosts each role gets)
  --role ROLE=GROUP      the inventory group a lab role takes; repeatable
  --forks N              hosts read at once (default 10)
  --ack SYSCTL           count a machine-wide sysctl as acknowledged, as lab run does
  --accept-new-host-keys accept and remember SSH host keys not yet known`,
  report: `Usage: lab report RESULT.json [--out DIR]

Re-render report.md, report.html and junit.xml from a result.json alone
(default: next to it), and print its verdicts and its comparison with the
baseline as the run did. The exit code is the one the run gave: 0 pass, 1 a
failed prediction, 4 a regression, 2 a sysctl the host lacks, 3 a run that
stopped, was refused or left a restore incomplete, 130 interrupted.`,
  publish: `Usage: lab publish RESULTS... --out DIR

Build a static site from runs: RESULTS are result.json files or folders of runs
(a suite's --out, reports/, or an earlier site, which is how a nightly job adds
to it). DIR gets index.html and index.md (the latest verdict per lab and
machine, each metric's history across runs), a page per lab, and each run's
reports at a stable path runs/<lab>/<machine>/<start time>/. Every page is one
self-contained HTML file and a Markdown file a docs generator renders as is.`,
  reports: `Usage: lab reports refresh [FILE|DIR...]

Run the shipped labs (default labs/) as a suite and keep each run as the
committed reference in reports/<lab>/ (result.json, report.md and its charts;
report.html and junit.xml stay git-ignored), with reports/README.md naming the
machine. A nightly job compares with it: lab run labs/ --baseline reports/.`,
  restore: `Usage: lab restore [-i INVENTORY [--forks N] [--accept-new-host-keys]]

Undo what a run left behind when its controller died: without -i, the local
namespaces, links and routes of dead runs; with -i, each host's journal.

Options:
  -i, --inventory FILE   the hosts to restore, over SSH
  --forks N              hosts restored at once (default 10)
  --accept-new-host-keys accept and remember SSH host keys not yet known`,
  hosts: `Usage: lab hosts up [--roles client:4,server] [--out inventory.yaml] [--ansible inventory.ini]
       lab hosts down

"up" makes local network namespace hosts, each running a real OpenSSH sshd
("client:4" makes client-1…client-4 in group "client"), and writes two
inventories for them: lab's (--out) and an Ansible INI (--ansible, default:
--out with ".ini"), so a lab can run over SSH on this machine. "down" stops
those sshds and removes the namespaces.`,
};

const COMMON: ParseArgsConfig['options'] = {
  help: { type: 'boolean', short: 'h' },
};

function parse(argv: string[], options: ParseArgsConfig['options']) {
  const all = { ...COMMON, ...options };
  let parsed;
  try {
    parsed = parseArgs({ args: argv, options: all, allowPositionals: true, strict: true, tokens: true });
  } catch (e) {
    const message = (e as Error).message;
    const unknown = /^Unknown option '(--?[^']+)'/.exec(message)?.[1];
    if (unknown) {
      const meant = unknown.startsWith('--') ? didYouMean(unknown.slice(2), Object.keys(all)) : undefined;
      throw new LabError('ARGS', `Unknown option '${unknown}'${meant ? ` (did you mean --${meant}?)` : ''}: run "lab --help"`);
    }
    // "--drift -5": parseArgs takes the value for another option.
    const ambiguous = /^Option '(--?[^']+)' argument is ambiguous/.exec(message)?.[1];
    if (ambiguous) {
      const at = argv.findIndex((a, i) => a === ambiguous && argv[i + 1]?.startsWith('-'));
      const value = argv[at + 1] ?? '';
      // "-i=-x" would give "=-x": the long form takes the value whole.
      const long = ambiguous.startsWith('--') ? ambiguous : `--${Object.entries(all).find(([, o]) => `-${o.short}` === ambiguous)?.[0] ?? ambiguous.slice(1)}`;
      throw new LabError('ARGS', `${ambiguous} takes a value, and "${value}" looks like an option: write ${long}=${value} if it is the value`);
    }
    // Node's words on one line, without the trailing period or its hint about positionals (lab takes none starting with "-").
    const said = message.replace(/\s*\n\s*/g, ' ').replace(/\.?\s*To specify a positional argument.*$/s, '').replace(/\.$/, '');
    throw new LabError('ARGS', `${said}: run "lab --help"`);
  }
  // An option of one value given twice: the last would win without a word (--out a --out b).
  const seen = new Map<string, string[]>();
  for (const t of parsed.tokens ?? []) {
    if (t.kind !== 'option' || all[t.name]?.multiple || all[t.name]?.type !== 'string') continue;
    seen.set(t.name, [...(seen.get(t.name) ?? []), t.value ?? '']);
  }
  for (const [name, values] of seen) {
    if (values.length > 1) throw new LabError('ARGS', `--${name} is given ${values.length} times (${values.map((v) => JSON.stringify(v)).join(', ')}): give it once`);
  }
  return parsed;
}

/** "1 host", "2 hosts". */
function count(n: number, noun: string): string {
  return `${n} ${noun}${n === 1 ? '' : 's'}`;
}

/** `base`, or `base-2`, `base-3`… when a run in the same second already wrote there: nothing is overwritten. */
function freshDir(base: string): string {
  let dir = base;
  for (let n = 2; existsSync(dir); n++) dir = `${base}-${n}`;
  return dir;
}

function timestamp(d = new Date()): string {
  return d.toISOString().replace(/\.\d+Z$/, 'Z').replaceAll(':', '-');
}

export async function main(argv: string[], io: Io): Promise<number> {
  try {
    return await dispatch(argv, io);
  } catch (e) {
    if (e instanceof LabError && e.problems.length) {
      for (const p of e.problems) io.err(formatProblem(p));
      io.err(`${e.problems.length} problem${e.problems.length > 1 ? 's' : ''} found`);
      return 2;
    }
    if (isLabFailure(e)) {
      io.err(`error: ${e.message} [${e.code}]`);
      return e.exitCode;
    }
    io.err(`internal error: ${(e as Error).stack ?? e}`);
    return 3;
  }
}

async function dispatch(argv: string[], io: Io): Promise<number> {
  const [command, ...rest] = argv;
  if (!command || command === '--help' || command === '-h' || command === 'help') {
    io.out(USAGE);
    return command ? 0 : 2;
  }
  if (command === '--version' || command === '-v') {
    io.out(VERSION);
    return 0;
  }
  if (rest.includes('--help') || rest.includes('-h')) {
    if (!HELP[command]) throw new LabError('ARGS', `Unknown command "${command}": run "lab --help"`);
    io.out(HELP[command]!);
    return 0;
  }
  switch (command) {
    case 'validate':
      return validateCommand(rest, io);
    case 'plan':
      return planCommand(rest, io);
    case 'run':
      return runCommand(rest, io);
    case 'report':
      return reportCommand(rest, io);
    case 'restore':
      return restoreCommand(rest, io);
    case 'publish':
      return publishCommand(rest, io);
    case 'reports':
      return referenceReportsCommand(rest, io);
    case 'hosts':
      return hostsCommand(rest, io);
    default: {
      const near = didYouMean(command, Object.keys(HELP));
      throw new LabError('ARGS', `Unknown command "${command}"${near ? `: did you mean "${near}"?` : ': run "lab --help"'}`);
    }
  }
}

async function validateCommand(argv: string[], io: Io): Promise<number> {
  const { positionals, values } = parse(argv, { var: { type: 'string', multiple: true }, ack: { type: 'string', multiple: true } });
  if (!positionals.length) throw new LabError('ARGS', 'lab validate needs at least one FILE or DIR: run "lab validate --help"');
  const overrides = parseVarOverrides((values.var as string[] | undefined) ?? []);
  let problems = 0;
  const sources: string[] = [];
  for (const file of await expandLabFiles(positionals)) {
    try {
      const lab = await readLab(file, overrides);
      sources.push(lab.source);
      // Valid, but a run on local hosts would refuse it: say so now, not at the run.
      const local = planLab(lab, (await openProvider(lab, {})).bindings());
      io.out(`${file}: ok (lab "${lab.name}", ${count(lab.hosts.length, 'host')}, ${count(lab.steps.length, 'step')}, ${count(lab.expect.length, 'expectation')})`);
      for (const line of needsAckLines(local, (values.ack as string[] | undefined) ?? [])) io.out(`  note: ${line}`);
    } catch (e) {
      if (!(e instanceof LabError)) throw e;
      // An invalid lab's templates count for the --var check too, when the reader could read it (the size limit, text).
      sources.push(await readUserFile(file, LAB_FILE).catch(() => ''));
      if (e.problems.length) for (const p of e.problems) io.err(formatProblem(p));
      else io.err(`${e.message}`);
      problems += Math.max(1, e.problems.length);
    }
  }
  if (sources.length) warnUnusedVars(overrides, sources, io);
  if (problems) io.err(`${problems} problem${problems > 1 ? 's' : ''} found`);
  return problems ? 2 : 0;
}

const RUN_OPTIONS: ParseArgsConfig['options'] = {
  out: { type: 'string' },
  var: { type: 'string', multiple: true },
  inventory: { type: 'string', short: 'i' },
  role: { type: 'string', multiple: true },
  forks: { type: 'string' },
  each: { type: 'string' },
  yes: { type: 'boolean' },
  ack: { type: 'string', multiple: true },
  'accept-new-host-keys': { type: 'boolean' },
  machine: { type: 'string' },
};

const MAX_FORKS = 1000;

/** `--machine NAME`: what baselines and the published site call this run's machine (result.json `machine`). */
function machineOption(values: Record<string, unknown>): string | undefined {
  const name = values.machine as string | undefined;
  if (name === undefined) return undefined;
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/.test(name)) {
    throw new LabError('ARGS', `--machine must be a name of letters, digits, ".", "_" and "-" (at most 63, the first a letter or digit): got ${JSON.stringify(name)}`);
  }
  return name;
}

function forksOf(values: Record<string, unknown>): number | undefined {
  const text = values.forks as string | undefined;
  if (text === undefined) return undefined;
  const n = /^\d+$/.test(text) ? Number(text) : NaN;
  if (!Number.isInteger(n) || n < 1 || n > MAX_FORKS) throw new LabError('ARGS', `--forks must be an integer from 1 to ${MAX_FORKS}: got "${text}"`);
  return n;
}

/** `--role client=loadgen` (repeatable): role -> inventory group. */
function roleGroupsOf(values: Record<string, unknown>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const spec of (values.role as string[] | undefined) ?? []) {
    const m = /^([a-z][a-z0-9-]*)=([A-Za-z_][A-Za-z0-9_-]*)$/.exec(spec);
    if (!m) throw new LabError('ARGS', `--role must be ROLE=GROUP, e.g. "client=loadgen": got "${spec}"`);
    if (out[m[1]!] !== undefined) throw new LabError('ARGS', `--role ${m[1]} is given twice`);
    out[m[1]!] = m[2]!;
  }
  return out;
}

/** `--accept-new-host-keys`, and a line for each key it trusts on first use, as OpenSSH's "Permanently added". */
function hostKeyOptions(values: Record<string, unknown>, io: Io): HostKeyOptions {
  return {
    acceptNewHostKeys: !!values['accept-new-host-keys'],
    onHostKeyAdded: (a) => io.err(`${a.role}: added the ${a.who}host key of ${a.host} (${a.key}) to ${a.file}`),
  };
}

/** A --var no template uses changes nothing: say so (it is allowed, for suites whose labs share --vars). */
function warnUnusedVars(overrides: Record<string, string>, sources: string[], io: Io): void {
  for (const u of unusedOverrides(overrides, sources)) {
    io.err(`warning: --var ${u.name} is used by no template of ${sources.length > 1 ? 'these labs' : 'the lab'}, so it changes nothing${u.meant ? `: did you mean "${u.meant}"?` : ''}`);
  }
}

async function loadPlan(argv: string[], command: string, io: Io) {
  const { positionals, values } = parse(argv, RUN_OPTIONS);
  if (positionals.length !== 1) throw new LabError('ARGS', `lab ${command} needs exactly one FILE: run "lab ${command} --help"`);
  const overrides = parseVarOverrides((values.var as string[] | undefined) ?? []);
  const lab = await readLab(positionals[0]!, overrides);
  warnUnusedVars(overrides, [lab.source], io);
  const forks = forksOf(values);
  const providerOptions = {
    inventory: values.inventory as string | undefined,
    ...hostKeyOptions(values, io),
    roleGroups: roleGroupsOf(values),
    forks,
  };
  for (const only of ['each', 'out', 'yes', 'machine'] as const) {
    if (values[only] !== undefined && command !== 'run') throw new LabError('ARGS', `--${only} is an option of "lab run", not of "lab ${command}"`);
  }
  if (values.each !== undefined && !providerOptions.inventory) throw new LabError('ARGS', '--each GROUP runs the lab once per host of an inventory group: it needs -i INVENTORY');
  const provider = await openProvider(lab, providerOptions);
  const plan = planLab(lab, provider.bindings());
  return { lab, plan, provider, values, forks, overrides, providerOptions, file: positionals[0]! };
}

async function planCommand(argv: string[], io: Io): Promise<number> {
  const { plan, provider, forks, values } = await loadPlan(argv, 'plan', io);
  const refusals = { noSuchSysctl: [] as string[], capacity: false };
  io.out(await describePlan(plan, provider, { forks, refusals }));
  const acks = needsAckLines(plan, (values.ack as string[] | undefined) ?? []);
  for (const line of acks) io.out(`  ${line}`);
  // The exit code the run would give before changing anything, so CI can gate on the plan.
  for (const p of refusals.noSuchSysctl) io.err(p);
  if (refusals.noSuchSysctl.length || acks.length) {
    io.err(`error: the run would be refused before any change [${refusals.noSuchSysctl.length ? 'NO_SUCH_SYSCTL' : 'NEEDS_ACK'}]`);
    return 2;
  }
  if (refusals.capacity) {
    io.err('error: the hosts cannot hold this lab (the capacity check above): the run would refuse it [CAPACITY]');
    return 3;
  }
  return 0;
}

/** What a run would refuse as NEEDS_ACK: a line per machine-wide sysctl of this machine's that the lab changes unacknowledged. */
function needsAckLines(plan: Plan, acks: string[]): string[] {
  return unacknowledgedGlobals(plan, acks).map(
    (u) => `${u.name} (on ${u.role}) is machine-wide: a run here is refused [NEEDS_ACK] unless the lab has acknowledge: { ${u.name}: "why" } or the run --ack ${u.name}`,
  );
}

const SUITE_OPTIONS: ParseArgsConfig['options'] = {
  ...RUN_OPTIONS,
  // internal, for lab reports refresh: one folder per lab under --out even for one lab
  suite: { type: 'boolean' },
  junit: { type: 'string' },
  baseline: { type: 'string' },
  drift: { type: 'string' },
  'perf-drift': { type: 'string' },
  history: { type: 'string' },
};

function baselineOptions(values: Record<string, unknown>): BaselineOptions {
  const given = (['drift', 'perf-drift', 'history'] as const).filter((n) => values[n] !== undefined);
  if (given.length && values.baseline === undefined) {
    throw new LabError('ARGS', `${given.map((n) => `--${n}`).join(', ')} tune${given.length === 1 ? 's' : ''} the comparison with --baseline PATH, which is not given`);
  }
  const num = (name: string, fallback: number, integer: boolean) => {
    const raw = values[name] as string | undefined;
    if (raw === undefined) return fallback;
    const n = Number(raw.replace(/%$/, ''));
    const least = integer ? 1 : 0;
    if (!Number.isFinite(n) || n < least || (integer && !Number.isInteger(n))) {
      throw new LabError('ARGS', `--${name} must be ${integer ? 'a whole number of runs, 1 or more' : 'a percentage, 0 or more'}: got "${raw}"`);
    }
    return n;
  };
  return {
    driftPercent: num('drift', DEFAULT_BASELINE_OPTIONS.driftPercent, false),
    performanceDriftPercent: num('perf-drift', DEFAULT_BASELINE_OPTIONS.performanceDriftPercent, false),
    history: num('history', DEFAULT_BASELINE_OPTIONS.history, true),
  };
}

/** A directory reports can be written to, found before any host is touched. */
async function writableDir(dir: string, what: string): Promise<void> {
  try {
    await makeDirs(dir);
    await access(dir, constants.W_OK);
  } catch (e) {
    throw new LabError('ARGS', `Cannot write ${what} to "${dir}": ${(e as Error).message}`);
  }
}

/** --out DIR that holds another lab's run: its reports would be replaced by this one's, so it is refused (the same lab's run is replaced, as a rerun). */
function refuseOtherLabsRun(dir: string, lab: string): void {
  let name: unknown;
  try {
    name = (JSON.parse(readFileSync(join(dir, 'result.json'), 'utf8')) as { lab?: { name?: unknown } }).lab?.name;
  } catch {
    return;
  }
  if (typeof name === 'string' && name !== lab) {
    throw new LabError('ARGS', `"${dir}" holds a run of the lab "${name}" (its result.json): running "${lab}" there would replace its reports; give --out another folder`);
  }
}

interface LabOutcome {
  result: RunResult;
  code: number;
}

async function runCommand(argv: string[], io: Io): Promise<number> {
  const { positionals, values } = parse(argv, SUITE_OPTIONS);
  // --each: one lab, once per host of an inventory group, one side-by-side report.
  if (values.each !== undefined) {
    for (const suiteOnly of ['baseline', 'junit', 'drift', 'perf-drift', 'history'] as const) {
      if (values[suiteOnly] !== undefined) throw new LabError('ARGS', `--${suiteOnly} is not an option of "lab run --each" (its report sets the hosts side by side; compare single runs with --baseline)`);
    }
    return eachCommand(await loadPlan(argv, 'run', io), io);
  }
  if (!positionals.length) throw new LabError('ARGS', 'lab run needs a FILE or a folder of lab files: run "lab run --help"');
  const files = await expandLabFiles(positionals);
  const overrides = parseVarOverrides((values.var as string[] | undefined) ?? []);
  const labs = await readSuite(files, overrides);
  warnUnusedVars(overrides, labs.map((l) => l.source), io);
  const folders = await Promise.all(positionals.map((p) => stat(p).then((s) => s.isDirectory(), () => false)));
  const suite = labs.length > 1 || folders.some(Boolean) || !!values.suite;
  const options = baselineOptions(values);
  // Bad input all found here, before any host is touched: the baseline, where the reports go.
  const baselinePath = values.baseline as string | undefined;
  const read = baselinePath ? await readBaseline(baselinePath) : undefined;
  for (const s of read?.skipped ?? []) io.err(skippedWarning(s));
  const baseline = read?.results;
  const machine = machineOption(values);
  const junit = values.junit ? resolve(values.junit as string) : undefined;
  const stamp = timestamp();
  const outs = labs.map((lab) => {
    const out = values.out as string | undefined;
    if (out) return resolve(suite ? join(out, lab.name) : out);
    return resolve(freshDir(`reports/${lab.name}/${stamp}`));
  });

  const forks = forksOf(values);
  const pool = new HostPool({
    inventory: values.inventory as string | undefined,
    ...hostKeyOptions(values, io),
    roleGroups: roleGroupsOf(values),
    forks,
  });
  const plans = [];
  for (const lab of labs) {
    const provider = await pool.provider(lab);
    // Before reserve(): a preview, enough to show what real hosts would get.
    const preview = planLab(lab, provider.bindings());
    if (provider.kind === 'inventory' && preview.hosts.some((h) => !h.local) && !values.yes) {
      io.err(await describePlan(preview, provider, { forks }));
      throw new LabError('NEEDS_YES', 'This run changes real hosts (above): run again with --yes to go ahead');
    }
    refuseUnacknowledged(preview, values);
    plans.push({ lab, provider });
  }
  for (const [i, out] of outs.entries()) refuseOtherLabsRun(out, labs[i]!.name);
  // Made only once nothing above refused the run: a refusal leaves no empty folder behind.
  if (junit) await writableDir(dirname(junit), 'the JUnit file');
  for (const out of outs) await writableDir(out, 'reports');

  const outcomes: LabOutcome[] = [];
  let teardownProblems: string[] = [];
  try {
    for (const [i, { lab, provider: planned }] of plans.entries()) {
      if (io.signal?.aborted) break;
      const provider = await pool.current(lab, planned);
      // A local run's addresses are its own slice of 198.18.0.0/16, known once reserved
      // (a kept network keeps its slice); the pool gives it back at the end.
      await provider.reserve();
      const plan = planLab(lab, provider.bindings());
      const outcome = await runOneLab(lab, plan, provider, outs[i]!, io, {
        position: suite ? `[${i + 1}/${labs.length}] ` : '',
        forks,
        machine,
        baseline: baseline && { results: baseline, source: baselinePath!, options },
      });
      outcomes.push(outcome);
      // A lab that stopped early, left changes or sockets in TIME_WAIT must not hand its hosts to the next.
      if (suite && (outcome.result.error || !outcome.result.restore.ok || !HostPool.leavesHostsClean(lab))) {
        teardownProblems.push(...(await pool.discard(lab)));
      }
      if (outcome.code === 130) break;
    }
  } finally {
    teardownProblems.push(...(await pool.close()));
  }
  if (junit) {
    await writeFile(junit, renderSuiteJunit(outcomes.map((o) => o.result)));
    io.out(`junit: ${junit}`);
  }
  if (suite) io.out(suiteSummary(outcomes, labs, !!baseline));
  if (teardownProblems.length) {
    io.err(`error: removing the local hosts left problems:\n  ${teardownProblems.join('\n  ')}\nrun "lab restore" to finish it [RESTORE_INCOMPLETE]`);
    return 3;
  }
  // A lab this machine cannot hold is refused, shown and counted as such (summary,
  // JUnit errors with the arithmetic) and exits 3 as it does alone: a suite that
  // did not run every lab never says it passed (a kernel whose sockets cost more
  // would otherwise turn a failed million into a quiet refusal).
  const codes = outcomes.map((o) => o.code);
  if (outcomes.length < labs.length && !codes.includes(130)) codes.push(130);
  for (const code of [130, 3, 2, 1, 4]) if (codes.includes(code)) return code;
  return 0;
}

async function runOneLab(
  lab: Lab,
  plan: ReturnType<typeof planLab>,
  provider: Awaited<ReturnType<HostPool['provider']>>,
  out: string,
  io: Io,
  suite: { position: string; forks?: number; machine?: string; baseline?: { results: RunResult[]; source: string; options: BaselineOptions } },
): Promise<LabOutcome> {
  const render = progressRenderer(io);
  io.out(`${suite.position}lab ${VERSION}: running "${lab.name}" on ${describeHosts(plan)}`);
  const result = await runPlan(plan, {
    provider,
    signal: io.signal,
    onEvent: render,
    version: VERSION,
    runtime: runtimeName(),
    forks: suite.forks,
    machine: suite.machine,
  });
  render.done();
  if (suite.baseline) {
    const comparison = compareWithBaseline(result, suite.baseline.results, suite.baseline.source, suite.baseline.options);
    if (comparison) result.baseline = comparison;
  }
  const t = performance.now();
  io.out(verdictTable(result));
  if (suite.baseline) io.out(baselineLines(result, suite.baseline.results));
  let unwritten = false;
  try {
    const paths = await writeReports(result, out);
    io.out(`reports (${Math.round(performance.now() - t)} ms): ${paths.json}\n  ${paths.markdown}\n  ${paths.html}\n  ${paths.junit}`);
  } catch (e) {
    // The verdicts are printed; the files are missing. What stopped the run, and a restore left to finish, are still said below.
    io.err(`error: Cannot write the reports to "${out}": ${(e as Error).message} [REPORTS_UNWRITTEN]`);
    unwritten = true;
  }
  const code = exitCodeOf(result, io, provider.restoreCommand);
  if (unwritten) return { result, code: code === 130 ? 130 : 3 };
  // Every prediction held, but the machine moved: its own exit code, so a nightly job can tell.
  if (code === 4) io.err(`error: ${result.baseline!.regressions} metric${result.baseline!.regressions > 1 ? 's' : ''} regressed against the baseline [REGRESSION]`);
  return { result, code };
}

function baselineLines(result: RunResult, baseline: RunResult[]): string {
  const c = result.baseline;
  if (!c) return `\nbaseline: ${noBaselineReason(result, baseline)}`;
  const lines = [`\nbaseline: ${describeComparison(c)}`];
  if (c.changed) lines.push(`  since then: ${c.changed.join('; ')}`);
  for (const m of c.metrics) {
    if (isRegression(m)) lines.push(`  REGRESSION ${m.metric}: ${m.rule}`);
    else if (m.status === 'improved') lines.push(`  improved ${m.metric}: ${m.rule}`);
  }
  // A regressed run is never a baseline itself: the next run is compared with the same good one.
  if (c.regressions) lines.push('  (to accept the moved values as the new normal, run the lab once without --baseline and keep that result where the baseline is read from)');
  return lines.join('\n');
}

function suiteSummary(outcomes: LabOutcome[], labs: Lab[], withBaseline = false): string {
  const rows = outcomes.map(({ result: r }) => {
    const passed = r.predictions.filter((p) => p.verdict === 'pass').length;
    const failed = r.predictions.length - passed;
    const verdict = isRefusal(r) ? 'REFUSED' : r.error ? (r.error.code === 'INTERRUPTED' || r.error.code === 'TIMEOUT' ? r.error.code : 'ERROR') : r.verdict.toUpperCase();
    const baseline = r.baseline ? (r.baseline.regressions ? `${r.baseline.regressions} REGRESSED` : 'no regression') : withBaseline ? 'nothing compared' : '';
    // A refused lab ran nothing: no prediction passed or failed.
    const counts = isRefusal(r) ? ['—', '—'] : [String(passed), String(failed)];
    return [r.lab.name, verdict, ...counts, baseline, `${(r.durationMs / 1000).toFixed(1)} s`];
  });
  for (const lab of labs.slice(outcomes.length)) rows.push([lab.name, 'NOT RUN', '', '', '', '']);
  // The baseline column only when there was a baseline.
  const keep = (_: unknown, i: number) => i !== 4 || rows.some((r) => r[4]);
  const head = ['lab', 'verdict', 'passed', 'failed', 'baseline', 'duration'].filter(keep);
  const body = rows.map((r) => r.filter(keep));
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((row) => row[i]!.length)));
  const fmt = (cells: string[]) => '  ' + cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]!))).join('  ');
  const total = outcomes.reduce((a, o) => a + o.result.durationMs, 0);
  // Each lab counted once, by what its row says: passed, passed but regressed, refused, or did not pass.
  const regressed = outcomes.filter((o) => o.result.verdict === 'pass' && !o.result.error && o.result.baseline?.regressions).length;
  const passed = outcomes.filter((o) => o.result.verdict === 'pass' && !o.result.error && !o.result.baseline?.regressions).length;
  const refused = outcomes.filter((o) => isRefusal(o.result));
  const counted = [`${passed} passed`];
  if (regressed) counted.push(`${regressed} passed but regressed`);
  if (refused.length) counted.push(`${refused.length} refused (this machine cannot hold ${refused.length > 1 ? 'them' : 'it'})`);
  counted.push(`${labs.length - passed - regressed - refused.length} did not`);
  return [
    `\nsuite: ${labs.length} labs, ${counted.join(', ')}, in ${(total / 1000).toFixed(1)} s`,
    fmt(head),
    fmt(widths.map((w) => '─'.repeat(w))),
    ...body.map(fmt),
    ...refused.map((o) => `  ${o.result.lab.name}: refused, not started: ${refusalReason(o.result)} [${o.result.error!.code}]`),
  ].join('\n');
}

/**
 * NEEDS_ACK: a lab that changes a machine-wide sysctl of this machine (local
 * hosts, `lab hosts up` hosts among them) without acknowledging it is refused
 * before any host is touched.
 */
function refuseUnacknowledged(plan: Plan, values: Record<string, unknown>): void {
  const unacked = unacknowledgedGlobals(plan, (values.ack as string[] | undefined) ?? []);
  if (!unacked.length) return;
  const list = unacked.map((u) => `${u.name} = ${u.value} (on ${u.role})`).join(', ');
  const names = [...new Set(unacked.map((u) => u.name))];
  throw new LabError(
    'NEEDS_ACK',
    `${plan.lab.file} changes machine-wide settings on this machine: ${list}. Every process here shares them until the run restores them. ` +
      `Acknowledge each in the lab file (acknowledge: { ${names.map((n) => `${n}: "why"`).join(', ')} }) or with ${names.map((n) => `--ack ${n}`).join(' ')}`,
  );
}

/** `lab run --each GROUP`: the lab once per host of the group, then one side-by-side report. */
async function eachCommand(loaded: Awaited<ReturnType<typeof loadPlan>>, io: Io): Promise<number> {
  const { lab, values, forks, overrides, providerOptions, file } = loaded;
  const options = {
    file,
    inventory: providerOptions.inventory!,
    group: values.each as string,
    overrides,
    roleGroups: providerOptions.roleGroups,
    acceptNewHostKeys: providerOptions.acceptNewHostKeys,
    onHostKeyAdded: providerOptions.onHostKeyAdded,
    forks,
    machine: machineOption(values),
    signal: io.signal,
    version: VERSION,
    runtime: runtimeName(),
  };
  // Loaded only here: it brings the SSH transport (ssh2) with it.
  const { planEach, runEach } = await import('./run/each.ts');
  // Every host's lab is read and planned before any host is touched.
  const each = await planEach(options);
  if (each.hosts.some(({ plan }) => plan.hosts.some((h) => !h.local)) && !values.yes) {
    for (const { plan, provider } of each.hosts) io.err(await describePlan(plan, provider, { forks }));
    throw new LabError('NEEDS_YES', 'This run changes real hosts (above): run again with --yes to go ahead');
  }
  // Each host's plan as a single run's: its vars may set another sysctl.
  for (const { plan } of each.hosts) refuseUnacknowledged(plan, values);
  const out = resolve((values.out as string | undefined) ?? freshDir(`reports/${lab.name}-each-${values.each}/${timestamp()}`));
  try {
    await makeDirs(out);
    await access(out, constants.W_OK);
  } catch (e) {
    throw new LabError('ARGS', `Cannot write reports to "${out}": ${(e as Error).message}`);
  }
  io.out(`lab ${VERSION}: running "${lab.name}" once per host of "${options.group}" (role ${each.role}): ${each.hosts.map((h) => h.host).join(', ')}`);
  let render: ReturnType<typeof progressRenderer> | undefined;
  const result = await runEach(options, each, (host) => {
    render?.done();
    io.err(`host ${host}:`);
    render = progressRenderer(io);
    return render;
  });
  render?.done();
  for (const { host, result: r } of result.runs) {
    io.out(`\n${host}:${verdictTable(r)}`);
    await writeReports(r, join(out, host.replace(/[^A-Za-z0-9._-]/g, '_')));
  }
  const paths = await writeEachReports(result, out);
  io.out(`\n${lab.name} on each host of "${options.group}": ${result.verdict.toUpperCase()}\nreports: ${paths.json}\n  ${paths.markdown}\n  ${paths.html}`);
  const bad = result.runs.find((r) => !r.result.restore.ok || r.result.error);
  if (bad) return exitCodeOf(bad.result, io, shellQuote(['lab', 'restore', '-i', options.inventory]));
  return result.verdict === 'pass' ? 0 : 1;
}

/** "client (namespace), server (namespace)", or "client: 4 hosts, server (root@…)" for a fleet. */
function describeHosts(plan: Plan): string {
  return Object.entries(plan.roles)
    .map(([role, names]) => {
      if (names.length > 1) return `${role} (${names.length} hosts)`;
      const h = plan.hosts.find((x) => x.name === names[0])!;
      return `${role} (${h.kind === 'netns' ? 'namespace' : h.target})`;
    })
    .join(', ');
}

function exitCodeOf(result: RunResult, io: Io, restoreCommand: string): number {
  // What stopped the run first, then what it could not put back: the user needs both.
  if (result.error) io.err(`error: ${result.error.message} [${result.error.code}]`);
  if (!result.restore.ok) {
    io.err(`error: restore was incomplete:\n  ${result.restore.problems.join('\n  ')}\nrun "${restoreCommand}" to finish it [RESTORE_INCOMPLETE]`);
    return 3;
  }
  return runExitCode(result);
}

async function reportCommand(argv: string[], io: Io): Promise<number> {
  const { positionals, values } = parse(argv, { out: { type: 'string' } });
  if (positionals.length !== 1) throw new LabError('ARGS', 'lab report needs exactly one RESULT.json: run "lab report --help"');
  const result = await readResult(positionals[0]!);
  const out = resolve((values.out as string | undefined) ?? resolve(positionals[0]!, '..'));
  const paths = await writeReports(result, out);
  io.out(verdictTable(result));
  // As the run said it: its comparison with the baseline, and a regression's exit code.
  if (result.baseline) io.out(baselineLines(result, []));
  io.out(`reports: ${paths.markdown}\n  ${paths.html}\n  ${paths.junit}`);
  // As the run exited: a nightly job that reports again gates the same way.
  const code = runExitCode(result);
  if (result.error) io.err(`the run stopped: ${result.error.message} [${result.error.code}]`);
  if (!result.restore.ok) io.err(`the run's restore was incomplete:\n  ${result.restore.problems.join('\n  ')}`);
  return code;
}

async function publishCommand(argv: string[], io: Io): Promise<number> {
  const { positionals, values } = parse(argv, { out: { type: 'string' } });
  if (!positionals.length || !values.out) throw new LabError('ARGS', 'lab publish needs RESULTS and --out DIR: run "lab publish --help"');
  const out = resolve(values.out as string);
  await writableDir(out, 'the site');
  const r = await publish(positionals, out);
  for (const s of r.skipped) io.err(skippedWarning(s));
  io.out(`published ${r.runs} runs of ${r.labs} labs (${r.added} new) to ${out}\n  ${r.index.html}\n  ${r.index.markdown}`);
  return 0;
}

/** Where the committed reference runs live, one folder per lab. */
const REFERENCE_DIR = 'reports';

async function referenceReportsCommand(argv: string[], io: Io): Promise<number> {
  const [sub, ...rest] = argv;
  if (sub !== 'refresh') throw new LabError('ARGS', `lab reports needs "refresh": got ${sub ? `"${sub}"` : 'nothing'}`);
  const { positionals } = parse(rest, {});
  const files = await expandLabFiles(positionals.length ? positionals : ['labs']);
  const labs = await readSuite(files, {});
  // The previous reference of each lab goes first, so no chart of a lab's old shape stays behind.
  for (const lab of labs) await clearReference(join(REFERENCE_DIR, lab.name));
  const code = await runCommand([...files, '--out', REFERENCE_DIR, '--suite'], io);
  // The README lists every reference run, also those of labs not refreshed this time.
  await writeFile(join(REFERENCE_DIR, 'README.md'), referenceReadme(await readReferences(REFERENCE_DIR)));
  io.out(`reference runs refreshed in ${REFERENCE_DIR}/ (README.md names the machine); commit them when they look right`);
  return code;
}

async function restoreCommand(argv: string[], io: Io): Promise<number> {
  const { values } = parse(argv, { inventory: { type: 'string', short: 'i' }, forks: { type: 'string' }, 'accept-new-host-keys': { type: 'boolean' } });
  const r = await restoreLeftovers({
    inventory: values.inventory as string | undefined,
    ...hostKeyOptions(values, io),
    forks: forksOf(values),
  });
  for (const line of r.lines) io.out(line);
  for (const p of r.problems) io.err(`problem: ${p}`);
  return r.problems.length ? 3 : 0;
}

async function hostsCommand(argv: string[], io: Io): Promise<number> {
  const [sub, ...rest] = argv;
  if (sub === 'up') {
    const { values } = parse(rest, { roles: { type: 'string' }, out: { type: 'string' }, ansible: { type: 'string' } });
    const roles = ((values.roles as string | undefined) ?? 'client,server').split(',').map((s) => s.trim()).filter(Boolean);
    const line = await hostsUpCommand(roles, (values.out as string | undefined) ?? 'inventory.yaml', values.ansible as string | undefined);
    io.out(line);
    return 0;
  }
  if (sub === 'down') {
    parse(rest, {});
    const r = await hostsDownCommand();
    io.out(r.line);
    for (const p of r.problems) io.err(`problem: ${p}`);
    return r.problems.length ? 3 : 0;
  }
  throw new LabError('ARGS', `lab hosts needs "up" or "down": got ${sub ? `"${sub}"` : 'nothing'}`);
}

// ── terminal output ─────────────────────────────────────────────────────────

function progressRenderer(io: Io): ((e: RunEvent) => void) & { done(): void } {
  let lastLine = 0;
  let last = { value: 0, ms: 0 };
  let live = false;
  const clear = () => {
    if (live) io.err('\x1b[1A\x1b[2K');
    live = false;
  };
  const fn = (e: RunEvent) => {
    switch (e.kind) {
      case 'stage':
        if (e.status === 'end' && e.stage !== 'steps') io.err(`  ${e.stage.padEnd(9)} ${e.ms} ms`);
        break;
      case 'host-up':
        io.err(`  host ${e.role}: ${e.target} ${e.address}, kernel ${e.kernel}`);
        break;
      case 'step-start':
        last = { value: 0, ms: 0 };
        io.err(`  step ${e.name} (${e.stepKind}${e.host ? ` on ${e.host}` : ''})`);
        break;
      case 'progress': {
        const now = performance.now();
        // A terminal redraws one line 10 times a second; a CI log gets a plain new line
        // every 5 s (the first at once), so a long ramp stays a few lines.
        if (now - lastLine < (io.isTTY ? 100 : 5000)) return;
        lastLine = now;
        // The rate since the last line, beside the average: a ramp that slows as it grows shows it.
        const recent = e.elapsedMs > last.ms ? Math.round(((e.value - last.value) * 1000) / (e.elapsedMs - last.ms)) : 0;
        last = { value: e.value, ms: e.elapsedMs };
        const extra = [
          e.failed !== undefined ? `${e.failed} failed` : '',
          e.slabKiB !== undefined ? `kernel slab ${(e.slabKiB / 1024 ** 2).toFixed(2)} GiB` : '',
        ].filter(Boolean);
        const line =
          `    ${e.step}: ${e.value} of at most ${e.of} established (${(e.elapsedMs / 1000).toFixed(1)} s, ` +
          `${recent}/s now, ${Math.round(e.value / Math.max(e.elapsedMs / 1000, 0.001))}/s average${extra.length ? `; ${extra.join(', ')}` : ''})`;
        if (io.isTTY) {
          clear();
          live = true;
        }
        io.err(line);
        break;
      }
      case 'step-end': {
        clear();
        io.err(`    ${e.observation.name}: ${summarizeStep(e.observation)}`);
        break;
      }
      case 'restored':
        // Never "restored" for a host that was not.
        if (!e.ok) io.err(`  ${e.role} not restored: ${e.problems.join('; ')}`);
        else if (e.untouched) io.err(`  ${e.role}: not reached, nothing to restore`);
        else io.err(`  restored ${e.role}${e.replayed ? ' (its agent was lost: a fresh agent replayed its journal)' : ''}`);
        break;
    }
  };
  return Object.assign(fn, { done: clear });
}

function summarizeStep(o: StepObservation): string {
  if (!o.ok && o.error?.startsWith(STOPPED)) {
    const so = Object.entries(o.metrics).map(([k, v]) => `${k} ${v}`).join(', ');
    return `${o.error}${so ? ` (so far: ${so})` : ''}`;
  }
  if (!o.ok) return `failed: ${o.error}`;
  // A listener's count grows after its step ends; result.json has the final one.
  if (o.kind === 'listen' && o.hosts) return `listening on ${Object.keys(o.hosts).length} hosts (${o.durationMs} ms)`;
  if (o.kind === 'listen') {
    const cap = o.detail?.somaxconnCap === undefined ? '' : ` (somaxconn caps it at ${o.detail.somaxconnCap})`;
    return `listening on ${o.detail?.address}:${o.detail?.port}, backlog ${o.detail?.backlog}${cap} (${o.durationMs} ms)`;
  }
  const parts = [...Object.entries(o.metrics), ...Object.entries(o.labels)].map(([k, v]) => `${k} ${v}`);
  return `${parts.length ? parts.join(', ') : 'done'} (${o.durationMs} ms)`;
}

export function verdictTable(r: RunResult): string {
  const rows = r.predictions.map((p) => [predictionLabel(p), p.model, String(p.predicted), String(p.observed), String(p.tolerance), p.verdict.toUpperCase()]);
  const head = ['metric', 'model', 'predicted', 'observed', 'tolerance', 'verdict'];
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i]!.length)));
  const fmt = (cells: string[]) => '  ' + cells.map((c, i) => c.padEnd(widths[i]!)).join('  ');
  const notApplicable = r.predictions.filter((p) => p.verdict === 'not-applicable').length;
  // not-applicable is a failure the table alone would not explain: say it in the headline.
  const why = notApplicable ? ` (${notApplicable} prediction${notApplicable > 1 ? 's' : ''} not applicable)` : '';
  const stopped = r.error && !isRefusal(r) ? ` (stopped: ${r.error.code})` : '';
  const verdict = isRefusal(r) ? 'REFUSED (the hosts cannot hold it; not started)' : r.verdict.toUpperCase();
  const title = `\n${r.lab.name}: ${verdict}${why}${stopped} in ${(r.durationMs / 1000).toFixed(1)} s`;
  if (!rows.length) return `${title}\n  (the lab states no expectations)`;
  const lines = [title, fmt(head), fmt(widths.map((w) => '─'.repeat(w)))];
  for (const [i, row] of rows.entries()) {
    lines.push(fmt(row));
    lines.push(`      ${r.predictions[i]!.derivation}`);
  }
  return lines.join('\n');
}

