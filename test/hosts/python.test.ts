// The one place that decides whether a host's python3 can run the agent; and
// this machine's python3, resolved once and remembered between runs, because
// resolving it through a pyenv shim costs more than the rest of a local host's setup.

import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { HostError } from '../../runner/errors.ts';
import { runLocal } from '../../runner/hosts/local.ts';
import { parsePythonProbe, probeLocalPython, PYTHON_PROBE, requirePython } from '../../runner/hosts/python.ts';

const dir = mkdtempSync(join(tmpdir(), 'lab-local-test-'));
test.after(() => rmSync(dir, { recursive: true, force: true }));

const thrown = (f: () => unknown): HostError => {
  try {
    f();
  } catch (e) {
    return e as HostError;
  }
  throw new Error('did not throw');
};

test('parsePythonProbe() reads the interpreter and its version; a failed probe is no python', () => {
  assert.equal(parsePythonProbe({ code: 0, signal: null, stdout: '/usr/bin/python3.11\n3.11\n', stderr: '' }), { executable: '/usr/bin/python3.11', version: [3, 11] });
  assert.is(parsePythonProbe({ code: 127, signal: null, stdout: '', stderr: 'sh: python3: not found' }), undefined);
  assert.is(parsePythonProbe({ code: 0, signal: null, stdout: 'garbage\n', stderr: '' }), undefined);
});

test('requirePython() says what to install when there is no python3', () => {
  const e = thrown(() => requirePython(undefined, 'client'));
  assert.instance(e, HostError);
  assert.is(e.code, 'HOST_NO_PYTHON');
  assert.is(e.message, 'client: Cannot run "python3", which the probe agent needs: install it (Debian/Ubuntu: apt-get install python3; RHEL: dnf install python3)');
});

test('requirePython() refuses a python3 older than 3.7 and takes 3.7 and 4.0', () => {
  const e = thrown(() => requirePython({ executable: '/usr/bin/python3', version: [3, 6] }, 'client'));
  assert.is(e.code, 'HOST_OLD_PYTHON');
  assert.is(e.message, 'client: python3 is 3.6: the probe agent needs 3.7 or newer');
  assert.is(thrown(() => requirePython({ executable: 'python', version: [2, 7] })).code, 'HOST_OLD_PYTHON');
  assert.equal(requirePython({ executable: 'p', version: [3, 7] }).version, [3, 7]);
  assert.equal(requirePython({ executable: 'p', version: [4, 0] }).version, [4, 0]);
});

test('probeLocalPython() probes python3 once, then answers from its cache while the interpreter is unchanged', async () => {
  const cache = join(dir, 'python3.json');
  const real = parsePythonProbe(await runLocal(PYTHON_PROBE))!;
  assert.equal(await probeLocalPython(cache), real);
  const saved = JSON.parse(readFileSync(cache, 'utf8'));
  const [key] = Object.keys(saved);
  assert.equal(saved[key!].info, real);
  const entry = (patch: object) => writeFileSync(cache, JSON.stringify({ [key!]: { ...saved[key!], info: { ...real, version: [3, 99] }, ...patch } }));
  // A version the probe could not have found shows the answer comes from the cache.
  entry({});
  assert.equal((await probeLocalPython(cache))!.version, [3, 99]);
  // The interpreter file changed (reinstalled, upgraded): probed again.
  entry({ mtimeMs: statSync(real.executable).mtimeMs - 1 });
  assert.equal(await probeLocalPython(cache), real);
  // Another PATH or directory may find another python3: its own entry, and the others stay.
  writeFileSync(cache, JSON.stringify({ '["/elsewhere","",""]': { ...saved[key!], info: { ...real, version: [3, 98] } } }));
  assert.equal(await probeLocalPython(cache), real);
  const both = JSON.parse(readFileSync(cache, 'utf8'));
  assert.equal(Object.keys(both).sort(), ['["/elsewhere","",""]', key!].sort());
});

test.run();
