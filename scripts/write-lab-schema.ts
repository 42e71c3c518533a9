// Writes schema/lab.schema.json from runner/lab/schema.ts. Run it after
// changing the lab file format: `node --import tsx scripts/write-lab-schema.ts`
// (or `npm run schema`). A test fails while the committed file and schema.ts disagree.

import { mkdir, writeFile } from 'node:fs/promises';
import { labSchemaJson } from '../runner/lab/schema.ts';

const LAB_SCHEMA_FILE = new URL('../schema/lab.schema.json', import.meta.url);

await mkdir(new URL('.', LAB_SCHEMA_FILE), { recursive: true });
await writeFile(LAB_SCHEMA_FILE, labSchemaJson());
