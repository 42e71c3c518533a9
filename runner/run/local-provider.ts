// Local hosts, the default: a network namespace per role, made for this run
// on this machine and removed afterwards (see hosts/netns.ts).

import { randomBytes } from 'node:crypto';
import type { HostBinding } from '../lab/plan.ts';
import type { Lab } from '../lab/types.ts';
import {
  checkLocalPrerequisites,
  createLocalNetwork,
  destroyLocalNetwork,
  ehashEntriesFor,
  localAddresses,
  namespaceName,
  NetnsTransport,
  reserveLocalNetwork,
} from '../hosts/netns.ts';
import type { Transport } from '../hosts/transport.ts';
import { hostJournalPath } from '../provision/journal.ts';
import { replayLocalJournal } from './local-journals.ts';
import type { HostProvider } from './provider.ts';

export class LocalProvider implements HostProvider {
  readonly kind = 'local' as const;
  readonly restoreCommand = 'lab restore';
  readonly id: string;
  private readonly roles: string[];
  /** the most sockets one host namespace holds: the largest connect step's count */
  private readonly maxSockets: number;
  /** this run's slice of 198.18.0.0/16, once reserved */
  private slice?: number;
  /** what teardown put back from journals that lost agents left */
  readonly replayed: string[] = [];

  constructor(lab: Lab, id = randomBytes(3).toString('hex')) {
    this.id = id;
    this.roles = lab.hosts.map((h) => h.role);
    this.maxSockets = Math.max(0, ...lab.steps.map((s) => (s.kind === 'connect' ? s.count : 0)));
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
    await createLocalNetwork({
      id: this.id, roles: this.roles, net: 18, slice: this.slice, purpose: 'run', ehashEntries: ehashEntriesFor(this.maxSockets),
    });
  }

  transport(role: string): Transport {
    return new NetnsTransport(role, namespaceName(this.id, role));
  }

  journalPath(role: string): string {
    return hostJournalPath(namespaceName(this.id, role));
  }

  async teardown(): Promise<string[]> {
    // Nothing to do when prepare never journaled a network. A host whose agent
    // was lost still has its journal: replayed before its namespace goes.
    return destroyLocalNetwork(this.id, async (ns) => {
      const r = await replayLocalJournal(ns);
      this.replayed.push(...r.lines);
      return r.problems;
    });
  }
}
