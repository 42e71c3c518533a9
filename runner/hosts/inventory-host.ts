// What every inventory reader produces (lab's own format, Ansible INI or
// YAML): hosts by name, each with how to reach it, and groups of host names,
// plus the value rules both readers share.

import type { SshEndpoint } from './ssh.ts';

export interface InventoryHost extends SshEndpoint {
  /** the host's name in the inventory (lab's format: the key under `hosts`) */
  name: string;
  /** the address other hosts reach this one on for lab traffic */
  labAddress: string;
  jump?: SshEndpoint;
  sudo: boolean;
  /** the interface IP aliases go on */
  interface?: string;
  /** addresses the lab may add as IP aliases, in order */
  aliases: string[];
  /** a namespace on this machine (`lab hosts up`): global sysctls are the controller's */
  local: boolean;
  /** where the host is defined, "file:line:col", for messages */
  where: string;
  /** the host's own variables (not connection settings), as strings: what `--each` gives a lab's templates */
  vars: Record<string, string>;
}

export interface Inventory {
  file: string;
  format: 'lab' | 'ansible-ini' | 'ansible-yaml';
  /** host name -> host, in inventory order */
  hosts: Record<string, InventoryHost>;
  /** group name -> its host names, in inventory order; "all" holds every host */
  groups: Record<string, string[]>;
}

export const MAX_CONNECT_TIMEOUT_MS = 5 * 60_000;
export const INTERFACE_NAME = /^[A-Za-z0-9_.-]{1,15}$/;
export const HOST_NAME = /^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?$/;
export const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;
/** POSIX-portable user names (and Samba's trailing "$"): nothing a shell or ssh would read twice. */
export const USER_NAME = /^[A-Za-z0-9_][A-Za-z0-9_.-]*\$?$/;
