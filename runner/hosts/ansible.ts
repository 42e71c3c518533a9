// Ansible inventories read as they are, INI or YAML, into one neutral shape:
// groups (hosts, children, vars) and hosts (vars), every value with the
// file:line:col it was written at. Host ranges are expanded here and variable
// precedence is Ansible's: `all`, then parent groups before their children
// (by depth, then name), then the host's own vars. What the variables mean to
// `lab` is ansible-inventory.ts's job; this module only reads.
//
// Both formats end as a SourceDoc, so the one Checker (files/checker.ts)
// checks their values as it checks lab's own files: YAML's is the parsed
// document itself; INI's is built here, a mapping of sections and host lines
// ("[web:vars]" → vars, "web01" → its vars) with each value's position.

import type { LabProblem, SourcePos } from '../errors.ts';
import { isMapping, pathText, PositionTable, setOwn, SourceDoc, type DocPath } from '../files/document.ts';
import { parseYaml } from '../files/yaml.ts';

/** A variable's value as written (INI values are strings, YAML's native) and where, as a path into the doc's SourceDoc. */
export interface AnsibleVar {
  value: unknown;
  /** the value's path in AnsibleDoc.sd: messages name it ("[web:vars].x", "web01.x", "all.vars.x") */
  at: DocPath;
}

export interface AnsibleHostDef {
  name: string;
  /** where the host was first named */
  pos: SourcePos;
  /** the same place as a path in AnsibleDoc.sd (INI: the host's name; YAML: its key under "hosts") */
  at: DocPath;
  /** vars written on the host itself (INI host line, YAML host mapping) */
  vars: Map<string, AnsibleVar>;
}

export interface AnsibleGroupDef {
  name: string;
  pos: SourcePos;
  /** hosts named directly in the group, in file order */
  hosts: string[];
  children: Array<{ name: string; pos: SourcePos }>;
  vars: Map<string, AnsibleVar>;
}

export interface AnsibleDoc {
  file: string;
  format: 'ini' | 'yaml';
  hosts: Map<string, AnsibleHostDef>;
  groups: Map<string, AnsibleGroupDef>;
  problems: LabProblem[];
  /** the inventory as the Checker reads it: every AnsibleVar's `at` is a path in it */
  sd: SourceDoc;
}

/** Every host a range may make, over the whole inventory: a bound against `h[1:99999999]`. */
export const MAX_HOSTS = 4096;
/** Ansible's group names: letters, digits, "_" (it warns on "-", which lab's role names use). */
const GROUP_NAME = /^[A-Za-z_][A-Za-z0-9_-]*$/;
/** A host name as written (before ranges): what an inventory host or an address may look like. */
const HOST_PATTERN = /^[A-Za-z0-9_.\-\[\]:]+$/;
const VAR_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;
const YAML_GROUP_KEYS = ['hosts', 'vars', 'children'];

const quote = (s: string) => JSON.stringify(s);

class Builder {
  readonly doc: AnsibleDoc;
  private hostCount = 0;
  /** INI only: the SourceDoc being built, its positions, and where each line starts */
  private readonly ini?: { value: Record<string, unknown>; table: PositionTable; lineStarts: number[] };

  /** `sd` is YAML's parsed document; without it (INI) the builder makes one from what it records. */
  constructor(file: string, format: 'ini' | 'yaml', text: string, sd?: SourceDoc) {
    if (!sd) {
      const lineStarts = [0];
      for (let i = text.indexOf('\n'); i >= 0; i = text.indexOf('\n', i + 1)) lineStarts.push(i + 1);
      this.ini = { value: {}, table: new PositionTable(), lineStarts };
      sd = new SourceDoc(file, text, this.ini.value, this.ini.table);
    }
    this.doc = { file, format, hosts: new Map(), groups: new Map(), problems: [], sd };
  }

  /** INI: a value (or, without one, a mapping) at `at`, written at `pos`. YAML's document has it already. */
  record(at: DocPath, pos: SourcePos, value?: unknown): void {
    if (!this.ini) return;
    const { value: root, table, lineStarts } = this.ini;
    table.set(at, lineStarts[pos.line - 1]! + pos.col - 1);
    let node = root;
    for (const [i, key] of at.entries()) {
      const last = i === at.length - 1;
      if (last && value !== undefined) setOwn(node, String(key), value);
      else {
        if (!isMapping(node[key])) setOwn(node, String(key), {});
        node = node[key] as Record<string, unknown>;
      }
    }
  }

  problem(pos: SourcePos, path: string, message: string): void {
    this.doc.problems.push({ ...pos, path, message });
  }

  group(name: string, pos: SourcePos, path: string): AnsibleGroupDef | undefined {
    if (!GROUP_NAME.test(name)) {
      this.problem(pos, path, `Invalid group name ${quote(name)}: use letters, digits, "_" and "-", starting with a letter or "_"`);
      return undefined;
    }
    let g = this.doc.groups.get(name);
    if (!g) {
      g = { name, pos, hosts: [], children: [], vars: new Map() };
      this.doc.groups.set(name, g);
    }
    return g;
  }

  /** Adds the hosts a pattern names to `group` (each defined at `at(name)` when new); returns their names. */
  hosts(group: AnsibleGroupDef, pattern: string, pos: SourcePos, path: string, at: (name: string) => DocPath): string[] {
    const expanded = expandHostPattern(pattern);
    if ('error' in expanded) {
      this.problem(pos, path, expanded.error);
      return [];
    }
    this.hostCount += expanded.names.length;
    if (this.hostCount > MAX_HOSTS) {
      this.problem(pos, path, `Too many hosts: the inventory names more than ${MAX_HOSTS}`);
      return [];
    }
    for (const name of expanded.names) {
      if (group.hosts.includes(name)) {
        this.problem(pos, path, `Host ${quote(name)} is listed twice in group ${quote(group.name)}`);
        continue;
      }
      group.hosts.push(name);
      if (!this.doc.hosts.has(name)) {
        this.doc.hosts.set(name, { name, pos, at: at(name), vars: new Map() });
        this.record(at(name), pos);
      }
    }
    return expanded.names;
  }

  /** A variable `name` written at `pos`, its value at `at` in the SourceDoc. */
  setVar(vars: Map<string, AnsibleVar>, name: string, value: unknown, pos: SourcePos, at: DocPath): void {
    if (!VAR_NAME.test(name)) {
      this.problem(pos, pathText(at), `Invalid variable name ${quote(name)}: use letters, digits and "_", starting with a letter or "_"`);
      return;
    }
    this.record(at, pos, value);
    vars.set(name, { value, at });
  }
}

// ---- host patterns ----

/**
 * `web[01:04].example.net` → web01…web04 (a leading zero fixes the width),
 * `[a:c]`, `[1:10:2]` (a stride), several ranges in one name; `name:port` is
 * split off by the caller. Errors say what is wrong with the range.
 */
export function expandHostPattern(pattern: string): { names: string[] } | { error: string } {
  if (!HOST_PATTERN.test(pattern)) return { error: `Invalid host name ${quote(pattern)}: use letters, digits, ".", "-", "_" and ranges like "web[01:04]"` };
  const open = pattern.indexOf('[');
  if (open < 0) {
    if (pattern.includes(']')) return { error: `Invalid host range in ${quote(pattern)}: "]" without "["` };
    return { names: [pattern] };
  }
  const close = pattern.indexOf(']', open);
  if (close < 0) return { error: `Invalid host range in ${quote(pattern)}: "[" without "]"` };
  const head = pattern.slice(0, open);
  const range = pattern.slice(open + 1, close);
  const tail = pattern.slice(close + 1);
  const parts = range.split(':');
  if (parts.length < 2 || parts.length > 3) {
    return { error: `Invalid host range "[${range}]" in ${quote(pattern)}: write "[BEGIN:END]" or "[BEGIN:END:STEP]"` };
  }
  const [beg, end, stepText] = parts as [string, string, string | undefined];
  const step = stepText === undefined ? 1 : /^\d+$/.test(stepText) ? Number(stepText) : NaN;
  if (!Number.isInteger(step) || step < 1) return { error: `Invalid host range "[${range}]" in ${quote(pattern)}: the step must be a positive integer` };
  let items: string[];
  if (/^[a-zA-Z]$/.test(beg) && /^[a-zA-Z]$/.test(end)) {
    if (beg > end) return { error: `Invalid host range "[${range}]" in ${quote(pattern)}: "${beg}" comes after "${end}"` };
    items = [];
    for (let c = beg.charCodeAt(0); c <= end.charCodeAt(0); c += step) items.push(String.fromCharCode(c));
  } else if (/^\d*$/.test(beg) && /^\d+$/.test(end)) {
    const width = beg.length > 1 && beg.startsWith('0') ? beg.length : 0;
    if (width && end.length !== width) {
      return { error: `Invalid host range "[${range}]" in ${quote(pattern)}: a zero-padded range needs both ends of one width` };
    }
    const lo = Number(beg || '0');
    const hi = Number(end);
    if (lo > hi) return { error: `Invalid host range "[${range}]" in ${quote(pattern)}: ${lo} is more than ${hi}` };
    if ((hi - lo) / step + 1 > MAX_HOSTS) return { error: `Invalid host range "[${range}]" in ${quote(pattern)}: more than ${MAX_HOSTS} hosts` };
    items = [];
    for (let n = lo; n <= hi; n += step) items.push(String(n).padStart(width, '0'));
  } else {
    return { error: `Invalid host range "[${range}]" in ${quote(pattern)}: use numbers ("[01:04]") or single letters ("[a:c]")` };
  }
  const rest = expandHostPattern(`x${tail}`);
  if ('error' in rest) return rest;
  const names: string[] = [];
  for (const item of items) {
    for (const r of rest.names) {
      names.push(`${head}${item}${r.slice(1)}`);
      if (names.length > MAX_HOSTS) return { error: `Invalid host range in ${quote(pattern)}: more than ${MAX_HOSTS} hosts` };
    }
  }
  return { names };
}

/** "host:2222" → the host and its port; a name with a range or no port is left alone. */
function splitPort(pattern: string): { name: string; port?: string } {
  const m = /^(.*[^:\]]|.*\]):(\d+)$/.exec(pattern);
  if (!m || m[1]!.includes(':') && !m[1]!.includes('[')) return { name: pattern };
  // A colon left inside the name is a range's ("[1:3]"), not a port's.
  return { name: m[1]!, port: m[2]! };
}

// ---- INI ----

interface Token {
  text: string;
  col: number;
}

/** Splits a line like Python's shlex (comments=True): quotes, backslashes, "#" starts a comment. */
function shellWords(line: string): { words: Token[]; error?: { col: number; message: string } } {
  const words: Token[] = [];
  let i = 0;
  while (i < line.length) {
    while (i < line.length && /\s/.test(line[i]!)) i++;
    if (i >= line.length || line[i] === '#') break;
    const start = i;
    let text = '';
    while (i < line.length && !/\s/.test(line[i]!)) {
      const c = line[i]!;
      if (c === "'" || c === '"') {
        const close = line.indexOf(c, i + 1);
        if (close < 0) return { words, error: { col: i + 1, message: `Unclosed ${c === '"' ? 'double' : 'single'} quote` } };
        let inner = line.slice(i + 1, close);
        if (c === '"') inner = inner.replace(/\\(["\\$`])/g, '$1');
        text += inner;
        i = close + 1;
      } else if (c === '\\' && i + 1 < line.length) {
        text += line[i + 1];
        i += 2;
      } else {
        text += c;
        i++;
      }
    }
    words.push({ text, col: start + 1 });
  }
  return { words };
}

/** A value in a `[group:vars]` line: the rest of the line, outer quotes removed, a " #" comment dropped. */
function iniValue(raw: string): string {
  let v = raw.trim();
  if ((v.startsWith('"') && v.endsWith('"') && v.length > 1) || (v.startsWith("'") && v.endsWith("'") && v.length > 1)) {
    return v.slice(1, -1);
  }
  const hash = v.search(/\s[#;]/);
  if (hash >= 0) v = v.slice(0, hash).trimEnd();
  return v;
}

export function parseAnsibleIni(file: string, text: string): AnsibleDoc {
  const b = new Builder(file, 'ini', text);
  const at = (line: number, col: number): SourcePos => ({ file, line, col });
  // Hosts before any section are Ansible's "ungrouped".
  let section: { kind: 'hosts' | 'vars' | 'children'; group: AnsibleGroupDef | undefined; name: string } = {
    kind: 'hosts',
    group: b.group('all', at(1, 1), ''),
    name: 'all',
  };
  const varsSections: Array<{ name: string; pos: SourcePos }> = [];
  const defined = new Set<string>(['all', 'ungrouped']);
  const lines = text.split(/\r?\n/);
  for (const [i, raw] of lines.entries()) {
    const n = i + 1;
    const line = raw.trim();
    if (!line || line.startsWith('#') || line.startsWith(';')) continue;
    const indent = raw.length - raw.trimStart().length;
    if (line.startsWith('[')) {
      const m = /^\[([^\]:]*)(?::([^\]]*))?\]\s*([#;].*)?$/.exec(line);
      if (!m) {
        b.problem(at(n, indent + 1), '', `Invalid section header ${quote(line)}: write "[group]", "[group:vars]" or "[group:children]"`);
        section = { kind: 'hosts', group: undefined, name: '' };
        continue;
      }
      const name = m[1]!;
      const kind = m[2];
      if (kind !== undefined && kind !== 'vars' && kind !== 'children') {
        b.problem(at(n, indent + 1), '', `Unknown section kind ${quote(kind)} in "[${name}:${kind}]": expected "vars" or "children"`);
        section = { kind: 'hosts', group: undefined, name };
        continue;
      }
      const pos = at(n, indent + 2);
      if (kind === 'vars') {
        // A [x:vars] for a group defined nowhere is a mistake (Ansible refuses it too): checked at the end.
        varsSections.push({ name, pos });
        section = { kind: 'vars', group: b.group(name, pos, `[${name}:vars]`), name };
      } else {
        section = { kind: kind === 'children' ? 'children' : 'hosts', group: b.group(name, pos, `[${name}]`), name };
        // Only a hosts or children section defines a group.
        if (section.group) defined.add(name);
      }
      continue;
    }
    const group = section.group;
    if (!group) continue;
    const where = section.kind === 'hosts' ? `[${section.name}]` : `[${section.name}:${section.kind}]`;
    if (section.kind === 'vars') {
      const eq = line.indexOf('=');
      if (eq <= 0) {
        b.problem(at(n, indent + 1), where, `Expected "name=value" in a vars section: got ${quote(line)}`);
        continue;
      }
      const name = line.slice(0, eq).trim();
      b.setVar(group.vars, name, iniValue(line.slice(eq + 1)), at(n, indent + 1), [where, name]);
      continue;
    }
    const { words, error } = shellWords(raw);
    if (error) {
      b.problem(at(n, error.col), where, error.message);
      continue;
    }
    if (!words.length) continue;
    const [first, ...rest] = words as [Token, ...Token[]];
    if (section.kind === 'children') {
      if (rest.length) b.problem(at(n, rest[0]!.col), where, `Expected one group name per line in a children section: got ${quote(line)}`);
      group.children.push({ name: first.text, pos: at(n, first.col) });
      continue;
    }
    const { name: pattern, port } = splitPort(first.text);
    const names = b.hosts(group, pattern, at(n, first.col), where, (hostName) => [hostName]);
    for (const hostName of names) {
      const host = b.doc.hosts.get(hostName)!;
      if (port !== undefined) b.setVar(host.vars, 'ansible_port', port, at(n, first.col + pattern.length + 1), [hostName, 'ansible_port']);
      for (const w of rest) {
        const eq = w.text.indexOf('=');
        if (eq <= 0) {
          b.problem(at(n, w.col), where, `Expected "name=value" after the host name: got ${quote(w.text)}`);
          break;
        }
        const name = w.text.slice(0, eq);
        b.setVar(host.vars, name, w.text.slice(eq + 1), at(n, w.col), [hostName, name]);
      }
    }
  }
  for (const v of varsSections) {
    if (!defined.has(v.name)) {
      b.problem(v.pos, `[${v.name}:vars]`, `Unknown group ${quote(v.name)}: no "[${v.name}]" or "[${v.name}:children]" section defines it`);
    }
  }
  return finish(b);
}

// ---- YAML ----

export function parseAnsibleYaml(file: string, text: string, sd: SourceDoc = parseYaml(file, text)): AnsibleDoc {
  const b = new Builder(file, 'yaml', text, sd);
  const at = (path: DocPath, key = false): SourcePos => {
    const { line, col } = sd.locate(path, key);
    return { file, line, col };
  };
  if (!isMapping(sd.value)) {
    b.problem(at([]), '', 'Must be a mapping of group names (usually "all:") to "hosts", "vars" and "children"');
    return finish(b);
  }
  const readGroup = (name: string, path: DocPath, body: unknown) => {
    const group = b.group(name, at(path, true), pathText(path));
    if (!group) return;
    if (body === null || body === undefined) return;
    if (!isMapping(body)) {
      b.problem(at(path), pathText(path), 'Must be a mapping with "hosts", "vars" or "children"');
      return;
    }
    for (const [key, value] of Object.entries(body)) {
      const kp = [...path, key];
      if (!YAML_GROUP_KEYS.includes(key)) {
        b.problem(at(kp, true), pathText(path), `Unknown key ${quote(key)} in group ${quote(name)}: expected "hosts", "vars" or "children"`);
        continue;
      }
      if (value === null || value === undefined) continue;
      if (!isMapping(value)) {
        b.problem(at(kp), pathText(kp), `Must be a mapping: got ${Array.isArray(value) ? 'a list' : JSON.stringify(value)}`);
        continue;
      }
      if (key === 'vars') {
        for (const [v, val] of Object.entries(value)) b.setVar(group.vars, v, val, at([...kp, v], true), [...kp, v]);
      } else if (key === 'children') {
        for (const [child, childBody] of Object.entries(value)) {
          group.children.push({ name: child, pos: at([...kp, child], true) });
          readGroup(child, [...kp, child], childBody);
        }
      } else {
        for (const [pattern, hostBody] of Object.entries(value)) {
          const hp = [...kp, pattern];
          const { name: p, port } = splitPort(pattern);
          const names = b.hosts(group, p, at(hp, true), pathText(kp), () => hp);
          if (hostBody !== null && hostBody !== undefined && !isMapping(hostBody)) {
            b.problem(at(hp), pathText(hp), 'Must be a mapping of host variables');
            continue;
          }
          for (const hostName of names) {
            const host = b.doc.hosts.get(hostName)!;
            // The port is part of the key: a problem with it is shown on the key.
            if (port !== undefined) b.setVar(host.vars, 'ansible_port', port, at(hp, true), hp);
            for (const [v, val] of Object.entries(hostBody ?? {})) b.setVar(host.vars, v, val, at([...hp, v], true), [...hp, v]);
          }
        }
      }
    }
  };
  for (const [name, body] of Object.entries(sd.value)) readGroup(name, [name], body);
  return finish(b);
}

// ---- the whole inventory ----

/** `all` and `ungrouped` (hosts in no other group) exist; unknown children and cycles are problems. */
function finish(b: Builder): AnsibleDoc {
  const { doc } = b;
  const top = { file: doc.file, line: 1, col: 1 };
  b.group('all', top, '');
  const ungrouped = b.group('ungrouped', top, '')!;
  const grouped = new Set<string>();
  for (const g of doc.groups.values()) if (g.name !== 'all' && g.name !== 'ungrouped') for (const h of g.hosts) grouped.add(h);
  for (const h of doc.hosts.keys()) if (!grouped.has(h) && !ungrouped.hosts.includes(h)) ungrouped.hosts.push(h);
  for (const g of doc.groups.values()) {
    for (const child of g.children) {
      if (!doc.groups.has(child.name)) {
        b.problem(child.pos, g.name, `Unknown group ${quote(child.name)} in the children of ${quote(g.name)}: no section defines it`);
      } else if (child.name === 'all') {
        b.problem(child.pos, g.name, `Group "all" cannot be a child of ${quote(g.name)}: it holds every host`);
      }
    }
  }
  const cycle = findCycle(doc);
  if (cycle) b.problem(doc.groups.get(cycle[0]!)!.pos, cycle[0]!, `Groups form a cycle: ${cycle.map(quote).join(' → ')}`);
  return doc;
}

function findCycle(doc: AnsibleDoc): string[] | undefined {
  const state = new Map<string, 'open' | 'done'>();
  const visit = (name: string, trail: string[]): string[] | undefined => {
    const s = state.get(name);
    if (s === 'done') return undefined;
    if (s === 'open') return [...trail.slice(trail.indexOf(name)), name];
    state.set(name, 'open');
    for (const c of doc.groups.get(name)?.children ?? []) {
      if (c.name === 'all' || !doc.groups.has(c.name)) continue;
      const found = visit(c.name, [...trail, name]);
      if (found) return found;
    }
    state.set(name, 'done');
    return undefined;
  };
  for (const name of doc.groups.keys()) {
    const found = visit(name, []);
    if (found) return found;
  }
  return undefined;
}

/** A group's hosts, its own first and then its children's, each once, in inventory order. */
export function groupMembers(doc: AnsibleDoc, name: string): string[] {
  if (name === 'all') return [...doc.hosts.keys()];
  const out: string[] = [];
  const seen = new Set<string>();
  const visit = (g: string, depth: number) => {
    const group = doc.groups.get(g);
    if (!group || depth > doc.groups.size) return;
    for (const h of group.hosts) if (!seen.has(h)) (seen.add(h), out.push(h));
    for (const c of group.children) visit(c.name, depth + 1);
  };
  visit(name, 0);
  return out;
}

/**
 * A host's variables after Ansible's precedence: `all`'s, then every group
 * that holds it ordered by depth (a child after its parent) and then by name,
 * then the host's own. Each value keeps the position it was written at.
 */
export function hostVars(doc: AnsibleDoc, host: string): Map<string, AnsibleVar> {
  let m = memo.get(doc);
  if (!m) {
    const members = new Map([...doc.groups.keys()].map((g) => [g, new Set(groupMembers(doc, g))]));
    m = { depth: groupDepths(doc), members };
    memo.set(doc, m);
  }
  const { depth, members } = m;
  const groups = [...doc.groups.values()]
    .filter((g) => g.name !== 'all' && members.get(g.name)!.has(host))
    .sort((a, b) => depth.get(a.name)! - depth.get(b.name)! || a.name.localeCompare(b.name));
  const vars = new Map<string, AnsibleVar>(doc.groups.get('all')?.vars ?? []);
  for (const g of groups) for (const [k, v] of g.vars) vars.set(k, v);
  for (const [k, v] of doc.hosts.get(host)?.vars ?? []) vars.set(k, v);
  return vars;
}

const memo = new WeakMap<AnsibleDoc, { depth: Map<string, number>; members: Map<string, Set<string>> }>();

/** How deep each group sits below `all`: the longest chain of parents. */
function groupDepths(doc: AnsibleDoc): Map<string, number> {
  const parents = new Map<string, string[]>();
  for (const g of doc.groups.values()) for (const c of g.children) parents.set(c.name, [...(parents.get(c.name) ?? []), g.name]);
  const depth = new Map<string, number>();
  const of = (name: string, guard: number): number => {
    if (name === 'all') return 0;
    const known = depth.get(name);
    if (known !== undefined) return known;
    const ps = (parents.get(name) ?? []).filter((p) => p !== name);
    const d = guard > doc.groups.size ? 1 : Math.max(0, ...ps.map((p) => of(p, guard + 1))) + 1;
    depth.set(name, d);
    return d;
  };
  for (const name of doc.groups.keys()) of(name, 0);
  return depth;
}
