// shellQuote(): exact output for the common cases, and a round trip through a
// real POSIX shell for the nasty ones.

import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { execFileSync } from 'node:child_process';
import { shellQuote } from '../../runner/files/quote.ts';

/** What /bin/sh makes of the quoted command line: the words printf receives. */
function throughShell(argv: string[]): string[] {
  const out = execFileSync('/bin/sh', ['-c', shellQuote(['printf', '%s\\0', ...argv])], { encoding: 'utf8' });
  return out.split('\0').slice(0, -1);
}

test('shellQuote() leaves plain words bare', () => {
  assert.is(shellQuote(['ls', '-la', '/tmp/x.txt']), 'ls -la /tmp/x.txt');
  assert.is(shellQuote(['sysctl', '-w', 'net.ipv4.ip_local_port_range=40000', 'user@host:22', '+5%', 'a,b']), 'sysctl -w net.ipv4.ip_local_port_range=40000 user@host:22 +5% a,b');
});

test('shellQuote() single-quotes spaces, quotes and shell metacharacters', () => {
  assert.is(shellQuote(['echo', 'two words']), "echo 'two words'");
  assert.is(shellQuote(['echo', "it's"]), `echo 'it'\\''s'`);
  assert.is(shellQuote(['echo', '$HOME', '`id`', '$(id)', 'a;b', 'a|b', 'a&b', '*', '~', '#x', 'a"b', 'a\\b']), `echo '$HOME' '\`id\`' '$(id)' 'a;b' 'a|b' 'a&b' '*' '~' '#x' 'a"b' 'a\\b'`);
  assert.is(shellQuote(['printf', 'a\nb']), "printf 'a\nb'");
});

test('shellQuote() quotes an empty argument as two quotes', () => {
  assert.is(shellQuote(['test', '-n', '']), "test -n ''");
});

test('shellQuote() quotes a first word with "=", which the shell would take for an assignment', () => {
  assert.is(shellQuote(['A=b', 'c=d']), "'A=b' c=d");
});

test('shellQuote() round-trips every argument through /bin/sh unchanged', () => {
  const nasty = [
    '',
    ' ',
    "'",
    "''",
    '"',
    '\\',
    '\\\'',
    '$(touch /tmp/lab-quote-pwned)',
    '`touch /tmp/lab-quote-pwned`',
    '${HOME}',
    '*',
    '?',
    '[a-z]',
    '~root',
    'a\nb\n',
    '\t',
    '-n',
    '--',
    '!',
    'ünïcødé ✓',
    "it's a \"test\" with $var and `cmd`",
    '{a,b}',
    'a=b',
    '#comment',
    ';|&<>()',
  ];
  assert.equal(throughShell(nasty), nasty);
});

test('shellQuote() throws on an empty argv and on a NUL byte', () => {
  assert.throws(() => shellQuote([]), /Cannot quote an empty argv/);
  assert.throws(() => shellQuote(['echo', 'a\0b']), /Cannot quote an argument with a NUL byte: "a\\u0000b"/);
});

test.run();
