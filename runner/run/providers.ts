// Where a run's hosts come from: local namespaces made for this run (the
// default), or the hosts of an inventory reached over SSH. Both hand the
// runner bindings (for the plan) and Transports (for the agent).

import { randomBytes } from 'node:crypto';
import type { HostBinding } from '../lab/plan.ts';
import type { Lab } from '../lab/types.ts';
import {
  checkLocalPrerequisites,
  createLocalNetwork,
  destroyLocalNetwork,
  localAddresses,
  namespaceName,
  NetnsTransport,
  reserveLocalNetwork,
} from '../hosts/netns.ts';
import type { Transport } from '../hosts/transport.ts';
import { hostJournalPath } from '../provision/index.ts';

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
  /** by host name (HostBinding.name) */
  transport(name: string): Transport;
  /** the journal path on a host (also the lock's name) */
  journalPath(name: string): string;
  /** remove what prepare made; returns problems */
  teardown(): Promise<string[]>;
  /** the inventory group a role took (inventory hosts only) */
  groupOf?(role: string): string;
}

export class LocalProvider implements HostProvider {
  readonly kind = 'local' as const;
  readonly id: string;
  private readonly roles: string[];
  /** this run's slice of 198.18.0.0/16, once reserved */
  private slice?: number;

  constructor(lab: Lab, id = randomBytes(3).toString('hex')) {
    this.id = id;
    this.roles = lab.hosts.map((h) => h.role);
  }

  async reserve(): Promise<void> {
    this.slice ??= await reserveLocalNetwork(this.id, 'run');
  }

  /** Before reserve() (`lab plan`), the addresses of the first slice: what a run alone on this machine gets. */
  bindings(): HostBinding[] {
    return this.roles.map((role, i) => {
      const { address, aliasPool } = localAddresses(18, i, this.slice ?? 0);
      return { role, name: role, kind: 'netns', target: namespaceName(this.id, role), address, aliasPool, device: 'eth0', local: true };
    });
  }

  async prepare(): Promise<void> {
    // The plan's addresses are the slice's: making hosts without one would give them others.
    if (this.slice === undefined) throw new Error('LocalProvider.prepare() before reserve()');
    await checkLocalPrerequisites();
    await createLocalNetwork({ id: this.id, roles: this.roles, net: 18, slice: this.slice, purpose: 'run' });
  }

  transport(role: string): Transport {
    return new NetnsTransport(role, namespaceName(this.id, role));
  }

  journalPath(role: string): string {
    return hostJournalPath(namespaceName(this.id, role));
  }

  async teardown(): Promise<string[]> {
    // Nothing to do when prepare never journaled a network.
    return destroyLocalNetwork(this.id);
  }
}
