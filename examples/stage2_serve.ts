#!/usr/bin/env -S deno run --allow-net=127.0.0.1
/**
 * examples/stage2_serve.ts: stage 2 of deno-servers, the runtime's HTTP server.
 *
 * Stage 1 (`server_tiny.ts`) read bytes from a socket and wrote bytes back.
 * Here `Deno.serve` does that part: it reads and parses each request, frames
 * each response, keeps connections alive, and calls our handler with a
 * `Request`; the handler returns a `Response`. That is the whole server.
 *
 * ```sh
 * deno run --allow-net=127.0.0.1 examples/stage2_serve.ts
 * ```
 *
 * `--port N` listens on another port than 8080 (`0` picks a free one).
 *
 * @module
 */

import { parseArgs } from "node:util";

/** Host names this server answers to; any other name is DNS rebinding (see server_tiny.ts). */
const ALLOWED_HOSTS = new Set(["localhost", "127.0.0.1", "[::1]"]);

/**
 * Maps a request to a response: a page listing what the browser sent for `/`,
 * 404 for other paths, 405 for methods other than GET and HEAD (`Deno.serve`
 * drops the body of a HEAD answer itself), 400 for a Host no URL can hold.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * const response = handler(new Request("http://localhost/"));
 * assert.equal(response.status, 200);
 * assert.equal(handler(new Request("http://localhost/x")).status, 404);
 * ```
 */
export function handler(request: Request): Response {
  // Deno.serve makes request.url from the Host header without checking it:
  // `Host: 0 localhost` gives "http://0 localhost/", which no URL can hold.
  // That is the client's mistake (400), not the server's (500).
  if (!URL.canParse(request.url)) {
    return page(400, "Bad Request", "The Host header is not a host name.");
  }
  const url = new URL(request.url);
  if (!ALLOWED_HOSTS.has(url.hostname)) {
    return page(
      421,
      "Misdirected Request",
      "This server does not answer to that name.",
    );
  }
  if (request.method !== "GET" && request.method !== "HEAD") {
    return page(405, "Method Not Allowed", "GET and HEAD only.", {
      Allow: "GET, HEAD",
    });
  }
  if (url.pathname !== "/") return page(404, "Not Found", "No page here.");
  const rows = [...request.headers]
    .map(([name, value]) =>
      `<tr><th>${escapeHtml(name)}</th><td>${escapeHtml(value)}</td></tr>`
    )
    .join("\n");
  return page(
    200,
    "Hello from Deno.serve",
    `<p>Method <code>${escapeHtml(request.method)}</code>, URL <code>${
      escapeHtml(request.url)
    }</code>.</p>\n<table>\n${rows}\n</table>`,
  );
}

function page(
  status: number,
  title: string,
  content: string,
  headers: Record<string, string> = {},
): Response {
  const html = `<!doctype html>
<html lang="en">
<meta charset="utf-8">
<title>${escapeHtml(title)}</title>
<main>
<h1>${escapeHtml(title)}</h1>
${content.startsWith("<") ? content : `<p>${escapeHtml(content)}</p>`}
</main>
</html>
`;
  return new Response(html, {
    status,
    headers: { "content-type": "text/html; charset=utf-8", ...headers },
  });
}

/** Escapes text for HTML content and quoted attributes. */
function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (char) => `&#${char.charCodeAt(0)};`);
}

/** How long {@linkcode serveForever} waits before it listens again. */
const RELISTEN_DELAY_MS = 1000;

/**
 * Serves {@linkcode handler} on 127.0.0.1:`port` until the process ends.
 *
 * `Deno.serve` 2.9 has no idle timeout, so connections that send half a
 * request and wait can use up the process's file descriptors. Accepting
 * then fails, Deno closes the listener and `server.finished` rejects; left
 * unhandled, that rejection ends the process. Here the failed server is shut
 * down instead (its idle connections close and give their descriptors back,
 * requests in flight finish) and a new one listens on the same port a second
 * later. server_files.ts does the same with a back-off (`serveWithRestart`).
 * A port that cannot be had at the start (in use, no permission) still throws.
 */
export async function serveForever(
  port: number,
  log: (line: string) => void = console.error,
): Promise<void> {
  // The first server prints Deno's "Listening on http://127.0.0.1:8080/".
  let server = Deno.serve({ hostname: "127.0.0.1", port }, handler);
  const again = {
    hostname: "127.0.0.1",
    port: server.addr.port,
    onListen() {},
  };
  while (true) {
    try {
      return await server.finished;
    } catch (error) {
      log(
        `stage2: accepting connections failed (${
          (error as Error)?.message ?? error
        }); closing idle connections, listening again`,
      );
      server.shutdown().catch(() => {});
    }
    while (true) {
      await new Promise((resolve) => setTimeout(resolve, RELISTEN_DELAY_MS));
      try {
        server = Deno.serve(again, handler);
        break;
      } catch {
        // Still no descriptor for the listening socket: wait again.
      }
    }
  }
}

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: { port: { type: "string", default: "8080" } },
  });
  // Serves until Ctrl-C.
  await serveForever(Number(values.port));
}
