// Imports point down the pipeline, never back up: cli → run → provision →
// agent → hosts/models → report/lab → files (the floor) → result/errors. A
// folder may import its own modules and any later layer's; nothing else.

import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { test } from 'uvu';
import * as assert from 'uvu/assert';

const RUNNER = fileURLToPath(new URL('../runner/', import.meta.url));

/** The layer of each place in runner/, top first; modules in one layer do not import each other's folders. */
const LAYERS: string[][] = [
  ['main.ts'],
  ['cli.ts'],
  ['run'],
  ['provision'],
  ['agent'],
  ['hosts', 'models'],
  ['report', 'lab'],
  ['files'],
  ['result.ts', 'errors.ts'],
];

function placeOf(file: string): string {
  return relative(RUNNER, file).split('/')[0]!;
}

function layerOf(place: string): number {
  const i = LAYERS.findIndex((l) => l.includes(place));
  if (i < 0) throw new Error(`runner/${place} is in no layer: add it to LAYERS`);
  return i;
}

function sources(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? sources(join(dir, e.name)) : e.name.endsWith('.ts') ? [join(dir, e.name)] : [],
  );
}

test('no import in runner/ runs back up the pipeline or across a layer', () => {
  const wrong: string[] = [];
  for (const file of sources(RUNNER)) {
    const text = readFileSync(file, 'utf8');
    for (const m of text.matchAll(/^(?:import|export)[^'"]*from '(\.[^']+)'/gm)) {
      const target = join(dirname(file), m[1]!);
      const from = placeOf(file);
      const to = placeOf(target);
      if (from === to) continue;
      if (layerOf(to) <= layerOf(from)) wrong.push(`runner/${relative(RUNNER, file)} imports ${m[1]}`);
    }
  }
  assert.equal(wrong, []);
});

test('no module under runner/hosts/ imports from runner/lab/', () => {
  const wrong = sources(join(RUNNER, 'hosts')).filter((f) => /from '\.\.\/lab\//.test(readFileSync(f, 'utf8')));
  assert.equal(wrong, []);
});

test.run();
