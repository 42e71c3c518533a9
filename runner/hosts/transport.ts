// The one contract through which lab talks to a host, whether a local network
// namespace or a machine over SSH (Ansible's connection plugins, in small).
// Everything host-specific (how to run a command, how a file gets there) lives
// behind it; the agent client and provisioning only ever see this interface.

import type { Readable, Writable } from 'node:stream';
import type { PythonInfo } from './python.ts';

export interface ExecResult {
  code: number | null;
  signal: string | null;
  stdout: string;
  stderr: string;
}

export interface ExecOptions {
  /** text written to the command's stdin, which is then closed */
  input?: string;
  /** kill the command after this many ms (default: the transport's command timeout) */
  timeoutMs?: number;
}

/** A long-running process on the host (the agent), with its standard streams. */
export interface HostProcess {
  stdin: Writable;
  stdout: Readable;
  stderr: Readable;
  /** resolves when the process has exited (or its channel closed) */
  exited: Promise<{ code: number | null; signal: string | null }>;
  /** ask the process to stop (close stdin, then signal) */
  kill(): void;
}

/** A file a host runs, named by its content (the agent zipapp: runner/agent/zipapp.ts). */
export interface Artifact {
  /** file name, unique to the content, e.g. agent-0123456789abcdef.pyz */
  name: string;
  /** the first 16 hex digits of the content's SHA-256 */
  hash: string;
  bytes: Uint8Array;
}

export interface TransportCapabilities {
  /** the host is a namespace lab created: global sysctls (fs.*) are the controller machine's */
  localNamespace: boolean;
  /** commands must be wrapped in sudo to act as root */
  needsSudo: boolean;
}

export interface Transport {
  /** the lab role this host plays, for error messages */
  readonly role: string;
  /** 'netns' or 'ssh' */
  readonly kind: 'netns' | 'ssh';
  /** human-readable location: namespace name, or user@host:port */
  readonly target: string;
  readonly capabilities: TransportCapabilities;

  /** open the connection (a no-op for namespaces); throws HostError with the cause */
  connect(): Promise<void>;
  /** run one command (argv, quoted by the transport) to completion */
  exec(argv: string[], options?: ExecOptions): Promise<ExecResult>;
  /** start a long-running command (argv) with piped stdio */
  spawn(argv: string[]): Promise<HostProcess>;
  /** write a file on the host (creating parent directories), with a mode */
  putFile(path: string, content: string | Uint8Array, mode?: number): Promise<void>;
  /**
   * Make an artifact available on the host, written only when that content is
   * not there yet (runner/hosts/artifact.ts); returns the path to run it from.
   */
  install(artifact: Artifact): Promise<string>;
  /**
   * The python3 that runs the agent, resolved once per transport and checked
   * (3.7+): a HostError HOST_NO_PYTHON or HOST_OLD_PYTHON says what to install.
   */
  python(): Promise<PythonInfo>;
  /**
   * Start an artifact already on the host with its python3 (the arguments
   * pythonArgs gives for the artifact's path) in one command
   * (a host reached over SSH pays a round trip and a login shell per
   * command): the command checks the file is there and runs it, and ends
   * before the program starts when the file or the interpreter is missing.
   * AgentClient.start() then takes the long way: python() and install()
   * (which name what is missing), and spawn().
   */
  spawnInstalled?(artifact: Artifact, pythonArgs: (path: string) => string[]): Promise<HostProcess>;
  /** release the connection; idempotent */
  close(): Promise<void>;
}
