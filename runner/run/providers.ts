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
} from '../hosts/netns.ts';
import type { Transport } from '../hosts/transport.ts';
import { hostJournalPath } from '../provision/index.ts';

export interface HostProvider {
  readonly kind: 'local' | 'inventory';
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

  constructor(lab: Lab, id = randomBytes(3).toString('hex')) {
    this.id = id;
    this.roles = lab.hosts.map((h) => h.role);
  }

  bindings(): HostBinding[] {
    return this.roles.map((role, i) => {
      const { address, aliasPool } = localAddresses(18, i);
      return { role, name: role, kind: 'netns', target: namespaceName(this.id, role), address, aliasPool, device: 'eth0', local: true };
    });
  }

  async prepare(): Promise<void> {
    await checkLocalPrerequisites();
    await createLocalNetwork({ id: this.id, roles: this.roles, net: 18, purpose: 'run' });
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
