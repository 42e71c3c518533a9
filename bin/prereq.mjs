#!/usr/bin/env node
// Checks (and with --install, installs through apt-get) the Debian packages
// lab and its tests use on this machine. Run by `npm test` and by .ci/run.
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';

const needs = [
  { pkg: 'iproute2', has: () => ok('ip', ['-V']) },
  { pkg: 'python3', has: () => ok('python3', ['-c', 'import sys; assert sys.version_info >= (3, 7)']) },
  { pkg: 'util-linux', has: () => ok('unshare', ['--version']) },
  { pkg: 'openssh-server', has: () => existsSync('/usr/sbin/sshd') },
  { pkg: 'openssh-client', has: () => ok('ssh-keygen', ['-?'], true) },
  { pkg: 'procps', has: () => ok('ps', ['--version']) },
  // A non-root SSH user's commands go through `sudo -n` (test/run/ssh-security.test.ts).
  { pkg: 'sudo', has: () => existsSync('/usr/bin/sudo') },
  // nft: labs/conntrack.yaml turns connection tracking on in the server's namespace.
  { pkg: 'nftables', has: () => ok('nft', ['--version']) },
  // Headless browser for the tests that lay out the HTML reports (test/browser.ts).
  { pkg: 'chromium', has: () => existsSync('/usr/bin/chromium') },
];

function ok(cmd, args, anyExit = false) {
  const r = spawnSync(cmd, args, { stdio: 'ignore' });
  return !r.error && (anyExit || r.status === 0);
}

const missing = needs.filter((n) => !n.has()).map((n) => n.pkg);
if (!missing.length) process.exit(0);
if (!process.argv.includes('--install') || process.getuid?.() !== 0) {
  console.error(`missing Debian packages: ${missing.join(' ')}\ninstall them with: apt-get install -y ${missing.join(' ')}`);
  process.exit(1);
}
console.error(`installing ${missing.join(' ')} with apt-get`);
const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
execFileSync('apt-get', ['update', '-qq'], { stdio: 'inherit', env });
// policy-rc.d 101 keeps the package from starting a system-wide sshd: lab runs its own, in namespaces.
const policy = '/usr/sbin/policy-rc.d';
const hadPolicy = existsSync(policy);
if (!hadPolicy) execFileSync('sh', ['-c', `printf '#!/bin/sh\\nexit 101\\n' > ${policy} && chmod +x ${policy}`]);
try {
  execFileSync('apt-get', ['install', '-y', '-qq', '--no-install-recommends', ...missing], { stdio: 'inherit', env });
} finally {
  if (!hadPolicy) execFileSync('rm', ['-f', policy]);
}
