// Machine-wide ceilings a lab observes directly: the fd ceilings (fs.nr_open,
// fs.file-max). Pure functions of a step's settings and the host's facts.

import type { ModelContext, ModelOutput } from './connections.ts';
import { ModelNotApplicable } from './connections.ts';

/**
 * `fd-ceilings`, of a `files` step.
 *
 * nr_open: setrlimit(RLIMIT_NOFILE) refuses a hard limit above fs.nr_open with
 * EPERM, root included. Raising the hard limit at all also needs
 * CAP_SYS_RESOURCE: without it the ceiling is the lower of the current hard
 * limit and fs.nr_open (EPERM either way).
 *
 * file-max: a process without CAP_SYS_ADMIN cannot get a struct file once the
 * kernel holds fs.file-max of them (ENFILE, "Too many open files in system").
 * The step sets fs.file-max to the files in use plus `count`, so an
 * unprivileged process opens `count` files and then gets ENFILE.
 */
export function fdCeilings(ctx: ModelContext): ModelOutput {
  const step = ctx.step;
  if (step.kind !== 'files') throw new ModelNotApplicable(`Model "fd-ceilings" applies to files steps, not "${step.kind}"`);
  const facts = ctx.facts[step.host];
  if (!facts) throw new ModelNotApplicable(`No facts for host "${step.host}"`);
  if (step.ceiling === 'nr_open') {
    if (ctx.metric === 'firstError') {
      return {
        value: 'EPERM',
        derivation: 'setrlimit(RLIMIT_NOFILE) one above the ceiling: EPERM (above fs.nr_open, or raising the hard limit without CAP_SYS_RESOURCE)',
        explanation: 'The kernel refuses a nofile hard limit above fs.nr_open with EPERM, even for root.',
      };
    }
    const nrOpen = step.nrOpen ?? facts.nrOpen;
    const nrOpenText = step.nrOpen === undefined ? `fs.nr_open ${nrOpen} (the host's)` : `fs.nr_open ${nrOpen} (set by the step; the host's is ${facts.nrOpen})`;
    if (facts.canRaiseHardNofile) {
      return {
        value: nrOpen,
        derivation: `${nrOpenText}; the agent may raise its hard limit (CAP_SYS_RESOURCE), so fs.nr_open alone bounds it: ${nrOpen}`,
        explanation: 'ulimit -n can go no higher than fs.nr_open: setrlimit(RLIMIT_NOFILE) above it fails with EPERM.',
      };
    }
    const value = Math.min(nrOpen, facts.nofileHard);
    return {
      value,
      derivation:
        `min(${nrOpenText}, hard limit ${facts.nofileHard}: no CAP_SYS_RESOURCE to raise it) = ${value}` +
        (value === nrOpen ? ': fs.nr_open binds' : ': the hard limit binds, fs.nr_open is above it'),
      explanation:
        'ulimit -n can go no higher than fs.nr_open (setrlimit fails with EPERM above it), nor, without CAP_SYS_RESOURCE, above the hard limit it has.',
    };
  }
  const count = step.count!;
  if (ctx.metric === 'firstError') {
    return {
      value: 'ENFILE',
      derivation: `fs.file-max is set to the files in use plus ${count}: the next open() of an unprivileged process fails with ENFILE`,
      explanation: 'Once the kernel holds fs.file-max files, open() fails with ENFILE for every process without CAP_SYS_ADMIN.',
    };
  }
  if (ctx.metric === 'headroom') {
    return {
      value: count,
      derivation: `fs.file-max = fs.file-nr (files allocated, read as the probe starts) + ${count}: the kernel lets the machine add ${count} files, then refuses the unprivileged probe`,
      explanation:
        'fs.file-max counts struct files kernel-wide; at ENFILE the files in use equal it, whoever opened them (root, exempt, may go past it).',
    };
  }
  return {
    value: count,
    derivation: `fs.file-max = fs.file-nr (files allocated, read as the probe starts) + ${count}: the unprivileged probe opens ${count} files before ENFILE, less what other processes open meanwhile`,
    explanation:
      'fs.file-max counts struct files kernel-wide: the probe gets the headroom between what is in use and the limit, less what other processes open meanwhile.',
  };
}
