// What a client that sends half a request head and stalls costs server_tiny.ts,
// measured on the process: its resident memory, with many such clients at once.
import assert from "node:assert/strict";
import { MAX_HEAD_BYTES } from "../server_tiny.ts";
import { countOpenFds, readRss, startScript } from "./_process.ts";
import { connectFrom, type RawClient, readUntilClosed } from "./_raw.ts";

/** server_tiny.ts's response buffer (RESPONSE_BUFFER_BYTES there). */
const RESPONSE_BUFFER_BYTES = 16 * 1024;
/** The head timeout the server under test gets: long enough to connect them all first. */
const SHORT_HEAD_TIMEOUT_MS = 3_000;
/** Stalled clients, spread over this many loopback addresses (127.0.0.2 on). */
const STALLED = 1_000;
const ADDRESSES = 100;

const delay = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** One GET / on a new connection from 127.0.0.1; resolves with the whole answer. */
async function getPage(port: number): Promise<string> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  try {
    await conn.write(
      new TextEncoder().encode("GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"),
    );
    return await readUntilClosed(conn, 5_000);
  } finally {
    conn.close();
  }
}

/** The first half of a head: a client that sends it and waits is stalled. */
const HALF_HEAD = "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n";

Deno.test("a client that sends half a head holds its head buffer, not the response's too", async () => {
  // The script's own startServer, with a short head timeout: a wrapper in a
  // temporary folder, run as the README runs server_tiny.ts.
  const dir = await Deno.makeTempDir();
  const wrapper = `${dir}/tiny_short_timeout.ts`;
  await Deno.writeTextFile(
    wrapper,
    `import { startServer } from ${
      JSON.stringify(new URL("../server_tiny.ts", import.meta.url).href)
    };\nawait startServer({ port: 0, quiet: true, headTimeoutMs: ${SHORT_HEAD_TIMEOUT_MS} });\n`,
  );
  const child = await startScript(wrapper, ["--allow-net=127.0.0.1"]);
  const stalled: RawClient[] = [];
  try {
    // Warm up: the code compiled, the spare buffers pooled, the heap grown
    // to what serving takes.
    for (let round = 0; round < 4; round++) {
      await Promise.all(Array.from({ length: 100 }, () => getPage(child.port)));
    }
    await delay(200);
    const before = await readRss(child.pid);
    const fdsBefore = countOpenFds(child.pid);

    const startedAt = Date.now();
    for (let i = 0; i < STALLED; i += 100) {
      stalled.push(
        ...await Promise.all(
          Array.from(
            { length: 100 },
            (_, k) =>
              connectFrom(
                child.port,
                `127.0.0.${2 + (i + k) % ADDRESSES}`,
                HALF_HEAD,
              ),
          ),
        ),
      );
    }
    // Every connection accepted and its half head read before the measure.
    for (let tries = 0; tries < 100; tries++) {
      if (countOpenFds(child.pid) >= fdsBefore + STALLED) break;
      await delay(20);
    }
    await delay(200);
    const perConnection = ((await readRss(child.pid)) - before) / STALLED;
    const connectedIn = Date.now() - startedAt;
    assert.ok(
      connectedIn < SHORT_HEAD_TIMEOUT_MS - 500,
      `connecting took ${connectedIn} ms: measured too late`,
    );
    // The design: a connection waiting for its head holds the head's buffer
    // only, and the runtime's share for a socket (14 KB in all, measured).
    // Holding the response buffer as well costs the two buffers, this bound,
    // and the runtime's share on top (28 KB measured).
    const bound = MAX_HEAD_BYTES + RESPONSE_BUFFER_BYTES;
    assert.ok(
      perConnection < bound,
      `${
        Math.round(perConnection)
      } bytes per stalled connection, bound ${bound}`,
    );

    // Meanwhile a fresh client is answered.
    assert.match(await getPage(child.port), /^HTTP\/1\.1 200 OK\r\n/);

    // The stalled ones are answered 408 at the head timeout, and closed.
    for (const { connectedAt, closed, received } of stalled) {
      const closedAt = await closed;
      assert.match(received(), /^HTTP\/1\.1 408 Request Timeout\r\n/);
      const after = closedAt - connectedAt;
      assert.ok(
        after >= SHORT_HEAD_TIMEOUT_MS - 100 &&
          after < SHORT_HEAD_TIMEOUT_MS + 2_000,
        `cut ${after} ms after it connected`,
      );
    }
    // From each of the addresses, as the access log says.
    await child.waitForLine(/ 408 /);
    await delay(100);
    const clients = new Set(
      child.lines.filter((line) => / "-" 408 \d+$/.test(line)).map((line) =>
        line.split(" ")[0]
      ),
    );
    assert.equal(clients.size, ADDRESSES);
  } finally {
    for (const { socket } of stalled) socket.destroy();
    await child.stop();
    await Deno.remove(dir, { recursive: true });
  }
});
