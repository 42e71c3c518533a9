// Many hosts per role: how a connect step's count is shared out over the
// hosts of its role, and the step as each host runs it, so every model
// predicts per host from that host's own facts. The runner asks for the
// shares before it connects; compare asks again for the predictions: one rule.

import type { ReleaseMode, Step } from '../lab/types.ts';
import type { HostFacts } from '../result.ts';
import { connectionCeiling, ModelNotApplicable, type ConnectStep, type ModelContext } from './connections.ts';

/** Which hosts play each role, and what the run knows about each host (by host name). */
export interface Fleet {
  /** role -> host names */
  roles: Record<string, string[]>;
  facts: Record<string, HostFacts>;
  /** host name -> its addresses, primary first */
  addresses: Record<string, string[]>;
  /** every step of the lab and its release mode, for the models that read them */
  steps?: Step[];
  release?: ReleaseMode;
}

/**
 * A connect step as host `name` of its role runs it: its share of the count,
 * and one destination per host of each destination role. The context's facts
 * and addresses are keyed the way the models read them (by the step's role,
 * and by one key per destination host), so the models need not know fleets.
 */
export function hostContext(step: ConnectStep, name: string, count: number, fleet: Fleet, metric: string): ModelContext {
  const facts: Record<string, HostFacts> = {};
  const addresses: Record<string, string[]> = {};
  if (fleet.facts[name]) facts[step.host] = fleet.facts[name]!;
  addresses[step.host] = fleet.addresses[name] ?? [];
  const perHost = (to: ConnectStep['to']) =>
    to.flatMap((d) =>
      (fleet.roles[d.role] ?? [d.role]).map((host) => {
        const key = `${d.role}/${host}`;
        addresses[key] = fleet.addresses[host] ?? [];
        if (fleet.facts[host]) facts[key] = fleet.facts[host]!;
        return { role: key, port: d.port };
      }),
    );
  const hostStep = { ...step, count, to: perHost(step.to) };
  // The shares come from each host's capacity alone, as the runner asked for them.
  const alone: Fleet = { ...fleet, steps: undefined };
  const asRun = (s: ConnectStep): ConnectStep => (s.name === step.name ? hostStep : { ...s, count: connectShares(s, alone)[name] ?? 0, to: perHost(s.to) });
  return { step: hostStep, metric, facts, addresses, steps: fleet.steps ?? [hostStep], release: fleet.release ?? 'abort', asRun };
}

/** How many connections host `name` could open at most: the tighter of its port and fd ceilings. */
export function hostCapacity(step: ConnectStep, name: string, fleet: Fleet): number {
  try {
    // What the host could open with nothing held before: the runner asks before it knows the history's outcome.
    const out = connectionCeiling(hostContext(step, name, Number.MAX_SAFE_INTEGER, { ...fleet, steps: undefined }, 'established'));
    return typeof out.value === 'number' ? out.value : 0;
  } catch (e) {
    // A host the run never reached has no facts: it gets no share.
    if (e instanceof ModelNotApplicable) return 0;
    throw e;
  }
}

/**
 * Each host's share of a connect step's count: in proportion to its capacity
 * (ports × source addresses × destinations, and the fd ceiling), so a host
 * with half the ports gets half the connections and every host reaches its
 * own limit together. Largest remainders make the shares add up to the count.
 */
export function connectShares(step: ConnectStep, fleet: Fleet): Record<string, number> {
  const hosts = fleet.roles[step.host] ?? [step.host];
  if (hosts.length === 1) return { [hosts[0]!]: step.count };
  const shares = shareOut(step.count, hosts.map((h) => hostCapacity(step, h, fleet)));
  return Object.fromEntries(hosts.map((h, i) => [h, shares[i]!]));
}

/** `count` split in proportion to `weights` (equally when they are all 0), whole numbers adding up to `count`. */
export function shareOut(count: number, weights: number[]): number[] {
  const total = weights.reduce((a, b) => a + b, 0);
  const w = total > 0 ? weights : weights.map(() => 1);
  const sum = total > 0 ? total : weights.length;
  const exact = w.map((x) => (count * x) / sum);
  const shares = exact.map(Math.floor);
  let left = count - shares.reduce((a, b) => a + b, 0);
  const order = exact.map((x, i) => ({ i, r: x - Math.floor(x) })).sort((a, b) => b.r - a.r || a.i - b.i);
  for (const { i } of order) {
    if (left <= 0) break;
    shares[i]!++;
    left--;
  }
  return shares;
}
