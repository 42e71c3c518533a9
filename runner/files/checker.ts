// The one checker of files users write. A reader walks its document's plain
// values and asks the Checker for each one it expects ("an integer from 1 to
// 65535 here"); the Checker returns the value or, after recording a problem at
// the value's file:line:col, undefined. Reading goes on, so one pass collects
// every problem in the file, each with a did-you-mean where one fits, and
// `problems` sorts them in file order. It knows nothing of YAML: any reader
// that makes a SourceDoc (YAML today, an Ansible INI inventory tomorrow) uses it.

import { isIP, isIPv4 } from 'node:net';
import { resolve } from 'node:path';
import type { LabProblem } from '../errors.ts';
import { describe, isMapping, pathText, sortProblems, type DocPath, type SourceDoc } from './document.ts';
import { DURATION_SHAPE, formatDuration, parseDuration } from './durations.ts';
import { formatSize, parseSize, SIZE_SHAPE } from './sizes.ts';
import { didYouMean, roleNameProblem } from './names.ts';
import { quote } from './quote.ts';

/**
 * Stands for a value whose problem is reported already (a template that did
 * not render, say): every check passes it over silently, so one mistake is one
 * problem and not one per rule the value then breaks.
 */
export const REPORTED: unique symbol = Symbol('reported already');

export type Mapping = Record<string, unknown>;

/** A host name SSH can resolve: letters, digits, "-" and dots, no leading "-" (it would read as an option). */
const HOST_NAME = /^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?$/;
/** C0 controls but tab, and DEL: never part of a name, an address, a path or a kernel value. */
const CONTROL = /[\u0000-\u0008\u000a-\u001f\u007f]/;
const INTEGER = /^\s*-?\d+\s*$/;
const DECIMAL = /^\s*-?\d+(\.\d+)?\s*$/;

export class Checker {
  private readonly found: LabProblem[] = [];
  /** The problems said so far: a value checked twice (a group variable, once per host it reaches) is one mistake. */
  private readonly said = new Set<string>();
  /**
   * How a value came to be, by path text, when it is not as written: e.g.
   * `from template "{{low}} 40999"`. Messages show it after the value.
   */
  readonly origins = new Map<string, string>();

  constructor(readonly sd: SourceDoc) {}

  /** Every problem so far, in file order. */
  get problems(): LabProblem[] {
    return sortProblems(this.found);
  }

  get ok(): boolean {
    return this.found.length === 0;
  }

  /** Add problems found elsewhere (a template pass, a second document). */
  add(...problems: LabProblem[]): void {
    for (const p of problems) {
      const key = `${p.file}:${p.line}:${p.col}:${p.path}:${p.message}`;
      if (this.said.has(key)) continue;
      this.said.add(key);
      this.found.push(p);
    }
  }

  at(path: DocPath, message: string): void {
    this.add(this.sd.problem(path, message));
  }

  /** A problem with a mapping key: located on the key, named by its parent's path. */
  atKey(parent: DocPath, key: string, message: string): void {
    const { line, col } = this.sd.locate([...parent, key], true);
    this.add({ file: this.sd.file, line, col, path: pathText(parent), message });
  }

  /** "file:line:col" of the key (or value) at `path`, for messages made later (at run time). */
  where(path: DocPath): string {
    const { line, col } = this.sd.locate(path, true);
    return `${this.sd.file}:${line}:${col}`;
  }

  /** How a value reads in "got …", with where it came from when it is not as written. */
  got(path: DocPath, v: unknown): string {
    const origin = this.origins.get(pathText(path));
    return origin === undefined ? describe(v) : `${describe(v)} (${origin})`;
  }

  mustBe(path: DocPath, what: string, v: unknown): undefined {
    this.at(path, `Must be ${what}: got ${this.got(path, v)}`);
    return undefined;
  }

  /** A mapping with only `keys`; reports unknown and missing keys. `shape` says what it should look like. */
  mapping(path: DocPath, v: unknown, keys: readonly string[], required: readonly string[] = [], shape = 'a mapping'): Mapping | undefined {
    if (v === REPORTED) return undefined;
    if (!isMapping(v)) return this.mustBe(path, shape, v);
    const meant = new Set<string>();
    for (const k of Object.keys(v)) {
      if (keys.includes(k)) continue;
      const guess = this.unknownKey(path, k, keys);
      if (guess) meant.add(guess);
    }
    // A misspelt required key is one mistake: "did you mean" says it, "missing" would say it twice.
    const missing = required.filter((k) => v[k] === undefined && !meant.has(k));
    if (missing.length) {
      this.at(path, `Missing required key${missing.length > 1 ? 's' : ''} ${missing.map(quote).join(', ')}`);
    }
    return v;
  }

  /** Reports an unknown key; returns the key it probably meant. */
  unknownKey(parent: DocPath, key: string, keys: readonly string[]): string | undefined {
    const guess = didYouMean(key, keys);
    const hint = guess ? `did you mean ${quote(guess)}?` : `expected one of ${keys.map(quote).join(', ')}`;
    this.atKey(parent, key, `Unknown key ${quote(shown(key))}: ${hint}`);
    return guess;
  }

  /** A non-empty string. */
  string(path: DocPath, v: unknown): string | undefined {
    if (v === REPORTED) return undefined;
    if (typeof v !== 'string') return this.mustBe(path, 'a string', v);
    if (v === '') return this.mustBe(path, 'a non-empty string', v);
    return v;
  }

  /** A non-empty string on one line without control characters (a name, a kernel value, a path). */
  line(path: DocPath, v: unknown, what = 'a single line without control characters'): string | undefined {
    const s = this.string(path, v);
    if (s === undefined) return undefined;
    if (CONTROL.test(s)) return this.mustBe(path, what, s);
    return s;
  }

  /** An integer in [min, max]; integer strings count (templates and INI files write numbers as text). `why` explains the bounds. */
  int(path: DocPath, v: unknown, min: number, max: number, why = ''): number | undefined {
    if (v === REPORTED) return undefined;
    const n = typeof v === 'string' && INTEGER.test(v) ? Number(v) : v;
    if (typeof n !== 'number' || !Number.isInteger(n) || n < min || n > max) {
      return this.mustBe(path, `an integer from ${min} to ${max}${why}`, v);
    }
    return n;
  }

  /** A finite number in [min, max]; numeric strings count. */
  number(path: DocPath, v: unknown, min: number, max: number, why = ''): number | undefined {
    if (v === REPORTED) return undefined;
    const n = typeof v === 'string' && DECIMAL.test(v) ? Number(v) : v;
    if (typeof n !== 'number' || !Number.isFinite(n) || n < min || n > max) {
      return this.mustBe(path, max === Infinity ? `a number >= ${min}${why}` : `a number from ${min} to ${max}${why}`, v);
    }
    return n;
  }

  nonNegative(path: DocPath, v: unknown): number | undefined {
    return this.number(path, v, 0, Infinity);
  }

  bool(path: DocPath, v: unknown): boolean | undefined {
    if (v === REPORTED) return undefined;
    if (typeof v === 'boolean') return v;
    if (v === 'true' || v === 'false') return v === 'true';
    return this.mustBe(path, 'true or false', v);
  }

  /** A boolean as Ansible and YAML 1.1 spell it: true/false, yes/no, on/off, 1/0, any case. */
  boolWord(path: DocPath, v: unknown): boolean | undefined {
    if (v === REPORTED) return undefined;
    if (typeof v === 'boolean') return v;
    const s = typeof v === 'string' || typeof v === 'number' ? String(v).trim().toLowerCase() : undefined;
    if (s !== undefined && ['true', 'yes', 'on', '1', 'y', 't'].includes(s)) return true;
    if (s !== undefined && ['false', 'no', 'off', '0', 'n', 'f'].includes(s)) return false;
    return this.mustBe(path, 'true or false (or yes/no, on/off, 1/0)', v);
  }

  /** A duration in ms, more than 0 and at most `max` (named `maxName` in the message). */
  duration(path: DocPath, v: unknown, max: number, maxName = formatDuration(max)): number | undefined {
    if (v === REPORTED) return undefined;
    const ms = parseDuration(v);
    if (ms === undefined) return this.mustBe(path, DURATION_SHAPE, v);
    if (ms <= 0) return this.mustBe(path, 'more than 0', v);
    if (ms > max) return this.mustBe(path, `at most ${maxName}`, v);
    return ms;
  }

  /** A size in bytes, from `min` to `max` (`why` explains the bound). */
  size(path: DocPath, v: unknown, min: number, max: number, why = ''): number | undefined {
    if (v === REPORTED) return undefined;
    const n = parseSize(v);
    if (n === undefined) return this.mustBe(path, SIZE_SHAPE, v);
    if (n < min || n > max) return this.mustBe(path, `from ${formatSize(min)} to ${formatSize(max)}${why}`, v);
    return n;
  }

  /** One of `choices`, with a guess when the value is close to one. */
  choice<T extends string>(path: DocPath, v: unknown, choices: readonly T[], what: string): T | undefined {
    const s = this.string(path, v);
    if (s === undefined) return undefined;
    if ((choices as readonly string[]).includes(s)) return s as T;
    this.unknown(path, what, s, choices);
    return undefined;
  }

  /** `Unknown role "clinet": did you mean "client"?`; `context` follows the name. */
  unknown(path: DocPath, what: string, name: string, known: readonly string[], context = ''): void {
    const guess = didYouMean(name, known);
    const hint = guess
      ? `did you mean ${quote(guess)}?`
      : known.length
        ? `expected one of ${known.map(quote).join(', ')}`
        : 'there are none';
    const origin = this.origins.get(pathText(path));
    this.at(path, `Unknown ${what} ${quote(shown(name))}${origin === undefined ? '' : ` (${origin})`}${context}: ${hint}`);
  }

  /** A role name written as the key `name` under `parent`; false (reported) when it cannot be one. */
  roleName(parent: DocPath, name: string): boolean {
    const problem = roleNameProblem(name);
    if (problem) this.atKey(parent, name, problem);
    return !problem;
  }

  /** Where SSH connects: an IP address or a host name. */
  address(path: DocPath, v: unknown): string | undefined {
    if (v === REPORTED) return undefined;
    if (typeof v !== 'string' || !(isIP(v) || HOST_NAME.test(v))) return this.mustBe(path, 'an IP address or a host name', v);
    return v;
  }

  ipv4(path: DocPath, v: unknown): string | undefined {
    if (v === REPORTED) return undefined;
    if (typeof v !== 'string' || !isIPv4(v)) return this.mustBe(path, 'an IPv4 address', v);
    return v;
  }

  /** A file path: `~` is `home`, a relative path is relative to `dir` (the file's own directory). */
  filePath(path: DocPath, v: unknown, dir: string, home: string): string | undefined {
    const s = this.line(path, v, 'a file path on one line without control characters');
    if (s === undefined) return undefined;
    if (s === '~') return home;
    if (s.startsWith('~/')) return resolve(home, s.slice(2));
    return resolve(dir, s);
  }
}

/** A name as a message repeats it: a hostile 1 MB key is cut, not echoed whole. */
function shown(name: string): string {
  return name.length > 80 ? `${name.slice(0, 80)}…` : name;
}
