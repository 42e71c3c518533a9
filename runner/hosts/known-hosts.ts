// OpenSSH known_hosts files: parse them, match a host's name against their
// host fields (plain, wildcard, negated, hashed) and check an offered key as
// OpenSSH does; append a key accepted as new. Pure but for the append; the SSH
// transport (ssh.ts) asks it whether to trust a host.

import { createHash, createHmac } from 'node:crypto';
import { appendFileSync, existsSync, readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { makeDirsSync } from '../files/dirs.ts';

export interface KnownHostsEntry {
  /** 1-based line in the file */
  line: number;
  marker?: '@revoked' | '@cert-authority';
  /** the host field: comma-separated patterns, or one hashed `|1|salt|hash` */
  hosts: string;
  keyType: string;
  /** base64 of the public key blob */
  key: string;
}

export type HostKeyCheck =
  | { status: 'known' }
  | { status: 'unknown' }
  | { status: 'changed'; entry: KnownHostsEntry }
  | { status: 'revoked'; entry: KnownHostsEntry };

export function parseKnownHosts(text: string): KnownHostsEntry[] {
  const entries: KnownHostsEntry[] = [];
  for (const [i, raw] of text.split('\n').entries()) {
    const fields = raw.trim().split(/\s+/);
    if (!fields[0] || fields[0].startsWith('#')) continue;
    let marker: KnownHostsEntry['marker'];
    if (fields[0] === '@revoked' || fields[0] === '@cert-authority') marker = fields.shift() as KnownHostsEntry['marker'];
    const [hosts, keyType, key] = fields;
    if (!hosts || !keyType || !key) continue;
    entries.push({ line: i + 1, marker, hosts, keyType, key });
  }
  return entries;
}

/** The entries of a known_hosts file; none when it does not exist yet. */
export async function readKnownHosts(file: string): Promise<KnownHostsEntry[]> {
  return parseKnownHosts(existsSync(file) ? await readFile(file, 'utf8') : '');
}

/** The name known_hosts files use for a host: `addr` on port 22, else `[addr]:port`. */
export function knownHostName(address: string, port: number): string {
  return port === 22 ? address : `[${address}]:${port}`;
}

function globMatches(pattern: string, name: string): boolean {
  const re = pattern.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.');
  return new RegExp(`^${re}$`, 'i').test(name);
}

/** Whether a known_hosts host field matches `name` (hashed, wildcards, `!negation`). */
export function hostFieldMatches(hosts: string, name: string): boolean {
  if (hosts.startsWith('|1|')) {
    const [, , salt, hash] = hosts.split('|');
    if (!salt || !hash) return false;
    return createHmac('sha1', Buffer.from(salt, 'base64')).update(name).digest('base64') === hash;
  }
  let matched = false;
  for (const pattern of hosts.split(',')) {
    const negated = pattern.startsWith('!');
    if (globMatches(negated ? pattern.slice(1) : pattern, name)) {
      if (negated) return false;
      matched = true;
    }
  }
  return matched;
}

/** Look a host's offered key up in known_hosts entries, as OpenSSH does. */
export function checkHostKey(entries: KnownHostsEntry[], name: string, keyType: string, key: string): HostKeyCheck {
  const forHost = entries.filter((e) => e.marker !== '@cert-authority' && hostFieldMatches(e.hosts, name));
  const revoked = forHost.find((e) => e.marker === '@revoked' && e.key === key);
  if (revoked) return { status: 'revoked', entry: revoked };
  const plain = forHost.filter((e) => !e.marker);
  if (plain.some((e) => e.keyType === keyType && e.key === key)) return { status: 'known' };
  // Another key on record for this host: same type first, as that is what it replaced.
  const previous = plain.find((e) => e.keyType === keyType) ?? plain[0];
  return previous ? { status: 'changed', entry: previous } : { status: 'unknown' };
}

/** OpenSSH's fingerprint of a public key blob: SHA256:<base64, unpadded>. */
export function fingerprint(blob: Buffer): string {
  return `SHA256:${createHash('sha256').update(blob).digest('base64').replace(/=+$/, '')}`;
}

/** The key type a public key blob names, e.g. "ssh-ed25519". */
export function keyTypeOf(blob: Buffer): string {
  const len = blob.readUInt32BE(0);
  return blob.subarray(4, 4 + len).toString('latin1');
}

/** Append a line to a known_hosts file (accept-new), creating it and its directory. */
export function appendKnownHost(file: string, line: string): void {
  makeDirsSync(dirname(file), 0o700);
  const text = existsSync(file) ? readFileSync(file, 'utf8') : '';
  appendFileSync(file, (text && !text.endsWith('\n') ? '\n' : '') + line + '\n', { mode: 0o644 });
}
