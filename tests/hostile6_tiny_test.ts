// server_tiny.ts against hostile clients, sixth round: each test is one
// class of attack, over real sockets from distinct loopback addresses
// (127.0.0.x stand in for distinct clients).
import assert from "node:assert/strict";
import {
  closeAll,
  connectFrom,
  type RawClient,
  readUntilClosed,
  sendRaw,
} from "./_raw.ts";
import { startTinyServer } from "./_tiny.ts";

const delay = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Sends a whole request from `localAddress` and waits (bounded) for the close. */
async function requestFrom(
  port: number,
  localAddress: string,
  request = WHOLE_HEAD,
): Promise<string> {
  const client = await connectFrom(port, localAddress, request);
  const timer = setTimeout(() => client.socket.destroy(), 5000);
  await client.closed;
  clearTimeout(timer);
  return client.received();
}

/** Waits (bounded) until `done()` holds. */
async function waitUntil(done: () => boolean, what: string): Promise<void> {
  for (let tries = 0; tries < 250; tries++) {
    if (done()) return;
    await delay(20);
  }
  assert.fail(`timed out waiting until ${what}`);
}

const HALF_HEAD = "GET / HTTP/1.1\r\n";
const REST_OF_HEAD = "Host: 127.0.0.1\r\n\r\n";
const WHOLE_HEAD = HALF_HEAD + REST_OF_HEAD;
const got408 = (client: RawClient) =>
  client.received().startsWith("HTTP/1.1 408 ");

Deno.test("a flood from one address keeps to maxConnectionsPerClient: others are served, and a new client from that address too", async () => {
  const { server, port, lines } = startTinyServer({
    maxConnectionsPerClient: 8,
    headTimeoutMs: 60_000,
  });
  const clients: RawClient[] = [];
  try {
    // A client elsewhere sends half its head, then 40 come from one address.
    const victim = await connectFrom(port, "127.0.0.3", HALF_HEAD);
    clients.push(victim);
    const flood: RawClient[] = [];
    for (let i = 0; i < 40; i++) {
      flood.push(await connectFrom(port, "127.0.0.2", HALF_HEAD));
    }
    clients.push(...flood);
    // Each one past the eighth closed the flood's oldest: 32 got 408, the
    // 8 newest are still waiting.
    await waitUntil(
      () => flood.slice(0, 32).every(got408),
      "the 32 oldest got 408",
    );
    await delay(100);
    assert.deepEqual(
      flood.slice(32).map((client) => client.received()),
      [
        ..."12345678",
      ].map(() => ""),
    );
    assert.ok(
      lines.some((line) =>
        /^127\.0\.0\.2 holds 8 connections, the most one address may/.test(
          line,
        )
      ),
      lines.join("\n"),
    );
    // The victim's connection is still open; the rest of its head is answered.
    assert.equal(victim.received(), "");
    victim.socket.write(REST_OF_HEAD);
    await victim.closed;
    assert.match(victim.received(), /^HTTP\/1\.1 200 OK\r\n/);
    // A new client elsewhere, and one from the flooding address itself.
    assert.match(await requestFrom(port, "127.0.0.4"), /^HTTP\/1\.1 200 OK/);
    assert.match(await requestFrom(port, "127.0.0.2"), /^HTTP\/1\.1 200 OK/);
  } finally {
    await closeAll(clients);
    await server.shutdown();
  }
});

Deno.test("a flood of one idle connection per address: a full server closes the one waiting longest, and a client elsewhere is served throughout", async () => {
  const { server, port, lines } = startTinyServer({
    maxConnections: 30,
    headTimeoutMs: 60_000,
  });
  const flood: RawClient[] = [];
  let flooding = true;
  try {
    // 200 connections that send nothing, each from an address of its own
    // (127.0.0.10 to 127.0.0.209), opened while a client elsewhere asks.
    const opening = (async () => {
      for (let i = 0; i < 200 && flooding; i++) {
        flood.push(await connectFrom(port, `127.0.0.${10 + i}`, ""));
        if (i % 20 === 19) await delay(5);
      }
    })();
    const answers: string[] = [];
    while (flood.length < 40) await delay(5);
    for (let i = 0; i < 10; i++) {
      answers.push(await requestFrom(port, "127.0.0.5"));
    }
    await opening;
    for (const answer of answers) assert.match(answer, /^HTTP\/1\.1 200 OK/);
    // One closed per new connection past the 30th, the oldest first: the
    // 170 oldest got 408, the 30 newest are all still open (closing every
    // one waiting, as a full server did, left fewer).
    await waitUntil(
      () => flood.slice(0, 170).every(got408),
      "the 170 oldest got 408",
    );
    await delay(100);
    const open = flood.slice(170).filter((client) => client.received() === "");
    assert.equal(open.length, 30, "the 30 newest are still open");
    assert.ok(
      lines.some((line) =>
        /^\d+ connections open, the most there may be; closed 1 waiting for a head or lingering from 127\.0\.0\.\d+/
          .test(line)
      ),
      lines.join("\n"),
    );
  } finally {
    flooding = false;
    await closeAll(flood);
    await server.shutdown();
  }
});

Deno.test("an address whose connections are all being answered gets 429 for one more; others are served", async () => {
  // The responder holds /slow until released: no connection of 127.0.0.2
  // can make room for a third.
  let release!: () => void;
  const held = new Promise<void>((resolve) => release = resolve);
  const { server, port } = startTinyServer({
    maxConnectionsPerClient: 2,
    respond: async (request) => {
      if (request.path === "/slow") await held;
      return { status: 200, body: "ok" };
    },
  });
  const clients: RawClient[] = [];
  try {
    const slow = "GET /slow HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
    clients.push(await connectFrom(port, "127.0.0.2", slow));
    clients.push(await connectFrom(port, "127.0.0.2", slow));
    await delay(100);
    const refused = await requestFrom(port, "127.0.0.2");
    // Honest framing: Content-Length counts the body, and the close is said.
    const end = refused.indexOf("\r\n\r\n");
    const length = Number(/\r\nContent-Length: (\d+)\r\n/.exec(refused)![1]);
    assert.match(refused, /^HTTP\/1\.1 429 Too Many Requests\r\n/);
    assert.match(refused, /\r\nConnection: close\r\n/);
    assert.equal(refused.length, end + 4 + length);
    assert.match(await requestFrom(port, "127.0.0.3"), /^HTTP\/1\.1 200 OK/);
    release();
    await Promise.all(clients.map(({ closed }) => closed));
    for (const client of clients) {
      assert.match(client.received(), /^HTTP\/1\.1 200 OK/);
    }
  } finally {
    release();
    await closeAll(clients);
    await server.shutdown();
  }
});

Deno.test("request targets by form: only an http(s) absolute-form target names the host; CONNECT's authority-form is 405, never 421", async (t) => {
  const cases: [name: string, request: string, status: number][] = [
    ["origin-form", "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", 200],
    [
      "absolute-form, this host",
      "GET http://127.0.0.1/ HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
      200,
    ],
    [
      "absolute-form overrides Host",
      "GET http://evil.example/ HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
      421,
    ],
    [
      "absolute-form, other scheme",
      "GET ftp://127.0.0.1/ HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
      400,
    ],
    [
      "authority-form on GET",
      "GET 127.0.0.1:80 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
      400,
    ],
    // "example.com:443" parses as a URL of scheme "example.com" and no host:
    // it was taken for the host name "" and answered 421.
    [
      "CONNECT to a name",
      "CONNECT example.com:443 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
      405,
    ],
    [
      "CONNECT to garbage",
      "CONNECT a:b:c HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
      405,
    ],
    ["asterisk-form", "OPTIONS * HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", 405],
    ["asterisk on GET", "GET * HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", 400],
  ];
  const { server, port } = startTinyServer();
  try {
    for (const [name, request, status] of cases) {
      await t.step(`${name}: ${status}`, async () => {
        const { text } = await sendRaw(port, request);
        assert.match(text, new RegExp(`^HTTP/1\\.1 ${status} `));
        const end = text.indexOf("\r\n\r\n");
        const length = Number(/\r\nContent-Length: (\d+)\r\n/.exec(text)![1]);
        assert.equal(text.length, end + 4 + length);
      });
    }
  } finally {
    await server.shutdown();
  }
});

Deno.test("a responder that never answers does not keep a shutdown from finishing", async () => {
  // An upstream call without a time limit, say: the grace is all it gets.
  const { server, port, lines } = startTinyServer({
    respond: () => new Promise(() => {}),
    shutdownGraceMs: 200,
  });
  const client = await connectFrom(port, "127.0.0.2", WHOLE_HEAD);
  try {
    await delay(100);
    let timer: ReturnType<typeof setTimeout> | undefined;
    const stopped = await Promise.race([
      server.shutdown().then(() => "stopped"),
      new Promise((resolve) => timer = setTimeout(resolve, 3000, "hung")),
    ]);
    clearTimeout(timer);
    assert.equal(stopped, "stopped");
    await client.closed;
    assert.ok(
      lines.some((line) => /shutdown grace ended/.test(line)),
      lines.join("\n"),
    );
  } finally {
    client.socket.destroy();
  }
});

Deno.test("a head split at every boundary, or sent a byte at a time, gets the same answer as in one piece", async (t) => {
  // readRequestHead keeps state across reads (empty lines before the
  // request line, the request line's shape, a blank line straddling two
  // reads): every split must leave the answer as it is.
  const heads: [name: string, head: string, status: number][] = [
    ["a plain head", WHOLE_HEAD, 200],
    [
      "empty lines first, absolute-form, obs-text",
      "\r\n\r\nGET http://127.0.0.1/?a=1 HTTP/1.1\r\nHost: 127.0.0.1\r\nX: \xe9\r\n\r\n",
      200,
    ],
    ["a bare LF", "GET / HTTP/1.1\r\nHost: 127.0.0.1\n\r\n", 400],
    ["a TLS record", "\x16\x03\x01\x00\xf8\x01\x00\x00\xf4\x03\x03", 400],
  ];
  const { server, port } = startTinyServer();
  const answer = async (pieces: string[], pauseMs: number) => {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    conn.setNoDelay(true);
    try {
      try {
        for (const [i, piece] of pieces.entries()) {
          if (i > 0) await delay(pauseMs);
          await conn.write(Uint8Array.from(piece, (c) => c.charCodeAt(0)));
        }
      } catch (error) {
        // Refused at its first bytes, closed before the rest was written.
        if (
          !(error instanceof Deno.errors.BrokenPipe ||
            error instanceof Deno.errors.ConnectionReset)
        ) throw error;
      }
      return await readUntilClosed(conn, 5000);
    } finally {
      try {
        conn.close();
      } catch {
        // closed by readUntilClosed's timer
      }
    }
  };
  // The answer without its Date line, which may change between two.
  const undated = (text: string) => text.replace(/\r\nDate: [^\r]*/, "");
  try {
    for (const [name, head, status] of heads) {
      await t.step(name, async () => {
        const whole = await answer([head], 0);
        assert.match(whole, new RegExp(`^HTTP/1\\.1 ${status} `));
        for (let at = 1; at < head.length; at++) {
          const split = await answer([head.slice(0, at), head.slice(at)], 5);
          assert.equal(undated(split), undated(whole), `split at ${at}`);
        }
        const bytes = await answer([...head], 1);
        assert.equal(undated(bytes), undated(whole), "a byte at a time");
      });
    }
  } finally {
    await server.shutdown();
  }
});
