// How many source addresses a connect step needs to reach its count: the
// arithmetic the plan uses to resolve `sources: auto`. It lives with the lab
// (the plan is its reader) so that lab/ imports nothing from models/ (the
// models and models/scale.ts read it from here). Pure, no I/O.

/**
 * The port range an auto-planned connect step sets on its host when the lab
 * sets none: every unprivileged port, so the fewest source addresses reach a
 * target.
 */
export const AUTO_PORT_RANGE: [number, number] = [1024, 65535];

/**
 * Past half of ip_local_port_range, connect() slows sharply: __inet_hash_connect
 * tries ports of one parity first (the other is kept for bind()), so once half
 * of the range is taken for a 4-tuple, every connect() walks the used half
 * before it finds a free port. A plan keeps each source below this share.
 */
export const PORT_SHARE = 0.5;

/** The per-source, per-destination port budget: below half of the range. */
export function portsPerSource(range: [number, number], reserved = 0): number {
  return Math.floor((range[1] - range[0] + 1 - reserved) * PORT_SHARE);
}

export interface SourcePlan {
  sources: number;
  portsPerSource: number;
  derivation: string;
}

/** Source addresses a connect step needs so that no (source, destination) uses more than half the range. */
export function sourcesFor(count: number, destinations: number, range: [number, number], reserved = 0): SourcePlan {
  const per = portsPerSource(range, reserved);
  const sources = Math.max(1, Math.ceil(count / (per * destinations)));
  return {
    sources,
    portsPerSource: per,
    derivation:
      `⌈${count} connections ÷ (${destinations} destination${destinations > 1 ? 's' : ''} × ⌊(${range[1]} − ${range[0]} + 1${reserved ? ` − ${reserved}` : ''}) ÷ 2⌋ = ${per} ports)⌉` +
      ` = ${sources} source address${sources > 1 ? 'es' : ''} (below half the range, where connect() slows sharply)`,
  };
}
