// Hosts from an inventory, reached over SSH: the same HostProvider contract
// as local namespaces, so a lab runs unchanged on real machines.

import { inventoryTransport, readInventory, type Inventory, type InventoryHost } from '../hosts/inventory.ts';
import type { Transport } from '../hosts/transport.ts';
import type { HostBinding } from '../lab/plan.ts';
import type { Lab } from '../lab/types.ts';
import { LabError } from '../errors.ts';
import { shellQuote } from '../files/quote.ts';
import { hostJournalPath } from '../provision/journal.ts';
import type { HostProvider } from './provider.ts';

/** An inventory host's journal is named by its lab address, so hosts sharing one /run (`lab hosts up`) stay apart. */
export function inventoryJournalPath(host: InventoryHost): string {
  return hostJournalPath(host.labAddress);
}

export class InventoryProvider implements HostProvider {
  readonly kind = 'inventory' as const;

  readonly restoreCommand: string;

  private constructor(
    private readonly lab: Lab,
    readonly inventory: Inventory,
    file: string,
    private readonly options: { acceptNewHostKeys: boolean },
  ) {
    this.restoreCommand = shellQuote(['lab', 'restore', '-i', file]);
  }

  static async open(lab: Lab, file: string, options: { acceptNewHostKeys: boolean }): Promise<InventoryProvider> {
    const inventory = await readInventory(file);
    const missing = lab.hosts.filter((h) => !inventory.hosts[h.role]).map((h) => `"${h.role}"`);
    if (missing.length) {
      const have = Object.keys(inventory.hosts).map((r) => `"${r}"`).join(', ') || 'none';
      throw new LabError(
        'INVENTORY_ROLES',
        `${file}: the lab "${lab.name}" needs role${missing.length > 1 ? 's' : ''} ${missing.join(', ')}, which the inventory does not define (it has ${have})`,
      );
    }
    return new InventoryProvider(lab, inventory, file, options);
  }

  private host(role: string): InventoryHost {
    return this.inventory.hosts[role]!;
  }

  /** An inventory's addresses are its own: nothing to claim. */
  async reserve(): Promise<void> {}

  bindings(): HostBinding[] {
    return this.lab.hosts.map(({ role }) => {
      const h = this.host(role);
      const transport = this.transport(role);
      return {
        role,
        kind: 'ssh',
        target: transport.target,
        address: h.labAddress,
        aliasPool: h.aliases,
        device: h.interface,
        local: h.local,
        where: h.where,
      };
    });
  }

  async prepare(): Promise<void> {
    // Nothing to create: each host's connection opens, in parallel, when its agent starts.
  }

  transport(role: string): Transport {
    return inventoryTransport(this.host(role), role, { acceptNewHostKeys: this.options.acceptNewHostKeys });
  }

  journalPath(role: string): string {
    return inventoryJournalPath(this.host(role));
  }

  async teardown(): Promise<string[]> {
    return [];
  }
}
