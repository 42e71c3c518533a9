// A host reached over SSH (ssh2): one connection per transport, optionally
// through a jump host, with the host key checked against an OpenSSH
// known_hosts file. Every command is one exec channel on that connection; the
// agent is one long-lived channel, so later steps cost a message, not a login.

import { randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { connect as netConnect, type Socket } from 'node:net';
import { posix } from 'node:path';
import type { Duplex } from 'node:stream';
import type {
  AnyAuthMethod,
  AuthenticationType,
  Client as SshClient,
  ClientChannel,
  ConnectConfig,
  NextAuthHandler,
  SFTPWrapper,
  ServerHostKeyAlgorithm,
} from 'ssh2';
import { HostError } from '../errors.ts';
import { shellQuote } from '../files/quote.ts';
import { artifactPath, installOverExec } from './artifact.ts';
import { parsePythonProbe, pythonProbe, requirePython, type PythonInfo } from './python.ts';
import {
  appendKnownHost,
  checkHostKey,
  fingerprint,
  hostFieldMatches,
  keyTypeOf,
  knownHostName,
  readKnownHosts,
  type KnownHostsEntry,
} from './known-hosts.ts';
import type { Artifact, ExecOptions, ExecResult, HostProcess, Transport, TransportCapabilities } from './transport.ts';

// ssh2 loads when a host is first reached over SSH (about 120 ms), not with every `lab` command.
// ssh2 is CommonJS: its exports arrive as the default export.
type Ssh2 = typeof import('ssh2');
let ssh2Module: Promise<Ssh2> | undefined;
const loadSsh2 = () => (ssh2Module ??= import('ssh2').then((m) => (m as unknown as { default?: Ssh2 }).default ?? m));

export type HostKeyPolicy = 'check' | 'accept-new';

/** Where and how to log in: one SSH hop (the target, or its jump host). */
export interface SshEndpoint {
  address: string;
  port: number;
  user: string;
  /** absolute path of a private key file */
  identity?: string;
  /** the name of an environment variable holding the identity's passphrase (never the passphrase itself) */
  passphraseEnv?: string;
  /** offer the keys of the agent at SSH_AUTH_SOCK */
  agent: boolean;
  /** the name of an environment variable holding the password (never the password itself) */
  passwordEnv?: string;
  /** absolute path of an OpenSSH known_hosts file */
  knownHosts: string;
  hostKey: HostKeyPolicy;
  /** bounds the TCP connect, and separately the SSH handshake with authentication */
  connectTimeoutMs: number;
}

export interface SshTransportOptions extends SshEndpoint {
  role: string;
  jump?: SshEndpoint;
  /** wrap every command in `sudo -n` (a non-root user with passwordless sudo) */
  sudo?: boolean;
  /** the host is a namespace on the controller's machine (`lab hosts up`) */
  localNamespace?: boolean;
  /** default for exec's timeoutMs */
  commandTimeoutMs?: number;
  /** where password_env and SSH_AUTH_SOCK are looked up (default: process.env) */
  env?: Record<string, string | undefined>;
  /** the interpreter the agent runs with (an absolute path); default: `python3` from the login PATH */
  python?: string;
  /** told each host key accepted as new and added to known_hosts (as OpenSSH's "Permanently added" warning) */
  onHostKeyAdded?: (added: HostKeyAdded) => void;
}

/** A host key that `accept-new` trusted on first use and appended to known_hosts. */
export interface HostKeyAdded {
  role: string;
  /** "jump host " when it was the jump host's key, else "" */
  who: string;
  /** the known_hosts name: address, or [address]:port */
  host: string;
  /** key type and SHA256 fingerprint, as ssh-keygen -l prints them */
  key: string;
  file: string;
}

const DEFAULT_COMMAND_TIMEOUT_MS = 30_000;
/** A dead sshd (or a cut cable) is noticed after about interval × countMax. */
const KEEPALIVE_INTERVAL_MS = 2_000;
const KEEPALIVE_COUNT_MAX = 3;
/** How long a spawned process gets to exit by itself after its stdin closes. */
const KILL_GRACE_MS = 2_000;
/** Grace between the TERM and the KILL of a command that ran out of time. */
const KILL_AFTER_S = 1;
/** The environment variable that marks a spawned process tree. */
const SPAWN_MARKER = 'LAB_SPAWN';

/**
 * The command line an exec channel runs for argv: quoted once, sudo-wrapped
 * when needed. OpenSSH refuses signal requests to root sessions, so the
 * controller cannot stop a remote command by itself: exec bounds it with
 * `timeout` on the host, and spawn marks it with an environment variable by
 * which `kill()` finds it (and its children) again.
 */
export function remoteCommand(argv: string[], options: { sudo?: boolean; timeoutMs?: number; marker?: string } = {}): string {
  const sudo = options.sudo ? ['sudo', '-n', '--'] : [];
  const mark = options.marker ? ['env', `${SPAWN_MARKER}=${options.marker}`] : [];
  const bound = options.timeoutMs ? ['timeout', '-k', String(KILL_AFTER_S), String(options.timeoutMs / 1000)] : [];
  return shellQuote([...sudo, ...mark, ...bound, ...argv]);
}

/** Signal every process whose environment holds the marker: $0 its name, $1 its value, $2 the signal. */
const SIGNAL_MARKED =
  'for f in /proc/[0-9]*/environ; do ' +
  'if grep -qzxF "$0=$1" "$f" 2>/dev/null; then p=${f#/proc/}; kill -s "$2" "${p%/environ}" 2>/dev/null; fi; ' +
  'done; true';

/**
 * Run an installed zipapp ($0, a path ending in .pyz) with the argv in "$@",
 * which names it: from its unpacked copy's __main__.py where there is one
 * (the argv rebuilt in order, that one argument replaced), else from the zip;
 * exit 90 when neither is there.
 */
const START_INSTALLED =
  'z=$0; m=${z%.pyz}.d/__main__.py; test -f "$m" || m=$z; test -f "$m" || exit 90; ' +
  'n=$#; for a; do if [ "$a" = "$z" ]; then a=$m; fi; set -- "$@" "$a"; done; shift $n; exec "$@"';

/** Host key algorithms that prove a key of each known_hosts type. */
const HOST_KEY_ALGORITHMS: Record<string, ServerHostKeyAlgorithm[]> = {
  'ssh-ed25519': ['ssh-ed25519'],
  'ssh-rsa': ['rsa-sha2-512', 'rsa-sha2-256', 'ssh-rsa'],
  'ecdsa-sha2-nistp256': ['ecdsa-sha2-nistp256'],
  'ecdsa-sha2-nistp384': ['ecdsa-sha2-nistp384'],
  'ecdsa-sha2-nistp521': ['ecdsa-sha2-nistp521'],
};

// ---------------------------------------------------------------------------
// errors

const ERRNO_WORDS: Record<string, string> = {
  ECONNREFUSED: 'connection refused',
  EHOSTUNREACH: 'no route to host',
  ENETUNREACH: 'network is unreachable',
  ETIMEDOUT: 'timed out',
  ECONNRESET: 'connection reset by peer',
  EADDRNOTAVAIL: 'address not available',
  ENOTFOUND: 'host name not found',
  EAI_AGAIN: 'temporary failure in name resolution',
};

function seconds(ms: number): string {
  return ms % 1000 === 0 ? `${ms / 1000}s` : `${ms}ms`;
}

function hop(ep: SshEndpoint): string {
  return `${ep.address}:${ep.port}`;
}

function login(ep: SshEndpoint): string {
  return `${ep.user}@${ep.address}:${ep.port}`;
}

interface SshLevelError extends Error {
  level?: string;
  code?: string;
}

// ---------------------------------------------------------------------------
// the transport

interface AuthAttempt {
  method: AnyAuthMethod;
  /** what the error message says was tried; never the secret */
  label: string;
}

export class SshTransport implements Transport {
  readonly kind = 'ssh' as const;
  readonly role: string;
  readonly target: string;
  readonly capabilities: TransportCapabilities;
  private readonly options: SshTransportOptions;
  private readonly env: Record<string, string | undefined>;
  private connection?: Promise<SshClient>;
  private client?: SshClient;
  private jumpClient?: SshClient;
  private sftpSession?: Promise<SFTPWrapper>;
  /** set once the connection is closed or lost: every later call fails with it */
  private closedError?: HostError;
  /** the last error the live connection reported, for SSH_CLOSED */
  private lostCause?: string;
  private pythonInfo?: Promise<PythonInfo>;
  /** the interpreter python() found, once it has */
  private pythonExecutable?: string;

  constructor(options: SshTransportOptions) {
    this.options = options;
    this.role = options.role;
    this.env = options.env ?? process.env;
    this.target = login(options) + (options.jump ? ` via ${login(options.jump)}` : '');
    this.capabilities = { localNamespace: options.localNamespace ?? false, needsSudo: options.sudo ?? false };
  }

  async connect(): Promise<void> {
    await this.ready();
  }

  private ready(): Promise<SshClient> {
    if (this.closedError) return Promise.reject(this.closedError);
    this.connection ??= this.open().catch((e: unknown) => {
      this.connection = undefined;
      throw e;
    });
    return this.connection;
  }

  private error(code: string, message: string, cause?: unknown): HostError {
    return new HostError(code, message, this.role, cause === undefined ? undefined : { cause });
  }

  private async open(): Promise<SshClient> {
    const target = this.options;
    let sock: Duplex;
    let jumpClient: SshClient | undefined;
    let client: SshClient | undefined;
    try {
      // Keys and passwords first: a missing one fails before any connection is made.
      const targetAuth = await this.authAttempts(target, '');
      if (target.jump) {
        const jump = target.jump;
        const jumpAuth = await this.authAttempts(jump, 'jump host ');
        jumpClient = await this.handshake(jump, jumpAuth, await this.tcpConnect(jump, `jump host ${hop(jump)}`), 'jump host ');
        sock = await this.forwardOut(jumpClient, jump, target);
      } else {
        sock = await this.tcpConnect(target, hop(target));
      }
      client = await this.handshake(target, targetAuth, sock, '');
      this.jumpClient = jumpClient;
      this.client = client;
      client.on('close', () => {
        this.closedError ??= this.error(
          'SSH_CLOSED',
          `Connection to ${this.target} was lost${this.lostCause ? `: ${this.lostCause}` : ''}`,
        );
        this.jumpClient?.end();
        this.client = undefined;
        this.jumpClient = undefined;
      });
      if (target.sudo) await this.checkSudo(client);
      return client;
    } catch (e) {
      // Not lost, never made: a later connect() may try again.
      client?.removeAllListeners('close');
      client?.end();
      jumpClient?.end();
      this.client = undefined;
      this.jumpClient = undefined;
      throw e;
    }
  }

  /** Fail at connect, not mid-run, when sudo would ask for a password. */
  private async checkSudo(client: SshClient): Promise<void> {
    const r = await this.execOn(client, ['true'], { timeoutMs: this.options.connectTimeoutMs });
    if (r.code !== 0) {
      throw this.error(
        'SSH_SUDO',
        `"sudo -n true" failed for ${login(this.options)}: ${r.stderr.trim() || `exit code ${r.code ?? r.signal}`}: give the user passwordless sudo, or log in as root`,
      );
    }
  }

  private tcpConnect(ep: SshEndpoint, what: string): Promise<Socket> {
    return new Promise((resolve, reject) => {
      const sock = netConnect({ host: ep.address, port: ep.port });
      // SSH sends a few small packets per command: with Nagle's algorithm each exec waits out a delayed ACK (~40 ms).
      sock.setNoDelay(true);
      const timer = setTimeout(() => {
        sock.destroy();
        reject(this.error('SSH_TIMEOUT', `Timed out after ${seconds(ep.connectTimeoutMs)} connecting to ${what}`));
      }, ep.connectTimeoutMs);
      const onError = (e: SshLevelError) => {
        clearTimeout(timer);
        reject(this.socketError(e, what));
      };
      sock.once('error', onError);
      sock.once('connect', () => {
        clearTimeout(timer);
        sock.removeListener('error', onError);
        resolve(sock);
      });
    });
  }

  private socketError(e: SshLevelError, what: string): HostError {
    const errno = e.code ?? 'ERROR';
    const words = ERRNO_WORDS[errno] ?? e.message;
    const code = errno === 'ETIMEDOUT' ? 'SSH_TIMEOUT' : 'SSH_UNREACHABLE';
    return this.error(code, `Cannot connect to ${what}: ${errno} (${words})`, e);
  }

  /** A TCP stream from the jump host to the target, to run the target's SSH over. */
  private forwardOut(jumpClient: SshClient, jump: SshEndpoint, target: SshEndpoint): Promise<ClientChannel> {
    const what = `${hop(target)} through jump host ${login(jump)}`;
    return new Promise((resolve, reject) => {
      let timedOut = false;
      const timer = setTimeout(() => {
        timedOut = true;
        reject(this.error('SSH_TIMEOUT', `Timed out after ${seconds(target.connectTimeoutMs)} connecting to ${what}`));
      }, target.connectTimeoutMs);
      jumpClient.forwardOut('127.0.0.1', 0, target.address, target.port, (err, stream) => {
        clearTimeout(timer);
        if (timedOut) return stream?.close();
        const said = err?.message.replace(/^\(SSH\) (Channel open failure: )?/, '');
        if (err) reject(this.error('SSH_UNREACHABLE', `Cannot connect to ${what}: the jump host says "${said}"`, err));
        else resolve(stream);
      });
    });
  }

  private async authAttempts(ep: SshEndpoint, who: string): Promise<AuthAttempt[]> {
    const attempts: AuthAttempt[] = [];
    const username = ep.user;
    if (ep.identity) {
      let key: Buffer;
      try {
        key = await readFile(ep.identity);
      } catch (e) {
        throw this.error('SSH_IDENTITY', `Cannot read ${who}identity "${ep.identity}": ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`, e);
      }
      let passphrase: string | undefined;
      if (ep.passphraseEnv) {
        passphrase = this.env[ep.passphraseEnv];
        if (passphrase === undefined) {
          throw this.error('SSH_IDENTITY', `${who}passphrase_env names "${ep.passphraseEnv}", but that environment variable is not set`);
        }
      }
      const parsed = (await loadSsh2()).utils.parseKey(key, passphrase);
      if (parsed instanceof Error) {
        // ssh2's own words, which never hold the passphrase: "Encrypted private OpenSSH key detected, but no passphrase given", "bad decrypt"…
        const hint = passphrase === undefined
          ? 'name the environment variable holding its passphrase with "passphrase_env", or use "agent: true"'
          : `check the passphrase in $${ep.passphraseEnv}`;
        throw this.error('SSH_IDENTITY', `Cannot use ${who}identity "${ep.identity}": ${parsed.message}: ${hint}`);
      }
      // The parsed key, not the file: an encrypted key costs a bcrypt derivation (about half a second) each time it is parsed.
      const method: AnyAuthMethod = { type: 'publickey', username, key: Array.isArray(parsed) ? parsed[0]! : parsed };
      attempts.push({ method, label: `publickey (${ep.identity}${passphrase === undefined ? '' : `, passphrase from $${ep.passphraseEnv}`})` });
    }
    if (ep.agent) {
      const sock = this.env.SSH_AUTH_SOCK;
      if (!sock) throw this.error('SSH_AUTH', `${who}"agent: true" needs an SSH agent, but SSH_AUTH_SOCK is not set: start ssh-agent, or use "identity"`);
      attempts.push({ method: { type: 'agent', username, agent: sock }, label: `agent (${sock})` });
    }
    if (ep.passwordEnv) {
      const password = this.env[ep.passwordEnv];
      if (password === undefined) {
        throw this.error('SSH_AUTH', `${who}password_env names "${ep.passwordEnv}", but that environment variable is not set`);
      }
      attempts.push({ method: { type: 'password', username, password }, label: `password (from $${ep.passwordEnv})` });
    }
    if (!attempts.length) throw this.error('SSH_AUTH', `No way to log in to ${who}${login(ep)}: set "identity", "agent: true" or "password_env"`);
    return attempts;
  }

  /** SSH over an open stream: host key check, then authentication. */
  private async handshake(ep: SshEndpoint, attempts: AuthAttempt[], sock: Duplex, who: string): Promise<SshClient> {
    let known: KnownHostsEntry[];
    try {
      known = await readKnownHosts(ep.knownHosts);
    } catch (e) {
      sock.destroy();
      throw this.error('SSH_KNOWN_HOSTS', `Cannot read known_hosts "${ep.knownHosts}": ${(e as Error).message}`, e);
    }
    const name = knownHostName(ep.address, ep.port);
    const knownTypes = [...new Set(known.filter((e) => !e.marker && hostFieldMatches(e.hosts, name)).map((e) => e.keyType))];
    const preferred = knownTypes.flatMap((t) => HOST_KEY_ALGORITHMS[t] ?? []);

    let hostKeyError: HostError | undefined;
    const hostVerifier = (blob: Buffer): boolean => {
      const keyType = keyTypeOf(blob);
      const offered = `${keyType} ${fingerprint(blob)}`;
      const check = checkHostKey(known, name, keyType, blob.toString('base64'));
      if (check.status === 'known') return true;
      if (check.status === 'unknown' && ep.hostKey === 'accept-new') {
        appendKnownHost(ep.knownHosts, `${name} ${keyType} ${blob.toString('base64')}`);
        this.options.onHostKeyAdded?.({ role: this.role, who, host: name, key: offered, file: ep.knownHosts });
        return true;
      }
      if (check.status === 'unknown') {
        hostKeyError = this.error(
          'SSH_HOSTKEY_UNKNOWN',
          `Host key of ${who}${name} is unknown: ${offered} is not in ${ep.knownHosts}: to trust it, set "host_key: accept-new" in the inventory or pass --accept-new-host-keys`,
        );
      } else if (check.status === 'revoked') {
        hostKeyError = this.error(
          'SSH_HOSTKEY_REVOKED',
          `Host key of ${who}${name} is revoked: ${offered} is marked @revoked at ${ep.knownHosts}:${check.entry.line}`,
        );
      } else {
        const was = `${check.entry.keyType} ${fingerprint(Buffer.from(check.entry.key, 'base64'))}`;
        hostKeyError = this.error(
          'SSH_HOSTKEY_CHANGED',
          `Host key of ${who}${name} has changed: ${ep.knownHosts}:${check.entry.line} has ${was}, the host offers ${offered}: ` +
            `lab never accepts a changed key; if the host was reinstalled, remove the old one with: ${shellQuote(['ssh-keygen', '-R', name, '-f', ep.knownHosts])}`,
        );
      }
      return false;
    };

    const tried: string[] = [];
    let serverMethods: AuthenticationType[] | null = null;
    let next = 0;
    const authHandler = (methodsLeft: AuthenticationType[] | null, _partial: boolean | null, done: NextAuthHandler) => {
      if (methodsLeft) serverMethods = methodsLeft;
      while (next < attempts.length) {
        const attempt = attempts[next++]!;
        const wire = attempt.method.type === 'agent' ? 'publickey' : attempt.method.type;
        if (methodsLeft && !methodsLeft.includes(wire)) continue;
        tried.push(attempt.label);
        return done(attempt.method);
      }
      // ssh2 takes `false` for "no more methods"; its types do not say so.
      return done(false as unknown as AuthenticationType);
    };

    const config: ConnectConfig = {
      sock,
      username: ep.user,
      readyTimeout: ep.connectTimeoutMs,
      keepaliveInterval: KEEPALIVE_INTERVAL_MS,
      keepaliveCountMax: KEEPALIVE_COUNT_MAX,
      hostVerifier,
      authHandler: authHandler as ConnectConfig['authHandler'],
      // Ask for the key types on record first, so a host with several keys proves the known one.
      algorithms: preferred.length ? { serverHostKey: { remove: preferred, prepend: preferred, append: [] } } : undefined,
    };

    const client = new (await loadSsh2()).Client();
    return new Promise<SshClient>((resolve, reject) => {
      let settled = false;
      const fail = (e: HostError) => {
        if (settled) return;
        settled = true;
        client.end();
        sock.destroy();
        reject(e);
      };
      client.once('ready', () => {
        settled = true;
        resolve(client);
      });
      client.on('error', (err: SshLevelError) => {
        if (settled) {
          this.lostCause = describeLost(err);
          return;
        }
        if (hostKeyError) return fail(hostKeyError);
        switch (err.level) {
          case 'client-authentication': {
            const accepts = serverMethods ? `; the server accepts ${(serverMethods as string[]).join(', ')}` : '';
            return fail(
              this.error('SSH_AUTH', `Authentication failed for ${who}${login(ep)}: tried ${tried.join(', ') || 'nothing'}${accepts}`, err),
            );
          }
          case 'client-timeout':
            return fail(
              this.error('SSH_TIMEOUT', `Timed out after ${seconds(ep.connectTimeoutMs)} waiting for the SSH handshake with ${who}${hop(ep)}`, err),
            );
          case 'client-socket':
            return fail(this.socketError(err, `${who}${hop(ep)}`));
          case 'agent':
            return fail(this.error('SSH_AUTH', `SSH agent failed while logging in to ${who}${login(ep)}: ${err.message}`, err));
          default:
            return fail(this.error('SSH_HANDSHAKE', `SSH handshake with ${who}${hop(ep)} failed: ${err.message}`, err));
        }
      });
      client.once('close', () => {
        fail(hostKeyError ?? this.error('SSH_HANDSHAKE', `${who}${hop(ep)} closed the connection during the SSH handshake`));
      });
      try {
        client.connect(config);
      } catch (e) {
        fail(this.error('SSH_HANDSHAKE', `Cannot start SSH to ${who}${hop(ep)}: ${(e as Error).message}`, e));
      }
    });
  }

  private channel(client: SshClient, command: string): Promise<ClientChannel> {
    return new Promise((resolve, reject) => {
      client.exec(command, (err, channel) => {
        if (!err) return resolve(channel);
        reject(this.closedError ?? this.error('SSH_CHANNEL', `Cannot open a session on ${this.target}: ${err.message}`, err));
      });
    });
  }

  async exec(argv: string[], options: ExecOptions = {}): Promise<ExecResult> {
    return this.execOn(await this.ready(), argv, options);
  }

  private async execOn(client: SshClient, argv: string[], options: ExecOptions): Promise<ExecResult> {
    const timeoutMs = options.timeoutMs ?? this.options.commandTimeoutMs ?? DEFAULT_COMMAND_TIMEOUT_MS;
    const channel = await this.channel(client, remoteCommand(argv, { sudo: this.capabilities.needsSudo, timeoutMs }));
    const started = Date.now();
    return new Promise((resolve, reject) => {
      const stdout: Buffer[] = [];
      const stderr: Buffer[] = [];
      let exit: { code: number | null; signal: string | null } | undefined;
      let done = false;
      const finish = (abandoned: boolean) => {
        if (done) return;
        done = true;
        clearTimeout(backstop);
        if (!exit && !abandoned && this.closedError) return reject(this.closedError);
        // `timeout` exits 124 after its TERM, and dies of its KILL, when the time ran out.
        const ranOut = Date.now() - started >= timeoutMs && (exit?.code === 124 || exit?.code === 137);
        const timedOut = abandoned || ranOut;
        resolve({
          code: timedOut ? null : (exit?.code ?? null),
          signal: timedOut ? 'SIGTERM' : (exit?.signal ?? null),
          stdout: Buffer.concat(stdout).toString('utf8'),
          stderr: Buffer.concat(stderr).toString('utf8'),
        });
      };
      // Should the host's `timeout` not end it (say, a hung sshd), stop waiting anyway.
      const backstop = setTimeout(() => {
        channel.close();
        finish(true);
      }, timeoutMs + (KILL_AFTER_S + 2) * 1000);
      channel.on('data', (d: Buffer) => stdout.push(d));
      channel.stderr.on('data', (d: Buffer) => stderr.push(d));
      channel.on('exit', (code: number | null, signal?: string) => {
        exit = { code: code ?? null, signal: signal ?? null };
      });
      channel.once('close', () => finish(false));
      channel.end(options.input);
    });
  }

  async spawn(argv: string[]): Promise<HostProcess> {
    const marker = randomBytes(8).toString('hex');
    const channel = await this.channel(await this.ready(), remoteCommand(argv, { sudo: this.capabilities.needsSudo, marker }));
    let exit: { code: number | null; signal: string | null } = { code: null, signal: null };
    let closed = false;
    channel.on('exit', (code: number | null, signal?: string) => {
      exit = { code: code ?? null, signal: signal ?? null };
    });
    const exited = new Promise<{ code: number | null; signal: string | null }>((resolve) => {
      channel.once('close', () => {
        closed = true;
        resolve(exit);
      });
    });
    const signal = (name: 'TERM' | 'KILL') =>
      this.exec(['sh', '-c', SIGNAL_MARKED, SPAWN_MARKER, marker, name]).catch(() => undefined);
    return {
      stdin: channel,
      stdout: channel,
      stderr: channel.stderr,
      exited,
      kill() {
        channel.end();
        // EOF asks the agent to clean up; TERM, then KILL, are the fallback.
        setTimeout(async () => {
          if (closed) return;
          await signal('TERM');
          setTimeout(() => !closed && void signal('KILL'), KILL_GRACE_MS).unref();
        }, KILL_GRACE_MS).unref();
      },
    };
  }

  private sftp(): Promise<SFTPWrapper> {
    this.sftpSession ??= this.ready().then(
      (client) =>
        new Promise<SFTPWrapper>((resolve, reject) => {
          client.sftp((err, sftp) => {
            // A lost connection is reported by the next call, not as an unhandled 'error'.
            if (!err) return resolve(sftp.on('error', () => undefined));
            this.sftpSession = undefined;
            reject(this.closedError ?? this.error('SSH_SFTP', `Cannot start SFTP on ${this.target}: ${err.message}`, err));
          });
        }),
    );
    return this.sftpSession;
  }

  private async mustExec(argv: string[], what: string): Promise<void> {
    const r = await this.exec(argv);
    if (r.code !== 0) {
      throw this.error('SSH_PUT_FILE', `${what}: ${r.stderr.trim() || `exit code ${r.code ?? r.signal}`}`);
    }
  }

  async putFile(path: string, content: string | Uint8Array, mode = 0o644): Promise<void> {
    const data = typeof content === 'string' ? Buffer.from(content, 'utf8') : Buffer.from(content);
    const dir = posix.dirname(path);
    const octal = mode.toString(8);
    const sftp = await this.sftp();
    if (!this.capabilities.needsSudo) {
      await this.mustExec(['mkdir', '-p', dir], `Cannot create directory "${dir}"`);
      await sftpWrite(sftp, path, data, mode).catch((e: Error) => {
        throw this.closedError ?? this.error('SSH_PUT_FILE', `Cannot write "${path}" over SFTP: ${e.message}`, e);
      });
      return;
    }
    // SFTP runs as the login user: write where it may, then move into place as root.
    const temp = `/tmp/lab-put-${randomBytes(8).toString('hex')}`;
    await sftpWrite(sftp, temp, data, 0o600).catch((e: Error) => {
      throw this.closedError ?? this.error('SSH_PUT_FILE', `Cannot write "${temp}" over SFTP: ${e.message}`, e);
    });
    try {
      await this.mustExec(
        ['sh', '-c', 'mkdir -p "$1" && mv -f "$2" "$3" && chown 0:0 "$3" && chmod "$4" "$3"', 'sh', dir, temp, path, octal],
        `Cannot move "${temp}" to "${path}" with sudo`,
      );
    } catch (e) {
      await new Promise<void>((resolve) => sftp.unlink(temp, () => resolve()));
      throw e;
    }
  }

  install(artifact: Artifact): Promise<string> {
    return installOverExec(this, artifact);
  }

  /**
   * One exec instead of three (the python3 probe, `test -f`, the start): each
   * costs a round trip and a login shell on the host. It runs the copy the
   * zipapp unpacked beside itself at its first start (`agent-<hash>.d/`,
   * runner/agent/__main__.py) when that is there: Python runs a zip as its
   * main script through runpy and zipimport, a share of every start. `exit 90`
   * when neither file is there; the interpreter's own failure (127) when it
   * is missing; the agent's (3) when it is too old: AgentClient.start() then
   * takes the long way.
   */
  spawnInstalled(artifact: Artifact, pythonArgs: (path: string) => string[]): Promise<HostProcess> {
    const path = artifactPath(artifact);
    const python = this.pythonExecutable ?? this.options.python ?? 'python3';
    return this.spawn(['sh', '-c', START_INSTALLED, path, python, ...pythonArgs(path)]);
  }

  python(): Promise<PythonInfo> {
    const interpreter = this.options.python;
    this.pythonInfo ??= this.exec(pythonProbe(interpreter ?? 'python3')).then((r) => {
      const info = requirePython(parsePythonProbe(r), this.role, interpreter);
      this.pythonExecutable = info.executable;
      return info;
    });
    // A failed probe (a lost connection) is asked again next time.
    this.pythonInfo.catch(() => (this.pythonInfo = undefined));
    return this.pythonInfo;
  }

  async close(): Promise<void> {
    this.closedError ??= this.error('SSH_CLOSED', `Connection to ${this.target} is closed`);
    const pending = this.connection;
    this.connection = undefined;
    if (pending) await pending.catch(() => undefined);
    const ended = (c: SshClient | undefined) =>
      new Promise<void>((resolve) => {
        if (!c) return resolve();
        const timer = setTimeout(resolve, 1000);
        c.once('close', () => {
          clearTimeout(timer);
          resolve();
        });
        c.end();
      });
    await ended(this.client);
    await ended(this.jumpClient);
    this.client = undefined;
    this.jumpClient = undefined;
  }
}

function describeLost(err: SshLevelError): string {
  if (err.level === 'client-timeout' && /keepalive/i.test(err.message)) {
    return `no answer to ${KEEPALIVE_COUNT_MAX} keepalives, ${seconds(KEEPALIVE_INTERVAL_MS)} apart`;
  }
  return err.code ? `${err.code} (${ERRNO_WORDS[err.code] ?? err.message})` : err.message;
}

function sftpWrite(sftp: SFTPWrapper, path: string, data: Buffer, mode: number): Promise<void> {
  return new Promise((resolve, reject) => {
    sftp.writeFile(path, data, { mode }, (err) => {
      if (err) return reject(err);
      // The open mode is masked by the server's umask and ignored for an existing file.
      sftp.chmod(path, mode, (err2) => (err2 ? reject(err2) : resolve()));
    });
  });
}
