// What an idle TCP connection costs the kernel: the slab objects each side
// allocates, priced with this kernel's own object sizes (the prediction), and
// the least-squares fit of measured slab memory against connections held,
// attributed by cache (the observation). Pure functions: no I/O.

import type { HostFacts } from '../result.ts';

/** Which side of a connection allocates an object. */
export type Side = 'client' | 'server';

/** One kind of kernel object a connection needs, and why. */
export interface ConnectionObject {
  /** the slab cache the kernel creates for it (kmem_cache_create name) */
  cache: string;
  /** how many each side allocates per connection */
  perSide: Record<Side, number>;
  why: string;
}

/**
 * The objects an idle, established TCP connection holds, per side (read from
 * net/socket.c, net/ipv4/inet_connection_sock.c, inet_hashtables.c,
 * security/security.c; counted on 6.18 with `labs/memory-per-conn.yaml`).
 * socket() and accept() each make a socket inode, a file and a dentry; both
 * sides hold a full struct tcp_sock (the accepted one is cloned from the
 * listener at the handshake's last ACK). Only the connecting side owns a local
 * port, so only it holds the port's bind buckets. The LSM blobs exist only on
 * kernels whose security modules ask for them (the caches are then present).
 */
export const CONNECTION_OBJECTS: readonly ConnectionObject[] = [
  { cache: 'TCP', perSide: { client: 1, server: 1 }, why: 'struct tcp_sock, the socket itself' },
  { cache: 'sock_inode_cache', perSide: { client: 1, server: 1 }, why: 'struct socket + its inode (socket(), accept())' },
  { cache: 'filp', perSide: { client: 1, server: 1 }, why: 'struct file behind the fd' },
  { cache: 'dentry', perSide: { client: 1, server: 1 }, why: 'the sockfs dentry of that file' },
  { cache: 'lsm_inode_cache', perSide: { client: 1, server: 1 }, why: 'the security modules\' blob of the inode' },
  { cache: 'lsm_file_cache', perSide: { client: 1, server: 1 }, why: 'the security modules\' blob of the file' },
  { cache: 'tcp_bind_bucket', perSide: { client: 1, server: 0 }, why: 'the local port\'s bind bucket (per port)' },
  { cache: 'tcp_bind2_bucket', perSide: { client: 1, server: 0 }, why: 'the local port+address bind bucket (6.1+)' },
];

/**
 * What a connection closed first by this host leaves for 60 s in TIME_WAIT
 * (net/ipv4/inet_timewait_sock.c): the full socket, its inode, file and
 * dentry are freed, and a small inet_timewait_sock takes its place in the
 * hash tables. It keeps the local port's bind buckets, which the connection
 * already held: the close adds no bucket, so only tw_sock_TCP is new (the
 * fit brackets the close). Only the side that closed first has one ("client"
 * here means that side).
 */
export const TIME_WAIT_OBJECTS: readonly ConnectionObject[] = [
  { cache: 'tw_sock_TCP', perSide: { client: 1, server: 0 }, why: 'struct tcp_timewait_sock, what is left of the socket' },
];

/** The figure classic articles give for a TIME_WAIT socket, shown beside this kernel's. */
export const CLASSIC_TIME_WAIT_BYTES = {
  value: 400,
  source: '≈0.4 KB per TIME_WAIT socket, the figure classic articles quote for 3.x kernels (tw_sock_TCP and its share of the hash tables)',
};

/**
 * Caches that grow while connections are held for reasons outside the lab:
 * something listing /proc/<pid>/fd (a monitor, `ls`, `lsof`) makes a proc
 * inode per fd it sees, and each comes with a dentry and an LSM inode blob.
 * Those go to "other", with the dentries and blobs they brought.
 */
export const PROC_INODE_CACHE = 'proc_inode_cache';
const PROC_INODE_COMPANIONS = ['dentry', 'lsm_inode_cache'];

/** The published figure the classic articles quote, shown beside this kernel's prediction. */
export const CLASSIC_SOCKET_BYTES = {
  value: 3300,
  source:
    '≈3.3 KB per idle socket on Linux 3.10 (CentOS 7), Zhang Yanfei, "How many TCP connections can one Linux server hold" — a different kernel: struct tcp_sock and its companions have grown since',
};

/**
 * Where a cache's objects are counted in /proc/slabinfo. SLUB merges caches
 * of one size and flags (e.g. tcp_bind_bucket and tcp_bind2_bucket into the
 * 128-byte cache that slabinfo lists as eventpoll_epi on 6.18), and slabinfo
 * lists only the cache that carries them. undefined: the kernel has no such cache.
 */
export function slabCarrier(facts: Pick<HostFacts, 'slabObjectSize' | 'slabAliases'>, cache: string): string | undefined {
  if (cache in facts.slabObjectSize) return cache;
  const carrier = facts.slabAliases?.[cache];
  return carrier !== undefined && carrier in facts.slabObjectSize ? carrier : undefined;
}

export interface PricedObject extends ConnectionObject {
  carrier: string;
  bytes: number;
}

/** The connection's objects this kernel has, each priced with its carrier's object size. */
export function pricedObjects(
  facts: Pick<HostFacts, 'slabObjectSize' | 'slabAliases'>,
  objects: readonly ConnectionObject[] = CONNECTION_OBJECTS,
): { priced: PricedObject[]; missing: string[] } {
  const priced: PricedObject[] = [];
  const missing: string[] = [];
  for (const o of objects) {
    const carrier = slabCarrier(facts, o.cache);
    if (carrier === undefined) missing.push(o.cache);
    else priced.push({ ...o, carrier, bytes: facts.slabObjectSize[carrier]! });
  }
  return { priced, missing };
}

const round1 = (n: number) => Math.round(n * 10) / 10;

/** Predicted slab bytes per connection on one kernel: what each side holds, and both. */
export function predictedBytes(
  facts: Pick<HostFacts, 'slabObjectSize' | 'slabAliases'>,
  objects: readonly ConnectionObject[] = CONNECTION_OBJECTS,
): {
  client: number;
  server: number;
  priced: PricedObject[];
  missing: string[];
} {
  const { priced, missing } = pricedObjects(facts, objects);
  const side = (s: Side) => round1(priced.reduce((n, o) => n + o.perSide[s] * o.bytes, 0));
  return { client: side('client'), server: side('server'), priced, missing };
}

/** "TCP 2368 + sock_inode_cache 832 + …" for one side; an object not one per connection shows its share ("0.0323 × 128"). */
export function objectsFormula(priced: PricedObject[], side: Side): string {
  return priced
    .filter((o) => o.perSide[side] > 0)
    .map((o) => `${o.cache}${o.carrier !== o.cache ? ` (in ${o.carrier})` : ''} ${o.perSide[side] !== 1 ? `${o.perSide[side]} × ` : ''}${o.bytes}`)
    .join(' + ');
}

// ---------------------------------------------------------------- bind buckets

/** Connections of one (source address, destination) pair of a connecting host, as the bind-bucket count needs them. */
export interface PortPair {
  /** the source address (any key naming it) */
  source: string;
  /**
   * the destination address and port (any key naming them): pairs of one
   * source and destination (connect steps one after another) share one 4-tuple
   * space, so their connections take one window of ports, not overlapping ones
   */
  destination?: string;
  connections: number;
  /** 'reuseaddr': every connection of the pair shares this one bound port */
  port?: number;
  /** 'ip': the port is chosen at bind(), per source address, whatever the destination */
  perSource?: boolean;
}

export interface BucketShares {
  connections: number;
  /** tcp_bind_bucket: one per local port in use (any address) */
  ports: number;
  /** tcp_bind2_bucket: one per local port and address in use */
  portAddresses: number;
  /** per connection, rounded to 4 significant digits */
  perPort: number;
  perPortAddress: number;
}

/** The ports one pair (or one source, for bind()) takes: how many, and which parity it tries first. */
export interface PortWindow {
  ports: number;
  /** bind() tries the other parity first (inet_csk_find_open_port) */
  bind?: boolean;
}

/**
 * The ports `windows` take together out of a range of `range` ports, expected.
 * The kernel tries the ports of one parity first, from an offset hashed from the
 * addresses (connect(): __inet_hash_connect; bind(): inet_csk_find_open_port,
 * the other parity), and spills into the other half only when the first is
 * used up. Windows of different pairs start at unrelated offsets, so a port of
 * a half is in none of them with probability Π(1 − mᵢ/half).
 */
export function expectedPortsInUse(windows: PortWindow[], range: number): number {
  const connectHalf = Math.ceil(range / 2);
  const bindHalf = range - connectHalf;
  const union = (half: number, takes: number[]) => (half > 0 ? half * (1 - takes.reduce((p, m) => p * (1 - Math.min(m, half) / half), 1)) : 0);
  // What each window takes from the connect() half and from the bind() half.
  const split = windows.map(({ ports, bind }) => {
    const m = Math.min(ports, range);
    const [first, second] = bind ? [bindHalf, connectHalf] : [connectHalf, bindHalf];
    const inFirst = Math.min(m, first);
    const inSecond = Math.min(m - inFirst, second);
    return bind ? { c: inSecond, b: inFirst } : { c: inFirst, b: inSecond };
  });
  return union(connectHalf, split.map((x) => x.c)) + union(bindHalf, split.map((x) => x.b));
}

/**
 * Shares from counts: a bucket of each kind per connection at most; with nothing
 * to count (no connection, no port to take), one of each, the most it can be.
 */
function toShares(connections: number, ports: number, portAddresses: number, countable = true): BucketShares {
  const share = (n: number) => (connections > 0 && countable ? Number(Math.min(1, n / connections).toPrecision(4)) : 1);
  return {
    connections: Math.round(connections),
    ports: Math.round(ports),
    portAddresses: Math.round(portAddresses),
    perPort: share(ports),
    perPortAddress: share(portAddresses),
  };
}

/** The shares of connections held in several network namespaces of one kernel (each has its own buckets). */
export function sumBucketShares(list: BucketShares[]): BucketShares {
  const sum = (k: 'connections' | 'ports' | 'portAddresses') => list.reduce((n, s) => n + s[k], 0);
  return toShares(sum('connections'), sum('ports'), sum('portAddresses'));
}

/**
 * How many bind buckets a connecting host's connections hold, per connection.
 * One source talking to one destination gives each connection a port of its
 * own (a bucket of each kind per connection). Many sources share port numbers:
 * 1,000,000 connections from 32 addresses use the 32256 ports of one parity
 * between them, so tcp_bind_bucket is 0.032 per connection while
 * tcp_bind2_bucket (port and address) stays one. A pair holds at most what its
 * ports allow (the range for connect() and bind(), one connection for a shared
 * SO_REUSEADDR port), so a count above that is priced at what it can hold.
 */
export function bindBucketShares(pairs: PortPair[], range: number): BucketShares {
  const chosen = pairs.filter((p) => p.port === undefined);
  const bound = pairs.filter((p) => p.port !== undefined);
  // bind() picks one port per connection for its source, whatever the destination: one window per source.
  // connect() picks one per 4-tuple: one window per source and destination.
  const windows = (list: PortPair[]): PortWindow[] => {
    const merged = new Map<string, PortWindow>();
    const out: PortWindow[] = [];
    for (const p of list) {
      const key = p.perSource ? `s ${p.source}` : p.destination !== undefined ? `d ${p.source} ${p.destination}` : undefined;
      const w = key === undefined ? undefined : merged.get(key);
      if (w) w.ports += p.connections;
      else {
        const fresh = { ports: p.connections, ...(p.perSource ? { bind: true } : {}) };
        if (key === undefined) out.push(fresh);
        else merged.set(key, fresh);
      }
    }
    return [...out, ...merged.values()].map((w) => ({ ...w, ports: Math.min(w.ports, Math.max(0, range)) }));
  };
  // One connection per source and destination on a shared port (a pair without a destination is a destination of its own).
  const sharing = new Set(bound.filter((p) => p.connections > 0).map((p, i) => `${p.source} ${p.destination ?? `#${i}`} ${p.port}`));
  const all = windows(chosen);
  const connections = all.reduce((n, w) => n + w.ports, 0) + sharing.size;
  const sources = [...new Set(chosen.map((p) => p.source))];
  const ports = expectedPortsInUse(all, range) + new Set(bound.filter((p) => p.connections > 0).map((p) => p.port)).size;
  const portAddresses =
    sources.reduce((n, s) => n + expectedPortsInUse(windows(chosen.filter((p) => p.source === s)), range), 0) +
    new Set(bound.filter((p) => p.connections > 0).map((p) => `${p.source} ${p.port}`)).size;
  return toShares(connections, ports, portAddresses, range > 0);
}

/** CONNECTION_OBJECTS with the bind buckets at their share per connection. */
export function withBucketShares(shares: Pick<BucketShares, 'perPort' | 'perPortAddress'>, objects: readonly ConnectionObject[] = CONNECTION_OBJECTS): ConnectionObject[] {
  const share: Record<string, number> = { tcp_bind_bucket: shares.perPort, tcp_bind2_bucket: shares.perPortAddress };
  return objects.map((o) => (o.cache in share ? { ...o, perSide: { ...o.perSide, client: share[o.cache]! } } : o));
}

// ---------------------------------------------------------------- the fit

/** One snapshot as the fit needs it. */
export interface FitPoint {
  /** connections the lab held when the snapshot was taken */
  connections: number;
  /** cache -> active objects and object size (bytes), from /proc/slabinfo */
  slab: Record<string, { activeObjs: number; objSize: number }>;
  /** /proc/meminfo in KiB */
  meminfo: Record<string, number>;
  /** /proc/net/sockstat "TCP: alloc": TCP sockets allocated on the whole kernel, every namespace */
  tcpAlloc?: number;
  /** connections the lab held, when `connections` counts something else (TIME_WAIT sockets) */
  held?: number;
  /** /proc/net/sockstat "TCP: mem" in bytes (pages × page size): socket buffers of the whole kernel */
  tcpMemBytes?: number;
}

export interface CacheCost {
  cache: string;
  /** objects per connection (slope) */
  objects: number;
  /** bytes per connection (slope) */
  bytes: number;
}

export interface MemoryFit {
  points: number;
  /** bytes per connection in the caches a connection's objects live in, proc inodes' share removed */
  bytesPerConnection: number;
  /** per socket of each side, when the measured kernel holds that side; null when it does not */
  clientBytesPerSocket: number | null;
  serverBytesPerSocket: number | null;
  /** bytes per connection in every other cache (and the proc inodes' dentries and blobs) */
  otherBytesPerConnection: number;
  /** every cache's bytes per connection: attributed + other */
  rawBytesPerConnection: number;
  /** the slope of /proc/meminfo Slab, and SUnreclaim, in bytes per connection */
  slabBytesPerConnection: number;
  sunreclaimBytesPerConnection: number;
  /** root-mean-square distance of the attributed bytes from the fitted line, as % of the line's rise */
  residualPercent: number;
  residualBytes: number;
  /**
   * TCP sockets something else allocated or freed on this kernel while the
   * lab ramped: the largest distance, over the snapshots, between the growth of
   * "TCP: alloc" and the sockets the lab's own connections account for. They
   * move the same caches as the lab's, so a fit is only as good as this is small.
   */
  foreignSockets: number;
  /** true when the fit took the foreign sockets as a second variable, so they do not count as the lab's */
  foreignCorrected: boolean;
  /** what the fit found one foreign socket costs (a check: about one end of a connection), when corrected */
  foreignBytesPerSocket: number | null;
  /** the slope of "TCP: mem" (socket buffer memory, pages × page size) in bytes per connection; null when a snapshot lacks it */
  bufferBytesPerConnection: number | null;
  /** attributed caches, largest first */
  attributed: CacheCost[];
  /** other caches that moved by at least 1 byte per connection, largest first */
  other: CacheCost[];
}

/** Least-squares slope and intercept of y on x. */
export function leastSquares(x: number[], y: number[]): { slope: number; intercept: number } {
  const n = x.length;
  const mx = x.reduce((a, b) => a + b, 0) / n;
  const my = y.reduce((a, b) => a + b, 0) / n;
  let sxy = 0;
  let sxx = 0;
  for (let i = 0; i < n; i++) {
    sxy += (x[i]! - mx) * (y[i]! - my);
    sxx += (x[i]! - mx) ** 2;
  }
  const slope = sxx === 0 ? 0 : sxy / sxx;
  return { slope, intercept: my - slope * mx };
}

/**
 * Fit slab bytes against connections held. Caches that carry a connection's
 * objects are attributed; proc inodes made by whoever lists /proc/*\/fd meanwhile,
 * with their dentries and LSM blobs, and every other cache are "other".
 * `sides` says which sides of the connections the measured kernel holds.
 */
export function fitMemory(
  points: FitPoint[],
  facts: Pick<HostFacts, 'slabObjectSize' | 'slabAliases'>,
  sides: Record<Side, boolean>,
  objects: readonly ConnectionObject[] = CONNECTION_OBJECTS,
  /** full sockets per connection the lab holds on this kernel (1 or 2): what "TCP: alloc" owes the lab */
  socketsPerHeld = (sides.client ? 1 : 0) + (sides.server ? 1 : 0),
): MemoryFit {
  if (points.length < 2) throw new Error('A memory fit needs two snapshots at least');
  const x = points.map((p) => p.connections);
  if (new Set(x).size < 2) throw new Error(`A memory fit needs snapshots at two counts at least: every snapshot had ${x[0]}`);
  const { priced } = pricedObjects(facts, objects);
  const carriers = [...new Set(priced.map((o) => o.carrier))];
  const objs = (p: FitPoint, c: string) => p.slab[c]?.activeObjs ?? 0;
  const size = (c: string) => points.find((p) => p.slab[c])?.slab[c]?.objSize ?? 0;
  // Objects of each attributed cache at each point, proc inodes' companions taken out.
  const attributedObjs = (p: FitPoint, c: string) =>
    objs(p, c) - (PROC_INODE_COMPANIONS.includes(c) && PROC_INODE_CACHE in p.slab ? objs(p, PROC_INODE_CACHE) : 0);

  // Sockets something else made or freed meanwhile ("TCP: alloc" is the kernel's, the lab's are known;
  // TIME_WAIT sockets are not full sockets and not in it).
  const p0 = points[0]!;
  const counted = points.every((p) => p.tcpAlloc !== undefined);
  const held = (p: FitPoint) => p.held ?? p.connections;
  const foreign = points.map((p) => (counted ? p.tcpAlloc! - p0.tcpAlloc! - socketsPerHeld * (held(p) - held(p0)) : 0));
  const foreignSockets = Math.max(...foreign.map(Math.abs));
  // With enough points, and foreign sockets that did not rise in step with the
  // lab's, each cache is fitted on both: the lab's connections' slope is then
  // what they cost, the foreign sockets' what one of those cost.
  const corrected = foreignSockets > 0 && points.length >= MIN_POINTS_TO_CORRECT && separable(x, foreign);
  const fitOf = (y: number[]) => (corrected ? leastSquares2(x, foreign, y) : { ...leastSquares(x, y), slopeF: 0 });
  const slope = (f: (p: FitPoint) => number) => fitOf(points.map(f));

  const caches = new Set<string>();
  for (const p of points) for (const c of Object.keys(p.slab)) caches.add(c);
  let foreignBytes = 0;
  const attributed: CacheCost[] = carriers.map((c) => {
    const f = slope((p) => attributedObjs(p, c));
    foreignBytes += f.slopeF * size(c);
    return { cache: c, objects: f.slope, bytes: f.slope * size(c) };
  });
  const other: CacheCost[] = [];
  let raw = 0;
  for (const c of caches) {
    const o = slope((p) => objs(p, c)).slope;
    raw += o * size(c);
    if (carriers.includes(c)) {
      const extra = o - attributed.find((a) => a.cache === c)!.objects;
      if (Math.abs(extra * size(c)) >= 1) other.push({ cache: `${c} of proc inodes`, objects: extra, bytes: extra * size(c) });
    } else if (Math.abs(o * size(c)) >= 1) other.push({ cache: c, objects: o, bytes: o * size(c) });
  }
  const bytes = attributed.reduce((n, a) => n + a.bytes, 0);

  // The residual of the attributed total around its fit.
  const y = points.map((p) => carriers.reduce((n, c) => n + attributedObjs(p, c) * size(c), 0));
  const line = fitOf(y);
  const rms = Math.sqrt(y.reduce((n, yi, i) => n + (yi - (line.intercept + line.slope * x[i]! + line.slopeF * foreign[i]!)) ** 2, 0) / y.length);
  const rise = Math.abs(line.slope) * (Math.max(...x) - Math.min(...x));

  // Each carrier's bytes go to the sides in the proportion their objects predict.
  const sideBytes = (side: Side) =>
    attributed.reduce((n, a) => {
      const inCarrier = priced.filter((o) => o.carrier === a.cache);
      const total = inCarrier.reduce((m, o) => m + (sides.client ? o.perSide.client : 0) + (sides.server ? o.perSide.server : 0), 0);
      const mine = inCarrier.reduce((m, o) => m + o.perSide[side], 0);
      return total ? n + (a.bytes * mine) / total : n;
    }, 0);

  const memSlope = (k: string) => slope((p) => (p.meminfo[k] ?? 0) * 1024).slope;
  const byBytes = (a: CacheCost, b: CacheCost) => Math.abs(b.bytes) - Math.abs(a.bytes);
  return {
    points: points.length,
    bytesPerConnection: round1(bytes),
    clientBytesPerSocket: sides.client ? round1(sideBytes('client')) : null,
    serverBytesPerSocket: sides.server ? round1(sideBytes('server')) : null,
    otherBytesPerConnection: round1(raw - bytes),
    rawBytesPerConnection: round1(raw),
    slabBytesPerConnection: round1(memSlope('Slab')),
    sunreclaimBytesPerConnection: round1(memSlope('SUnreclaim')),
    residualPercent: rise ? Math.round((rms / rise) * 10000) / 100 : 0,
    residualBytes: Math.round(rms),
    foreignSockets,
    foreignCorrected: corrected,
    foreignBytesPerSocket: corrected ? round1(foreignBytes) : null,
    // Plainly on connections: idle sockets of others hold no buffers, so there is nothing foreign to take out.
    bufferBytesPerConnection: points.every((p) => p.tcpMemBytes !== undefined)
      ? round1(leastSquares(x, points.map((p) => p.tcpMemBytes!)).slope)
      : null,
    attributed: attributed.map((a) => ({ ...a, objects: Math.round(a.objects * 1000) / 1000, bytes: round1(a.bytes) })).sort(byBytes),
    other: other.map((a) => ({ ...a, objects: Math.round(a.objects * 1000) / 1000, bytes: round1(a.bytes) })).sort(byBytes),
  };
}

/** Points needed to fit on connections and foreign sockets together and keep a residual. */
export const MIN_POINTS_TO_CORRECT = 4;

/** True when x and f vary apart enough to fit both (squared correlation below 0.9). */
function separable(x: number[], f: number[]): boolean {
  const { sxx, sff, sxf } = moments(x, f, f);
  return sxx > 0 && sff > 0 && (sxf * sxf) / (sxx * sff) < 0.9;
}

function moments(x: number[], f: number[], y: number[]) {
  const n = x.length;
  const mean = (v: number[]) => v.reduce((a, b) => a + b, 0) / n;
  const [mx, mf, my] = [mean(x), mean(f), mean(y)];
  let sxx = 0, sff = 0, sxf = 0, sxy = 0, sfy = 0;
  for (let i = 0; i < n; i++) {
    const [dx, df, dy] = [x[i]! - mx, f[i]! - mf, y[i]! - my];
    sxx += dx * dx;
    sff += df * df;
    sxf += dx * df;
    sxy += dx * dy;
    sfy += df * dy;
  }
  return { mx, mf, my, sxx, sff, sxf, sxy, sfy };
}

/** Least squares of y on x and f together: y ≈ intercept + slope·x + slopeF·f. */
export function leastSquares2(x: number[], f: number[], y: number[]): { slope: number; slopeF: number; intercept: number } {
  const m = moments(x, f, y);
  const det = m.sxx * m.sff - m.sxf * m.sxf;
  const slope = (m.sff * m.sxy - m.sxf * m.sfy) / det;
  const slopeF = (m.sxx * m.sfy - m.sxf * m.sxy) / det;
  return { slope, slopeF, intercept: m.my - slope * m.mx - slopeF * m.mf };
}

// ---------------------------------------------------------------- sides

type KernelFacts = Pick<HostFacts, 'hostname' | 'kernel' | 'memTotalKiB' | 'bootId'>;

/**
 * Two hosts run on one kernel (namespaces of one machine) when their boot ids
 * match; agents without a boot id are compared by hostname, kernel and memory.
 */
export function sameKernel(a: KernelFacts, b: KernelFacts): boolean {
  if (a.bootId && b.bootId) return a.bootId === b.bootId;
  return a.hostname === b.hostname && a.kernel === b.kernel && a.memTotalKiB === b.memTotalKiB;
}

/**
 * Whether the agent opens files past fs.file-max: alloc_empty_file() lets
 * CAP_SYS_ADMIN (of the first user namespace) past it, so for such an agent
 * it is no ceiling. Agents that do not say are judged by their uid.
 */
export function passesFileMax(f: Pick<HostFacts, 'uid' | 'fileMaxExempt'>): boolean {
  return f.fileMaxExempt ?? f.uid === 0;
}

/**
 * Which sides of a lab's connections a host's slab holds: the client side when
 * it connects (or shares its kernel with a host that does), the server side
 * when it is connected to (or shares a kernel with such a host).
 */
export function sidesOn(
  host: string,
  connects: Array<{ host: string; to: Array<{ role: string }> }>,
  facts: Record<string, KernelFacts>,
): Record<Side, boolean> {
  const holds = (roles: string[]) =>
    roles.some((r) => r === host || (facts[r] && facts[host] && sameKernel(facts[r]!, facts[host]!)));
  return {
    client: holds(connects.map((c) => c.host)),
    server: holds(connects.flatMap((c) => c.to.map((d) => d.role))),
  };
}
