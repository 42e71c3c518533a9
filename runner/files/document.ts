// A document a user wrote, as plain values that still know where they came
// from. Every reader of user files (YAML lab files and inventories today, an
// Ansible INI inventory tomorrow) turns its text into a SourceDoc, so one
// Checker can report every problem at file:line:col whatever the format.

import type { LabProblem } from '../errors.ts';

/** Where a value sits in a document: mapping keys and list indexes from the root. */
export type DocPath = Array<string | number>;

/** "hosts.client.sysctls", "steps[2].connect.to" */
export function pathText(path: DocPath): string {
  let out = '';
  for (const p of path) out += typeof p === 'number' ? `[${p}]` : out ? `.${p}` : p;
  return out;
}

/**
 * What a format's reader knows about positions. Offsets are 0-based character
 * offsets into the text; a path the reader does not know falls back to its
 * nearest known ancestor, so a missing key is reported on its parent.
 */
export interface Locator {
  /** where the value at `path` starts; with `key`, where its mapping key starts */
  offset(path: DocPath, key: boolean): number;
  /**
   * Where the characters of the string at `path` start, when the source spells
   * the value verbatim (so a problem inside it can point at a column in it);
   * undefined when the source escapes or folds it.
   */
  verbatimStart?(path: DocPath): number | undefined;
}

export interface Position {
  line: number;
  col: number;
}

/** A parsed document: its plain value, and where each part of it was written. */
export class SourceDoc {
  private lineStarts: number[] | undefined;

  constructor(
    /** the file as the user named it; only used in messages */
    readonly file: string,
    readonly text: string,
    /** the document as plain JS values (mappings are plain objects) */
    readonly value: unknown,
    private readonly locator: Locator,
  ) {}

  /** 1-based line and column of a 0-based offset. */
  position(offset: number): Position {
    this.lineStarts ??= lineStarts(this.text);
    const starts = this.lineStarts;
    let lo = 0;
    let hi = starts.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (starts[mid]! <= offset) lo = mid;
      else hi = mid - 1;
    }
    return { line: lo + 1, col: offset - starts[lo]! + 1 };
  }

  /** Position of the value at `path`; with `key`, of its mapping key instead. */
  locate(path: DocPath, key = false): Position {
    return this.position(this.locator.offset(path, key));
  }

  /** See Locator.verbatimStart. */
  verbatimStart(path: DocPath): number | undefined {
    return this.locator.verbatimStart?.(path);
  }

  /** A problem at the value at `path` (or its key), named by that path. */
  problem(path: DocPath, message: string, key = false): LabProblem {
    const { line, col } = this.locate(path, key);
    return { file: this.file, line, col, path: pathText(path), message };
  }
}

function lineStarts(text: string): number[] {
  const starts = [0];
  for (let i = text.indexOf('\n'); i >= 0; i = text.indexOf('\n', i + 1)) starts.push(i + 1);
  return starts;
}

/**
 * A Locator for readers that build their values by hand (an INI reader, say):
 * they record where each value and key starts as they read it.
 */
export class PositionTable implements Locator {
  private readonly values = new Map<string, number>();
  private readonly keys = new Map<string, number>();
  private readonly verbatim = new Map<string, number>();

  /** Record that the value at `path` starts at `offset` (its key at `keyOffset`; its text verbatim from `textOffset`). */
  set(path: DocPath, offset: number, keyOffset?: number, textOffset?: number): void {
    const p = pathText(path);
    this.values.set(p, offset);
    if (keyOffset !== undefined) this.keys.set(p, keyOffset);
    if (textOffset !== undefined) this.verbatim.set(p, textOffset);
  }

  offset(path: DocPath, key: boolean): number {
    for (let n = path.length; n >= 0; n--) {
      const p = pathText(path.slice(0, n));
      const at = (key && n === path.length ? this.keys.get(p) : undefined) ?? this.values.get(p);
      if (at !== undefined) return at;
    }
    return 0;
  }

  verbatimStart(path: DocPath): number | undefined {
    return this.verbatim.get(pathText(path));
  }
}

/** Problems in file order; stable, so problems at one spot keep the order they were found in. */
export function sortProblems(problems: LabProblem[]): LabProblem[] {
  return problems
    .map((p, i) => ({ p, i }))
    .sort((a, b) => a.p.file.localeCompare(b.p.file) || a.p.line - b.p.line || a.p.col - b.p.col || a.i - b.i)
    .map(({ p }) => p);
}

/** `obj[key] = value` as an own property even for "__proto__", which plain assignment would take as the prototype. */
export function setOwn<T>(obj: Record<string, T>, key: string, value: T): void {
  Object.defineProperty(obj, key, { value, enumerable: true, writable: true, configurable: true });
}

export function isMapping(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Longest user string a message repeats in full: a 50 MB value must not become a 50 MB message. */
const MAX_SHOWN = 80;

/** A value as messages show it: strings quoted (and cut when long), containers named. */
export function describe(v: unknown): string {
  if (v === undefined || v === null) return 'nothing';
  if (typeof v === 'string') return JSON.stringify(v.length > MAX_SHOWN ? `${v.slice(0, MAX_SHOWN)}…` : v);
  if (Array.isArray(v)) return 'a list';
  if (typeof v === 'object') return 'a mapping';
  return String(v);
}
