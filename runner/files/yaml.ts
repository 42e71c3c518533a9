// The one place that parses YAML. Lab files and inventories both come through
// here, and leave as a SourceDoc, so every later problem can point at a file,
// line and column. Hostile YAML is refused here with a position, before any
// value is built: nesting deeper than any real file needs (the parser recurses,
// and a deep enough file overflows its stack) and aliases that expand into
// more nodes than any real file has (a "billion laughs").

import { isAlias, isMap, isScalar, isSeq, LineCounter, parseDocument, Scalar, type Document, type Node } from 'yaml';
import { LabError, type LabProblem } from '../errors.ts';
import { SourceDoc, type DocPath, type Locator } from './document.ts';

/** Deeper than any lab file or inventory nests (they use about 6 levels); far below where the parser overflows. */
export const MAX_DEPTH = 64;
/** Nodes a document may expand to once its aliases are followed; a lab file has a few hundred. */
export const MAX_NODES = 100_000;

/** Parse YAML text into a SourceDoc; every syntax problem is a LabError LAB_YAML at file:line:col. */
export function parseYaml(file: string, text: string): SourceDoc {
  const positions = new SourceDoc(file, text, undefined, { offset: () => 0 });
  const problem = (offset: number, message: string): LabProblem => {
    const { line, col } = positions.position(offset);
    return { file, line, col, path: '', message: `Cannot parse YAML: ${message}` };
  };
  const deep = tooDeep(text);
  if (deep !== undefined) {
    const p = problem(deep, `nested more than ${MAX_DEPTH} levels deep`);
    throw new LabError('LAB_YAML', p.message, [p]);
  }

  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, prettyErrors: false, uniqueKeys: true });
  if (doc.errors.length) {
    const problems = doc.errors.map((e) =>
      problem(e.pos[0], e.code === 'DUPLICATE_KEY' ? `duplicate key ${keyAt(text, e.pos[0])}` : firstLine(e.message)),
    );
    throw new LabError('LAB_YAML', problems[0]!.message, problems);
  }
  const bomb = aliasBomb(doc);
  if (bomb) {
    const p = problem(bomb.range?.[0] ?? 0, `aliases expand to more than ${MAX_NODES} nodes (is it an alias bomb?)`);
    throw new LabError('LAB_YAML', p.message, [p]);
  }
  let value: unknown;
  try {
    // Our own bound came first; the library's is then no longer needed.
    value = doc.toJS({ maxAliasCount: -1 });
  } catch (e) {
    const p = problem(0, firstLine((e as Error).message));
    throw new LabError('LAB_YAML', p.message, [p]);
  }
  return new SourceDoc(file, text, value, yamlLocator(doc, text));
}

function yamlLocator(doc: Document.Parsed, text: string): Locator {
  const nodeAt = (path: DocPath, key: boolean): Node | undefined => {
    let node: unknown = doc.contents;
    let keyNode: unknown;
    for (const seg of path) {
      if (isMap(node)) {
        const pair = node.items.find((it) => isScalar(it.key) && String(it.key.value) === String(seg));
        if (!pair) return node as Node;
        keyNode = pair.key;
        node = pair.value ?? pair.key;
      } else if (isSeq(node) && typeof seg === 'number') {
        const item = node.items[seg];
        if (!item) return node as Node;
        keyNode = undefined;
        node = item;
      } else {
        return (node ?? doc.contents) as Node;
      }
    }
    return (key && keyNode ? keyNode : node) as Node;
  };
  return {
    offset: (path, key) => nodeAt(path, key)?.range?.[0] ?? 0,
    verbatimStart(path) {
      const node = doc.getIn(path, true);
      if (!isScalar(node) || !node.range || typeof node.value !== 'string') return undefined;
      const [from, to] = node.range;
      const raw = text.slice(from, to);
      if (node.type === Scalar.PLAIN && raw === node.value) return from;
      if ((node.type === Scalar.QUOTE_DOUBLE || node.type === Scalar.QUOTE_SINGLE) && raw.slice(1, -1) === node.value) {
        return from + 1;
      }
      return undefined;
    },
  };
}

/**
 * The offset where the text first nests deeper than MAX_DEPTH, counting block
 * indentation levels, compact "- - -" entries and open flow brackets; a cheap
 * scan of the text, so a hostile file never reaches the recursive parser.
 */
function tooDeep(text: string): number | undefined {
  const indents: number[] = [];
  let flow = 0;
  let offset = 0;
  for (const line of text.split('\n')) {
    const lineStart = offset;
    offset += line.length + 1;
    let i = 0;
    while (line[i] === ' ') i++;
    if (i === line.length || line[i] === '#') continue;
    if (flow === 0) {
      while (indents.length && indents[indents.length - 1]! >= i) indents.pop();
      indents.push(i);
      // "- - - x" opens a sequence per dash.
      if (indents.length > MAX_DEPTH) return lineStart + i;
      while (line[i] === '-' && (line[i + 1] === ' ' || i + 1 === line.length)) {
        indents.push(i + 1);
        if (indents.length > MAX_DEPTH) return lineStart + i;
        i += 2;
        while (line[i] === ' ') i++;
      }
    }
    let quote: string | undefined;
    for (; i < line.length; i++) {
      const c = line[i]!;
      if (quote) {
        if (c === '\\' && quote === '"') i++;
        else if (c === quote) quote = undefined;
        continue;
      }
      const atToken = i === 0 || ' \t[{,:'.includes(line[i - 1]!);
      if ((c === '"' || c === "'") && atToken) quote = c;
      else if (c === '#' && (i === 0 || line[i - 1] === ' ' || line[i - 1] === '\t')) break;
      else if (c === '[' || c === '{') {
        flow++;
        if (indents.length + flow > MAX_DEPTH) return lineStart + i;
      } else if ((c === ']' || c === '}') && flow > 0) flow--;
    }
  }
  return undefined;
}

/** The node (an alias, or the collection holding it) at which the expanded document passes MAX_NODES. */
function aliasBomb(doc: Document.Parsed): Node | undefined {
  const sizes = new Map<unknown, number>();
  const resolving = new Set<unknown>();
  let found: Node | undefined;
  const size = (node: unknown): number => {
    if (found || node === null || node === undefined) return 0;
    if (isAlias(node)) {
      const target = node.resolve(doc);
      // An alias inside its own anchor is a parse error already; never loop on it.
      if (!target || resolving.has(target)) return 1;
      return size(target);
    }
    const known = sizes.get(node);
    if (known !== undefined) return known;
    let n = 1;
    resolving.add(node);
    const add = (child: unknown) => {
      n += size(child);
      if (n > MAX_NODES && !found) found = (isAlias(child) ? child : node) as Node;
    };
    if (isMap(node)) for (const pair of node.items) (add(pair.key), add(pair.value));
    else if (isSeq(node)) for (const item of node.items) add(item);
    resolving.delete(node);
    sizes.set(node, n);
    return n;
  };
  size(doc.contents);
  return found;
}

/** The key written at `offset`, as a message shows it. */
function keyAt(text: string, offset: number): string {
  const m = /^("(?:[^"\\\n]|\\.)*"|'(?:[^'\n]|'')*'|[^:\n]*)/.exec(text.slice(offset, offset + 200));
  const key = m![1]!.trim();
  return key.startsWith('"') || key.startsWith("'") ? key : JSON.stringify(key);
}

function firstLine(s: string): string {
  return s.split('\n')[0]!.replace(/\s+at line \d+, column \d+:?$/, '');
}
