// Node loader hooks for bin/test-run.mjs: patch uvu as it loads (see test-uvu-patch.mjs).
import { isUvuModule, UVU_PATCH } from './test-uvu-patch.mjs';

export async function load(url, context, nextLoad) {
  const r = await nextLoad(url, context);
  if (!isUvuModule(url) || r.source === undefined) return r;
  return { ...r, source: String(r.source) + UVU_PATCH };
}
