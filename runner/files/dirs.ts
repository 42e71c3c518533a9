// Making a folder a user named (--out, an inventory's path), with its missing
// parents. Node's own `mkdir(…, { recursive: true })` never returns for a path
// under /proc (`--out /proc/x` spun a CPU forever, sync or not): the kernel
// answers ENOENT for a folder it will not make, and Node takes that for a
// missing parent and tries again. This makes one folder at a time, top down,
// so such a path fails at once with the kernel's own error.

import { mkdirSync, statSync } from 'node:fs';
import { mkdir, stat } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';

const code = (e: unknown) => (e as NodeJS.ErrnoException).code;

/** The folders of `dir` that do not exist yet, the outermost first. */
function missing(dir: string, exists: (d: string) => boolean): string[] {
  const out: string[] = [];
  for (let d = resolve(dir); !exists(d); d = dirname(d)) {
    out.unshift(d);
    if (dirname(d) === d) break;
  }
  return out;
}

/** `mkdir -p dir`; throws what the kernel says of the first folder it cannot make. */
export async function makeDirs(dir: string, mode?: number): Promise<void> {
  const toMake: string[] = [];
  for (let d = resolve(dir); ; d = dirname(d)) {
    try {
      await stat(d);
      break;
    } catch (e) {
      if (code(e) !== 'ENOENT') throw e;
      toMake.unshift(d);
      if (dirname(d) === d) break;
    }
  }
  for (const d of toMake) {
    try {
      await mkdir(d, mode === undefined ? undefined : { mode });
    } catch (e) {
      if (code(e) !== 'EEXIST') throw e;
    }
  }
}

/** `mkdir -p dir`, synchronously. */
export function makeDirsSync(dir: string, mode?: number): void {
  const toMake = missing(dir, (d) => {
    try {
      statSync(d);
      return true;
    } catch (e) {
      if (code(e) !== 'ENOENT') throw e;
      return false;
    }
  });
  for (const d of toMake) {
    try {
      mkdirSync(d, mode === undefined ? undefined : { mode });
    } catch (e) {
      if (code(e) !== 'EEXIST') throw e;
    }
  }
}
