// The controller's own machine: the python3 that agents start with is resolved
// once and remembered between runs, because resolving it through a pyenv shim
// costs more than the rest of a local host's setup.

import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parsePythonProbe, probeLocalPython, PYTHON_PROBE, runLocal } from '../../runner/hosts/local.ts';

const dir = mkdtempSync(join(tmpdir(), 'lab-local-test-'));
test.after(() => rmSync(dir, { recursive: true, force: true }));

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
