// Reading a host's current sysctls without the agent and without changing
// anything, for `lab plan`'s "old → new".

/** A command printing one line per sysctl, "-" when the kernel lacks it. */
export function sysctlReadCommand(names: string[]): string[] {
  const paths = names.map((n) => `/proc/sys/${n.replaceAll('.', '/')}`);
  return ['sh', '-c', 'for f in "$@"; do if [ -r "$f" ]; then tr -s "\\t " "  " < "$f"; else echo -; fi; done', 'sh', ...paths];
}
