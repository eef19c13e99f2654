#!/usr/bin/env -S deno run --allow-net=127.0.0.1
/**
 * The runtime's floor for server_tiny.ts: the least a Deno program must do to
 * answer HTTP/1.1 on a raw TCP socket, one connection per request.
 *
 * ```sh
 * deno run --allow-net=127.0.0.1 bench/reference/tiny_listen_loop.ts [--port 8080] [--hostname 127.0.0.1]
 * ```
 *
 * A bare `Deno.listen` loop: accept, read until the blank line that ends the
 * request head, write one fixed response, close. No parsing, no limits, no
 * timeout, no escaping, no log: nothing a real server needs beyond the socket
 * calls themselves. Connections are served concurrently, as server_tiny.ts
 * serves them. `deno task bench` measures server_tiny.ts against it (speed
 * and peak memory); it is a yardstick, not a server to copy.
 *
 * @module
 */

import { parseArgs } from "node:util";

/** A page about the size of server_tiny.ts's (which echoes the request's headers). */
const BODY = new TextEncoder().encode(
  `<!doctype html>\n<html lang="en">\n<meta charset="utf-8">\n<title>floor</title>\n<p>${
    "The runtime's floor: a fixed answer written on the socket. ".repeat(12)
  }</p>\n</html>\n`,
);
const RESPONSE = new Uint8Array([
  ...new TextEncoder().encode(
    "HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\n" +
      `Content-Length: ${BODY.length}\r\nConnection: close\r\n\r\n`,
  ),
  ...BODY,
]);
const HEAD_END = [13, 10, 13, 10];

/** True when `bytes[0, length)` contains CRLF CRLF. */
function hasHeadEnd(bytes: Uint8Array, length: number): boolean {
  for (let i = 3; i < length; i++) {
    if (
      bytes[i] === HEAD_END[3] && bytes[i - 1] === HEAD_END[2] &&
      bytes[i - 2] === HEAD_END[1] && bytes[i - 3] === HEAD_END[0]
    ) return true;
  }
  return false;
}

async function answer(conn: Deno.Conn): Promise<void> {
  const buffer = new Uint8Array(8192);
  let length = 0;
  try {
    while (!hasHeadEnd(buffer, length) && length < buffer.length) {
      const read = await conn.read(buffer.subarray(length));
      if (read === null) return;
      length += read;
    }
    for (let written = 0; written < RESPONSE.length;) {
      written += await conn.write(RESPONSE.subarray(written));
    }
  } catch {
    // The client went away: nothing to answer.
  } finally {
    try {
      conn.close();
    } catch {
      // Already closed.
    }
  }
}

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      port: { type: "string", default: "8080" },
      hostname: { type: "string", default: "127.0.0.1" },
    },
  });
  const listener = Deno.listen({
    hostname: values.hostname,
    port: Number(values.port),
  });
  console.log(`Listening on http://${values.hostname}:${values.port}/`);
  for await (const conn of listener) answer(conn);
}
