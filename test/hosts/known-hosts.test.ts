// known_hosts as OpenSSH reads it: [host]:port names, wildcards, negations,
// hashed names, @revoked and @cert-authority, and fingerprints as ssh-keygen
// prints them. Keys come from the real ssh-keygen.

import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { checkHostKey, fingerprint, hostFieldMatches, keyTypeOf, knownHostName, parseKnownHosts } from '../../runner/hosts/known-hosts.ts';

const work = mkdtempSync(join(tmpdir(), 'lab-known-hosts-'));
test.after(() => rmSync(work, { recursive: true, force: true }));

/** A fresh ed25519 key: its base64 blob and the fingerprint ssh-keygen prints for it. */
function newKey(name: string): { key: string; fingerprint: string } {
  const file = join(work, name);
  execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', file]);
  const key = readFileSync(`${file}.pub`, 'utf8').split(/\s+/)[1]!;
  return { key, fingerprint: execFileSync('ssh-keygen', ['-lf', `${file}.pub`], { encoding: 'utf8' }).split(' ')[1]! };
}

const alpha = newKey('alpha');
const beta = newKey('beta');

test('checkHostKey() matches [host]:port names, wildcards, negations and @revoked', () => {
  const key = alpha.key;
  const entries = parseKnownHosts(
    [
      `[198.19.0.1]:2222 ssh-ed25519 ${key}`,
      `198.19.9.*,!198.19.9.9 ssh-ed25519 ${key}`,
      `@revoked 198.19.7.7 ssh-ed25519 ${key}`,
      `198.19.7.7 ssh-ed25519 ${key}`,
      `@cert-authority 198.19.8.8 ssh-ed25519 ${key}`,
      `198.19.6.6 ssh-ed25519 ${beta.key}`,
    ].join('\n'),
  );
  assert.equal(checkHostKey(entries, '[198.19.0.1]:2222', 'ssh-ed25519', key), { status: 'known' });
  assert.equal(checkHostKey(entries, '198.19.0.1', 'ssh-ed25519', key), { status: 'unknown' });
  assert.equal(checkHostKey(entries, '198.19.9.1', 'ssh-ed25519', key), { status: 'known' });
  assert.equal(checkHostKey(entries, '198.19.9.9', 'ssh-ed25519', key), { status: 'unknown' });
  assert.is(checkHostKey(entries, '198.19.7.7', 'ssh-ed25519', key).status, 'revoked');
  assert.equal(checkHostKey(entries, '198.19.8.8', 'ssh-ed25519', key), { status: 'unknown' });
  assert.equal(checkHostKey(entries, '198.19.6.6', 'ssh-ed25519', key), { status: 'changed', entry: entries[5]! });
});

test('hostFieldMatches() matches a name hashed by ssh-keygen -H, and no other', () => {
  const file = join(work, 'hashed');
  writeFileSync(file, `${knownHostName('198.19.0.3', 2222)} ssh-ed25519 ${alpha.key}\n`);
  execFileSync('ssh-keygen', ['-q', '-H', '-f', file], { stdio: 'ignore' });
  const [entry] = parseKnownHosts(readFileSync(file, 'utf8'));
  assert.match(entry!.hosts, /^\|1\|/);
  assert.ok(hostFieldMatches(entry!.hosts, '[198.19.0.3]:2222'));
  assert.not.ok(hostFieldMatches(entry!.hosts, '198.19.0.3'));
});

test('fingerprint() and keyTypeOf() read a key blob as ssh-keygen does', () => {
  const blob = Buffer.from(alpha.key, 'base64');
  assert.is(fingerprint(blob), alpha.fingerprint);
  assert.is(keyTypeOf(blob), 'ssh-ed25519');
});

test('parseKnownHosts() skips comments, blank and short lines, keeping 1-based line numbers', () => {
  const entries = parseKnownHosts(`# comment\n\nbroken-line\n198.19.0.1 ssh-ed25519 ${alpha.key}\n`);
  assert.equal(entries, [{ line: 4, marker: undefined, hosts: '198.19.0.1', keyType: 'ssh-ed25519', key: alpha.key }]);
});

test.run();
