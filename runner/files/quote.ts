// Quoting, in the two places a user's string is set inside other text: a
// message (`quote`, JSON-style, so a newline or a quote in a value shows as an
// escape and not as a broken line) and a POSIX shell command line
// (`shellQuote`, as SSH runs every command through the remote user's shell).

/** A user's string as messages show it: in double quotes, control characters escaped. */
export function quote(s: string): string {
  return JSON.stringify(s);
}

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
