// What data in flight costs: the socket buffer memory the kernel charges for
// bytes a peer wrote and nobody read, as /proc/net/sockstat counts it ("TCP:
// mem", in pages). The prediction prices the one sk_buff that carries each
// connection's data with this kernel's own object sizes, and rounds each
// socket's charge up to whole pages, as the kernel does. Pure: no I/O.

import type { HostFacts } from '../result.ts';
import type { ModelContext, ModelOutput } from './connections.ts';
import { ModelNotApplicable } from './connections.ts';
import { sidesOn, slabCarrier } from './memory.ts';

/**
 * The kernel's rule for the truesize of the sk_buff tcp_sendmsg() fills
 * (tcp_stream_alloc_skb: alloc_skb_fclone(MAX_TCP_HEADER), then
 * truesize = SKB_TRUESIZE(skb_end_offset) + the bytes copied into its page
 * frags). The head comes from skbuff_small_head (6.3+), whose object is
 * SKB_DATA_ALIGN(MAX_TCP_HEADER) + SKB_DATA_ALIGN(sizeof(skb_shared_info));
 * SKB_TRUESIZE adds SKB_DATA_ALIGN(sizeof(struct sk_buff)), the object of
 * skbuff_head_cache. Over a veth (or loopback) the receiver queues the very
 * clone the sender transmitted, truesize and all, so it is what the receiving
 * socket is charged (measured on 6.18: 4096 B arrive as truesize 4928 = 4096
 * + 576 + 256).
 */
export const SKB_HEAD_CACHES = ['skbuff_small_head', 'skbuff_head_cache'] as const;

/**
 * The first flight: TCP_INIT_CWND (10) segments of a 1500-byte MTU's MSS with
 * timestamps (1448 B). Data up to this goes out at once as one sk_buff (TSO/GSO
 * over a veth: no segmentation); more is split where the window ends, into
 * more sk_buffs, each with its own overhead, which this model does not count.
 */
export const FIRST_FLIGHT_BYTES = 10 * 1448;

/** SK_MEMORY_PCPU_RESERVE: 1 MiB of pages, the per-CPU slack before net.core.mem_pcpu_rsv made it a sysctl. */
const DEFAULT_PCPU_RESERVE_BYTES = 1 << 20;

type BufferFacts = Pick<HostFacts, 'slabObjectSize' | 'slabAliases' | 'pageSize' | 'tcpRmem' | 'tcpWmem' | 'tcpMem' | 'memPcpuRsv' | 'cpus' | 'kernel'>;

/** The truesize of an sk_buff carrying `bytes` of a single write, from this kernel's object sizes; undefined when it lacks the caches. */
export function skbTruesize(facts: BufferFacts, bytes: number): { truesize: number; formula: string } | undefined {
  const sizes: number[] = [];
  for (const c of SKB_HEAD_CACHES) {
    const carrier = slabCarrier(facts, c);
    if (carrier === undefined) return undefined;
    sizes.push(facts.slabObjectSize[carrier]!);
  }
  const [head, skb] = sizes as [number, number];
  return { truesize: bytes + head + skb, formula: `${bytes} data + skbuff_small_head ${head} + skbuff_head_cache ${skb}` };
}

/** The pages a socket holding `truesize` is charged: sk_mem_schedule() takes whole pages, and sk_mem_reclaim() gives back only whole pages. */
export function chargedPages(truesize: number, pageSize: number): number {
  return Math.ceil(truesize / pageSize);
}

/** How far "TCP: mem" may lag the truth at one read: each CPU's unflushed pages (net.core.mem_pcpu_rsv − 1). */
export function counterSlackPages(facts: Pick<HostFacts, 'memPcpuRsv' | 'cpus' | 'pageSize'>): number {
  const rsv = facts.memPcpuRsv ?? DEFAULT_PCPU_RESERVE_BYTES / (facts.pageSize ?? 4096);
  return facts.cpus * Math.max(0, rsv - 1);
}

/**
 * Buffer memory per connection with `send` bytes written by the connecting
 * side and never read by the accepting side: the receiver holds one sk_buff of
 * truesize = send + the head's overhead, charged in whole pages; the sender's
 * copy is freed when the receiver ACKs it (microseconds on one machine), and
 * its charge, a whole number of pages, goes back whole.
 */
export function bufferMemory(ctx: ModelContext): ModelOutput {
  if (ctx.step.kind !== 'fit') throw new ModelNotApplicable(`Model "buffer-memory" applies to fit steps, not "${ctx.step.kind}"`);
  if (ctx.metric !== 'bufferBytesPerConnection') throw new ModelNotApplicable(`Model "buffer-memory" predicts "bufferBytesPerConnection", not "${ctx.metric}"`);
  if (ctx.step.per !== 'connection') throw new ModelNotApplicable('Model "buffer-memory" predicts a fit per connection, not per TIME_WAIT socket');
  const host = ctx.step.host;
  const facts = ctx.facts[host];
  if (!facts) throw new ModelNotApplicable(`No facts for host "${host}"`);
  const before = ctx.steps.slice(0, ctx.steps.findIndex((s) => s.name === ctx.step.name));
  const connects = before.filter((s): s is Extract<typeof s, { kind: 'connect' }> => s.kind === 'connect');
  const sending = connects.filter((c) => c.send);
  if (!sending.length) throw new ModelNotApplicable('Model "buffer-memory" needs a connect step with "send" before the fit');
  const sizes = new Set(sending.map((c) => c.send!));
  if (sizes.size > 1 || sending.length !== connects.length) {
    throw new ModelNotApplicable('Model "buffer-memory" needs every connect before the fit to send the same number of bytes');
  }
  const send = sending[0]!.send!;
  if (send > FIRST_FLIGHT_BYTES) {
    throw new ModelNotApplicable(`Model "buffer-memory" prices one sk_buff per connection: "send" must be at most the first flight, ${FIRST_FLIGHT_BYTES} B (10 × MSS 1448), got ${send}`);
  }
  const pageSize = facts.pageSize;
  if (!pageSize) throw new ModelNotApplicable(`The agent on "${host}" does not report the page size: it predates the model`);
  const skb = skbTruesize(facts, send);
  if (!skb) throw new ModelNotApplicable(`${facts.kernel} on "${host}" has no ${SKB_HEAD_CACHES.join(' and ')} slab caches: the model knows the sk_buff head of 6.3+ kernels`);
  const sides = sidesOn(host, connects, ctx.facts);
  const pages = chargedPages(skb.truesize, pageSize);
  const receiver = sides.server ? pages * pageSize : 0;
  const rmem = facts.tcpRmem ?? [];
  const wmem = facts.tcpWmem ?? [];
  const mem = facts.tcpMem ?? [];
  const count = sending.reduce((n, c) => n + c.count, 0);
  const notes: string[] = [];
  if (rmem[1] !== undefined) notes.push(`truesize ${skb.truesize} ≤ the receive buffer (tcp_rmem default ${rmem[1]}): queued whole, nothing pruned`);
  if (wmem[1] !== undefined) notes.push(`send ${send} ≤ tcp_wmem default ${wmem[1]}: one write, no wait`);
  if (mem[0] !== undefined) notes.push(`${count} × ${pages} pages = ${count * pages} ≤ tcp_mem ${mem[0]} pages: no memory pressure`);
  // tcp_mem and mem_pcpu_rsv are machine-wide: a network namespace other than the first does not show them.
  else notes.push(`tcp_mem (machine-wide) is not readable on ${host}: ${count * pages} pages assumed below its pressure threshold`);
  if (rmem[1] !== undefined && skb.truesize > rmem[1]) throw new ModelNotApplicable(`truesize ${skb.truesize} exceeds the receive buffer (tcp_rmem default ${rmem[1]}): the kernel would prune or drop`);
  if (mem[0] !== undefined && count * pages > mem[0]) throw new ModelNotApplicable(`${count * pages} pages exceed tcp_mem's pressure threshold ${mem[0]}: under pressure the kernel trims buffers`);
  const receiverText = sides.server
    ? `receiver: one sk_buff, truesize ${skb.formula} = ${skb.truesize} B, charged in whole pages: ⌈${skb.truesize} ÷ ${pageSize}⌉ = ${pages} pages = ${receiver} B`
    : 'receiver: on another kernel (not counted here)';
  const senderText = sides.client ? 'sender: 0 B once the data is ACKed (its copy freed, its whole pages given back)' : 'sender: on another kernel';
  return {
    value: receiver,
    derivation: `${receiverText}; ${senderText}; ${notes.join('; ')}. "TCP: mem" is the sum of per-CPU counters, each flushed only past net.core.mem_pcpu_rsv ${facts.memPcpuRsv ?? `(not readable here: the kernel's default, ${DEFAULT_PCPU_RESERVE_BYTES / pageSize})`} pages, so a read may miss ${counterSlackPages(facts) / Math.max(1, facts.cpus)} pages per CPU (${facts.cpus} CPUs)`,
    explanation:
      `Bytes written and never read wait in the receiver's queue as an sk_buff: the data plus the buffer's overhead, an sk_buff and its head ` +
      `(skbuff_head_cache and skbuff_small_head on ${facts.kernel}, sizes from /proc/slabinfo). The kernel charges socket memory in pages ` +
      '(sk_mem_schedule) and returns only whole pages (sk_mem_reclaim), so each receiving socket holds its truesize rounded up to a page; ' +
      '/proc/net/sockstat\'s "TCP: mem" is the sum over every socket of the kernel, in pages',
  };
}
