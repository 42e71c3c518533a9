// Every shipped lab (labs/*.yaml) on local namespace hosts through the real CLI:
// it exits 0, every prediction holds, and the run leaves nothing behind.
// (test/run/ssh.test.ts runs the same labs over SSH.)

import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { machineState, ROOT, runLeftovers, runShippedLab } from '../helpers.ts';

const out = mkdtempSync(join(tmpdir(), 'lab-labs-test-'));
test.after(() => rmSync(out, { recursive: true, force: true }));

const shippedLabs = readdirSync(join(ROOT, 'labs')).filter((f) => f.endsWith('.yaml')).sort();

test('there are shipped labs to run', () => {
  assert.ok(shippedLabs.length >= 5, `labs/*.yaml: ${shippedLabs.join(', ')}`);
});

for (const lab of shippedLabs) {
  test(`labs/${lab} passes on local hosts and leaves nothing behind`, async () => {
    const before = await machineState();
    const dir = join(out, lab.replace(/\.yaml$/, ''));
    const { run: r, results } = await runShippedLab(lab, [], dir);
    assert.is(r.code, 0, r.stderr + r.stdout);
    const result = results[results.length - 1]!;
    assert.is(result.verdict, 'pass');
    assert.ok(result.hosts.length > 0 && result.hosts.every((h) => h.transport === 'netns'), 'local namespace hosts');
    assert.ok(result.predictions.length > 0, 'the lab states predictions');
    for (const p of result.predictions) {
      assert.is(p.verdict, 'pass', `${p.metric}: predicted ${p.predicted}, observed ${p.observed} (${p.derivation})`);
    }
    // Below SILENT_RELEASE_MIN connections a release tells the peer: RST, or FIN for a graceful lab.
    for (const st of result.steps.filter((x) => x.kind === 'release')) {
      assert.is(st.labels.close, /^release: graceful$/m.test(result.lab.source) ? 'fin' : 'rst', `${lab}: ${st.name}`);
    }
    assert.ok(result.restore.ok, result.restore.problems.join('\n'));
    // The run's namespaces are lab-<id>-<role> (and lab-<id>-sw beyond two hosts): none may be left, nor its agents.
    const after = await machineState();
    for (const each of results) {
      const id = each.hosts[0]!.target.split('-')[1]!;
      assert.equal(runLeftovers(id), [], `labs/${lab}: left behind`);
    }
    assert.is(after.portRange, before.portRange, `labs/${lab}: root namespace port range changed`);
  });
}

test.run();
