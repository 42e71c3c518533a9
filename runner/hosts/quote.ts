// The one place that turns an argv into a command line for a POSIX shell, as
// SSH runs every command through the remote user's shell (`sh -c`-style).

/** Characters that never need quoting in any word of a POSIX shell command. */
const SAFE_WORD = /^[A-Za-z0-9_\/.,:@%+=-]+$/;

/** Quote one word so the shell passes it through unchanged. */
function quoteWord(word: string, first: boolean): string {
  if (word.includes('\0')) throw new TypeError(`Cannot quote an argument with a NUL byte: ${JSON.stringify(word)}`);
  // `A=b` as the first word would be a variable assignment, not a program name.
  if (SAFE_WORD.test(word) && !(first && word.includes('='))) return word;
  // Inside single quotes nothing is special except the quote itself: close, escape it, reopen.
  return `'${word.replace(/'/g, `'\\''`)}'`;
}

/** A command line that a POSIX shell splits back into exactly `argv`. */
export function shellQuote(argv: string[]): string {
  if (argv.length === 0) throw new TypeError('Cannot quote an empty argv');
  return argv.map((word, i) => quoteWord(word, i === 0)).join(' ');
}
