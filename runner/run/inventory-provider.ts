// Hosts from an inventory, reached over SSH: the same HostProvider contract
// as local namespaces, so a lab runs unchanged on real machines. Also the
// `lab restore -i` that undoes the journals a dead controller left on them.

import { AgentClient } from '../agent/client.ts';
import { inventoryTransport, readInventory, type Inventory, type InventoryHost } from '../hosts/inventory.ts';
import type { Transport } from '../hosts/transport.ts';
import type { HostBinding } from '../lab/plan.ts';
import type { Lab } from '../lab/types.ts';
import { LabError } from '../errors.ts';
import { hostJournalPath } from '../provision/index.ts';
import type { HostProvider } from './providers.ts';

/** An inventory host's journal is named by its lab address, so hosts sharing one /run (`lab hosts up`) stay apart. */
function journalOf(host: InventoryHost): string {
  return hostJournalPath(host.labAddress);
}

export class InventoryProvider implements HostProvider {
  readonly kind = 'inventory' as const;

  private constructor(
    private readonly lab: Lab,
    readonly inventory: Inventory,
    private readonly options: { acceptNewHostKeys: boolean },
  ) {}

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
    return new InventoryProvider(lab, inventory, options);
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
    return journalOf(this.host(role));
  }

  async teardown(): Promise<string[]> {
    return [];
  }
}

/** `lab restore -i`: on every host of the inventory, undo a journal left by a dead run. */
export async function restoreInventory(
  file: string,
  options: { acceptNewHostKeys: boolean },
): Promise<{ lines: string[]; problems: string[] }> {
  const inventory = await readInventory(file);
  const lines: string[] = [];
  const problems: string[] = [];
  await Promise.all(
    Object.entries(inventory.hosts).map(async ([role, host]) => {
      const transport = inventoryTransport(host, role, options);
      let agent: AgentClient | undefined;
      try {
        await transport.connect();
        agent = await AgentClient.start(transport);
        const r = await agent.request<{ undone: Array<Record<string, unknown>>; problems?: string[] }>(
          'restoreJournal',
          { journal: journalOf(host) },
          { timeoutMs: 60_000 },
        );
        if (!r.undone.length && !(r.problems ?? []).length) lines.push(`${role}: nothing to restore`);
        for (const u of r.undone) {
          lines.push(`${role}: restored ${u.kind === 'sysctl' ? `sysctl ${u.name} = ${u.old}` : `removed address ${u.address} from ${u.device}`}`);
        }
        problems.push(...(r.problems ?? []).map((p) => `${role}: ${p}`));
      } catch (e) {
        problems.push(`${role}: ${(e as Error).message}`);
      } finally {
        await agent?.shutdown().catch(() => {});
        await transport.close().catch(() => {});
      }
    }),
  );
  return { lines: lines.sort(), problems };
}
