// Work on many hosts at once, but at most `forks` at a time (Ansible's forks):
// a fleet of hundreds must not open hundreds of SSH connections together.

/** Ansible's default is 5; lab's hosts mostly wait on the network, so a few more. */
export const DEFAULT_FORKS = 10;

/**
 * Runs `fn` over `items`, at most `limit` at once, in order. By default the
 * first failure stops new work from starting and is thrown once the work
 * already started has settled; with `settle`, every item runs regardless.
 */
export async function mapLimit<T, R>(
  items: readonly T[],
  limit: number | undefined,
  fn: (item: T, index: number) => Promise<R>,
  options: { settle?: boolean } = {},
): Promise<R[]> {
  const results: R[] = new Array(items.length);
  let next = 0;
  let failure: { error: unknown } | undefined;
  const worker = async () => {
    while (next < items.length && (options.settle || !failure)) {
      const i = next++;
      try {
        results[i] = await fn(items[i]!, i);
      } catch (error) {
        failure ??= { error };
      }
    }
  };
  const n = Math.max(1, Math.min(limit ?? DEFAULT_FORKS, items.length));
  await Promise.all(Array.from({ length: n }, worker));
  if (failure && !options.settle) throw failure.error;
  return results;
}
