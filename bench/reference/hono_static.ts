#!/usr/bin/env -S deno run --allow-net=127.0.0.1 --allow-read=.
/**
 * Hono's `serveStatic` on Deno, the way its documentation sets it up: a peer
 * of server_files.ts in `deno task bench`.
 *
 * ```sh
 * cd ./site && deno run --allow-net=127.0.0.1 --allow-read=. ../bench/reference/hono_static.ts [--port 8080] [--hostname 127.0.0.1]
 * ```
 *
 * It serves the current folder (Hono's `root` is relative to it). Hono is
 * pinned to an exact version; the bench runs it from a temporary folder, so
 * nothing is written into the repository.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { Hono } from "npm:hono@4.13.19";
import { serveStatic } from "npm:hono@4.13.19/deno";

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      port: { type: "string", default: "8080" },
      hostname: { type: "string", default: "127.0.0.1" },
    },
  });
  const app = new Hono();
  app.use("/*", serveStatic({ root: "./" }));
  Deno.serve({
    hostname: values.hostname,
    port: Number(values.port),
    onListen: ({ hostname, port }) =>
      console.log(`Listening on http://${hostname}:${port}/`),
  }, app.fetch);
}
