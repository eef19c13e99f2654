#!/usr/bin/env node
/**
 * The same floor as tiny_listen_loop.ts, in Node's `net`: accept, read until
 * the blank line that ends the request head, write one fixed response, close.
 *
 *     node bench/reference/tiny_net_loop.mjs [--port 8080] [--hostname 127.0.0.1]
 *
 * It shows what another runtime's bare socket loop costs on the same machine;
 * `deno task bench` measures server_tiny.ts beside it.
 */

import net from "node:net";
import { parseArgs } from "node:util";

const BODY = Buffer.from(
  `<!doctype html>\n<html lang="en">\n<meta charset="utf-8">\n<title>floor</title>\n<p>${
    "The runtime's floor: a fixed answer written on the socket. ".repeat(12)
  }</p>\n</html>\n`,
);
const RESPONSE = Buffer.concat([
  Buffer.from(
    "HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\n" +
      `Content-Length: ${BODY.length}\r\nConnection: close\r\n\r\n`,
  ),
  BODY,
]);
const HEAD_END = Buffer.from("\r\n\r\n");

const { values } = parseArgs({
  options: {
    port: { type: "string", default: "8080" },
    hostname: { type: "string", default: "127.0.0.1" },
  },
});

const server = net.createServer((socket) => {
  let head = Buffer.alloc(0);
  socket.on("data", (chunk) => {
    head = Buffer.concat([head, chunk]);
    if (head.includes(HEAD_END) || head.length >= 8192) {
      socket.removeAllListeners("data");
      socket.end(RESPONSE);
    }
  });
  socket.on("error", () => socket.destroy());
});
server.listen(Number(values.port), values.hostname, 511, () => {
  console.log(`Listening on http://${values.hostname}:${values.port}/`);
});
