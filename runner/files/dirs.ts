// Making a folder a user named (--out, an inventory's path), with its missing
// parents. Node's own `mkdir(…, { recursive: true })` never returns for a path
// under /proc (`--out /proc/x` spun a CPU forever, sync or not): the kernel
// answers ENOENT for a folder it will not make, and Node takes that for a
// missing parent and tries again. This makes one folder at a time, top down,
// so such a path fails at once with the kernel's own error.

import { mkdirSync, statSync, type Stats } from 'node:fs';
import { mkdir, stat } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';

const code = (e: unknown) => (e as NodeJS.ErrnoException).code;

function errno(name: 'EEXIST' | 'ENOTDIR', what: string, path: string): NodeJS.ErrnoException {
  return Object.assign(new Error(`${name}: ${what}, mkdir '${path}'`), { code: name, path });
}

/**
 * The folders of `dir` to make, the outermost first, given how to stat a path
 * (undefined: it does not exist). What exists on the way must be a folder, as
 * `mkdir -p` requires: `dir` itself a file is EEXIST, a parent a file ENOTDIR.
 */
function* toMake(dir: string): Generator<string, string[], Stats | undefined> {
  const out: string[] = [];
  const target = resolve(dir);
  for (let d = target; ; d = dirname(d)) {
    const info = yield d;
    if (info) {
      if (!info.isDirectory()) throw d === target ? errno('EEXIST', 'file already exists', d) : errno('ENOTDIR', 'not a directory', target);
      return out;
    }
    out.unshift(d);
    if (dirname(d) === d) return out;
  }
}

const absent = (e: unknown): undefined => {
  if (code(e) !== 'ENOENT') throw e;
  return undefined;
};

/** `mkdir -p dir`; throws what the kernel says of the first folder it cannot make. */
export async function makeDirs(dir: string, mode?: number): Promise<void> {
  const walk = toMake(dir);
  let step = walk.next();
  while (!step.done) step = walk.next(await stat(step.value).catch(absent));
  for (const d of step.value) await mkdir(d, mode === undefined ? undefined : { mode }).catch((e) => code(e) === 'EEXIST' || Promise.reject(e));
}

/** `mkdir -p dir`, synchronously. */
export function makeDirsSync(dir: string, mode?: number): void {
  const walk = toMake(dir);
  let step = walk.next();
  while (!step.done) {
    let info: Stats | undefined;
    try {
      info = statSync(step.value);
    } catch (e) {
      info = absent(e);
    }
    step = walk.next(info);
  }
  for (const d of step.value) {
    try {
      mkdirSync(d, mode === undefined ? undefined : { mode });
    } catch (e) {
      if (code(e) !== 'EEXIST') throw e;
    }
  }
}
