// The send timeout of server_files.ts's file streams (nginx's send_timeout):
// a download whose client reads nothing more for `sendTimeoutMs` is aborted
// and its file closed; a slow client that keeps reading is never cut off.
import assert from "node:assert/strict";
import { createHandler, serveWithRestart } from "../server_files.ts";
import { makeTree } from "./_files.ts";
import { countFdsOn } from "./_process.ts";

const MiB = 1024 * 1024;
const SEND_TIMEOUT_MS = 300;

/** Bytes that tell every offset apart: a chunk sent twice, late or early shows. */
function patterned(size: number): Uint8Array<ArrayBuffer> {
  const data = new Uint8Array(size);
  for (let i = 0; i < size; i++) data[i] = (i % 251) ^ (i >> 16);
  return data;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** A server on port 0 with a short send timeout, over a tree with `big.bin`. */
async function startServer(size: number, sendTimeoutMs = SEND_TIMEOUT_MS) {
  const tree = await makeTree();
  const data = patterned(size);
  await Deno.writeFile(`${tree.root}/big.bin`, data);
  const handler = createHandler({
    fsRoot: tree.root,
    quiet: true,
    sendTimeoutMs,
  });
  const server = serveWithRestart(
    { hostname: "127.0.0.1", port: 0, onListen() {} },
    handler,
  );
  return {
    data,
    path: `${tree.root}/big.bin`,
    port: server.addr.port,
    async [Symbol.asyncDispose]() {
      await server.shutdown();
      await tree[Symbol.asyncDispose]();
    },
  };
}

/** Opens a raw connection and sends `GET path`. */
async function requestRaw(port: number, path: string, extra = "") {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  await conn.write(
    new TextEncoder().encode(
      `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\n${extra}\r\n`,
    ),
  );
  return conn;
}

Deno.test("a client that stops reading a big download is cut off after the send timeout, and the file is closed", async (t) => {
  // Far more than the socket buffers hold, so the server must wait for it.
  await using server = await startServer(64 * MiB);
  for (
    const [name, extra] of [
      ["the whole file", ""],
      ["a range", "Range: bytes=10-50000000\r\n"],
      ["several ranges", "Range: bytes=0-99,1000-60000000\r\n"],
    ]
  ) {
    await t.step(name, async () => {
      const conn = await requestRaw(server.port, "/big.bin", extra);
      try {
        const first = new Uint8Array(4096);
        assert.ok(((await conn.read(first)) ?? 0) > 0);
        const open = await countFdsOn(server.path);
        assert.ok(open >= 1, "the file is not open while it is sent");
        // Then it reads nothing: after the timeout the file is closed.
        let fds = open;
        for (let i = 0; i < 100 && fds > 0; i++) {
          await sleep(50);
          fds = await countFdsOn(server.path);
        }
        assert.equal(fds, 0, `${fds} descriptors still open on the file`);
        // What the client reads now ends before the file does (Deno.serve
        // aborts the connection once it may write to it again).
        let received = 0;
        const buffer = new Uint8Array(MiB);
        try {
          for (let n; (n = await conn.read(buffer)) !== null;) received += n;
        } catch (error) {
          assert.ok(error instanceof Deno.errors.ConnectionReset, `${error}`);
        }
        assert.ok(received < 60 * MiB, `${received} bytes after the timeout`);
      } finally {
        conn.close();
      }
    });
  }
});

Deno.test("a slow client that keeps reading gets the whole file, though its download takes several send timeouts", async () => {
  // On loopback the kernel holds about 4 MB a socket and wakes the server
  // to write only once a third of that is free: the gaps between two pulls
  // are that much at the client's rate, so this timeout is longer.
  const sendTimeoutMs = 1500;
  await using server = await startServer(12 * MiB + 12_345, sendTimeoutMs);
  const conn = await requestRaw(server.port, "/big.bin");
  const received: Uint8Array[] = [];
  let total = 0;
  const started = Date.now();
  try {
    // 32 KiB every 15 ms, about 2 MB/s: the download takes several send
    // timeouts, and the file is more than the socket buffers hold.
    const buffer = new Uint8Array(32 * 1024);
    for (let n; (n = await conn.read(buffer)) !== null;) {
      received.push(buffer.slice(0, n));
      total += n;
      if (total >= server.data.length) {
        const all = new Uint8Array(total);
        let at = 0;
        for (const part of received) {
          all.set(part, at);
          at += part.length;
        }
        const text = new TextDecoder("latin1").decode(all.subarray(0, 4096));
        const bodyAt = text.indexOf("\r\n\r\n") + 4;
        if (total - bodyAt >= server.data.length) {
          assert.deepEqual(all.subarray(bodyAt), server.data);
          break;
        }
      }
      await sleep(15);
    }
  } finally {
    conn.close();
  }
  assert.ok(total > server.data.length, `only ${total} bytes arrived`);
  assert.ok(
    Date.now() - started > 3 * sendTimeoutMs,
    "the client was not slow",
  );
});
