// Renders report.md from templates/report.md.hbs: the report to keep in a
// repository, paste into a ticket or publish with the docs.

import type { RunResult } from '../result.ts';
import { createHandlebars, loadTemplate, reportView, type ReportView } from './helpers.ts';

let template: Promise<(view: ReportView) => string> | undefined;

export async function renderMarkdown(result: RunResult): Promise<string> {
  template ??= loadTemplate('report.md.hbs').then((source) => {
    const hb = createHandlebars();
    hb.registerHelper({ alt, cell, code, fence, quoted, text });
    // Markdown is not HTML: escaping is per context, by the helpers below.
    return hb.compile<ReportView>(source, { noEscape: true });
  });
  return (await template)(reportView(result));
}

/**
 * Machine-made prose (errors, notes): "<" and "&" as entities, so "<stdin>" in
 * a message shows instead of vanishing as an HTML tag. The lab's description
 * is the author's own Markdown and is left alone.
 */
function text(value: unknown): string {
  return String(value ?? '').replace(/&/g, '&amp;').replace(/</g, '&lt;');
}

/** Machine-made prose inside a "> " quote: each further line of it quoted too. */
function quoted(value: unknown): string {
  return text(value).replace(/\r?\n/g, '\n> ');
}

/** An image's alt text: brackets would end it, markup would show. */
function alt(value: unknown): string {
  return text(value).replace(/[[\]\\]/g, (c) => `\\${c}`).replace(/\r?\n/g, ' ');
}

/** Text safe inside a table cell: a "|" would end the cell, a newline the row. */
function cell(text: unknown): string {
  return String(text ?? '').replace(/\|/g, '\\|').replace(/\r?\n/g, '<br>');
}

/** Inline code that survives backticks in the text, by fencing with a longer run. */
function code(text: unknown): string {
  const s = String(text ?? '');
  const longest = Math.max(0, ...(s.match(/`+/g) ?? []).map((run) => run.length));
  const ticks = '`'.repeat(longest + 1);
  const pad = s.startsWith('`') || s.endsWith('`') ? ' ' : '';
  return `${ticks}${pad}${s}${pad}${ticks}`;
}

/** A fenced block whose fence is longer than any backtick run inside, so a lab file cannot end it early. */
function fence(text: unknown, lang: unknown): string {
  const s = String(text ?? '').replace(/\n$/, '');
  const longest = Math.max(0, ...(s.match(/`{3,}/g) ?? []).map((run) => run.length));
  const ticks = '`'.repeat(Math.max(3, longest + 1));
  return `${ticks}${typeof lang === 'string' ? lang : ''}\n${s}\n${ticks}`;
}
