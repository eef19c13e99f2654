/**
 * Test data every server gets the same copy of: the files the file servers serve and the stored
 * messages the boards start with.
 *
 * @module
 */

/** The files the file-server scenarios fetch, by name, with their sizes in bytes. */
export const SITE_FILES = {
  small: { name: "small.html", size: 500 },
  stylesheet: { name: "style.css", size: 15 * 1024 },
  medium: { name: "100kb.bin", size: 100 * 1024 },
  large: { name: "100mb.bin", size: 100 * 1024 * 1024 },
} as const;

const CHUNK_BYTES = 1024 * 1024;
const WORDS =
  ("hello from the tiny message board where every message is kept safe on disk " +
    "and shown with its time so people can read what others wrote").split(" ");
// The stored messages are one minute apart, ending at this time.
const LAST_POSTED_AT = Date.parse("2026-11-21T22:44:51.000Z");

/** A small HTML page of exactly `size` bytes (ASCII), padded in a comment. */
export function renderSmallPage(size: number): string {
  const head =
    '<!DOCTYPE html>\n<html lang="en">\n<head><meta charset="utf-8">' +
    "<title>Small file</title></head>\n<body><p>A small page for the benchmark.</p></body>\n";
  const padding = size - head.length - "<!--  -->\n</html>\n".length;
  if (padding < 0) {
    throw new RangeError(`a page needs at least ${size - padding} bytes`);
  }
  return `${head}<!-- ${"x".repeat(padding)} -->\n</html>\n`;
}

/**
 * A stylesheet of exactly `size` bytes that compresses about as well as a real
 * one (5 to 6:1 with gzip): rules for made-up components, the same in every run.
 */
export function renderStylesheet(size: number): string {
  const names = "card nav header footer button list item panel badge form";
  const parts = names.split(" ");
  const states = ["", ":hover", ":focus", " > a", " .title", "--active"];
  let css = "/* A stylesheet generated for the benchmark. */\n";
  for (let i = 1; css.length < size; i++) {
    // Knuth's multiplicative hash of the rule's number: varied, and the same in every run.
    const h = Math.imul(i, 2654435761) >>> 0;
    const name = `${parts[h % 10]}-${parts[(h >>> 4) % 10]}`;
    const colour = (h & 0xffffff).toString(16).padStart(6, "0");
    const margin = `${h % 32}px ${(h >>> 12) % 32}px`;
    const padding = `${((h >>> 16) % 300) / 100}rem`;
    css += `.${name}${states[(h >>> 8) % 6]} {\n  color: #${colour};\n` +
      `  margin: ${margin};\n  padding: ${padding};\n` +
      `  border-radius: ${(h >>> 20) % 12}px;\n}\n`;
  }
  // Cut at the last whole rule that fits, then pad with a comment to the exact size.
  css = css.slice(0, css.lastIndexOf("}\n", size - 8) + 2);
  return css + `/*${" ".repeat(size - css.length - 5)}*/\n`;
}

/** Writes the site's files into `dir` (readable by everyone: nginx's worker is not root). */
export async function writeSiteFiles(dir: string): Promise<void> {
  await Deno.chmod(dir, 0o755);
  const { small, stylesheet, medium, large } = SITE_FILES;
  const mode = 0o644;
  const page = renderSmallPage(small.size);
  await Deno.writeTextFile(`${dir}/${small.name}`, page, { mode });
  const css = renderStylesheet(stylesheet.size);
  await Deno.writeTextFile(`${dir}/${stylesheet.name}`, css, { mode });
  // Random bytes: nothing along the way can make them smaller.
  const chunk = new Uint8Array(CHUNK_BYTES);
  for (let offset = 0; offset < chunk.length; offset += 65536) {
    crypto.getRandomValues(chunk.subarray(offset, offset + 65536));
  }
  const head = chunk.subarray(0, medium.size);
  await Deno.writeFile(`${dir}/${medium.name}`, head, { mode });
  const chunks = Array.from({ length: large.size / CHUNK_BYTES }, () => chunk);
  const stream = ReadableStream.from(chunks);
  await Deno.writeFile(`${dir}/${large.name}`, stream, { mode });
}

/** The text of the generated message number `id`: 6 to 20 words, varying with the id. */
export function messageText(id: number): string {
  const words = Array.from(
    { length: 6 + (id * 7) % 15 },
    (_, i) => WORDS[(id + i) % WORDS.length],
  );
  return `Message ${id}: ${words.join(" ")}`;
}

/** When the generated message `id` of `count` was posted: a minute apart, the last at LAST_POSTED_AT. */
const postedAtOf = (id: number, count: number) =>
  new Date(LAST_POSTED_AT - (count - id) * 60_000).toISOString();

/**
 * Writes `count` messages (ids 1..count) as message_board.ts keeps them: one JSON object
 * per line, `{"id":1,"text":"Message 1: ...","postedAt":"2026-11-21T22:44:51.000Z"}`.
 */
export async function writeBoardData(path: string, count: number) {
  let text = "";
  for (let id = 1; id <= count; id++) {
    const postedAt = postedAtOf(id, count);
    text += JSON.stringify({ id, text: messageText(id), postedAt }) + "\n";
  }
  await Deno.writeTextFile(path, text);
}

/**
 * The SQL that loads the same `count` messages as {@link writeBoardData} into the board's
 * PostgreSQL tables (which must exist): it empties them, restarts the ids at 1 and COPYs
 * the messages in (their text has no tab, newline or backslash to escape).
 */
export function renderPgSeed(count: number): string {
  const rows = Array.from({ length: count }, (_, i) => {
    const id = i + 1;
    return `${id}\t${messageText(id)}\t${postedAtOf(id, count)}`;
  });
  const next = `${Math.max(count, 1)}, ${count > 0}`;
  return [
    "truncate board_messages, board_clears, board_archive restart identity;",
    // COPY writes the given ids even into a `generated always` column; setval then continues them.
    "copy board_messages (id, text, posted_at) from stdin;",
    ...rows,
    "\\.",
    `select setval(pg_get_serial_sequence('board_messages', 'id'), ${next});`,
    "",
  ].join("\n");
}
