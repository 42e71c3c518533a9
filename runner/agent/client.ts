// The controller's side of the probe agent: puts the agent artifact on a host
// and starts it once through the host's Transport, then turns JSON-lines
// requests into typed promises (runner/agent/protocol.ts), with progress
// events delivered to a callback. See docs/agent-protocol.md.

import { AgentError } from '../errors.ts';
import type { HostProcess, Transport } from '../hosts/transport.ts';
import { AGENT_PROTOCOL_VERSION, AGENT_START_TIMEOUT_MS, replyTimeoutMs, type ArgsOf, type EventOf, type OpName, type ReadyData, type ReplyOf } from './protocol.ts';
import { agentArtifact } from './zipapp.ts';

/**
 * How the agent's python3 runs: unbuffered (-u: every line reaches the
 * controller when written), and without the site module (-S: the agent is
 * standard library only, and site's scan of site-packages and .pth files is a
 * share of every start).
 */
export const AGENT_PYTHON_FLAGS = ['-u', '-S'];

type EventHandler<D> = (event: string, data: D) => void;

interface Pending {
  op: OpName;
  resolve: (v: any) => void;
  reject: (e: Error) => void;
  onEvent?: EventHandler<any>;
  timer?: ReturnType<typeof setTimeout>;
}

export interface RequestOptions<Op extends OpName = OpName> {
  onEvent?: EventHandler<EventOf<Op>>;
  /** reject when no reply arrives in time; default: the op's bound in protocol.ts (the agent bounds its own work; this is a backstop) */
  timeoutMs?: number;
}

export class AgentClient {
  private nextId = 1;
  private pending = new Map<number, Pending>();
  private buffer = '';
  private stderrTail = '';
  private closedError?: Error;
  readonly ready: Promise<ReadyData>;
  readonly exited: Promise<{ code: number | null; signal: string | null }>;

  private constructor(
    readonly role: string,
    private readonly proc: HostProcess,
    startTimeoutMs: number,
  ) {
    let readyResolve!: (v: ReadyData) => void;
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
   * Put the agent on the host (once per content hash: the transport knows how
   * and where) and start it with the host's python3. A transport that can
   * (SSH) first tries both in one command, which runs the agent when its
   * file is there; the long way (find python3, install, spawn) is taken when
   * it is not, or when the interpreter is missing or too old, and says which.
   */
  static async start(transport: Transport, options: { startTimeoutMs?: number } = {}): Promise<AgentClient> {
    const artifact = agentArtifact();
    const args = ['--label', `lab:${transport.target}`];
    const startTimeoutMs = options.startTimeoutMs ?? AGENT_START_TIMEOUT_MS;
    if (transport.spawnInstalled) {
      const proc = await transport.spawnInstalled(artifact, (path) => [...AGENT_PYTHON_FLAGS, path, ...args]);
      const client = new AgentClient(transport.role, proc, startTimeoutMs);
      const ready = await client.ready.catch((e: unknown) => {
        // Ended before its ready line (no such file, no such interpreter, too old a one, or any
        // other early exit): the long way below probes each step and names what is missing.
        if (e instanceof AgentError && e.code === 'AGENT_EXITED') return undefined;
        throw e;
      });
      if (ready) return client.checked(ready);
    }
    const [python, path] = await Promise.all([transport.python(), transport.install(artifact)]);
    // (A sudo host's transport wraps every command in sudo itself.)
    const proc = await transport.spawn([python.executable, ...AGENT_PYTHON_FLAGS, path, ...args]);
    const client = new AgentClient(transport.role, proc, startTimeoutMs);
    return client.checked(await client.ready);
  }

  private checked(ready: ReadyData): AgentClient {
    if (ready.version !== AGENT_PROTOCOL_VERSION) {
      this.proc.kill();
      throw new AgentError('AGENT_PROTOCOL', `Agent speaks protocol version ${ready.version}, this lab speaks ${AGENT_PROTOCOL_VERSION}`, this.role);
    }
    return this;
  }

  /** Send one request; the reply's type follows from the op (runner/agent/protocol.ts). */
  request<Op extends OpName>(op: Op, args: ArgsOf<Op>, options: RequestOptions<Op> = {}): Promise<ReplyOf<Op>> {
    if (this.closedError) return Promise.reject(this.closedError);
    const id = this.nextId++;
    const timeoutMs = options.timeoutMs ?? replyTimeoutMs(op, args);
    return new Promise<ReplyOf<Op>>((resolve, reject) => {
      const p: Pending = { op, resolve, reject, onEvent: options.onEvent };
      p.timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new AgentError('AGENT_TIMEOUT', `${op}: no reply within ${timeoutMs} ms`, this.role));
      }, timeoutMs);
      this.pending.set(id, p);
      this.proc.stdin.write(JSON.stringify({ id, op, args }) + '\n');
    });
  }

  /** Ask the agent to release everything, restore its journal and exit; then wait for it. */
  async shutdown(timeoutMs = replyTimeoutMs('shutdown', {})): Promise<void> {
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
