// Durations as users write them in lab files and inventories: "500ms", "30s",
// "5m", "1h", or a number of seconds; and back, in the shortest exact spelling.

const DURATION = /^(\d+(?:\.\d+)?)(ms|s|m|h)?$/;
const UNIT_MS = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 } as const;

/** What messages say a duration looks like. */
export const DURATION_SHAPE = 'a duration like "500ms", "30s", "5m" or "1h", or a number of seconds';

/** Parse "500ms", "30s", "5m", "1h", or seconds (a number or a bare numeric string) into ms. */
export function parseDuration(v: unknown): number | undefined {
  if (typeof v === 'number') return Number.isFinite(v) && v >= 0 ? Math.round(v * 1000) : undefined;
  if (typeof v !== 'string') return undefined;
  const m = DURATION.exec(v.trim());
  if (!m) return undefined;
  return Math.round(Number(m[1]) * UNIT_MS[(m[2] ?? 's') as keyof typeof UNIT_MS]);
}

/** The shortest exact spelling of a duration: 300000 -> "5m". */
export function formatDuration(ms: number): string {
  for (const [unit, size] of [['h', 3_600_000], ['m', 60_000], ['s', 1000]] as const) {
    if (ms >= size && ms % size === 0) return `${ms / size}${unit}`;
  }
  return `${ms}ms`;
}
