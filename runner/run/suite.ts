// A suite: several labs run one after the other (`lab run labs/` or several
// files). Local hosts are made once per set of roles and kept across the labs
// that share it: each lab still restores every change it made (its agent
// undoes its journal), only the namespaces stay, because making and removing
// them costs from 0.3 s to over 5 s on a busy machine. Prints nothing.

import { readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { formatProblem, LabError } from '../errors.ts';
import type { Lab } from '../lab/types.ts';
import { readLab } from '../lab/validate.ts';
import { openProvider, type HostProvider, type ProviderOptions } from './provider.ts';

/** What a folder's lab files are named: `*.yaml` and `*.yml`, as `lab --help` and the error below say (a JSON lab is named on its own). */
const LAB_FILE_NAME = /\.ya?ml$/;

/** The lab files named by `args`: files as given, folders by their lab files in name order. */
export async function expandLabFiles(args: string[]): Promise<string[]> {
  const files: string[] = [];
  for (const arg of args) {
    let info;
    try {
      info = await stat(arg);
    } catch {
      // readLab reports a missing file with the project's wording.
      files.push(arg);
      continue;
    }
    if (!info.isDirectory()) {
      files.push(arg);
      continue;
    }
    const names = (await readdir(arg)).filter((n) => LAB_FILE_NAME.test(n)).sort();
    if (!names.length) throw new LabError('ARGS', `No lab files (*.yaml, *.yml) in "${arg}"`);
    files.push(...names.map((n) => join(arg, n)));
  }
  return files;
}

/**
 * Reads every lab of a suite before any host is touched, so one bad file stops
 * the suite with every problem of every file, as `lab validate` would.
 */
export async function readSuite(files: string[], vars: Record<string, string>): Promise<Lab[]> {
  const labs: Lab[] = [];
  const problems: LabError['problems'] = [];
  const messages: string[] = [];
  const codes = new Set<string>();
  for (const file of files) {
    try {
      labs.push(await readLab(file, vars));
    } catch (e) {
      if (!(e instanceof LabError)) throw e;
      codes.add(e.code);
      if (e.problems.length) problems.push(...e.problems);
      else messages.push(e.message);
    }
  }
  // One kind of failure keeps its own code (LAB_NOT_FOUND for a missing file, as lab plan says); several are LAB_INVALID.
  const code = codes.size === 1 ? [...codes][0]! : 'LAB_INVALID';
  // Problems without a position (a missing file) are said as they are, with the rest.
  if (messages.length) throw new LabError(code, [...messages, ...problems.map(formatProblem)].join('\n'));
  if (problems.length) throw new LabError(code, `${problems.length} problems`, problems);
  const names = new Map<string, string>();
  for (const lab of labs) {
    const other = names.get(lab.name);
    if (other) throw new LabError('ARGS', `Two labs named "${lab.name}" in one suite: ${other} and ${lab.file}; their reports would collide`);
    names.set(lab.name, lab.file);
  }
  return labs;
}

/** A provider whose hosts outlive one lab: prepared once, torn down by the pool. */
class KeptProvider implements HostProvider {
  private prepared = false;
  readonly kind: HostProvider['kind'];
  readonly restoreCommand: string;

  constructor(readonly inner: HostProvider) {
    this.kind = inner.kind;
    this.restoreCommand = inner.restoreCommand;
  }

  reserve(): Promise<void> {
    // Idempotent on the inner provider: the kept network keeps its slice.
    return this.inner.reserve();
  }

  bindings() {
    return this.inner.bindings();
  }

  async prepare(): Promise<void> {
    if (this.prepared) return;
    await this.inner.prepare();
    this.prepared = true;
  }

  transport(role: string) {
    return this.inner.transport(role);
  }

  journalPath(role: string) {
    return this.inner.journalPath(role);
  }

  /** A lab's teardown keeps the hosts for the next lab; HostPool.close() removes them. */
  async teardown(): Promise<string[]> {
    return [];
  }
}

/**
 * The local hosts of a suite, keyed by the labs' roles in order (a role's
 * address follows its position). With an inventory there is nothing to keep:
 * each lab gets its own provider, as a single run does.
 */
export class HostPool {
  private readonly kept = new Map<string, KeptProvider>();

  constructor(private readonly options: ProviderOptions) {}

  /**
   * Whether a lab leaves its hosts fit for the next: a graceful release leaves
   * its ports in TIME_WAIT for 60 s, which the namespace would hand on.
   */
  static leavesHostsClean(lab: Lab): boolean {
    return lab.release !== 'graceful';
  }

  async provider(lab: Lab): Promise<HostProvider> {
    if (this.options.inventory) return openProvider(lab, this.options);
    const key = lab.hosts.map((h) => h.role).join(',');
    let p = this.kept.get(key);
    if (!p) {
      p = new KeptProvider(await openProvider(lab, this.options));
      this.kept.set(key, p);
    }
    return p;
  }

  /**
   * The provider `lab` runs on now. Labs are planned before any runs, but a lab
   * that ran before may have had its kept hosts discarded (a graceful release,
   * an error): a later lab with the same roles then gets new hosts, not the
   * removed ones. With an inventory, the provider planned is the one to run on.
   */
  async current(lab: Lab, planned: HostProvider): Promise<HostProvider> {
    return this.options.inventory ? planned : this.provider(lab);
  }

  /**
   * Removes the hosts `lab` ran on: after a lab that stopped early or did not
   * restore cleanly, the next lab must not inherit what it may have left.
   */
  async discard(lab: Lab): Promise<string[]> {
    const key = lab.hosts.map((h) => h.role).join(',');
    const p = this.kept.get(key);
    if (!p) return [];
    this.kept.delete(key);
    return p.inner.teardown();
  }

  /** Removes every kept network; returns problems. Always called, also after a failure or Ctrl-C. */
  async close(): Promise<string[]> {
    const problems: string[] = [];
    for (const p of this.kept.values()) problems.push(...(await p.inner.teardown()));
    this.kept.clear();
    return problems;
  }
}
