// The side-by-side report of `lab run --each`: a column per host, and the
// rows where the hosts differ (a narrower port range, its predictions) marked.

import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { readFileSync } from 'node:fs';
import { eachView, renderEachHtml, renderEachMarkdown } from '../../runner/report/each.ts';
import { EACH_FORMAT, type EachResult, type RunResult } from '../../runner/result.ts';
import { ROOT } from '../helpers.ts';

const pass = JSON.parse(readFileSync(`${ROOT}test/fixtures/results/pass.result.json`, 'utf8')) as RunResult;

/** The pass run as it would be on a host whose range ends at `high`. */
function on(name: string, high: number): { host: string; result: RunResult } {
  const r = structuredClone(pass);
  const client = r.hosts.find((h) => h.role === 'client')!;
  client.name = name;
  client.facts.portRange = [40000, high];
  r.lab.vars = { ...r.lab.vars, high: String(high) };
  const ports = high - 40000 + 1;
  for (const p of r.predictions) if (typeof p.predicted === 'number') (p.predicted = ports), (p.observed = ports);
  return { host: name, result: r };
}

const each: EachResult = {
  format: EACH_FORMAT,
  lab: { name: 'port-exhaustion', file: 'labs/port-exhaustion.yaml' },
  inventory: 'inventory.ini',
  group: 'client',
  role: 'client',
  startedAt: '2026-12-01T00:00:00.000Z',
  durationMs: 4000,
  runs: [on('client-1', 40999), on('client-2', 40999), on('client-3', 40499)],
  verdict: 'pass',
};

test('eachView() has a column per host and marks exactly the rows where the hosts differ', () => {
  const view = eachView(each);
  assert.equal(view.hosts, ['client-1', 'client-2', 'client-3']);
  const rows = view.sections.flatMap((s) => s.rows);
  const range = rows.find((r) => r.label === 'net.ipv4.ip_local_port_range')!;
  assert.equal(range.cells, ['40000–40999 (1000 ports)', '40000–40999 (1000 ports)', '40000–40499 (500 ports)']);
  assert.ok(range.differs);
  assert.equal(rows.filter((r) => r.differs).map((r) => r.label), [
    'net.ipv4.ip_local_port_range',
    'var high',
    'ramp.established predicted',
    'ramp.established observed',
  ]);
  assert.not.ok(rows.find((r) => r.label === 'kernel')!.differs);
});

test('renderEachMarkdown() and renderEachHtml() show the differing rows highlighted', () => {
  const md = renderEachMarkdown(each);
  assert.match(md, '| | client-1 | client-2 | client-3 |');
  assert.match(md, '| ≠ net.ipv4.ip_local_port_range | **40000–40999 (1000 ports)** | **40000–40999 (1000 ports)** | **40000–40499 (500 ports)** |');
  assert.match(md, '| ≠ ramp.established predicted | **1000** | **1000** | **500** |');
  const html = renderEachHtml(each);
  assert.match(html, '<tr class="differs"><th>≠ ramp.established observed</th><td>1000</td><td>1000</td><td>500</td></tr>');
  assert.not.match(html, '<script');
});

test.run();
