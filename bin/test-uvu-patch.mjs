// Appended to uvu's own module (dist/index.mjs) as it loads, by the loader hooks
// of bin/test-run.mjs. uvu runs a suite's hooks inside try { } finally { return },
// so an exception in a before hook (or an after.each of a failed test) is
// swallowed: the suite shows "(0 / N)" and no reason. This wraps each suite's
// hooks, in uvu's own scope, to record the reason in globalThis.LAB_HOOK_ERRORS
// before uvu drops it. An after hook's error is recorded and not rethrown: uvu
// would otherwise reject out of its finally block and stop every later file.
export const UVU_PATCH = `
;{
  const labRunner = runner;
  runner = async function (ctx, name) {
    const record = (hook, err) => (globalThis.LAB_HOOK_ERRORS ??= []).push({ suite: name, hook, error: (err && err.stack) || String(err) });
    const wrap = (hook, rethrow) => (h) => async (state) => {
      try {
        await h(state);
      } catch (err) {
        record(hook, err);
        if (rethrow) throw err;
      }
    };
    ctx.before = ctx.before.map(wrap('before', true));
    ctx.after = ctx.after.map(wrap('after', false));
    ctx.aEach = ctx.aEach.map(wrap('after.each', true));
    return labRunner(ctx, name);
  };
  globalThis.LAB_UVU_PATCHED = true;
}
`;

/** True for the module the patch belongs to. */
export const isUvuModule = (url) => /\/uvu\/dist\/index\.mjs$/.test(url);
