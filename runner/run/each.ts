// `lab run LAB -i INVENTORY --each GROUP`: the same lab once per host of a
// group (one host per kernel or image, say), each host's inventory variables
// given to the lab's templates as Ansible gives host vars to its templates.
// Every host's lab is read and planned before the first run touches a host;
// the runs go one after another, since they share the other roles' hosts.

import { LabError } from '../errors.ts';
import { readInventory, type HostKeyOptions } from '../hosts/inventory.ts';
import { planLab, type Plan } from '../lab/plan.ts';
import { didYouMean } from '../files/names.ts';
import { readLab } from '../lab/validate.ts';
import { EACH_FORMAT, type EachResult } from '../result.ts';
import type { RunEventHandler } from './events.ts';
import { InventoryProvider } from './inventory-provider.ts';
import { runPlan } from './run.ts';

export interface EachOptions extends HostKeyOptions {
  file: string;
  inventory: string;
  group: string;
  /** `--var` overrides: they win over host vars, which win over the lab's `vars:` */
  overrides: Record<string, string>;
  roleGroups: Record<string, string>;
  forks?: number;
  /** `--machine` */
  machine?: string;
  signal?: AbortSignal;
  version: string;
  runtime: string;
}

export interface EachPlan {
  role: string;
  hosts: Array<{ host: string; plan: Plan; provider: InventoryProvider }>;
}

const quote = (s: string) => JSON.stringify(s);

/** Read the inventory and, for each host of the group, the lab with its vars, and plan it. Throws LabError. */
export async function planEach(options: EachOptions): Promise<EachPlan> {
  const inventory = await readInventory(options.inventory);
  const members = inventory.groups[options.group];
  if (!members) {
    const groups = Object.keys(inventory.groups);
    const guess = didYouMean(options.group, groups);
    throw new LabError('INVENTORY_ROLES', `--each ${options.group}: the inventory ${options.inventory} has no group ${quote(options.group)}${guess ? `: did you mean ${quote(guess)}?` : ''}`);
  }
  if (!members.length) throw new LabError('INVENTORY_ROLES', `--each ${options.group}: the group has no hosts`);
  const hosts: EachPlan['hosts'] = [];
  let role: string | undefined;
  for (const host of members) {
    const lab = await readLab(options.file, { ...inventory.hosts[host]!.vars, ...options.overrides });
    role = lab.hosts.map((h) => h.role).find((r) => (options.roleGroups[r] ?? r) === options.group);
    if (!role) {
      throw new LabError(
        'INVENTORY_ROLES',
        `--each ${options.group}: no role of the lab "${lab.name}" takes the group ${quote(options.group)} (its roles: ${lab.hosts.map((h) => quote(h.role)).join(', ')}): map one with --role ROLE=${options.group}`,
      );
    }
    const provider = InventoryProvider.from(lab, inventory, { ...options, only: { group: options.group, host } });
    hosts.push({ host, plan: planLab(lab, provider.bindings()), provider });
  }
  return { role: role!, hosts };
}

/** Run each host's plan in turn; an interrupted run stops the rest. */
export async function runEach(options: EachOptions, each: EachPlan, onEvent: (host: string) => RunEventHandler): Promise<EachResult> {
  const started = new Date();
  const runs: EachResult['runs'] = [];
  for (const { host, plan, provider } of each.hosts) {
    const result = await runPlan(plan, {
      provider,
      signal: options.signal,
      onEvent: onEvent(host),
      version: options.version,
      runtime: options.runtime,
      forks: options.forks,
      machine: options.machine,
    });
    runs.push({ host, result });
    if (result.error?.code === 'INTERRUPTED' || options.signal?.aborted) break;
  }
  return {
    format: EACH_FORMAT,
    lab: { name: each.hosts[0]!.plan.lab.name, file: options.file },
    inventory: options.inventory,
    group: options.group,
    role: each.role,
    startedAt: started.toISOString(),
    durationMs: Date.now() - started.getTime(),
    runs,
    verdict: runs.length === each.hosts.length && runs.every((r) => r.result.verdict === 'pass') ? 'pass' : 'fail',
  };
}
