// The one place that parses YAML: lab files and inventories both come through
// here, so every later error can point at a file, line and column.

import { isMap, isScalar, isSeq, LineCounter, parseDocument, type Document, type Node } from 'yaml';
import { LabError, type LabProblem } from '../errors.ts';

export type YamlPath = Array<string | number>;

export interface SourceDoc {
  file: string;
  text: string;
  doc: Document.Parsed;
  /** the plain JS value of the document */
  value: unknown;
  /** position of the value at `path`; with `key`, of the mapping key instead */
  locate(path: YamlPath, key?: boolean): { line: number; col: number };
  /** a problem at `path`, for LabError */
  problem(path: YamlPath, message: string, key?: boolean): LabProblem;
}

export function pathText(path: YamlPath): string {
  let out = '';
  for (const p of path) out += typeof p === 'number' ? `[${p}]` : out ? `.${p}` : p;
  return out;
}

/** Parse YAML text; syntax errors become a LabError listing each at file:line:col. */
export function parseYaml(file: string, text: string): SourceDoc {
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, prettyErrors: false, uniqueKeys: true });
  const pos = (offset: number) => {
    const { line, col } = lineCounter.linePos(offset);
    return { line, col };
  };
  if (doc.errors.length) {
    const problems = doc.errors.map((e) => {
      const { line, col } = pos(e.pos[0]);
      return { file, line, col, path: '', message: `Cannot parse YAML: ${firstLine(e.message)}` };
    });
    throw new LabError('LAB_YAML', problems[0]!.message, problems);
  }

  const nodeAt = (path: YamlPath, key: boolean): Node | undefined => {
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

  const locate = (path: YamlPath, key = false) => {
    const node = nodeAt(path, key);
    const offset = node?.range?.[0] ?? 0;
    return pos(offset);
  };

  return {
    file,
    text,
    doc,
    value: doc.toJS({ maxAliasCount: 100 }),
    locate,
    problem(path, message, key = false) {
      const { line, col } = locate(path, key);
      return { file, line, col, path: pathText(path), message };
    },
  };
}

/** Problems in file order; stable, so problems at one spot keep the order they were found in. */
export function sortProblems(problems: LabProblem[]): LabProblem[] {
  return problems
    .map((p, i) => ({ p, i }))
    .sort((a, b) => a.p.line - b.p.line || a.p.col - b.p.col || a.i - b.i)
    .map(({ p }) => p);
}

export function isMapping(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** A value as messages show it: strings quoted, containers named. */
export function describe(v: unknown): string {
  if (v === undefined || v === null) return 'nothing';
  if (typeof v === 'string') return JSON.stringify(v);
  if (Array.isArray(v)) return 'a list';
  if (typeof v === 'object') return 'a mapping';
  return String(v);
}

function firstLine(s: string): string {
  return s.split('\n')[0]!.replace(/\s+at line \d+, column \d+:?$/, '');
}
