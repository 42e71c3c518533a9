// Writes schema/lab.schema.json from schema.ts. Run it after changing the lab
// file format: `node --import tsx runner/lab/write-schema.ts`. A test fails
// while the committed file and schema.ts disagree.

import { mkdir, writeFile } from 'node:fs/promises';
import process from 'node:process';
import { pathToFileURL } from 'node:url';
import { labSchemaJson } from './schema.ts';

export const LAB_SCHEMA_FILE = new URL('../../schema/lab.schema.json', import.meta.url);

export async function writeLabSchema(): Promise<URL> {
  await mkdir(new URL('.', LAB_SCHEMA_FILE), { recursive: true });
  await writeFile(LAB_SCHEMA_FILE, labSchemaJson());
  return LAB_SCHEMA_FILE;
}

// Only when run as a script: importing this module (as the test does) writes nothing.
if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) await writeLabSchema();
