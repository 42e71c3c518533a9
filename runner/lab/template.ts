// Handlebars templating of a lab file's string scalars with its `vars:` (and
// `--var` overrides). Rendering happens per scalar after YAML parsing, so every
// problem still points at the line and column the user wrote.

import Handlebars from 'handlebars';
import { isScalar, Scalar } from 'yaml';
import { LabError, type LabProblem } from '../errors.ts';
import { pathText, type SourceDoc, type YamlPath } from './yaml.ts';

/** Template variables: name -> value, always strings (what a template prints). */
export type TemplateVars = Record<string, string>;

/** Names a template can refer to as `{{name}}` without brackets. */
export const VAR_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

// An environment of our own: nothing registered on the global Handlebars
// leaks into lab files, and `{{log}}` cannot write to the terminal.
const handlebars = Handlebars.create();
handlebars.registerHelper('log', () => {
  throw new Error('the "log" helper is not available in lab files');
});

/** Stands for a scalar whose template failed; validation skips it, so one mistake is one problem. */
export const TEMPLATE_FAILED: unique symbol = Symbol('template failed');

export interface TemplateFailure {
  /** the message, e.g. `Undefined variable "hgih" in template: did you mean "high"?` */
  message: string;
  /** offset into the template source where the problem is, when Handlebars knows */
  offset?: number;
}

export type RenderResult = { ok: true; value: string } | { ok: false; failure: TemplateFailure };

/** True when `s` holds a Handlebars expression, so rendering could change it. */
export function isTemplate(s: string): boolean {
  return s.includes('{{');
}

/** Render one template strictly: a name missing from `vars` is a failure, not "". */
export function renderTemplate(source: string, vars: TemplateVars): RenderResult {
  if (!isTemplate(source)) return { ok: true, value: source };
  try {
    // compile() is lazy, so parse first to tell syntax errors from failed lookups.
    handlebars.parse(source);
  } catch (e) {
    return { ok: false, failure: syntaxFailure(e, source) };
  }
  try {
    const render = handlebars.compile(source, { strict: true, noEscape: true });
    return { ok: true, value: render({ ...vars }) };
  } catch (e) {
    return { ok: false, failure: lookupFailure(e, source, vars) };
  }
}

function syntaxFailure(e: unknown, source: string): TemplateFailure {
  const msg = e instanceof Error ? e.message : String(e);
  const lines = msg.split('\n');
  // Handlebars' parse errors are "Parse error on line N:", an excerpt, a caret
  // line and "Expecting …"; the last line is the part worth reading.
  const detail = lines.length > 1 ? lines[lines.length - 1]! : msg;
  return { message: `Cannot parse template ${JSON.stringify(source)}: ${detail.charAt(0).toLowerCase()}${detail.slice(1)}` };
}

function lookupFailure(e: unknown, source: string, vars: TemplateVars): TemplateFailure {
  const err = e as { message?: string; lineNumber?: number; column?: number };
  const msg = err?.message ?? String(e);
  const m = /^"(.*)" not defined in /.exec(msg);
  const offset =
    typeof err.lineNumber === 'number' && typeof err.column === 'number'
      ? lineColToOffset(source, err.lineNumber, err.column)
      : undefined;
  if (!m) return { message: `Cannot render template: ${msg}`, offset };
  const name = m[1]!;
  const names = Object.keys(vars);
  const guess = didYouMean(name, names);
  const hint = guess
    ? `did you mean "${guess}"?`
    : VAR_NAME.test(name)
      ? `define it under "vars:" or pass --var ${name}=VALUE`
      : `define it under "vars:"`;
  return { message: `Undefined variable "${name}" in template: ${hint}`, offset };
}

/** Handlebars reports 1-based lines and 0-based columns. */
function lineColToOffset(source: string, line: number, column: number): number {
  let offset = 0;
  for (let l = 1; l < line; l++) {
    const nl = source.indexOf('\n', offset);
    if (nl < 0) break;
    offset = nl + 1;
  }
  return offset + column;
}

/**
 * The lab's vars after `--var` overrides. Overrides win, and may name vars
 * the file does not declare (they are simply added).
 */
export function mergeVars(fileVars: TemplateVars, overrides: Record<string, string> = {}): TemplateVars {
  return { ...fileVars, ...overrides };
}

/**
 * Parse `--var k=v` arguments (without the flag) into overrides. The value may
 * contain "="; only the first one splits.
 */
export function parseVarOverrides(args: readonly string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const arg of args) {
    const eq = arg.indexOf('=');
    if (eq < 0) throw new LabError('ARGS', `Cannot parse --var "${arg}": expected NAME=VALUE`);
    const name = arg.slice(0, eq);
    if (!VAR_NAME.test(name)) {
      throw new LabError('ARGS', `Cannot parse --var "${arg}": the name must match ${VAR_NAME.source}`);
    }
    out[name] = arg.slice(eq + 1);
  }
  return out;
}

export interface RenderedTree {
  /** the document value with every templated string rendered (or TEMPLATE_FAILED) */
  value: unknown;
  /** path text -> the template a rendered string came from, for error messages */
  templates: Map<string, string>;
  problems: LabProblem[];
}

/**
 * Render every string scalar of a parsed lab file. `skip` leaves a subtree as
 * written (the `vars:` section is never templated). Mapping keys are not
 * templated: they name things, and a key that changed under a template could
 * no longer be pointed at.
 */
export function renderTree(
  sd: SourceDoc,
  vars: TemplateVars,
  skip: (path: YamlPath) => boolean = () => false,
): RenderedTree {
  const templates = new Map<string, string>();
  const problems: LabProblem[] = [];
  const walk = (value: unknown, path: YamlPath): unknown => {
    if (path.length && skip(path)) return value;
    if (typeof value === 'string') {
      if (!isTemplate(value)) return value;
      const r = renderTemplate(value, vars);
      if (r.ok) {
        templates.set(pathText(path), value);
        return r.value;
      }
      problems.push(templateProblem(sd, path, value, r.failure));
      return TEMPLATE_FAILED;
    }
    if (Array.isArray(value)) return value.map((v, i) => walk(v, [...path, i]));
    if (value && typeof value === 'object') {
      const out: Record<string, unknown> = {};
      for (const [k, v] of Object.entries(value)) out[k] = walk(v, [...path, k]);
      return out;
    }
    return value;
  };
  return { value: walk(sd.value, []), templates, problems };
}

/** A problem placed on the failing expression inside the scalar when the source allows it. */
function templateProblem(sd: SourceDoc, path: YamlPath, template: string, failure: TemplateFailure): LabProblem {
  const base = sd.problem(path, failure.message);
  if (failure.offset === undefined) return base;
  const node = sd.doc.getIn(path, true);
  if (!isScalar(node) || !node.range) return base;
  const start = contentStart(sd.text, node, template);
  if (start === undefined) return base;
  const { line, col } = offsetToPos(sd.text, start + failure.offset);
  return { ...base, line, col };
}

/**
 * Where the scalar's text starts in the file, if the source spells the value
 * exactly (plain or quoted, no escapes, no folding); otherwise undefined and
 * the problem stays at the scalar's start.
 */
function contentStart(text: string, node: Scalar, value: string): number | undefined {
  const [from, to] = node.range!;
  const raw = text.slice(from, to);
  if (node.type === Scalar.PLAIN && raw === value) return from;
  if ((node.type === Scalar.QUOTE_DOUBLE || node.type === Scalar.QUOTE_SINGLE) && raw.slice(1, -1) === value) {
    return from + 1;
  }
  return undefined;
}

function offsetToPos(text: string, offset: number): { line: number; col: number } {
  let line = 1;
  let lineStart = 0;
  for (let i = text.indexOf('\n'); i >= 0 && i < offset; i = text.indexOf('\n', i + 1)) {
    line++;
    lineStart = i + 1;
  }
  return { line, col: offset - lineStart + 1 };
}

/**
 * The candidate the user most likely meant: within edit distance 2 (a swap of
 * two neighbours counts as one edit, so "hgih" finds "high") and no more than
 * half the word (so "nap" does not find "ramp"), or one a prefix of the other.
 * Shared by every "did you mean" in lab/.
 */
export function didYouMean(word: string, candidates: Iterable<string>): string | undefined {
  let best: string | undefined;
  let bestScore = Infinity;
  const w = word.toLowerCase();
  for (const c of candidates) {
    const lc = c.toLowerCase();
    if (lc === w) return c;
    const d = editDistance(w, lc);
    const score =
      d <= 2 && d * 2 <= w.length ? d : w.length >= 2 && (lc.startsWith(w) || w.startsWith(lc)) ? 3 : Infinity;
    if (score < bestScore) {
      best = c;
      bestScore = score;
    }
  }
  return best;
}

/** Levenshtein distance, with a transposition of neighbours as one edit (optimal string alignment). */
export function editDistance(a: string, b: string): number {
  const d: number[][] = Array.from({ length: a.length + 1 }, (_, i) =>
    Array.from({ length: b.length + 1 }, (_, j) => (i === 0 ? j : j === 0 ? i : 0)),
  );
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let v = Math.min(d[i - 1]![j]! + 1, d[i]![j - 1]! + 1, d[i - 1]![j - 1]! + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) v = Math.min(v, d[i - 2]![j - 2]! + 1);
      d[i]![j] = v;
    }
  }
  return d[a.length]![b.length]!;
}
