// One error class per layer, each with a stable code, so the CLI can map a
// failure to an exit code and a user can search for the code.

/** A source position in a file the user wrote (1-based line and column). */
export interface SourcePos {
  file: string;
  line: number;
  col: number;
}

export interface LabProblem extends SourcePos {
  /** dotted path in the document, e.g. "hosts.client.sysctls" */
  path: string;
  message: string;
}

export function formatProblem(p: LabProblem): string {
  return `${p.file}:${p.line}:${p.col}: ${p.path ? p.path + ': ' : ''}${p.message}`;
}

abstract class LabBaseError extends Error {
  abstract readonly code: string;
  /** the exit code the CLI uses for this layer */
  abstract readonly exitCode: number;
}

/** The lab file, an inventory or the arguments are wrong: nothing was touched. Exit 2. */
export class LabError extends LabBaseError {
  readonly code: string;
  readonly exitCode = 2;
  readonly problems: LabProblem[];
  constructor(code: string, message: string, problems: LabProblem[] = []) {
    super(problems.length ? problems.map(formatProblem).join('\n') : message);
    this.name = 'LabError';
    this.code = code;
    this.problems = problems;
  }
}

/** A host or the environment failed: no root, no `ip`, no python3, SSH refused… Exit 3. */
export class HostError extends LabBaseError {
  readonly code: string;
  readonly exitCode = 3;
  readonly host?: string;
  constructor(code: string, message: string, host?: string, options?: { cause?: unknown }) {
    super(host ? `${host}: ${message}` : message, options);
    this.name = 'HostError';
    this.code = code;
    this.host = host;
  }
}

/** The agent answered a request with an error, or broke the protocol. Exit 3. */
export class AgentError extends LabBaseError {
  readonly code: string;
  readonly exitCode = 3;
  readonly host: string;
  constructor(code: string, message: string, host: string) {
    super(`${host}: agent: ${message}`);
    this.name = 'AgentError';
    this.code = code;
    this.host = host;
  }
}

/** A bug in lab itself. Exit 3, with the stack. */
export class InternalError extends LabBaseError {
  readonly code = 'INTERNAL';
  readonly exitCode = 3;
  constructor(message: string) {
    super(message);
    this.name = 'InternalError';
  }
}

export type AnyLabError = LabError | HostError | AgentError | InternalError;

export function isLabFailure(e: unknown): e is AnyLabError {
  return e instanceof LabBaseError;
}

/** A run the user interrupted (Ctrl-C: INTERRUPTED, exit 130) or that ran out of its lab's time (TIMEOUT, exit 3). */
export class Interrupted extends Error {
  constructor(
    reason: string,
    readonly code: 'INTERRUPTED' | 'TIMEOUT' = 'INTERRUPTED',
  ) {
    super(reason);
    this.name = 'Interrupted';
  }
}
