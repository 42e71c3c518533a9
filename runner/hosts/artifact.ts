// Content-addressed files a host runs (the agent zipapp): kept under one
// directory, named by their hash, so each host receives each version once.
// A namespace shares this machine's file system, so for local hosts "the
// host's copy" is this machine's cache; an SSH host gets an upload.

import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, rename, rm, utimes, writeFile } from 'node:fs/promises';
import { HostError } from '../errors.ts';
import type { Artifact, Transport } from './transport.ts';

/** Where every host (this machine included) keeps artifacts. */
export const ARTIFACT_DIR = '/var/tmp/lab-agent';

export function artifactPath(artifact: Artifact, dir = ARTIFACT_DIR): string {
  return `${dir}/${artifact.name}`;
}

/**
 * On this machine: write the artifact unless it is there (then mark it used
 * now), through a temporary file and a rename, so a reader (another run, at the
 * same moment) never sees half a file.
 */
export async function installLocal(artifact: Artifact, dir = ARTIFACT_DIR): Promise<string> {
  const path = artifactPath(artifact, dir);
  if (existsSync(path)) {
    // Used now: what keeps it from an agent's prune of the directory (lab_agent/cache.py).
    await utimes(path, new Date(), new Date()).catch(() => undefined);
    return path;
  }
  await mkdir(dir, { recursive: true });
  const temp = `${path}.${randomBytes(6).toString('hex')}.tmp`;
  try {
    await writeFile(temp, artifact.bytes, { mode: 0o644 });
    await rename(temp, path);
  } finally {
    await rm(temp, { force: true });
  }
  return path;
}

/**
 * On a host reached by commands: one `test -f` when the artifact is there;
 * otherwise upload it beside its final name and move it into place, so an
 * upload cut short never leaves a file that looks complete.
 */
export async function installOverExec(host: Pick<Transport, 'role' | 'exec' | 'putFile'>, artifact: Artifact, dir = ARTIFACT_DIR): Promise<string> {
  const path = artifactPath(artifact, dir);
  const have = await host.exec(['test', '-f', path]);
  if (have.code === 0) return path;
  const temp = `${path}.${randomBytes(6).toString('hex')}.tmp`;
  await host.putFile(temp, artifact.bytes, 0o644);
  const moved = await host.exec(['mv', '-f', temp, path]);
  if (moved.code !== 0) {
    await host.exec(['rm', '-f', temp]).catch(() => undefined);
    throw new HostError('HOST_INSTALL', `Cannot move "${temp}" to "${path}": ${moved.stderr.trim() || `exit code ${moved.code ?? moved.signal}`}`, host.role);
  }
  return path;
}
