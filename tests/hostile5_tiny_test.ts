// server_tiny.ts against hostile clients, fifth round: each test is one
// class of attack, over real sockets from distinct loopback addresses.
import assert from "node:assert/strict";
import { closeAll, connectFrom, type RawClient, sendRaw } from "./_raw.ts";
import { startTinyServer } from "./_tiny.ts";

const delay = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Waits (bounded) until some log line matches. */
async function waitForLine(lines: string[], pattern: RegExp): Promise<void> {
  for (let tries = 0; tries < 200; tries++) {
    if (lines.some((line) => pattern.test(line))) return;
    await delay(20);
  }
  assert.fail(`no log line matching ${pattern}:\n${lines.join("\n")}`);
}

const HALF_HEAD = "GET / HTTP/1.1\r\n";
const REST_OF_HEAD = "Host: 127.0.0.1\r\n\r\n";

Deno.test("slowloris: a full server cuts the addresses holding the most, not a client elsewhere still sending its head", async (t) => {
  const floods: Record<string, (i: number) => string> = {
    "from one address": () => "127.0.0.2",
    "from ten addresses": (i) => `127.0.0.${10 + i % 10}`,
  };
  for (const [name, addressOf] of Object.entries(floods)) {
    await t.step(name, async () => {
      const { server, port, lines } = startTinyServer({
        maxConnections: 40,
        headTimeoutMs: 60_000,
      });
      const clients: RawClient[] = [];
      try {
        // A client elsewhere sends half its head, then the flood comes.
        const victim = await connectFrom(port, "127.0.0.3", HALF_HEAD);
        clients.push(victim);
        await delay(50);
        for (let i = 0; i < 60; i++) {
          clients.push(await connectFrom(port, addressOf(i), HALF_HEAD));
        }
        await waitForLine(lines, /connections open, the most there may be/);
        // Each flood connection past the 40th made room by closing one of
        // the flood's with a 408: 21 of them (60 + 1 - 40).
        await delay(200);
        const flood = clients.slice(1);
        const cut = flood.filter((client) =>
          client.received().startsWith("HTTP/1.1 408 ")
        );
        assert.ok(cut.length >= 20, `${cut.length} of the flood got 408`);
        // The victim's connection is still open; the rest of its head is answered.
        assert.equal(victim.received(), "");
        victim.socket.write(REST_OF_HEAD);
        await victim.closed;
        assert.match(victim.received(), /^HTTP\/1\.1 200 OK\r\n/);
        assert.match(
          lines.join("\n"),
          /the most there may be; closed \d+ waiting for a head or lingering from 127\.0\.0\./,
        );
      } finally {
        await closeAll(clients);
        await server.shutdown();
      }
    });
  }
});

Deno.test("smuggling shapes hyper refuses get 400 here too; the shapes it takes do not", async (t) => {
  // hyper (under server_files.ts and message_board.ts) answers each of the
  // refused ones 400; this server never reads content, but a proxy in front
  // may frame them otherwise, so it refuses the same.
  const head = (fields: string, version = "HTTP/1.1") =>
    `GET / ${version}\r\nHost: 127.0.0.1\r\n${fields}\r\n`;
  const cases: [name: string, request: string, status: number][] = [
    [
      "chunked twice",
      head("Transfer-Encoding: chunked, chunked\r\n") + "0\r\n\r\n",
      400,
    ],
    [
      "chunked in two fields",
      head("Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n") +
      "0\r\n\r\n",
      400,
    ],
    [
      "an empty coding first",
      head("Transfer-Encoding: ,chunked\r\n") + "0\r\n\r\n",
      400,
    ],
    [
      "an empty coding last",
      head("Transfer-Encoding: chunked,\r\n") + "0\r\n\r\n",
      400,
    ],
    [
      "Transfer-Encoding in HTTP/1.0",
      `GET / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n`,
      400,
    ],
    [
      "Content-Length past 2^64 - 1",
      head("Content-Length: 18446744073709551616\r\n") + "hello",
      400,
    ],
    ["Host with a bad %-escape", "GET / HTTP/1.1\r\nHost: %zz\r\n\r\n", 400],
    [
      "gzip, then chunked",
      head("Transfer-Encoding: gzip, chunked\r\n") + "0\r\n\r\n",
      200,
    ],
    [
      "Content-Length 2^64 - 1",
      head("Content-Length: 18446744073709551615\r\n") + "hello",
      200,
    ],
    ["Host with a good %-escape", "GET / HTTP/1.1\r\nHost: %41\r\n\r\n", 421],
  ];
  const { server, port } = startTinyServer();
  try {
    for (const [name, request, status] of cases) {
      await t.step(`${name}: ${status}`, async () => {
        const { text } = await sendRaw(port, request);
        // One response, framed by its Content-Length, then the close.
        const end = text.indexOf("\r\n\r\n");
        const length = Number(/\r\nContent-Length: (\d+)\r\n/.exec(text)![1]);
        assert.equal(text.length, end + 4 + length);
        assert.match(text, new RegExp(`^HTTP/1\\.1 ${status} `));
      });
    }
  } finally {
    await server.shutdown();
  }
});
