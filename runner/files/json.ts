// Where JSON text first goes wrong, as an offset and a reason worded the same
// on every runtime (the engines' own JSON.parse messages differ, and some give
// no position). Only called after JSON.parse has failed; iterative, so a
// deeply nested file cannot overflow the stack.

export interface JsonSyntaxError {
  offset: number;
  reason: string;
}

const WS = new Set([' ', '\t', '\n', '\r']);
const NUMBER = /-?(0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?/y;
const STRING_CHAR = /(?:[^"\\\u0000-\u001f]|\\(?:["\\/bfnrt]|u[0-9a-fA-F]{4}))*/y;

/** The first syntax error in `text`, or undefined when it is valid JSON. */
export function jsonSyntaxError(text: string): JsonSyntaxError | undefined {
  let i = 0;
  // What the scanner expects next, per open container: a value, a key, or "," / the closing bracket.
  const stack: Array<'{' | '['> = [];
  let expect: 'value' | 'key' | 'after-value' | 'colon' = 'value';
  // True right after "{" or "[": only there may the container close where a key or value is expected.
  let opened = false;
  const end = (what: string): JsonSyntaxError => ({ offset: text.length, reason: `the file ends ${what} (truncated?)` });
  const unexpected = (): JsonSyntaxError => ({ offset: i, reason: `unexpected ${JSON.stringify(text[i])}` });
  for (;;) {
    while (i < text.length && WS.has(text[i]!)) i++;
    if (i >= text.length) return stack.length || expect !== 'after-value' ? end('before the JSON does') : undefined;
    const c = text[i]!;
    const justOpened = opened;
    opened = false;
    if (expect === 'after-value') {
      const open = stack[stack.length - 1];
      if (!open) return { offset: i, reason: 'unexpected text after the JSON' };
      if (c === ',') {
        expect = open === '{' ? 'key' : 'value';
        i++;
      } else if ((c === '}' && open === '{') || (c === ']' && open === '[')) {
        stack.pop();
        i++;
      } else return unexpected();
      continue;
    }
    if (expect === 'colon') {
      if (c !== ':') return unexpected();
      expect = 'value';
      i++;
      continue;
    }
    if (c === '"') {
      STRING_CHAR.lastIndex = i + 1;
      STRING_CHAR.exec(text);
      const stop = STRING_CHAR.lastIndex;
      if (stop >= text.length) return end('inside a string');
      if (text[stop] !== '"') return { offset: stop, reason: `unexpected ${JSON.stringify(text[stop])} in a string` };
      i = stop + 1;
      expect = expect === 'key' ? 'colon' : 'after-value';
      continue;
    }
    if (expect === 'key') {
      if (c === '}' && justOpened) {
        stack.pop();
        i++;
        expect = 'after-value';
        continue;
      }
      return unexpected();
    }
    if (c === '{' || c === '[') {
      stack.push(c);
      opened = true;
      i++;
      expect = c === '{' ? 'key' : 'value';
      continue;
    }
    if (c === ']' && justOpened) {
      stack.pop();
      i++;
      expect = 'after-value';
      continue;
    }
    const word = ['true', 'false', 'null'].find((w) => text.startsWith(w, i));
    if (word) {
      i += word.length;
      expect = 'after-value';
      continue;
    }
    NUMBER.lastIndex = i;
    if (NUMBER.exec(text)) {
      i = NUMBER.lastIndex;
      expect = 'after-value';
      continue;
    }
    return unexpected();
  }
}
