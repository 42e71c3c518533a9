// Where a run's hosts come from: local namespaces made for this run (the
// default), or the hosts of an inventory reached over SSH. Both hand the
// runner bindings (for the plan) and Transports (for the agent).

import type { Transport } from '../hosts/transport.ts';
import type { HostKeyOptions } from '../hosts/inventory.ts';
import type { HostBinding } from '../lab/plan.ts';
import type { Lab } from '../lab/types.ts';
import { LabError } from '../errors.ts';
import { LocalProvider } from './local-provider.ts';

export interface HostProvider {
  readonly kind: 'local' | 'inventory';
  /**
   * claim what the run's addresses depend on (a local run's slice of
   * 198.18.0.0/16), before bindings() is planned for a run; teardown() gives it back
   */
  reserve(): Promise<void>;
  /** one per host; a role may have several */
  bindings(): HostBinding[];
  /** create what the hosts need (namespaces); throws HostError */
  prepare(): Promise<void>;
  /** a new, unconnected transport to a host, by its name (HostBinding.name) */
  transport(name: string): Transport;
  /** the journal path on a host (also the lock's name) */
  journalPath(name: string): string;
  /** remove what prepare made; returns problems */
  teardown(): Promise<string[]>;
  /** the inventory group a role took (inventory hosts only) */
  groupOf?(role: string): string;
  /** the command a user runs to undo what a run left on these hosts */
  readonly restoreCommand: string;
}

export interface ProviderOptions extends HostKeyOptions {
  inventory?: string;
  /** `--role ROLE=GROUP` */
  roleGroups?: Record<string, string>;
  /** `--forks N`: hosts worked on at once */
  forks?: number;
}

/** Local namespaces, or with an inventory its hosts over SSH. */
export async function openProvider(lab: Lab, options: ProviderOptions): Promise<HostProvider> {
  if (options.inventory) {
    // Loaded only with -i: ssh2 is not needed for local hosts.
    const { InventoryProvider } = await import('./inventory-provider.ts');
    return InventoryProvider.open(lab, options.inventory, options);
  }
  if (options.roleGroups && Object.keys(options.roleGroups).length) {
    throw new LabError('ARGS', '--role maps roles to inventory groups: it needs -i INVENTORY');
  }
  return new LocalProvider(lab);
}
