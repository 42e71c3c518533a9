// Hosts from an inventory (lab's own, or Ansible's INI or YAML), reached over
// SSH: the same HostProvider contract as local namespaces, so a lab runs
// unchanged on real machines. Each lab role takes the inventory group of its
// name, or the one `--role ROLE=GROUP` names, with every host in it.

import { inventoryTransport, readInventory, type HostKeyOptions, type Inventory, type InventoryHost } from '../hosts/inventory.ts';
import type { Transport } from '../hosts/transport.ts';
import type { HostBinding } from '../lab/plan.ts';
import { didYouMean } from '../files/names.ts';
import type { Lab } from '../lab/types.ts';
import { LabError } from '../errors.ts';
import { shellQuote } from '../files/quote.ts';
import { hostJournalPath } from '../provision/journal.ts';
import type { HostProvider } from './provider.ts';

/** An inventory host's journal is named by its lab address, so hosts sharing one /run (`lab hosts up`) stay apart. */
export function inventoryJournalPath(host: InventoryHost): string {
  return hostJournalPath(host.labAddress);
}

export interface InventoryProviderOptions extends HostKeyOptions {
  /** `--role ROLE=GROUP`: the group a role takes, when not the group of its own name */
  roleGroups?: Record<string, string>;
  /** `--each GROUP`: run on this one host of the group (the other roles keep theirs) */
  only?: { group: string; host: string };
}

const quote = (s: string) => JSON.stringify(s);

/**
 * Which hosts each lab role gets: the group of the role's name, or the one
 * `--role` maps it to. Throws INVENTORY_ROLES naming what is missing.
 */
export function roleHosts(lab: Lab, inventory: Inventory, roleGroups: Record<string, string> = {}): Record<string, string[]> {
  const problems: string[] = [];
  const roles = lab.hosts.map((h) => h.role);
  for (const role of Object.keys(roleGroups)) {
    if (!roles.includes(role)) {
      const guess = didYouMean(role, roles);
      problems.push(`--role ${role}=${roleGroups[role]}: the lab "${lab.name}" has no role ${quote(role)}${guess ? `: did you mean ${quote(guess)}?` : ` (it has ${roles.map(quote).join(', ')})`}`);
    }
  }
  const groups = Object.keys(inventory.groups).filter((g) => g !== 'all' && g !== 'ungrouped');
  const out: Record<string, string[]> = {};
  for (const role of roles) {
    const group = roleGroups[role] ?? role;
    const members = inventory.groups[group];
    if (!members) {
      const guess = didYouMean(group, groups);
      const how = roleGroups[role] ? `--role ${role}=${group} names` : `role ${quote(role)} takes`;
      problems.push(
        `${inventory.file}: ${how} the group ${quote(group)}, which the inventory does not define (${guess ? `did you mean ${quote(guess)}? ` : ''}it has ${groups.map(quote).join(', ') || 'none'}); map a role to a group with --role ${role}=GROUP`,
      );
    } else if (!members.length) {
      problems.push(`${inventory.file}: the group ${quote(group)} for role ${quote(role)} has no hosts`);
    } else out[role] = members;
  }
  // A host in two roles would be provisioned twice, with one journal and one lock.
  const seen = new Map<string, string>();
  for (const [role, names] of Object.entries(out)) {
    for (const n of names) {
      const other = seen.get(n);
      if (other !== undefined) problems.push(`${inventory.file}: host ${quote(n)} is in role ${quote(other)} and role ${quote(role)}: a host plays one role in a run`);
      seen.set(n, role);
    }
  }
  if (problems.length) throw new LabError('INVENTORY_ROLES', problems.join('\n'));
  return out;
}

export class InventoryProvider implements HostProvider {
  readonly kind = 'inventory' as const;

  readonly restoreCommand: string;

  private constructor(
    readonly inventory: Inventory,
    /** role -> host names */
    readonly roles: Record<string, string[]>,
    private readonly options: InventoryProviderOptions,
  ) {
    this.restoreCommand = shellQuote(['lab', 'restore', '-i', inventory.file]);
  }

  static async open(lab: Lab, file: string, options: InventoryProviderOptions): Promise<InventoryProvider> {
    const inventory = await readInventory(file);
    return InventoryProvider.from(lab, inventory, options);
  }

  static from(lab: Lab, inventory: Inventory, options: InventoryProviderOptions): InventoryProvider {
    const roles = roleHosts(lab, inventory, options.roleGroups);
    if (options.only) {
      const { group, host } = options.only;
      const role = Object.keys(roles).find((r) => (options.roleGroups?.[r] ?? r) === group);
      if (role) roles[role] = [host];
    }
    return new InventoryProvider(inventory, roles, options);
  }

  groupOf(role: string): string {
    return this.options.roleGroups?.[role] ?? role;
  }

  private host(name: string): InventoryHost {
    return this.inventory.hosts[name]!;
  }

  /** An inventory's addresses are its own: nothing to claim. */
  async reserve(): Promise<void> {}

  bindings(): HostBinding[] {
    return Object.entries(this.roles).flatMap(([role, names]) =>
      names.map((name) => {
        const h = this.host(name);
        return {
          role,
          name,
          kind: 'ssh' as const,
          target: this.transport(name).target,
          address: h.labAddress,
          aliasPool: h.aliases,
          device: h.interface,
          local: h.local,
          where: h.where,
        };
      }),
    );
  }

  async prepare(): Promise<void> {
    // Nothing to create: each host's connection opens, in parallel, when its agent starts.
  }

  transport(name: string): Transport {
    return inventoryTransport(this.host(name), name, this.options);
  }

  journalPath(name: string): string {
    return inventoryJournalPath(this.host(name));
  }

  async teardown(): Promise<string[]> {
    return [];
  }
}
