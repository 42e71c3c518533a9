#!/usr/bin/env node
// The `lab` command on Node: TypeScript is loaded through tsx. Bun and Deno run
// runner/main.ts directly (bun runner/main.ts, deno run -A runner/main.ts).
import { register } from 'tsx/esm/api';

register();
await import('../runner/main.ts');
