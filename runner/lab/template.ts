// Handlebars templating of a lab file's string scalars with its `vars:` (and
// `--var` overrides). Rendering happens per scalar after YAML parsing, so every
// problem still points at the line and column the user wrote.

import Handlebars from 'handlebars';
import { LabError, type LabProblem } from '../errors.ts';
import { REPORTED } from '../files/checker.ts';
import { pathText, setOwn, type DocPath, type SourceDoc } from '../files/document.ts';
import { didYouMean } from '../files/names.ts';

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
    // Strict lookups ask `name in vars`: only the vars' own names count, so
    // "{{constructor}}" is an undefined variable, not an inherited property rendered as "".
    const own = new Proxy({ ...vars }, { has: (target, name) => typeof name === 'string' && Object.hasOwn(target, name) });
    return { ok: true, value: render(own) };
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
    setOwn(out, name, arg.slice(eq + 1));
  }
  return out;
}

/**
 * The `--var` names that no template of the labs uses: setting one changes
 * nothing (a typo like "somaxcon" would otherwise pass without a word), each
 * with the name it probably meant.
 */
export function unusedOverrides(overrides: Record<string, string>, sources: string[]): Array<{ name: string; meant?: string }> {
  const used = new Set<string>();
  for (const source of sources) {
    for (const m of source.matchAll(/\{\{([^}]*)\}\}/g)) for (const w of m[1]!.matchAll(/[A-Za-z_]\w*/g)) used.add(w[0]);
  }
  return Object.keys(overrides)
    .filter((name) => !used.has(name))
    .map((name) => ({ name, meant: didYouMean(name, used) }));
}

export interface RenderedTree {
  /** the document value with every templated string rendered (or REPORTED, the floor's mark for a value whose problem is reported) */
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
  skip: (path: DocPath) => boolean = () => false,
): RenderedTree {
  const templates = new Map<string, string>();
  const problems: LabProblem[] = [];
  const walk = (value: unknown, path: DocPath): unknown => {
    if (path.length && skip(path)) return value;
    if (typeof value === 'string') {
      if (!isTemplate(value)) return value;
      const r = renderTemplate(value, vars);
      if (r.ok) {
        templates.set(pathText(path), value);
        return r.value;
      }
      problems.push(templateProblem(sd, path, r.failure));
      return REPORTED;
    }
    if (Array.isArray(value)) return value.map((v, i) => walk(v, [...path, i]));
    if (value && typeof value === 'object') {
      const out: Record<string, unknown> = {};
      for (const [k, v] of Object.entries(value)) setOwn(out, k, walk(v, [...path, k]));
      return out;
    }
    return value;
  };
  return { value: walk(sd.value, []), templates, problems };
}

/** A problem placed on the failing expression inside the scalar when the source spells it verbatim. */
function templateProblem(sd: SourceDoc, path: DocPath, failure: TemplateFailure): LabProblem {
  const base = sd.problem(path, failure.message);
  const start = failure.offset === undefined ? undefined : sd.verbatimStart(path);
  if (start === undefined) return base;
  const { line, col } = sd.position(start + failure.offset!);
  return { ...base, line, col };
}
