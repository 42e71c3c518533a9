// Shared by the lab tests: where the fixture lab files are, read without
// depending on the working directory, and named in messages the way a user
// would name them from the repository root.

import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import process from 'node:process';
import { fileURLToPath } from 'node:url';

export const ROOT = new URL('../../', import.meta.url);

/** When set, golden files are rewritten from what the code produces (review the diff!). */
export const UPDATE = process.env.UPDATE_GOLDEN === '1';

export interface Fixture {
  name: string;
  /** as a user would pass it from the repository root; appears in messages */
  file: string;
  text: string;
}

export function fixtures(dir: string): Fixture[] {
  return yamlFiles(dir).map((f) => ({ name: f.replace(/\.yaml$/, ''), file: `${dir}/${f}`, text: readText(`${dir}/${f}`) }));
}

export function yamlFiles(dir: string): string[] {
  return readdirSync(fileURLToPath(new URL(dir, ROOT)))
    .filter((f) => f.endsWith('.yaml'))
    .sort();
}

export function readText(file: string): string {
  return readFileSync(fileURLToPath(new URL(file, ROOT)), 'utf8');
}

/** The golden text, or (with UPDATE_GOLDEN=1) `actual` written as the new golden. */
export function golden(file: string, actual: string): string {
  if (UPDATE) writeFileSync(fileURLToPath(new URL(file, ROOT)), actual);
  return readText(file);
}
