// The agent as one artifact: runner/agent/__main__.py and the lab_agent
// package in a zip that `python3 agent-<hash>.pyz` runs directly (a zipapp,
// see Python's zipapp module). Built here rather than with `python3 -m zipapp`
// so the controller needs no Python and builds it the same way on Node, Bun and
// Deno. Deterministic: entries sorted, stored (not deflated), every timestamp
// 1980-01-01 00:00, so the same sources always give the same bytes and hash,
// and a host that has the file under that hash never gets it again.

import { createHash } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

export interface ZipEntry {
  /** path inside the zip, with "/" separators */
  name: string;
  data: Uint8Array;
}

const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

/** CRC-32 (IEEE 802.3), as zip stores it. */
export function crc32(data: Uint8Array): number {
  let c = 0xffffffff;
  for (let i = 0; i < data.length; i++) c = CRC_TABLE[(c ^ data[i]!) & 0xff]! ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

// MS-DOS date and time of 1980-01-01 00:00:00, the earliest a zip can say.
const DOS_DATE = (0 << 9) | (1 << 5) | 1;
const DOS_TIME = 0;
// "Made by" Unix (3), spec 2.0, so the external attributes carry a file mode.
const MADE_BY = (3 << 8) | 20;
const NEEDED = 20;
const FILE_MODE = 0o100644;

/** A zip of stored entries, sorted by name: the same entries give the same bytes. */
export function buildZip(entries: ZipEntry[]): Uint8Array {
  const sorted = [...entries].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  for (let i = 1; i < sorted.length; i++) {
    if (sorted[i]!.name === sorted[i - 1]!.name) throw new Error(`zip: duplicate entry "${sorted[i]!.name}"`);
  }
  const encoder = new TextEncoder();
  const locals: Uint8Array[] = [];
  const centrals: Uint8Array[] = [];
  let offset = 0;
  for (const e of sorted) {
    const name = encoder.encode(e.name);
    const crc = crc32(e.data);
    const local = new Uint8Array(30 + name.length);
    const lv = new DataView(local.buffer);
    lv.setUint32(0, 0x04034b50, true);
    lv.setUint16(4, NEEDED, true);
    lv.setUint16(6, 0, true); // flags
    lv.setUint16(8, 0, true); // stored
    lv.setUint16(10, DOS_TIME, true);
    lv.setUint16(12, DOS_DATE, true);
    lv.setUint32(14, crc, true);
    lv.setUint32(18, e.data.length, true);
    lv.setUint32(22, e.data.length, true);
    lv.setUint16(26, name.length, true);
    lv.setUint16(28, 0, true); // no extra field
    local.set(name, 30);

    const central = new Uint8Array(46 + name.length);
    const cv = new DataView(central.buffer);
    cv.setUint32(0, 0x02014b50, true);
    cv.setUint16(4, MADE_BY, true);
    cv.setUint16(6, NEEDED, true);
    cv.setUint16(8, 0, true);
    cv.setUint16(10, 0, true);
    cv.setUint16(12, DOS_TIME, true);
    cv.setUint16(14, DOS_DATE, true);
    cv.setUint32(16, crc, true);
    cv.setUint32(20, e.data.length, true);
    cv.setUint32(24, e.data.length, true);
    cv.setUint16(28, name.length, true);
    // extra, comment, disk number, internal attributes: all 0
    cv.setUint32(38, (FILE_MODE << 16) >>> 0, true);
    cv.setUint32(42, offset, true);
    central.set(name, 46);

    locals.push(local, e.data);
    centrals.push(central);
    offset += local.length + e.data.length;
  }
  const centralSize = centrals.reduce((n, c) => n + c.length, 0);
  const end = new Uint8Array(22);
  const ev = new DataView(end.buffer);
  ev.setUint32(0, 0x06054b50, true);
  ev.setUint16(8, sorted.length, true);
  ev.setUint16(10, sorted.length, true);
  ev.setUint32(12, centralSize, true);
  ev.setUint32(16, offset, true);
  const out = new Uint8Array(offset + centralSize + end.length);
  let at = 0;
  for (const part of [...locals, ...centrals, end]) {
    out.set(part, at);
    at += part.length;
  }
  return out;
}

/** A file a host runs, named by its content so it is put there once. */
export interface Artifact {
  /** file name, e.g. agent-0123456789abcdef.pyz */
  name: string;
  /** the first 16 hex digits of its SHA-256 */
  hash: string;
  bytes: Uint8Array;
}

/** The folder that holds __main__.py and the lab_agent package. */
export const AGENT_SOURCE_DIR = fileURLToPath(new URL('./', import.meta.url));

/** The agent's Python files (and the C source of its connect/accept helper), as zip entries relative to AGENT_SOURCE_DIR. */
export function agentEntries(dir = AGENT_SOURCE_DIR): ZipEntry[] {
  const entries: ZipEntry[] = [{ name: '__main__.py', data: readFileSync(`${dir}/__main__.py`) }];
  const walk = (rel: string) => {
    for (const d of readdirSync(`${dir}/${rel}`, { withFileTypes: true })) {
      const path = `${rel}/${d.name}`;
      if (d.isDirectory()) {
        if (d.name !== '__pycache__') walk(path);
      } else if (d.name.endsWith('.py') || d.name.endsWith('.c')) {
        entries.push({ name: path, data: readFileSync(`${dir}/${path}`) });
      }
    }
  };
  walk('lab_agent');
  return entries;
}

let cached: Artifact | undefined;

/** The agent zipapp, built once per controller process. */
export function agentArtifact(): Artifact {
  if (!cached) {
    const bytes = buildZip(agentEntries());
    const hash = createHash('sha256').update(bytes).digest('hex').slice(0, 16);
    cached = { name: `agent-${hash}.pyz`, hash, bytes };
  }
  return cached;
}
