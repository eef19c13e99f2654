#!/usr/bin/env -S deno run --allow-net=127.0.0.1 --allow-read
/**
 * The runtime's floor for one big download: a `Deno.serve` that streams a
 * file's bytes from memory, with no file reads while it answers.
 *
 * ```sh
 * deno run --allow-net=127.0.0.1 --allow-read=./site bench/reference/files_big_floor.ts --root ./site [--port 8080] [--hostname 127.0.0.1]
 * ```
 *
 * At start it reads every file at the top of `--root` into memory. A GET of
 * `/NAME` answers 200 with Content-Length and the bytes as a stream of
 * views of that memory ({@link VIEW_BYTES} each: no copy, no new buffer);
 * anything else is 404. Measured in Deno 2.9.6 (100 MiB to curl, server CPU
 * per download): views of 64 KiB 44 ms, 1 MiB 32 ms, 16 MiB 28 ms; one
 * `Uint8Array` body 115 ms (hyper copies all of it into its write buffer
 * first: 25,600 page faults). However big a chunk, `Deno.serve` sends it in
 * 64 KiB writes: its body reader takes at most 64 KiB at a time
 * (ResourceBodyAdapter in ext/http/response_body.rs reads with a limit of
 * 64 KiB; ReadableStreamResource in ext/web/stream_resource.rs splits a
 * bigger chunk to that limit). So this is the least `Deno.serve` costs for
 * a big body; a file server adds its reads. Measured again: views of 1 MiB
 * ran 0.97x as fast as 16 MiB (24 rounds, real-time priority); on a loaded
 * machine, against 28-29 ms of CPU for 16 MiB views, one view of the whole
 * file 31 ms, a `Uint8Array` body 148 ms, a `Blob` body 158 ms and
 * `FsFile.readable` 83 ms (64 KiB reads, each on a file thread). A
 * `type: "bytes"` stream detaches the buffer of each chunk it is given, so
 * it cannot stream views of one buffer, and node:fs `openAsBlob` reads the
 * whole file into memory (RSS +200 MB for 100 MiB). `deno task bench`
 * measures server_files.ts against it. Its memory holds the files: it is a
 * yardstick, not a server to copy.
 *
 * @module
 */

import { parseArgs } from "node:util";

/** Each chunk handed to `Deno.serve`: a view of the file in memory. */
const VIEW_BYTES = 16 * 1024 * 1024;

async function loadFiles(root: string): Promise<Map<string, Uint8Array>> {
  const files = new Map<string, Uint8Array>();
  for await (const entry of Deno.readDir(root)) {
    if (entry.isFile) {
      files.set(`/${entry.name}`, await Deno.readFile(`${root}/${entry.name}`));
    }
  }
  return files;
}

/** The bytes as a stream of views, each made when `Deno.serve` asks for it. */
function streamViews(bytes: Uint8Array): ReadableStream<Uint8Array> {
  let position = 0;
  return new ReadableStream<Uint8Array>({
    pull(controller) {
      const end = Math.min(position + VIEW_BYTES, bytes.length);
      controller.enqueue(bytes.subarray(position, end));
      position = end;
      if (position === bytes.length) controller.close();
    },
  }, { highWaterMark: 0 });
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
  const files = await loadFiles(values.root);
  const { port, hostname } = values;
  Deno.serve({ port: Number(port), hostname }, (request) => {
    const bytes = files.get(new URL(request.url).pathname);
    if (request.method !== "GET" || bytes === undefined) {
      return new Response("Not Found\n", { status: 404 });
    }
    const headers = {
      "content-type": "application/octet-stream",
      "content-length": String(bytes.length),
    };
    const body = bytes.length ? streamViews(bytes) : null;
    return new Response(body, { headers });
  });
}
