// Loads local files in Debian's headless chromium for tests, with every request
// that would leave the page blocked and recorded, and reports what a test needs:
// the requests attempted, console errors and exceptions, dialogs, scripts run,
// and facts read from the laid-out page.
//
// Why the DevTools protocol over --remote-debugging-pipe, and not --dump-dom or
// playwright-core: --dump-dom shows the DOM but neither the requests nor the
// layout, and cannot block anything; playwright-core is 8 MB and pins its own
// browser builds, while the protocol needs no dependency: chromium speaks it on
// fds 3 and 4 as NUL-terminated JSON, and the few commands used here are stable.

import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { Readable, Writable } from 'node:stream';

export const CHROMIUM = '/usr/bin/chromium';

/** Why the browser tests cannot run here, or undefined when they can. */
export function browserUnavailable(): string | undefined {
  if (!existsSync(CHROMIUM)) return `${CHROMIUM} is missing: install Debian's "chromium" (node bin/prereq.mjs --install)`;
  return undefined;
}

export interface OpenOptions {
  /** viewport in CSS pixels; default 1280 × 800 */
  width?: number;
  height?: number;
  /** emulate print media (the page as it prints) */
  media?: 'screen' | 'print';
  /** stop waiting for the load event after this long; default 15 s */
  timeoutMs?: number;
}

export interface PageReport {
  /** the file:// URL loaded */
  url: string;
  /** every request other than the page's own file and data: URLs: each was blocked */
  blockedRequests: string[];
  /** console.error/assert messages, uncaught exceptions and browser log errors */
  consoleErrors: string[];
  /** messages of alert/confirm/prompt dialogs the page opened (each dismissed) */
  dialogs: string[];
  /** scripts the page itself ran (inline, event handlers, javascript: URLs); a report has none */
  scripts: number;
}

export interface Page extends PageReport {
  /** evaluates `expression` (a JS expression, e.g. an IIFE) in the page and returns its JSON value */
  evaluate<T>(expression: string): Promise<T>;
  /** the page printed to PDF, as bytes */
  pdf(): Promise<Uint8Array>;
  /** a PNG of the whole page (or of the viewport), for a person to look at when a layout test fails */
  screenshot(options?: { fullPage?: boolean }): Promise<Uint8Array>;
  close(): Promise<void>;
}

type Message = { id?: number; method?: string; params?: any; result?: any; error?: { message: string }; sessionId?: string };

/** One headless chromium, driven over the DevTools protocol on a pipe. */
export class Browser {
  private nextId = 1;
  private readonly pending = new Map<number, { resolve: (r: any) => void; reject: (e: Error) => void; method: string }>();
  private readonly listeners = new Set<(m: Message) => void>();
  private buffer = '';
  private exited = false;
  private stderr = '';

  private constructor(
    private readonly child: ChildProcess,
    private readonly profile: string,
  ) {
    const input = child.stdio[4] as Readable;
    input.setEncoding('utf8');
    input.on('data', (chunk: string) => {
      this.buffer += chunk;
      let end: number;
      while ((end = this.buffer.indexOf('\0')) >= 0) {
        const message = JSON.parse(this.buffer.slice(0, end)) as Message;
        this.buffer = this.buffer.slice(end + 1);
        this.dispatch(message);
      }
    });
    child.stderr!.on('data', (d) => (this.stderr = (this.stderr + d).slice(-4000)));
    child.on('exit', () => {
      this.exited = true;
      for (const p of this.pending.values()) p.reject(new Error(`chromium exited during ${p.method}: ${this.stderr.slice(-800)}`));
      this.pending.clear();
    });
  }

  static async launch(): Promise<Browser> {
    const why = browserUnavailable();
    if (why) throw new Error(why);
    const profile = await mkdtemp(join(tmpdir(), 'lab-chromium-'));
    const child = spawn(
      CHROMIUM,
      [
        '--headless',
        '--remote-debugging-pipe',
        // Root in a container has no user namespace for the sandbox; the pages are our own files.
        '--no-sandbox',
        '--disable-gpu',
        '--no-first-run',
        '--no-default-browser-check',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-default-apps',
        '--disable-sync',
        '--disable-extensions',
        '--mute-audio',
        // Belt and braces under the request interception: no name resolves, and any
        // connection goes to a proxy on a port nothing listens on.
        '--host-resolver-rules=MAP * ~NOTFOUND',
        '--proxy-server=http://127.0.0.1:9',
        `--user-data-dir=${profile}`,
        'about:blank',
      ],
      { stdio: ['ignore', 'ignore', 'pipe', 'pipe', 'pipe'] },
    );
    const browser = new Browser(child, profile);
    await browser.send('Target.getTargets');
    return browser;
  }

  private dispatch(message: Message): void {
    if (message.id !== undefined) {
      const p = this.pending.get(message.id);
      if (!p) return;
      this.pending.delete(message.id);
      if (message.error) p.reject(new Error(`${p.method}: ${message.error.message}`));
      else p.resolve(message.result);
      return;
    }
    for (const listener of this.listeners) listener(message);
  }

  send<T = any>(method: string, params: object = {}, sessionId?: string): Promise<T> {
    if (this.exited) return Promise.reject(new Error(`chromium has exited: ${this.stderr.slice(-800)}`));
    const id = this.nextId++;
    const out = this.child.stdio[3] as Writable;
    return new Promise<T>((resolve, reject) => {
      this.pending.set(id, { resolve, reject, method });
      out.write(JSON.stringify({ id, method, params, ...(sessionId ? { sessionId } : {}) }) + '\0');
    });
  }

  /** Opens `file` in a new tab, waits for it to load, and reports what it did. */
  async open(file: string, options: OpenOptions = {}): Promise<Page> {
    const url = pathToFileURL(resolve(file)).href;
    const { targetId } = await this.send('Target.createTarget', { url: 'about:blank' });
    const { sessionId } = await this.send('Target.attachToTarget', { targetId, flatten: true });
    const s = <T = any>(method: string, params: object = {}) => this.send<T>(method, params, sessionId);
    const report: PageReport = { url, blockedRequests: [], consoleErrors: [], dialogs: [], scripts: 0 };
    let loaded!: () => void;
    const load = new Promise<void>((r) => (loaded = r));

    const listener = (m: Message) => {
      if (m.sessionId !== sessionId) return;
      const p = m.params;
      switch (m.method) {
        case 'Fetch.requestPaused': {
          const requestUrl: string = p.request.url;
          if (requestUrl === url || requestUrl.startsWith('data:')) {
            s('Fetch.continueRequest', { requestId: p.requestId }).catch(() => {});
          } else {
            report.blockedRequests.push(requestUrl);
            s('Fetch.failRequest', { requestId: p.requestId, errorReason: 'BlockedByClient' }).catch(() => {});
          }
          break;
        }
        case 'Runtime.consoleAPICalled':
          if (p.type === 'error' || p.type === 'assert') {
            report.consoleErrors.push(p.args.map((a: any) => a.value ?? a.description ?? '').join(' '));
          }
          break;
        case 'Runtime.exceptionThrown':
          report.consoleErrors.push(p.exceptionDetails.exception?.description ?? p.exceptionDetails.text);
          break;
        case 'Log.entryAdded':
          // A blocked request logs an error too; it is reported in blockedRequests.
          if (p.entry.level === 'error' && p.entry.source !== 'network') report.consoleErrors.push(p.entry.text);
          break;
        case 'Page.javascriptDialogOpening':
          report.dialogs.push(p.message);
          s('Page.handleJavaScriptDialog', { accept: false }).catch(() => {});
          break;
        case 'Debugger.scriptParsed':
          // The page's scripts carry its URL; our own evaluations have none.
          if (p.url && !p.url.startsWith('chrome')) report.scripts++;
          break;
        case 'Page.loadEventFired':
          loaded();
          break;
      }
    };
    this.listeners.add(listener);

    // Every request is paused here first, the page's own file included, so nothing leaves unseen.
    await s('Fetch.enable', { patterns: [{ urlPattern: '*' }] });
    await Promise.all([s('Page.enable'), s('Runtime.enable'), s('Log.enable'), s('Debugger.enable')]);
    await s('Emulation.setDeviceMetricsOverride', {
      width: options.width ?? 1280,
      height: options.height ?? 800,
      deviceScaleFactor: 1,
      mobile: (options.width ?? 1280) < 600,
    });
    if (options.media) await s('Emulation.setEmulatedMedia', { media: options.media });
    await s('Page.navigate', { url });
    const timeoutMs = options.timeoutMs ?? 15_000;
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      load,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`${url} did not load within ${timeoutMs} ms`)), timeoutMs);
      }),
    ]).finally(() => clearTimeout(timer));
    // Fetches and timers a page starts on load get a moment to show up.
    await new Promise((r) => setTimeout(r, 100));

    return Object.assign(report, {
      evaluate: async <T>(expression: string): Promise<T> => {
        const r = await s('Runtime.evaluate', { expression, returnByValue: true, awaitPromise: true });
        if (r.exceptionDetails) throw new Error(`evaluate failed: ${r.exceptionDetails.exception?.description ?? r.exceptionDetails.text}`);
        return r.result.value as T;
      },
      pdf: async () => {
        const r = await s<{ data: string }>('Page.printToPDF', { printBackground: true });
        return Uint8Array.from(Buffer.from(r.data, 'base64'));
      },
      screenshot: async ({ fullPage = true } = {}) => {
        const r = await s<{ data: string }>('Page.captureScreenshot', { format: 'png', captureBeyondViewport: fullPage });
        return Uint8Array.from(Buffer.from(r.data, 'base64'));
      },
      close: async () => {
        this.listeners.delete(listener);
        await this.send('Target.closeTarget', { targetId }).catch(() => {});
      },
    });
  }

  async close(): Promise<void> {
    if (!this.exited) {
      await this.send('Browser.close').catch(() => {});
      await new Promise<void>((r) => {
        if (this.exited) return r();
        const t = setTimeout(() => {
          this.child.kill('SIGKILL');
          r();
        }, 5000);
        this.child.once('exit', () => {
          clearTimeout(t);
          r();
        });
      });
    }
    await rm(this.profile, { recursive: true, force: true });
  }
}

/** Layout facts most report tests check, read in the page. */
export interface LayoutFacts {
  title: string;
  /** the page is wider than the viewport: it scrolls sideways */
  overflowsX: boolean;
  viewportWidth: number;
  scrollWidth: number;
  /** inline SVGs with a drawn (non-zero) size, by their aria-label or title */
  charts: Array<{ label: string; width: number; height: number }>;
  /** elements wider than the viewport (tag#id.class), the usual cause of overflowsX */
  tooWide: string[];
  headings: string[];
  /** <a href> targets */
  links: string[];
}

export const LAYOUT_FACTS = `(() => {
  const vw = document.documentElement.clientWidth;
  const name = (e) => e.tagName.toLowerCase() + (e.id ? '#' + e.id : '') + (typeof e.className === 'string' && e.className ? '.' + e.className.split(/\\s+/).join('.') : '');
  const tooWide = [];
  for (const e of document.body.querySelectorAll('*')) {
    const r = e.getBoundingClientRect();
    if (r.right <= vw + 1) continue;
    // Inside a box that scrolls sideways on its own, width is fine: the page does not move.
    let p = e.parentElement, scrolls = false;
    for (; p && p !== document.body; p = p.parentElement) if (/auto|scroll/.test(getComputedStyle(p).overflowX)) { scrolls = true; break; }
    if (!scrolls && !/auto|scroll/.test(getComputedStyle(e).overflowX)) tooWide.push(name(e));
  }
  return {
    title: document.title,
    viewportWidth: vw,
    scrollWidth: document.documentElement.scrollWidth,
    overflowsX: document.documentElement.scrollWidth > vw + 1,
    charts: [...document.querySelectorAll('svg')].filter((s) => !s.parentElement.closest('svg')).map((s) => {
      const r = s.getBoundingClientRect();
      return { label: s.getAttribute('aria-label') || s.querySelector('title')?.textContent || '', width: Math.round(r.width), height: Math.round(r.height) };
    }),
    tooWide: tooWide.slice(0, 20),
    headings: [...document.querySelectorAll('h1, h2, h3')].map((h) => h.textContent.trim()),
    links: [...document.querySelectorAll('a[href]')].map((a) => a.getAttribute('href')),
  };
})()`;
