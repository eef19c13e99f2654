// server_tiny.ts over real sockets on 127.0.0.1, port 0: in-process servers
// first, then the script itself as a subprocess with the README's flags.
import assert from "node:assert/strict";
import net from "node:net";
import {
  canRunAsRoot,
  type RunningProcess,
  runScript,
  startScript,
} from "./_process.ts";
import {
  formatResponse,
  parseRequestHead,
  respondTo,
  serveTiny,
  type TinyResponse,
  writeAll,
} from "../server_tiny.ts";
import { startTinyServer } from "./_tiny.ts";

const encode = (text: string) => new TextEncoder().encode(text);
const decode = (bytes: Uint8Array) => new TextDecoder().decode(bytes);
/** The README's permission flag for server_tiny.ts. */
const TINY_FLAGS = ["--allow-net=127.0.0.1"];
const delay = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

function connect(port: number): Promise<Deno.TcpConn> {
  return Deno.connect({ hostname: "127.0.0.1", port });
}

/** Reads until the server closes the connection. */
async function readToEnd(conn: Deno.Conn): Promise<Uint8Array> {
  const chunks: Uint8Array<ArrayBuffer>[] = [];
  const buffer = new Uint8Array(16 * 1024);
  for (;;) {
    const count = await conn.read(buffer);
    if (count === null) break;
    chunks.push(buffer.slice(0, count));
  }
  return new Uint8Array(await new Blob(chunks).arrayBuffer());
}

/**
 * Sends the chunks, pausing between them so that they arrive as separate
 * reads, and returns the whole answer.
 */
async function exchange(
  port: number,
  ...chunks: (string | Uint8Array)[]
): Promise<RawResponse> {
  const conn = await connect(port);
  try {
    conn.setNoDelay(true);
    for (const [index, chunk] of chunks.entries()) {
      if (index > 0) await delay(20);
      await writeAll(conn, typeof chunk === "string" ? encode(chunk) : chunk);
    }
    return parseResponse(await readToEnd(conn));
  } finally {
    conn.close();
  }
}

/**
 * Nobody answers on `port` any more. Right after the listener closes, a
 * connection may still be queued and then reset instead of refused.
 */
async function assertNotServed(port: number): Promise<void> {
  const refused = (error: unknown) =>
    error instanceof Deno.errors.ConnectionRefused ||
    error instanceof Deno.errors.ConnectionReset;
  let conn: Deno.Conn;
  try {
    conn = await connect(port);
  } catch (error) {
    assert.ok(refused(error), String(error));
    return;
  }
  try {
    await writeAll(conn, encode("GET / HTTP/1.0\r\n\r\n"));
    assert.equal((await readToEnd(conn)).length, 0, "a closed server answered");
  } catch (error) {
    assert.ok(refused(error), String(error));
  } finally {
    conn.close();
  }
}

interface RawResponse {
  status: number;
  statusLine: string;
  headers: Map<string, string>;
  body: Uint8Array;
}

/** Splits raw response bytes into status, header fields and body, checking the framing. */
function parseResponse(bytes: Uint8Array): RawResponse {
  const text = decode(bytes);
  const end = text.indexOf("\r\n\r\n");
  assert.ok(end > 0, `no blank line in ${JSON.stringify(text)}`);
  const [statusLine, ...fields] = text.slice(0, end).split("\r\n");
  assert.match(statusLine, /^HTTP\/1\.1 \d{3} [A-Za-z ]+$/);
  const headers = new Map<string, string>();
  for (const field of fields) {
    const colon = field.indexOf(": ");
    headers.set(field.slice(0, colon).toLowerCase(), field.slice(colon + 2));
  }
  const body = bytes.subarray(end + 4);
  return {
    status: Number(statusLine.split(" ")[1]),
    statusLine,
    headers,
    body,
  };
}

/** The fields every response must carry, with Content-Length matching the body. */
function assertWellFormed(response: RawResponse, method = "GET"): void {
  const { headers, body } = response;
  assert.match(
    headers.get("date") ?? "",
    /^[A-Z][a-z]{2}, \d\d [A-Z][a-z]{2} \d{4} \d\d:\d\d:\d\d GMT$/,
  );
  assert.equal(headers.get("content-type"), "text/html; charset=utf-8");
  assert.equal(headers.get("connection"), "close");
  if (method !== "HEAD") {
    assert.equal(Number(headers.get("content-length")), body.length);
  }
}

// ---------------------------------------------------------------------------

Deno.test("GET / with the head split over several writes gets the hello page", async () => {
  const { server, port, lines } = startTinyServer();
  try {
    const response = await exchange(
      port,
      "GE",
      "T / HTTP/1.1\r\nHo",
      "st: 127.0.0.1\r\nX-Note: <b>bold</b>\r",
      "\n\r",
      "\n",
    );
    assert.equal(response.status, 200);
    assertWellFormed(response);
    const page = decode(response.body);
    assert.match(page, /<th>Host<\/th><td>127\.0\.0\.1<\/td>/);
    assert.match(page, /<th>X-Note<\/th><td>&lt;b&gt;bold&lt;\/b&gt;<\/td>/);
    assert.match(
      lines.at(-1)!,
      /^127\.0\.0\.1 - - \[.+\] "GET \/ HTTP\/1\.1" 200 \d+$/,
    );
  } finally {
    await server.shutdown();
  }
});

Deno.test("empty lines before the request line are ignored (RFC 9112 2.2)", async () => {
  const { server, port, lines } = startTinyServer();
  try {
    const response = await exchange(
      port,
      "\r\n\r",
      "\nGET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
    );
    assert.equal(response.status, 200);
    assertWellFormed(response);
    assert.match(lines.at(-1)!, /"GET \/ HTTP\/1\.1" 200 \d+$/);
  } finally {
    await server.shutdown();
  }
});

Deno.test("bad requests get their status over a real socket", async (t) => {
  const { server, port } = startTinyServer();
  const oversize = "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Pad: " +
    "a".repeat(20_000) +
    "\r\n\r\n";
  const cases: {
    name: string;
    send: string | Uint8Array;
    status: number;
    allow?: string;
  }[] = [
    { name: "garbage", send: "garbage\r\n\r\n", status: 400 },
    {
      name: "random bytes",
      send: new Uint8Array([0, 255, 1, 254, 10, 10]),
      status: 400,
    },
    { name: "missing Host", send: "GET / HTTP/1.1\r\n\r\n", status: 400 },
    {
      name: "whitespace before colon",
      send: "GET / HTTP/1.1\r\nHost : h\r\n\r\n",
      status: 400,
    },
    { name: "bare LF", send: "GET / HTTP/1.1\nHost: h\n\n", status: 400 },
    {
      name: "HTTP/2.0",
      send: "GET / HTTP/2.0\r\nHost: 127.0.0.1\r\n\r\n",
      status: 400,
    },
    {
      name: "POST",
      send: "POST / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
      status: 405,
      allow: "GET, HEAD",
    },
    {
      name: "DELETE",
      send: "DELETE /x HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
      status: 405,
      allow: "GET, HEAD",
    },
    {
      name: "other path",
      send: "GET /favicon.ico HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
      status: 404,
    },
    { name: "oversize head", send: oversize, status: 431 },
    {
      name: "oversize request target",
      send: `GET /${"a".repeat(20_000)} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n`,
      status: 414,
    },
    {
      name: "half a head, then EOF",
      send: "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n",
      status: 400,
    },
  ];
  try {
    for (const { name, send, status, allow } of cases) {
      await t.step(name, async () => {
        const conn = await connect(port);
        try {
          await writeAll(conn, typeof send === "string" ? encode(send) : send);
          await conn.closeWrite(); // lets "half a head" end; harmless for the rest
          const response = parseResponse(await readToEnd(conn));
          assert.equal(response.status, status);
          assert.equal(response.headers.get("allow"), allow);
          assertWellFormed(response);
          // Generic bodies: no stack traces, no parser details.
          assert.doesNotMatch(decode(response.body), /Error|because|\.ts\b/);
        } finally {
          conn.close();
        }
      });
    }
    // The server is still serving.
    const after = await exchange(port, "GET / HTTP/1.0\r\n\r\n");
    assert.equal(after.status, 200);
  } finally {
    await server.shutdown();
  }
});

Deno.test("HEAD gets GET's head, Content-Length included, and no body", async () => {
  const { server, port } = startTinyServer();
  try {
    const head = "/ HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: test\r\n\r\n";
    const get = await exchange(port, "GET " + head);
    const headResponse = await exchange(port, "HEAD " + head);
    assert.equal(headResponse.status, 200);
    assertWellFormed(headResponse, "HEAD");
    assert.equal(headResponse.body.length, 0);
    assert.ok(get.body.length > 0);
    assert.equal(
      headResponse.headers.get("content-length"),
      String(get.body.length),
    );
    const missing = await exchange(
      port,
      "HEAD /nope HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
    );
    assert.equal(missing.status, 404);
    assert.equal(missing.body.length, 0);
    assert.ok(Number(missing.headers.get("content-length")) > 0);
  } finally {
    await server.shutdown();
  }
});

Deno.test("a request with a body gets its whole answer, the body drained", async (t) => {
  const { server, port } = startTinyServer();
  try {
    // The body comes after the server has answered: closing at once would
    // make the client's sending, or its reading, fail with a reset.
    const body = "x".repeat(40_000);
    await t.step("a GET whose body arrives after the answer: 200", async () => {
      const response = await exchange(
        port,
        `GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: ${body.length}\r\n\r\n`,
        body.slice(0, 20_000),
        body.slice(20_000),
      );
      assert.equal(response.status, 200);
      assertWellFormed(response);
    });
    await t.step("a POST sent with its body in one piece: 405", async () => {
      const posted = await exchange(
        port,
        `POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: ${body.length}\r\n\r\n${body}`,
      );
      assert.equal(posted.status, 405);
      assertWellFormed(posted);
    });
  } finally {
    await server.shutdown();
  }
});

Deno.test("the server lingers only when the client may still be sending", async (t) => {
  // The client keeps its side open after reading the answer. A lingering
  // server is still reading, so its shutdown waits (here up to 60 s); one that
  // closed at once has nothing left and stops promptly.
  const cases: { name: string; send: string; lingers: boolean }[] = [
    {
      name: "a GET with nothing after its head",
      send: "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
      lingers: false,
    },
    {
      name: "Content-Length: 0",
      send: "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\n\r\n",
      lingers: false,
    },
    {
      name: "a pipelined request after the head",
      send: "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\nGET / HTTP/1.1\r\n",
      lingers: true,
    },
    {
      name: "announced content not sent yet",
      send: "POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 10\r\n\r\n",
      lingers: true,
    },
    {
      name: "chunked content",
      send:
        "POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\n",
      lingers: true,
    },
    {
      name: "a head that is not understood",
      send: "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nBad Name: x\r\n\r\n",
      lingers: true,
    },
  ];
  for (const { name, send, lingers } of cases) {
    await t.step(name, async () => {
      const { server, port } = startTinyServer({
        lingerMs: 60_000,
        shutdownGraceMs: 60_000,
      });
      const conn = await connect(port);
      try {
        await writeAll(conn, encode(send));
        const response = parseResponse(await readToEnd(conn));
        assertWellFormed(response);
        let timer: ReturnType<typeof setTimeout> | undefined;
        const outcome = await Promise.race([
          server.shutdown().then(() => "stopped"),
          new Promise((resolve) => timer = setTimeout(resolve, 500, "waiting")),
        ]);
        clearTimeout(timer);
        assert.equal(outcome, lingers ? "waiting" : "stopped");
      } finally {
        conn.close(); // ends a linger: the server reads the end of the stream
        await server.shutdown();
      }
    });
  }
});

Deno.test("a connection never sees bytes left by an earlier one (buffers are reused)", async () => {
  const { server, port } = startTinyServer();
  try {
    const long = await exchange(
      port,
      `GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Secret: ${
        "s".repeat(4000)
      }\r\n\r\n`,
    );
    assert.match(decode(long.body), /X-Secret/);
    for (
      const head of [
        "GET / HTTP/1.0\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n",
      ]
    ) {
      const response = await exchange(
        port,
        head,
        head.endsWith("\n\r\n") ? "" : "\r\n",
      );
      assert.equal(response.status, 200);
      assert.doesNotMatch(decode(response.body), /X-Secret|sss/);
    }
  } finally {
    await server.shutdown();
  }
});

Deno.test("a stalled client does not delay another one", async () => {
  const { server, port } = startTinyServer({
    headTimeoutMs: 60_000,
    shutdownGraceMs: 100,
  });
  const stalled = await connect(port);
  try {
    await writeAll(stalled, encode("GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n"));
    let stalledAnswered = false;
    const stalledRead = readToEnd(stalled).then((bytes) => {
      stalledAnswered = true;
      return bytes;
    });
    const other = await exchange(
      port,
      "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
    );
    assert.equal(other.status, 200);
    assert.equal(
      stalledAnswered,
      false,
      "the stalled client was answered first",
    );
    // Shutting down closes the stalled connection once the grace period is over.
    await server.shutdown();
    assert.equal((await stalledRead).length, 0);
  } finally {
    stalled.close();
    await server.shutdown();
  }
});

Deno.test("a head that does not arrive in time gets 408, then the connection closes", async () => {
  const { server, port, lines } = startTinyServer({ headTimeoutMs: 200 });
  try {
    for (const partial of ["GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n", ""]) {
      const conn = await connect(port);
      try {
        if (partial) await writeAll(conn, encode(partial));
        // readToEnd returns only once the server has closed the connection.
        const response = parseResponse(await readToEnd(conn));
        assert.equal(response.status, 408);
        assertWellFormed(response);
      } finally {
        conn.close();
      }
    }
    assert.equal(lines.filter((line) => / "-" 408 \d+$/.test(line)).length, 2);
  } finally {
    await server.shutdown();
  }
});

// The start of a TLS 1.2/1.3 ClientHello: a handshake record (type 22,
// RFC 8446 5.1), version 3.1, length, then the hello itself. No line ends.
const CLIENT_HELLO = new Uint8Array([
  0x16,
  0x03,
  0x01,
  0x00,
  0x2f,
  0x01,
  0x00,
  0x00,
  0x2b,
  0x03,
  0x03,
  ...new Array(32).fill(0x5a),
  0x00,
  0x00,
  0x02,
  0x13,
  0x01,
  0x01,
  0x00,
]);

Deno.test("a TLS handshake on the plain port gets 400 at once, not after the head timeout", async () => {
  const { server, port, lines } = startTinyServer({
    quiet: false,
    headTimeoutMs: 60_000,
  });
  try {
    const conn = await connect(port);
    // If the server waited for the head timeout, this ends the test first.
    const giveUp = setTimeout(() => conn.close(), 5_000);
    try {
      await writeAll(conn, CLIENT_HELLO);
      const response = parseResponse(await readToEnd(conn));
      assert.equal(response.status, 400);
      assertWellFormed(response);
    } finally {
      clearTimeout(giveUp);
      conn.close();
    }
    assert.ok(
      lines.some((line) =>
        line.includes("a TLS handshake on this plain HTTP port")
      ),
      lines.join("\n"),
    );
    assert.ok(lines.some((line) => / "-" 400 \d+$/.test(line)));
  } finally {
    await server.shutdown();
  }
});

Deno.test("curl https:// to the plain port", async (t) => {
  const { server, port } = startTinyServer({ headTimeoutMs: 60_000 });
  try {
    const curl = await new Deno.Command("curl", {
      // --max-time bounds the test; exit code 28 would mean curl waited for it.
      args: ["-sS", "--max-time", "10", `https://127.0.0.1:${port}/`],
      stdout: "null",
      stderr: "piped",
    }).output();
    const why = new TextDecoder().decode(curl.stderr);
    await t.step("fails at once, not at curl's time limit", () => {
      assert.notEqual(curl.code, 0, "curl got an answer over TLS");
      assert.notEqual(
        curl.code,
        28,
        `curl waited until its time limit: ${why}`,
      );
    });
    await t.step("leaves the server serving", async () => {
      const after = await exchange(port, "GET / HTTP/1.0\r\n\r\n");
      assert.equal(after.status, 200);
    });
  } finally {
    await server.shutdown();
  }
});

Deno.test("100 clients at once all get their own answer", async () => {
  const { server, port } = startTinyServer();
  try {
    const responses = await Promise.all(
      Array.from(
        { length: 100 },
        (_, i) =>
          exchange(
            port,
            `GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Client: client-${i}\r\n\r\n`,
          ),
      ),
    );
    responses.forEach((response, i) => {
      assert.equal(response.status, 200);
      assertWellFormed(response);
      assert.match(decode(response.body), new RegExp(`<td>client-${i}</td>`));
    });
  } finally {
    await server.shutdown();
  }
});

Deno.test("clients that leave early do not stop the server", async () => {
  const { server, port } = startTinyServer();
  try {
    for (let i = 0; i < 20; i++) {
      const conn = await connect(port);
      await writeAll(
        conn,
        encode(
          i % 2 ? "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n" : "GET / HT",
        ),
      );
      conn.close();
    }
    const response = await exchange(
      port,
      "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
    );
    assert.equal(response.status, 200);
  } finally {
    await server.shutdown();
  }
});

Deno.test("connections reset before they are accepted do not stall the server", async () => {
  // accept() fails with ENOTCONN for each of them: a fault of that one
  // client, not of the server, so no pause before the next accept (100 ms
  // each before: 60 resets sent in a few ms kept everyone out for 6 s).
  // A process of its own, stopped while the resets arrive, so that they
  // wait in the kernel's queue and come before its accepts.
  const child = await spawnScript("--port", "0", "--quiet");
  try {
    Deno.kill(child.pid, "SIGSTOP");
    await Promise.all(
      Array.from({ length: 60 }, () =>
        new Promise<void>((resolve, reject) => {
          const socket = net.connect(child.port, "127.0.0.1", () => {
            socket.resetAndDestroy(); // an RST, not a FIN
            resolve();
          });
          socket.on("error", reject);
        })),
    );
    Deno.kill(child.pid, "SIGCONT");
    const started = Date.now();
    const response = await exchange(
      child.port,
      "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
    );
    const took = Date.now() - started;
    assert.equal(response.status, 200);
    assert.ok(took < 3000, `answered after ${took} ms`);
    assert.doesNotMatch(child.lines.join("\n"), /accept failed/);
  } finally {
    Deno.kill(child.pid, "SIGCONT"); // in case a step above threw
    await child.stop();
  }
});

Deno.test("a client that stops reading a big answer is cut off after sendTimeoutMs", async () => {
  // A responder may answer more than the socket buffers hold; a client that
  // never reads must not keep the connection (and its slot) for ever.
  const body = "x".repeat(32 * 1024 * 1024);
  const { server, port, lines } = startTinyServer({
    respond: () => ({ status: 200, body }),
    sendTimeoutMs: 300,
  });
  const conn = await connect(port);
  try {
    await writeAll(conn, encode("GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"));
    // Reads nothing until the server gives up on it.
    const timedOut = () =>
      lines.some((line) => /connection error: SendTimeout/.test(line));
    const giveUp = Date.now() + 5000;
    while (!timedOut() && Date.now() < giveUp) await delay(20);
    let received = 0;
    const timer = setTimeout(() => conn.close(), 5000);
    try {
      const buffer = new Uint8Array(1 << 20);
      for (
        let n = await conn.read(buffer);
        n !== null;
        n = await conn.read(buffer)
      ) {
        received += n;
      }
    } catch (error) {
      if (!(error instanceof Deno.errors.ConnectionReset)) throw error;
    } finally {
      clearTimeout(timer);
    }
    assert.ok(received < body.length, `all ${received} bytes were sent`);
    assert.ok(timedOut(), lines.join("\n"));
  } finally {
    try {
      conn.close();
    } catch {
      // closed by the timer
    }
    await server.shutdown();
  }
});

Deno.test("past maxConnections, new connections close those stuck sending longest", async () => {
  // A full server makes room for each new connection by closing the one
  // that has waited longest, the send timeout too: clients that stopped
  // reading cannot keep the last places.
  const body = "x".repeat(32 * 1024 * 1024);
  const { server, port, lines } = startTinyServer({
    respond: () => ({ status: 200, body }),
    maxConnections: 3,
  });
  const stuck = [await connect(port), await connect(port)];
  const idle: Deno.TcpConn[] = [];
  try {
    for (const conn of stuck) {
      await writeAll(conn, encode("GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"));
      // A first byte: its answer is being sent (not its head awaited).
      assert.equal(await conn.read(new Uint8Array(1)), 1);
    }
    idle.push(await connect(port)); // the third: the limit
    await delay(100);
    assert.ok(
      !lines.some((line) => /SendTimeout/.test(line)),
      "cut at the limit",
    );
    // Two more, each past the limit: both stuck ones closed by the server
    // (the send timeout is 60 s) before reading on.
    idle.push(await connect(port), await connect(port));
    const cut = () => lines.filter((line) => /SendTimeout/.test(line)).length;
    const giveUp = Date.now() + 5000;
    while (cut() < stuck.length && Date.now() < giveUp) await delay(20);
    const timer = setTimeout(() => stuck.forEach((conn) => conn.close()), 5000);
    try {
      for (const conn of stuck) {
        const received = (await readToEnd(conn)).length;
        assert.ok(received < body.length, `all ${received} bytes were sent`);
      }
    } finally {
      clearTimeout(timer);
    }
  } finally {
    for (const conn of [...stuck, ...idle]) {
      try {
        conn.close();
      } catch {
        // closed by the server's side or the timer
      }
    }
    await server.shutdown();
  }
});

Deno.test("a slow reader that keeps taking a big answer gets all of it", async () => {
  // The send timeout counts between two writes, not for the whole answer.
  // The reader takes well over the timeout in all (8 MiB at <= 512 KiB per
  // 100 ms read), while each pause stays far under it even on a loaded
  // machine (400 ms failed once with 8 test processes sharing 2 cores).
  const body = "x".repeat(8 * 1024 * 1024);
  const { server, port, lines } = startTinyServer({
    respond: () => ({ status: 200, body }),
    sendTimeoutMs: 1_500,
  });
  const conn = await connect(port);
  try {
    await writeAll(conn, encode("GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"));
    let received = 0;
    const started = Date.now();
    const buffer = new Uint8Array(512 * 1024);
    for (
      let n = await conn.read(buffer);
      n !== null;
      n = await conn.read(buffer)
    ) {
      received += n;
      await delay(100);
    }
    assert.ok(received > body.length, `only ${received} bytes`);
    // Else the answer fit in one timeout and the test proves nothing.
    assert.ok(Date.now() - started > 1_500, "read faster than the timeout");
    assert.ok(
      !lines.some((line) => /SendTimeout/.test(line)),
      lines.join("\n"),
    );
  } finally {
    conn.close();
    await server.shutdown();
  }
});

Deno.test("a log that fails (stdout gone) does not stop the server", async () => {
  const server = serveTiny({
    port: 0,
    log: () => {
      throw new Deno.errors.BrokenPipe("stdout closed");
    },
  });
  try {
    for (
      const head of [
        "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
        "garbage\r\n\r\n",
      ]
    ) {
      const response = await exchange(server.addr.port, head);
      assertWellFormed(response);
    }
  } finally {
    await server.shutdown();
  }
});

Deno.test("graceful shutdown", async (t) => {
  const { server, port } = startTinyServer({ shutdownGraceMs: 10_000 });
  const idle = await connect(port);
  const inProgress = await connect(port);
  try {
    inProgress.setNoDelay(true);
    await writeAll(inProgress, encode("GET / HTTP/1.1\r\n"));
    // A full exchange after it makes sure the server has read those bytes.
    assert.equal((await exchange(port, "GET / HTTP/1.0\r\n\r\n")).status, 200);

    const stopped = server.shutdown();
    await t.step("refuses new connections", async () => {
      await assertNotServed(port);
    });
    await t.step(
      "closes an idle connection at once, not after the grace period",
      async () => {
        assert.equal((await readToEnd(idle)).length, 0);
      },
    );
    await t.step("lets a request in progress finish", async () => {
      await writeAll(inProgress, encode("Host: 127.0.0.1\r\n\r\n"));
      const response = parseResponse(await readToEnd(inProgress));
      assert.equal(response.status, 200);
      assertWellFormed(response);
    });
    inProgress.close(); // the server waits (briefly) for the client to hang up
    await stopped;
  } finally {
    idle.close();
    try {
      inProgress.close();
    } catch {
      // Closed above.
    }
    await server.shutdown();
  }
});

Deno.test("at the end of the shutdown grace, connections still in progress are closed with one log line for all", async () => {
  const { server, port, lines } = startTinyServer({ shutdownGraceMs: 100 });
  const started = await Promise.all([connect(port), connect(port)]);
  try {
    for (const conn of started) {
      await writeAll(conn, encode("GET / HTTP/1.1\r\n"));
    }
    // A full exchange after them makes sure the server has read those bytes.
    assert.equal((await exchange(port, "GET / HTTP/1.0\r\n\r\n")).status, 200);
    await server.shutdown();
    for (const conn of started) assert.equal((await readToEnd(conn)).length, 0);
    assert.deepEqual(lines.slice(1), [
      "the shutdown grace (100 ms) is over: closing 2 connections still in progress",
    ]);
  } finally {
    for (const conn of started) conn.close();
  }
});

Deno.test("--once serves one connection and exits", async () => {
  // Two listeners on port 0 in a row could not be told apart, so let the
  // server pick a port and print it, exactly as a learner would see it.
  const child = await spawnScript("--port", "0", "--once");
  const port = child.port;
  const response = await exchange(
    port,
    "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
  );
  assert.equal(response.status, 200);
  const { code, stdout } = await finished(child);
  assert.equal(code, 0);
  assert.match(
    stdout,
    /--- request from 127\.0\.0\.1:\d+ ---\nGET \/ HTTP\/1\.1\nHost: 127\.0\.0\.1\n/,
  );
  assert.match(stdout, /"GET \/ HTTP\/1\.1" 200 \d+/);
  await assertNotServed(port);
});

for (const signal of ["SIGTERM", "SIGINT"] as const) {
  Deno.test({
    name: `${signal} stops the server with exit code 0`,
    ignore: Deno.build.os === "windows",
    async fn() {
      const child = await spawnScript("--port", "0", "--quiet");
      const port = child.port;
      const response = await exchange(
        port,
        "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
      );
      assert.equal(response.status, 200);
      // At once, while its access-log line may still wait in the batch.
      const { code, stdout } = await finished(child, signal);
      assert.equal(code, 0);
      assert.doesNotMatch(stdout, /--- request from/); // --quiet
      // In the order it happened: the request, then the signal (review R4).
      const lines = stdout.split("\n");
      const served = lines.findIndex((line) =>
        /"GET \/ HTTP\/1\.1" 200 \d+$/.test(line)
      );
      const stopping = lines.indexOf(
        "Shutting down: finishing requests in progress...",
      );
      assert.ok(served !== -1 && served < stopping, stdout);
    },
  });
}

Deno.test("a server that cannot start says why in one line, with what the user typed, and exits 1 (review R1)", async (t) => {
  const folder = await Deno.makeTempDir({ prefix: "tiny_start_" });
  try {
    await Deno.writeTextFile(`${folder}/file`, "");
    const unix = (path: string): [string[], string[]] => [
      [
        `--allow-read=${path}`,
        `--allow-write=${path}`,
        `--allow-net=unix:${path}`,
      ],
      ["--unix", path],
    ];
    const cases: [flags: string[], args: string[], stderr: string][] = [
      [
        ...unix(`${folder}/missing/tiny.sock`),
        `cannot listen on ${folder}/missing/tiny.sock: the folder ${folder}/missing does not exist (create it, or give another --unix PATH)`,
      ],
      [
        ...unix(`${folder}/file/tiny.sock`),
        `cannot listen on ${folder}/file/tiny.sock: ${folder}/file is not a folder (give another --unix PATH)`,
      ],
      [
        ["--allow-net=192.0.2.1"],
        ["--hostname", "192.0.2.1", "--port", "0"],
        "cannot listen on 192.0.2.1:0: no network interface of this machine has that address (try 127.0.0.1, or 0.0.0.0 for every address)",
      ],
      [
        TINY_FLAGS,
        ["--hostname", "0.0.0.0", "--port", "0"],
        "no permission to listen on 0.0.0.0:0: run with --allow-net=0.0.0.0",
      ],
      [
        ["--allow-net"],
        ["--hostname", "a\x1b[2J", "--port", "0"],
        `cannot listen on "a\\x1b[2J":0: invalid host 'a\\x1b[2J': invalid char found in FQDN`,
      ],
    ];
    // Started together: each is a Deno start-up.
    const results = await Promise.all(
      cases.map(([flags, args]) => runScript("server_tiny.ts", flags, args)),
    );
    for (const [i, [, args, stderr]] of cases.entries()) {
      await t.step(JSON.stringify(args), () => {
        const { code, stderr: printed, stdout } = results[i]!;
        assert.deepEqual(
          [code, printed, stdout],
          [1, `server_tiny: ${stderr}\n`, ""],
        );
      });
    }
  } finally {
    await Deno.remove(folder, { recursive: true });
  }
});

/** Runs server_tiny.ts with the README's flags and waits for the address it prints. */
function spawnScript(...args: string[]) {
  return startScript("server_tiny.ts", TINY_FLAGS, args, {
    ready: /^Open your browser and connect to: http:\/\/127\.0\.0\.1:\d+\/$/,
  });
}

/** Its output once it has exited (after `signal`, when given); nothing may be on stderr. */
async function finished(child: RunningProcess, signal?: Deno.Signal) {
  const result = signal === undefined
    ? await child.waitForExit()
    : await child.stop(signal);
  assert.equal(result.stderr, "", "nothing on stderr");
  return result;
}

Deno.test("out of descriptors, connections waiting for a head get their 408 at once and new clients are answered", async (t) => {
  if (!(await canRunAsRoot("the tiny descriptor-flood test"))) {
    await t.step({ name: "fd flood (needs prlimit)", ignore: true, fn() {} });
    return;
  }
  const child = await startScript("server_tiny.ts", TINY_FLAGS, [
    "--port",
    "0",
    "--quiet",
  ], {
    ready: /^Open your browser and connect to: http:\/\/127\.0\.0\.1:\d+\/$/,
    wrapper: ["prlimit", "--nofile=256"],
  });
  const flood: Deno.TcpConn[] = [];
  try {
    // Half of them send nothing, half the start of a head: more than the limit.
    const attempts = await Promise.all(
      Array.from({ length: 300 }, async (_, i) => {
        try {
          const conn = await connect(child.port);
          if (i % 2) await writeAll(conn, encode("GET / HTTP/1.1\r\n"));
          return conn;
        } catch {
          return null;
        }
      }),
    );
    for (const conn of attempts) if (conn !== null) flood.push(conn);
    // Long before HEAD_TIMEOUT_MS (10 s), a new client gets its page.
    const started = Date.now();
    const response = await exchange(
      child.port,
      "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
    );
    assert.equal(response.status, 200);
    assert.ok(Date.now() - started < 3000, `${Date.now() - started} ms`);
    // The flood connections the server had taken were answered 408 and closed.
    const timer = setTimeout(() => flood.forEach((conn) => conn.close()), 1000);
    const answers = await Promise.all(
      flood.map((conn) => readToEnd(conn).then(decode, () => "")),
    );
    clearTimeout(timer);
    // Each accept that failed closed one waiting for its head, for the next
    // in the queue: the oldest of the flood, about as many as it exceeded
    // the 256 descriptors by (less the runtime's own, about 25).
    const timedOut = answers.filter((text) => text.startsWith("HTTP/1.1 408"));
    assert.ok(timedOut.length >= 40, `${timedOut.length} got 408`);
    assert.match(
      child.lines.join("\n"),
      /accept failed \(Too many open files.*\); closed \d+ connection/,
    );
  } finally {
    for (const conn of flood) {
      try {
        conn.close();
      } catch {
        // closed by the timer
      }
    }
    await child.stop();
  }
});

Deno.test("past maxConnections, each new connection closes the one waiting longest for a head", async () => {
  const { server, port, lines } = startTinyServer({ maxConnections: 20 });
  const idle: Deno.TcpConn[] = [];
  try {
    for (let i = 0; i < 30; i++) idle.push(await connect(port));
    await delay(100);
    const started = Date.now();
    const response = await exchange(
      port,
      "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
    );
    assert.equal(response.status, 200);
    assert.ok(Date.now() - started < 3000, `${Date.now() - started} ms`);
    // 31 connections for 20 places: the 11 oldest got their 408 at once,
    // not after the 10 s head timeout; the 19 newest are still open.
    const answers = await Promise.all(
      idle.slice(0, 11).map((conn) => readToEnd(conn).then(decode)),
    );
    for (const answer of answers) assert.match(answer, /^HTTP\/1\.1 408 /);
    assert.ok(Date.now() - started < 3000, `${Date.now() - started} ms`);
    for (const conn of idle.slice(11)) {
      const read = conn.read(new Uint8Array(1));
      const outcome = await Promise.race([read, delay(50).then(() => "open")]);
      assert.equal(outcome, "open");
    }
    assert.ok(
      lines.some((line) =>
        /connections open, the most there may be/.test(line)
      ),
      lines.join("\n"),
    );
  } finally {
    for (const conn of idle) conn.close();
    await server.shutdown();
  }
});

Deno.test("UTF-8 header values show as text, other bytes escaped", async (t) => {
  const { server, port, lines } = startTinyServer({ quiet: false });
  try {
    const head = new Uint8Array([
      ...encode("GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Name: h\u00e9llo\r\n"),
      ...encode("X-Raw: "),
      0xe9,
      0xff,
      ...encode("\r\nX-Csi: "),
      0xc2,
      0x9b,
      ...encode("2J\r\n\r\n"),
    ]);
    const response = await exchange(port, head);
    assert.equal(response.status, 200);
    await t.step("on the page", () => {
      const page = decode(response.body);
      assert.match(page, /<th>X-Name<\/th><td>héllo<\/td>/);
      assert.match(page, /<th>X-Raw<\/th><td>\\xe9\\xff<\/td>/);
      assert.match(page, /<th>X-Csi<\/th><td>\\u\{009b\}2J<\/td>/);
    });
    await t.step("on the console", () => {
      const console = lines.join("\n");
      assert.match(console, /^X-Name: héllo$/m);
      assert.match(console, /^X-Raw: \\xe9\\xff$/m);
      assert.match(console, /^X-Csi: \\u\{009b\}2J$/m);
      assert.doesNotMatch(console, /hÃ©llo|\x9b/);
    });
  } finally {
    await server.shutdown();
  }
});

Deno.test("a request for a name the server does not answer to gets 421 (DNS rebinding)", async (t) => {
  const { server, port, lines } = startTinyServer({ quiet: false });
  try {
    for (
      const head of [
        "GET / HTTP/1.1\r\nHost: evil.example:PORT\r\n\r\n",
        "GET /nope HTTP/1.1\r\nHost: EVIL.example\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: evil.example\r\nContent-Length: 0\r\n\r\n",
        "GET http://evil.example/ HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
        "GET / HTTP/1.0\r\nHost: 127.0.0.2\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: localhost.evil.example\r\n\r\n",
      ]
    ) {
      await t.step(head.split("\r\n").slice(0, 2).join(" "), async () => {
        const response = await exchange(
          port,
          head.replace("PORT", String(port)),
        );
        assert.equal(response.status, 421);
        assert.equal(response.statusLine, "HTTP/1.1 421 Misdirected Request");
        assertWellFormed(response);
        assert.match(decode(response.body), /--allowed-host /);
        assert.doesNotMatch(decode(response.body), /Hello from/);
      });
    }
    assert.match(
      lines.join("\n"),
      /421 because: this server does not answer to evil\.example/,
    );
    await t.step("HEAD gets the 421 head without the body", async () => {
      const response = await exchange(
        port,
        "HEAD / HTTP/1.1\r\nHost: evil.example\r\n\r\n",
      );
      assert.equal(response.status, 421);
      assert.equal(response.body.length, 0);
    });
    await t.step(
      "the names it listens on and loopback names are answered",
      async () => {
        for (
          const host of [
            `127.0.0.1:${port}`,
            `localhost:${port}`,
            "LOCALHOST",
            "[::1]:1",
          ]
        ) {
          const response = await exchange(
            port,
            `GET / HTTP/1.1\r\nHost: ${host}\r\n\r\n`,
          );
          assert.equal(response.status, 200, host);
        }
        // HTTP/1.0 may leave Host out; there is no name to check.
        assert.equal(
          (await exchange(port, "GET / HTTP/1.0\r\n\r\n")).status,
          200,
        );
      },
    );
  } finally {
    await server.shutdown();
  }
});

Deno.test("allowedHosts", async (t) => {
  const { server, port } = startTinyServer({
    allowedHosts: ["tiny.test", ".example.org"],
  });
  try {
    const status = async (host: string) =>
      (await exchange(port, `GET / HTTP/1.1\r\nHost: ${host}\r\n\r\n`)).status;
    await t.step("a listed name is allowed, any case or port", async () => {
      assert.equal(await status("tiny.test:8080"), 200);
      assert.equal(await status("Tiny.Test"), 200);
    });
    await t.step(
      "a leading dot allows the name and its subdomains",
      async () => {
        assert.equal(await status("example.org"), 200);
        assert.equal(await status("a.example.org"), 200);
      },
    );
    await t.step("a subdomain of a name without the dot gets 421", async () => {
      assert.equal(await status("a.tiny.test"), 421);
    });
    await t.step("an unlisted name gets 421", async () => {
      assert.equal(await status("evil.example"), 421);
    });
  } finally {
    await server.shutdown();
  }
});

Deno.test("--allowed-host on the command line is answered, other names get 421", async () => {
  const child = await spawnScript(
    "--port",
    "0",
    "--quiet",
    "--allowed-host",
    "tiny.test",
  );
  const port = child.port;
  try {
    const allowed = await exchange(
      port,
      "GET / HTTP/1.1\r\nHost: tiny.test\r\n\r\n",
    );
    assert.equal(allowed.status, 200);
    const refused = await exchange(
      port,
      "GET / HTTP/1.1\r\nHost: evil.example\r\n\r\n",
    );
    assert.equal(refused.status, 421);
  } finally {
    const { code, stdout } = await finished(child, "SIGTERM");
    assert.equal(code, 0);
    assert.match(stdout, /"GET \/ HTTP\/1\.1" 421 \d+/);
  }
});

Deno.test("a respond function adds a route", async (t) => {
  const methods: string[] = [];
  const { server, port } = startTinyServer({
    respond: (request) => {
      methods.push(request.method);
      return request.path === "/hi" && request.method === "GET"
        ? {
          status: 200,
          headers: [["Content-Type", "text/plain"]],
          body: "hi é",
        }
        : respondTo(request);
    },
  });
  try {
    await t.step(
      "its route answers with its status, type and body",
      async () => {
        const hi = await exchange(
          port,
          "GET /hi HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
        );
        assert.equal(hi.status, 200);
        assert.equal(hi.headers.get("content-type"), "text/plain");
        assert.equal(decode(hi.body), "hi é");
        assert.equal(hi.headers.get("content-length"), "5");
      },
    );
    await t.step(
      "HEAD on its route drops the body, keeps the length",
      async () => {
        const head = await exchange(
          port,
          "HEAD /hi HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
        );
        assert.equal(head.body.length, 0);
        assert.equal(head.headers.get("content-length"), "5");
        assert.equal(head.headers.get("content-type"), "text/plain");
        // The responder was asked about the GET it stands for.
        assert.equal(methods.at(-1), "GET");
      },
    );
    await t.step("the default page stays", async () => {
      const home = await exchange(
        port,
        "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
      );
      assert.match(decode(home.body), /Hello from server_tiny\.ts/);
    });
    await t.step("the host check comes before it", async () => {
      const rebound = await exchange(
        port,
        "GET /hi HTTP/1.1\r\nHost: evil.example\r\n\r\n",
      );
      assert.equal(rebound.status, 421);
    });
  } finally {
    await server.shutdown();
  }
});

Deno.test("every answer on the socket is byte for byte what formatResponse makes", async (t) => {
  // The server writes most heads from bytes it keeps, the rest from text,
  // into a buffer it reuses or, for a big page, a new one: all must agree.
  const answers: Record<string, TinyResponse> = {
    "/plain": { status: 200, body: "<p>hé ✓</p>" },
    "/empty": { status: 202, body: "" },
    "/typed": {
      status: 201,
      headers: [["Content-Type", "text/plain"], ["X-Note", "a b"]],
      body: "ok",
    },
    "/big": { status: 200, body: "ü".repeat(20_000) },
    "/long-field": {
      status: 200,
      headers: [["X-Long", "a".repeat(3000)]],
      body: "x",
    },
  };
  const { server, port } = startTinyServer({
    respond: (request) => answers[request.path] ?? respondTo(request),
  });
  try {
    for (const method of ["GET", "HEAD"]) {
      for (const [path, response] of Object.entries(answers)) {
        await t.step(`${method} ${path}`, async () => {
          const conn = await connect(port);
          try {
            await writeAll(
              conn,
              encode(`${method} ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n`),
            );
            const bytes = await readToEnd(conn);
            const date = new Date(parseResponse(bytes).headers.get("date")!);
            const want = formatResponse(response, {
              date,
              omitBody: method === "HEAD",
            });
            assert.equal(decode(bytes), decode(want));
          } finally {
            conn.close();
          }
        });
      }
    }
    await t.step("the default 404 page", async () => {
      const conn = await connect(port);
      try {
        await writeAll(
          conn,
          encode("GET /nowhere HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"),
        );
        const bytes = await readToEnd(conn);
        const date = new Date(parseResponse(bytes).headers.get("date")!);
        const notFound = respondTo({
          method: "GET",
          target: "/nowhere",
          path: "/nowhere",
          version: "HTTP/1.1",
          headers: [["Host", "127.0.0.1"]],
        });
        assert.equal(decode(bytes), decode(formatResponse(notFound, { date })));
      } finally {
        conn.close();
      }
    });
  } finally {
    await server.shutdown();
  }
});

Deno.test("the hello page on the socket is byte for byte what respondTo and formatResponse make", async (t) => {
  // The default server writes the hello page's bytes itself, into its
  // buffer, or (when the page does not fit) from respondTo's text.
  const latin1 = (text: string) =>
    Uint8Array.from(text, (c) => c.charCodeAt(0));
  const heads: Record<string, string> = {
    "wrk's head": "GET / HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n",
    "a browser's head": "GET /?q=1 HTTP/1.1\r\nHost: localhost\r\n" +
      "User-Agent: Mozilla/5.0 (X11; Linux x86_64)\r\nAccept: text/html,*/*;q=0.8\r\n" +
      "Accept-Language: en-GB,en;q=0.5\r\nAccept-Encoding: gzip, br\r\n\r\n",
    "HTML in the target and values":
      "GET /?a=<b>&c=\"d\"'e' HTTP/1.1\r\nHost: 127.0.0.1\r\nX-A: <script>&amp;\"'\r\n\r\n",
    "UTF-8, bad bytes, C1, bidi, backslash":
      "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n" +
      "X-A: h\xc3\xa9 \xe2\x9c\x93 \xff\xfe \xc2\x85 \xe2\x80\xae \\x41\r\nX-B: \xc3\xa9<&>\"'\r\n\r\n",
    "HTTP/1.0, no Host": "GET / HTTP/1.0\r\n\r\n",
    "absolute-form":
      "GET http://127.0.0.1/?x=1 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
    "a page larger than the buffer": "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n" +
      `X-A: ${'"'.repeat(7000)}\r\n\r\n`,
  };
  // Pages that end just past the buffer, in escaped ASCII and in UTF-8.
  for (let n = 2_700; n <= 2_940; n += 20) {
    heads[`${n} & and 300 é in UTF-8`] =
      "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n" +
      `X-A: ${"&".repeat(n)}${"\xc3\xa9".repeat(300)}\r\n\r\n`;
  }
  const { server, port } = startTinyServer();
  try {
    for (const method of ["GET", "HEAD"]) {
      for (const [name, text] of Object.entries(heads)) {
        await t.step(`${method}, ${name}`, async () => {
          const head = latin1(text.replace(/^GET/, method));
          const parsed = parseRequestHead(head);
          assert.ok(parsed.ok);
          const conn = await connect(port);
          try {
            await writeAll(conn, head);
            const bytes = await readToEnd(conn);
            const date = new Date(parseResponse(bytes).headers.get("date")!);
            // HEAD is answered as GET, without the body: GET's head.
            const asGet = { ...parsed.request, method: "GET" };
            const want = formatResponse(respondTo(asGet), {
              date,
              omitBody: method === "HEAD",
            });
            assert.equal(decode(bytes), decode(want));
          } finally {
            conn.close();
          }
        });
      }
    }
  } finally {
    await server.shutdown();
  }
});

Deno.test("a responder that throws or answers something unsafe gets a generic 500", async (t) => {
  const { server, port, lines } = startTinyServer({
    respond: (request) => {
      if (request.path === "/throw") throw new Error("secret detail");
      if (request.path === "/async") {
        return Promise.reject(new RangeError("later"));
      }
      const unsafe = {
        status: 200,
        headers: [["X-Echo", "a\r\nSet-Cookie: x=1"]] as [string, string][],
        body: "",
      };
      // An answer that comes later is checked as one that comes at once.
      if (request.path === "/async-inject") return Promise.resolve(unsafe);
      return unsafe;
    },
  });
  try {
    for (const path of ["/throw", "/async", "/inject", "/async-inject"]) {
      await t.step(path, async () => {
        const response = await exchange(
          port,
          `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n`,
        );
        assert.equal(response.status, 500);
        assertWellFormed(response);
        assert.ok(!response.headers.has("set-cookie"));
        assert.doesNotMatch(
          decode(response.body),
          /secret|RangeError|Set-Cookie/,
        );
      });
    }
    assert.match(
      lines.join("\n"),
      /respond failed for \/throw: Error: secret detail/,
    );
    assert.match(
      lines.join("\n"),
      /respond failed for \/async: RangeError: later/,
    );
    // Still serving.
    assert.equal((await exchange(port, "GET / HTTP/1.0\r\n\r\n")).status, 500);
  } finally {
    await server.shutdown();
  }
});

Deno.test("on a Unix socket (path): served, its peers not held to maxConnectionsPerClient, logged without an address", async () => {
  const dir = await Deno.makeTempDir();
  const path = `${dir}/tiny.sock`;
  const lines: string[] = [];
  const server = serveTiny({
    path,
    maxConnectionsPerClient: 2,
    log: (line) => lines.push(line),
  });
  const idle: Deno.UnixConn[] = [];
  try {
    assert.equal(server.addr.path, path);
    // Three idle peers: on TCP from one address the third would close the first.
    for (let i = 0; i < 3; i++) {
      idle.push(await Deno.connect({ transport: "unix", path }));
    }
    const conn = await Deno.connect({ transport: "unix", path });
    try {
      await writeAll(conn, encode("GET / HTTP/1.1\r\nHost: localhost\r\n\r\n"));
      const response = parseResponse(await readToEnd(conn));
      assert.equal(response.status, 200);
      assertWellFormed(response);
    } finally {
      conn.close();
    }
    for (const peer of idle) {
      const read = peer.read(new Uint8Array(1));
      const outcome = await Promise.race([read, delay(50).then(() => "open")]);
      assert.equal(outcome, "open");
    }
    assert.ok(
      lines.some((line) => /^--- request from a Unix socket ---$/m.test(line)),
      lines.join("\n"),
    );
    assert.ok(
      lines.some((line) =>
        /^- - - \[.*\] "GET \/ HTTP\/1\.1" 200 \d+$/.test(line)
      ),
      lines.join("\n"),
    );
  } finally {
    for (const peer of idle) peer.close();
    await server.shutdown();
    await Deno.remove(dir, { recursive: true });
  }
});
