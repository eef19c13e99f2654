#!/usr/bin/env -S deno run --allow-net=127.0.0.1 --allow-read=./static
/**
 * Stage 3: a static file server on `Deno.serve`, safe and fast enough to put in
 * front of a real site, plus the chapter's demo site and its GET form.
 *
 * ```sh
 * deno run --allow-net=127.0.0.1 --allow-read=./static server_files.ts
 * ```
 *
 * It serves `./static` on http://127.0.0.1:8080/; `--root DIR` (with
 * `--allow-read=DIR`) and `--port N` change them, and `--help` lists the rest.
 *
 * Behind a reverse proxy on the same machine it can listen on a Unix domain
 * socket instead of a port (the folder must exist; the proxy speaks TLS):
 *
 * ```sh
 * deno run --allow-read=./static,/run/www/files.sock --allow-write=/run/www/files.sock --allow-net=unix:/run/www/files.sock server_files.ts --unix /run/www/files.sock
 * ```
 *
 * Security stance, stated up front: only regular files that really live under
 * the root folder are ever served. Every URL goes through one function,
 * {@linkcode resolveSafePath}, which decodes the path (a bad escape is 400),
 * refuses NUL, backslashes and `..`, hides dotfiles, and checks that the real
 * path (after following symlinks) is still inside the root. Clients get short
 * generic error bodies; details go to the server log only.
 *
 * The exported {@linkcode serveDir} and {@linkcode serveFile} take the same
 * option names as `@std/http/file-server`, so a project with JSR can switch by
 * changing one import. {@linkcode createHandler} is the whole app (demo route
 * plus files, with an in-memory cache of small files) that `main()` serves.
 *
 * @module
 */

import { constants as fsConstants, type Stats } from "node:fs";
import { type FileHandle, open as fsOpen } from "node:fs/promises";
import { createHash } from "node:crypto";
import { extname, join, normalize, resolve, sep } from "node:path";
import { parseArgs, type ParseArgsOptionsConfig } from "node:util";
import zlib from "node:zlib";

// ---------------------------------------------------------------------------
// Options and limits
// ---------------------------------------------------------------------------

/** Options of {@linkcode serveDir}; same names and meanings as `@std/http/file-server`. */
export interface ServeDirOptions {
  /** Folder whose files are served. @default {"."} */
  fsRoot?: string | undefined;
  /** URL prefix stripped before looking up a file (`"static"` serves `/static/a.css`). @default {""} */
  urlRoot?: string | undefined;
  /** Serve `index.html` for a directory URL ending in `/`. @default {true} */
  showIndex?: boolean | undefined;
  /** List a directory that has no `index.html`. @default {false} */
  showDirListing?: boolean | undefined;
  /** Serve and list files and folders whose name starts with a dot. @default {false} */
  showDotfiles?: boolean | undefined;
  /** Add CORS headers that let any origin read the files. @default {false} */
  enableCors?: boolean | undefined;
  /** Do not print an access-log line per request. @default {false} */
  quiet?: boolean | undefined;
  /**
   * Extra headers for every response: `"Name: value"` strings, as std's
   * `serveDir` has long taken them, or anything `new Headers()` takes
   * (`{ "Cache-Control": "max-age=60" }`, `[["Link", "</a.css>"]]`, a
   * `Headers`), as its newer versions do. @default {[]}
   */
  headers?: ExtraHeaders | undefined;
  /**
   * Send text, JS, JSON, SVG, wasm and the like compressed (br, zstd or gzip,
   * from `Accept-Encoding`): precompressed `x.css.br`/`x.css.zst`/`x.css.gz`
   * files beside the original when they are not older, else zstd or gzip
   * while streaming. {@linkcode createHandler} keeps br, zstd and gzip copies
   * of small files in memory instead. @default {true}
   */
  compress?: boolean | undefined;
  /**
   * Accepted so that code written for std's `serveDir` compiles unchanged,
   * and ignored: our entity tag is the file's size and mtime, strong, with no
   * hash to choose (std hashes the mtime, SHA-256 by default).
   */
  etagAlgorithm?: AlgorithmIdentifier | undefined;
  /**
   * Serve `about.html` for `/about` when there is no `about` file or folder,
   * and redirect `/about.html` to `/about` (301), as std's unstable
   * `cleanUrls` option does the first half. @default {false}
   */
  cleanUrls?: boolean | undefined;
  /**
   * A file inside the root (`"index.html"`) that answers, with 200, a GET or
   * HEAD for a path with no file whose `Accept` includes `text/html`: the
   * single-page-app fallback. Other requests still get 404.
   * @default {undefined}
   */
  fallback?: string | undefined;
  /**
   * A download from disk whose client reads nothing more for this long is
   * aborted and its file closed, like nginx's `send_timeout` (see
   * {@linkcode SEND_TIMEOUT_MS}): the time counts between two successive
   * reads, not for the whole answer, so a slow reader that keeps making
   * progress is never cut off. (Deno's native reader, used outside
   * {@linkcode serveWithRestart} for a download to the end of a big file,
   * streams in Rust and is not timed.)
   * @default {SEND_TIMEOUT_MS}
   */
  sendTimeoutMs?: number | undefined;
}

/**
 * The `headers` option: `"Name: value"` lines, or what `new Headers()` takes
 * (see {@linkcode parseHeaderLines}).
 */
export type ExtraHeaders = readonly string[] | HeadersInit;

/** Options of {@linkcode serveFile}. */
export interface ServeFileOptions {
  /**
   * The file's `Deno.FileInfo`, if the caller already has it: it tells a file
   * from a folder; size and validators still come from the file as opened.
   * @default {undefined} (a stat)
   */
  fileInfo?: Deno.FileInfo | undefined;
  /** Accepted for std compatibility and ignored, as in {@linkcode ServeDirOptions.etagAlgorithm}. */
  etagAlgorithm?: AlgorithmIdentifier | undefined;
  /** Extra headers, as {@linkcode ServeDirOptions.headers} takes them. @default {[]} */
  headers?: ExtraHeaders | undefined;
  /** Add CORS headers. @default {false} */
  enableCors?: boolean | undefined;
  /** Compress compressible types, as {@linkcode ServeDirOptions.compress} says. @default {true} */
  compress?: boolean | undefined;
}

/** Options of {@linkcode createHandler}: everything {@linkcode serveDir} takes, plus the cache. */
export interface HandlerOptions extends ServeDirOptions {
  /**
   * How long a cached small file is served from memory before a cheap `stat`
   * checks it again, like nginx's `open_file_cache_valid`; a directory
   * listing is kept as long before the folder is read again. 0 checks on
   * every request. @default {1000}
   */
  cacheMs?: number | undefined;
  /** Files up to this size are kept in memory. 0 turns the cache off. @default {MAX_CACHED_FILE_BYTES} */
  maxCachedFileBytes?: number | undefined;
  /**
   * Host names answered besides localhost, 127.0.0.1 and [::1] (the CLI adds
   * the names and addresses it listens on). A leading dot (`.example.com`)
   * allows every subdomain. Any other `Host` gets 421: a page on another site
   * whose DNS name points here (DNS rebinding) cannot read the files; a
   * Host that is not a valid name and port ({@linkcode isValidHost}) gets 400.
   * {@linkcode serveDir} and {@linkcode serveFile} do not check (as std).
   * @default {[]}
   */
  allowedHosts?: string[] | undefined;
  /**
   * The access log's format: `"clf"`, the Common Log Format line of
   * {@linkcode formatAccessLog}, or `"json"`, one object per line from
   * {@linkcode formatJsonAccessLog}, written once the answer has been sent.
   * @default {"clf"}
   */
  logFormat?: "clf" | "combined" | "json" | undefined;
  /**
   * The proxies in front, whose `X-Forwarded-For` names the client the access
   * log shows: addresses and CIDR ranges (`["loopback"]` for a proxy on this
   * machine), or `true` for whatever peer connects. A request from any other
   * peer is logged with its own address. See {@linkcode forwardedClient}.
   * @default {false}
   */
  trustProxy?: boolean | readonly string[] | undefined;
}

/** Files up to this size are served from memory by {@linkcode createHandler}. */
export const MAX_CACHED_FILE_BYTES = 256 * 1024;
/** Total bytes of file bodies the cache may hold; the oldest entries go first. */
export const MAX_CACHE_BYTES = 64 * 1024 * 1024;
/**
 * A download to the end of a file, of more than this, may use Deno's native
 * reader (see {@linkcode OpenFile.stream}); a shorter one is a few reads.
 */
const STREAM_FROM_BYTES = 256 * 1024;
/**
 * The smallest read of a file stream, however many share the budget (see
 * {@linkcode STREAM_READ_BUDGET_BYTES}).
 */
const MIN_READ_BYTES = 64 * 1024;
/**
 * The largest read of a file stream. Measured in Deno 2.9.6 (100 MiB, one
 * curl at a time, interleaved with nginx): 1 MiB reads reached 0.6-0.9x
 * nginx, `FsFile.readable` (64 KiB reads, each a thread hand-off) 0.35-0.55x,
 * 4 MiB reads 0.4-0.55x (their buffers no longer stay in the CPU's caches).
 * Measured again (24 interleaved rounds, real-time priority, buffers reused,
 * one read ahead), against 1 MiB: 256 KiB 0.81x, 512 KiB 0.95x, 768 KiB
 * 1.0x, 2 MiB 0.85x, 4 MiB 0.77x; two reads ahead 0.88x; `Deno.FsFile.read`
 * instead of node:fs 0.95x; reads on the event loop as fast with real-time
 * priority (and 15% less CPU), 0.78x without.
 */
const MAX_READ_BYTES = 1024 * 1024;
/**
 * Bytes that all file streams together read at once: with more streams
 * than fit at {@linkcode MAX_READ_BYTES}, each reads less (down to
 * {@linkcode MIN_READ_BYTES}), so many downloads at once, or clients that
 * stop reading, cannot hold much memory. A stream holds a few reads: the
 * buffers it keeps to reuse, one being sent, one waiting for room (and a few
 * streams one read ahead, see {@linkcode READ_AHEAD_BUDGET_BYTES}).
 * Measured: 48 clients that stopped reading a big file grew the server's
 * peak RSS by 52-54 MB (67-79 MB with a budget of 8 MiB); 32 downloads of
 * 100 MiB at 12 MB/s each peaked at 96-103 MB (8 MiB: 122 MB); one download
 * still reads 1 MiB at a time.
 */
const STREAM_READ_BUDGET_BYTES = 4 * 1024 * 1024;
/**
 * Buffers a file stream that goes straight to `Deno.serve` keeps and reuses
 * (see {@linkcode streamFileRanges}): a new buffer for each read costs page
 * faults and cold caches, about a quarter of the CPU of a big download.
 * One more while the stream reads ahead: the buffer read into then is taken
 * a chunk earlier.
 */
const REUSED_BUFFERS = 3;
/**
 * Bytes that all file streams together may keep for reuse: enough for 32
 * downloads of 128 KiB reads, or a few at 1 MiB. Kept buffers are no use
 * to a client that stopped reading, and held with no bound they were a
 * third of what 300 such clients of a big file took (198 MB, 129 MB with
 * none kept).
 */
const MAX_KEPT_BUFFER_BYTES = 16 * 1024 * 1024;
/** Bytes of buffers kept for reuse now (see {@linkcode MAX_KEPT_BUFFER_BYTES}). */
let keptBufferBytes = 0;
/**
 * Bytes a stream must have handed to `Deno.serve` after a chunk, counted
 * when `Deno.serve` last asked for more, before that chunk's buffer is
 * reused. `Deno.serve` (2.9.6) asks for the next chunk as soon as it put
 * the last one into ReadableStreamResource's channel
 * (ext/web/stream_resource.rs), which takes a chunk only while it holds less
 * than 64 KiB; hyper keeps at most 400 KiB it took from there (its write
 * buffer, or HTTP/2's send buffer). So when it asks, it holds at most the
 * chunk before plus about 470 KiB of earlier ones; 2 MiB leaves room to
 * spare. (A read ahead starts after a chunk is handed on, before
 * `Deno.serve` asks again: counting from the last ask keeps the same bound
 * for it.)
 */
const REUSE_DISTANCE_BYTES = 2 * 1024 * 1024;
/**
 * Bytes that all file streams together may have read ahead, before the
 * reader asked for them (see {@linkcode streamFileRanges}): enough for a
 * download or two at full speed, while many clients that stopped reading
 * hold little more memory than without reads ahead.
 */
const READ_AHEAD_BUDGET_BYTES = 2 * 1024 * 1024;
/**
 * How long {@linkcode openNativeReader} waits for `Deno.open`, which blocks
 * when a FIFO took the file's place; after that the request streams from the
 * descriptor it already has.
 */
const NATIVE_OPEN_TIMEOUT_MS = 500;
/**
 * A file stream that `Deno.serve` has not asked for more for this long (the
 * client stopped reading, so its socket buffers stay full) errors and closes
 * its file: nginx's `send_timeout`, with its default. It counts only between
 * two successive reads of the stream, never the whole download, so a slow
 * client that keeps making progress is never cut off. `Deno.serve` (2.9.6)
 * sees the error, and aborts the connection, only once it can write to the
 * socket again: a client that never reads again keeps its connection (one
 * descriptor, and the chunk `Deno.serve` holds), but no longer the file.
 * Measured: 100 such clients of a 64 MiB file held 2 descriptors each, then
 * 1 after the timeout.
 */
export const SEND_TIMEOUT_MS = 60_000;
/** A directory listing shows at most this many entries (then says it was cut). */
export const MAX_LISTING_ENTRIES = 5000;
/** `/suggest` refuses longer names with 400. */
export const MAX_NAME_CHARS = 100;

/** Browsers may keep a copy but must ask again (with the validators) before using it. */
const CACHE_CONTROL = "no-cache";

/**
 * Brotli quality for the copies the cache keeps. Measured on a 280 KB JS file:
 * quality 5 takes ~30 ms and is within 3% of quality 9's size (~130 ms);
 * 11 saves 8% more but takes ~800 ms, and the compression runs on the event
 * loop (node:zlib's async brotli is not off-thread in Deno 2.9).
 */
const BROTLI_QUALITY = 5;
/** gzip level for the cache's copies: 6 is within 1% of 9 at half the time. */
const GZIP_CACHE_LEVEL = 6;
/**
 * zstd level for the cache's copies. Measured on a 650 KB JS file: level 6
 * takes ~15 ms (gzip 6: ~12 ms) and is 3-7% smaller than gzip 6; 9 saves 1-2%
 * more at 1.5-2x the time, 12 and up take 50-300 ms. br at quality 5 is still
 * 2-5% smaller, so br is sent first when a client takes both.
 */
const ZSTD_CACHE_LEVEL = 6;
/**
 * gzip level for files compressed while they stream (those too big for the
 * cache) to a client without zstd: level 1 runs at ~75-240 MB/s on one core
 * here, where the default level (`CompressionStream`) manages 15-25 MB/s; it
 * still shrinks text 3-5x.
 */
const GZIP_STREAM_LEVEL = 1;
/**
 * zstd level for files compressed while they stream. Measured on 12 MB of
 * JS, fed 1 MiB at a time: level 1 runs a little faster than gzip 1 (136 vs
 * 127 MB/s) and leaves 25% of the bytes where gzip 1 leaves 34%, the most
 * bytes saved per second of all (levels 2 and 3: 128 and 83 MB/s, 22% and
 * 20%). Its window (512 KiB) is far below the 8 MiB a browser accepts
 * (RFC 9659).
 */
const ZSTD_STREAM_LEVEL = 1;
/**
 * Files compressed while they stream at once; more are sent as they are
 * (identity) until one ends. Each holds its compressor and a read or two,
 * 1.4-1.6 MB, until its client reads on: 100 clients that asked for a big
 * text file with gzip and read nothing took 164 MB more (160 HTTP/2
 * streams with no window, 222 MB), and each compresses on a core.
 */
export const MAX_COMPRESSING_STREAMS = 32;
/** Files being compressed while they stream now (see {@linkcode MAX_COMPRESSING_STREAMS}). */
let compressingStreams = 0;
/** A compressed copy is kept only if it is at most this share of the original (saves 10%). */
const MAX_COMPRESSED_RATIO = 0.9;

// ---------------------------------------------------------------------------
// Content types
// ---------------------------------------------------------------------------

/**
 * Content-Type by lower-case extension; text types say their charset. The
 * types are those of the mime-db table std's `serveDir` uses (and nginx's
 * `mime.types`), for every format a browser shows, plays or hands to an app:
 * with `nosniff`, a video sent as `application/octet-stream` is a download,
 * and subtitles (`.vtt`) or a module script are refused.
 */
export const CONTENT_TYPES: Readonly<Record<string, string>> = {
  ".html": "text/html; charset=utf-8",
  ".htm": "text/html; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".mjs": "text/javascript; charset=utf-8",
  ".json": "application/json; charset=utf-8",
  ".map": "application/json; charset=utf-8",
  ".webmanifest": "application/manifest+json; charset=utf-8",
  ".txt": "text/plain; charset=utf-8",
  ".md": "text/markdown; charset=utf-8",
  ".csv": "text/csv; charset=utf-8",
  ".xml": "application/xml; charset=utf-8",
  ".svg": "image/svg+xml; charset=utf-8",
  ".png": "image/png",
  ".jpg": "image/jpeg",
  ".jpeg": "image/jpeg",
  ".gif": "image/gif",
  ".webp": "image/webp",
  ".avif": "image/avif",
  ".ico": "image/x-icon",
  ".wasm": "application/wasm",
  ".woff": "font/woff",
  ".woff2": "font/woff2",
  ".ttf": "font/ttf",
  ".otf": "font/otf",
  ".mp4": "video/mp4",
  ".webm": "video/webm",
  ".mp3": "audio/mpeg",
  ".ogg": "audio/ogg",
  ".wav": "audio/wav",
  ".pdf": "application/pdf",
  ".zip": "application/zip",
  ".gz": "application/gzip",
  ".zst": "application/zstd",
  ".xhtml": "application/xhtml+xml; charset=utf-8",
  ".jsx": "text/jsx; charset=utf-8",
  ".jsonld": "application/ld+json; charset=utf-8",
  ".geojson": "application/geo+json; charset=utf-8",
  ".rss": "application/rss+xml; charset=utf-8",
  ".atom": "application/atom+xml; charset=utf-8",
  ".yaml": "text/yaml; charset=utf-8",
  ".yml": "text/yaml; charset=utf-8",
  ".toml": "application/toml; charset=utf-8",
  ".ics": "text/calendar; charset=utf-8",
  ".vtt": "text/vtt; charset=utf-8",
  ".log": "text/plain; charset=utf-8",
  ".ini": "text/plain; charset=utf-8",
  ".conf": "text/plain; charset=utf-8",
  ".apng": "image/apng",
  ".bmp": "image/bmp",
  ".tif": "image/tiff",
  ".tiff": "image/tiff",
  ".jxl": "image/jxl",
  ".heic": "image/heic",
  ".eot": "application/vnd.ms-fontobject",
  ".mov": "video/quicktime",
  ".m4v": "video/x-m4v",
  ".ogv": "video/ogg",
  ".mpeg": "video/mpeg",
  ".mpg": "video/mpeg",
  ".ts": "video/mp2t",
  ".m3u8": "application/vnd.apple.mpegurl",
  ".mpd": "application/dash+xml",
  ".m4a": "audio/mp4",
  ".aac": "audio/aac",
  ".flac": "audio/flac",
  ".opus": "audio/ogg",
  ".oga": "audio/ogg",
  ".weba": "audio/webm",
  ".mid": "audio/midi",
  ".midi": "audio/midi",
  ".glb": "model/gltf-binary",
  ".gltf": "model/gltf+json",
  ".tar": "application/x-tar",
  ".tgz": "application/gzip",
  ".bz2": "application/x-bzip2",
  ".xz": "application/x-xz",
  ".7z": "application/x-7z-compressed",
  ".rar": "application/vnd.rar",
  ".jar": "application/java-archive",
  ".epub": "application/epub+zip",
  ".rtf": "application/rtf",
  ".doc": "application/msword",
  ".docx":
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
  ".xls": "application/vnd.ms-excel",
  ".xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
  ".ppt": "application/vnd.ms-powerpoint",
  ".pptx":
    "application/vnd.openxmlformats-officedocument.presentationml.presentation",
  ".odt": "application/vnd.oasis.opendocument.text",
  ".ods": "application/vnd.oasis.opendocument.spreadsheet",
  ".odp": "application/vnd.oasis.opendocument.presentation",
};

/**
 * Content-Type for a file name, `application/octet-stream` when unknown.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { contentTypeFor } from "./server_files.ts";
 * assert.equal(contentTypeFor("a/Page.HTML"), "text/html; charset=utf-8");
 * ```
 */
export function contentTypeFor(path: string): string {
  return CONTENT_TYPES[extname(path).toLowerCase()] ??
    "application/octet-stream";
}

/** Media types outside `text/*` worth compressing (JSON and XML flavours are matched by suffix). */
const COMPRESSIBLE_TYPES = new Set([
  "application/javascript",
  "application/json",
  "application/xml",
  "application/wasm",
  "image/svg+xml",
]);

/**
 * True for types that shrink when compressed: text, JS, JSON, XML, SVG,
 * wasm, web manifests. Images, audio, video, archives and fonts (woff2 is
 * brotli already) are compressed formats: gzip would only cost time.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { isCompressible } from "./server_files.ts";
 * assert.equal(isCompressible("text/css; charset=utf-8"), true);
 * assert.equal(isCompressible("image/png"), false);
 * ```
 */
export function isCompressible(contentType: string): boolean {
  const type = contentType.split(";")[0]!.trim().toLowerCase();
  return type.startsWith("text/") || COMPRESSIBLE_TYPES.has(type) ||
    type.endsWith("+json") || type.endsWith("+xml");
}

// ---------------------------------------------------------------------------
// Small pure helpers
// ---------------------------------------------------------------------------

/**
 * Escapes text for HTML element content and quoted attribute values.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { escapeHtml } from "./server_files.ts";
 * assert.equal(escapeHtml(`"'<>&`), "&quot;&#39;&lt;&gt;&amp;");
 * ```
 */
export function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => HTML_ESCAPES[c]!);
}

const HTML_ESCAPES: Record<string, string> = {
  "&": "&amp;",
  "<": "&lt;",
  ">": "&gt;",
  '"': "&quot;",
  "'": "&#39;",
};

/**
 * Splits an absolute request URL into the path exactly as the client sent it
 * and the query. `new URL()` would resolve `..` segments first and hide an
 * attack from {@linkcode resolveSafePath}; we want to see the raw path.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { splitUrl } from "./server_files.ts";
 * assert.deepEqual(splitUrl("http://h:8/a/b?x=1"), {
 *   pathname: "/a/b",
 *   search: "?x=1",
 * });
 * ```
 */
export function splitUrl(url: string): { pathname: string; search: string } {
  const start = url.indexOf("/", url.indexOf("://") + 3);
  if (start < 0) return { pathname: "/", search: "" };
  let end = url.indexOf("?", start);
  const hash = url.indexOf("#", start);
  if (hash >= 0 && (end < 0 || hash < end)) end = hash;
  if (end < 0) return { pathname: url.slice(start), search: "" };
  const search = url[end] === "?"
    ? url.slice(end, hash > end ? hash : undefined)
    : "";
  return { pathname: url.slice(start, end), search };
}

/**
 * Reads the `headers` option into header pairs: `"Name: value"` strings
 * (the `--header` flag), or what `new Headers()` takes (pairs, a record, a
 * `Headers`), each name as written. Throws a `TypeError` naming the bad
 * entry, so a typo stops the server at start-up.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { parseHeaderLines } from "./server_files.ts";
 * assert.deepEqual(parseHeaderLines(["X-Frame-Options: DENY"]), [
 *   ["X-Frame-Options", "DENY"],
 * ]);
 * assert.deepEqual(parseHeaderLines({ "X-Frame-Options": "DENY" }), [
 *   ["X-Frame-Options", "DENY"],
 * ]);
 * ```
 */
export function parseHeaderLines(headers: ExtraHeaders): [string, string][] {
  const entries: Iterable<string | readonly string[]> =
    headers instanceof Headers || Array.isArray(headers)
      ? headers as Iterable<string | readonly string[]>
      : Object.entries(headers);
  return Array.from(entries, (entry) => {
    if (typeof entry === "string") {
      const colon = entry.indexOf(":");
      const pair = [entry.slice(0, colon).trim(), entry.slice(colon + 1)];
      if (colon >= 1 && isValidHeader(pair)) return [pair[0]!, pair[1]!.trim()];
    } else if (isValidHeader(entry)) {
      return [entry[0]!, entry[1]!.trim()];
    }
    throw new TypeError(
      `invalid header ${JSON.stringify(entry)}: expected "Name: value"`,
    );
  });
}

/** A `[name, value]` pair: a token (RFC 9110 5.6.2) and a value with no CR, LF or NUL. */
function isValidHeader(entry: readonly unknown[]): boolean {
  const [name, value] = entry;
  return entry.length === 2 && typeof name === "string" &&
    typeof value === "string" && /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/.test(name) &&
    !/[\r\n\0]/.test(value);
}

// ---------------------------------------------------------------------------
// URL to file: the one place that decides what may be served
// ---------------------------------------------------------------------------

/**
 * Why a request gets no file: the status to answer with, and a message for
 * the server log only, since it names paths. No text of it ever reaches a
 * client: {@linkcode errorResponse} logs the message (a 4xx unless `quiet`)
 * and answers with the status's reason phrase. (message_board.ts's
 * `HttpError` is the other kind: its message is the client's answer.)
 */
export class NotServableError extends Error {
  /** Answered with `status`; `message` goes to the log only. */
  constructor(readonly status: number, message: string) {
    super(message);
    this.name = "NotServableError";
  }
}

/** What {@linkcode resolveSafePath} found: a real path inside the root and its stat. */
export interface ResolvedPath {
  /** The real (symlink-free) path of the file or folder. */
  path: string;
  /** Its `Deno.stat`. */
  info: Deno.FileInfo;
}

/**
 * Maps a URL path (as sent, still percent-encoded, without the query) to a
 * real path inside `root`, or throws an {@linkcode NotServableError}:
 *
 * 1. decode once; a malformed escape is 400;
 * 2. NUL and backslash are 400 (a backslash is a separator on Windows);
 * 3. a `..` segment is 400: a browser never sends one, so it is an attack;
 * 4. a segment starting with `.` is 404 unless `showDotfiles`;
 * 5. normalise (`//` and `.` collapse), join to the root;
 * 6. follow symlinks with `realPath`; the result must be the root itself or
 *    start with root + separator, else 404 (a symlink pointing outside).
 *
 * `rootReal` must already be a real path (see `Deno.realPath`).
 */
export async function resolveSafePath(
  rootReal: string,
  urlPath: string,
  showDotfiles = false,
): Promise<ResolvedPath> {
  let decoded: string;
  try {
    decoded = decodeURIComponent(urlPath);
  } catch {
    throw new NotServableError(
      400,
      `malformed percent-escape in ${JSON.stringify(urlPath)}`,
    );
  }
  if (decoded.includes("\0") || decoded.includes("\\")) {
    throw new NotServableError(
      400,
      `NUL or backslash in ${JSON.stringify(urlPath)}`,
    );
  }
  const segments = decoded.split("/");
  if (segments.includes("..")) {
    throw new NotServableError(400, `'..' in ${JSON.stringify(urlPath)}`);
  }
  if (!showDotfiles && segments.some(isDotName)) {
    throw new NotServableError(
      404,
      `dotfile refused: ${JSON.stringify(urlPath)}`,
    );
  }
  const joined = join(rootReal, normalize("/" + decoded));
  let real: string;
  try {
    real = await Deno.realPath(joined);
  } catch (error) {
    if (
      error instanceof Deno.errors.NotFound ||
      error instanceof Deno.errors.NotADirectory
    ) {
      throw new NotServableError(404, `not found: ${joined}`);
    }
    throw error;
  }
  if (!isServableRealPath(rootReal, real, showDotfiles)) {
    throw new NotServableError(
      404,
      `symlink leads outside the root or to a dotfile: ${joined} -> ${real}`,
    );
  }
  return { path: real, info: await Deno.stat(real) };
}

/**
 * The one spelling of a URL path that is served, or null when `urlPath`
 * already is it. Like std's serveDir (and the URL parsers of browsers),
 * empty segments (`//`) and `.` segments (also `%2e` and an encoded
 * slash's `%2F%2F`) go; a final `.` keeps the slash (`/a/.` is `/a/`). The
 * result starts with exactly one slash, so as a `Location` it can never
 * name another host (`//evil.example`: an open redirect). Paths that
 * {@linkcode resolveSafePath} refuses (bad escapes, NUL, backslash, `..`)
 * get null here, and their 400 there.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { canonicalUrlPath } from "./server_files.ts";
 * assert.equal(canonicalUrlPath("/a//b/./c.txt"), "/a/b/c.txt");
 * assert.equal(canonicalUrlPath("/a%20b/c.txt"), null);
 * ```
 */
export function canonicalUrlPath(urlPath: string): string | null {
  // The common case costs one scan: no "//", no "." segment, no escape.
  if (
    !urlPath.includes("//") && !urlPath.includes("/.") &&
    !urlPath.includes("%")
  ) return null;
  let decoded: string;
  try {
    decoded = decodeURIComponent(urlPath);
  } catch {
    return null;
  }
  const segments = decoded.split("/");
  if (segments.includes("..") || /[\0\\]/.test(decoded)) return null;
  const kept = segments.filter((segment) => segment !== "" && segment !== ".");
  const last = segments[segments.length - 1];
  const slash = kept.length > 0 && (last === "" || last === ".") ? "/" : "";
  if ("/" + kept.join("/") + slash === decoded) return null;
  return "/" + kept.map(encodePathSegment).join("/") + slash;
}

/**
 * Percent-encodes one path segment, leaving the characters RFC 3986 3.3
 * allows in a segment (`pchar`) as they are.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { encodePathSegment } from "./server_files.ts";
 * assert.equal(encodePathSegment("a b?#%:@"), "a%20b%3F%23%25:@");
 * ```
 */
export function encodePathSegment(segment: string): string {
  return encodeURIComponent(segment).replace(
    /%(24|26|2B|2C|3A|3B|3D|40)/g,
    (escape) => decodeURIComponent(escape),
  );
}

/**
 * True when a symlink-free path is the root or inside it (root plus a
 * separator: `/srv/site-old` is not inside `/srv/site`), and, unless
 * `showDotfiles`, has no dot segment below the root.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { isServableRealPath } from "./server_files.ts";
 * assert.equal(isServableRealPath("/srv/site", "/srv/site-old/a", false), false);
 * ```
 */
export function isServableRealPath(
  rootReal: string,
  real: string,
  showDotfiles: boolean,
): boolean {
  if (real !== rootReal && !real.startsWith(rootReal + sep)) return false;
  return showDotfiles ||
    !real.slice(rootReal.length).split(sep).some(isDotName);
}

function isDotName(segment: string): boolean {
  return segment.startsWith(".") && segment !== ".";
}

/**
 * The status for an error from a filesystem call made for a request. What
 * the request asked for decides it, never the server's health: a name too
 * long for the filesystem, a file used as a folder, a symlink loop or a
 * path outside what Deno may read is a file that does not exist (404, as
 * nginx answers the first three); no permission is 403; no descriptor left
 * is 503 (the server is busy, the request is fine). Only the rest (EIO, a
 * bug) is 500.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { statusForFsError } from "./server_files.ts";
 * const error = Object.assign(new Error(), { code: "ENAMETOOLONG" });
 * assert.equal(statusForFsError(error), 404);
 * ```
 */
export function statusForFsError(error: unknown): number {
  if (error instanceof Deno.errors.NotCapable) return 404;
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === "string" ? FS_ERROR_STATUS[code] ?? 500 : 500;
}

const FS_ERROR_STATUS: Readonly<Record<string, number>> = {
  ENOENT: 404,
  ENOTDIR: 404,
  EISDIR: 404,
  ENAMETOOLONG: 404,
  ELOOP: 404,
  ENXIO: 404,
  ENODEV: 404,
  EACCES: 403,
  EPERM: 403,
  EILSEQ: 400,
  EINVAL: 400,
  EMFILE: 503,
  ENFILE: 503,
};

/** A regular file opened by {@linkcode openRegularFile}, with its `fstat`. */
export interface OpenFile {
  /** The open handle (a real descriptor, read with `handle.read`). */
  handle: FileHandle;
  /** The stat of the open handle, so it describes exactly the bytes read. */
  info: Deno.FileInfo;
  /** Closes the handle (and the native reader, if any); safe to call twice. */
  close(): void;
  /**
   * Opens Deno's own reader of this same file (see
   * {@linkcode openNativeReader}), for a {@linkcode OpenFile.stream} that
   * goes to the end of the file. Resolves whether there is one; without it
   * streams read in JavaScript, which is just as correct.
   */
  openNative(): Promise<boolean>;
  /**
   * Streams `length` bytes from `start`, then closes the file (also on
   * error, or when the client goes away). To the end of the file with a
   * native reader: `Deno.FsFile.readable`, which `Deno.serve` reads in Rust
   * in 64 KiB reads (memory flat: 44-54 MB peak for a 100 MiB download).
   * Else with {@linkcode streamFileRanges}: faster, and as lean when
   * `release` says the stream goes straight to `Deno.serve`; it errors
   * after `sendTimeoutMs` without a read (see {@linkcode SEND_TIMEOUT_MS}).
   */
  stream(
    start: number,
    length: number,
    release?: ChunkRelease,
    sendTimeoutMs?: number,
  ): ReadableStream<Uint8Array>;
}

/**
 * Opens a path for reading only if it is a regular file, and never blocks.
 * `Deno.open` on a FIFO waits for a writer (requests hang, and so does
 * shutdown), and one on a device may wait too; a path checked with `stat`
 * first can be swapped between the check and the open. So the open itself
 * uses `O_NONBLOCK` (through `node:fs`: `Deno.open` takes no flags), which
 * returns at once for a FIFO, and the type is checked on the open handle
 * with `fstat`. `O_NOFOLLOW` refuses a final component that became a
 * symlink after {@linkcode resolveSafePath} saw it. On a regular file,
 * `O_NONBLOCK` changes nothing (reads from disk never return EAGAIN).
 * Anything but a regular file is a 404.
 */
export async function openRegularFile(
  path: string,
  { followSymlinks = false } = {},
): Promise<OpenFile> {
  const handle = await fsOpen(
    path,
    followSymlinks ? OPEN_FLAGS & ~(fsConstants.O_NOFOLLOW ?? 0) : OPEN_FLAGS,
  );
  let closed = false;
  let native: Deno.FsFile | null = null;
  const closeHandle = () => {
    if (!closed) {
      closed = true;
      handle.close().catch(() => {});
    }
  };
  const close = () => {
    closeHandle();
    native?.close();
    native = null;
  };
  try {
    const stats = await handle.stat();
    if (!stats.isFile()) {
      throw new NotServableError(404, `not a regular file: ${path}`);
    }
    const info = fileInfoFromStats(stats);
    return {
      handle,
      info,
      close,
      async openNative() {
        native ??= await openNativeReader(path, info);
        return native !== null;
      },
      stream(start, length, release, sendTimeoutMs) {
        const reader = native;
        native = null;
        if (reader !== null && start + length === info.size) {
          // Deno.serve pipes a FsFile's own stream natively and closes it
          // at the end. It reads on to the file's end as it is then: if the
          // file grew, Deno.serve stops at Content-Length (a JavaScript
          // reader of the body would get the new bytes too).
          closeHandle();
          reader.seekSync(start, Deno.SeekMode.Start);
          return reader.readable;
        }
        reader?.close();
        const range = { start, end: start + length - 1 };
        return streamFileRanges(
          handle,
          [range],
          close,
          release,
          sendTimeoutMs,
        );
      },
    };
  } catch (error) {
    close();
    throw error;
  }
}

/**
 * Opens a file {@linkcode resolveSafePath} found, and makes sure the file
 * opened is that one, still inside the root: the open follows the folders
 * on the path as they are then, and a folder swapped for a symlink to
 * `/etc` between the two (by anyone who may write in the root) would send
 * what is outside. So the open handle must be the file resolved (device and
 * inode), and once it is open the path must still be its own real path
 * and lead to it.
 * (Measured: a folder swapped for such a symlink in a loop while 8 clients
 * asked for a file in it sent the outside file 114 times in 8 s, and 8,823
 * times for a small one, which the cache then kept.) A file replaced since
 * (a deploy's rename over it) is looked up once more. This narrows the race
 * to a swap and a swap back between the two checks and the open; only an
 * `openat` of each folder with `O_NOFOLLOW`, which Deno 2.9 does not offer,
 * would close it.
 */
async function openResolved(resolved: ResolvedPath): Promise<OpenFile> {
  const { path } = resolved;
  let expected = resolved.info;
  for (let attempt = 0;; attempt++) {
    const file = await openRegularFile(path);
    try {
      if (
        isSameFile(file.info, expected) &&
        await Deno.realPath(path) === path &&
        isSameFile(file.info, await Deno.stat(path))
      ) {
        return file;
      }
    } catch (error) {
      file.close();
      throw error;
    }
    file.close();
    if (attempt > 0 || await Deno.realPath(path) !== path) {
      throw new NotServableError(404, `changed while it was opened: ${path}`);
    }
    expected = await Deno.stat(path);
  }
}

/** Same device and inode, where both stats have one (not every platform does). */
function isSameFile(a: Deno.FileInfo, b: Deno.FileInfo): boolean {
  if (!a.ino || !b.ino) return true; // then the real path check alone
  return a.dev === b.dev && a.ino === b.ino;
}

/** True when `path` is still its own real path (no folder on it became a symlink). */
async function isStillRealPath(path: string): Promise<boolean> {
  try {
    return await Deno.realPath(path) === path;
  } catch {
    return false;
  }
}

/** `Deno.open`s of {@linkcode openNativeReader} that gave up waiting and have not returned. */
let stuckNativeOpens = 0;

/**
 * Opens `path` again with `Deno.open` (whose `FsFile.readable` `Deno.serve`
 * streams natively), and resolves it only if it is the very file `info`
 * describes (same device and inode): between the two opens the path may have
 * been swapped for a symlink or another file. Resolves null then, and on any
 * error (out of descriptors, say): the caller keeps the descriptor it has.
 * A FIFO swapped in makes `Deno.open` wait for a writer: after `timeoutMs`
 * this resolves null, and while such an open waits no new one is tried (it
 * is closed when it returns), so a FIFO cannot pile up blocked threads. A
 * waiting open keeps the process alive: `main()` exits after a shutdown.
 */
export async function openNativeReader(
  path: string,
  info: Deno.FileInfo,
  timeoutMs = NATIVE_OPEN_TIMEOUT_MS,
): Promise<Deno.FsFile | null> {
  if (stuckNativeOpens > 0) return null;
  const opening = Deno.open(path, { read: true }).catch(() => null);
  let timer: ReturnType<typeof setTimeout> | undefined;
  const file = await Promise.race([
    opening,
    new Promise<"late">((resolve) => {
      timer = setTimeout(() => resolve("late"), timeoutMs);
    }),
  ]);
  clearTimeout(timer);
  if (file === "late") {
    stuckNativeOpens++;
    opening.then((late) => {
      late?.close();
      stuckNativeOpens--;
    });
    return null;
  }
  if (file === null) return null;
  try {
    const opened = await file.stat();
    if (
      opened.isFile && opened.dev === info.dev && opened.ino === info.ino
    ) {
      return file;
    }
  } catch {
    // Unreadable: treated as another file.
  }
  file.close();
  return null;
}

/**
 * Whether a file stream may let each chunk go as soon as `Deno.serve` holds
 * it. Set by {@linkcode handToServe}, only for a response that goes straight
 * to `Deno.serve`; any other reader keeps the chunks it is given.
 */
export interface ChunkRelease {
  /** True once the stream's reader is `Deno.serve` itself. */
  handedToServe: boolean;
  /**
   * Called once when the stream ends: `true` after its last byte, `false`
   * when it was cancelled, failed or timed out first.
   */
  onEnd?: (sent: boolean) => void;
}

/** File streams reading now (each takes its share of {@linkcode STREAM_READ_BUDGET_BYTES}). */
let readingStreams = 0;
/** Bytes of reads ahead not yet handed on (at most {@linkcode READ_AHEAD_BUDGET_BYTES}). */
let readAheadBytes = 0;

/**
 * A file stream's next read: {@linkcode MAX_READ_BYTES} within its share of
 * the budget, from the first read on. (Reads that grew from 64 KiB, so that
 * the first bytes went out a fraction of a millisecond sooner, made a
 * 100 MiB download 5-9% slower: each small read is a hand-off to the file
 * thread that the send waits for, and the small buffers are new memory.)
 */
function nextReadBytes(): number {
  const share = STREAM_READ_BUDGET_BYTES / Math.max(1, readingStreams);
  return Math.max(MIN_READ_BYTES, Math.min(MAX_READ_BYTES, share));
}

/**
 * Streams the pieces of a body from an open file: byte ranges, in positional
 * reads of {@linkcode nextReadBytes} (so bytes past a range, or added to a
 * file that grows, are never sent), and the text between ranges of a
 * multipart answer as it is. Closes the file at the end, on error, or when
 * the client goes away. The stream hands on a chunk only when the reader
 * asks (high-water mark 0), and then starts the read of the next one (within
 * {@linkcode READ_AHEAD_BUDGET_BYTES}), asynchronously: that copy from the
 * page cache runs on one of Deno's file threads, on another core, while the
 * chunk handed on is copied into the socket. A client that stops reading
 * stops the reads, and memory holds about two reads per stream.
 *
 * `Deno.serve` does not copy a chunk: it keeps the buffer until its bytes
 * are written to the socket, so a buffer reused too soon would send other
 * bytes. Any other reader may keep a chunk for ever, so each read gets a new
 * buffer, freed once both sides let it go (left to the garbage collector, a
 * 100 MiB download holds 110-125 MB at its peak). With `release` set (see
 * {@linkcode handToServe}) the stream knows `Deno.serve` took each chunk as
 * it was enqueued, and:
 * - keeps {@linkcode REUSED_BUFFERS} buffers and reads into the oldest once
 *   {@linkcode REUSE_DISTANCE_BYTES} followed it, when it is as big as the
 *   read (not more than twice: the budget's shares still hold), and lets
 *   go at once any kept buffer smaller than the read (reads grow when
 *   other streams end), which could never take it but held a slot;
 * - detaches (`ArrayBuffer.prototype.transfer(0)`) every other buffer it
 *   lets go, so it is freed as soon as Rust has sent it.
 * Measured (Deno 2.9.6, 100 MiB to one curl, 8 interleaved rounds, server
 * and curl at real-time priority on a loaded 2-core machine): reading
 * synchronously on the event loop (the copy from the page cache, then the
 * one into the socket) 2,139 MiB/s and 48 ms of server CPU per download;
 * reading ahead 2,220 MiB/s (faster in every round, 1.05x; 1.10-1.17x when
 * the machine was busier) and 56 ms (a read on another thread costs more);
 * nginx 2,636 MiB/s, 17 ms. Reads ahead of 256 KiB, 512 KiB or 2 MiB were
 * slower than 1 MiB. Measured again (30 interleaved rounds of 2 downloads,
 * RT priority): reading ahead 1.06x reading synchronously, faster in 19 of
 * 30 (1.08x, 17 of 30, without RT priority); 1 MiB reads from the first
 * on, with 5 buffers of 1 MiB per download instead of 7, 1.06x reads that
 * grew from 64 KiB, faster in 54 of 60 (1.05x, 24 of 40, without RT
 * priority); nginx, with sendfile, needs 15-20 ms of CPU against our 50-60.
 * What parts this stream from the runtime's floor (bench/reference/
 * files_big_floor.ts, a `Deno.serve` streaming views of the file in memory)
 * is the copy of each read from the page cache, which no Deno 2.9.6 API
 * avoids (no sendfile; `FsFile.readable` copies too; node:fs `openAsBlob`
 * reads the whole file into memory): that floor with a copy of each 1 MiB
 * chunk into a reused buffer ran as fast as this stream (1.00x, 12 of 24
 * rounds faster), both 0.85-0.9x the floor.
 */
function streamFileRanges(
  handle: FileHandle,
  pieces: readonly (ByteRange | string)[],
  close: () => void,
  release: ChunkRelease = { handedToServe: false },
  sendTimeoutMs: number = SEND_TIMEOUT_MS,
): ReadableStream<Uint8Array> {
  let index = 0;
  let position = 0; // where the next read of the current range starts
  let remaining = 0; // bytes left of the range being read
  let counted = false;
  let handedBytes = 0; // bytes enqueued so far
  // handedBytes when Deno.serve last asked for more: it then holds less than
  // 64 KiB of those (see REUSE_DISTANCE_BYTES); of the chunk enqueued since,
  // perhaps all.
  let askedBytes = 0;
  // Buffers Deno.serve took, oldest first, with handedBytes after each.
  const kept: { buffer: Uint8Array<ArrayBuffer>; handedAfter: number }[] = [];
  // The read of the next chunk, started as soon as the last one was handed on.
  let ahead: { chunk: Uint8Array<ArrayBuffer>; read: Promise<number> } | null =
    null;
  // Send timeout: one timer per stream, re-armed only when it fires (a pull
  // just notes the time), so a download costs a timer per timeout period,
  // not per chunk. `waitingSince` is when the stream last waited for a pull;
  // null while a pull reads (a slow disk is not the client's fault).
  let waitingSince: number | null = Date.now();
  let timer: ReturnType<typeof setTimeout> | undefined;
  let stalled = (_error: Error) => {};
  const checkProgress = () => {
    const waited = waitingSince === null ? 0 : Date.now() - waitingSince;
    if (waited >= sendTimeoutMs) {
      timer = undefined;
      stalled(new Error(`no progress for ${sendTimeoutMs} ms (send timeout)`));
      return;
    }
    timer = setTimeout(checkProgress, sendTimeoutMs - waited);
    // An abandoned stream does not keep the process alive.
    Deno.unrefTimer(timer);
  };
  let ended = false;
  const finish = (sent = true) => {
    if (!ended) {
      ended = true;
      release.onEnd?.(sent);
    }
    if (counted) readingStreams--;
    counted = false;
    if (ahead !== null) readAheadBytes -= ahead.chunk.length;
    ahead = null;
    clearTimeout(timer);
    timer = undefined;
    waitingSince = null;
    for (const { buffer } of kept.splice(0)) {
      keptBufferBytes -= buffer.length;
      buffer.buffer.transfer(0);
    }
    close();
  };
  /** A buffer for a read of `bytes`: the oldest kept one if it may be reused. */
  const takeBuffer = (bytes: number): Uint8Array<ArrayBuffer> => {
    // Kept buffers smaller than this read can never take it: let them go
    // now (detaching is safe even while Deno.serve still sends them, see
    // below), so that the growing reads' small buffers do not hold the
    // slots and make the first full-size reads take new buffers.
    for (let i = kept.length - 1; i >= 0; i--) {
      const { buffer } = kept[i]!;
      if (buffer.length < bytes) {
        kept.splice(i, 1);
        keptBufferBytes -= buffer.length;
        buffer.buffer.transfer(0);
      }
    }
    const oldest = kept[0];
    if (
      oldest !== undefined &&
      askedBytes - oldest.handedAfter >= REUSE_DISTANCE_BYTES
    ) {
      kept.shift();
      const { length } = oldest.buffer;
      keptBufferBytes -= length;
      if (length >= bytes && length <= 2 * bytes) return oldest.buffer;
      oldest.buffer.buffer.transfer(0);
    }
    return new Uint8Array(bytes);
  };
  /** Starts a read of up to `size` bytes of the current range, at `position`. */
  const startRead = (size: number) => {
    const bytes = Math.min(size, remaining);
    const chunk = release.handedToServe
      ? takeBuffer(bytes)
      : new Uint8Array(bytes);
    const read = handle.read(chunk, 0, bytes, position)
      .then(({ bytesRead }) => bytesRead);
    // A read still running when the stream ends early (the client went
    // away, the send timeout) fails on the closed file, unawaited.
    read.catch(() => {});
    return { chunk, read };
  };
  return new ReadableStream<Uint8Array>({
    start(controller) {
      stalled = (error) => {
        finish(false);
        controller.error(error);
      };
      checkProgress();
    },
    async pull(controller) {
      waitingSince = null;
      askedBytes = handedBytes;
      try {
        while (remaining === 0) {
          const piece = pieces[index++];
          if (piece === undefined) {
            finish();
            controller.close();
            return;
          }
          if (typeof piece === "string") {
            const text = encoder.encode(piece);
            controller.enqueue(text);
            handedBytes += text.length;
            waitingSince = Date.now();
            return;
          }
          position = piece.start;
          remaining = piece.end - piece.start + 1;
        }
        if (!counted) readingStreams++;
        counted = true;
        const { chunk, read } = ahead ?? startRead(nextReadBytes());
        if (ahead !== null) readAheadBytes -= chunk.length;
        ahead = null;
        // Always an await, even for a read that is done: the enqueue below
        // must not be inside the reader's read call (see there).
        const bytesRead = await read;
        if (!counted) return; // finished meanwhile: the descriptor is closed
        if (bytesRead === 0) throw new Error("file shrank while being sent");
        position += bytesRead;
        remaining -= bytesRead;
        controller.enqueue(
          bytesRead === chunk.length ? chunk : chunk.subarray(0, bytesRead),
        );
        handedBytes += bytesRead;
        // Deno.serve's reader of this stream (resourceForReadableStream in
        // Deno's ext/web/06_streams.js) was waiting for this chunk, so it
        // passed it to Rust inside this enqueue: it only defers a chunk
        // enqueued during its own read call, and this one came after an
        // await. Rust (op_readable_stream_resource_write_sync or _write_buf)
        // keeps its own reference to the memory (a V8Slice holds the
        // BackingStore), so detaching frees nothing it still sends. A
        // desired size below 0 would mean the chunk was queued instead.
        // Read the next chunk on Deno's file thread while this one is sent:
        // the copy from the page cache then runs on another core, beside
        // the copy into the socket.
        const next = remaining > 0 ? nextReadBytes() : 0;
        const readAhead = next > 0 &&
          readAheadBytes + next <= READ_AHEAD_BUDGET_BYTES;
        if (release.handedToServe && controller.desiredSize === 0) {
          // A read ahead needs one buffer more (see REUSED_BUFFERS).
          if (
            kept.length < REUSED_BUFFERS + (readAhead ? 1 : 0) &&
            keptBufferBytes + chunk.length <= MAX_KEPT_BUFFER_BYTES
          ) {
            kept.push({ buffer: chunk, handedAfter: handedBytes });
            keptBufferBytes += chunk.length;
          } else {
            chunk.buffer.transfer(0);
          }
        }
        if (readAhead) {
          ahead = startRead(next);
          readAheadBytes += ahead.chunk.length;
        }
        if (remaining === 0 && index === pieces.length) {
          finish();
          controller.close();
        } else {
          waitingSince = Date.now();
        }
      } catch (error) {
        finish(false);
        controller.error(error);
      }
    },
    cancel() {
      finish(false);
    },
  }, { highWaterMark: 0 });
}

const OPEN_FLAGS = fsConstants.O_RDONLY | (fsConstants.O_NONBLOCK ?? 0) |
  (fsConstants.O_NOFOLLOW ?? 0);

/** Reads a whole small file from an open handle (fewer bytes if it shrank). */
async function readWhole(
  file: OpenFile,
  size: number,
): Promise<Uint8Array<ArrayBuffer>> {
  const bytes = new Uint8Array(size);
  let done = 0;
  while (done < size) {
    const { bytesRead } = await file.handle.read(
      bytes,
      done,
      size - done,
      done,
    );
    if (bytesRead === 0) break;
    done += bytesRead;
  }
  return done === size ? bytes : bytes.slice(0, done);
}

/** node:fs `Stats` as the `Deno.FileInfo` the rest of this file works with. */
function fileInfoFromStats(stats: Stats): Deno.FileInfo {
  return {
    isFile: stats.isFile(),
    isDirectory: stats.isDirectory(),
    isSymlink: stats.isSymbolicLink(),
    isBlockDevice: stats.isBlockDevice(),
    isCharDevice: stats.isCharacterDevice(),
    isFifo: stats.isFIFO(),
    isSocket: stats.isSocket(),
    size: stats.size,
    mtime: stats.mtime,
    atime: stats.atime,
    birthtime: stats.birthtime,
    ctime: stats.ctime,
    dev: stats.dev,
    ino: stats.ino,
    mode: stats.mode,
    nlink: stats.nlink,
    uid: stats.uid,
    gid: stats.gid,
    rdev: stats.rdev,
    blksize: stats.blksize,
    blocks: stats.blocks,
  };
}

// ---------------------------------------------------------------------------
// Validators, preconditions and ranges (RFC 9110 sections 8.8, 13 and 14)
// ---------------------------------------------------------------------------

/** A content coding we may send (RFC 9110 8.4.1); `identity` is the file as it is. */
export type Coding = "identity" | "br" | "zstd" | "gzip";

/**
 * One form of a file's content. Each has its own entity tag, since its bytes
 * differ (RFC 9110 8.8.3), so `If-None-Match` works for each.
 */
export interface Representation {
  /** The content coding of these bytes (`identity`: the file as it is). */
  coding: Coding;
  /** Strong (`"..."`) for stored bytes, weak (`W/"..."`) when compressed while streaming. */
  etag: string;
  /** Length in bytes; null when compressed while streaming (length unknown). */
  size: number | null;
  /** A precompressed file on disk (`x.css.br`) holding these bytes. */
  path?: string;
}

/** The validators and metadata of one version of a file. */
export interface FileMeta {
  /** Size of the file itself (the identity representation). */
  size: number;
  /** Strong entity tag of the file itself, `"size-mtime"` in hex, like nginx's. */
  etag: string;
  /** IMF-fixdate, e.g. `Sun, 22 Nov 2026 01:26:25 GMT`; `""` when the fs has no mtime. */
  lastModified: string;
  /** Last-Modified in whole seconds since the epoch; NaN when unknown. */
  mtimeSeconds: number;
  /** The `Content-Type` of the file itself ({@linkcode contentTypeFor}). */
  contentType: string;
  /** Compressed forms on offer, best first. @default {[]} */
  encoded?: readonly Representation[];
  /** A compressible type with compression on: every answer says `Vary: Accept-Encoding`. @default {false} */
  vary?: boolean;
}

/**
 * A strong entity tag from a file's size and mtime, like nginx's, with an
 * optional suffix naming a compressed form.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { entityTag } from "./server_files.ts";
 * assert.equal(entityTag({ size: 255, mtime: new Date(4096) }, "-br"), `"ff-1000-br"`);
 * ```
 */
export function entityTag(
  info: Pick<Deno.FileInfo, "size" | "mtime">,
  suffix = "",
): string {
  const mtimeMs = info.mtime?.getTime() ?? NaN;
  const time = Number.isNaN(mtimeMs) ? "0" : Math.floor(mtimeMs).toString(16);
  return `"${info.size.toString(16)}-${time}${suffix}"`;
}

/** Builds the validators of a file from its stat. */
export function fileMetaFrom(path: string, info: Deno.FileInfo): FileMeta {
  const mtimeMs = info.mtime?.getTime() ?? NaN;
  const mtimeSeconds = Math.floor(mtimeMs / 1000);
  return {
    size: info.size,
    etag: entityTag(info),
    lastModified: Number.isNaN(mtimeMs)
      ? ""
      : new Date(mtimeSeconds * 1000).toUTCString(),
    mtimeSeconds,
    contentType: contentTypeFor(path),
  };
}

/**
 * True when an `If-Match`/`If-None-Match` list matches `etag`. `*` matches
 * any current representation. Weak comparison ignores the `W/` prefix
 * (RFC 9110 8.8.3.2); strong comparison never matches a weak tag.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { etagListMatches } from "./server_files.ts";
 * assert.equal(etagListMatches(`W/"a", "b"`, `"a"`, true), true);
 * assert.equal(etagListMatches(`W/"a"`, `"a"`, false), false);
 * ```
 */
export function etagListMatches(
  header: string,
  etag: string,
  weak: boolean,
): boolean {
  if (header.trim() === "*") return true;
  const own = weak && etag.startsWith("W/") ? etag.slice(2) : etag;
  for (const raw of header.split(",")) {
    let tag = raw.trim();
    if (tag.startsWith("W/")) {
      if (!weak) continue;
      tag = tag.slice(2);
    }
    if (tag === own) return true;
  }
  return false;
}

/**
 * Parses an HTTP-date (RFC 9110 5.6.7) into whole seconds since the epoch,
 * or NaN when it is not one: the IMF-fixdate browsers send, and the two
 * obsolete forms a recipient must still accept (RFC 850, with a two-digit
 * year, and asctime). Not `Date.parse`, which takes almost anything
 * (`"1"` is 1 January 2001), where RFC 9110 13.1.3 and 13.1.4 say a
 * condition that is not a valid date is ignored: `If-Unmodified-Since: 1`
 * answered 412 for every file changed since 2001.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { parseHttpDateSeconds } from "./server_files.ts";
 * assert.equal(parseHttpDateSeconds("Sun, 06 Nov 1994 08:49:37 GMT"), 784111777);
 * assert.equal(parseHttpDateSeconds("Sunday, 06-Nov-94 08:49:37 GMT"), 784111777);
 * assert.equal(parseHttpDateSeconds("Sun Nov  6 08:49:37 1994"), 784111777);
 * assert.ok(Number.isNaN(parseHttpDateSeconds("1")));
 * ```
 */
export function parseHttpDateSeconds(value: string): number {
  const text = value.trim();
  const dated = IMF_FIXDATE.exec(text) ?? RFC850_DATE.exec(text);
  const asctime = dated === null ? ASCTIME_DATE.exec(text) : null;
  if (dated === null && asctime === null) return NaN;
  const [day, month, year, time] = dated !== null
    ? dated.slice(1) as [string, string, string, string]
    : [asctime![2]!, asctime![1]!, asctime![4]!, asctime![3]!];
  const monthIndex = MONTHS.indexOf(month);
  let fullYear = Number(year);
  if (year.length === 2) {
    // RFC 9110 5.6.7: a two-digit year more than 50 years ahead is in the past.
    const now = new Date().getUTCFullYear();
    fullYear += Math.floor(now / 100) * 100;
    if (fullYear > now + 50) fullYear -= 100;
  }
  const [hours, minutes, seconds] = time.split(":").map(Number) as [
    number,
    number,
    number,
  ];
  const dayOfMonth = Number(day);
  if (
    monthIndex < 0 || dayOfMonth < 1 || dayOfMonth > 31 || hours > 23 ||
    minutes > 59 || seconds > 60
  ) return NaN;
  return Date.UTC(fullYear, monthIndex, dayOfMonth, hours, minutes, seconds) /
    1000;
}

/** `Sun, 06 Nov 1994 08:49:37 GMT`: day, month, year, time. */
const IMF_FIXDATE =
  /^(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun), (\d\d) ([A-Z][a-z]{2}) (\d{4}) (\d\d:\d\d:\d\d) GMT$/;
/** `Sunday, 06-Nov-94 08:49:37 GMT`: day, month, two-digit year, time. */
const RFC850_DATE =
  /^(?:Mon|Tues|Wednes|Thurs|Fri|Satur|Sun)day, (\d\d)-([A-Z][a-z]{2})-(\d\d) (\d\d:\d\d:\d\d) GMT$/;
/** `Sun Nov  6 08:49:37 1994`: month, day, time, year. */
const ASCTIME_DATE =
  /^(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun) ([A-Z][a-z]{2}) ([ \d]\d) (\d\d:\d\d:\d\d) (\d{4})$/;

/**
 * The precondition checks of RFC 9110 13.2.2, in its order: 412 when
 * `If-Match` (or, without it, `If-Unmodified-Since`) fails; 304 when
 * `If-None-Match` (or, without it, `If-Modified-Since`) says the client's copy
 * is current. `null` means go on and send the file. `etag` is the tag of the
 * representation chosen (defaults to the file's own).
 *
 * An `If-Modified-Since` later than the server's clock is ignored, as RFC 2616
 * 14.25 said of such dates: it is a client clock error, and a 304 would hide
 * every change made before the client's clock catches up.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { evaluatePreconditions, type FileMeta } from "./server_files.ts";
 * const meta: FileMeta = {
 *   size: 5,
 *   etag: `"5-1000"`,
 *   lastModified: "Thu, 01 Jan 1970 00:00:04 GMT",
 *   mtimeSeconds: 4,
 *   contentType: "text/plain; charset=utf-8",
 * };
 * const check = (headers: Record<string, string>) =>
 *   evaluatePreconditions(new Headers(headers), meta);
 * assert.equal(check({ "if-none-match": `W/"5-1000"` }), 304);
 * assert.equal(check({ "if-match": `"other"` }), 412);
 * // If-None-Match decides alone: the date beside it is not looked at.
 * assert.equal(
 *   check({ "if-none-match": `"old"`, "if-modified-since": meta.lastModified }),
 *   null,
 * );
 * ```
 */
export function evaluatePreconditions(
  headers: Headers,
  meta: FileMeta,
  etag: string = meta.etag,
  nowMs?: number,
): 304 | 412 | null {
  const ifMatch = headers.get("if-match");
  if (ifMatch !== null) {
    if (!etagListMatches(ifMatch, etag, false)) return 412;
  } else {
    const since = headers.get("if-unmodified-since");
    const seconds = since === null ? NaN : parseHttpDateSeconds(since);
    if (!Number.isNaN(seconds) && meta.mtimeSeconds > seconds) return 412;
  }
  const ifNoneMatch = headers.get("if-none-match");
  if (ifNoneMatch !== null) {
    return etagListMatches(ifNoneMatch, etag, true) ? 304 : null;
  }
  const since = headers.get("if-modified-since");
  const seconds = since === null ? NaN : parseHttpDateSeconds(since);
  if (
    !Number.isNaN(seconds) && seconds * 1000 <= (nowMs ?? Date.now()) &&
    meta.mtimeSeconds <= seconds
  ) {
    return 304;
  }
  return null;
}

/** An inclusive byte range, as in `Content-Range: bytes start-end/size`. */
export interface ByteRange {
  /** Offset of the first byte. */
  start: number;
  /** Offset of the last byte (inclusive). */
  end: number;
}

/**
 * At most this many ranges in one `Range` header; more are answered with the
 * whole file. A client never needs many, and the "killer range" attack
 * (CVE-2011-3192, against Apache) sent hundreds of overlapping ones to make
 * the server build a huge multipart answer from a small file.
 */
export const MAX_RANGES = 16;

/**
 * Parses a `Range` header for a file of `size` bytes (RFC 9110 14.1.2).
 * Returns the ranges to send, `"unsatisfiable"` (416: none of them is in the
 * file, or one ends before it starts, as std, Go and nginx answer), or `null`
 * when the header is ignored and the whole file sent (200):
 *
 * - bad syntax or another unit (RFC 9110 14.2 lets a server ignore Range);
 * - an empty file (as std and Go do: a 416 for a file with nothing in it
 *   helps no client);
 * - more than {@linkcode MAX_RANGES} ranges, or ranges adding up to more
 *   than the file (CVE-2011-3192: a small file must not become a big answer).
 *
 * Ranges that overlap or touch are merged into one (RFC 9110 14.3 allows it),
 * and the rest keep the order the client asked for (RFC 9110 15.3.7.2).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { parseRanges } from "./server_files.ts";
 * assert.deepEqual(parseRanges("bytes=0-499", 1000), [{ start: 0, end: 499 }]);
 * assert.deepEqual(parseRanges("bytes=-300", 1000), [{ start: 700, end: 999 }]);
 * assert.deepEqual(parseRanges("bytes=500-599,0-9", 1000), [
 *   { start: 500, end: 599 },
 *   { start: 0, end: 9 },
 * ]);
 * assert.deepEqual(parseRanges("bytes=0-9,10-19", 1000), [{ start: 0, end: 19 }]);
 * assert.equal(parseRanges("bytes=1000-", 1000), "unsatisfiable");
 * assert.equal(parseRanges("bytes=500-200", 1000), "unsatisfiable");
 * ```
 */
export function parseRanges(
  header: string,
  size: number,
): ByteRange[] | "unsatisfiable" | null {
  const match = /^\s*bytes\s*=(.*)$/is.exec(header);
  if (match === null || size === 0) return null;
  // RFC 9110 5.6.1: a list may hold empty elements ("0-1, ,5-6").
  const specs = match[1]!.split(",").map((spec) => spec.trim()).filter((spec) =>
    spec !== ""
  );
  if (specs.length === 0 || specs.length > MAX_RANGES) return null;
  const ranges: (ByteRange & { order: number })[] = [];
  let total = 0;
  for (const spec of specs) {
    const parts = /^(\d*)\s*-\s*(\d*)$/.exec(spec);
    if (parts === null) return null;
    const [, first, last] = parts;
    let range: ByteRange | null;
    if (first === "") {
      if (last === "") return null;
      // Suffix form: the last N bytes. "bytes=-0" asks for nothing.
      const suffix = Number(last);
      range = suffix === 0
        ? null
        : { start: Math.max(0, size - suffix), end: size - 1 };
    } else {
      const start = Number(first);
      const end = last === "" ? Infinity : Number(last);
      // RFC 9110 14.1.1 calls this invalid, and 14.2 lets a server ignore or
      // reject the header: std, Go, nginx and Caddy reject it (416).
      if (end < start) return "unsatisfiable";
      range = start >= size ? null : { start, end: Math.min(end, size - 1) };
    }
    if (range === null) continue; // unsatisfiable alone; the others may do
    total += range.end - range.start + 1;
    if (total > size) return null;
    ranges.push({ ...range, order: ranges.length });
  }
  if (ranges.length === 0) return "unsatisfiable";
  // Merge what overlaps or touches; a merged range takes its earliest place.
  ranges.sort((a, b) => a.start - b.start);
  const merged: (ByteRange & { order: number })[] = [];
  for (const range of ranges) {
    const last = merged[merged.length - 1];
    if (last !== undefined && range.start <= last.end + 1) {
      last.end = Math.max(last.end, range.end);
      last.order = Math.min(last.order, range.order);
    } else {
      merged.push({ ...range });
    }
  }
  merged.sort((a, b) => a.order - b.order);
  return merged.map(({ start, end }) => ({ start, end }));
}

/**
 * Decides whether a `Range` applies: only if `If-Range` (when present) still
 * names this version. RFC 9110 13.1.5: an entity tag there needs a strong
 * match with the file's own tag (ranges are always cut from the file itself),
 * a date an exact one.
 */
function selectRanges(
  range: string,
  headers: Headers,
  meta: FileMeta,
): ByteRange[] | "unsatisfiable" | null {
  const ifRange = headers.get("if-range");
  if (ifRange !== null) {
    const value = ifRange.trim();
    const current = value.startsWith('"') || value.startsWith("W/")
      ? value === meta.etag
      : parseHttpDateSeconds(value) === meta.mtimeSeconds;
    if (!current) return null;
  }
  return parseRanges(range, meta.size);
}

/**
 * Picks the content coding to send from `Accept-Encoding` (RFC 9110 12.5.3):
 * the offered coding with the highest q-value, the first offered on a tie; `*`
 * stands for any coding not named, `;q=0` refuses one, `x-gzip` is gzip
 * (RFC 9110 8.4.1.3). No header, or nothing offered acceptable: identity,
 * the file as it is. That includes `identity;q=0` with nothing else
 * acceptable: RFC 9110 12.5.3 leaves the answer open there, and like nginx
 * and Caddy we send the file rather than a 406.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { negotiateCoding } from "./server_files.ts";
 * assert.equal(negotiateCoding("gzip, deflate, br", ["br", "gzip"]), "br");
 * assert.equal(negotiateCoding("gzip, br, zstd", ["zstd", "gzip"]), "zstd");
 * assert.equal(negotiateCoding("br;q=0, gzip", ["br", "gzip"]), "gzip");
 * assert.equal(negotiateCoding("gzip;q=0.5, identity", ["gzip"]), "identity");
 * ```
 */
export function negotiateCoding(
  header: string | null,
  offered: readonly Coding[],
): Coding {
  if (header === null || offered.length === 0) return "identity";
  const weights = parseAcceptEncoding(header);
  const any = weights.get("*");
  let best: Coding = "identity";
  let bestQ = 0;
  for (const coding of offered) {
    const q = weights.get(coding) ?? any ?? 0;
    if (q > bestQ) [best, bestQ] = [coding, q];
  }
  const identityQ = weights.get("identity");
  if (identityQ !== undefined && identityQ > bestQ) return "identity";
  return best;
}

/**
 * The q-value of each coding named in an `Accept-Encoding`, the first
 * mention winning, among its first {@linkcode MAX_ACCEPT_ENCODING_ITEMS}
 * items. Browsers send a handful of distinct values, so the last ones
 * parsed are kept (at most {@linkcode MAX_PARSED_ACCEPT_ENCODINGS}).
 */
function parseAcceptEncoding(header: string): ReadonlyMap<string, number> {
  const known = parsedAcceptEncodings.get(header);
  if (known !== undefined) return known;
  const weights = new Map<string, number>();
  const items = header.split(",", MAX_ACCEPT_ENCODING_ITEMS);
  for (const item of items) {
    const [rawName, ...params] = item.split(";");
    let name = rawName!.trim().toLowerCase();
    if (name === "") continue;
    if (name === "x-gzip") name = "gzip";
    let q = 1;
    for (const param of params) {
      const [key, value = ""] = param.split("=").map((x) => x.trim());
      if (key!.toLowerCase() !== "q") continue;
      // RFC 9110 12.4.2: qvalue = 0[.ddd] / 1[.000]; anything else refuses.
      q = /^(0(\.\d{0,3})?|1(\.0{0,3})?)$/.test(value) ? Number(value) : 0;
    }
    if (!weights.has(name)) weights.set(name, q);
  }
  if (parsedAcceptEncodings.size >= MAX_PARSED_ACCEPT_ENCODINGS) {
    parsedAcceptEncodings.clear();
  }
  if (header.length <= 200) parsedAcceptEncodings.set(header, weights);
  return weights;
}

const MAX_PARSED_ACCEPT_ENCODINGS = 64;
/**
 * Items of one `Accept-Encoding` that are read; the rest are ignored.
 * Browsers send 3 to 5; each costs about 1 µs to read, so a 60 KB header
 * of 5,000 made-up codings took 6 ms of CPU for a request.
 */
export const MAX_ACCEPT_ENCODING_ITEMS = 64;
const parsedAcceptEncodings = new Map<string, ReadonlyMap<string, number>>();

// ---------------------------------------------------------------------------
// Deciding: what to answer for one file, from the request alone
// ---------------------------------------------------------------------------

/** What the body of a planned answer holds. */
export type BodyPlan =
  /** No body (304). */
  | { kind: "none" }
  /** The status's reason phrase as text (412, 416). */
  | { kind: "reason" }
  /** The chosen representation, all of it. */
  | { kind: "whole" }
  /**
   * Ranges of the file itself, in order, with the literal text between them
   * (the part headers of a `multipart/byteranges` answer).
   */
  | { kind: "ranges"; pieces: readonly (ByteRange | string)[] };

/** What {@linkcode planFileResponse} decided: everything but the bytes. */
export interface FilePlan {
  /** The status of the answer. */
  status: 200 | 206 | 304 | 412 | 416;
  /** Shared between plans of one cached file: never modify it. */
  headers: readonly [string, string][];
  /** The representation whose bytes (or validators) the answer carries. */
  representation: Representation;
  /** What the body holds. */
  body: BodyPlan;
}

/**
 * What plans of a cached file would otherwise build again at every request:
 * its identity representation, and the header lists of each representation.
 * A cached file's meta lives as long as its cache entry, so a cache hit plans
 * without allocating; the maps are weak, so the lists go with the entry.
 */
const identities = new WeakMap<FileMeta, Representation>();
const builtHeaders = new WeakMap<Representation, {
  extra: readonly [string, string][];
  ok?: readonly [string, string][];
  notModified?: readonly [string, string][];
}>();

/** The file itself as a representation. */
function identityOf(meta: FileMeta): Representation {
  let identity = identities.get(meta);
  if (identity === undefined) {
    identity = { coding: "identity", etag: meta.etag, size: meta.size };
    identities.set(meta, identity);
  }
  return identity;
}

/** The memo of built header lists for a representation (with these extras). */
function headerMemo(
  representation: Representation,
  extra: readonly [string, string][],
) {
  let memo = builtHeaders.get(representation);
  if (memo === undefined || memo.extra !== extra) {
    memo = { extra };
    builtHeaders.set(representation, memo);
  }
  return memo;
}

/**
 * Decides the answer to a GET for one file version, the way Go's
 * `checkPreconditions` does, without touching the disk or building a body:
 * 412 or 304 from the preconditions, 416 or 206 from the range, else 200,
 * with every header of that answer. `extra` (the `--header` and CORS
 * headers) goes on all of them. A HEAD is planned as a GET; the body is
 * dropped at the edge ({@linkcode withoutBodyForHead}), so both carry the
 * same headers (RFC 9110 9.3.2).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { planFileResponse, type FileMeta } from "./server_files.ts";
 * const meta: FileMeta = {
 *   size: 10,
 *   etag: `"a-0"`,
 *   lastModified: "",
 *   mtimeSeconds: NaN,
 *   contentType: "text/plain; charset=utf-8",
 * };
 * const request = new Request("http://h/a", { headers: { range: "bytes=0-1" } });
 * assert.equal(planFileResponse(request, meta).status, 206);
 * ```
 */
export function planFileResponse(
  request: Request,
  meta: FileMeta,
  extra: readonly [string, string][] = [],
): FilePlan {
  const headers = request.headers;
  const identity = identityOf(meta);
  const range = headers.get("range");
  const chosen = chooseRepresentation(headers, range, meta, identity);
  const precondition = evaluatePreconditions(headers, meta, chosen.etag);
  if (precondition === 304) {
    return {
      status: 304,
      headers: notModifiedHeaders(meta, chosen, extra),
      representation: chosen,
      body: { kind: "none" },
    };
  }
  if (precondition === 412) {
    return reasonPlan(412, meta, chosen, extra);
  }
  if (chosen !== identity) {
    return {
      status: 200,
      headers: okHeaders(meta, chosen, extra),
      representation: chosen,
      body: { kind: "whole" },
    };
  }
  const ranges = range === null ? null : selectRanges(range, headers, meta);
  if (ranges === "unsatisfiable") {
    // RFC 9110 15.5.17: say how big the file is, so the client can ask again.
    return reasonPlan(416, meta, identity, extra, [[
      "Content-Range",
      `bytes */${meta.size}`,
    ]]);
  }
  if (ranges !== null && ranges.length === 1) {
    const range = ranges[0]!;
    const partial = [...okHeaders(meta, identity, extra)];
    partial.push(
      ["Content-Range", `bytes ${range.start}-${range.end}/${meta.size}`],
    );
    setHeader(partial, "Content-Length", String(range.end - range.start + 1));
    return {
      status: 206,
      headers: partial,
      representation: identity,
      body: { kind: "ranges", pieces: [range] },
    };
  }
  if (ranges !== null) return multipartPlan(meta, identity, ranges, extra);
  return {
    status: 200,
    headers: okHeaders(meta, identity, extra),
    representation: identity,
    body: { kind: "whole" },
  };
}

/**
 * The representation to answer with: a compressed one when the client
 * accepts it, except for a request with a usable `Range`. Ranges are always
 * cut from the file itself, so `Content-Encoding` never comes with a 206
 * (nginx and Caddy do the same): a range of compressed bytes would change
 * with the compressor and cannot be resumed against the original.
 */
function chooseRepresentation(
  headers: Headers,
  range: string | null,
  meta: FileMeta,
  identity: Representation,
): Representation {
  const encoded = meta.encoded;
  if (encoded === undefined || encoded.length === 0) return identity;
  if (range !== null && parseRanges(range, meta.size) !== null) return identity;
  const acceptEncoding = headers.get("accept-encoding");
  if (acceptEncoding === null) return identity;
  const coding = negotiateCoding(acceptEncoding, encoded.map((r) => r.coding));
  return encoded.find((r) => r.coding === coding) ?? identity;
}

/**
 * A 206 with several ranges: `multipart/byteranges` (RFC 9110 14.6), each
 * part with its own `Content-Type` and `Content-Range`; `Content-Length` is
 * exact. The boundary is a hash of the file's tag and the ranges: as unlikely
 * as a random one to occur in the file, and the same request always gets the
 * same answer (so the plan stays a pure function, and HEAD matches GET).
 */
function multipartPlan(
  meta: FileMeta,
  identity: Representation,
  ranges: readonly ByteRange[],
  extra: readonly [string, string][],
): FilePlan {
  const boundary = createHash("sha256")
    .update(`${identity.etag} ${JSON.stringify(ranges)}`)
    .digest("hex").slice(0, 32);
  const pieces: (ByteRange | string)[] = [];
  let length = 0;
  ranges.forEach((range, i) => {
    const head = `${i === 0 ? "" : "\r\n"}--${boundary}\r\n` +
      `Content-Type: ${meta.contentType}\r\n` +
      `Content-Range: bytes ${range.start}-${range.end}/${meta.size}\r\n\r\n`;
    pieces.push(head, range);
    length += head.length + range.end - range.start + 1;
  });
  const tail = `\r\n--${boundary}--\r\n`;
  pieces.push(tail);
  length += tail.length;
  const headers = [...okHeaders(meta, identity, extra)];
  setHeader(
    headers,
    "Content-Type",
    `multipart/byteranges; boundary=${boundary}`,
  );
  setHeader(headers, "Content-Length", String(length));
  return {
    status: 206,
    headers,
    representation: identity,
    body: { kind: "ranges", pieces },
  };
}

/** A 412 or 416 plan: a short text body, plus the extra headers. */
function reasonPlan(
  status: 412 | 416,
  meta: FileMeta,
  representation: Representation,
  extra: readonly [string, string][],
  more: readonly [string, string][] = [],
): FilePlan {
  return {
    status,
    headers: textHeaders(
      REASON_BYTES[status]!.byteLength,
      "text/plain; charset=utf-8",
      [...more, ...(meta.vary ? VARY : []), ...extra],
    ),
    representation,
    body: { kind: "reason" },
  };
}

/** Headers of a 200 for one representation: type, length, validators, caching, ranges, nosniff, extras. */
function okHeaders(
  meta: FileMeta,
  representation: Representation,
  extra: readonly [string, string][],
): readonly [string, string][] {
  const memo = headerMemo(representation, extra);
  return memo.ok ??= buildOkHeaders(meta, representation, extra);
}

function buildOkHeaders(
  meta: FileMeta,
  representation: Representation,
  extra: readonly [string, string][],
): [string, string][] {
  const headers: [string, string][] = [["Content-Type", meta.contentType]];
  if (representation.coding === "identity") {
    headers.push(["Accept-Ranges", "bytes"]);
  } else {
    headers.push(["Content-Encoding", representation.coding]);
  }
  headers.push(["X-Content-Type-Options", "nosniff"]);
  if (representation.size !== null) {
    headers.push(["Content-Length", String(representation.size)]);
  }
  return pushValidators(headers, meta, representation, extra);
}

const VARY: readonly [string, string][] = [["Vary", "Accept-Encoding"]];

/** Headers of a 304: only the fields RFC 9110 15.4.5 asks for, plus extras. */
function notModifiedHeaders(
  meta: FileMeta,
  representation: Representation,
  extra: readonly [string, string][],
): readonly [string, string][] {
  const memo = headerMemo(representation, extra);
  return memo.notModified ??= pushValidators([], meta, representation, extra);
}

function pushValidators(
  headers: [string, string][],
  meta: FileMeta,
  representation: Representation,
  extra: readonly [string, string][],
): [string, string][] {
  headers.push(["ETag", representation.etag]);
  if (meta.lastModified !== "") {
    headers.push(["Last-Modified", meta.lastModified]);
  }
  headers.push(["Cache-Control", CACHE_CONTROL]);
  // RFC 9110 12.5.5: caches must key compressible files on Accept-Encoding,
  // whichever coding this answer has.
  if (meta.vary) headers.push(VARY[0]!);
  return withExtra(headers, extra);
}

/**
 * Adds the `--header` and CORS headers to a response's own: a name the
 * server already sets (say `Cache-Control`) takes the user's value instead,
 * and a name given twice (`Link`) is sent twice, as `@std/http`'s
 * `serveDir` appends them. `Vary` is only ever added to: a cache must still
 * key a compressible file on `Accept-Encoding` (RFC 9110 12.5.5) when the
 * user's own `Vary: Origin` comes along.
 */
function withExtra(
  headers: [string, string][],
  extra: readonly [string, string][],
): [string, string][] {
  if (extra.length === 0) return headers;
  const own = headers.length;
  for (const [name, value] of extra) {
    const lower = name.toLowerCase();
    const index = lower === "vary"
      ? -1
      : headers.findIndex(([n], i) => i < own && n.toLowerCase() === lower);
    if (index >= 0) headers.splice(index, 1);
    headers.push([name, value]);
  }
  return headers;
}

/** Replaces (or adds) one header in a list. */
function setHeader(headers: [string, string][], name: string, value: string) {
  const lower = name.toLowerCase();
  const index = headers.findIndex(([n]) => n.toLowerCase() === lower);
  if (index >= 0) headers[index] = [name, value];
  else headers.push([name, value]);
}

function textHeaders(
  length: number,
  contentType: string,
  extra: readonly [string, string][],
): [string, string][] {
  return withExtra([
    ["Content-Type", contentType],
    ["Content-Length", String(length)],
    ["X-Content-Type-Options", "nosniff"],
  ], extra);
}

// ---------------------------------------------------------------------------
// Building: attaching the bytes to a plan
// ---------------------------------------------------------------------------

/** Reason phrases, for `statusText` and the bodies of short answers. */
const STATUS_TEXT: Record<number, string> = {
  200: "OK",
  204: "No Content",
  206: "Partial Content",
  301: "Moved Permanently",
  304: "Not Modified",
  400: "Bad Request",
  403: "Forbidden",
  404: "Not Found",
  405: "Method Not Allowed",
  412: "Precondition Failed",
  416: "Range Not Satisfiable",
  421: "Misdirected Request",
  499: "Client Closed Request",
  500: "Internal Server Error",
  503: "Service Unavailable",
};

const encoder = new TextEncoder();

/** Each reason phrase as the body of a short text answer (`"Not Found\n"`), encoded once. */
const REASON_BYTES: Record<number, Uint8Array<ArrayBuffer>> = Object
  .fromEntries(
    Object.entries(STATUS_TEXT).map((
      [status, text],
    ) => [status, encoder.encode(text + "\n")]),
  );

/**
 * Creates a Response (with its `statusText`, as std's do) and then appends
 * its headers. Appending them one by one on `response.headers` is several
 * times faster in Deno 2.9 than passing them in the constructor's init
 * (measured: ~2 µs against ~8 µs for 7 headers), and this runs on every
 * request. Bodies here are bytes or streams, which get no default type.
 */
function makeResponse(
  body: BodyInit | null,
  status: number,
  headers: readonly [string, string][],
): Response {
  const response = new Response(body, {
    status,
    statusText: STATUS_TEXT[status] ?? "",
  });
  const target = response.headers;
  for (let i = 0; i < headers.length; i++) {
    const header = headers[i]!;
    target.append(header[0], header[1]);
  }
  return response;
}

/**
 * Where the bytes of a file come from: memory (cached small files) or an open
 * file holding the chosen representation (the file itself, or its `.br`,
 * `.zst` or `.gz`).
 */
type BodySource = MemorySource | { kind: "file"; file: OpenFile };

/** One representation held in memory, with its everyday answers built once. */
interface MemoryForm {
  bytes: Uint8Array<ArrayBuffer>;
  ok: Response;
  /**
   * The same 200 without `Content-Length`, for a GET answered straight to
   * `Deno.serve` with no access log reading it (see {@linkcode attachBody}).
   * `Deno.serve` writes the length of a byte body itself and drops the one
   * given, so on the wire the two are the same bytes; but each header costs
   * `Deno.serve` work per answer (conversion, allocations, the scans of its
   * compression check), and this one for nothing.
   */
  wire: Response;
  notModified: Response;
}

/**
 * A small file held in memory: the file itself and its compressed copies,
 * each with its 200 and 304 built once. Each request gets a `clone()`:
 * copying a finished Response is about 7x cheaper than building one and
 * setting its headers again, and the clone shares the bytes instead of
 * copying them. So a compressed answer costs the same as a plain one.
 */
interface MemorySource {
  kind: "memory";
  forms: Partial<Record<Coding, MemoryForm>>;
  /** The file itself, for ranges. */
  bytes: Uint8Array<ArrayBuffer>;
}

/** A compressed copy of a file, ready to keep in memory. */
interface CompressedCopy {
  coding: "br" | "zstd" | "gzip";
  bytes: Uint8Array<ArrayBuffer>;
  etag: string;
}

/**
 * The meta and memory source of a small file and its compressed copies
 * (which become `meta.encoded`, in their order: br, zstd, gzip).
 */
function prepareMemoryFile(
  bytes: Uint8Array<ArrayBuffer>,
  fileMeta: FileMeta,
  copies: readonly CompressedCopy[],
  extra: readonly [string, string][],
): { meta: FileMeta; source: MemorySource } {
  const encoded = copies.map((copy): Representation => ({
    coding: copy.coding,
    etag: copy.etag,
    size: copy.bytes.byteLength,
  }));
  const meta = { ...fileMeta, encoded };
  const forms: Partial<Record<Coding, MemoryForm>> = {};
  const all = [
    { coding: "identity" as const, bytes, etag: meta.etag },
    ...copies,
  ];
  for (const { coding, bytes: formBytes, etag } of all) {
    const representation = { coding, etag, size: formBytes.byteLength };
    const headers = okHeaders(meta, representation, extra);
    forms[coding] = {
      bytes: formBytes,
      ok: makeResponse(formBytes, 200, headers),
      wire: makeResponse(
        formBytes,
        200,
        headers.filter(([name]) => name.toLowerCase() !== "content-length"),
      ),
      notModified: makeResponse(
        null,
        304,
        notModifiedHeaders(meta, representation, extra),
      ),
    };
  }
  return { meta, source: { kind: "memory", forms, bytes } };
}

/**
 * Builds the Response a plan describes from the bytes of `source`. It owns
 * the open file: closed here when the plan sends none of it, else by the
 * stream at its end, on error, when the client goes away, or when it stops
 * reading for `sendTimeoutMs` ({@linkcode SEND_TIMEOUT_MS}). `wire`: the
 * answer goes straight to `Deno.serve`, so a file in memory may be sent in
 * its {@linkcode MemoryForm.wire} form.
 */
function attachBody(
  plan: FilePlan,
  source: BodySource,
  sendTimeoutMs: number = SEND_TIMEOUT_MS,
  wire = false,
): Response {
  const { body, representation } = plan;
  if (body.kind !== "whole" && body.kind !== "ranges") closeSource(source);
  if (source.kind === "memory") {
    const form = source.forms[representation.coding];
    if (form !== undefined && body.kind === "whole") {
      return (wire ? form.wire : form.ok).clone();
    }
    if (form !== undefined && body.kind === "none") {
      return form.notModified.clone();
    }
  }
  switch (body.kind) {
    case "none":
      return makeResponse(null, plan.status, plan.headers);
    case "reason":
      return makeResponse(
        REASON_BYTES[plan.status]!,
        plan.status,
        plan.headers,
      );
    case "whole": {
      const { file } = source as { file: OpenFile };
      // No size means compressed while streaming (a big compressible file).
      if (representation.size === null) {
        const whole = compressWhileStreaming(
          file.stream(0, file.info.size, undefined, sendTimeoutMs),
          representation.coding as StreamedCoding,
        );
        return makeResponse(whole, plan.status, plan.headers);
      }
      const release = { handedToServe: false };
      const whole = file.stream(0, file.info.size, release, sendTimeoutMs);
      return releasing(makeResponse(whole, plan.status, plan.headers), release);
    }
    case "ranges": {
      if (source.kind === "memory") {
        const bytes = piecesFromMemory(source.bytes, body.pieces);
        return makeResponse(bytes, plan.status, plan.headers);
      }
      const release = { handedToServe: false };
      const bytes = streamFilePieces(
        source.file,
        body.pieces,
        release,
        sendTimeoutMs,
      );
      return releasing(makeResponse(bytes, plan.status, plan.headers), release);
    }
  }
}

/** The codings made while a file streams, best first: zstd, else gzip. */
const STREAMED_CODINGS = ["zstd", "gzip"] as const;
type StreamedCoding = typeof STREAMED_CODINGS[number];

/**
 * zstd or gzip at a fast level while the file streams ({@linkcode
 * ZSTD_STREAM_LEVEL}, {@linkcode GZIP_STREAM_LEVEL}): the file is read only as
 * the answer is read (gzip: one read each; zstd: until it has a 128 KiB block
 * of output), so a client that reads slowly holds little. Cancelling the
 * answer (the client went away) cancels the file's stream, which closes the
 * file.
 *
 * Not `Duplex.toWeb(zlib.createGzip())`: in Deno 2.9.6 its adapter enqueues
 * gzip's pending output after the answer was cancelled, and the TypeError it
 * throws is uncaught: 200 clients that each closed a gzip download of a big
 * text file after a few reads ended the server.
 */
function compressWhileStreaming(
  source: ReadableStream<Uint8Array>,
  coding: StreamedCoding,
): ReadableStream<Uint8Array> {
  const compressor = coding === "zstd"
    ? zlib.createZstdCompress({
      params: { [zlib.constants.ZSTD_c_compressionLevel]: ZSTD_STREAM_LEVEL },
    })
    : zlib.createGzip({ level: GZIP_STREAM_LEVEL });
  const reader = source.getReader();
  let over = false; // closed, errored or cancelled: nothing more is enqueued
  let ending: Promise<void> | null = null;
  let chunksOut = 0;
  compressingStreams++;
  let counted = true;
  const uncount = () => {
    if (counted) compressingStreams--;
    counted = false;
  };
  compressor.once("close", uncount);
  return new ReadableStream<Uint8Array>({
    start(controller) {
      // The file's stream fails by itself after its send timeout, also
      // when nothing reads this one (an answer dropped unread): that ends
      // the compressor too.
      reader.closed.catch((error) => {
        if (over) return;
        over = true;
        compressor.destroy();
        controller.error(error);
      });
      compressor.on("data", (chunk: Uint8Array) => {
        chunksOut++;
        if (!over) controller.enqueue(chunk);
      });
      compressor.on("error", (error) => {
        if (over) return;
        over = true;
        controller.error(error);
        reader.cancel(error).catch(() => {});
      });
    },
    async pull(controller) {
      // A pull that enqueues nothing is not called again (WHATWG Streams
      // 4.9.4), and zstd holds its output until it has a 128 KiB block: so
      // read on until it gives some (gzip gives some for each read).
      const before = chunksOut;
      while (chunksOut === before && !over) await pullOnce(controller);
    },
    cancel(reason) {
      over = true;
      compressor.destroy();
      return reader.cancel(reason);
    },
  }, { highWaterMark: 0 });

  async function pullOnce(
    controller: ReadableStreamDefaultController<Uint8Array>,
  ): Promise<void> {
    // Once the file is all written, each further pull waits for the end.
    if (ending !== null) return await ending;
    let read: ReadableStreamReadResult<Uint8Array>;
    try {
      read = await reader.read();
    } catch (error) {
      over = true;
      compressor.destroy();
      throw error; // the file's stream failed (a send timeout, a read error)
    }
    if (read.done) {
      ending = new Promise<void>((resolve) => {
        compressor.once("end", () => {
          if (!over) {
            over = true;
            controller.close();
          }
          resolve();
        });
        compressor.once("close", resolve); // destroyed, or failed, first
        compressor.end();
      });
      return await ending;
    }
    // Its output comes as "data" events; the callback means it is taken.
    await new Promise<void>((resolve) => {
      compressor.once("close", resolve);
      compressor.write(read.value, () => {
        compressor.off("close", resolve);
        resolve();
      });
    });
  }
}

function closeSource(source: BodySource): void {
  if (source.kind === "file") source.file.close();
}

/**
 * The pieces of a ranges plan from a file in memory: one small range as its
 * bytes, anything more as a stream of views of at most
 * {@linkcode MEMORY_PIECE_BYTES}, one per read. `new Response(bytes)`
 * copies the bytes (fetch's "extract a body"), and Deno.serve holds that copy
 * until the client takes it: a 240 KB range asked for 600 times on HTTP/2
 * streams with no window held 147 MB; a view at a time holds one piece.
 */
function piecesFromMemory(
  bytes: Uint8Array<ArrayBuffer>,
  pieces: readonly (ByteRange | string)[],
): Uint8Array<ArrayBuffer> | ReadableStream<Uint8Array> {
  const first = pieces[0];
  if (
    pieces.length === 1 && typeof first === "object" &&
    first.end - first.start < MEMORY_PIECE_BYTES
  ) {
    return bytes.subarray(first.start, first.end + 1);
  }
  let index = 0;
  let at = -1; // within the current range; -1 before it starts
  return new ReadableStream<Uint8Array>({
    pull(controller) {
      const piece = pieces[index]!;
      if (typeof piece === "string") {
        controller.enqueue(encoder.encode(piece));
        index++;
      } else {
        if (at < 0) at = piece.start;
        const end = Math.min(at + MEMORY_PIECE_BYTES, piece.end + 1);
        controller.enqueue(bytes.subarray(at, end));
        at = end;
        if (at > piece.end) {
          index++;
          at = -1;
        }
      }
      if (index === pieces.length) controller.close();
    },
  }, { highWaterMark: 0 });
}

/** Bytes in memory go out in views at most this big (see {@linkcode piecesFromMemory}). */
const MEMORY_PIECE_BYTES = 64 * 1024;

/**
 * Streams the pieces of a ranges plan from an open file (see
 * {@linkcode streamFileRanges}). One range is the file's own
 * {@linkcode OpenFile.stream} (natively, when it goes to the end).
 */
function streamFilePieces(
  file: OpenFile,
  pieces: readonly (ByteRange | string)[],
  release: ChunkRelease,
  sendTimeoutMs: number,
): ReadableStream<Uint8Array> {
  const first = pieces[0];
  if (pieces.length === 1 && typeof first === "object") {
    const length = first.end - first.start + 1;
    return file.stream(first.start, length, release, sendTimeoutMs);
  }
  const close = () => file.close();
  return streamFileRanges(file.handle, pieces, close, release, sendTimeoutMs);
}

/** Responses whose body is a file stream, with the stream's {@linkcode ChunkRelease}. */
const releasableBodies = new WeakMap<Response, ChunkRelease>();

function releasing(response: Response, release: ChunkRelease): Response {
  releasableBodies.set(response, release);
  return response;
}

/** The context of each handler {@linkcode createHandler} made, for {@linkcode serveWithRestart}. */
const handlerContexts = new WeakMap<object, ServeContext>();

/**
 * Called on each response just before it goes to `Deno.serve`: a file
 * stream of it (the very stream the handler built, unread) may free each
 * chunk as soon as `Deno.serve` holds it (see {@linkcode streamFileRanges}).
 */
function handToServe(response: Response): Response {
  const release = releasableBodies.get(response);
  if (release !== undefined && !response.bodyUsed) {
    release.handedToServe = true;
  }
  return response;
}

/** A short text response; errors never carry more than their reason phrase. */
function textResponse(
  status: number,
  extra: readonly [string, string][],
  more: readonly [string, string][] = [],
): Response {
  const bytes = REASON_BYTES[status] ?? encoder.encode("Error\n");
  return bytesResponse(status, bytes, "text/plain; charset=utf-8", [
    ...more,
    ...extra,
  ]);
}

function htmlResponse(
  status: number,
  html: string,
  extra: readonly [string, string][],
): Response {
  return bytesResponse(
    status,
    encoder.encode(html),
    "text/html; charset=utf-8",
    extra,
  );
}

function bytesResponse(
  status: number,
  bytes: Uint8Array<ArrayBuffer>,
  contentType: string,
  extra: readonly [string, string][],
): Response {
  return makeResponse(
    bytes,
    status,
    textHeaders(bytes.byteLength, contentType, extra),
  );
}

/**
 * Request headers a page on another origin may send when it reads files
 * (with `--cors`): a preflight echoes those it asks for from this list only.
 */
const CORS_SAFE_REQUEST_HEADERS = new Set([
  "accept",
  "accept-language",
  "cache-control",
  "content-language",
  "content-type",
  "if-match",
  "if-modified-since",
  "if-none-match",
  "if-range",
  "if-unmodified-since",
  "pragma",
  "range",
  "x-requested-with",
]);

/**
 * How long a browser may reuse a preflight answer, in seconds (Firefox caps
 * it at 24 hours, Chromium at 2).
 */
export const CORS_MAX_AGE_SECONDS = 86400;

/**
 * Answers any method but GET and HEAD. With CORS on, `OPTIONS` is a preflight
 * (Fetch standard, "CORS-preflight request"): 204 with the methods, the
 * requested headers that are on {@linkcode CORS_SAFE_REQUEST_HEADERS}, and
 * how long the answer may be reused. Anything else is 405, and `Allow` lists
 * what works (RFC 9110 15.5.6).
 */
function answerOtherMethod(
  req: Request,
  extra: readonly [string, string][],
  cors: boolean,
): Response {
  const allow = cors ? "GET, HEAD, OPTIONS" : "GET, HEAD";
  if (!cors || req.method !== "OPTIONS") {
    return textResponse(405, extra, [["Allow", allow]]);
  }
  const asked = req.headers.get("access-control-request-headers") ?? "";
  const allowed = asked.split(",").map((name) => name.trim().toLowerCase())
    .filter((name) => CORS_SAFE_REQUEST_HEADERS.has(name));
  const headers: [string, string][] = [
    ["Allow", allow],
    ["Access-Control-Allow-Methods", allow],
    ["Access-Control-Max-Age", String(CORS_MAX_AGE_SECONDS)],
    // The echoed list depends on what was asked: caches must key on it.
    ["Vary", "Access-Control-Request-Headers"],
  ];
  if (allowed.length > 0) {
    headers.push([
      "Access-Control-Allow-Headers",
      [...new Set(allowed)].join(", "),
    ]);
  }
  return makeResponse(null, 204, withExtra(headers, extra));
}

/**
 * The one HEAD mechanism: every request is answered as a GET, and for a HEAD
 * the body is dropped here, at the edge, so a HEAD carries exactly GET's
 * status and headers (RFC 9110 9.3.2). An open file behind the body is
 * closed by the stream's cancel.
 */
export function withoutBodyForHead(req: Request, response: Response): Response {
  if (req.method !== "HEAD") return response;
  if (response.body === null) return response;
  response.body.cancel().catch(() => {});
  // A null body makes Deno.serve send `Content-Length: 0`, which says GET's
  // body is empty; an answer made while streaming has no length to repeat, so
  // it keeps an empty stream and goes without one (RFC 9110 8.6, 9.3.2).
  const unknownLength = !response.headers.has("content-length");
  return new Response(unknownLength ? emptyStream() : null, {
    status: response.status,
    statusText: response.statusText,
    headers: response.headers,
  });
}

/** A body that ends at once: a HEAD's stand-in for a body of unknown length. */
function emptyStream(): ReadableStream<Uint8Array> {
  return new ReadableStream({ start: (controller) => controller.close() });
}

/**
 * The edge that each entry point ({@linkcode createHandler}'s handler,
 * {@linkcode serveDir}, {@linkcode serveFile}) answers through, and the
 * only place that strips a HEAD ({@linkcode withoutBodyForHead}) or maps an
 * error that got this far ({@linkcode errorResponse}): whatever `answer`
 * throws or rejects with, the client gets a status and a reason phrase, and
 * the log gets the rest. An answer made synchronously (a cache hit) stays
 * synchronous.
 */
function answerAtEdge(
  req: Request,
  ctx: ErrorContext,
  answer: () => Response | Promise<Response>,
): Response | Promise<Response> {
  let result: Response | Promise<Response>;
  try {
    result = answer();
  } catch (error) {
    result = errorResponse(error, req, ctx);
  }
  if (result instanceof Response) return withoutBodyForHead(req, result);
  return result.then(
    (response) => withoutBodyForHead(req, response),
    async (error) =>
      withoutBodyForHead(req, await errorResponse(error, req, ctx)),
  );
}

// ---------------------------------------------------------------------------
// Errors to responses, in one place
// ---------------------------------------------------------------------------

/**
 * Text a client chose, made safe for one log line: C0 and C1 controls, DEL,
 * the line separators and the invisible format characters (bidi overrides
 * such as U+202E, which make a terminal show a line's end first, and
 * zero-width ones) become `\xNN` / `\u{NNNN}`. Past {@linkcode MAX_LOGGED_CHARS}
 * the rest is left out, with a count: a 60 KB path must not make every 404's
 * log line 120 KB.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { logSafe } from "./server_files.ts";
 * assert.equal(logSafe("a\r\nb"), "a\\x0d\\x0ab");
 * assert.equal(logSafe("\u202eexe.txt"), "\\u{202e}exe.txt");
 * ```
 */
export function logSafe(text: string): string {
  if (text.length > MAX_LOGGED_CHARS) {
    const rest = text.length - MAX_LOGGED_CHARS;
    text = `${text.slice(0, MAX_LOGGED_CHARS)}... (${rest} more characters)`;
  }
  return text.replace(/[\p{Cc}\p{Cf}\u2028\u2029]/gu, (char) => {
    const code = char.codePointAt(0)!;
    return code > 0xff
      ? `\\u{${code.toString(16)}}`
      : `\\x${code.toString(16).padStart(2, "0")}`;
  });
}

/** How much of one text a client chose goes into one error-log line. */
export const MAX_LOGGED_CHARS = 1024;

/** What {@linkcode errorResponse} reads: a root (for its 404.html) only when serving one. */
type ErrorContext =
  & Pick<ServeContext, "extra" | "quiet">
  & Partial<Pick<ServeContext, "rootReal" | "notFound">>;

/**
 * Maps any error met while serving to a response, the way Go's `toHTTPError`
 * does. The client gets the status and a generic reason phrase only: error
 * messages contain filesystem paths, which tell an attacker how the server
 * is laid out. The message goes to the server log instead: always for a 5xx
 * (a bug or a broken disk), and for a 4xx unless `quiet` (like nginx's
 * error log, which names the file a 404 looked for).
 */
async function errorResponse(
  error: unknown,
  req: Request,
  ctx: ErrorContext,
): Promise<Response> {
  const { extra, quiet, rootReal, notFound } = ctx;
  const status = error instanceof NotServableError
    ? error.status
    : statusForFsError(error);
  if (status === 503) {
    logOutOfDescriptors(req.method, splitUrl(req.url).pathname, error);
  } else if (status >= 500 || (!quiet && status !== 499)) {
    const { pathname } = splitUrl(req.url);
    // A 4xx message quotes the decoded path, which the client chose: shown on one line
    // with controls escaped, so `%0d%0a` cannot forge a log line nor `%1b` colour it.
    const detail = status >= 500 ? error : logSafe(
      error instanceof NotServableError ? error.message : String(error),
    );
    // The line is a "%s" argument, never the format string itself: the
    // client's `%c`, `%s` or `%o` in the path would otherwise be read as
    // formatting directives and garble (or drop) what follows.
    console.error(
      "%s",
      `server_files: ${status} for ${req.method} ${
        JSON.stringify(logSafe(pathname))
      }:`,
      detail,
    );
  }
  if (status === 404 && rootReal !== undefined && notFound !== undefined) {
    return await notFoundResponse(rootReal, notFound, extra);
  }
  // Out of descriptors (a connection flood): the client may try again soon.
  const retry: [string, string][] = status === 503
    ? [["Retry-After", "1"]]
    : [];
  return textResponse(status, extra, retry);
}

/**
 * Out of descriptors, at most one line per this many ms goes to the log: a
 * connection flood answers thousands of 503s a second, and a stack trace for
 * each would bury the log (and cost the CPU the flood already takes).
 */
const BUSY_LOG_INTERVAL_MS = 1000;
let busyLoggedAt = -Infinity;
let busyUnlogged = 0;

/**
 * Logs a 503 for want of a descriptor (or of a file turn in time) in one
 * short line (the error code or the reason, no stack), rate-limited to one
 * per {@linkcode BUSY_LOG_INTERVAL_MS}; the next line says how many were not
 * logged, as the kernel's "callbacks suppressed".
 */
function logOutOfDescriptors(
  method: string,
  pathname: string,
  error: unknown,
): void {
  const now = Date.now();
  if (now - busyLoggedAt < BUSY_LOG_INTERVAL_MS) {
    busyUnlogged++;
    return;
  }
  const code = (error as { code?: unknown } | null)?.code;
  const reason = error instanceof NotServableError
    ? error.message
    : `out of file descriptors (${typeof code === "string" ? code : "EMFILE"})`;
  const more = busyUnlogged > 0
    ? ` (${busyUnlogged} more since the last such line)`
    : "";
  busyLoggedAt = now;
  busyUnlogged = 0;
  console.error(
    "%s",
    `server_files: 503 for ${method} ${
      JSON.stringify(logSafe(pathname))
    }: ${reason}${more}`,
  );
}

/**
 * A site's `404.html` as it was last read: a finished 404 that each request
 * gets a `clone()` of while the file is unchanged. Deno.serve holds the body
 * until the client takes it: a new buffer per request let HTTP/2 streams
 * with no window hold one each (1,000 of them held 265 MB for a 250 KB
 * page), while clones of one Response share its bytes (as the cached files'
 * do). The read itself is shared too, so 600 requests at once read the page
 * once. Each handler has its own ({@linkcode ServeContext.notFound}):
 * one slot for the whole process made two handlers take turns replacing
 * it, and then every 404 read its page again.
 */
interface NotFoundPage {
  path: string;
  version: FileVersion;
  statAt: number;
  response: Promise<Response | null>;
}

/**
 * 404 with the site's own `404.html` as the body when the root has one. A
 * read that failed (out of descriptors, a read error) is not remembered:
 * the next 404 tries again, rather than sending plain text until the file
 * changes.
 */
async function notFoundResponse(
  rootReal: string,
  notFound: { page: NotFoundPage | null },
  extra: readonly [string, string][],
): Promise<Response> {
  try {
    const statAt = Date.now();
    const page = await resolveSafePath(rootReal, "/404.html", false);
    const version = versionOf(page.info);
    let last = notFound.page;
    if (
      last === null || last.path !== page.path ||
      !sameVersion(last.version, version) || isRacy(version, last.statAt)
    ) {
      last = null;
      if (page.info.isFile && page.info.size <= MAX_CACHED_FILE_BYTES) {
        const reading = readNotFoundPage(page, extra);
        last = { path: page.path, version, statAt, response: reading };
        notFound.page = last;
      }
    }
    const response = await last?.response ?? null;
    if (response !== null) return response.clone();
    if (notFound.page === last) notFound.page = null; // try again next time
  } catch {
    // No custom page: fall back to the plain text.
  }
  return textResponse(404, extra);
}

/** The 404 with `page` as its body; null when it cannot be read. */
async function readNotFoundPage(
  page: ResolvedPath,
  extra: readonly [string, string][],
): Promise<Response | null> {
  try {
    // Opened like any file: a 404.html swapped for a FIFO cannot hang us.
    const file = await openResolved(page);
    try {
      const bytes = await readWhole(file, file.info.size);
      return bytesResponse(404, bytes, "text/html; charset=utf-8", extra);
    } finally {
      file.close();
    }
  } catch {
    return null; // an unreadable page: the plain text instead
  }
}

// ---------------------------------------------------------------------------
// Directory listing
// ---------------------------------------------------------------------------

/** One row of a directory listing. */
export interface ListingEntry {
  /** The name in its folder, as the filesystem has it (not escaped). */
  name: string;
  /** A folder (or a symlink to one inside the root). */
  isDirectory: boolean;
  /** Bytes; not shown for folders. */
  size: number;
  /** Last modification, or `null` when the filesystem does not say. */
  mtime: Date | null;
}

/** A listing column to sort by, as in caddy's `?sort=`. */
export type ListingSortKey = "name" | "size" | "time";

/** How a listing is ordered and in which format it is sent. */
export interface ListingQuery {
  /** The column to sort by. @default {"name"} */
  sort: ListingSortKey;
  /** Ascending or descending. @default {"asc"} */
  order: "asc" | "desc";
  /** `null` when the query does not say: then `Accept` decides. */
  format: "html" | "json" | null;
}

/** The order of a listing when the query names none. */
export const DEFAULT_LISTING_QUERY: Readonly<ListingQuery> = {
  sort: "name",
  order: "asc",
  format: null,
};

const LISTING_PARAMETERS = {
  sort: ["name", "size", "time"],
  order: ["asc", "desc"],
  format: ["html", "json"],
} as const;

/**
 * Reads `sort`, `order` and `format` from a listing's query string. A value
 * we do not know, or a parameter given twice, is the client's mistake and
 * gets a message for a 400 (a link that silently sorts some other way would
 * hide the typo); other parameters (cache busters, trackers) are ignored.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { parseListingQuery } from "./server_files.ts";
 * assert.deepEqual(parseListingQuery("?sort=size&order=desc"), {
 *   sort: "size",
 *   order: "desc",
 *   format: null,
 * });
 * assert.equal(parseListingQuery("?sort=colour"), "sort must be name, size or time");
 * ```
 */
export function parseListingQuery(search: string): ListingQuery | string {
  const params = new URLSearchParams(search);
  const query: ListingQuery = { ...DEFAULT_LISTING_QUERY };
  for (const [name, allowed] of Object.entries(LISTING_PARAMETERS)) {
    const values = params.getAll(name);
    if (values.length === 0) continue;
    const value = values[0]!;
    if (values.length > 1 || !(allowed as readonly string[]).includes(value)) {
      return `${name} must be ${allowed.slice(0, -1).join(", ")} or ${
        allowed.at(-1)
      }`;
    }
    (query as unknown as Record<string, string>)[name] = value;
  }
  return query;
}

/**
 * True when `Accept` asks for JSON at least as much as for HTML: explicit
 * `application/json` (or `application/*`) with a q above 0 and not below
 * `text/html`'s. `*∕*` alone (what `fetch` sends) and a browser's navigation
 * `Accept` get HTML.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { acceptsJsonListing } from "./server_files.ts";
 * assert.equal(acceptsJsonListing("application/json"), true);
 * assert.equal(acceptsJsonListing("text/html,application/json;q=0.9"), false);
 * ```
 */
export function acceptsJsonListing(accept: string | null): boolean {
  if (accept === null) return false;
  let json = 0;
  let html = 0;
  for (const part of accept.toLowerCase().split(",")) {
    const [type, ...params] = part.split(";").map((s) => s.trim());
    const q = params.find((p) => /^q\s*=/.test(p));
    const weight = q === undefined ? 1 : Number(q.split("=")[1]);
    if (!(weight >= 0 && weight <= 1)) continue; // NaN or out of range: ignore
    if (type === "application/json" || type === "application/*") {
      json = Math.max(json, weight);
    } else if (type === "text/html" || type === "text/*") {
      html = Math.max(html, weight);
    }
  }
  return json > 0 && json >= html;
}

/**
 * A size for people, in SI units like caddy's and Finder's listings: one
 * decimal below 10, whole numbers above.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { formatSize } from "./server_files.ts";
 * assert.equal(formatSize(2_900_000), "2.9 MB");
 * assert.equal(formatSize(15_360), "15 kB");
 * assert.equal(formatSize(999), "999 B");
 * ```
 */
export function formatSize(bytes: number): string {
  if (bytes < 1000) return `${bytes} B`;
  const units = ["kB", "MB", "GB", "TB", "PB", "EB"];
  let value = bytes;
  for (const unit of units) {
    value /= 1000;
    const shown = value < 9.95 ? value.toFixed(1) : String(Math.round(value));
    // 999_999 B is "1000 kB" after rounding: say "1.0 MB" instead.
    if (Number(shown) < 1000 || unit === units.at(-1)) {
      return `${shown} ${unit}`;
    }
  }
  throw new Error("unreachable");
}

/** One link of a listing's breadcrumb trail: a folder and its URL. */
export interface Breadcrumb {
  /** What the link shows: `/` for the served root, `name/` for a folder. */
  label: string;
  /** Absolute URL path of the folder, percent-encoded, ending in `/`. */
  href: string;
}

/**
 * The breadcrumb trail of a folder, from the served root (`urlRoot`, never
 * above it) down to the folder itself. `relativePath` is decoded and starts
 * with `/`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { listingBreadcrumbs } from "./server_files.ts";
 * assert.deepEqual(listingBreadcrumbs("", "/a b/c/"), [
 *   { label: "/", href: "/" },
 *   { label: "a b/", href: "/a%20b/" },
 *   { label: "c/", href: "/a%20b/c/" },
 * ]);
 * ```
 */
export function listingBreadcrumbs(
  urlRoot: string,
  relativePath: string,
): Breadcrumb[] {
  let href = urlRoot + "/";
  const crumbs: Breadcrumb[] = [{ label: urlRoot + "/", href }];
  for (const segment of relativePath.split("/")) {
    if (segment === "" || segment === ".") continue;
    href += encodeURIComponent(segment) + "/";
    crumbs.push({ label: segment + "/", href });
  }
  return crumbs;
}

const NAME_ORDER = new Intl.Collator("en", { numeric: true });

/**
 * Sorts a listing in place: folders first, then by the chosen column; ties
 * (and folders, when sorting by size) go by name, so the order is the same
 * on every request. Names compare as people read them: `file2` before
 * `file10`, and by code point when the collator calls them equal.
 */
export function sortListing(
  entries: ListingEntry[],
  { sort, order }: Pick<ListingQuery, "sort" | "order">,
): ListingEntry[] {
  const byName = (a: ListingEntry, b: ListingEntry) =>
    NAME_ORDER.compare(a.name, b.name) ||
    (a.name < b.name ? -1 : a.name > b.name ? 1 : 0);
  const sign = order === "desc" ? -1 : 1;
  return entries.sort((a, b) => {
    if (a.isDirectory !== b.isDirectory) return a.isDirectory ? -1 : 1;
    let primary = 0;
    if (sort === "size" && !a.isDirectory) primary = a.size - b.size;
    if (sort === "time") {
      primary = (a.mtime?.getTime() ?? 0) - (b.mtime?.getTime() ?? 0);
    }
    if (sort === "name") primary = byName(a, b);
    return sign * primary || byName(a, b);
  });
}

/** Options of {@linkcode renderListing} and {@linkcode renderListingJson}. */
export interface ListingOptions {
  /** URL prefix of the served root (`""` or `/static`); breadcrumbs stop there. @default {""} */
  urlRoot?: string | undefined;
  /** Order of the rows. @default {DEFAULT_LISTING_QUERY} */
  query?: ListingQuery | undefined;
  /** The folder had more than {@linkcode MAX_LISTING_ENTRIES} entries. @default {false} */
  truncated?: boolean | undefined;
}

/** `?sort=..&order=..` to keep on links to other folders; `""` for the default order. */
function keptOrder({ sort, order }: ListingQuery): string {
  return sort === DEFAULT_LISTING_QUERY.sort &&
      order === DEFAULT_LISTING_QUERY.order
    ? ""
    : `?sort=${sort}&order=${order}`;
}

const LISTING_COLUMNS: {
  key: ListingSortKey;
  label: string;
  first: "asc" | "desc";
}[] = [
  { key: "name", label: "Name", first: "asc" },
  { key: "size", label: "Size", first: "desc" }, // biggest first, as people look for them
  { key: "time", label: "Modified (UTC)", first: "desc" }, // newest first
];

/**
 * Renders a directory listing page: breadcrumbs, a parent link (not at the
 * served root), a table whose column headers sort it (plain links, so it
 * works without JavaScript), human sizes and UTC dates, light and dark
 * colours. Names are percent-encoded for the links and HTML-escaped for the
 * text, as two separate steps (Python's http.server does the same): a file
 * named `a"b<c>` shows as such and links to `a%22b%3Cc%3E`, and cannot inject
 * markup either way. The page has no script, so a CSP without
 * `script-src` is fine; it does need inline styles.
 *
 * @param relativePath the folder's path below the served root, decoded, ending in `/`
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { renderListing } from "./server_files.ts";
 * const html = renderListing("/docs/", [
 *   { name: "a&b.txt", isDirectory: false, size: 3, mtime: null },
 * ]);
 * assert.ok(html.includes('<a href="a%26b.txt">'));
 * assert.ok(html.includes("<span>a&amp;b.txt</span>"));
 * ```
 */
export function renderListing(
  relativePath: string,
  entries: readonly ListingEntry[],
  options: ListingOptions = {},
): string {
  const { urlRoot = "", query = DEFAULT_LISTING_QUERY, truncated = false } =
    options;
  const sorted = sortListing([...entries], query);
  const keep = escapeHtml(keptOrder(query));
  const crumbs = listingBreadcrumbs(urlRoot, relativePath);
  const here = crumbs.at(-1)!;
  const trail =
    crumbs.slice(0, -1).map((crumb) =>
      `<a href="${escapeHtml(crumb.href)}${keep}">${showName(crumb.label)}</a>`
    ).join("") + `<span aria-current="page">${showName(here.label)}</span>`;

  const headers = LISTING_COLUMNS.map(({ key, label, first }) => {
    const current = query.sort === key;
    const next = current ? (query.order === "asc" ? "desc" : "asc") : first;
    const sortState = current
      ? ` aria-sort="${query.order === "asc" ? "ascending" : "descending"}"`
      : "";
    const arrow = current
      ? `<span class="arrow" aria-hidden="true">${
        query.order === "asc" ? "▲" : "▼"
      }</span>`
      : "";
    return `<th scope="col" class="${key}"${sortState}><a href="?sort=${key}&amp;order=${next}">${label}${arrow}<span class="vh">, sort ${
      next === "asc" ? "ascending" : "descending"
    }</span></a></th>`;
  }).join("");

  const rows = sorted.map((entry) => {
    const slash = entry.isDirectory ? "/" : "";
    const href = escapeHtml(encodeURIComponent(entry.name) + slash) +
      (entry.isDirectory ? keep : "");
    const size = entry.isDirectory
      ? `<span aria-hidden="true">—</span><span class="vh">folder</span>`
      : `<data value="${entry.size}">${formatSize(entry.size)}</data>`;
    const time = entry.mtime === null
      ? "—"
      : `<time datetime="${entry.mtime.toISOString()}"><span>${
        entry.mtime.toISOString().slice(0, 10)
      }</span> <span>${entry.mtime.toISOString().slice(11, 16)}</span></time>`;
    return `<tr><td class="name"><a href="${href}"><svg class="icon" aria-hidden="true"><use href="#${
      entry.isDirectory ? "folder" : "file"
    }"/></svg><span>${showName(entry.name + slash)}</span></a></td>` +
      `<td class="size">${size}</td><td class="time">${time}</td></tr>`;
  });
  if (crumbs.length > 1) {
    rows.unshift(
      `<tr><td class="name" colspan="3"><a href="../${keep}"><svg class="icon" aria-hidden="true"><use href="#up"/></svg><span>Parent folder</span></a></td></tr>`,
    );
  }
  const folders = sorted.filter((entry) => entry.isDirectory).length;
  const files = sorted.length - folders;
  const count = (n: number, word: string) =>
    `${n} ${word}${n === 1 ? "" : "s"}`;
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="color-scheme" content="light dark">
<title>Index of ${
    escapeHtml(urlRoot + relativePath).replace(
      SHOWN_AS_CODE_POINTS,
      codePointLabel,
    )
  }</title>
<style>${LISTING_CSS}</style>
</head>
<body>
<main>
<svg class="defs" width="0" height="0" aria-hidden="true"><symbol id="folder" viewBox="0 0 16 16"><path d="M1 3.5C1 2.7 1.7 2 2.5 2h3.6l1.5 1.5h5.9c.8 0 1.5.7 1.5 1.5v7.5c0 .8-.7 1.5-1.5 1.5h-11C1.7 14 1 13.3 1 12.5z"/></symbol><symbol id="file" viewBox="0 0 16 16"><path d="M3.5 1h5.8L13 4.7v9.8c0 .3-.2.5-.5.5h-9a.5.5 0 0 1-.5-.5v-13c0-.3.2-.5.5-.5zm5 1v3.5H12z"/></symbol><symbol id="up" viewBox="0 0 16 16"><path d="M8 2 2.5 7.5l1 1L7.3 4.7V14h1.4V4.7l3.8 3.8 1-1z"/></symbol></svg>
<h1>Index of ${trail}</h1>
<table>
<thead><tr>${headers}</tr></thead>
<tbody>
${rows.join("\n")}
</tbody>
</table>
<p class="summary">${count(folders, "folder")}, ${count(files, "file")}${
    truncated
      ? `. Only the first ${MAX_LISTING_ENTRIES} entries are shown.`
      : ""
  }</p>
</main>
</body>
</html>
`;
}

/**
 * Characters a listing shows as a visible `U+001B` mark instead of as
 * themselves: the bidirectional formatting characters (ALM, LRM, RLM, the
 * embeddings and overrides, the isolates), which are invisible and reorder
 * the text after them; the C0 and C1 controls and DEL, which are invisible
 * in a browser, and which a page read with `curl` in a terminal would send
 * it as escape sequences (`ESC [ 2 J` clears the screen); and the line and
 * paragraph separators.
 */
const SHOWN_AS_CODE_POINTS =
  /[\p{Cc}\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\u2028\u2029]/gu;

/** `U+202E` for a character, as the listing shows a bidirectional control. */
function codePointLabel(char: string): string {
  return `U+${
    char.codePointAt(0)!.toString(16).toUpperCase().padStart(4, "0")
  }`;
}

/**
 * A name as listing text: HTML-escaped, and each control or bidirectional
 * control ({@linkcode SHOWN_AS_CODE_POINTS}) shown as a visible `U+202E`
 * mark instead of obeyed. A right-to-left override in
 * a name (`evil\u202etxt.exe`) would otherwise show the rest of it reversed
 * (`evilexe.txt`), and isolating the name (the CSS gives each one
 * `unicode-bidi: isolate`, so a right-to-left name cannot pull its folder
 * slash or its neighbours along) does not undo an override inside it.
 *
 * So `evil\u202etxt.exe` is shown as `evil<span class="ctl">U+202E</span>txt.exe`.
 */
function showName(name: string): string {
  return escapeHtml(name).replace(
    SHOWN_AS_CODE_POINTS,
    (char) => `<span class="ctl">${codePointLabel(char)}</span>`,
  );
}

/**
 * Light and dark colours, each at least 4.5:1 against its background
 * (WCAG 2.1 1.4.3); rows at least 44 px tall for fingers; long names wrap
 * instead of making a phone scroll sideways.
 */
const LISTING_CSS = [
  ":root{color-scheme:light dark;--bg:#fff;--fg:#1f2328;--muted:#59636e;--link:#0550ae;--line:#d1d9e0;--hover:#f6f8fa}",
  "@media (prefers-color-scheme:dark){:root{--bg:#0d1117;--fg:#e6edf3;--muted:#9198a1;--link:#4493f8;--line:#3d444d;--hover:#151b23}}",
  "*{box-sizing:border-box}",
  "body{margin:0;background:var(--bg);color:var(--fg);font:16px/1.5 system-ui,-apple-system,'Segoe UI',Roboto,sans-serif}",
  "main{max-width:60rem;margin:0 auto;padding:1rem}",
  ".defs{position:absolute}",
  "h1{font-size:1.25rem;font-weight:600;margin:.5rem 0 1rem;overflow-wrap:anywhere}",
  "h1 a{display:inline-block;color:var(--link);padding:.25rem .375rem;margin:0 .125rem}",
  // Fixed layout: the name column takes what the others leave, so a long
  // name wraps instead of widening the table past a phone's screen.
  "table{width:100%;border-collapse:collapse;table-layout:fixed}",
  "th,td{padding:0;border-bottom:1px solid var(--line);text-align:left;vertical-align:top}",
  "th.size{width:5.5rem}th.time{width:11rem}td.time span{white-space:nowrap}",
  "th a,td a{display:block;min-height:2.75rem;padding:.625rem .5rem;color:var(--link);text-decoration:none}",
  "th a{color:var(--fg)}",
  "td.name a{display:flex;gap:.5rem;overflow-wrap:anywhere}",
  // Each name is its own bidirectional run: see showName.
  "td.name a>span,h1 a,h1 span{unicode-bidi:isolate}",
  ".ctl{font-size:.75em;color:var(--muted);border:1px solid var(--line);border-radius:.25rem;padding:0 .125rem}",
  "td.size,td.time{padding:.625rem .5rem;color:var(--muted)}",
  ".size,th.size a{text-align:right}",
  "tbody tr:hover{background:var(--hover)}",
  "a:hover span,a:focus span{text-decoration:underline}",
  ".icon{flex:none;width:1.25rem;height:1.25rem;margin-top:.125rem;fill:var(--muted)}",
  ".arrow{margin-left:.25rem;font-size:.75em}",
  ".summary{color:var(--muted)}",
  ".vh{position:absolute;width:1px;height:1px;overflow:hidden;clip:rect(0 0 0 0);white-space:nowrap}",
  "@media (max-width:30rem){main{padding:.5rem}th.size{width:4.75rem}th.time{width:6.5rem}}",
].join("");

/**
 * The listing's own Content-Security-Policy: nothing may load or run but its
 * one stylesheet (by hash) and the favicon. File names are escaped anyway;
 * this is the second wall should an escaping bug ever let markup through.
 */
const LISTING_CSP = `default-src 'none'; style-src 'sha256-${
  createHash("sha256").update(LISTING_CSS).digest("base64")
}'; img-src 'self'; base-uri 'none'; form-action 'none'`;

/** One entry of the JSON listing (`Accept: application/json` or `?format=json`). */
export interface ListingJsonEntry {
  /** The name in its folder. */
  name: string;
  /** What the entry is (a symlink counts as what it points to). */
  type: "file" | "directory";
  /** Bytes; `null` for a folder. */
  size: number | null;
  /** ISO 8601 in UTC, or `null` when the filesystem has no date. */
  mtime: string | null;
  /** Absolute URL path, percent-encoded; folders end in `/`. */
  url: string;
}

/**
 * The same listing as JSON, in the same order:
 * `{ path, truncated, entries: [{ name, type, size, mtime, url }] }`, with
 * every character of {@linkcode SHOWN_AS_CODE_POINTS} escaped (`\u001b`).
 */
export function renderListingJson(
  relativePath: string,
  entries: readonly ListingEntry[],
  options: ListingOptions = {},
): string {
  const { urlRoot = "", query = DEFAULT_LISTING_QUERY, truncated = false } =
    options;
  const base = listingBreadcrumbs(urlRoot, relativePath).at(-1)!.href;
  const rows: ListingJsonEntry[] = sortListing([...entries], query).map((
    entry,
  ) => ({
    name: entry.name,
    type: entry.isDirectory ? "directory" : "file",
    size: entry.isDirectory ? null : entry.size,
    mtime: entry.mtime?.toISOString() ?? null,
    url: base + encodeURIComponent(entry.name) + (entry.isDirectory ? "/" : ""),
  }));
  // JSON.stringify leaves DEL, the C1 controls, the bidirectional controls
  // and U+2028 as they are: written `\u009b`, the parsed names are the same,
  // and the raw text shown in a terminal sends it no control sequence.
  return JSON.stringify({ path: base, truncated, entries: rows }).replace(
    SHOWN_AS_CODE_POINTS,
    (char) => `\\u${char.charCodeAt(0).toString(16).padStart(4, "0")}`,
  ) + "\n";
}

/** How many `stat` calls a listing runs at once. */
const LISTING_STAT_CONCURRENCY = 32;
/**
 * Listings built at once; more wait for a turn. A listing of
 * {@linkcode MAX_LISTING_ENTRIES} entries holds several megabytes while it is
 * built, so 40 requests at once for a big folder took 270 MB more memory.
 */
export const MAX_CONCURRENT_LISTINGS = 4;
/** Listing requests that may wait for a turn; more get 503 with `Retry-After`. */
export const MAX_WAITING_LISTINGS = 64;

const listingTurns = { running: 0, waiting: [] as (() => void)[] };

/**
 * Waits for a turn to build a listing; false when too many are waiting
 * already. A wait that `stop` aborts (everyone who wanted the listing left)
 * leaves the queue at once and throws {@linkcode clientGone}.
 */
async function takeListingTurn(stop: AbortSignal): Promise<boolean> {
  if (listingTurns.running < MAX_CONCURRENT_LISTINGS) {
    listingTurns.running++;
    return true;
  }
  if (listingTurns.waiting.length >= MAX_WAITING_LISTINGS) return false;
  // The turn is handed over by releaseListingTurn, still counted as running.
  await new Promise<void>((resolve, reject) => {
    const granted = () => {
      stop.removeEventListener("abort", left);
      resolve();
    };
    const left = () => {
      listingTurns.waiting.splice(listingTurns.waiting.indexOf(granted), 1);
      reject(clientGone());
    };
    stop.addEventListener("abort", left, { once: true });
    listingTurns.waiting.push(granted);
  });
  return true;
}

function releaseListingTurn(): void {
  const next = listingTurns.waiting.shift();
  if (next === undefined) listingTurns.running--;
  else next();
}

/**
 * Reads a directory for {@linkcode renderListing}. Left out: dotfiles
 * (unless `showDotfiles`); symlinks that {@linkcode resolveSafePath} would
 * refuse (their links would be 404 and their sizes would leak); `x.br`,
 * `x.zst` and `x.gz` beside their original `x`, which are served in its
 * place, not as files of their own.
 */
async function readListing(
  rootReal: string,
  dirPath: string,
  showDotfiles: boolean,
  stop?: AbortSignal,
): Promise<{ entries: ListingEntry[]; truncated: boolean }> {
  const found: Deno.DirEntry[] = [];
  let truncated = false;
  for await (const dirEntry of Deno.readDir(dirPath)) {
    if (!showDotfiles && dirEntry.name.startsWith(".")) continue;
    if (found.length >= MAX_LISTING_ENTRIES) {
      truncated = true;
      break;
    }
    found.push(dirEntry);
  }
  // The folder read must be the one resolved (see openResolved).
  if (!(await isStillRealPath(dirPath))) {
    throw new NotServableError(404, `changed while it was read: ${dirPath}`);
  }
  const entries: (ListingEntry | null)[] = [];
  for (let i = 0; i < found.length; i += LISTING_STAT_CONCURRENCY) {
    if (stop?.aborted) throw clientGone(); // no one waits for it any more
    const batch = found.slice(i, i + LISTING_STAT_CONCURRENCY);
    entries.push(
      ...await Promise.all(
        batch.map((dirEntry) =>
          statListingEntry(rootReal, dirPath, dirEntry, showDotfiles)
        ),
      ),
    );
  }
  const files = new Set(
    entries.filter((e) => e !== null && !e.isDirectory).map((e) => e!.name),
  );
  return {
    entries: entries.filter((entry): entry is ListingEntry =>
      entry !== null && !isPrecompressedCopy(entry, files)
    ),
    truncated,
  };
}

/** True for `x.br`, `x.zst` or `x.gz` when the file `x` is listed too. */
function isPrecompressedCopy(entry: ListingEntry, files: Set<string>): boolean {
  const match = /^(.+)\.(br|zst|gz)$/.exec(entry.name);
  return !entry.isDirectory && match !== null && files.has(match[1]!);
}

async function statListingEntry(
  rootReal: string,
  dirPath: string,
  dirEntry: Deno.DirEntry,
  showDotfiles: boolean,
): Promise<ListingEntry | null> {
  try {
    const path = join(dirPath, dirEntry.name);
    if (
      dirEntry.isSymlink &&
      !isServableRealPath(rootReal, await Deno.realPath(path), showDotfiles)
    ) {
      return null;
    }
    const info = await Deno.stat(path);
    if (!info.isFile && !info.isDirectory) return null; // FIFOs, sockets, devices are never served
    return {
      name: dirEntry.name,
      isDirectory: info.isDirectory,
      size: info.size,
      mtime: info.mtime,
    };
  } catch {
    return null; // a dangling symlink or a file removed meanwhile: leave it out
  }
}

/**
 * Answers a folder URL with its listing: HTML, or JSON when the query says
 * `format=json` or `Accept` prefers it. A bad `sort`, `order` or `format`
 * is 400 with a line saying what is allowed. With {@linkcode createHandler}
 * a listing is kept for `cacheMs`, as files are (see {@linkcode
 * KeptListing}); requests for a listing that is being built wait for that
 * build ({@linkcode buildListingOnce}).
 */
async function serveListing(
  req: Request,
  ctx: ServeContext,
  relative: string,
  dirPath: string,
  search: string,
  info?: Deno.ServeHandlerInfo,
): Promise<Response> {
  const query = parseListingQuery(search);
  if (typeof query === "string") {
    const text = encoder.encode(`Bad Request: ${query}\n`);
    return bytesResponse(400, text, "text/plain; charset=utf-8", ctx.extra);
  }
  const json = query.format === "json" ||
    (query.format === null && acceptsJsonListing(req.headers.get("accept")));
  const relativePath = decodeURIComponent(relative);
  // One key per answer, whatever the spelling of the URL or the order of the query.
  const key = `${
    json ? "json" : "html"
  } ${query.sort} ${query.order} ${relativePath.length} ${relativePath} ${dirPath}`;
  const kept = keptListing(ctx, key);
  if (kept !== undefined) return kept;
  // Read only by a request that must wait (see buildListingOnce).
  let signal: AbortSignal | undefined;
  const requester = {
    signal: () => signal ??= req.signal,
    waited: () => signal !== undefined,
    client: listingClient(req, ctx, info),
  };
  // Like a file, a listing stays in memory until the client has read it:
  // it takes one of its connection's turns (see MAX_OPEN_FILES_PER_CONNECTION).
  const { give: giveBack } = await takeFileTurn(
    info,
    ctx.sendTimeoutMs,
    clientOfTurn(req, ctx, info),
    requester.signal,
  );
  try {
    // Another request may have kept this listing while this one waited.
    const response = keptListing(ctx, key) ?? await buildListingResponse(
      ctx,
      { relativePath, dirPath, query, json },
      key,
      requester,
    );
    // Deno.serve settles `completed` once the body is sent or given up.
    if (info?.completed === undefined) giveBack();
    else info.completed.then(giveBack, giveBack);
    return response;
  } catch (error) {
    giveBack();
    throw error;
  }
}

/** A clone of the listing kept under `key`, if it is still fresh. */
function keptListing(ctx: ServeContext, key: string): Response | undefined {
  const kept = ctx.listings?.get(key);
  return kept !== undefined && Date.now() - kept.checkedAt < ctx.cache!.validMs
    ? kept.response.clone()
    : undefined;
}

/** What a listing shows: the folder, its URL path, and the query's choices. */
interface ListingRequest {
  relativePath: string;
  dirPath: string;
  query: ListingQuery;
  json: boolean;
}

/** Who asks for a listing build: their signal (read only if they must wait) and client. */
interface ListingRequester {
  signal: () => AbortSignal;
  /** True once `signal` was read: the request waited (for a file turn). */
  waited: () => boolean;
  /** The client {@linkcode MAX_LISTING_BUILDS_PER_CLIENT} counts for; null: none. */
  client: string | null;
}

/**
 * The listing answer of {@linkcode serveListing}, kept under `key` when the
 * handler keeps listings.
 */
async function buildListingResponse(
  ctx: ServeContext,
  listing: ListingRequest,
  key: string,
  requester: ListingRequester,
): Promise<Response> {
  const { json } = listing;
  const built = await buildListingOnce(ctx, listing, requester);
  if (built === null) {
    return textResponse(503, ctx.extra, [["Retry-After", "1"]]);
  }
  const { bytes, readAt } = built;
  const headers = textHeaders(
    bytes.byteLength,
    json ? "application/json; charset=utf-8" : "text/html; charset=utf-8",
    [
      ["Vary", "Accept"],
      ["Cache-Control", CACHE_CONTROL],
      ...(json
        ? []
        : [["Content-Security-Policy", LISTING_CSP] as [string, string]]),
      ...ctx.extra,
    ],
  );
  if (ctx.listings !== null && bytes.byteLength <= MAX_KEPT_LISTING_BYTES) {
    return keepListing(ctx.listings, key, bytes, headers, readAt).clone();
  }
  // Deno.serve says a byte body is sent (settles `completed`) as soon as it
  // holds it, even on an HTTP/2 stream with no window to send it on: a big
  // listing goes as a stream, so its turn lasts until the client has it.
  const body = piecesFromMemory(bytes, [{ start: 0, end: bytes.length - 1 }]);
  return makeResponse(body, 200, headers);
}

/**
 * Listing builds one client may have running or waiting for a turn
 * ({@linkcode MAX_CONCURRENT_LISTINGS}) at once; another gets 503 with
 * `Retry-After`. Requests for a listing already being built wait for that
 * build and count nothing. A client that asked for 1,000 listings over
 * HTTP/2 and left had the server building them for over 40 s after it had
 * gone (redteam F6).
 */
export const MAX_LISTING_BUILDS_PER_CLIENT = 4;

/**
 * A listing being built, shared by every request for the same bytes:
 * `wanted` counts those that may still read it, and when the last one has
 * left (its `request.signal` aborted) `stop` ends the build, waiting or not.
 */
interface ListingBuild {
  done: Promise<BuiltListing | null>;
  wanted: number;
  /** Set when its requesters' signals are read (they wait), so that it may stop. */
  stoppable: boolean;
  stop: AbortController;
}

/** A listing's bytes and when its folder was read; null: no turn (503). */
interface BuiltListing {
  bytes: Uint8Array<ArrayBuffer>;
  readAt: number;
}

/** Builds in progress, by everything their bytes depend on. */
const listingBuilds = new Map<string, ListingBuild>();
/** Builds in progress per client ({@linkcode MAX_LISTING_BUILDS_PER_CLIENT}). */
const listingBuildsByClient = new Map<string, number>();

/** The client a listing build counts for: the file turn's, or the socket's address. */
function listingClient(
  req: Request,
  ctx: ServeContext,
  info: Deno.ServeHandlerInfo | undefined,
): string | null {
  const forwarded = clientOfTurn(req, ctx, info);
  if (forwarded !== null) return forwarded;
  return info?.remoteAddr.transport === "tcp" ? info.remoteAddr.hostname : null;
}

/**
 * The listing's bytes, built once for all the requests that want them at
 * the same time: a request that finds the same listing being built waits
 * for it instead of building another (600 requests for one folder made one
 * build, not 600). A request that must wait reads its `request.signal`
 * (Deno then warns once, on its first answer, that it also aborts that
 * signal after a success: we listen only while waiting) and leaves the wait
 * when its client goes: a build that no one wants any more stops, whether
 * it waits for its turn or reads the folder. Throws a 503 past
 * {@linkcode MAX_LISTING_BUILDS_PER_CLIENT}, {@linkcode clientGone} for a
 * requester that left.
 */
async function buildListingOnce(
  ctx: ServeContext,
  listing: ListingRequest,
  requester: ListingRequester,
): Promise<BuiltListing | null> {
  const { relativePath, dirPath, query, json } = listing;
  // The bytes depend on these and nothing else (headers are added after).
  const key = JSON.stringify([
    json,
    query.sort,
    query.order,
    relativePath,
    dirPath,
    ctx.rootReal,
    ctx.urlRoot,
    ctx.showDotfiles,
  ]);
  if (requester.waited() && requester.signal().aborted) throw clientGone();
  let build = listingBuilds.get(key);
  if (build === undefined || build.stop.signal.aborted) {
    const { client } = requester;
    const building = client === null
      ? 0
      : listingBuildsByClient.get(client) ?? 0;
    if (building >= MAX_LISTING_BUILDS_PER_CLIENT) {
      throw new NotServableError(
        503,
        `${building} listings already being built for ${client}`,
      );
    }
    build = startListingBuild(ctx, listing, key, client, requester.waited());
  }
  build.wanted++;
  if (!build.stoppable) {
    // It runs (or is about to): waiting for it costs nothing to stop.
    return await build.done;
  }
  const signal = requester.signal();
  const current = build;
  let left!: () => void;
  const gone = new Promise<never>((_, reject) => {
    left = () => {
      if (--current.wanted === 0) current.stop.abort();
      reject(clientGone());
    };
  });
  if (signal.aborted) left();
  else signal.addEventListener("abort", left, { once: true });
  try {
    return await Promise.race([current.done, gone]);
  } finally {
    signal.removeEventListener("abort", left);
  }
}

/** Starts the build of {@linkcode buildListingOnce} under `key`, counted for `client`. */
function startListingBuild(
  ctx: ServeContext,
  listing: ListingRequest,
  key: string,
  client: string | null,
  waited: boolean,
): ListingBuild {
  const { relativePath, dirPath, query, json } = listing;
  const stop = new AbortController();
  const build: ListingBuild = {
    done: Promise.resolve(null),
    wanted: 0,
    // Its requesters' signals are read when the first one already waited
    // for a file turn, or when no listing turn is free: the build waits.
    stoppable: waited || listingTurns.running >= MAX_CONCURRENT_LISTINGS,
    stop,
  };
  if (client !== null) {
    listingBuildsByClient.set(
      client,
      (listingBuildsByClient.get(client) ?? 0) + 1,
    );
  }
  build.done = (async () => {
    if (!(await takeListingTurn(stop.signal))) return null;
    const readAt = Date.now();
    try {
      const { entries, truncated } = await readListing(
        ctx.rootReal,
        dirPath,
        ctx.showDotfiles,
        stop.signal,
      );
      const options = { urlRoot: ctx.urlRoot, query, truncated };
      const bytes = encoder.encode(
        json
          ? renderListingJson(relativePath, entries, options)
          : renderListing(relativePath, entries, options),
      );
      return { bytes, readAt };
    } finally {
      releaseListingTurn();
    }
  })();
  listingBuilds.set(key, build);
  const settled = () => {
    if (listingBuilds.get(key) === build) listingBuilds.delete(key);
    if (client === null) return;
    const left = listingBuildsByClient.get(client)! - 1;
    if (left === 0) listingBuildsByClient.delete(client);
    else listingBuildsByClient.set(client, left);
  };
  build.done.then(settled, settled);
  return build;
}

/**
 * A listing {@linkcode createHandler} keeps, as a finished 200 that each
 * request gets a `clone()` of: clones share the bytes, and Deno.serve holds
 * each answer's body until its client reads it. A listing built for each
 * request held a copy of its own per HTTP/2 stream with no window: 600 such
 * streams for a 60 KB listing took 57 MB more memory (15 MB for a 3 KB one).
 * After `cacheMs` the folder is read again, and a listing that came out the
 * same keeps its first body.
 */
interface KeptListing {
  bytes: Uint8Array<ArrayBuffer>;
  response: Response;
  checkedAt: number;
}

/** Most listings a handler keeps (each key: folder, format, sort and order). */
const MAX_KEPT_LISTINGS = 64;
/** Bigger listings are built for each request (and streamed, with a turn). */
const MAX_KEPT_LISTING_BYTES = 256 * 1024;
/** What the kept listings may hold in all. */
const MAX_KEPT_LISTINGS_BYTES = 4 * 1024 * 1024;

/** Keeps `bytes` under `key` (or the same bytes kept before), oldest first out. */
function keepListing(
  listings: Map<string, KeptListing>,
  key: string,
  bytes: Uint8Array<ArrayBuffer>,
  headers: readonly [string, string][],
  checkedAt: number,
): Response {
  const old = listings.get(key);
  listings.delete(key); // Map keeps insertion order: this one is now the newest
  if (
    old !== undefined && (old.bytes === bytes || equalBytes(old.bytes, bytes))
  ) {
    old.checkedAt = checkedAt;
    listings.set(key, old);
    return old.response;
  }
  let held = bytes.byteLength;
  for (const kept of listings.values()) held += kept.bytes.byteLength;
  for (const [oldKey, kept] of listings) {
    if (listings.size < MAX_KEPT_LISTINGS && held <= MAX_KEPT_LISTINGS_BYTES) {
      break;
    }
    listings.delete(oldKey);
    held -= kept.bytes.byteLength;
  }
  const response = makeResponse(bytes, 200, headers);
  listings.set(key, { bytes, response, checkedAt });
  return response;
}

// ---------------------------------------------------------------------------
// Compression: copies made once, precompressed files beside the original
// ---------------------------------------------------------------------------

/**
 * A precompressed file found beside the original (`x.css.br`, `x.css.zst`,
 * `x.css.gz`), in the order sent when a client takes several at the same
 * q-value: br, which is the smallest at every level measured (`brotli -q 11`
 * against `zstd -19`: 6% smaller on a 650 KB JS file), then zstd, then gzip.
 */
const PRECOMPRESSED: readonly ["br" | "zstd" | "gzip", string][] = [
  ["br", ".br"],
  ["zstd", ".zst"],
  ["gzip", ".gz"],
];

/**
 * The precompressed files beside `path` that may stand in for it, br first,
 * as nginx's `gzip_static` and Caddy's `precompressed` use them: a regular
 * file of its own (`lstat`, so a symlink `x.css.br -> /etc/passwd` is never
 * followed out of the root) that is not older than the original. Each gets
 * its own entity tag, from its own size and mtime.
 */
async function findPrecompressed(
  path: string,
  info: Deno.FileInfo,
): Promise<Representation[]> {
  const found: Representation[] = [];
  for (const [coding, suffix] of PRECOMPRESSED) {
    try {
      const sibling = await Deno.lstat(path + suffix);
      if (!sibling.isFile) continue;
      if ((sibling.mtime?.getTime() ?? 0) < (info.mtime?.getTime() ?? 0)) {
        continue; // older than the original: stale, never sent
      }
      found.push({
        coding,
        etag: entityTag(sibling, `-${coding}`),
        size: sibling.size,
        path: path + suffix,
      });
    } catch {
      // None (or unreadable): compress ourselves.
    }
  }
  return found;
}

/**
 * Opens a precompressed file found by {@linkcode findPrecompressed}, or null
 * when it changed since (another size, or replaced): the open handle's own
 * stat must still describe what was planned.
 */
async function openPrecompressed(
  path: string,
  planned: Representation,
): Promise<OpenFile | null> {
  let file: OpenFile;
  try {
    file = await openRegularFile(path);
  } catch {
    return null;
  }
  // Beside a file opened by openResolved, and still so once open.
  if (
    entityTag(file.info, `-${planned.coding}`) === planned.etag &&
    await isStillRealPath(path)
  ) {
    return file;
  }
  file.close();
  return null;
}

/**
 * Milliseconds of compression for the cache's copies that one
 * {@linkcode COMPRESS_WINDOW_MS} may take: a quarter of a core. The copies
 * are made on the event loop, 50-60 ms for the three of a 250 KB JS file, so
 * a client asking in turn for more distinct files than the cache holds made
 * every request cost that: 8 such clients took a server from 778 to 84
 * requests a second, and a cached file's answer from 8 to 33 ms (268 ms at
 * worst). Past the budget a file enters the cache without copies (sent as
 * it is, or as its precompressed files), and gets them at a later
 * revalidation ({@linkcode HandlerOptions.cacheMs}) with budget to spare.
 */
const MAX_COMPRESS_MS_PER_WINDOW = 250;
/** The window of {@linkcode MAX_COMPRESS_MS_PER_WINDOW}. */
const COMPRESS_WINDOW_MS = 1000;
const compressBudget = { windowStart: -Infinity, spentMs: 0 };

/** Whether the cache may compress now, within {@linkcode MAX_COMPRESS_MS_PER_WINDOW}. */
function mayCompressNow(): boolean {
  const now = performance.now();
  if (now - compressBudget.windowStart >= COMPRESS_WINDOW_MS) {
    compressBudget.windowStart = now;
    compressBudget.spentMs = 0;
  }
  return compressBudget.spentMs < MAX_COMPRESS_MS_PER_WINDOW;
}

/**
 * The compressed copies a small file keeps in the cache, made once when it
 * enters: its precompressed `.br`/`.zst`/`.gz` when there is one, else br
 * (quality {@linkcode BROTLI_QUALITY}), zstd (level {@linkcode
 * ZSTD_CACHE_LEVEL}) and gzip made here, in that order of preference, while
 * the budget of {@linkcode MAX_COMPRESS_MS_PER_WINDOW} lasts (`partial`
 * says some were left out for want of it). A copy is kept only if it saves
 * at least 10%: below that, the CPU of decoding costs the client more than
 * the bytes saved.
 */
async function compressForCache(
  path: string,
  info: Deno.FileInfo,
  bytes: Uint8Array<ArrayBuffer>,
  maxFileBytes: number,
): Promise<{ copies: CompressedCopy[]; partial: boolean }> {
  const identityEtag = entityTag({ size: bytes.byteLength, mtime: info.mtime });
  const onDisk = await findPrecompressed(path, info);
  const copies: CompressedCopy[] = [];
  let partial = false;
  for (const [coding] of PRECOMPRESSED) {
    let copy: CompressedCopy | null = null;
    const sibling = onDisk.find((r) => r.coding === coding);
    if (sibling !== undefined && sibling.size! <= maxFileBytes) {
      try {
        const file = await openRegularFile(sibling.path!);
        try {
          // The open handle must still be the file that was found, there.
          if (
            entityTag(file.info, `-${coding}`) === sibling.etag &&
            await isStillRealPath(sibling.path!)
          ) {
            const read = await readWhole(file, file.info.size);
            copy = { coding, bytes: read, etag: sibling.etag };
          }
        } finally {
          file.close();
        }
      } catch {
        // Vanished or replaced meanwhile: compress ourselves.
      }
    }
    if (copy === null) {
      if (!mayCompressNow()) {
        partial = true;
        continue;
      }
      const started = performance.now();
      copy = {
        coding,
        bytes: new Uint8Array(compressForCopy(coding, bytes)),
        etag: identityEtag.slice(0, -1) + `-${coding}"`,
      };
      compressBudget.spentMs += performance.now() - started;
    }
    if (copy.bytes.byteLength <= bytes.byteLength * MAX_COMPRESSED_RATIO) {
      copies.push(copy);
    }
  }
  return { copies, partial };
}

/** One compressed copy made here, at the cache's level for its coding. */
function compressForCopy(
  coding: CompressedCopy["coding"],
  bytes: Uint8Array,
): Uint8Array {
  const { constants } = zlib;
  switch (coding) {
    case "br":
      return zlib.brotliCompressSync(bytes, {
        params: {
          [constants.BROTLI_PARAM_QUALITY]: BROTLI_QUALITY,
          [constants.BROTLI_PARAM_SIZE_HINT]: bytes.byteLength,
        },
      });
    case "zstd":
      return zlib.zstdCompressSync(bytes, {
        params: { [constants.ZSTD_c_compressionLevel]: ZSTD_CACHE_LEVEL },
      });
    case "gzip":
      return zlib.gzipSync(bytes, { level: GZIP_CACHE_LEVEL });
  }
}

// ---------------------------------------------------------------------------
// serveFile and serveDir: the std-compatible entry points
// ---------------------------------------------------------------------------

/** Everything the serving functions need, resolved once. */
interface ServeContext {
  rootReal: string;
  /** `""` or a prefix like `/static` (no trailing slash). */
  urlRoot: string;
  showIndex: boolean;
  showDirListing: boolean;
  showDotfiles: boolean;
  /** `--header` values plus the CORS headers. */
  extra: [string, string][];
  cache: FileCache | null;
  /** No 4xx details in the log (5xx are always logged). */
  quiet: boolean;
  /** Offer compressed forms of compressible files. */
  compress: boolean;
  /** `enableCors`: CORS headers, and OPTIONS answered as a preflight. */
  cors: boolean;
  /** `/about` serves `about.html`; `/about.html` redirects to `/about`. */
  cleanUrls: boolean;
  /** The URL path of the SPA fallback file (`/index.html`), or null. */
  fallback: string | null;
  /**
   * The answers go straight to `Deno.serve` (set by
   * {@linkcode serveWithRestart}): downloads to the end of a big file
   * stream in big reads ({@linkcode streamFileRanges}), not through Deno's
   * native 64 KiB reader, which anyone can read and which never waits for
   * the garbage collector.
   */
  toDenoServe: boolean;
  /** {@linkcode ServeDirOptions.sendTimeoutMs}. */
  sendTimeoutMs: number;
  /** The root's `404.html` as last read (see {@linkcode NotFoundPage}). */
  notFound: { page: NotFoundPage | null };
  /** Listings kept for `cacheMs` (with the cache only), by key. */
  listings: Map<string, KeptListing> | null;
  /**
   * The client {@linkcode MAX_OPEN_FILES_PER_CLIENT} counts for: behind a
   * `trustProxy` proxy the one it forwarded, so that all clients of a proxy
   * are not one; null: the socket's address.
   */
  clientOf:
    | ((req: Request, info: Deno.ServeHandlerInfo) => string | null)
    | null;
}

/**
 * CORS for a public, read-only site: any origin may read (no credentials),
 * and its scripts may see the headers a player or a resumable download needs
 * (beyond the CORS-safelisted ones). The headers a script may send are
 * allowed by the preflight ({@linkcode answerOtherMethod}).
 */
const CORS_HEADERS: [string, string][] = [
  ["Access-Control-Allow-Origin", "*"],
  [
    "Access-Control-Expose-Headers",
    "Accept-Ranges, Content-Encoding, Content-Range, ETag",
  ],
];

function extraHeaders(
  options: {
    headers?: ExtraHeaders | undefined;
    enableCors?: boolean | undefined;
  },
): [string, string][] {
  const { headers = [], enableCors = false } = options;
  const own = parseHeaderLines(headers);
  // A CORS header of the user's own (one allowed origin) replaces ours:
  // two Access-Control-Allow-Origin values make browsers refuse both.
  const names = new Set(own.map(([name]) => name.toLowerCase()));
  const cors = enableCors
    ? CORS_HEADERS.filter(([name]) => !names.has(name.toLowerCase()))
    : [];
  return [...cors, ...own];
}

function makeContext(
  rootReal: string,
  options: HandlerOptions,
  cache: FileCache | null,
) {
  const {
    urlRoot = "",
    showIndex = true,
    showDirListing = false,
    showDotfiles = false,
    quiet = false,
    compress = true,
    enableCors = false,
    cleanUrls = false,
    fallback,
    sendTimeoutMs = SEND_TIMEOUT_MS,
    trustProxy = false,
  } = options;
  const trimmed = urlRoot.replace(/^\/+|\/+$/g, "");
  const trusted = trustedProxies(trustProxy);
  return {
    rootReal,
    urlRoot: trimmed === "" ? "" : "/" + trimmed,
    showIndex,
    showDirListing,
    showDotfiles,
    extra: extraHeaders(options),
    cache,
    quiet,
    compress,
    cors: enableCors,
    cleanUrls,
    fallback: fallback === undefined ? null : fallbackUrlPath(fallback),
    toDenoServe: false,
    sendTimeoutMs,
    notFound: { page: null as NotFoundPage | null },
    listings: cache === null ? null : new Map<string, KeptListing>(),
    clientOf: trustProxy === false
      ? null
      : (req: Request, info: Deno.ServeHandlerInfo) =>
        forwardedClient(req, info, trustProxy, trusted),
  } satisfies ServeContext;
}

/**
 * Serves one file (no path checks: the caller chose `filePath`), with
 * validators, conditional requests and ranges. Same signature as std's.
 */
export async function serveFile(
  req: Request,
  filePath: string,
  options: ServeFileOptions = {},
): Promise<Response> {
  const extra = extraHeaders(options);
  // std's serveFile has no log: only a 5xx is worth a line here.
  return await answerAtEdge(req, { extra, quiet: true }, async () => {
    if (req.method !== "GET" && req.method !== "HEAD") {
      return answerOtherMethod(req, extra, options.enableCors ?? false);
    }
    const info = options.fileInfo ?? await Deno.stat(filePath);
    if (!info.isFile) {
      throw new NotServableError(404, `not a file: ${filePath}`);
    }
    const { compress = true } = options;
    // The caller chose the path: a symlink there is followed, as in std.
    const file = await openRegularFile(filePath, { followSymlinks: true });
    return await sendFileFromDisk(req, file, filePath, extra, compress);
  });
}

/**
 * Opens a file, takes its validators from the open handle, and answers. A
 * compressible file is offered as its precompressed `.br`/`.zst`/`.gz` when
 * there is one, else as zstd or gzip made while streaming. Stored forms come
 * before streamed ones (a stored file has its length, a strong tag and costs
 * no CPU), so a client that takes both gets `x.css.gz` rather than zstd made
 * now.
 */
async function sendFileFromDisk(
  req: Request,
  opened: OpenFile,
  path: string,
  extra: readonly [string, string][],
  compress: boolean,
  native = true,
  sendTimeoutMs = SEND_TIMEOUT_MS,
): Promise<Response> {
  let file = opened;
  try {
    const info = file.info;
    let meta = fileMetaFrom(path, info);
    if (compress && isCompressible(meta.contentType)) {
      const wanted = req.headers.get("accept-encoding") !== null;
      const encoded = wanted ? await findPrecompressed(path, info) : [];
      for (const coding of STREAMED_CODINGS) {
        if (compressingStreams >= MAX_COMPRESSING_STREAMS) break;
        if (encoded.some((r) => r.coding === coding)) continue;
        // RFC 9110 8.8.1: weak, since the bytes depend on the compressor.
        encoded.push({
          coding,
          etag: `W/${entityTag(info, `-${coding}`)}`,
          size: null,
        });
      }
      meta = { ...meta, encoded, vary: true };
    }
    let plan = planFileResponse(req, meta, extra);
    const onDisk = plan.representation.path;
    if (onDisk !== undefined && plan.body.kind === "whole") {
      const precompressed = await openPrecompressed(
        onDisk,
        plan.representation,
      );
      if (precompressed === null) {
        // Changed since we looked: send the file itself, compressed while streaming.
        meta = {
          ...meta,
          encoded: meta.encoded!.filter((r) => r.path === undefined),
        };
        plan = planFileResponse(req, meta, extra);
      } else {
        file.close();
        file = precompressed;
      }
    }
    if (
      native && req.method === "GET" &&
      streamsToEnd(plan.body, file.info.size)
    ) {
      await file.openNative();
    }
    return attachBody(plan, { kind: "file", file }, sendTimeoutMs);
  } catch (error) {
    file.close();
    throw error;
  }
}

/**
 * Whether a body reads more than one chunk from the file and on to its end:
 * the whole file, or one range such as `bytes=1000-` (a resumed download, a
 * video seek). Those stream from Deno's own reader ({@linkcode OpenFile.stream})
 * unless the request came through {@linkcode serveWithRestart}.
 */
function streamsToEnd(body: BodyPlan, size: number): boolean {
  if (size <= STREAM_FROM_BYTES) return false;
  if (body.kind === "whole") return true;
  if (body.kind !== "ranges" || body.pieces.length !== 1) return false;
  const range = body.pieces[0];
  return typeof range === "object" && range.end === size - 1 &&
    size - range.start > STREAM_FROM_BYTES;
}

/**
 * Serves the files under `options.fsRoot`. Same signature and option names as
 * `@std/http/file-server`'s `serveDir`; logs a Common Log Format line unless
 * `quiet`. Each call checks the disk afresh; {@linkcode createHandler} adds a
 * cache for busy sites.
 */
export async function serveDir(
  req: Request,
  options: ServeDirOptions = {},
): Promise<Response> {
  const started = Date.now();
  const response = await answerAtEdge(
    req,
    { extra: [], quiet: true },
    () => serveDirAnswer(req, options),
  );
  if (!options.quiet) logRequest(req, response, null, started);
  return response;
}

/** What {@linkcode serveDir} answers, before the edge. */
async function serveDirAnswer(
  req: Request,
  options: ServeDirOptions,
): Promise<Response> {
  const fsRoot = options.fsRoot ?? ".";
  let ctx: ServeContext | null;
  try {
    const rootReal = await realPathOrNull(fsRoot);
    extraHeaders(options); // throws for a bad `headers` option
    ctx = rootReal === null ? null : makeContext(rootReal, options, null);
  } catch (error) {
    // An unreadable root or a bad `headers` option: the server's mistake, a
    // 500 whatever the error's code (a root we may not read is no 403 of the
    // client's), logged with its cause.
    throw new Error("serveDir is misconfigured", { cause: error });
  }
  if (ctx !== null) return await serveFromRoot(req, ctx);
  // As std's serveDir: no folder, no file in it, so 404 (an app that tries
  // its own routes after a 404 keeps working). The programmer still hears of
  // it once, even with `quiet`.
  warnMissingRoot(fsRoot);
  return textResponse(404, extraHeaders(options));
}

/** The `fsRoot` values already reported missing (bounded: the caller's, not a client's). */
const missingRootsWarned = new Set<string>();

/**
 * The real path of `path`, or null when there is nothing there. Other errors
 * (no read permission, for one) are thrown: a 500 that the log explains.
 */
async function realPathOrNull(path: string): Promise<string | null> {
  try {
    return await Deno.realPath(path);
  } catch (error) {
    const code = (error as { code?: unknown } | null)?.code;
    if (code === "ENOENT" || code === "ENOTDIR") return null;
    throw error;
  }
}

/** Logs, once per `fsRoot`, that {@linkcode serveDir} has no folder to serve. */
function warnMissingRoot(fsRoot: string): void {
  if (missingRootsWarned.has(fsRoot) || missingRootsWarned.size >= 64) return;
  missingRootsWarned.add(fsRoot);
  console.error(
    `server_files: serveDir: there is no folder ${
      logSafe(fsRoot)
    } (fsRoot) to serve; every request gets 404 until it exists`,
  );
}

/** GET/HEAD on the file tree: method check, path resolution, directories, files. */
async function serveFromRoot(
  req: Request,
  ctx: ServeContext,
  info?: Deno.ServeHandlerInfo,
): Promise<Response> {
  if (req.method !== "GET" && req.method !== "HEAD") {
    return answerOtherMethod(req, ctx.extra, ctx.cors);
  }
  const { pathname, search } = splitUrl(req.url);
  let response: Response;
  try {
    response = await serveUrlPath(req, ctx, pathname, search, info);
  } catch (caught) {
    let error = caught;
    ctx.cache?.forget(pathname); // the file went away or became unsafe
    if (ctx.fallback !== null && isNotFound(error) && acceptsHtml(req)) {
      try {
        return await serveFallback(req, ctx, ctx.fallback, info);
      } catch (fallbackError) {
        error = fallbackError;
      }
    }
    response = await errorResponse(error, req, ctx);
  }
  return response;
}

async function serveUrlPath(
  req: Request,
  ctx: ServeContext,
  pathname: string,
  search: string,
  info?: Deno.ServeHandlerInfo,
): Promise<Response> {
  // One URL per file, as std's serveDir: `/a//b.txt` and `/a/./b.txt` are
  // sent to `/a/b.txt` instead of being served under a second name.
  const canonical = canonicalUrlPath(pathname);
  if (canonical !== null) return redirectResponse(canonical + search, ctx);
  let relative = pathname;
  if (ctx.urlRoot !== "") {
    if (pathname !== ctx.urlRoot && !pathname.startsWith(ctx.urlRoot + "/")) {
      throw new NotServableError(404, `outside urlRoot: ${pathname}`);
    }
    relative = pathname.slice(ctx.urlRoot.length) || "/";
  }
  let resolved: ResolvedPath;
  try {
    resolved = await resolveSafePath(ctx.rootReal, relative, ctx.showDotfiles);
  } catch (error) {
    if (!isNotFound(error) || relative === "/") throw error;
    if (relative.endsWith("/")) {
      // A file with a trailing slash (`/a.txt/`): its one URL has none.
      const file = await resolveOrNull(ctx, relative.slice(0, -1));
      if (file?.info.isFile) {
        return redirectResponse(pathname.slice(0, -1) + search, ctx);
      }
    } else if (ctx.cleanUrls) {
      const page = await resolveOrNull(ctx, relative + ".html");
      if (page?.info.isFile) {
        return await sendFile(req, ctx, pathname, page, info);
      }
    }
    throw error;
  }
  if (resolved.info.isFile && relative.endsWith("/")) {
    // Some realpath calls (Deno's, under a narrow --allow-read) drop the
    // slash instead of failing with ENOTDIR: the same redirect.
    return redirectResponse(pathname.slice(0, -1) + search, ctx);
  }
  if (
    ctx.cleanUrls && resolved.info.isFile && relative.endsWith(".html") &&
    relative.length > "/.html".length &&
    await resolveOrNull(ctx, relative.slice(0, -".html".length)) === null
  ) {
    // `/about.html` has a cleaner URL that serves the same file: `/about`.
    return redirectResponse(pathname.slice(0, -".html".length) + search, ctx);
  }
  if (resolved.info.isDirectory) {
    if (!pathname.endsWith("/")) {
      // RFC 9110 15.4.2: relative links inside the folder need the slash.
      // The path is canonical here, so it starts with one slash only:
      // "//evil.example" would be read by browsers as another host.
      return redirectResponse(pathname + "/" + search, ctx);
    }
    if (ctx.showIndex) {
      const index = await resolveIndex(ctx, relative);
      if (index !== null) {
        return await sendFile(req, ctx, pathname, index, info);
      }
    }
    if (ctx.showDirListing) {
      return await serveListing(
        req,
        ctx,
        relative,
        resolved.path,
        search,
        info,
      );
    }
    throw new NotServableError(
      404,
      `directory without index: ${resolved.path}`,
    );
  }
  if (!resolved.info.isFile) {
    throw new NotServableError(404, `not a regular file: ${resolved.path}`);
  }
  return await sendFile(req, ctx, pathname, resolved, info);
}

/** A permanent redirect to a path on this server (a relative `Location`, as ours always are). */
function redirectResponse(location: string, ctx: ServeContext): Response {
  return textResponse(301, ctx.extra, [["Location", location]]);
}

/** True for an error that means "no such file here" (404), whatever raised it. */
function isNotFound(error: unknown): boolean {
  return (error instanceof NotServableError
    ? error.status
    : statusForFsError(error)) ===
    404;
}

/** {@linkcode resolveSafePath}, or null when there is no such file or folder. */
async function resolveOrNull(
  ctx: ServeContext,
  relative: string,
): Promise<ResolvedPath | null> {
  try {
    return await resolveSafePath(ctx.rootReal, relative, ctx.showDotfiles);
  } catch (error) {
    if (isNotFound(error)) return null;
    throw error;
  }
}

/**
 * True when the client takes HTML: `text/html` in `Accept` with a q-value
 * above 0 (RFC 9110 12.5.1). A browser navigating says so; `fetch()`, an
 * `<img>` or a script does not, and keeps its 404.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { acceptsHtml } from "./server_files.ts";
 * const headers = { accept: "text/html;q=0.9" };
 * assert.equal(acceptsHtml(new Request("http://h/", { headers })), true);
 * ```
 */
export function acceptsHtml(req: Request): boolean {
  const accept = req.headers.get("accept");
  if (accept === null) return false;
  return accept.split(",").some((range) => {
    const [type, ...params] = range.split(";");
    if (type!.trim().toLowerCase() !== "text/html") return false;
    const q = params.find((p) => p.trim().toLowerCase().startsWith("q="));
    return q === undefined || Number(q.trim().slice(2)) > 0;
  });
}

/** Answers with the SPA fallback file (through the same checks and cache as any file). */
async function serveFallback(
  req: Request,
  ctx: ServeContext,
  fallback: string,
  info?: Deno.ServeHandlerInfo,
): Promise<Response> {
  const resolved = await resolveSafePath(
    ctx.rootReal,
    fallback,
    ctx.showDotfiles,
  );
  if (!resolved.info.isFile) {
    throw new NotServableError(404, `fallback is not a file: ${resolved.path}`);
  }
  return await sendFile(req, ctx, fallback, resolved, info);
}

/**
 * The `fallback` option (a file path inside the root, `index.html` or
 * `app/index.html`) as the URL path it is served under.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { fallbackUrlPath } from "./server_files.ts";
 * assert.equal(fallbackUrlPath("./app/index.html"), "/app/index.html");
 * ```
 */
export function fallbackUrlPath(fallback: string): string {
  const path = "/" + fallback.replace(/^(\.?\/)+/, "");
  return path.split("/").map(encodeURIComponent).join("/");
}

/** `index.html` of a directory URL (through the same safety checks), or null. */
async function resolveIndex(
  ctx: ServeContext,
  relative: string,
): Promise<ResolvedPath | null> {
  try {
    const index = await resolveSafePath(
      ctx.rootReal,
      relative + "index.html",
      ctx.showDotfiles,
    );
    return index.info.isFile ? index : null;
  } catch (error) {
    if (error instanceof NotServableError && error.status === 404) return null;
    throw error;
  }
}

/**
 * Sends a resolved file: from the cache when it is small, else from disk,
 * once its connection may open one more file ({@linkcode takeFileTurn}).
 */
async function sendFile(
  req: Request,
  ctx: ServeContext,
  urlPath: string,
  resolved: ResolvedPath,
  info?: Deno.ServeHandlerInfo,
): Promise<Response> {
  if (ctx.cache !== null && resolved.info.size <= ctx.cache.maxFileBytes) {
    try {
      // A sliced string keeps the whole URL alive: count all of it.
      const entry = await ctx.cache.load(urlPath, req.url.length, resolved);
      return attachBody(
        planFileResponse(req, entry.meta, ctx.extra),
        entry.source,
      );
    } catch (error) {
      if (!(error instanceof FileTooBig)) throw error;
    }
  }
  const turn = await takeFileTurn(
    info,
    ctx.sendTimeoutMs,
    clientOfTurn(req, ctx, info),
  );
  try {
    const response = await sendFileFromDisk(
      req,
      await openResolved(resolved),
      resolved.path,
      ctx.extra,
      ctx.compress,
      !ctx.toDenoServe,
      ctx.sendTimeoutMs,
    );
    // Deno.serve settles `completed` once the body is sent or given up. It
    // says "sent" for many answers of a closed HTTP/2 connection, and
    // cancels their file stream just after: a file stream says itself how
    // its answer went.
    const release = releasableBodies.get(response);
    if (release !== undefined) release.onEnd = turn.ended;
    info?.completed?.then( // (absent in a hand-made info)
      () => turn.give(undefined, release !== undefined),
      turn.give,
    );
    return response;
  } catch (error) {
    turn.give();
    throw error;
  }
}

/**
 * Files one connection may have open at once for its answers; more wait
 * their turn. HTTP/1.1 sends one answer at a time, but HTTP/2 runs up to 200
 * streams on one connection, and a client that sets its window to 0 reads
 * nothing: each of its streams kept a file open until the send timeout, so
 * 5 connections held 1,000 descriptors and, under a limit of 1,024, nobody
 * else was answered. A page may well stream more than six big files at once
 * over one connection (videos a browser has paused the download of hold
 * theirs), so more than HTTP/1.1's six connections per host. A directory
 * listing takes a turn too, until it is sent: 2 such connections asking for
 * the listing of a 100,000-entry folder 200 times each held 348 MB.
 */
export const MAX_OPEN_FILES_PER_CONNECTION = 16;

/**
 * Files one client address may have open at once for its answers, over all
 * its connections; more wait their turn. Per connection alone, one client
 * with 200 HTTP/2 connections that read nothing held 3,200 files open and
 * 6 MB per connection (each stream's answer holds hyper's send buffer, about
 * 400 KB), 1.3 GB in all, and after it closed them the server went on
 * opening the file for its dead streams for 20 s. Behind a proxy on TCP all
 * clients are the proxy's address: with `trustProxy` (`--trust-proxy`) each
 * client the proxy forwards counts on its own; without it they share these
 * turns (or put the proxy on a Unix socket, `--unix`, where there is no count).
 * A request waits for a turn at most {@linkcode MAX_TURN_WAIT_MS}, then gets
 * 503 with `Retry-After`: 64 slow downloads from one address (a proxy, an
 * office behind one NAT) left the 65th with no answer at all.
 */
export const MAX_OPEN_FILES_PER_CLIENT = 64;

/**
 * Longest wait for a file turn ({@linkcode MAX_OPEN_FILES_PER_CLIENT}), or
 * the send timeout when that is shorter (`sendTimeoutMs`); then 503.
 */
export const MAX_TURN_WAIT_MS = 10_000;

/** Files open for the answers of one connection or one client, and the requests that wait for one. */
interface FileTurns {
  open: number;
  /** Answers that failed since the last one sent. */
  failing: number;
  waiting: { grant: () => void; refuse: () => void }[];
}

/** Per connection (`address:port`) and per client (`address`): its {@linkcode FileTurns}. */
const fileTurns = new Map<string, FileTurns>();

/** The client a file turn counts for (see {@linkcode ServeContext.clientOf}); null: the socket's. */
function clientOfTurn(
  req: Request,
  ctx: ServeContext,
  info: Deno.ServeHandlerInfo | undefined,
): string | null {
  return ctx.clientOf === null || info === undefined
    ? null
    : ctx.clientOf(req, info);
}

/**
 * Waits until the connection of `info` may open one more file
 * ({@linkcode MAX_OPEN_FILES_PER_CONNECTION}), and then its client
 * ({@linkcode MAX_OPEN_FILES_PER_CLIENT}); resolves a function that gives
 * the turns back (to the next waiting requests, if any), safe to call twice:
 * with the reason when the answer was not sent (`info.completed` rejected).
 * Without `info` (a handler called directly, or over a Unix socket) there is
 * nothing to count. A wait longer than `waitMs` (capped at
 * {@linkcode MAX_TURN_WAIT_MS}) throws a 503.
 *
 * When every answer a connection has in flight fails, with none sent in
 * between, the connection is gone (or its client reset every stream): its
 * waiting requests, and any that still come, throw {@linkcode clientGone}
 * instead of opening their files. 200 HTTP/2 connections closed with 199
 * streams each waiting kept opening the file for the dead streams for 25 s
 * (1,251 descriptors of it still open a second after the close, RSS
 * climbing from 575 to 921 MB). Deno.serve tells a handler nothing of it:
 * such a request's `signal` stayed unaborted (unless it was read before,
 * which prints a warning about its legacy abort on success), and many of
 * their answers "completed". So a failed answer's turn passes on after
 * {@linkcode FAILED_TURN_DELAY_MS}, once the rest of the burst has come.
 * A caller that passes the request's `signal` has a request that must wait
 * read it, and leave the queue as soon as its client goes.
 */
async function takeFileTurn(
  info: Deno.ServeHandlerInfo | undefined,
  waitMs: number,
  forwarded: string | null = null,
  signal?: () => AbortSignal,
): Promise<FileTurn> {
  const addr = info?.remoteAddr;
  if (addr?.transport !== "tcp" || info!.completed === undefined) {
    return { give() {}, ended() {} };
  }
  const key = `${addr.hostname}:${addr.port}`;
  const wait = Math.min(waitMs, MAX_TURN_WAIT_MS);
  const connection = await takeTurn(
    key,
    MAX_OPEN_FILES_PER_CONNECTION,
    wait,
    signal,
  );
  let client: FileTurn;
  try {
    client = await takeTurn(
      forwarded ?? addr.hostname,
      MAX_OPEN_FILES_PER_CLIENT,
      wait,
      signal,
    );
  } catch (error) {
    connection.give();
    throw error;
  }
  if (fileTurns.get(key)!.failing >= MAX_OPEN_FILES_PER_CONNECTION) {
    // The connection was found gone while this request waited for its client.
    client.give();
    connection.give();
    throw clientGone();
  }
  return {
    give(failure?: unknown, reported?: boolean) {
      client.give(undefined, true); // a client's turns count no failures
      connection.give(failure, reported);
    },
    ended: connection.ended,
  };
}

/** A turn of {@linkcode takeFileTurn}. */
interface FileTurn {
  /**
   * Gives it back, safe to call twice: with the reason when the answer was
   * not sent (`info.completed` rejected); `reported` when a file stream says
   * how it went ({@linkcode FileTurn.ended}).
   */
  give(failure?: unknown, reported?: boolean): void;
  /** What the answer's file stream says at its end: sent to its last byte, or cut short. */
  ended(sent: boolean): void;
}

/**
 * One turn of `key` (a connection or a client) within `limit`, waited for
 * at most `waitMs` and while `signal` (read only if it must wait) is not
 * aborted, as {@linkcode takeFileTurn} says.
 */
async function takeTurn(
  key: string,
  limit: number,
  waitMs: number,
  signal?: () => AbortSignal,
): Promise<FileTurn> {
  let turns = fileTurns.get(key);
  if (turns === undefined) {
    turns = { open: 0, failing: 0, waiting: [] };
    fileTurns.set(key, turns);
  }
  if (turns.failing >= limit) throw clientGone();
  if (turns.open < limit) turns.open++;
  else {
    const gone = signal?.();
    if (gone?.aborted) throw clientGone();
    await new Promise<void>((grant, refuse) => {
      const settle = () => {
        clearTimeout(timer);
        gone?.removeEventListener("abort", left);
      };
      const waiter = {
        grant() {
          settle();
          grant();
        },
        refuse() {
          settle();
          refuse(clientGone());
        },
      };
      const leave = (error: NotServableError) => {
        settle();
        turns.waiting.splice(turns.waiting.indexOf(waiter), 1);
        refuse(error);
      };
      const left = () => leave(clientGone());
      const timer = setTimeout(() => {
        leave(
          new NotServableError(503, `no file turn for ${key} in ${waitMs} ms`),
        );
      }, waitMs);
      gone?.addEventListener("abort", left, { once: true });
      turns.waiting.push(waiter);
    });
  }
  const failed = () => {
    if (++turns.failing >= limit) {
      for (const waiter of turns.waiting.splice(0)) waiter.refuse();
    }
  };
  let given = false;
  return {
    give(failure?: unknown, reported = false) {
      if (given) return;
      given = true;
      if (failure === undefined) {
        if (!reported) turns.failing = 0;
        passTurnOn(key, turns);
        return;
      }
      turns.failing++;
      setTimeout(() => {
        if (turns.failing >= limit) {
          for (const waiter of turns.waiting.splice(0)) waiter.refuse();
        }
        passTurnOn(key, turns);
      }, FAILED_TURN_DELAY_MS);
    },
    ended(sent) {
      if (sent) turns.failing = 0;
      else failed();
    },
  };
}

/** How long the turn of an answer that was not sent waits before it passes on (see {@linkcode takeFileTurn}). */
const FAILED_TURN_DELAY_MS = 20;

/** Hands a turn to the next waiting request, or counts it free. */
function passTurnOn(key: string, turns: FileTurns): void {
  const next = turns.waiting.shift();
  if (next !== undefined) next.grant(); // the turn passes on: as many open
  else if (--turns.open === 0 && turns.waiting.length === 0) {
    fileTurns.delete(key);
  }
}

/**
 * The request's client went away before its file was opened (its HTTP/2
 * stream was reset, its connection closed): 499 as nginx logs it, an answer
 * no one reads, and no line in the error log, where a closed connection
 * with 199 streams waiting would write 199.
 */
function clientGone(): NotServableError {
  return new NotServableError(499, "the client went away");
}

// ---------------------------------------------------------------------------
// The small-file cache: no system call at all on most requests
// ---------------------------------------------------------------------------

/** Most files the cache holds (one entry per real path, whatever the URL). */
export const MAX_CACHE_ENTRIES = 4096;
/** Most URL spellings remembered for the no-system-call fast path. */
export const MAX_CACHE_ALIASES = 8192;
/** Bytes the remembered URL spellings may take (keys plus overhead). */
export const MAX_ALIAS_BYTES = 2 * 1024 * 1024;
/** Longer URLs are still served from the cache, but never get a fast-path alias. */
const MAX_ALIAS_URL_CHARS = 1024;
/**
 * What one entry costs beyond its body and key: its three prebuilt
 * Responses, their header lists and the metadata (measured at about 2 KiB
 * with `Deno.memoryUsage()` over 4,000 entries, rounded up).
 */
const ENTRY_OVERHEAD_BYTES = 3 * 1024;
/** What one alias costs beyond its key: a Map slot and a small record. */
const ALIAS_OVERHEAD_BYTES = 128;

/**
 * The identity of one version of a file, as `fstat` on an open handle tells
 * it. Size and mtime alone miss an in-place edit that keeps both (`cp -p`,
 * `rsync -t`, `touch -r`); the inode catches a rename over the file, ctime
 * any write or `chmod`.
 */
interface FileVersion {
  size: number;
  mtimeMs: number;
  ctimeMs: number;
  ino: number;
  dev: number;
  /** Permission bits and owner: a `chmod` within ctime's second still shows. */
  mode: number;
  uid: number;
  gid: number;
}

function sameVersion(a: FileVersion, b: FileVersion): boolean {
  return a.size === b.size && a.mtimeMs === b.mtimeMs &&
    a.ctimeMs === b.ctimeMs && a.ino === b.ino && a.dev === b.dev &&
    a.mode === b.mode && a.uid === b.uid && a.gid === b.gid;
}

/** One cached file, shared by every URL that leads to it. */
interface CacheEntry {
  /** The real path: the key of the entry. */
  path: string;
  version: FileVersion;
  meta: FileMeta;
  /**
   * The bodies, one per content coding: the file and its br and gzip
   * copies, made once when the entry is built.
   */
  source: MemorySource;
  /** What the entry costs the byte budget: bodies, key and overhead. */
  bytes: number;
  checkedAt: number;
  /**
   * True while the file changed within the timestamp granularity of the
   * read (ctime has whole seconds in Deno 2.9), so a later edit could keep
   * every field of the version: the next revalidation compares the bytes,
   * as git does for its "racily clean" entries.
   */
  racy: boolean;
  /** Some compressed copies are missing, for want of budget (see {@linkcode MAX_COMPRESS_MS_PER_WINDOW}). */
  partial: boolean;
  /** URL spellings that lead here, dropped with the entry. */
  aliases: Set<string>;
}

/** A URL spelling remembered for the fast path, and when it was last resolved. */
interface Alias {
  entry: CacheEntry;
  checkedAt: number;
  bytes: number;
}

/**
 * Small files kept in memory, one entry per real path, with their headers
 * computed once. Like nginx's `open_file_cache`: a URL seen less than
 * `validMs` ago is answered with no system call at all (the alias map);
 * after that the URL goes through {@linkcode resolveSafePath} again (so a
 * file swapped for a symlink is noticed) and the file is opened again as an
 * uncached request would open it, so a file that became unreadable is
 * dropped and answered 403, and one that changed (size, mtime, ctime,
 * inode) is reread.
 *
 * Both maps are bounded in count and in bytes, keys and overhead counted:
 * many spellings of one URL (`/%61.txt`, `/a%2etxt`, ...) cost one entry
 * and a few bounded aliases, never a copy of the file each.
 */
class FileCache {
  readonly #entries = new Map<string, CacheEntry>();
  readonly #aliases = new Map<string, Alias>();
  #bytes = 0;
  #aliasBytes = 0;

  constructor(
    readonly validMs: number,
    readonly maxFileBytes: number,
    readonly extra: readonly [string, string][],
    readonly compress: boolean,
  ) {}

  /** The entry a URL path led to, if that was found out less than `validMs` ago. */
  fresh(urlPath: string, now: number): CacheEntry | undefined {
    const alias = this.#aliases.get(urlPath);
    return alias !== undefined && now - alias.checkedAt < this.validMs &&
        now - alias.entry.checkedAt < this.validMs
      ? alias.entry
      : undefined;
  }

  /**
   * Returns an up-to-date entry for a file that `urlPath` resolved to just
   * now, opening it as an uncached request would. Throws what that open
   * throws (the entry is dropped first), or {@linkcode FileTooBig} when the
   * file has grown past the cache's limit. `urlKeyCost` is what the URL
   * string holds in memory (see {@linkcode createHandler}).
   */
  async load(
    urlPath: string,
    urlKeyCost: number,
    resolved: ResolvedPath,
  ): Promise<CacheEntry> {
    const now = Date.now();
    let entry = this.#entries.get(resolved.path);
    const seen = entry !== undefined && now - entry.checkedAt < this.validMs &&
      sameVersion(entry.version, versionOf(resolved.info));
    if (!seen) entry = await this.#revalidate(resolved, entry);
    this.#remember(urlPath, urlKeyCost, entry!, now);
    return entry!;
  }

  /** Drops what a URL path led to (the file went away or became unsafe). */
  forget(urlPath: string): void {
    const alias = this.#aliases.get(urlPath);
    if (alias !== undefined) this.#dropAlias(urlPath, alias);
  }

  /** Opens the file afresh and keeps, rereads or drops the entry. */
  async #revalidate(
    resolved: ResolvedPath,
    old: CacheEntry | undefined,
  ): Promise<CacheEntry> {
    const { path } = resolved;
    let file: OpenFile;
    try {
      file = await openResolved(resolved);
    } catch (error) {
      // Out of descriptors says nothing about the file: keep serving the
      // copy we have (and try again at the next request).
      if (old !== undefined && statusForFsError(error) === 503) return old;
      if (old !== undefined) this.#dropEntry(old);
      throw error;
    }
    try {
      const version = versionOf(file.info);
      if (version.size > this.maxFileBytes) {
        if (old !== undefined) this.#dropEntry(old);
        throw new FileTooBig();
      }
      const checkedAt = Date.now();
      if (old !== undefined && sameVersion(old.version, version)) {
        // Copies left out for want of budget are made when there is some.
        const compressNow = old.partial && mayCompressNow();
        if (!old.racy && !compressNow) {
          old.checkedAt = checkedAt;
          return old;
        }
        const bytes = await readWhole(file, version.size);
        if (!compressNow && equalBytes(bytes, old.source.bytes)) {
          old.checkedAt = checkedAt;
          old.racy = isRacy(version, checkedAt);
          return old;
        }
      }
      const bytes = await readWhole(file, version.size);
      const entry = await this.#build(
        path,
        version,
        file.info,
        bytes,
        checkedAt,
      );
      if (old !== undefined) this.#dropEntry(old);
      this.#storeEntry(entry);
      return entry;
    } finally {
      file.close();
    }
  }

  async #build(
    path: string,
    version: FileVersion,
    info: Deno.FileInfo,
    bytes: Uint8Array<ArrayBuffer>,
    checkedAt: number,
  ): Promise<CacheEntry> {
    // If the file changed between fstat and read, describe what we really
    // read, and check again at the next request.
    const complete = bytes.byteLength === version.size;
    let meta = fileMetaFrom(path, { ...info, size: bytes.byteLength });
    let copies: CompressedCopy[] = [];
    let partial = false;
    if (this.compress && isCompressible(meta.contentType)) {
      meta = { ...meta, vary: true };
      ({ copies, partial } = await compressForCache(
        path,
        info,
        bytes,
        this.maxFileBytes,
      ));
    }
    const prepared = prepareMemoryFile(bytes, meta, copies, this.extra);
    const held = copies.reduce(
      (n, c) => n + c.bytes.byteLength,
      bytes.byteLength,
    );
    return {
      path,
      version,
      ...prepared,
      bytes: held + path.length * 2 + ENTRY_OVERHEAD_BYTES,
      checkedAt: complete ? checkedAt : -Infinity,
      racy: isRacy(version, checkedAt),
      partial,
      aliases: new Set(),
    };
  }

  #storeEntry(entry: CacheEntry): void {
    // Map keeps insertion order, so the first entries are the oldest.
    for (const old of this.#entries.values()) {
      if (
        this.#entries.size < MAX_CACHE_ENTRIES &&
        this.#bytes + entry.bytes <= MAX_CACHE_BYTES
      ) break;
      this.#dropEntry(old);
    }
    this.#entries.set(entry.path, entry);
    this.#bytes += entry.bytes;
  }

  #dropEntry(entry: CacheEntry): void {
    if (this.#entries.get(entry.path) !== entry) return;
    this.#entries.delete(entry.path);
    this.#bytes -= entry.bytes;
    for (const key of entry.aliases) this.forget(key);
  }

  #remember(
    urlPath: string,
    urlKeyCost: number,
    entry: CacheEntry,
    now: number,
  ): void {
    this.forget(urlPath);
    if (urlPath.length > MAX_ALIAS_URL_CHARS) return;
    const bytes = urlKeyCost * 2 + ALIAS_OVERHEAD_BYTES;
    for (const [oldKey, old] of this.#aliases) {
      if (
        this.#aliases.size < MAX_CACHE_ALIASES &&
        this.#aliasBytes + bytes <= MAX_ALIAS_BYTES
      ) break;
      this.#dropAlias(oldKey, old);
    }
    this.#aliases.set(urlPath, { entry, checkedAt: now, bytes });
    this.#aliasBytes += bytes;
    entry.aliases.add(urlPath);
  }

  #dropAlias(key: string, alias: Alias): void {
    this.#aliases.delete(key);
    this.#aliasBytes -= alias.bytes;
    alias.entry.aliases.delete(key);
  }

  /** Counts for tests and diagnostics. */
  get stats(): { entries: number; aliases: number; bytes: number } {
    return {
      entries: this.#entries.size,
      aliases: this.#aliases.size,
      bytes: this.#bytes + this.#aliasBytes,
    };
  }
}

/** Thrown by {@linkcode FileCache.load} for a file that outgrew the cache. */
class FileTooBig extends Error {}

function versionOf(info: Deno.FileInfo): FileVersion {
  return {
    size: info.size,
    mtimeMs: info.mtime?.getTime() ?? NaN,
    ctimeMs: info.ctime?.getTime() ?? NaN,
    ino: info.ino ?? 0,
    dev: info.dev,
    mode: info.mode ?? 0,
    uid: info.uid ?? 0,
    gid: info.gid ?? 0,
  };
}

/** True when an edit could still come within the granularity of the timestamps. */
function isRacy(version: FileVersion, readAt: number): boolean {
  const changed = Math.max(version.mtimeMs, version.ctimeMs);
  return !(readAt - changed > RACY_WINDOW_MS); // NaN (no timestamps) is racy too
}

/** Whole-second ctime plus the kernel's coarse clock (a few ms) plus margin. */
const RACY_WINDOW_MS = 1100;

function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.byteLength !== b.byteLength) return false;
  for (let i = 0; i < a.byteLength; i++) if (a[i] !== b[i]) return false;
  return true;
}

// ---------------------------------------------------------------------------
// The demo route: GET /suggest?firstname=John&food=Tacos
// ---------------------------------------------------------------------------

/** What `/suggest` says for each food on the form. */
export const SUGGESTIONS: Readonly<Record<string, string>> = {
  Pizza: "a margherita from a wood-fired oven, with fresh basil on top",
  Tacos: "tacos al pastor with pineapple, coriander and a squeeze of lime",
  Salad: "a Greek salad with feta, olives and ripe tomatoes",
};

/**
 * Answers the form of `form.html`. The values come from the query string,
 * so they are escaped before they go into the page; a missing name or an
 * unknown food is the client's mistake: 400 with a link back to the form.
 */
export function suggestFood(
  search: string,
  extra: readonly [string, string][] = [],
): Response {
  const query = new URLSearchParams(search);
  const name = (query.get("firstname") ?? "").trim();
  const food = query.get("food") ?? "";
  // A field sent twice would be a guess; a control or invisible format character
  // (NUL, a right-to-left override that reverses the rest of our sentence) or
  // U+FFFD (a byte that was not UTF-8) is no part of a name.
  const repeated = query.getAll("firstname").length > 1 ||
    query.getAll("food").length > 1;
  const unprintable = /[\p{Cc}\p{Cf}\u2028\u2029\uFFFD]/u.test(name);
  if (
    repeated || unprintable || name === "" || name.length > MAX_NAME_CHARS ||
    !Object.hasOwn(SUGGESTIONS, food)
  ) {
    const problem = repeated
      ? "Please send the form once: a field came twice."
      : unprintable
      ? "Please use only printable characters in your name."
      : name === ""
      ? "Please tell us your first name."
      : name.length > MAX_NAME_CHARS
      ? `Please use at most ${MAX_NAME_CHARS} characters for your name.`
      : "Please choose Pizza, Tacos or Salad.";
    return htmlResponse(
      400,
      renderPage("Something is missing", `<p>${problem}</p>`),
      extra,
    );
  }
  const body =
    `<p>Hello, ${escapeHtml(name)}! Since you like ${
      escapeHtml(food.toLowerCase())
    }, ` +
    `we suggest ${escapeHtml(SUGGESTIONS[food]!)}.</p>`;
  return htmlResponse(200, renderPage("Our suggestion", body), extra);
}

/** A page of the demo site's look, with links back to the form and the index. */
function renderPage(title: string, bodyHtml: string): string {
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${escapeHtml(title)}</title>
<link rel="icon" href="/favicon.ico">
<link rel="stylesheet" href="/style.css">
</head>
<body>
<main>
<h1>${escapeHtml(title)}</h1>
${bodyHtml}
<p><a href="/form.html">Back to the form</a> · <a href="/">Home</a></p>
</main>
</body>
</html>
`;
}

// ---------------------------------------------------------------------------
// The whole app and its access log
// ---------------------------------------------------------------------------

/** A request handler for `Deno.serve`: it may answer synchronously. */
export type Handler = (
  req: Request,
  info?: Deno.ServeHandlerInfo,
) => Response | Promise<Response>;

/**
 * Stops a typo in `fallback` at start-up: it must be a regular file inside
 * the root (through the same rules as any URL), else a TypeError names it.
 */
function checkFallback(
  rootReal: string,
  fallback: string,
  options: HandlerOptions,
): void {
  let ok = false;
  try {
    const decoded = decodeURIComponent(fallback);
    const real = Deno.realPathSync(join(rootReal, normalize(decoded)));
    ok = !decoded.split("/").includes("..") &&
      isServableRealPath(rootReal, real, options.showDotfiles ?? false) &&
      Deno.statSync(real).isFile;
  } catch {
    ok = false;
  }
  if (!ok) {
    throw new TypeError(
      `fallback ${
        JSON.stringify(options.fallback)
      } is not a file inside ${rootReal}`,
    );
  }
}

// ---------------------------------------------------------------------------
// Which names the server answers to: the defence against DNS rebinding
// ---------------------------------------------------------------------------
//
// A page on another site can point its own DNS name at 127.0.0.1; the browser
// then sends that page's requests here with `Host: evil.example` and lets the
// page read the answers. A server on loopback is not private unless it checks
// the name it was reached by (Vite's `server.allowedHosts` does the same).

/** The names every server answers to, wherever it listens. */
const LOOPBACK_HOSTS = ["localhost", "127.0.0.1", "[::1]"];

/** Distinct Host values remembered with their verdict (a flood of names is not). */
const MAX_HOST_VERDICTS = 256;

/**
 * The host name of an absolute URL (Deno builds `request.url` from the
 * `Host` header): without the port, lower-case, without a final dot, an
 * IPv6 address in brackets.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { hostNameOf } from "./server_files.ts";
 * assert.equal(hostNameOf("http://LocalHost.:8080/a"), "localhost");
 * assert.equal(hostNameOf("http://[::1]:8080/"), "[::1]");
 * ```
 */
export function hostNameOf(url: string): string {
  const start = url.indexOf("://") + 3;
  let end = url.indexOf("/", start);
  if (end < 0) end = url.length;
  const authority = url.slice(url.lastIndexOf("@", end) + 1 || start, end);
  const name = authority.startsWith("[")
    ? authority.slice(0, authority.indexOf("]") + 1)
    : authority.split(":")[0]!;
  const lower = name.toLowerCase();
  return lower.endsWith(".") ? lower.slice(0, -1) : lower;
}

/**
 * True when `name` (from {@linkcode hostNameOf}) is a loopback name or in
 * `allowed`; an entry with a leading dot allows the name after the dot and
 * all its subdomains. Entries compare as {@linkcode hostNameOf} would spell them.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { isAllowedHost } from "./server_files.ts";
 * assert.equal(isAllowedHost("a.example.com", [".example.com"]), true);
 * assert.equal(isAllowedHost("evil-example.com", [".example.com"]), false);
 * ```
 */
export function isAllowedHost(
  name: string,
  allowed: readonly string[],
): boolean {
  for (const raw of [...LOOPBACK_HOSTS, ...allowed]) {
    const entry = normaliseAllowedHost(raw);
    if (entry === name) return true;
    if (
      entry.startsWith(".") && (name === entry.slice(1) || name.endsWith(entry))
    ) return true;
  }
  return false;
}

/** `Example.COM.` -> `example.com`, `::1` -> `[::1]`. */
function normaliseAllowedHost(entry: string): string {
  const lower = entry.trim().toLowerCase();
  const bracketed = lower.includes(":") && !lower.startsWith("[")
    ? `[${lower}]`
    : lower;
  return bracketed.endsWith(".") && bracketed !== "."
    ? bracketed.slice(0, -1)
    : bracketed;
}

/**
 * True when `authority` is a valid `Host` (RFC 9110 7.2: `uri-host [":" port]`):
 * a name of letters, digits, `-` and `_` in dot-separated labels (an IPv4
 * address is one; a final dot is allowed), or an IPv6 address in brackets;
 * then at most a port of up to five digits, 65535 at most. Anything else is
 * refused, among it userinfo (`a@127.0.0.1`: RFC 9110 4.2.4 says to treat it
 * as an error), spaces, `/`, `\\`, `%`-escapes and empty labels: such a name
 * is no name a client resolved, and another part (a proxy, a log reader)
 * might read it differently.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { isValidHost } from "./server_files.ts";
 * assert.equal(isValidHost("localhost:8080"), true);
 * assert.equal(isValidHost("[::1]"), true);
 * assert.equal(isValidHost("a@127.0.0.1"), false);
 * assert.equal(isValidHost(""), false);
 * ```
 */
export function isValidHost(authority: string): boolean {
  const match = HOST_SYNTAX.exec(authority);
  return match !== null &&
    (match[1] === undefined || Number(match[1]) <= 65535);
}

const HOST_SYNTAX =
  /^(?:\[[0-9a-f]*:[0-9a-f:.]*\]|[a-z0-9_-]+(?:\.[a-z0-9_-]+)*\.?)(?::(\d{0,5}))?$/i;

/** What the Host check decided: serve, 421 (a name we do not answer to), 400 (no valid Host). */
type HostVerdict = "serve" | "misdirected" | "invalid";

/**
 * The Host check of the request path. `Deno.serve` builds `request.url`
 * from the Host header (or from an absolute-form target, which RFC 9112
 * 3.2.2 says wins over Host); the verdict on that authority is remembered,
 * so a request pays one header read and two string comparisons.
 *
 * The header itself is read too, because the URL hides two bad ones (RFC
 * 9112 3.2: an invalid Host is 400): an empty Host, for which `Deno.serve`
 * writes `localhost:PORT`, and one with a `/` in it (`127.0.0.1/x`), which
 * becomes part of the path. A missing Host is served: `Deno.serve` does not
 * tell an HTTP/1.1 request (where that is an error) from an HTTP/1.0 one or
 * an HTTP/2 one (which names the host in `:authority`).
 */
function hostChecker(
  allowed: readonly string[],
): (req: Request) => HostVerdict {
  const verdicts = new Map<string, HostVerdict>();
  // Most requests name the host the previous one named: compare the start
  // of the URL with it before slicing and hashing the authority.
  let lastPrefix = "";
  let lastAuthority = "";
  let lastVerdict: HostVerdict = "invalid";
  return (req) => {
    const url = req.url;
    const host = req.headers.get("host");
    // No Host at all is served: RFC 9112 3.2 asks 400 for HTTP/1.1 only,
    // and Deno.serve shows a handler the same request (URL from the
    // listener's address, no headers) for HTTP/1.1 and HTTP/1.0 without
    // Host, and nothing of the version (ServeHandlerInfo has remoteAddr and
    // completed only). A Host that differs from HTTP/2's :authority is not
    // refused either: an HTTP/1.1 absolute-form target looks the same, and
    // there the server MUST ignore Host (RFC 9112 3.2.2).
    if (host === "") return "invalid";
    let authority = lastAuthority;
    let verdict = lastVerdict;
    if (lastPrefix === "" || !url.startsWith(lastPrefix)) {
      const start = url.indexOf("://") + 3;
      let end = url.indexOf("/", start);
      if (end < 0) end = url.length;
      authority = url.slice(start, end);
      verdict = verdicts.get(authority) ?? decideHost(authority, url, allowed);
      if (!verdicts.has(authority)) {
        if (verdicts.size >= MAX_HOST_VERDICTS) verdicts.clear();
        verdicts.set(authority, verdict);
      }
      if (end < url.length) {
        lastPrefix = url.slice(0, end + 1);
        lastAuthority = authority;
        lastVerdict = verdict;
      }
    }
    // Host differs from the URL's authority for an absolute-form target, or
    // when part of it went into the path: either way it must be valid.
    if (host !== null && host !== authority && !isValidHost(host)) {
      return "invalid";
    }
    return verdict;
  };
}

function decideHost(
  authority: string,
  url: string,
  allowed: readonly string[],
): HostVerdict {
  if (!isValidHost(authority)) return "invalid";
  return isAllowedHost(hostNameOf(url), allowed) ? "serve" : "misdirected";
}

const INVALID_HOST_BYTES = encoder.encode(
  "400 Bad Request: the Host header is not a valid host name and port.\n",
);

/** 400 for a request whose Host is not a valid host name and port (RFC 9112 3.2). */
function invalidHostResponse(extra: readonly [string, string][]): Response {
  return bytesResponse(
    400,
    INVALID_HOST_BYTES,
    "text/plain; charset=utf-8",
    extra,
  );
}

/**
 * 421 Misdirected Request (RFC 9110 15.5.20: "not able to produce a
 * response for this target URI"), with a plain explanation for whoever runs
 * the server. The name is shown as text, never as HTML.
 */
function misdirectedResponse(
  url: string,
  extra: readonly [string, string][],
): Response {
  const name = hostNameOf(url).slice(0, 100);
  const text = `421 Misdirected Request: this server does not answer to the ` +
    `name ${JSON.stringify(name)}. The check stops other web sites from ` +
    `reaching it through their own DNS names (DNS rebinding). If you run ` +
    `this server and meant that name, start it with --allowed-host ${name} ` +
    `(option allowedHosts).\n`;
  return bytesResponse(
    421,
    encoder.encode(text),
    "text/plain; charset=utf-8",
    extra,
  );
}

/** Whether `hostname` is every address of the machine (`0.0.0.0`, `::`). */
function isEveryAddress(hostname: string): boolean {
  return hostname === "0.0.0.0" || hostname === "::" || hostname === "[::]";
}

/**
 * The names a server listening on `hostname` answers to besides the
 * loopback ones: that name, and for `0.0.0.0`/`::` (every address) this
 * machine's addresses, when `--allow-sys=networkInterfaces` lets us read them.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { listeningHostNames } from "./server_files.ts";
 * assert.deepEqual(listeningHostNames("192.168.1.5"), ["192.168.1.5"]);
 * ```
 */
export function listeningHostNames(hostname: string): string[] {
  const names = [hostname];
  if (isEveryAddress(hostname)) {
    try {
      names.push(...Deno.networkInterfaces().map(({ address }) => address));
    } catch {
      // No --allow-sys: only the loopback names and --allowed-host ones.
    }
  }
  return names;
}

/**
 * The real path of the folder to serve. Throws at start-up, rather than
 * answering every request 404 or 403: NotFound when there is none,
 * NotADirectory for a file, and PermissionDenied for a folder this user may
 * not look into (no search permission, `chmod 000` or `chmod 644`: no file
 * in it can be opened). A folder it may search but not list (`chmod 711`)
 * is served: its files can be, and only a listing of it is refused.
 */
function realRootFolder(fsRoot: string): string {
  const rootReal = Deno.realPathSync(fsRoot);
  if (!Deno.statSync(rootReal).isDirectory) {
    throw new Deno.errors.NotADirectory(`not a folder: '${fsRoot}'`);
  }
  try {
    // Looking up a name in it (there or not) needs search permission, as
    // every request does; node's accessSync would need --allow-sys=uid.
    Deno.lstatSync(join(rootReal, "index.html"));
  } catch (error) {
    if (error instanceof Deno.errors.PermissionDenied) throw error;
  }
  return rootReal;
}

/**
 * The whole app: `GET /suggest` plus the files under `fsRoot`, with small
 * files served from memory. A cache hit is answered synchronously, which
 * saves Deno.serve a promise per request.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { createHandler } from "./server_files.ts";
 * const server = Deno.serve(
 *   { hostname: "127.0.0.1", port: 0, onListen() {} },
 *   createHandler({ fsRoot: ".", quiet: true }),
 * );
 * const url = `http://127.0.0.1:${server.addr.port}/no-such-file.txt`;
 * const response = await fetch(url);
 * await response.body?.cancel();
 * assert.equal(response.status, 404);
 * await server.shutdown();
 * ```
 */
export function createHandler(options: HandlerOptions = {}): Handler {
  const { fsRoot = ".", quiet = false, cacheMs = 1000 } = options;
  const { maxCachedFileBytes = MAX_CACHED_FILE_BYTES, compress = true } =
    options;
  const rootReal = realRootFolder(fsRoot);
  const extra = extraHeaders(options);
  const cache = maxCachedFileBytes > 0
    ? new FileCache(cacheMs, maxCachedFileBytes, extra, compress)
    : null;
  const ctx = makeContext(rootReal, options, cache);
  if (ctx.fallback !== null) checkFallback(rootReal, ctx.fallback, options);
  const checkHost = hostChecker(options.allowedHosts ?? []);

  const route = (
    req: Request,
    info?: Deno.ServeHandlerInfo,
  ): Response | Promise<Response> => {
    // First of all: a name we do not answer to gets nothing else (DNS
    // rebinding), and a Host that is no name at all gets a 400.
    const verdict = checkHost(req);
    if (verdict === "invalid") return invalidHostResponse(extra);
    if (verdict === "misdirected") return misdirectedResponse(req.url, extra);
    const method = req.method;
    if (method !== "GET" && method !== "HEAD") {
      return answerOtherMethod(req, extra, ctx.cors);
    }
    const { pathname, search } = splitUrl(req.url);
    if (pathname === "/suggest") return suggestFood(search, extra);
    const entry = cache?.fresh(pathname, Date.now());
    if (entry !== undefined) {
      // A GET whose answer nothing reads before Deno.serve sends it (a HEAD
      // keeps its Content-Length, the log reads it) gets the wire form.
      const wire = quiet && ctx.toDenoServe && method === "GET";
      return attachBody(
        planFileResponse(req, entry.meta, extra),
        entry.source,
        SEND_TIMEOUT_MS,
        wire,
      );
    }
    return serveFromRoot(req, ctx, info);
  };

  // The edge: HEAD drops GET's body here, for every route.
  const answer = (
    req: Request,
    info?: Deno.ServeHandlerInfo,
  ): Response | Promise<Response> =>
    answerAtEdge(req, ctx, () => route(req, info));

  if (quiet) {
    handlerContexts.set(answer, ctx);
    return answer;
  }
  const json = options.logFormat === "json";
  const combined = options.logFormat === "combined";
  const trustProxy = options.trustProxy ?? false;
  const trusted = trustedProxies(trustProxy);
  const logged: Handler = (req, info) => {
    const started = Date.now();
    // Behind a trusted proxy, the client it forwarded (see forwardedClient).
    const remote = trustProxy === false
      ? info?.remoteAddr.transport === "tcp" ? info.remoteAddr.hostname : null
      : forwardedClient(req, info, trustProxy, trusted);
    if (json) return logJsonWhenSent(answer, req, info, remote, started);
    const extra = combined
      ? combinedFields(
        req.headers.get("referer"),
        req.headers.get("user-agent"),
      )
      : "";
    const result = answer(req, info);
    if (result instanceof Response) {
      logRequest(req, result, remote, started, extra);
      return result;
    }
    return result.then((response) => {
      logRequest(req, response, remote, started, extra);
      return response;
    });
  };
  handlerContexts.set(logged, ctx);
  return logged;
}

/**
 * Which peers may say who the client is, as `trustProxy` gives them: `true` for whatever
 * peer connects (one proxy, and the server reachable only through it), or addresses and
 * CIDR ranges (`"127.0.0.1"`, `"10.0.0.0/8"`, `"::1"`; `"loopback"` is 127.0.0.0/8 and
 * ::1). A peer on a Unix socket is trusted whenever a list is given: only the proxy
 * connects there. Throws TypeError on an entry that is none of these.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { trustedProxies } from "./server_files.ts";
 * const trusted = trustedProxies(["loopback", "10.0.0.0/8"]);
 * assert.equal(trusted("10.1.2.3"), true);
 * assert.equal(trusted("192.0.2.1"), false);
 * ```
 */
export function trustedProxies(
  trust: boolean | readonly string[],
): (address: string) => boolean {
  if (trust === true) return () => true;
  if (trust === false) return () => false;
  const ranges = trust.flatMap((entry) =>
    entry === "loopback" ? ["127.0.0.0/8", "::1"] : [entry]
  ).map((entry) => {
    const [address = "", bits, extra] = entry.split("/");
    const bytes = parseIpAddress(address);
    const prefix = bytes === null || extra !== undefined
      ? Infinity
      : bits === undefined
      ? bytes.length * 8
      : /^\d{1,3}$/.test(bits)
      ? Number(bits)
      : Infinity;
    if (bytes === null || prefix > bytes.length * 8) {
      throw new TypeError(
        `a trusted proxy is an address or a CIDR range (10.0.0.0/8), got ${
          JSON.stringify(entry)
        }`,
      );
    }
    return { bytes, prefix };
  });
  return (address) => {
    const bytes = parseIpAddress(address);
    return bytes !== null &&
      ranges.some((range) =>
        range.bytes.length === bytes.length &&
        range.bytes.every((byte, i) => {
          const bits = Math.min(8, Math.max(0, range.prefix - i * 8));
          const mask = (0xff00 >> bits) & 0xff;
          return (byte & mask) === (bytes[i]! & mask);
        })
      );
  };
}

/**
 * An IP address's bytes: 4 for IPv4 (dotted decimal only), 16 for IPv6 (bracketed or
 * not); an IPv4-mapped IPv6 address (`::ffff:192.0.2.1`) is its IPv4 address. Null for
 * anything else. So `parseIpAddress("[::1]")` is 15 zero bytes and a 1.
 */
function parseIpAddress(text: string): number[] | null {
  const bare = text.replace(/^\[(.*)\]$/, "$1");
  if (!bare.includes(":")) return parseIpv4(bare);
  if (!/^[0-9a-fA-F:.]{2,45}$/.test(bare)) return null;
  const halves = bare.split("::");
  if (halves.length > 2) return null;
  /** The 16-bit groups of `part`; its last may be dotted IPv4 when it ends the address. */
  const groupsOf = (part: string, last: boolean): number[] | null => {
    if (part === "") return [];
    const groups: number[] = [];
    const pieces = part.split(":");
    for (const [i, piece] of pieces.entries()) {
      if (/^[0-9a-fA-F]{1,4}$/.test(piece)) groups.push(parseInt(piece, 16));
      else if (last && i === pieces.length - 1 && piece.includes(".")) {
        const v4 = parseIpv4(piece);
        if (v4 === null) return null;
        groups.push(v4[0]! << 8 | v4[1]!, v4[2]! << 8 | v4[3]!);
      } else return null;
    }
    return groups;
  };
  const head = groupsOf(halves[0]!, halves.length === 1);
  const tail = halves.length === 2 ? groupsOf(halves[1]!, true) : [];
  if (head === null || tail === null) return null;
  const zeros = 8 - head.length - tail.length;
  if (halves.length === 2 ? zeros < 1 : zeros !== 0) return null;
  const bytes = [
    ...head,
    ...Array(halves.length === 2 ? zeros : 0).fill(0),
    ...tail,
  ]
    .flatMap((group) => [group >> 8, group & 0xff]);
  const mapped = bytes.slice(0, 10).every((byte) => byte === 0) &&
    bytes[10] === 0xff && bytes[11] === 0xff;
  return mapped ? bytes.slice(12) : bytes;
}

/** An IPv4 address's 4 bytes (dotted decimal: `192.0.2.1`), or null. */
function parseIpv4(text: string): number[] | null {
  if (!/^\d{1,3}(\.\d{1,3}){3}$/.test(text)) return null;
  const bytes = text.split(".").map(Number);
  return bytes.every((byte) => byte < 256) ? bytes : null;
}

/**
 * The client's address (null when unknown: no `info`, or a Unix socket with no proxy to
 * trust): the socket's, or when the socket's peer is a trusted proxy, the rightmost
 * `X-Forwarded-For` hop that is not one (each proxy appends the address it saw, so the
 * hops left of the first untrusted one are whatever the client wrote), as nginx's
 * `real_ip_recursive on` and Caddy's `trusted_proxies` find it. With `trustProxy: true`
 * that is the last hop. A hop that is not an address (a proxy passing on the client's own
 * text) ends the walk. The same functions are in message_board.ts, where the per-client
 * limits count this client too.
 */
export function forwardedClient(
  request: Request,
  info: Deno.ServeHandlerInfo | undefined,
  trustProxy: boolean | readonly string[],
  trusted: (address: string) => boolean = trustedProxies(trustProxy),
): string | null {
  const remote = info?.remoteAddr;
  let client = remote?.transport === "tcp" ? remote.hostname : null;
  if (!isTrustedPeer(info, trustProxy, trusted)) return client;
  const hops = request.headers.get("x-forwarded-for")?.split(",") ?? [];
  for (let i = hops.length - 1; i >= 0; i--) {
    // Some proxies (Azure's Application Gateway) add the client's port: `1.2.3.4:5678`,
    // `[2001:db8::1]:5678`. It is not part of who the client is.
    const hop = hops[i]!.trim().replace(
      /^(\d{1,3}(?:\.\d{1,3}){3}):\d{1,5}$|^\[([0-9a-fA-F:.]+)\]:\d{1,5}$/,
      (_, v4, v6) => v4 ?? v6,
    ).replace(/^\[(.*)\]$/, "$1");
    if (parseIpAddress(hop) === null) break;
    client = hop;
    if (trustProxy === true || !trusted(hop)) break;
  }
  return client;
}

/** Whether the socket's peer is a proxy `trustProxy` trusts (see {@linkcode trustedProxies}). */
function isTrustedPeer(
  info: Deno.ServeHandlerInfo | undefined,
  trustProxy: boolean | readonly string[],
  trusted: (address: string) => boolean,
): boolean {
  if (typeof trustProxy === "boolean") return trustProxy;
  const remote = info?.remoteAddr;
  return remote?.transport === "unix" ||
    (remote?.transport === "tcp" && trusted(remote.hostname));
}

const MONTHS = "Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec".split(" ");

/** One request, as {@linkcode formatAccessLog} writes it. */
export interface AccessLogEntry {
  /** The client's address; null (written `-`) when unknown. */
  client: string | null;
  /** When the request arrived. */
  date: Date;
  /** The request line, `GET /a HTTP/1.1`; null (written `-`) when none arrived. */
  requestLine: string | null;
  /** The response's status code. */
  status: number;
  /** Bytes of body sent; 0 or null is written `-`. */
  bodyBytes: number | null;
  /**
   * With these two, the line is nginx's `combined` format: the Referer and
   * the User-Agent after the size, null written `-`. Without, the Common Log
   * Format.
   */
  referer?: string | null | undefined;
  /** See `referer`. */
  userAgent?: string | null | undefined;
}

/**
 * One access-log line in the Common Log Format of Apache and nginx. The
 * request line is written as nginx writes it: printable ASCII as it is, `"`,
 * `\` and every other character as `\xNN` (`\u{NNNN}` above U+00FF), so a
 * request can neither end the line, forge another, nor send a terminal escape
 * codes. The same function, with the same output, is in server_tiny.ts and
 * message_board.ts.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { formatAccessLog } from "./server_files.ts";
 * assert.equal(
 *   formatAccessLog({ client: "127.0.0.1", date: new Date(0), requestLine: "GET /a HTTP/1.1", status: 200, bodyBytes: 12 }),
 *   '127.0.0.1 - - [01/Jan/1970:00:00:00 +0000] "GET /a HTTP/1.1" 200 12',
 * );
 * ```
 */
export function formatAccessLog(entry: AccessLogEntry): string {
  const { client, date, requestLine, status, bodyBytes } = entry;
  const line = accessLogLine(
    client,
    date.getTime(),
    requestLine,
    status,
    bodyBytes,
  );
  return entry.referer === undefined && entry.userAgent === undefined
    ? line
    : line + combinedFields(entry.referer ?? null, entry.userAgent ?? null);
}

/** {@linkcode formatAccessLog} with the time in ms, as the handler has it (no Date per request). */
function accessLogLine(
  client: string | null,
  ms: number,
  requestLine: string | null,
  status: number,
  bodyBytes: number | null,
): string {
  const request = requestLine === null ? "-" : escapeForLog(requestLine);
  return `${client ?? "-"} - - [${clfTime(ms)}] "${request}" ${status} ${
    bodyBytes ? bodyBytes : "-"
  }`;
}

/** The last second {@linkcode clfTime} formatted, and its text. */
let clfSecond = NaN;
let clfText = "";

/**
 * `01/Jan/1970:00:00:00 +0000` for a time in ms since the epoch. A busy
 * server logs many requests in the same second, so the last second's text is
 * kept: formatting it afresh took two thirds of a log line's time (about 0.65
 * against 0.22 µs a line in a loop).
 */
function clfTime(ms: number): string {
  const second = Math.floor(ms / 1000);
  if (second === clfSecond) return clfText;
  const date = new Date(second * 1000);
  const pad = (n: number) => String(n).padStart(2, "0");
  clfSecond = second;
  clfText =
    `${pad(date.getUTCDate())}/${
      MONTHS[date.getUTCMonth()]
    }/${date.getUTCFullYear()}:` +
    `${pad(date.getUTCHours())}:${pad(date.getUTCMinutes())}:${
      pad(date.getUTCSeconds())
    } +0000`;
  return clfText;
}

/** Printable ASCII but `"` and `\`: what a log line shows as it is. */
const LOG_PLAIN = /^[\x20\x21\x23-\x5b\x5d-\x7e]*$/;
const LOG_ESCAPED = /[^\x20\x21\x23-\x5b\x5d-\x7e]/gu;

/** Text for a log line, escaped as {@linkcode formatAccessLog} says. */
function escapeForLog(text: string): string {
  if (LOG_PLAIN.test(text)) return text;
  return text.replace(LOG_ESCAPED, (char) => {
    const code = char.codePointAt(0)!;
    const digits = code.toString(16);
    return code < 0x100
      ? `\\x${digits.padStart(2, "0")}`
      : `\\u{${digits.padStart(4, "0")}}`;
  });
}

/** Access-log text gathered before it is written at once, at most (in UTF-16 units). */
const LOG_BATCH_CHARS = 64 * 1024;

/** Lines not yet written, their total length, and whether a write is scheduled. */
let logPending: string[] = [];
let logPendingChars = 0;
let logScheduled = false;
let logUnloadHooked = false;

/**
 * Queues one access-log line for stdout. The lines of one turn of the event
 * loop (every request Deno.serve had ready) go out in one write, right after
 * it, or as soon as {@linkcode LOG_BATCH_CHARS} have gathered. A lone
 * request's line still appears at once; under wrk a write carries about 15
 * lines. Logging a 500 B request cost about 11 µs of CPU with a write per
 * line and costs 3-4 µs so (handler called in-process, output to a pipe).
 * Not `console.log`: formatting its arguments made a logged server answer a
 * 500 B file about a fifth slower (measured with wrk: ~7.5k against ~9.3k
 * requests/s).
 */
function writeLogLine(line: string): void {
  if (!logUnloadHooked) {
    // Deno.exit() drops pending timers but dispatches "unload" first.
    logUnloadHooked = true;
    addEventListener("unload", flushAccessLog);
  }
  logPending.push(line);
  logPendingChars += line.length + 1;
  if (logPendingChars >= LOG_BATCH_CHARS) flushAccessLog();
  else if (!logScheduled) {
    logScheduled = true;
    setTimeout(flushAccessLog, 0);
  }
}

/**
 * Writes every queued access-log line to stdout, in order, each whole. Runs
 * on its own after each turn of the event loop and on "unload" (Deno.exit);
 * main() and a Worker also call it before their own lines and before they
 * stop, so no line is lost or out of place.
 */
function flushAccessLog(): void {
  logScheduled = false;
  if (logPending.length === 0) return;
  const bytes = encoder.encode(logPending.join("\n") + "\n");
  logPending = [];
  logPendingChars = 0;
  try {
    // Like any write, one writeSync may take only part of the bytes.
    let written = 0;
    while (written < bytes.length) {
      written += Deno.stdout.writeSync(bytes.subarray(written));
    }
  } catch {
    // Nowhere to write to (say, piped into `head`): keep serving.
  }
}

function logRequest(
  req: Request,
  response: Response,
  client: string | null,
  started: number,
  combined = "",
): void {
  const { pathname, search } = splitUrl(req.url);
  // Reading `response.body` would turn a byte body into a stream (and the
  // reply into chunked encoding), so the size comes from Content-Length.
  // `Deno.serve` does not tell the protocol version: the line says HTTP/1.1.
  const method = req.method;
  const length = method === "HEAD"
    ? null
    : response.headers.get("content-length");
  writeLogLine(
    accessLogLine(
      client,
      started,
      `${method} ${pathname}${search} HTTP/1.1`,
      response.status,
      length === null ? null : Number(length),
    ) + combined,
  );
}

/** One request, as {@linkcode formatJsonAccessLog} writes it. */
export interface JsonAccessLogEntry {
  /** When the request arrived. */
  date: Date;
  /** The client's address; null when unknown (a Unix socket). */
  client: string | null;
  /** The request's method; null when none could be read. */
  method: string | null;
  /** The request target as received (`/a?b=1`); null when none could be read. */
  target: string | null;
  /** The response's status code. */
  status: number;
  /** Bytes of body sent, when known (Content-Length); else null. */
  bodyBytes: number | null;
  /** Milliseconds from the request's arrival until its answer was sent. */
  durationMs: number;
}

/**
 * One access-log line as a JSON object, for log collectors (`--log-format
 * json`): `time` (ISO 8601, UTC), `remote_addr`, `method`, `target`,
 * `status`, `bytes` and `duration_ms`, always in that order. Every character
 * that is not printable ASCII is written `\uXXXX`, including those that
 * JSON.stringify leaves as they are (DEL, C1 controls, U+2028), so a request
 * can neither end the line, forge another, nor send a terminal escape codes,
 * and a line is ASCII. The same function, with the same output, is in
 * server_tiny.ts and message_board.ts.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { formatJsonAccessLog } from "./server_files.ts";
 * assert.equal(
 *   formatJsonAccessLog({ date: new Date(0), client: "127.0.0.1", method: "GET", target: "/a", status: 200, bodyBytes: 12, durationMs: 0.25 }),
 *   '{"time":"1970-01-01T00:00:00.000Z","remote_addr":"127.0.0.1","method":"GET","target":"/a","status":200,"bytes":12,"duration_ms":0.25}',
 * );
 * ```
 */
export function formatJsonAccessLog(entry: JsonAccessLogEntry): string {
  return JSON.stringify({
    time: entry.date.toISOString(),
    remote_addr: entry.client,
    method: entry.method,
    target: entry.target,
    status: entry.status,
    bytes: entry.bodyBytes,
    duration_ms: Math.round(entry.durationMs * 1000) / 1000,
  }).replace(
    /[^\x20-\x7e]/g,
    (char) => `\\u${char.charCodeAt(0).toString(16).padStart(4, "0")}`,
  );
}

/**
 * Answers `req` with `answer` and writes its JSON access-log line once the
 * answer has been sent (`info.completed`: the whole body, as nginx's
 * `$request_time`), or at once when there is no connection to wait for.
 */
function logJsonWhenSent(
  answer: Handler,
  req: Request,
  info: Deno.ServeHandlerInfo | undefined,
  client: string | null,
  started: number,
): Response | Promise<Response> {
  const startedAt = performance.now();
  const log = (response: Response) => {
    const { pathname, search } = splitUrl(req.url);
    const method = req.method;
    const length = method === "HEAD"
      ? null
      : response.headers.get("content-length");
    // Everything but the time is read now: once the answer is sent, the
    // request's parts throw "Request closed".
    const entry = {
      date: new Date(started),
      client,
      method,
      target: pathname + search,
      status: response.status,
      bodyBytes: length === null ? null : Number(length),
    };
    const write = () =>
      writeLogLine(formatJsonAccessLog({
        ...entry,
        durationMs: performance.now() - startedAt,
      }));
    // A connection that breaks mid-way rejects it: the line is still written.
    if (info?.completed === undefined) write();
    else info.completed.then(write, write);
    return response;
  };
  const result = answer(req, info);
  return result instanceof Response ? log(result) : result.then(log);
}

// ---------------------------------------------------------------------------
// Staying up: listening again when accepting fails
// ---------------------------------------------------------------------------

/**
 * Connections the kernel queues for us while we are busy (`listen(2)`'s
 * backlog; Linux caps it at `net.core.somaxconn`, 4096 by default). Deno's
 * own default is 511; a deeper queue lets a burst wait instead of being
 * refused.
 */
export const LISTEN_BACKLOG = 1024;
/** First wait before listening again after the listener failed; it doubles... */
const RELISTEN_MIN_MS = 50;
/** ...up to this, so a request after the flood is answered within about a second. */
const RELISTEN_MAX_MS = 1000;
/** A listener that has stayed up this long ends the outage (and its back-off). */
const RELISTEN_STABLE_MS = 2000;
/** For this long after running out of descriptors, answers carry `Connection: close`. */
const PRESSURE_MS = 10_000;
/**
 * On Ctrl-C or SIGTERM, how long requests in flight get before the server
 * stops waiting for them: a client that never sends the body it announced,
 * or never reads a download, would otherwise hold the shutdown for ever.
 */
export const SHUTDOWN_GRACE_MS = 5_000;

/** What {@linkcode serveWithRestart} returns: the parts of `Deno.HttpServer` main() uses. */
export interface RestartingServer<Addr extends Deno.Addr = Deno.NetAddr> {
  /** The address of the first listener; every later one listens there too. */
  readonly addr: Addr;
  /** Resolves after {@linkcode RestartingServer.shutdown}; never rejects. */
  readonly finished: Promise<void>;
  /** Stops listening, lets requests in flight finish, closes idle connections. */
  shutdown(): Promise<void>;
}

/**
 * `Deno.serve` that no accept failure can stop. In Deno 2.9.6, when the
 * process runs out of file descriptors (idle connections pile up: Deno.serve
 * has no header-read or idle timeout), accepting fails, the listener is
 * closed and `server.finished` rejects; unhandled, that rejection ends the
 * process. Here it is caught and logged once per outage, and the failed
 * server is shut down at once: that closes its idle connections (kept
 * alive between requests, or a head that never came: a slowloris flood),
 * which gives their descriptors back, while requests in flight finish, as
 * nginx closes idle keep-alive connections when it runs out. A new listener
 * is opened on the same address after a back-off that doubles from
 * {@linkcode RELISTEN_MIN_MS} to {@linkcode RELISTEN_MAX_MS}. For
 * {@linkcode PRESSURE_MS} after a failure every response says
 * `Connection: close`, so clients with keep-alive connections hand their
 * descriptors back.
 *
 * Not so over TLS for a connection that never finishes its handshake:
 * Deno 2.9 has no handshake timeout, and neither a shutdown nor an abort
 * closes it (one that sent nothing was still open after 150 s), so 300 of
 * them hold a server under a limit of 256 descriptors out of service for
 * as long as they stay. JavaScript never sees such a connection; a server
 * open to the internet over HTTPS belongs behind a proxy that times
 * handshakes out (Caddy with deploy/Caddyfile gives one its `read_header`
 * timeout, 10 s).
 *
 * Big files the handler streams go to `Deno.serve` in reads of up to 1 MiB,
 * each freed as soon as it is sent (see {@linkcode streamFileRanges}); with
 * `Deno.serve(handler)` itself they stream through Deno's native reader.
 *
 * A start-up failure (port in use, no permission) still throws at once.
 * `shutdown()` waits at most `shutdownGraceMs` for requests in flight;
 * `finished` then resolves even if some connections are still open.
 *
 * With `path` (a Unix domain socket, as `Deno.serve` takes it) it listens
 * there instead, and again on the same path: Deno removes the socket file
 * when a listener closes. With `mode` too, each socket file it creates gets
 * that mode (`0o660`) at once, instead of the one the umask gives.
 */
export function serveWithRestart(
  options: Deno.ServeTcpOptions & Partial<Deno.TlsCertifiedKeyPem>,
  handler: Deno.ServeHandler<Deno.NetAddr>,
  log?: (line: string) => void,
  shutdownGraceMs?: number,
): RestartingServer;
/** {@linkcode serveWithRestart} on a Unix domain socket (`path`). */
export function serveWithRestart(
  options: Deno.ServeUnixOptions & { mode?: number | undefined },
  handler: Deno.ServeHandler<Deno.UnixAddr>,
  log?: (line: string) => void,
  shutdownGraceMs?: number,
): RestartingServer<Deno.UnixAddr>;
/** {@linkcode serveWithRestart} on TCP or a Unix domain socket. */
export function serveWithRestart(
  options:
    | (Deno.ServeTcpOptions & Partial<Deno.TlsCertifiedKeyPem>)
    | (Deno.ServeUnixOptions & { mode?: number | undefined }),
  handler: Deno.ServeHandler<Deno.NetAddr> | Deno.ServeHandler<Deno.UnixAddr>,
  log: (line: string) => void = (line) => console.error(line),
  shutdownGraceMs: number = SHUTDOWN_GRACE_MS,
): RestartingServer<Deno.NetAddr | Deno.UnixAddr> {
  let pressureUntil = 0;
  const ctx = handlerContexts.get(handler);
  if (ctx !== undefined) ctx.toDenoServe = true;
  // Called only with the info of its own transport's listener.
  const own = handler as Deno.ServeHandler;
  const serve: Deno.ServeHandler = (req, info) => {
    const result = own(req, info);
    const last = pressureUntil === 0 || Date.now() > pressureUntil
      ? handToServe
      : (response: Response) => handToServe(closeAfter(response));
    return result instanceof Response ? last(result) : result.then(last);
  };
  const draining = new Set<Deno.HttpServer>();
  const listen = (at: typeof options): Deno.HttpServer => {
    if (!("path" in at)) {
      return Deno.serve({ tcpBacklog: LISTEN_BACKLOG, ...at }, serve);
    }
    const { mode, ...unix } = at;
    const server = Deno.serve(unix, serve);
    try {
      if (mode !== undefined) Deno.chmodSync(at.path, mode);
    } catch (error) {
      server.shutdown();
      throw error;
    }
    return server;
  };
  let current = listen(options);
  const addr = current.addr as Deno.NetAddr | Deno.UnixAddr;
  const again = "path" in addr
    ? { ...options, onListen: () => {} }
    : { ...options, hostname: addr.hostname, port: addr.port, onListen() {} };
  const where = "path" in addr ? addr.path : `port ${addr.port}`;
  let stopping = false;
  let wake = () => {};
  const pause = (ms: number) =>
    new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, ms);
      wake = () => {
        clearTimeout(timer);
        resolve();
      };
    });

  let gaveUp = () => {};
  const graceOver = new Promise<void>((resolve) => gaveUp = resolve);
  const served = (async () => {
    let delay = RELISTEN_MIN_MS;
    let listenedAt = Date.now();
    let outage = false;
    let failures = 0;
    while (true) {
      const listener = current;
      let failure: unknown = null;
      const stable = setTimeout(() => {
        if (outage) {
          log(
            `server_files: listening again on ${where} after ${failures} failed attempt(s)`,
          );
        }
        outage = false;
        failures = 0;
        delay = RELISTEN_MIN_MS;
      }, RELISTEN_STABLE_MS);
      try {
        await listener.finished;
      } catch (error) {
        failure = error;
      }
      clearTimeout(stable);
      if (failure === null || stopping) return;
      pressureUntil = Date.now() + PRESSURE_MS;
      if (Date.now() - listenedAt >= RELISTEN_STABLE_MS) {
        outage = false;
        delay = RELISTEN_MIN_MS;
      }
      if (!outage) {
        log(
          `server_files: accepting connections failed (${
            (failure as Error)?.message ?? failure
          }); idle connections are closed, requests in flight finish; listening again (back-off up to ${RELISTEN_MAX_MS} ms)`,
        );
        outage = true;
      }
      // Its idle connections close now; its requests in flight finish.
      draining.add(listener);
      listener.shutdown().catch(() => {}).finally(() =>
        draining.delete(listener)
      );
      while (true) {
        await pause(delay);
        if (stopping) return;
        delay = Math.min(delay * 2, RELISTEN_MAX_MS);
        failures++;
        try {
          current = listen(again);
          listenedAt = Date.now();
          break;
        } catch {
          // Still no descriptor for the socket: wait longer.
        }
      }
    }
  })();

  const finished = Promise.race([served, graceOver]);
  return {
    addr,
    finished,
    async shutdown() {
      stopping = true;
      wake();
      const timer = setTimeout(() => {
        log(
          `server_files: requests still in flight ${shutdownGraceMs} ms after the shutdown began; not waiting for them`,
        );
        gaveUp();
      }, shutdownGraceMs);
      const stopped = Promise.allSettled(
        [current, ...draining].map((server) => server.shutdown()),
      ).then(() => served);
      await Promise.race([stopped, graceOver]);
      clearTimeout(timer);
    },
  };
}

/** Asks the client to close the connection after this response. */
function closeAfter(response: Response): Response {
  try {
    response.headers.set("Connection", "close");
  } catch {
    // Immutable headers (a Response.redirect): leave it as it is.
  }
  return response;
}

// ---------------------------------------------------------------------------
// Command line
// ---------------------------------------------------------------------------

/**
 * This script's version, the same in server_tiny.ts and message_board.ts:
 * the date of the deno-servers release it comes from (`--version` prints it),
 * so that a copy pasted into another project can be told apart.
 */
export const VERSION = "2026.12.2";

const USAGE =
  `Usage: deno run --allow-net=127.0.0.1 --allow-read=./static server_files.ts [options]

Serves the files of a folder over HTTP (or HTTPS), plus the demo route /suggest.

Options:
  --root DIR          folder to serve (default ./static)
  --port N            port to listen on; 0 picks a free one (default 8080)
  --hostname HOST     address to listen on (default 127.0.0.1, this machine
                      only); 0.0.0.0, every address, needs --allow-net=0.0.0.0,
                      and --allow-sys=networkInterfaces to answer to this
                      machine's addresses
  --unix PATH         listen on a Unix domain socket instead of a port, for a
                      proxy on this machine (plain HTTP; it replaces --port and
                      --hostname; the proxy's site name goes in --allowed-host).
                      Needs --allow-read=PATH --allow-write=PATH
                      --allow-net=unix:/ABSOLUTE/PATH; a socket file left by a
                      killed run is replaced, any other file refused
  --unix-mode MODE    the socket file's mode, in octal (660: the proxy's group
                      may connect; default: what the umask gives, 755 with the
                      usual 022)
  --trust-proxy [LIST]
                      the proxies in front: addresses and CIDR ranges,
                      comma-separated (alone: loopback, 127.0.0.0/8 and ::1; a
                      --unix peer always). From them the client is the rightmost
                      X-Forwarded-For hop that is none of them, for the access
                      log and the files open per client; any other peer's header
                      is ignored
  --allowed-host NAME also answer to this host name (repeatable; .example.com
                      allows its subdomains); by default only localhost,
                      127.0.0.1, [::1] and the names and addresses it listens on
                      (any other Host gets 421)
  --fallback FILE     answer HTML requests for missing paths with FILE (in the
                      root), 200: for single-page apps
  --clean-urls        /about serves about.html; /about.html redirects to /about
  --dir-listing       list folders that have no index.html
  --dotfiles          serve files and folders whose name starts with a dot
  --cors              let any origin read the files
                      (Access-Control-Allow-Origin: *, OPTIONS preflight)
  --header "N: v"     add a header to every response (repeatable)
  --no-compress       never compress (default: br, zstd or gzip for text, JS,
                      JSON, SVG...)
  --cert FILE         TLS certificate (PEM), with --key, to serve HTTPS (needs
                      --allow-read for both files)
  --key FILE          TLS private key (PEM)
  --quiet             no access log
  --log-format FMT    the access log's lines: clf (default, the Common Log
                      Format), combined (clf and the Referer and User-Agent, as
                      nginx's default) or json (one object per line: time,
                      remote_addr, method, target, status, bytes, duration_ms;
                      written once the answer is sent)
  --workers N         serve from N threads on one port, or "auto" for one per
                      core (default 1); more than 1 needs --unstable-net and
                      read permission for this script
  -V, --version       print the version and exit
  -h, --help          show this help

The spellings of std's file server work too: -p for --port, --host for
--hostname, -H for --header, -c and -k for --cert and --key, -h for --help, -V
for --version; -v (--verbose) logs, as by default; --no-dir-listing,
--no-dotfiles and --no-cors turn off what is off by default; a folder given
without a flag (server_files.ts ./public, as file_server ./public) is the
--root.
`;

/** A command line that cannot be used; `main` prints its message in one line and exits 2. */
export class CommandLineError extends Error {
  /** Always "CommandLineError". */
  override name = "CommandLineError";
}

/** What {@linkcode startServer} takes: the handler's options and where to listen. */
export interface ServerOptions extends HandlerOptions {
  /** Port to listen on; 0 picks a free one. @default 8080 */
  port?: number | undefined;
  /** Address to bind. @default "127.0.0.1" */
  hostname?: string | undefined;
  /** TLS certificate file (PEM), with `key`, to serve HTTPS. @default undefined (HTTP) */
  cert?: string | undefined;
  /** TLS private key file (PEM). @default undefined */
  key?: string | undefined;
  /** SO_REUSEPORT, so several threads can listen on one port (needs `--unstable-net`). @default false */
  reusePort?: boolean | undefined;
  /**
   * A Unix domain socket to listen on instead of `hostname` and `port`
   * (see {@linkcode claimSocketPath}). @default undefined (TCP)
   */
  unixPath?: string | undefined;
  /**
   * The Unix socket file's mode (`0o660`: the proxy's group may connect).
   * @default undefined (what the umask gives: `0o755` with the usual 022)
   */
  unixMode?: number | undefined;
  /** Called with the real address. @default prints the "Serving ..." line */
  onListen?: ((address: Deno.NetAddr | Deno.UnixAddr) => void) | undefined;
}

/** What {@linkcode parseCommandLine} found on the command line. */
export interface CommandLineOptions extends ServerOptions {
  /** --root: the folder to serve. */
  fsRoot: string;
  /** --port: 0 picks a free port. */
  port: number;
  /** --hostname: the address to listen on. */
  hostname: string;
  /** --allowed-host: more Host names to answer to. */
  allowedHosts: string[];
  /** --fallback: the page for HTML requests of missing paths. */
  fallback?: string | undefined;
  /** --clean-urls: `/about` serves `about.html`. */
  cleanUrls: boolean;
  /** --dir-listing: list folders without an index.html. */
  showDirListing: boolean;
  /** --dotfiles: serve names that start with a dot. */
  showDotfiles: boolean;
  /** --cors: any origin may read the files. */
  enableCors: boolean;
  /** --header: `"Name: value"` lines added to every answer. */
  headers: string[];
  /** Not --no-compress: send br or gzip. */
  compress: boolean;
  /** --cert: the TLS certificate file (PEM). */
  cert?: string | undefined;
  /** --key: the TLS private key file (PEM). */
  key?: string | undefined;
  /** --quiet: no access log. */
  quiet: boolean;
  /** --log-format: clf or json. */
  logFormat: "clf" | "combined" | "json";
  /** --workers: how many threads serve. */
  workers: number;
  /** --unix: the socket's path, instead of a port. */
  unixPath?: string | undefined;
  /** --unix-mode: the socket file's mode. */
  unixMode?: number | undefined;
  /** --trust-proxy: the proxies' addresses and ranges (`loopback` when given alone); false without it. */
  trustProxy: false | string[];
  /** --help: print the usage and exit. */
  help: boolean;
  /** --version: print the version and exit. */
  version: boolean;
}

const FLAGS = {
  root: { type: "string" }, // ./static, unless a folder is given without --root
  port: { type: "string", short: "p" }, // 8080, unless --unix
  hostname: { type: "string" }, // 127.0.0.1, unless --host names it (below)
  unix: { type: "string" },
  "unix-mode": { type: "string" },
  "trust-proxy": { type: "string", multiple: true, default: [] },
  "allowed-host": { type: "string", multiple: true, default: [] },
  fallback: { type: "string" },
  "clean-urls": { type: "boolean", default: false },
  "dir-listing": { type: "boolean", default: false },
  dotfiles: { type: "boolean", default: false },
  cors: { type: "boolean", default: false },
  header: { type: "string", short: "H", multiple: true, default: [] },
  "no-compress": { type: "boolean", default: false },
  cert: { type: "string", short: "c" },
  key: { type: "string", short: "k" },
  quiet: { type: "boolean", default: false },
  "log-format": { type: "string", default: "clf" },
  workers: { type: "string", default: "1" },
  help: { type: "boolean", short: "h", default: false },
  version: { type: "boolean", short: "V", default: false },
  // The spellings of `deno run jsr:@std/http/file-server`, so a command
  // written for it keeps working (its defaults differ: see the README).
  host: { type: "string" },
  verbose: { type: "boolean", short: "v", default: false },
  "no-dir-listing": { type: "boolean", default: false },
  "no-dotfiles": { type: "boolean", default: false },
  "no-cors": { type: "boolean", default: false },
} satisfies ParseArgsOptionsConfig;

/**
 * Reads the command line; throws {@linkcode CommandLineError} with a one-line
 * message for the user when it cannot be used.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { CommandLineError, parseCommandLine } from "./server_files.ts";
 * assert.equal(parseCommandLine(["--port", "0"]).port, 0);
 * assert.throws(() => parseCommandLine(["--colour"]), CommandLineError);
 * ```
 */
export function parseCommandLine(args: string[]): CommandLineOptions {
  const { values, folder } = readFlagsAndFolder(args);
  const port = parsePort(values.port ?? "8080");
  for (const name of values["allowed-host"]) {
    if (!/^\.?[A-Za-z0-9\-._~[\]:]+$/.test(name)) {
      throw new CommandLineError(
        `--allowed-host takes a host name, got ${showArg(name)}`,
      );
    }
  }
  if ((values.cert === undefined) !== (values.key === undefined)) {
    throw new CommandLineError("--cert and --key go together");
  }
  if (values.host !== undefined && values.hostname !== undefined) {
    throw new CommandLineError("--host and --hostname are one flag: give one");
  }
  if (values.verbose && values.quiet) {
    throw new CommandLineError("--verbose and --quiet contradict each other");
  }
  try {
    parseHeaderLines(values.header); // fail at start-up, not on the first request
  } catch (error) {
    throw new CommandLineError(`--header: ${(error as Error).message}`);
  }
  const workers = parseWorkerCount(values.workers);
  const logFormat = parseLogFormat(values["log-format"]);
  if (values.unix !== undefined) checkUnixFlags(values, workers);
  const unixMode = parseUnixMode(values["unix-mode"], values.unix);
  const trustProxy = parseTrustProxy(values["trust-proxy"]);
  return {
    fsRoot: values.root ?? folder ?? "./static",
    port,
    hostname: values.host ?? values.hostname ?? "127.0.0.1",
    allowedHosts: values["allowed-host"],
    fallback: values.fallback,
    cleanUrls: values["clean-urls"],
    showDirListing: values["dir-listing"] && !values["no-dir-listing"],
    showDotfiles: values.dotfiles && !values["no-dotfiles"],
    enableCors: values.cors && !values["no-cors"],
    headers: values.header,
    compress: !values["no-compress"],
    cert: values.cert,
    key: values.key,
    quiet: values.quiet,
    logFormat,
    workers,
    unixPath: values.unix,
    unixMode,
    trustProxy,
    help: values.help,
    version: values.version,
  };
}

/** Reads `--log-format`: clf, combined or json. The same check is in server_tiny.ts and message_board.ts. */
function parseLogFormat(value: string): "clf" | "combined" | "json" {
  if (value === "clf" || value === "combined" || value === "json") return value;
  throw new CommandLineError(
    `--log-format takes clf, combined or json, got ${showArg(value)}`,
  );
}

/**
 * The two fields nginx's `combined` format adds to the Common Log Format line
 * (`--log-format combined`): ` "referer" "user-agent"`, each escaped as the
 * request line is, `-` for a header not sent. The same function is in the
 * other two scripts.
 */
function combinedFields(referer: string | null, userAgent: string | null) {
  const field = (value: string | null) =>
    value === null ? "-" : escapeForLog(value);
  return ` "${field(referer)}" "${field(userAgent)}"`;
}

/**
 * `--trust-proxy` given without a list (last, or before another flag or a
 * word that is no list of addresses, such as a folder) means a proxy on this
 * machine: `--trust-proxy=loopback`. A list has a `.` or `:` and only the
 * characters of addresses and ranges, or says loopback: `--trust-proxy
 * ./public` trusts loopback and serves ./public, while a mistyped
 * `--trust-proxy 10.0.0.0/33` is refused as a list. Words after `--` are left
 * alone. The same function is in message_board.ts.
 */
function withBareTrustProxy(args: string[]): string[] {
  const end = args.indexOf("--");
  const isList = (word: string | undefined) =>
    word !== undefined &&
    (/^(?=.*[.:])[0-9a-fA-F.:,/[\]]+$/.test(word) || word.includes("loopback"));
  return args.map((arg, i) =>
    arg === "--trust-proxy" && (end === -1 || i < end) && !isList(args[i + 1])
      ? "--trust-proxy=loopback"
      : arg
  );
}

/**
 * Reads the `--trust-proxy` lists (`10.0.0.1,10.0.0.2`, each time the flag is
 * given): false when it was not given. The same check is in message_board.ts.
 */
function parseTrustProxy(lists: string[]): false | string[] {
  if (lists.length === 0) return false;
  const entries = lists.flatMap((list) => list.split(",")).map((entry) =>
    entry.trim()
  );
  const bad = entries.find((entry) => {
    try {
      trustedProxies([entry]);
      return false;
    } catch {
      return true;
    }
  });
  if (bad !== undefined) {
    throw new CommandLineError(
      `--trust-proxy takes addresses and CIDR ranges (127.0.0.1,10.0.0.0/8) or loopback, got ${
        showArg(bad)
      }`,
    );
  }
  return entries;
}

/**
 * Reads `--unix-mode`: an octal file mode (`660`, `0660` or `0o660`) for the
 * socket, only with `--unix`. The same check is in message_board.ts.
 */
function parseUnixMode(
  value: string | undefined,
  unix: string | undefined,
): number | undefined {
  if (value === undefined) return undefined;
  if (unix === undefined) {
    throw new CommandLineError("--unix-mode goes with --unix PATH");
  }
  const digits = /^(?:0o?)?([0-7]{3})$/.exec(value)?.[1];
  if (digits === undefined) {
    throw new CommandLineError(
      `--unix-mode takes an octal file mode such as 660, got ${showArg(value)}`,
    );
  }
  return parseInt(digits, 8);
}

/** Refuses what cannot go with `--unix`: another place to listen, TLS, Workers. */
function checkUnixFlags(
  values: {
    unix?: string;
    port?: string;
    hostname?: string;
    host?: string;
    cert?: string;
  },
  workers: number,
): void {
  if (values.unix === "") throw new CommandLineError("--unix needs a path");
  const other = values.port !== undefined
    ? "--port"
    : values.hostname !== undefined || values.host !== undefined
    ? "--hostname"
    : null;
  if (other !== null) {
    throw new CommandLineError(
      `--unix and ${other} are two places to listen: give one`,
    );
  }
  if (values.cert !== undefined) {
    // Deno.serve has TLS on TCP only; the proxy in front speaks TLS.
    throw new CommandLineError("--cert and --key are for TCP, not --unix");
  }
  if (workers > 1) {
    // SO_REUSEPORT, which lets Workers share a port, is for TCP only.
    throw new CommandLineError("--workers above 1 is for TCP, not --unix");
  }
}

/**
 * `parseArgs`'s values, with each mistake thrown as a {@linkcode CommandLineError}
 * in one line of our own (its own messages can run over several lines), and
 * the one word without a flag that std's file server takes as the folder to
 * serve (`file_server ./public`), so a command written for it keeps working.
 * A second word, or a word beside `--root`, is a mistake: a typo must not
 * choose the folder (and a folder that is not there stops the start anyway).
 */
function readFlagsAndFolder(given: string[]) {
  const args = withBareTrustProxy(withShortEquals(given));
  let parsed;
  try {
    parsed = parseArgs({
      args,
      options: FLAGS,
      strict: true,
      allowPositionals: true,
    });
  } catch {
    throw new CommandLineError(describeFlagMistake(args, FLAGS));
  }
  const { values, positionals } = parsed;
  const extra = values.root === undefined ? positionals[1] : positionals[0];
  if (extra !== undefined) {
    throw new CommandLineError(
      `unexpected argument ${showArg(extra)} (${
        values.root === undefined
          ? "flags start with --"
          : "--root already names the folder"
      })`,
    );
  }
  return { values, folder: positionals[0] };
}

/**
 * Rewrites `-H=Name: value` (std's file server reads it as `-H Name: value`,
 * and its own tests write it so) to `--header=Name: value`: node's parseArgs
 * would keep the `=` in the value. Words after `--` are left alone. So
 * `["-p=8000", "-H=X-A: b"]` becomes `["--port=8000", "--header=X-A: b"]`.
 */
function withShortEquals(args: string[]): string[] {
  const end = args.indexOf("--");
  return args.map((arg, i) => {
    const short = /^-([A-Za-z])=/.exec(arg);
    if (short === null || (end !== -1 && i > end)) return arg;
    const name = Object.entries(FLAGS).find(([, spec]) =>
      "short" in spec && spec.short === short[1]
    )?.[0];
    return name === undefined ? arg : `--${name}=${arg.slice(3)}`;
  });
}

/** The first mistake in `args`: an unknown flag, a missing or unwanted value, a second word. */
function describeFlagMistake(
  args: string[],
  flags: ParseArgsOptionsConfig,
): string {
  const { tokens } = parseArgs({
    args,
    options: flags,
    strict: false,
    allowPositionals: true,
    tokens: true,
  });
  let words = 0;
  for (const token of tokens) {
    if (token.kind === "positional" && words++ > 0) {
      return `unexpected argument ${
        showArg(token.value)
      } (flags start with --)`;
    }
    if (token.kind !== "option") continue;
    const flag = showArg(token.rawName);
    const spec = Object.hasOwn(flags, token.name) ? flags[token.name]! : null;
    if (spec === null) return `unknown flag ${flag}`;
    if (spec.type === "boolean" && token.value !== undefined) {
      return `${flag} takes no value`;
    }
    if (spec.type === "string" && token.value === undefined) {
      return `${flag} needs a value`;
    }
    if (
      spec.type === "string" && !token.inlineValue && token.value?.[0] === "-"
    ) {
      return `${flag} needs a value (write ${flag}=${
        showArg(token.value)
      } for one that starts with -)`;
    }
  }
  return "the command line cannot be read";
}

/**
 * Reads `--port`: a whole number from 0 (any free port) to 65535. The same
 * check, with the same message, is in server_tiny.ts and message_board.ts.
 */
function parsePort(value: string): number {
  const port = Number(value);
  if (!/^\d{1,5}$/.test(value) || port > 65535) {
    throw new CommandLineError(
      `--port must be a number from 0 to 65535, got ${showArg(value)}`,
    );
  }
  return port;
}

/** A word from the command line for a message: as it is when plain, else quoted and escaped. */
function showArg(text: string): string {
  return /^[\x21\x23-\x5b\x5d-\x7e]+$/.test(text)
    ? text
    : `"${escapeForLog(text)}"`;
}

/**
 * Builds the handler and starts `Deno.serve` (listening again when accepting
 * fails); prints the real address. Rejects (NotFound for a missing root,
 * AddrInUse, NotCapable) when it cannot start.
 */
export function startServer(
  options: ServerOptions & { unixPath: string },
): Promise<RestartingServer<Deno.UnixAddr>>;
/** {@linkcode startServer} on TCP: `addr` has the real port. */
export function startServer(
  options?: ServerOptions & { unixPath?: undefined },
): Promise<RestartingServer>;
/** {@linkcode startServer} on TCP, or on a Unix socket with `unixPath`. */
export function startServer(
  options?: ServerOptions,
): Promise<RestartingServer<Deno.NetAddr | Deno.UnixAddr>>;
export async function startServer(
  options: ServerOptions = {},
): Promise<RestartingServer<Deno.NetAddr | Deno.UnixAddr>> {
  const { hostname = "127.0.0.1", port = 8080, cert, key, unixPath } = options;
  const handler = createHandler({
    ...options,
    allowedHosts: [
      ...(options.allowedHosts ?? []),
      ...(unixPath === undefined ? listeningHostNames(hostname) : []),
    ],
  });
  const onListen = options.onListen ??
    ((address: Deno.NetAddr | Deno.UnixAddr) =>
      console.log(servingLine(options, address)));
  if (unixPath !== undefined) {
    if (await claimSocketPath(unixPath)) {
      console.error(
        `server_files: removed ${unixPath}, a socket file no server accepted on (left by a run that was killed)`,
      );
    }
    return serveWithRestart(
      { path: unixPath, mode: options.unixMode, onListen },
      handler,
    );
  }
  const tls = cert !== undefined && key !== undefined
    ? { cert: await Deno.readTextFile(cert), key: await Deno.readTextFile(key) }
    : {};
  return serveWithRestart({
    hostname,
    port,
    ...tls,
    reusePort: options.reusePort ?? false,
    onListen,
  }, handler);
}

/**
 * Makes `path` ready for a Unix socket listener. Listening fails (AddrInUse)
 * on a path where any file is, and a server that was killed leaves its
 * socket file behind (Deno removes it when the server stops). So a socket
 * file on which nothing accepts a connection is removed; a socket a server
 * still accepts on is left alone (AddrInUse), and so is anything that is not
 * a socket (AlreadyExists): a typo in --unix must never delete a file.
 * Returns whether a stale socket file was removed.
 */
async function claimSocketPath(path: string): Promise<boolean> {
  try {
    if (!(await Deno.lstat(path)).isSocket) {
      throw new Deno.errors.AlreadyExists(`${path} exists and is not a socket`);
    }
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return false;
    throw error;
  }
  try {
    (await Deno.connect({ transport: "unix", path })).close();
  } catch (error) {
    if (!(error instanceof Deno.errors.ConnectionRefused)) throw error;
    await Deno.remove(path); // no one listens: a killed run's
    return true;
  }
  throw new Deno.errors.AddrInUse(`a server accepts connections on ${path}`);
}

/** This machine's first IPv4 address that is not loopback, or null (std's `getNetworkAddress`). */
function networkAddress(): string | null {
  const found = Deno.networkInterfaces().find(({ family, address }) =>
    family === "IPv4" && !address.startsWith("127.")
  );
  return found?.address ?? null;
}

/** `Serving ./static on http://127.0.0.1:8080/`, the line tests and people look for. */
function servingLine(
  options: ServerOptions,
  address: Deno.NetAddr | Deno.UnixAddr,
  workers = 1,
): string {
  if ("path" in address) {
    return `Serving ${options.fsRoot ?? "."} on unix:${address.path}`;
  }
  const { hostname, port } = address;
  const scheme = options.cert ? "https" : "http";
  const host = hostname.includes(":") ? `[${hostname}]` : hostname;
  const line =
    `Serving ${options.fsRoot ?? "."} on ${scheme}://${host}:${port}/` +
    (workers > 1 ? ` with ${workers} workers` : "");
  if (!isEveryAddress(hostname)) return line;
  const sys = { name: "sys", kind: "networkInterfaces" } as const;
  if (Deno.permissions.querySync(sys).state === "granted") {
    // As std's file server prints "- Network:": the address to open on a
    // phone or another machine (0.0.0.0 itself is no address to visit).
    const address = networkAddress();
    return address === null
      ? line
      : `${line}\nOn your network: ${scheme}://${address}:${port}/`;
  }
  // As server_tiny.ts and message_board.ts say: else the 421s come as a surprise.
  return `${line}\nNote: without --allow-sys=networkInterfaces this server answers only to ` +
    "localhost and --allowed-host names, not to this machine's addresses.";
}

// ---------------------------------------------------------------------------
// All cores: the same module in several Workers, all listening on one port
// ---------------------------------------------------------------------------
//
// Deno 2.9 runs JavaScript on one thread per isolate. `deno serve --parallel`
// would use every core, but only for a module with `export default { fetch }`,
// and that export makes a plain `deno run` print "Detected export default
// { fetch }, did you mean to run deno serve?" (the runtime cannot tell a
// script which command started it: denoland/deno#29447). So `--workers N`
// starts N Workers of this very file instead; each runs the usual server
// with `reusePort` (SO_REUSEPORT), and the kernel spreads new connections
// over them. The main thread only starts, watches and stops them. Each
// Worker has its own small-file cache.

/** The most Workers `--workers` starts; more threads than cores only cost memory. */
export const MAX_WORKERS = 64;

/** How long a crashed Worker waits before it is started again. */
const WORKER_RESTART_MS = 1000;

/**
 * Reads `--workers`: a whole number from 1 to {@linkcode MAX_WORKERS}, or
 * `auto` for one per core (`navigator.hardwareConcurrency`).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { parseWorkerCount } from "./server_files.ts";
 * assert.equal(parseWorkerCount("4"), 4);
 * ```
 */
export function parseWorkerCount(value: string): number {
  if (value === "auto") {
    return Math.min(MAX_WORKERS, Math.max(1, navigator.hardwareConcurrency));
  }
  const count = Number(value);
  if (!/^\d+$/.test(value) || count < 1 || count > MAX_WORKERS) {
    throw new CommandLineError(
      `--workers must be a number from 1 to ${MAX_WORKERS} or auto, got ${
        showArg(value)
      }`,
    );
  }
  return count;
}

/** Messages between the main thread and a server Worker. */
type ToWorker =
  | { type: "start"; flags: CommandLineOptions }
  | { type: "shutdown" };
type FromWorker =
  | { type: "listening"; address: Deno.NetAddr }
  | { type: "failed"; message: string }
  | { type: "stopped" };

/** True inside a Worker, where `import.meta.main` is true for its own module as well. */
function isWorkerThread(): boolean {
  return "WorkerGlobalScope" in globalThis;
}

/**
 * The Worker's side: start the server the main thread describes (same
 * flags, `reusePort`, no "Serving" line of its own), report its address,
 * and stop it gracefully when told.
 */
function runServerWorker(): void {
  const scope = globalThis as unknown as {
    onmessage: ((event: MessageEvent<ToWorker>) => void) | null;
    postMessage(message: FromWorker): void;
    close(): void;
  };
  let server: RestartingServer<Deno.Addr> | null = null;
  scope.onmessage = async ({ data }) => {
    if (data.type === "shutdown") {
      if (server === null) scope.close();
      else await server.shutdown();
      return;
    }
    try {
      server = await startServer({
        ...data.flags,
        reusePort: true,
        // Workers listen on TCP only (parseCommandLine refuses them with --unix).
        onListen: (address) =>
          scope.postMessage({
            type: "listening",
            address: address as Deno.NetAddr,
          }),
      });
    } catch (error) {
      scope.postMessage({ type: "failed", message: (error as Error).message });
      return;
    }
    try {
      await server.finished;
      // close() drops pending timers: write the queued log lines first.
      flushAccessLog();
      scope.postMessage({ type: "stopped" });
    } catch (error) {
      // The listener failed (out of descriptors, say): the main thread starts
      // another Worker in this one's place.
      scope.postMessage({ type: "failed", message: (error as Error).message });
    }
    flushAccessLog();
    scope.close();
  };
}

/**
 * The main thread's side of `--workers N`: start the first Worker (on port
 * 0 it picks the port), then the others on the same port; print one
 * "Serving" line; restart a Worker that crashes; on Ctrl-C or SIGTERM ask
 * each to shut down gracefully and exit when all have.
 */
async function serveOnWorkers(
  flags: CommandLineOptions,
): Promise<void> {
  // Without the flag, Deno.serve's reusePort exits the process with a
  // message about Deno.listen, and without read access to this file each
  // Worker dies loading it: say what to do instead. (`Deno.listenDatagram`
  // exists only under --unstable-net.)
  const script = new URL(import.meta.url);
  const readable = script.protocol !== "file:" ||
    Deno.permissions.querySync({ name: "read", path: script }).state ===
      "granted";
  const missing = [
    ...("listenDatagram" in Deno ? [] : [
      `--unstable-net (SO_REUSEPORT is unstable in Deno ${Deno.version.deno})`,
    ]),
    ...(readable ? [] : [
      `read permission for ${script.pathname} (Workers load it from disk)`,
    ]),
  ];
  if (missing.length > 0) {
    console.error(
      `server_files: --workers ${flags.workers} needs ${missing.join(" and ")}`,
    );
    Deno.exit(2);
  }
  const running = new Set<Worker>();
  let stopping = false;
  let finished: () => void = () => {};
  const allStopped = new Promise<void>((resolve) => (finished = resolve));

  // The port the Workers share: the real one once the first listens (on
  // port 0 it picks one), so later Workers and replacements join it.
  let port = flags.port;

  /** Starts one Worker; resolves with its address once it listens. */
  const startWorker = (): Promise<Deno.NetAddr> =>
    new Promise((resolve, reject) => {
      const worker = new Worker(import.meta.url, {
        type: "module",
        name: `server_files worker ${running.size + 1}`,
      });
      running.add(worker);
      let listening = false;
      const gone = () => {
        worker.terminate();
        running.delete(worker);
        if (stopping && running.size === 0) finished();
      };
      const failed = (message: string) => {
        gone();
        if (!listening) return reject(new Error(message));
        console.error(`server_files: a worker failed: ${message}`);
        restartWorker();
      };
      worker.onmessage = ({ data }: MessageEvent<FromWorker>) => {
        if (data.type === "listening") {
          listening = true;
          resolve(data.address);
        } else if (data.type === "failed") failed(data.message);
        else gone();
      };
      worker.onerror = (event) => {
        // An uncaught error in a Worker would otherwise end the process.
        event.preventDefault();
        failed(event.message);
      };
      const start: ToWorker = { type: "start", flags: { ...flags, port } };
      worker.postMessage(start);
    });

  /** Starts a Worker in place of one that failed, trying again until one listens. */
  const restartWorker = () => {
    setTimeout(() => {
      if (stopping) return;
      startWorker().catch((error) => {
        console.error(`server_files: restarting a worker: ${error.message}`);
        restartWorker();
      });
    }, WORKER_RESTART_MS);
  };

  let address: Deno.NetAddr;
  try {
    address = await startWorker();
    port = address.port;
    await Promise.all(
      Array.from({ length: flags.workers - 1 }, () => startWorker()),
    );
  } catch (error) {
    const hint = /in use/i.test((error as Error).message)
      ? " (--port 0 picks a free port)"
      : "";
    console.error(
      `server_files: cannot start: ${(error as Error).message}${hint}`,
    );
    for (const worker of running) worker.terminate();
    Deno.exit(1);
  }
  console.log(servingLine(flags, address, flags.workers));

  const shutdown = () => {
    console.log("Shutting down...");
    Deno.removeSignalListener("SIGINT", shutdown);
    Deno.removeSignalListener("SIGTERM", shutdown);
    stopping = true;
    if (running.size === 0) finished();
    for (const worker of running) {
      worker.postMessage({ type: "shutdown" } satisfies ToWorker);
    }
  };
  Deno.addSignalListener("SIGINT", shutdown);
  Deno.addSignalListener("SIGTERM", shutdown);
  await allStopped;
  console.log("Server stopped.");
}

/** Why the folder to serve cannot be served, in one line, with what to do about it. */
function explainRootFailure(error: unknown, fsRoot: string): string {
  const root = showArg(fsRoot);
  if (error instanceof Deno.errors.NotFound) {
    return `cannot start: there is no folder ${root} to serve (create it, or give --root DIR)`;
  }
  if (error instanceof Deno.errors.NotADirectory) {
    return `cannot start: ${root} is not a folder (--root takes the folder to serve)`;
  }
  if (error instanceof Deno.errors.PermissionDenied) {
    return `cannot start: this user may not read the folder ${root} (it needs read and search permission: chmod a+rX)`;
  }
  return `cannot start: ${(error as Error).message}`;
}

/** Why the server could not start, in one line, with what to do about it. */
function explainStartFailure(
  error: unknown,
  options: CommandLineOptions,
): string {
  const why = `cannot start: ${(error as Error).message}`;
  if (options.unixPath !== undefined) {
    return explainSocketFailure(error, options.unixPath) ?? why;
  }
  if (error instanceof Deno.errors.AddrInUse) {
    return `${options.hostname}:${options.port} is in use (try another --port, or --port 0)`;
  }
  if (
    error instanceof Deno.errors.NotCapable && /net access/.test(error.message)
  ) {
    // Permission scopes are literal: --allow-net=127.0.0.1 does not cover 0.0.0.0.
    const host = options.hostname.includes(":")
      ? `[${options.hostname}]`
      : options.hostname;
    return `no permission to listen on ${options.hostname}:${options.port}: run with --allow-net=${host}`;
  }
  return why;
}

/** Why listening on the Unix socket `path` failed, with what to do; null when unknown. */
function explainSocketFailure(error: unknown, path: string): string | null {
  const shown = showArg(path);
  if (error instanceof Deno.errors.AddrInUse) {
    return `${shown} is in use: a server accepts connections on it (stop it, or give another --unix PATH)`;
  }
  if (error instanceof Deno.errors.AlreadyExists) {
    return `${shown} exists and is not a socket, so it is left alone (remove it, or give another --unix PATH)`;
  }
  if (error instanceof Deno.errors.NotCapable) {
    // --allow-net=unix: takes only an absolute path.
    let absolute = path;
    try {
      absolute = resolve(path);
    } catch {
      // no read permission for the working folder: show the path as given
    }
    return `no permission for the socket ${shown}: run with --allow-read=${shown} --allow-write=${shown} --allow-net=unix:${
      showArg(absolute)
    } (--allow-read also for the folder served)`;
  }
  return null;
}

async function main(): Promise<void> {
  let flags: CommandLineOptions;
  try {
    flags = parseCommandLine(Deno.args);
  } catch (error) {
    if (!(error instanceof CommandLineError)) throw error;
    console.error(`server_files: ${error.message} (see --help)`);
    Deno.exit(2);
  }
  if (flags.help) {
    console.log(USAGE);
    return;
  }
  if (flags.version) {
    console.log(`server_files.ts ${VERSION} (Deno ${Deno.version.deno})`);
    return;
  }
  // The folder first, once: not one line from each Worker, and a NotFound
  // from starting the server is then a certificate's, not the root's.
  try {
    realRootFolder(flags.fsRoot);
  } catch (error) {
    console.error(`server_files: ${explainRootFailure(error, flags.fsRoot)}`);
    Deno.exit(1);
  }
  if (flags.workers > 1) return await serveOnWorkers(flags);
  let server: RestartingServer<Deno.Addr>;
  try {
    server = await startServer(flags);
  } catch (error) {
    // A busy port, a missing permission: say so in one line.
    console.error(`server_files: ${explainStartFailure(error, flags)}`);
    Deno.exit(1);
  }

  // Ctrl-C or SIGTERM: stop accepting, let requests in flight finish, exit.
  // The listeners go at once, so a second Ctrl-C ends the process for good.
  const shutdown = () => {
    flushAccessLog(); // the log lines so far come before this one
    console.log("Shutting down...");
    Deno.removeSignalListener("SIGINT", shutdown);
    Deno.removeSignalListener("SIGTERM", shutdown);
    server.shutdown();
  };
  Deno.addSignalListener("SIGINT", shutdown);
  Deno.addSignalListener("SIGTERM", shutdown);
  await server.finished;
  flushAccessLog(); // the lines of the requests that finished while draining
  console.log("Server stopped.");
  // Exit now: an open that met a FIFO swapped in for a file may still wait
  // for a writer (see openNativeReader), and it would keep the process alive.
  Deno.exit(0);
}

if (import.meta.main) {
  // A Worker's module is its main module too: there, wait to be told what to serve.
  if (isWorkerThread()) runServerWorker();
  else await main();
}
