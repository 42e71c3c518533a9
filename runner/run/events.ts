// Everything a run reports while it works, as one union keyed on `kind`.
// The CLI formats these; nothing in run/ prints.

import type { StepObservation } from '../result.ts';

export type RunEvent =
  | { kind: 'stage'; stage: string; status: 'start' | 'end'; ms?: number }
  | { kind: 'host-up'; role: string; target: string; address: string; kernel: string }
  | { kind: 'provisioned'; role: string; changes: number }
  | { kind: 'step-start'; name: string; stepKind: string; host: string }
  | {
      kind: 'progress';
      step: string;
      host: string;
      value: number;
      of: number;
      elapsedMs: number;
      /** connect: attempts that failed so far; the host's slab memory (KiB), when the agent reports them */
      failed?: number;
      slabKiB?: number;
    }
  | { kind: 'step-end'; observation: StepObservation }
  /** `replayed`: the host's agent was lost, and a fresh one undid its journal */
  | { kind: 'restored'; role: string; ok: boolean; problems: string[]; replayed?: boolean; /** never reached: nothing was changed, nothing to restore */ untouched?: boolean };

export type RunEventHandler = (event: RunEvent) => void;
