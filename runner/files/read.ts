// Reading a file a user wrote, bounded before any parser sees it: a file
// larger than any lab file or inventory could be is refused by its size (a
// 50 MB file is never read into memory), and one that is not UTF-8 text is
// refused at the first byte that is not, with its line and column.

import { open, readdir } from 'node:fs/promises';
import { basename, dirname } from 'node:path';
import { LabError } from '../errors.ts';
import { didYouMean } from './names.ts';
import { quote } from './quote.ts';

/** A lab file or inventory is a few KiB; 1 MiB leaves room for any real one. */
export const MAX_FILE_BYTES = 1024 * 1024;

export interface UserFileKind {
  /** how messages name it: "lab file", "inventory" */
  what: string;
  /** the error-code prefix: "LAB" gives LAB_NOT_FOUND, LAB_UNREADABLE, LAB_TOO_LARGE, LAB_NOT_TEXT */
  code: string;
}

/** The text of a user's file, or a LabError (exit 2) saying why it cannot be read. */
export async function readUserFile(file: string, kind: UserFileKind): Promise<string> {
  let bytes: Buffer;
  try {
    const handle = await open(file, 'r');
    try {
      const { size } = await handle.stat();
      if (size > MAX_FILE_BYTES) {
        throw new LabError(
          `${kind.code}_TOO_LARGE`,
          `Cannot read ${kind.what} ${quote(file)}: it is ${size} bytes, over the limit of ${MAX_FILE_BYTES} bytes (1 MiB)`,
        );
      }
      // Read at most one byte past the limit: a file that grows while read is still bounded.
      const buffer = Buffer.alloc(Math.min(size, MAX_FILE_BYTES) + 1);
      let length = 0;
      for (;;) {
        const { bytesRead } = await handle.read(buffer, length, buffer.length - length, length);
        if (!bytesRead) break;
        length += bytesRead;
        if (length === buffer.length) break;
      }
      if (length > MAX_FILE_BYTES) {
        throw new LabError(`${kind.code}_TOO_LARGE`, `Cannot read ${kind.what} ${quote(file)}: it grew over the limit of ${MAX_FILE_BYTES} bytes (1 MiB) while read`);
      }
      bytes = buffer.subarray(0, length);
    } finally {
      await handle.close();
    }
  } catch (e) {
    if (e instanceof LabError) throw e;
    const code = (e as { code?: string }).code;
    if (code === 'ENOENT') {
      const guess = didYouMean(basename(file), await yamlFilesBeside(file));
      const hint = guess ? `: did you mean ${quote(joinDir(file, guess))}?` : '';
      throw new LabError(`${kind.code}_NOT_FOUND`, `Cannot find ${kind.what} ${quote(file)}${hint}`);
    }
    if (code === 'EISDIR') throw new LabError(`${kind.code}_NOT_FOUND`, `Cannot read ${kind.what} ${quote(file)}: it is a directory`);
    throw new LabError(`${kind.code}_UNREADABLE`, `Cannot read ${kind.what} ${quote(file)}: ${(e as Error).message}`);
  }
  return decodeText(file, bytes, kind);
}

/** UTF-8 text without NUL bytes, or a LabError at the first byte that is not text. */
export function decodeText(file: string, bytes: Uint8Array, kind: UserFileKind): string {
  let text: string | undefined;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    text = undefined;
  }
  const bad = text === undefined ? firstInvalidUtf8(bytes) : bytes.indexOf(0);
  if (bad < 0) return text!.charCodeAt(0) === 0xfeff ? text!.slice(1) : text!;
  const before = new TextDecoder('utf-8').decode(bytes.subarray(0, bad));
  const line = before.split('\n').length;
  const col = before.length - before.lastIndexOf('\n');
  const byte = `0x${bytes[bad]!.toString(16).padStart(2, '0')}`;
  const message = `Cannot read ${kind.what}: it is not UTF-8 text (byte ${byte})`;
  throw new LabError(`${kind.code}_NOT_TEXT`, message, [{ file, line, col, path: '', message }]);
}

/** Index of the first byte that does not start or continue a valid UTF-8 sequence. */
function firstInvalidUtf8(bytes: Uint8Array): number {
  // Bisect on prefixes: a valid prefix decodes (a sequence cut at its end is allowed with stream: true).
  let lo = 0;
  let hi = bytes.length;
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1;
    let ok = true;
    try {
      new TextDecoder('utf-8', { fatal: true }).decode(bytes.subarray(0, mid), { stream: true });
    } catch {
      ok = false;
    }
    if (ok) lo = mid;
    else hi = mid - 1;
  }
  // A sequence cut short by the bad byte started at its lead byte: point there.
  for (let j = lo - 1; j >= Math.max(0, lo - 3); j--) {
    if (bytes[j]! >= 0xc0) return j;
    if ((bytes[j]! & 0xc0) !== 0x80) break;
  }
  return lo;
}

async function yamlFilesBeside(file: string): Promise<string[]> {
  try {
    return (await readdir(dirname(file))).filter((f) => /\.ya?ml$/.test(f));
  } catch {
    return [];
  }
}

function joinDir(file: string, name: string): string {
  const dir = dirname(file);
  return dir === '.' && !file.startsWith('./') ? name : `${dir}/${name}`;
}
