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
 * How much of ip_local_port_range a plan gives one (source, destination) pair:
 * 3/8 of it, three quarters of the ports of one parity. __inet_hash_connect
 * tries the ports of one parity first (the other is kept for bind()), each try a
 * random stride past the last, so as a pair fills that half each connect()
 * probes ever more taken ports, about 1 ÷ (1 − the share taken): past half of
 * the range it walks the whole used half. Measured at 1M (32 pairs to 97% of a
 * parity against 42 to 74%): the last tenth of the ramp at 9–15k/s against
 * 20–24k/s, the whole 38.8/31.1/27.8 s against 35.0/27.7/26.8 s, side by side.
 */
export const PORT_SHARE = 0.375;

/** The per-source, per-destination port budget: 3/8 of the range. */
export function portsPerSource(range: [number, number], reserved = 0): number {
  return Math.floor((range[1] - range[0] + 1 - reserved) * PORT_SHARE);
}

export interface SourcePlan {
  sources: number;
  portsPerSource: number;
  derivation: string;
}

/** Source addresses a connect step needs so that no (source, destination) uses more than 3/8 of the range. */
export function sourcesFor(count: number, destinations: number, range: [number, number], reserved = 0): SourcePlan {
  const per = portsPerSource(range, reserved);
  const sources = Math.max(1, Math.ceil(count / (per * destinations)));
  return {
    sources,
    portsPerSource: per,
    derivation:
      `⌈${count} connections ÷ (${destinations} destination${destinations > 1 ? 's' : ''} × ⌊(${range[1]} − ${range[0]} + 1${reserved ? ` − ${reserved}` : ''}) × 3/8⌋ = ${per} ports)⌉` +
      ` = ${sources} source address${sources > 1 ? 'es' : ''} (3/8 of the range: three quarters of one parity's ports, past which connect() slows sharply)`,
  };
}
