// The controller's side of the probe agent: starts agent.py once on a host
// through its Transport and turns JSON-lines requests into promises, with
// progress events delivered to a callback. See docs/agent-protocol.md.

import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { AgentError, HostError } from '../errors.ts';
import { parsePythonProbe, PYTHON_PROBE, resolveLocalPython } from '../hosts/local.ts';
import type { HostProcess, Transport } from '../hosts/transport.ts';

export const AGENT_PATH = fileURLToPath(new URL('./agent.py', import.meta.url));

let agentSource: { text: string; hash: string } | undefined;
export function agentScript(): { text: string; hash: string } {
  if (!agentSource) {
    const text = readFileSync(AGENT_PATH, 'utf8');
    agentSource = { text, hash: createHash('sha256').update(text).digest('hex').slice(0, 16) };
  }
  return agentSource;
}

/** Where a host keeps the uploaded agent: one file per content hash, so an upload happens once. */
export function remoteAgentPath(hash: string): string {
  return `/var/tmp/lab-agent/agent-${hash}.py`;
}

type EventHandler = (event: string, data: Record<string, unknown>) => void;

interface Pending {
  op: string;
  resolve: (v: any) => void;
  reject: (e: Error) => void;
  onEvent?: EventHandler;
  timer?: ReturnType<typeof setTimeout>;
}

export interface RequestOptions {
  onEvent?: EventHandler;
  /** reject when no reply arrives in time (the agent bounds its own work; this is a backstop) */
  timeoutMs?: number;
}

export class AgentClient {
  private nextId = 1;
  private pending = new Map<number, Pending>();
  private buffer = '';
  private stderrTail = '';
  private closedError?: Error;
  readonly ready: Promise<{ version: number; pid: number }>;
  readonly exited: Promise<{ code: number | null; signal: string | null }>;

  private constructor(
    readonly role: string,
    private readonly proc: HostProcess,
    startTimeoutMs: number,
  ) {
    let readyResolve!: (v: { version: number; pid: number }) => void;
    let readyReject!: (e: Error) => void;
    this.ready = new Promise((res, rej) => ((readyResolve = res), (readyReject = rej)));
    this.ready.catch(() => {});
    const readyTimer = setTimeout(
      () => readyReject(new AgentError('AGENT_START', `Agent did not start within ${startTimeoutMs} ms${this.stderrHint()}`, role)),
      startTimeoutMs,
    );

    proc.stdout.setEncoding('utf8');
    proc.stdout.on('data', (chunk: string) => {
      this.buffer += chunk;
      let nl: number;
      while ((nl = this.buffer.indexOf('\n')) >= 0) {
        const line = this.buffer.slice(0, nl);
        this.buffer = this.buffer.slice(nl + 1);
        if (!line.trim()) continue;
        let msg: any;
        try {
          msg = JSON.parse(line);
        } catch {
          this.fail(new AgentError('AGENT_PROTOCOL', `Agent wrote a line that is not JSON: ${JSON.stringify(line.slice(0, 200))}`, role));
          return;
        }
        if (msg.event === 'ready' && msg.id === undefined) {
          clearTimeout(readyTimer);
          readyResolve(msg.data);
          continue;
        }
        const p = this.pending.get(msg.id);
        if (!p) continue;
        if (msg.event) {
          p.onEvent?.(msg.event, msg.data ?? {});
        } else {
          this.pending.delete(msg.id);
          if (p.timer) clearTimeout(p.timer);
          if (msg.ok) p.resolve(msg.result);
          else p.reject(new AgentError(msg.error?.code ?? 'AGENT_ERROR', `${p.op}: ${msg.error?.message ?? 'failed'}`, role));
        }
      }
    });
    proc.stderr.setEncoding('utf8');
    proc.stderr.on('data', (chunk: string) => {
      this.stderrTail = (this.stderrTail + chunk).slice(-2000);
    });
    this.exited = proc.exited.then((how) => {
      clearTimeout(readyTimer);
      const why = how.signal ? `signal ${how.signal}` : `exit code ${how.code}`;
      const err = new AgentError('AGENT_EXITED', `Agent exited (${why})${this.stderrHint()}`, role);
      readyReject(err);
      this.fail(err);
      return how;
    });
    // A write after the agent died must not crash the controller.
    proc.stdin.on('error', () => {});
  }

  private stderrHint(): string {
    const tail = this.stderrTail.trim().split('\n').slice(-3).join(' | ');
    return tail ? `: ${tail}` : '';
  }

  private fail(err: Error): void {
    this.closedError ??= err;
    for (const [id, p] of this.pending) {
      this.pending.delete(id);
      if (p.timer) clearTimeout(p.timer);
      p.reject(err);
    }
  }

  /**
   * Put the agent on the host (for a namespace it is already on this file
   * system; over SSH it is uploaded once per content hash) and start it.
   */
  static async start(transport: Transport, options: { startTimeoutMs?: number } = {}): Promise<AgentClient> {
    const { text, hash } = agentScript();
    let path = AGENT_PATH;
    // A namespace shares this file system; any other host gets its own copy.
    if (transport.kind !== 'netns') {
      path = remoteAgentPath(hash);
      const have = await transport.exec(['test', '-f', path]);
      if (have.code !== 0) await transport.putFile(path, text, 0o644);
    }
    const python = transport.kind === 'netns' ? await resolveLocalPython() : parsePythonProbe(await transport.exec(PYTHON_PROBE));
    if (!python) {
      throw new HostError(
        'HOST_NO_PYTHON',
        `Cannot run "python3", which the probe agent needs: install it (Debian/Ubuntu: apt-get install python3; RHEL: dnf install python3)`,
        transport.role,
      );
    }
    const [major, minor] = python.version;
    if (major < 3 || (major === 3 && minor < 7)) {
      throw new HostError('HOST_OLD_PYTHON', `python3 is ${major}.${minor}: the probe agent needs 3.7 or newer`, transport.role);
    }
    // (A sudo host's transport wraps every command in sudo itself.)
    const proc = await transport.spawn([python.executable, '-u', path, '--label', `lab:${transport.target}`]);
    const client = new AgentClient(transport.role, proc, options.startTimeoutMs ?? 15_000);
    await client.ready;
    return client;
  }

  request<T = any>(op: string, args: Record<string, unknown> = {}, options: RequestOptions = {}): Promise<T> {
    if (this.closedError) return Promise.reject(this.closedError);
    const id = this.nextId++;
    return new Promise<T>((resolve, reject) => {
      const p: Pending = { op, resolve, reject, onEvent: options.onEvent };
      if (options.timeoutMs) {
        p.timer = setTimeout(() => {
          this.pending.delete(id);
          reject(new AgentError('AGENT_TIMEOUT', `${op}: no reply within ${options.timeoutMs} ms`, this.role));
        }, options.timeoutMs);
      }
      this.pending.set(id, p);
      this.proc.stdin.write(JSON.stringify({ id, op, args }) + '\n');
    });
  }

  /** Ask the agent to release everything, restore its journal and exit; then wait for it. */
  async shutdown(timeoutMs = 15_000): Promise<void> {
    if (!this.closedError) {
      await this.request('shutdown', {}, { timeoutMs }).catch(() => {});
    }
    this.proc.kill();
    await Promise.race([this.exited, new Promise((r) => setTimeout(r, timeoutMs).unref())]);
  }

  get alive(): boolean {
    return !this.closedError;
  }
}
