#!/usr/bin/env -S deno run --allow-net=127.0.0.1 --allow-read
/**
 * The runtime's floor for server_files.ts: a `Deno.serve` that does the least
 * a file server must do for a cached file.
 *
 * ```sh
 * deno run --allow-net=127.0.0.1 --allow-read=./site bench/reference/files_floor.ts --root ./site [--port 8080] [--hostname 127.0.0.1]
 * ```
 *
 * At start it reads every file up to {@link MAX_CACHED_BYTES} at the top of
 * `--root` into memory, with its gzip and br bodies for text types, and makes
 * each body's response once (a request gets a clone, the fastest way in Deno
 * 2.9, as server_files.ts found). For each request it reads what a file
 * server must read (the method, the path, Host, If-None-Match,
 * If-Modified-Since, If-Match, If-Unmodified-Since, Range, If-Range when
 * there is a Range, Accept-Encoding) and answers the cached bytes with a file
 * server's headers (Content-Type, ETag, Last-Modified, Accept-Ranges, Cache-Control,
 * X-Content-Type-Options, Vary, Content-Encoding), or 304 for a matching
 * ETag. It does no path safety, no range slicing (ignoring Range is allowed,
 * RFC 9110 14.2), no streaming and no logging, so it is a yardstick for
 * what `Deno.serve` itself costs, not a server to copy. `deno task bench`
 * measures server_files.ts against it.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { brotliCompressSync, constants, gzipSync } from "node:zlib";

/** Files larger than this are not cached (and answered 404): the floor is for small files. */
const MAX_CACHED_BYTES = 1024 * 1024;

const TYPES: Record<string, string> = {
  html: "text/html; charset=utf-8",
  css: "text/css; charset=utf-8",
  js: "text/javascript; charset=utf-8",
  json: "application/json",
  txt: "text/plain; charset=utf-8",
};

interface CachedFile {
  type: string;
  etag: string;
  lastModified: string;
  identity: Uint8Array<ArrayBuffer>;
  gzip?: Uint8Array<ArrayBuffer>;
  br?: Uint8Array<ArrayBuffer>;
  /** Each body's 200 response, made once; a request gets a clone (the fastest way in 2.9). */
  ok: Partial<Record<"identity" | "gzip" | "br", Response>>;
}

async function loadFiles(root: string): Promise<Map<string, CachedFile>> {
  const files = new Map<string, CachedFile>();
  for await (const entry of Deno.readDir(root)) {
    if (!entry.isFile) continue;
    const path = `${root}/${entry.name}`;
    const info = await Deno.stat(path);
    if (info.size > MAX_CACHED_BYTES) continue;
    const identity = await Deno.readFile(path);
    const extension = entry.name.split(".").pop() ?? "";
    const type = TYPES[extension] ?? "application/octet-stream";
    const mtime = info.mtime ?? new Date(0);
    const file: CachedFile = {
      type,
      etag: `"${info.size.toString(16)}-${mtime.getTime().toString(16)}"`,
      lastModified: mtime.toUTCString(),
      identity,
      ok: {},
    };
    if (extension in TYPES) {
      // Kept only when they save at least 10%, as a file server would.
      const gzip = new Uint8Array(gzipSync(identity, { level: 9 }));
      const br = new Uint8Array(brotliCompressSync(identity, {
        params: { [constants.BROTLI_PARAM_QUALITY]: 11 },
      }));
      if (gzip.length < identity.length * 0.9) file.gzip = gzip;
      if (br.length < identity.length * 0.9) file.br = br;
    }
    for (const coding of ["identity", "gzip", "br"] as const) {
      const body = file[coding];
      if (body === undefined) continue;
      const headers = fileHeaders(file);
      if (coding !== "identity") headers.push(["content-encoding", coding]);
      file.ok[coding] = respond(body, 200, headers);
    }
    files.set(`/${encodeURIComponent(entry.name)}`, file);
  }
  return files;
}

function createHandler(files: Map<string, CachedFile>) {
  return (request: Request): Response => {
    const { method, headers } = request;
    if (method !== "GET" && method !== "HEAD") {
      return new Response(null, {
        status: 405,
        headers: { allow: "GET, HEAD" },
      });
    }
    const url = request.url;
    const pathStart = url.indexOf("/", url.indexOf("//") + 2);
    const queryStart = url.indexOf("?", pathStart);
    const path = url.slice(pathStart, queryStart < 0 ? undefined : queryStart);
    // The headers a file server must look at, read as it would read them.
    const host = headers.get("host");
    const ifNoneMatch = headers.get("if-none-match");
    const ifModifiedSince = headers.get("if-modified-since");
    const ifMatch = headers.get("if-match");
    const ifUnmodifiedSince = headers.get("if-unmodified-since");
    const range = headers.get("range");
    // If-Range means nothing without Range (RFC 9110 13.1.5), so a file server
    // reads it only then.
    const ifRange = range === null ? null : headers.get("if-range");
    const acceptEncoding = headers.get("accept-encoding") ?? "";
    const file = host === null ? undefined : files.get(path);
    if (file === undefined) return new Response("Not Found", { status: 404 });
    if (ifMatch !== null && ifMatch !== "*" && ifMatch !== file.etag) {
      return respond(null, 412, fileHeaders(file));
    }
    if (
      ifNoneMatch === file.etag ||
      (ifNoneMatch === null && ifModifiedSince === file.lastModified)
    ) {
      return respond(null, 304, fileHeaders(file));
    }
    // A range is of the identity bytes; this floor sends them whole (allowed, RFC 9110 14.2).
    const wantsRange = range !== null &&
      (ifRange === null || ifRange === file.etag) &&
      ifUnmodifiedSince === null;
    const coding = wantsRange
      ? "identity"
      : file.br && acceptEncoding.includes("br")
      ? "br"
      : file.gzip && acceptEncoding.includes("gzip")
      ? "gzip"
      : "identity";
    const ok = file.ok[coding]!;
    if (method === "HEAD") {
      const head = new Response(null, ok);
      head.headers.set("content-length", String(file[coding]!.length));
      return head;
    }
    return ok.clone();
  };
}

/** The headers a file server sends with a file (without Content-Encoding). */
function fileHeaders(file: CachedFile): string[][] {
  const headers = [
    ["content-type", file.type],
    ["accept-ranges", "bytes"],
    ["x-content-type-options", "nosniff"],
    ["etag", file.etag],
    ["last-modified", file.lastModified],
    ["cache-control", "no-cache"],
  ];
  if (file.type.startsWith("text/")) headers.push(["vary", "Accept-Encoding"]);
  return headers;
}

/**
 * A Response with its headers appended one by one, the fastest way in Deno 2.9 (as
 * server_files.ts does; passing them in the constructor's init costs several times more).
 */
function respond(
  body: Uint8Array<ArrayBuffer> | null,
  status: number,
  headers: string[][],
): Response {
  const response = new Response(body, { status });
  for (const [name, value] of headers) response.headers.append(name, value);
  return response;
}

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      root: { type: "string", default: "." },
      port: { type: "string", default: "8080" },
      hostname: { type: "string", default: "127.0.0.1" },
    },
  });
  const handler = createHandler(await loadFiles(values.root));
  Deno.serve({
    hostname: values.hostname,
    port: Number(values.port),
    onListen: ({ hostname, port }) =>
      console.log(`Listening on http://${hostname}:${port}/`),
  }, handler);
}
