// Names users give things, and the limits every reader and host shares: what a
// role may be called, how many IP aliases a host may get, and the name a user
// most likely meant when they wrote one that does not exist.

import { quote } from './quote.ts';

/** Role names become namespace and host names, so they stay short and plain. */
export const ROLE_NAME = /^[a-z][a-z0-9-]*$/;

/**
 * The most IP aliases a lab may ask of one host: the lab checker's bound and
 * the size of a local host's alias pool (runner/hosts/netns.ts: a /24 row
 * each). 128 holds two million connections to one server port from one client
 * (83 sources, each within 3/8 of the port range).
 */
export const MAX_ALIASES = 128;

/** Why `name` cannot be a role, or undefined when it can. */
export function roleNameProblem(name: string): string | undefined {
  // "all" means every step in `release: all`, and every host in an Ansible inventory.
  if (name === 'all') return 'Role name "all" is reserved: choose another name';
  if (!ROLE_NAME.test(name)) {
    return `Invalid role name ${quote(name)}: use lowercase letters, digits and "-", starting with a letter`;
  }
  return undefined;
}

/**
 * The candidate the user most likely meant: within edit distance 2 (a swap of
 * two neighbours counts as one edit, so "hgih" finds "high") and no more than
 * half the word (so "nap" does not find "ramp"), or one a prefix of the other.
 * Every "did you mean" in lab reads this one rule.
 */
export function didYouMean(word: string, candidates: Iterable<string>): string | undefined {
  let best: string | undefined;
  let bestScore = Infinity;
  const w = word.toLowerCase();
  for (const c of candidates) {
    const lc = c.toLowerCase();
    if (lc === w) return c;
    // Long words cannot be near a short candidate, and the distance is quadratic.
    if (Math.abs(lc.length - w.length) > 2 && !(lc.startsWith(w) || w.startsWith(lc))) continue;
    const d = editDistance(w, lc);
    const score =
      d <= 2 && d * 2 <= w.length ? d : w.length >= 2 && (lc.startsWith(w) || w.startsWith(lc)) ? 3 : Infinity;
    if (score < bestScore) {
      best = c;
      bestScore = score;
    }
  }
  return best;
}

/** Levenshtein distance, with a transposition of neighbours as one edit (optimal string alignment). */
export function editDistance(a: string, b: string): number {
  const d: number[][] = Array.from({ length: a.length + 1 }, (_, i) =>
    Array.from({ length: b.length + 1 }, (_, j) => (i === 0 ? j : j === 0 ? i : 0)),
  );
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let v = Math.min(d[i - 1]![j]! + 1, d[i]![j - 1]! + 1, d[i - 1]![j - 1]! + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) v = Math.min(v, d[i - 2]![j - 2]! + 1);
      d[i]![j] = v;
    }
  }
  return d[a.length]![b.length]!;
}
