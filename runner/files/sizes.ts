// Byte sizes as users write them in lab files: "4KiB", "64 KiB", "1MiB", "512B", "1GiB",
// or a number of bytes; and back, in the shortest exact spelling.

const SIZE = /^(\d+)\s*(B|KiB|MiB|GiB)?$/;
const UNIT_BYTES = { B: 1, KiB: 1024, MiB: 1024 ** 2, GiB: 1024 ** 3 } as const;

/** What messages say a size looks like. */
export const SIZE_SHAPE = 'a size like "4KiB", "512B" or "1MiB", or a number of bytes';

/** Parse "4KiB", "512B", "1MiB" or a whole number of bytes (a number or a numeric string). */
export function parseSize(v: unknown): number | undefined {
  if (typeof v === 'number') return Number.isSafeInteger(v) && v >= 0 ? v : undefined;
  if (typeof v !== 'string') return undefined;
  const m = SIZE.exec(v.trim());
  if (!m) return undefined;
  const n = Number(m[1]) * UNIT_BYTES[(m[2] ?? 'B') as keyof typeof UNIT_BYTES];
  return Number.isSafeInteger(n) ? n : undefined;
}

/** The shortest exact spelling of a size: 4096 -> "4KiB". */
export function formatSize(bytes: number): string {
  for (const [unit, size] of [['GiB', 1024 ** 3], ['MiB', 1024 ** 2], ['KiB', 1024]] as const) {
    if (bytes >= size && bytes % size === 0) return `${bytes / size}${unit}`;
  }
  return `${bytes}B`;
}
