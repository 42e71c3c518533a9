// The one place that decides whether a host's python3 can run the agent.

import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { HostError } from '../../runner/errors.ts';
import { parsePythonProbe, requirePython } from '../../runner/hosts/python.ts';

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

test.run();
