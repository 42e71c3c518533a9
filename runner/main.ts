// The process entry of the CLI: wires stdio, Ctrl-C and the exit code to cli.ts.

import { main } from './cli.ts';

const out = lines(process.stdout, process.stderr);
const err = lines(process.stderr, process.stdout);
const controller = new AbortController();
let interrupts = 0;
const onSignal = (sig: string) => {
  interrupts++;
  if (interrupts === 1) {
    err(`\n${sig}: stopping and restoring every host (press Ctrl-C again to leave at once)`);
    controller.abort();
  } else {
    err(`${sig}: leaving now; run "lab restore" to clean up`);
    process.exit(130);
  }
};
process.on('SIGINT', () => onSignal('SIGINT'));
process.on('SIGTERM', () => onSignal('SIGTERM'));

/**
 * Lines to a stream that stops taking them when its reader goes away
 * (`lab run … | head -1`: EPIPE): the run goes on without it, restores every
 * host, writes its reports and exits with its own code.
 */
function lines(stream: NodeJS.WriteStream, other: NodeJS.WriteStream): (s: string) => void {
  let gone = false;
  stream.on('error', (e: NodeJS.ErrnoException) => {
    gone = true;
    // A reader that left is no news; a full disk or an I/O error behind `> log` is, once.
    if (e.code === 'EPIPE' || e.code === 'ERR_STREAM_DESTROYED') return;
    try {
      other.write(`lab: cannot write to ${stream === process.stdout ? 'stdout' : 'stderr'} any more: ${e.message}; the run goes on\n`);
    } catch {
      // both streams gone: the run still restores and writes its reports
    }
  });
  return (s) => {
    if (gone) return;
    try {
      stream.write(s + '\n');
    } catch {
      gone = true;
    }
  };
}

const code = await main(process.argv.slice(2), {
  out,
  err,
  isTTY: !!process.stderr.isTTY,
  signal: controller.signal,
});
process.exitCode = code;
// Lingering handles (an SSH keepalive, a stray timer) must not keep the CLI alive.
setTimeout(() => process.exit(process.exitCode as number), 200).unref();
