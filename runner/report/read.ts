// Reads a result.json back into a RunResult, checked against
// schema/result.schema.json, so `lab report` and baselines fail naming the file
// and the field at fault instead of a renderer failing on `undefined`.

import { readFile, stat } from 'node:fs/promises';
import { InternalError, LabError } from '../errors.ts';
import { jsonSyntaxError } from '../files/json.ts';
import { RESULT_FORMAT, RESULT_MAJOR, type RunResult } from '../result.ts';

export const RESULT_SCHEMA_URL = new URL('../../schema/result.schema.json', import.meta.url);

/** The part of JSON Schema (2020-12) that schema/result.schema.json uses; `check` rejects any other keyword. */
export interface Schema {
  $ref?: string;
  type?: SchemaType | SchemaType[];
  const?: unknown;
  enum?: unknown[];
  required?: string[];
  properties?: Record<string, Schema>;
  additionalProperties?: Schema;
  items?: Schema;
  prefixItems?: Schema[];
  minItems?: number;
  maxItems?: number;
  /** only as a union discriminated by a `kind` const in every branch */
  oneOf?: Schema[];
  $defs?: Record<string, Schema>;
}
type SchemaType = 'object' | 'array' | 'string' | 'number' | 'integer' | 'boolean' | 'null';

// Annotations carry no rule; every other keyword must be understood, so the
// schema cannot grow a rule that this checker silently skips.
const KEYWORDS = new Set([
  '$id', '$ref', 'type', 'const', 'enum', 'required', 'properties', 'additionalProperties', 'items',
  'prefixItems', 'minItems', 'maxItems', 'oneOf', '$defs', '$schema', 'title', 'description',
]);
const MAX_PROBLEMS = 10;
/** A result of a million-connection run is a few MiB; anything far larger is not one, and is not read into memory. */
export const MAX_RESULT_BYTES = 64 * 1024 * 1024;

let schemaLoad: Promise<Schema> | undefined;

/** The RunResult schema, read once from schema/result.schema.json. */
export function loadResultSchema(): Promise<Schema> {
  schemaLoad ??= readFile(RESULT_SCHEMA_URL, 'utf8').then((text) => JSON.parse(text) as Schema);
  return schemaLoad;
}

/** Reads and checks a result.json; throws LabError RESULT_UNREADABLE or RESULT_INVALID. */
export async function readResult(path: string): Promise<RunResult> {
  let text: string;
  try {
    const { size } = await stat(path);
    if (size > MAX_RESULT_BYTES) {
      throw new LabError('RESULT_TOO_LARGE', `${path}: cannot read lab result: it is ${size} bytes, over the limit of ${MAX_RESULT_BYTES} bytes (64 MiB)`);
    }
    text = await readFile(path, 'utf8');
  } catch (e) {
    if (e instanceof LabError) throw e;
    const code = (e as NodeJS.ErrnoException).code;
    const why = code === 'ENOENT' ? 'no such file' : code === 'EISDIR' ? 'is a directory' : (e as Error).message;
    throw new LabError('RESULT_UNREADABLE', `${path}: cannot read lab result: ${why}`);
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    // Worded (and placed) by our own scanner: the engines' messages differ, and some have no position.
    const error = jsonSyntaxError(text) ?? { offset: 0, reason: 'not JSON' };
    const before = text.slice(0, error.offset);
    const at = `${before.split('\n').length}:${error.offset - before.lastIndexOf('\n')}`;
    throw new LabError('RESULT_INVALID', `${path}:${at}: not a lab result: invalid JSON: ${error.reason}`);
  }
  return checkResult(value, path, await loadResultSchema());
}

/** Checks a parsed result.json; `file` names it in the error. */
export function checkResult(value: unknown, file: string, schema: Schema): RunResult {
  // A wrong or missing format means some other JSON file: say that, not fifty missing fields.
  if (!isObject(value)) {
    throw new LabError('RESULT_INVALID', `${file}: not a lab result: expected a JSON object: got ${describe(value)}`);
  }
  if (!Object.hasOwn(value, 'format')) {
    throw new LabError('RESULT_INVALID', `${file}: not a lab result: missing field "format"`);
  }
  // A newer major may have changed what fields mean: refuse it rather than misreport it.
  const major = typeof value.format === 'string' ? /^lab-result\/(\d+)(?:\.\d+)?$/.exec(value.format)?.[1] : undefined;
  if (major !== undefined && Number(major) > RESULT_MAJOR) {
    throw new LabError(
      'RESULT_NEWER',
      `${file}: written by a newer lab (format "${value.format}"); this lab reads ${RESULT_FORMAT}: upgrade lab to report it`,
    );
  }
  if (value.format !== RESULT_FORMAT && !(major !== undefined && Number(major) === RESULT_MAJOR)) {
    throw new LabError(
      'RESULT_INVALID',
      `${file}: not a lab result: field "format" must be "${RESULT_FORMAT}": got ${describe(value.format)}`,
    );
  }
  const problems: string[] = [];
  // A minor version of this major ("lab-result/1.2") is read as this one: it only adds optional fields.
  check({ ...value, format: RESULT_FORMAT }, schema, '', schema, problems);
  if (problems.length === 1) {
    throw new LabError('RESULT_INVALID', `${file}: invalid lab result: ${problems[0]}`);
  }
  if (problems.length > 1) {
    const shown = problems.slice(0, MAX_PROBLEMS).map((p) => `  ${p}`);
    if (problems.length > MAX_PROBLEMS) shown.push(`  … and ${problems.length - MAX_PROBLEMS} more`);
    throw new LabError('RESULT_INVALID', `${file}: invalid lab result: ${problems.length} problems:\n${shown.join('\n')}`);
  }
  return value as unknown as RunResult;
}

function check(value: unknown, schema: Schema, path: string, root: Schema, out: string[]): void {
  for (const key of Object.keys(schema)) {
    if (!KEYWORDS.has(key)) throw new InternalError(`schema/result.schema.json: unsupported keyword "${key}"`);
  }
  if (schema.$ref) return check(value, resolveRef(root, schema.$ref), path, root, out);
  const field = `field "${path || '(root)'}"`;

  if (schema.const !== undefined && value !== schema.const) {
    out.push(`${field} must be ${JSON.stringify(schema.const)}: got ${describe(value)}`);
    return;
  }
  if (schema.enum && !schema.enum.includes(value)) {
    out.push(`${field} must be one of ${schema.enum.map((v) => JSON.stringify(v)).join(', ')}: got ${describe(value)}`);
    return;
  }
  if (schema.type) {
    const types = Array.isArray(schema.type) ? schema.type : [schema.type];
    if (!types.some((t) => hasType(value, t))) {
      out.push(`${field} must be ${types.map(typeName).join(' or ')}: got ${describe(value)}`);
      return;
    }
  }
  if (schema.oneOf) {
    if (!isObject(value)) {
      out.push(`${field} must be an object: got ${describe(value)}`);
      return;
    }
    const kinds = schema.oneOf.map((branch) => branch.properties?.kind?.const);
    if (kinds.some((k) => typeof k !== 'string')) {
      throw new InternalError('schema/result.schema.json: oneOf needs a "kind" const in every branch');
    }
    const branch = schema.oneOf[kinds.indexOf(value.kind)];
    if (!branch) {
      const kindField = `field "${join(path, 'kind')}"`;
      out.push(`${kindField} must be one of ${kinds.map((k) => JSON.stringify(k)).join(', ')}: got ${describe(value.kind)}`);
      return;
    }
    check(value, branch, path, root, out);
  }
  if (Array.isArray(value)) {
    const { minItems: min, maxItems: max } = schema;
    if ((min !== undefined && value.length < min) || (max !== undefined && value.length > max)) {
      const want = min === max ? `${min}` : max === undefined ? `at least ${min}` : `${min ?? 0} to ${max}`;
      out.push(`${field} must have ${want} items: got ${value.length}`);
      return;
    }
    value.forEach((item, i) => {
      const itemSchema = schema.prefixItems?.[i] ?? schema.items;
      if (itemSchema) check(item, itemSchema, `${path}[${i}]`, root, out);
    });
  }
  if (isObject(value)) {
    for (const key of schema.required ?? []) {
      if (!Object.hasOwn(value, key)) out.push(`missing field "${join(path, key)}"`);
    }
    // Unknown fields are allowed: a newer lab may add optional ones to the same format.
    for (const [key, item] of Object.entries(value)) {
      const itemSchema = schema.properties?.[key] ?? (schema.properties ? undefined : schema.additionalProperties);
      if (itemSchema) check(item, itemSchema, join(path, key), root, out);
    }
  }
}

function resolveRef(root: Schema, ref: string): Schema {
  const name = ref.startsWith('#/$defs/') ? ref.slice('#/$defs/'.length) : undefined;
  const target = name === undefined ? undefined : root.$defs?.[name];
  if (!target) throw new InternalError(`schema/result.schema.json: cannot resolve "$ref": "${ref}"`);
  return target;
}

function join(path: string, key: string): string {
  const part = /^[A-Za-z_$][\w$]*$/.test(key) ? key : `[${JSON.stringify(key)}]`;
  return !path ? part : part.startsWith('[') ? path + part : `${path}.${part}`;
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function hasType(value: unknown, type: SchemaType): boolean {
  switch (type) {
    case 'object': return isObject(value);
    case 'array': return Array.isArray(value);
    case 'null': return value === null;
    case 'integer': return Number.isInteger(value);
    case 'number': return typeof value === 'number' && Number.isFinite(value);
    default: return typeof value === type;
  }
}

function typeName(type: SchemaType): string {
  return type === 'null' ? 'null' : type === 'object' || type === 'array' || type === 'integer' ? `an ${type}` : `a ${type}`;
}

/** A value as an error message shows it: short, quoted when a string. */
function describe(value: unknown): string {
  if (value === undefined) return 'nothing';
  if (Array.isArray(value)) return 'an array';
  if (isObject(value)) return 'an object';
  if (typeof value === 'string') return JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}…` : value);
  return String(value);
}
