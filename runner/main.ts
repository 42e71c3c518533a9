// The process entry of the CLI: wires stdio, Ctrl-C and the exit code to cli.ts.

import { main } from './cli.ts';

const controller = new AbortController();
let interrupts = 0;
const onSignal = (sig: string) => {
  interrupts++;
  if (interrupts === 1) {
    process.stderr.write(`\n${sig}: stopping and restoring every host (press Ctrl-C again to leave at once)\n`);
    controller.abort();
  } else {
    process.stderr.write(`${sig}: leaving now; run "lab restore" to clean up\n`);
    process.exit(130);
  }
};
process.on('SIGINT', () => onSignal('SIGINT'));
process.on('SIGTERM', () => onSignal('SIGTERM'));

const code = await main(process.argv.slice(2), {
  out: (s) => process.stdout.write(s + '\n'),
  err: (s) => process.stderr.write(s + '\n'),
  isTTY: !!process.stderr.isTTY,
  signal: controller.signal,
});
process.exitCode = code;
// Lingering handles (an SSH keepalive, a stray timer) must not keep the CLI alive.
setTimeout(() => process.exit(process.exitCode as number), 200).unref();
