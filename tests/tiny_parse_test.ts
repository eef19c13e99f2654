// server_tiny.ts, the pure parts: reading a head from a stream, parsing it,
// deciding the answer and formatting the bytes. No sockets here.
import assert from "node:assert/strict";
import {
  type AccessLogEntry,
  allowedHostsFor,
  type ByteReader,
  checkResponse,
  clientKey,
  errorResponse,
  escapeHtml,
  findHeadEnd,
  formatAccessLog,
  formatResponse,
  isAllowedHost,
  MAX_HEAD_BYTES,
  misdirectedResponse,
  parseCommandLine,
  parseRequestHead,
  readRequestHead,
  type RequestHead,
  requestHostName,
  respondTo,
  showBytes,
  writeAll,
} from "../server_tiny.ts";

const encode = (text: string) => new TextEncoder().encode(text);
const decode = (bytes: Uint8Array) => new TextDecoder().decode(bytes);
// Heads are bytes: each char of these test strings stands for one byte (0-255).
const bytes = (text: string) =>
  Uint8Array.from(text, (char) => char.charCodeAt(0));
const parse = (text: string) => parseRequestHead(bytes(text));

/** A reader that hands out the given chunks one read at a time, then end of stream. */
function chunkReader(chunks: string[]): ByteReader & { reads: number } {
  const queue = chunks.map(encode);
  return {
    reads: 0,
    read(buffer) {
      this.reads++;
      const chunk = queue.shift();
      if (chunk === undefined) return Promise.resolve(null);
      const count = Math.min(chunk.length, buffer.length);
      buffer.set(chunk.subarray(0, count));
      if (count < chunk.length) queue.unshift(chunk.subarray(count));
      return Promise.resolve(count);
    },
  };
}

// ---------------------------------------------------------------------------
// parseRequestHead

Deno.test("parseRequestHead accepts well-formed heads", async (t) => {
  const cases: { head: string; want: Partial<RequestHead> }[] = [
    {
      head: "GET / HTTP/1.1\r\nHost: localhost:8080\r\n\r\n",
      want: {
        method: "GET",
        target: "/",
        path: "/",
        version: "HTTP/1.1",
        headers: [["Host", "localhost:8080"]],
      },
    },
    {
      head: "HEAD /a/b?x=1&y=%20 HTTP/1.1\r\nhost: h\r\n\r\n",
      want: { method: "HEAD", target: "/a/b?x=1&y=%20", path: "/a/b" },
    },
    // HTTP/1.0 may omit Host.
    {
      head: "GET / HTTP/1.0\r\n\r\n",
      want: { version: "HTTP/1.0", headers: [] },
    },
    // Optional whitespace around values is trimmed; inner whitespace stays.
    {
      head: "GET / HTTP/1.1\r\nHost:h\r\nX-A: \t a  b \t\r\nX-Empty:\r\n\r\n",
      want: { headers: [["Host", "h"], ["X-A", "a  b"], ["X-Empty", ""]] },
    },
    // obs-text (bytes 0x80-0xFF) is allowed in values; each byte becomes one char.
    {
      head: "GET / HTTP/1.1\r\nHost: h\r\nX-Name: caf\xc3\xa9\r\n\r\n",
      want: { headers: [["Host", "h"], ["X-Name", "caf\xc3\xa9"]] },
    },
    // absolute-form (RFC 9112 3.2.2): the path comes from the URL.
    {
      head: "GET http://example.com/x?q HTTP/1.1\r\nHost: example.com\r\n\r\n",
      want: { path: "/x" },
    },
    // A later 1.x minor version is served as HTTP/1.1 (RFC 9110 2.5).
    {
      head: "GET / HTTP/1.9\r\nHost: h\r\n\r\n",
      want: { version: "HTTP/1.9" },
    },
    // Methods we do not implement still parse (they get 405 later), as do their special targets.
    {
      head: "OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n",
      want: { method: "OPTIONS", path: "*" },
    },
    {
      head: "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n",
      want: {},
    },
    {
      head: "POST /form HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\n",
      want: { method: "POST" },
    },
    // A body announced with chunked framing is well-formed (we never read it).
    {
      head:
        "GET / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
      want: {},
    },
    // Valid Host forms: IPv6 literal, a port (RFC 9112 3.2).
    { head: "GET / HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n", want: {} },
    // Browsers leave some characters unencoded in queries.
    { head: "GET /?q={a|b}^ HTTP/1.1\r\nHost: h\r\n\r\n", want: { path: "/" } },
  ];
  for (const { head, want } of cases) {
    await t.step(JSON.stringify(head), () => {
      const result = parse(head);
      assert.ok(result.ok, `expected success, got ${JSON.stringify(result)}`);
      for (const [key, value] of Object.entries(want)) {
        assert.deepEqual(result.request[key as keyof RequestHead], value, key);
      }
    });
  }
});

Deno.test("parseRequestHead rejects malformed heads with 400 (another major version too)", async (t) => {
  // `why` checks that the intended rule fired, not just any rule.
  const cases: {
    name: string;
    head: string | Uint8Array;
    status: 400;
    why?: RegExp;
  }[] = [
    { name: "garbage", head: "garbage\r\n\r\n", status: 400 },
    { name: "empty request line", head: "\r\n\r\n", status: 400 },
    { name: "two parts", head: "GET /\r\nHost: h\r\n\r\n", status: 400 },
    {
      name: "four parts",
      head: "GET / / HTTP/1.1\r\nHost: h\r\n\r\n",
      status: 400,
    },
    {
      name: "double space",
      head: "GET  / HTTP/1.1\r\nHost: h\r\n\r\n",
      status: 400,
    },
    {
      name: "tab separator",
      head: "GET\t/ HTTP/1.1\r\nHost: h\r\n\r\n",
      status: 400,
    },
    {
      name: "leading space",
      head: " GET / HTTP/1.1\r\nHost: h\r\n\r\n",
      status: 400,
    },
    {
      name: "trailing space",
      head: "GET / HTTP/1.1 \r\nHost: h\r\n\r\n",
      status: 400,
    },
    {
      name: "method not a token",
      head: "G(T / HTTP/1.1\r\nHost: h\r\n\r\n",
      status: 400,
    },
    {
      name: "lowercase version",
      head: "GET / http/1.1\r\nHost: h\r\n\r\n",
      status: 400,
    },
    {
      name: "version without minor",
      head: "GET / HTTP/1\r\nHost: h\r\n\r\n",
      status: 400,
    },
    {
      name: "two-digit version",
      head: "GET / HTTP/1.10\r\nHost: h\r\n\r\n",
      status: 400,
    },
    {
      name: "HTTP/2.0",
      head: "GET / HTTP/2.0\r\nHost: h\r\n\r\n",
      status: 400,
      why: /version/,
    },
    { name: "HTTP/0.9", head: "GET / HTTP/0.9\r\n\r\n", status: 400 },
    {
      name: "HTTP/3.0",
      head: "GET / HTTP/3.0\r\nHost: h\r\n\r\n",
      status: 400,
    },
    {
      name: "relative target",
      head: "GET index.html HTTP/1.1\r\nHost: h\r\n\r\n",
      status: 400,
    },
    {
      name: "asterisk with GET",
      head: "GET * HTTP/1.1\r\nHost: h\r\n\r\n",
      status: 400,
    },
    {
      name: "fragment in target",
      head: "GET /#top HTTP/1.1\r\nHost: h\r\n\r\n",
      status: 400,
    },
    {
      name: "bad absolute-form",
      head: "GET http://[x/ HTTP/1.1\r\nHost: h\r\n\r\n",
      status: 400,
    },
    {
      name: "userinfo in absolute-form",
      head: "GET http://a@127.0.0.1/ HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
      status: 400,
    },
    {
      name: "userinfo with a password in absolute-form",
      head: "GET http://u:p@h:80/x?y HTTP/1.1\r\nHost: h\r\n\r\n",
      status: 400,
    },
    {
      name: "non-ASCII in target",
      head: encode("GET /caf\u00e9 HTTP/1.1\r\nHost: h\r\n\r\n"),
      status: 400,
    },
    {
      name: "control byte in target",
      head: "GET /\x01 HTTP/1.1\r\nHost: h\r\n\r\n",
      status: 400,
    },
    {
      name: "missing Host in HTTP/1.1",
      head: "GET / HTTP/1.1\r\n\r\n",
      status: 400,
      why: /without Host/,
    },
    {
      name: "two Host fields",
      head: "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
      status: 400,
      why: /more than one Host/,
    },
    {
      name: "invalid Host",
      head: "GET / HTTP/1.1\r\nHost: a b\r\n\r\n",
      status: 400,
    },
    {
      name: "empty Host",
      head: "GET / HTTP/1.1\r\nHost: \r\n\r\n",
      status: 400,
    },
    {
      name: "Host with a port past 65535",
      head: "GET / HTTP/1.1\r\nHost: localhost:99999\r\n\r\n",
      status: 400,
    },
    {
      name: "Host with a path",
      head: "GET / HTTP/1.1\r\nHost: a/b\r\n\r\n",
      status: 400,
    },
    {
      name: "whitespace before colon",
      head: "GET / HTTP/1.1\r\nHost : h\r\n\r\n",
      status: 400,
      why: /whitespace between/,
    },
    {
      name: "tab before colon",
      head: "GET / HTTP/1.1\r\nHost\t: h\r\n\r\n",
      status: 400,
    },
    {
      name: "obs-fold",
      head: "GET / HTTP/1.1\r\nHost: h\r\nX-A: one\r\n two\r\n\r\n",
      status: 400,
      why: /folding/,
    },
    {
      name: "whitespace-led line after the request line",
      head: "GET / HTTP/1.1\r\n Host: h\r\n\r\n",
      status: 400,
    },
    {
      name: "no colon",
      head: "GET / HTTP/1.1\r\nHost: h\r\nNoColon\r\n\r\n",
      status: 400,
    },
    {
      // The colon of the next line is not this line's.
      name: "no colon, one on the next line",
      head: "GET / HTTP/1.1\r\nNoColon\r\nHost: h\r\n\r\n",
      status: 400,
      why: /no colon/,
    },
    {
      name: "empty field name",
      head: "GET / HTTP/1.1\r\nHost: h\r\n: v\r\n\r\n",
      status: 400,
    },
    {
      name: "field name not a token",
      head: "GET / HTTP/1.1\r\nHost: h\r\nX(A): v\r\n\r\n",
      status: 400,
    },
    {
      name: "non-ASCII field name",
      head: encode("GET / HTTP/1.1\r\nHost: h\r\nX-\u00e9: v\r\n\r\n"),
      status: 400,
    },
    {
      name: "NUL in value",
      head: "GET / HTTP/1.1\r\nHost: h\r\nX-A: a\0b\r\n\r\n",
      status: 400,
    },
    {
      name: "ESC in value",
      head: "GET / HTTP/1.1\r\nHost: h\r\nX-A: \x1b[2J\r\n\r\n",
      status: 400,
    },
    {
      name: "DEL in value",
      head: "GET / HTTP/1.1\r\nHost: h\r\nX-A: a\x7f\r\n\r\n",
      status: 400,
    },
    // RFC 9112 2.2: we treat a bare LF or a bare CR as malformed, not as a line end.
    {
      name: "bare LF line ends",
      head: "GET / HTTP/1.1\nHost: h\n\n",
      status: 400,
      why: /bare LF/,
    },
    {
      name: "one bare LF",
      head: "GET / HTTP/1.1\nHost: h\r\n\r\n",
      status: 400,
    },
    {
      name: "bare CR",
      head: "GET / HTTP/1.1\r\nHost: h\rX-A: b\r\n\r\n",
      status: 400,
      why: /bare CR/,
    },
    {
      name: "no blank line at the end",
      head: "GET / HTTP/1.1\r\nHost: h\r\n",
      status: 400,
      why: /blank line/,
    },
    {
      name: "field after an empty line",
      head: "GET / HTTP/1.1\r\n\r\nHost: h\r\n\r\n",
      status: 400,
    },
    {
      name: "Content-Length and Transfer-Encoding",
      head:
        "GET / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
      status: 400,
      why: /both/,
    },
    {
      name: "non-numeric Content-Length",
      head: "GET / HTTP/1.1\r\nHost: h\r\nContent-Length: -1\r\n\r\n",
      status: 400,
    },
    {
      name: "Content-Length list",
      head: "GET / HTTP/1.1\r\nHost: h\r\nContent-Length: 3, 3\r\n\r\n",
      status: 400,
    },
    {
      name: "two Content-Length fields",
      head:
        "GET / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n",
      status: 400,
    },
    {
      name: "Transfer-Encoding not ending in chunked",
      head:
        "GET / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
      status: 400,
    },
    {
      name: "random bytes",
      head: new Uint8Array([0xff, 0xfe, 0x00, 0x80, 0x0d, 0x0a, 0x0d, 0x0a]),
      status: 400,
    },
  ];
  for (const { name, head, status, why } of cases) {
    await t.step(name, () => {
      const result = parseRequestHead(
        typeof head === "string" ? bytes(head) : head,
      );
      assert.equal(
        result.ok,
        false,
        `expected ${status}, got ${JSON.stringify(result)}`,
      );
      if (!result.ok) {
        assert.equal(result.status, status);
        assert.match(result.reason, why ?? /./);
      }
    });
  }
});

// ---------------------------------------------------------------------------
// findHeadEnd and readRequestHead

Deno.test("findHeadEnd finds the first blank line, CRLF or bare LF", () => {
  const cases: [string, number][] = [
    ["GET / HTTP/1.1\r\nHost: h\r\n\r\n", 27],
    ["GET / HTTP/1.1\r\nHost: h\r\n\r\nbody\r\n\r\n", 27],
    ["GET / HTTP/1.1\r\nHost: h\r\n", -1],
    ["GET / HTTP/1.1\r\n\r", -1],
    ["GET / HTTP/1.1\n\n", 16],
    ["", -1],
  ];
  for (const [text, want] of cases) {
    assert.equal(findHeadEnd(encode(text)), want, text);
  }
});

Deno.test("readRequestHead joins a head split over many reads", async () => {
  const head = "GET / HTTP/1.1\r\nHost: h\r\nAccept: */*\r\n\r\n";
  // Every split point, including one inside the final CRLF CRLF.
  for (let split = 1; split < head.length; split++) {
    const reader = chunkReader([head.slice(0, split), head.slice(split)]);
    const result = await readRequestHead(reader);
    assert.equal(result.kind, "head", `split at ${split}`);
    if (result.kind === "head") assert.equal(decode(result.head), head);
  }
  // One byte per read.
  const reader = chunkReader([...head]);
  const result = await readRequestHead(reader);
  assert.equal(result.kind, "head");
  assert.equal(reader.reads, head.length);
});

Deno.test("readRequestHead stops at the blank line and drops what follows", async () => {
  const head = "GET / HTTP/1.1\r\nHost: h\r\n\r\n";
  const result = await readRequestHead(chunkReader([head + "body bytes"]));
  assert.equal(result.kind, "head");
  if (result.kind === "head") assert.equal(decode(result.head), head);
});

Deno.test("readRequestHead's size limit", async (t) => {
  const start = "GET / HTTP/1.1\r\nHost: h\r\nX-Pad: ";
  const end = "\r\n\r\n";
  await t.step("a head of exactly MAX_HEAD_BYTES is read", async () => {
    const fits = start +
      "a".repeat(MAX_HEAD_BYTES - start.length - end.length) + end;
    assert.equal(fits.length, MAX_HEAD_BYTES);
    const ok = await readRequestHead(
      chunkReader([fits.slice(0, 100), fits.slice(100)]),
    );
    assert.equal(ok.kind, "head");
    if (ok.kind === "head") assert.equal(decode(ok.head), fits);
  });
  await t.step("one byte more is too large", async () => {
    const tooBig = start +
      "a".repeat(MAX_HEAD_BYTES - start.length - end.length + 1) + end;
    assert.deepEqual(await readRequestHead(chunkReader([tooBig])), {
      kind: "too-large",
    });
  });
  await t.step("maxBytes sets a smaller limit", async () => {
    assert.deepEqual(
      await readRequestHead(chunkReader(["GET / HTTP/1.0\r\n\r\n"]), {
        maxBytes: 10,
      }),
      { kind: "too-large" },
    );
  });
});

Deno.test("readRequestHead tells a request target longer than MAX_HEAD_BYTES (414) from a large head (431)", async () => {
  const long = `GET /${"a".repeat(MAX_HEAD_BYTES)} HTTP/1.1\r\nHost: h\r\n\r\n`;
  assert.deepEqual(
    await readRequestHead(chunkReader([long.slice(0, 50), long.slice(50)])),
    { kind: "target-too-long" },
  );
  // A method that long is not a target: 431.
  assert.deepEqual(
    await readRequestHead(chunkReader(["G".repeat(MAX_HEAD_BYTES + 1)])),
    { kind: "too-large" },
  );
});

Deno.test("readRequestHead skips empty lines (CRLF) before the request line", async (t) => {
  const head = "GET / HTTP/1.1\r\nHost: h\r\n\r\n";
  await t.step("in one read", async () => {
    const result = await readRequestHead(chunkReader(["\r\n\r\n" + head]));
    assert.equal(result.kind, "head");
    if (result.kind === "head") assert.equal(decode(result.head), head);
  });
  await t.step("a CR and its LF in two reads", async () => {
    const result = await readRequestHead(
      chunkReader(["\r", "\n\r", "\n" + head]),
    );
    assert.equal(result.kind, "head");
    if (result.kind === "head") assert.equal(decode(result.head), head);
  });
  await t.step(
    "only empty lines, then the client closes: nothing to answer",
    async () => {
      assert.deepEqual(await readRequestHead(chunkReader(["\r\n", "\r\n"])), {
        kind: "closed",
      });
    },
  );
  await t.step("they count toward the size limit", async () => {
    const result = await readRequestHead(
      chunkReader(["\r\n".repeat(40) + head]),
      { maxBytes: 64 },
    );
    assert.equal(result.kind, "too-large");
  });
  await t.step("a space after them is still refused at once", async () => {
    const sent = "\r\n GET / HTTP/1.1";
    let first = true;
    const quiet: ByteReader = {
      read(buffer) {
        if (!first) return new Promise(() => {});
        first = false;
        buffer.set(bytes(sent));
        return Promise.resolve(sent.length);
      },
    };
    assert.deepEqual(await readRequestHead(quiet, { timeoutMs: 5_000 }), {
      kind: "not-http",
      received: bytes(sent),
    });
  });
});

Deno.test("readRequestHead reports a connection closed before any byte", async () => {
  assert.deepEqual(await readRequestHead(chunkReader([])), { kind: "closed" });
});

Deno.test("readRequestHead reports a connection closed mid-head", async () => {
  assert.deepEqual(
    await readRequestHead(chunkReader(["GET / HTTP/1.1\r\n"])),
    { kind: "incomplete" },
  );
});

Deno.test("readRequestHead times out a head that never completes", async () => {
  // Sends one line, then nothing: the read never settles.
  let first = true;
  const stalled: ByteReader = {
    read(buffer) {
      if (!first) return new Promise(() => {});
      first = false;
      buffer.set(encode("GET / HTTP/1.1\r\n"));
      return Promise.resolve(16);
    },
  };
  assert.deepEqual(await readRequestHead(stalled, { timeoutMs: 50 }), {
    kind: "timeout",
  });
});

Deno.test("readRequestHead has one deadline for the whole head, not one per read", async () => {
  // A "slowloris" client: one byte every 20 ms, never a blank line. A limit
  // per read would never fire; the size limit would end it only much later.
  const trickle: ByteReader = {
    read(buffer) {
      return new Promise((resolve) => {
        setTimeout(() => {
          buffer[0] = 0x61;
          resolve(1);
        }, 20);
      });
    },
  };
  assert.deepEqual(
    await readRequestHead(trickle, { timeoutMs: 150, maxBytes: 100 }),
    {
      kind: "timeout",
    },
  );
  // Let the last pending read's timer run out before the test ends.
  await new Promise((resolve) => setTimeout(resolve, 30));
});

Deno.test("readRequestHead gives up on an idle connection when the signal aborts", async () => {
  const silent: ByteReader = { read: () => new Promise(() => {}) };
  const controller = new AbortController();
  const pending = readRequestHead(silent, { idleSignal: controller.signal });
  controller.abort();
  assert.deepEqual(await pending, { kind: "closed" });

  // Once a byte has arrived the request is in progress: the abort is ignored
  // and only the timeout ends the wait.
  let first = true;
  const started: ByteReader = {
    read(buffer) {
      if (!first) return new Promise(() => {});
      first = false;
      buffer.set(encode("G"));
      return Promise.resolve(1);
    },
  };
  const aborted = new AbortController();
  const reading = readRequestHead(started, {
    idleSignal: aborted.signal,
    timeoutMs: 100,
  });
  await new Promise((resolve) => setTimeout(resolve, 10));
  aborted.abort();
  assert.deepEqual(await reading, { kind: "timeout" });
});

Deno.test("readRequestHead refuses bytes that cannot begin a request line as they arrive", async (t) => {
  // Each case is sent in one read, then the client goes quiet: a refusal must
  // come from the bytes themselves, before the head timeout.
  const cases: [name: string, sent: string, refused: boolean][] = [
    [
      "TLS ClientHello (https:// to this port)",
      "\x16\x03\x01\x02\x00\x01",
      true,
    ],
    ["SSH banner", "SSH-2.0-OpenSSH_9.6\r\n", true],
    ["binary noise", "\x00\xff\x01", true],
    ["leading space", " GET / HTTP/1.1", true],
    ["tab in the method", "GET\t/ HTTP/1.1", true],
    ["two spaces", "GET  / HTTP/1.1", true],
    ["control byte in the target", "GET /\x01 HTTP/1.1", true],
    ["fragment in the target", "GET /#top HTTP/1.1", true],
    ["not a version", "GET / HTXP/1.1", true],
    ["version without digits", "GET / HTTP/x.1", true],
    ["request line ends in a bare LF", "GET / HTTP/1.1\nHost: h", true],
    ["one letter", "G", false],
    ["a method", "GET", false],
    ["method and space", "GET ", false],
    ["half a version", "GET / HTTP/1.", false],
    ["a request line and part of a field", "GET / HTTP/1.1\r\nHo", false],
    ["another major version (400 later)", "GET / HTTP/2.0\r\n", false],
    ["absolute form", "GET http://h/a?b HTTP/1.1\r\n", false],
    ["asterisk form", "OPTIONS * HTTP/1.1\r\n", false],
    ["odd but valid token method", "M-SEARCH * HTTP/1.1\r\n", false],
  ];
  for (const [name, sent, refused] of cases) {
    await t.step(name, async () => {
      let first = true;
      const quiet: ByteReader = {
        read(buffer) {
          if (!first) return new Promise(() => {});
          first = false;
          buffer.set(bytes(sent));
          return Promise.resolve(sent.length);
        },
      };
      const result = await readRequestHead(quiet, {
        timeoutMs: refused ? 5_000 : 50,
      });
      if (refused) {
        assert.deepEqual(result, { kind: "not-http", received: bytes(sent) });
      } else {
        assert.deepEqual(result, { kind: "timeout" });
      }
    });
  }
});

// ---------------------------------------------------------------------------
// Deciding and formatting the answer

const request = (overrides: Partial<RequestHead>): RequestHead => ({
  method: "GET",
  target: "/",
  path: "/",
  version: "HTTP/1.1",
  headers: [["Host", "h"]],
  ...overrides,
});

Deno.test("respondTo routes by method and path", async (t) => {
  const cases: { request: RequestHead; status: number; allow?: string }[] = [
    { request: request({}), status: 200 },
    { request: request({ method: "HEAD" }), status: 200 },
    { request: request({ target: "/?x=1" }), status: 200 },
    {
      request: request({ path: "/favicon.ico", target: "/favicon.ico" }),
      status: 404,
    },
    {
      request: request({ path: "/index.html", target: "/index.html" }),
      status: 404,
    },
    { request: request({ method: "POST" }), status: 405, allow: "GET, HEAD" },
    {
      request: request({ method: "DELETE", path: "/x" }),
      status: 405,
      allow: "GET, HEAD",
    },
    { request: request({ method: "get" }), status: 405, allow: "GET, HEAD" },
    {
      request: request({ method: "OPTIONS", path: "*" }),
      status: 405,
      allow: "GET, HEAD",
    },
  ];
  for (const { request, status, allow } of cases) {
    await t.step(`${request.method} ${request.target}`, () => {
      const response = respondTo(request);
      assert.equal(response.status, status);
      const allowed = response.headers?.find(([name]) => name === "Allow")?.[1];
      assert.equal(allowed, allow);
      assert.match(response.body, /^<!doctype html>/);
    });
  }
});

Deno.test("the hello page", async (t) => {
  const response = respondTo(request({
    target: "/?q=<script>",
    headers: [["Host", "h"], ["X-Evil", `"><img src=x onerror=alert(1)>`], [
      "User-Agent",
      "A&B",
    ]],
  }));
  const { body } = response;
  assert.equal(response.status, 200);
  await t.step("it shows the method and version", () => {
    assert.ok(body.includes("<code>GET</code>"), body);
    assert.ok(body.includes("<code>HTTP/1.1</code>"), body);
  });
  await t.step("it shows the target, escaped", () => {
    assert.ok(body.includes("/?q=&lt;script&gt;"), body);
    assert.doesNotMatch(body, /<script>/);
  });
  await t.step("it shows every header, escaped", () => {
    assert.ok(body.includes("<th>Host</th><td>h</td>"), body);
    assert.ok(
      body.includes("&quot;&gt;&lt;img src=x onerror=alert(1)&gt;"),
      body,
    );
    assert.ok(body.includes("<th>User-Agent</th><td>A&amp;B</td>"), body);
    assert.doesNotMatch(body, /<img/);
  });
});

Deno.test("error pages are generic", () => {
  for (const status of [400, 404, 405, 408, 414, 431] as const) {
    const { body } = errorResponse(status);
    assert.match(body, new RegExp(`<h1>${status} [A-Z]`));
  }
});

Deno.test("escapeHtml escapes the five special characters", () => {
  assert.equal(
    escapeHtml(`<a href="x" title='y'>&amp;</a>`),
    "&lt;a href=&quot;x&quot; title=&#39;y&#39;&gt;&amp;amp;&lt;/a&gt;",
  );
  assert.equal(escapeHtml("plain text é"), "plain text é");
});

Deno.test("formatResponse writes the whole response", () => {
  const date = new Date(Date.UTC(1994, 10, 6, 8, 49, 37));
  const body = "<p>héllo</p>";
  const text = decode(formatResponse({ status: 200, body }, { date }));
  assert.equal(
    text,
    "HTTP/1.1 200 OK\r\n" +
      "Date: Sun, 06 Nov 1994 08:49:37 GMT\r\n" +
      "Content-Type: text/html; charset=utf-8\r\n" +
      "Content-Length: 13\r\n" + // bytes: é is two
      "Connection: close\r\n" +
      "\r\n" + body,
  );
});

Deno.test("formatResponse writes a status's reason phrase and extra fields", () => {
  const body = "<p>héllo</p>";
  const withAllow = decode(
    formatResponse({ status: 405, headers: [["Allow", "GET, HEAD"]], body }),
  );
  assert.match(withAllow, /^HTTP\/1\.1 405 Method Not Allowed\r\n/);
  assert.match(withAllow, /\r\nAllow: GET, HEAD\r\n\r\n/);
});

Deno.test("formatResponse for HEAD keeps the whole head and drops the body", () => {
  const date = new Date(0);
  const full = decode(formatResponse({ status: 200, body: "12345" }, { date }));
  const head = decode(
    formatResponse({ status: 200, body: "12345" }, { date, omitBody: true }),
  );
  assert.equal(full, head + "12345");
  assert.match(head, /\r\nContent-Length: 5\r\n/);
  assert.ok(head.endsWith("\r\n\r\n"));
});

Deno.test("writeAll keeps writing until every byte is taken", async () => {
  const taken: number[] = [];
  const trickle = {
    write(bytes: Uint8Array) {
      const count = Math.min(3, bytes.length);
      taken.push(...bytes.subarray(0, count));
      return Promise.resolve(count);
    },
  };
  const response = encode("HTTP/1.1 200 OK\r\n\r\nhello");
  await writeAll(trickle, response);
  assert.deepEqual(new Uint8Array(taken), response);
});

Deno.test("showBytes shows valid UTF-8 as text and escapes every other byte", async (t) => {
  const cases: { name: string; input: number[] | string; shown: string }[] = [
    { name: "ASCII", input: "GET / HTTP/1.1", shown: "GET / HTTP/1.1" },
    // The bug: each byte of UTF-8 was shown on its own (Latin-1 style).
    { name: "two-byte UTF-8", input: "héllo", shown: "héllo" },
    { name: "three and four bytes", input: "日本 🎉", shown: "日本 🎉" },
    {
      name: "C0 controls and ESC",
      input: "a\x1b[2J\r\n",
      shown: "a\\x1b[2J\\x0d\\x0a",
    },
    { name: "DEL", input: "\x7f", shown: "\\x7f" },
    { name: "backslash", input: "\\", shown: "\\x5c" },
    // U+009B is a one-character CSI in some terminals.
    {
      name: "C1 control",
      input: [0xc2, 0x9b, 0x32, 0x4a],
      shown: "\\u{009b}2J",
    },
    { name: "bidi override", input: "a\u202eb", shown: "a\\u{202e}b" },
    { name: "zero-width space", input: "a\u200bb", shown: "a\\u{200b}b" },
    { name: "line separator", input: "a\u2028b", shown: "a\\u{2028}b" },
    { name: "a lone byte", input: [0x61, 0xff, 0x62], shown: "a\\xffb" },
    { name: "Latin-1 é", input: [0xe9, 0x74, 0xe9], shown: "\\xe9t\\xe9" },
    { name: "truncated sequence", input: [0xe6, 0x97], shown: "\\xe6\\x97" },
    { name: "overlong slash", input: [0xc0, 0xaf], shown: "\\xc0\\xaf" },
    {
      name: "overlong three bytes",
      input: [0xe0, 0x80, 0xaf],
      shown: "\\xe0\\x80\\xaf",
    },
    { name: "surrogate", input: [0xed, 0xa0, 0x80], shown: "\\xed\\xa0\\x80" },
    {
      name: "above U+10FFFF",
      input: [0xf4, 0x90, 0x80, 0x80],
      shown: "\\xf4\\x90\\x80\\x80",
    },
    { name: "stray continuation", input: [0x80, 0x41], shown: "\\x80A" },
  ];
  for (const { name, input, shown } of cases) {
    await t.step(name, () => {
      const raw = typeof input === "string"
        ? encode(input)
        : new Uint8Array(input);
      assert.equal(showBytes(raw), shown);
    });
  }
});

Deno.test("the hello page shows header values as showBytes does", async (t) => {
  // Values as the parser keeps them: one character per byte received.
  const response = respondTo(request({
    headers: [
      ["Host", "h"],
      ["X-Name", String.fromCharCode(...encode("héllo"))],
      ["X-Latin1", "\xe9t\xe9"],
      ["X-Trick", String.fromCharCode(...encode("a\u202e<b>"))],
    ],
  }));
  const { body } = response;
  await t.step("UTF-8 is shown as text", () => {
    assert.ok(body.includes("<th>X-Name</th><td>héllo</td>"), body);
    assert.ok(!body.includes("hÃ©llo"), body);
  });
  await t.step("other bytes are escaped", () => {
    assert.ok(body.includes("<th>X-Latin1</th><td>\\xe9t\\xe9</td>"), body);
  });
  await t.step("a bidirectional control is escaped, then HTML-escaped", () => {
    assert.ok(
      body.includes("<th>X-Trick</th><td>a\\u{202e}&lt;b&gt;</td>"),
      body,
    );
  });
});

Deno.test("formatAccessLog", async (t) => {
  const at = (ms: number) => new Date(Date.UTC(2026, 10, 2, 3, 4, 5) + ms);
  const entry = {
    client: "127.0.0.1",
    date: at(0),
    requestLine: "GET / HTTP/1.1",
    status: 200,
    bodyBytes: 512,
  };
  const cases: [what: string, entry: AccessLogEntry, line: string][] = [
    [
      "the Common Log Format",
      entry,
      '127.0.0.1 - - [02/Nov/2026:03:04:05 +0000] "GET / HTTP/1.1" 200 512',
    ],
    [
      "no request line (a timeout) and no body are -",
      { ...entry, client: "::1", requestLine: null, status: 408, bodyBytes: 0 },
      '::1 - - [02/Nov/2026:03:04:05 +0000] "-" 408 -',
    ],
    [
      "no client (a Unix socket) and a null size are -",
      { ...entry, client: null, bodyBytes: null },
      '- - - [02/Nov/2026:03:04:05 +0000] "GET / HTTP/1.1" 200 -',
    ],
    [
      "hostile bytes in the request line are escaped",
      { ...entry, requestLine: 'GET /"\x1b\\\xe9\u202e HTTP/1.1', status: 400 },
      '127.0.0.1 - - [02/Nov/2026:03:04:05 +0000] "GET /\\x22\\x1b\\x5c\\xe9\\u{202e} HTTP/1.1" 400 512',
    ],
    [
      "a line end in the request line cannot start a line of its own",
      { ...entry, requestLine: "GET /\r\n127.0.0.1 - - HTTP/1.1" },
      '127.0.0.1 - - [02/Nov/2026:03:04:05 +0000] "GET /\\x0d\\x0a127.0.0.1 - - HTTP/1.1" 200 512',
    ],
    [
      "with a Referer and User-Agent, the combined format, each escaped",
      { ...entry, referer: null, userAgent: 'a "b"\n' },
      '127.0.0.1 - - [02/Nov/2026:03:04:05 +0000] "GET / HTTP/1.1" 200 512 "-" "a \\x22b\\x22\\x0a"',
    ],
    // The time is made once a second: each new second gets its own.
    [
      "999 ms later, the same second",
      { ...entry, date: at(999) },
      '127.0.0.1 - - [02/Nov/2026:03:04:05 +0000] "GET / HTTP/1.1" 200 512',
    ],
    [
      "1000 ms later, the next second",
      { ...entry, date: at(1000) },
      '127.0.0.1 - - [02/Nov/2026:03:04:06 +0000] "GET / HTTP/1.1" 200 512',
    ],
    [
      "1 ms before, the second before",
      { ...entry, date: at(-1) },
      '127.0.0.1 - - [02/Nov/2026:03:04:04 +0000] "GET / HTTP/1.1" 200 512',
    ],
    [
      "a day later, the next day",
      { ...entry, date: at(86_400_000) },
      '127.0.0.1 - - [03/Nov/2026:03:04:05 +0000] "GET / HTTP/1.1" 200 512',
    ],
  ];
  for (const [what, entry, line] of cases) {
    await t.step(what, () => assert.equal(formatAccessLog(entry), line));
  }
});

// ---------------------------------------------------------------------------
// Host allow-list (DNS rebinding)

Deno.test("allowedHostsFor: loopback names, the listening address, extra names", async (t) => {
  const none = () => [];
  const cases: {
    hostname: string;
    extra?: string[];
    interfaces?: string[];
    allowed: string[];
  }[] = [
    { hostname: "127.0.0.1", allowed: ["localhost", "127.0.0.1", "[::1]"] },
    {
      hostname: "192.168.1.5",
      allowed: ["localhost", "127.0.0.1", "[::1]", "192.168.1.5"],
    },
    {
      hostname: "::1",
      extra: ["Board.Example.", "::2", ".example.org"],
      allowed: [
        "localhost",
        "127.0.0.1",
        "[::1]",
        "board.example",
        "[::2]",
        ".example.org",
      ],
    },
    {
      hostname: "0.0.0.0",
      interfaces: ["127.0.0.1", "10.0.0.7", "fe80::1"],
      allowed: [
        "localhost",
        "127.0.0.1",
        "[::1]",
        "0.0.0.0",
        "10.0.0.7",
        "[fe80::1]",
      ],
    },
  ];
  for (const { hostname, extra = [], interfaces, allowed } of cases) {
    await t.step(`${hostname} ${extra.join(" ")}`, () => {
      const list = allowedHostsFor(
        hostname,
        extra,
        interfaces ? () => interfaces : none,
      );
      assert.deepEqual(list, allowed);
    });
  }
});

Deno.test("requestHostName takes the name from Host or an absolute target, port left out", async (t) => {
  const cases: { head: string; name: string | null }[] = [
    {
      head: "GET / HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n",
      name: "127.0.0.1",
    },
    { head: "GET / HTTP/1.1\r\nHost: LocalHost\r\n\r\n", name: "localhost" },
    {
      head: "GET / HTTP/1.1\r\nHost: localhost.:80\r\n\r\n",
      name: "localhost",
    },
    { head: "GET / HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n", name: "[::1]" },
    {
      head: "GET / HTTP/1.1\r\nHost: evil.example:8080\r\n\r\n",
      name: "evil.example",
    },
    // RFC 9112 3.2.2: the absolute-form target wins over Host.
    {
      head: "GET http://evil.example/ HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
      name: "evil.example",
    },
    { head: "GET / HTTP/1.0\r\n\r\n", name: null },
  ];
  for (const { head, name } of cases) {
    await t.step(JSON.stringify(head), () => {
      const parsed = parse(head);
      assert.ok(parsed.ok);
      assert.equal(requestHostName(parsed.request), name);
    });
  }
});

Deno.test("isAllowedHost matches whole names, or subdomains of a leading-dot entry", async (t) => {
  const allowed = ["localhost", "127.0.0.1", "[::1]", ".example.com"];
  const cases: [string, boolean][] = [
    ["localhost", true],
    ["127.0.0.1", true],
    ["[::1]", true],
    ["example.com", true],
    ["a.b.example.com", true],
    ["evil.example", false],
    ["localhost.evil.example", false],
    ["evilexample.com", false],
    ["127.0.0.2", false],
    ["example.com.evil", false],
  ];
  for (const [name, expected] of cases) {
    await t.step(
      `${name} is ${expected ? "allowed" : "refused"}`,
      () => assert.equal(isAllowedHost(name, allowed), expected),
    );
  }
});

Deno.test("misdirectedResponse", async (t) => {
  const response = misdirectedResponse("evil.example<b>");
  await t.step("it is a 421 page", () => {
    assert.equal(response.status, 421);
    assert.match(response.body, /<h1>421 Misdirected Request<\/h1>/);
  });
  await t.step("it names the flag that allows the name", () => {
    assert.match(response.body, /--allowed-host evil\.example&lt;b&gt;/);
  });
  await t.step("the name is escaped", () => {
    assert.doesNotMatch(response.body, /<b>/);
  });
});

// ---------------------------------------------------------------------------
// Pages, responses from a custom responder, the command line

Deno.test("every page has its content inside one main landmark", () => {
  const pages = [
    respondTo(request({})).body,
    errorResponse(404).body,
    misdirectedResponse("x").body,
  ];
  for (const page of pages) {
    assert.equal(page.match(/<main>/g)?.length, 1);
    const inside = page.slice(page.indexOf("<main>"), page.indexOf("</main>"));
    assert.match(inside, /<h1>/);
    // Nothing shown outside main: only head elements before it, none after.
    const before = page.slice(0, page.indexOf("<main>"));
    assert.doesNotMatch(
      before.replace(/<style>[^]*<\/style>/, ""),
      /<(h1|p|table)\b/,
    );
    assert.match(
      page.slice(page.indexOf("</main>")),
      /^<\/main>\s*<\/html>\s*$/,
    );
  }
});

Deno.test("checkResponse refuses what cannot be sent honestly", async (t) => {
  const cases: {
    name: string;
    headers?: [string, string][];
    status?: number;
  }[] = [
    { name: "CRLF in a value", headers: [["X-A", "a\r\nSet-Cookie: x=1"]] },
    { name: "LF in a value", headers: [["X-A", "a\nb"]] },
    { name: "NUL in a value", headers: [["X-A", "a\0"]] },
    { name: "non-ASCII value", headers: [["X-A", "é"]] },
    { name: "name not a token", headers: [["X A", "1"]] },
    { name: "Content-Length", headers: [["Content-Length", "1"]] },
    { name: "Transfer-Encoding", headers: [["transfer-encoding", "chunked"]] },
    { name: "Connection", headers: [["Connection", "keep-alive"]] },
    { name: "status 99", status: 99 },
    { name: "status 600", status: 600 },
    { name: "status 204", status: 204 },
    { name: "status 304", status: 304 },
    { name: "status 200.5", status: 200.5 },
  ];
  for (const { name, headers, status = 200 } of cases) {
    await t.step(name, () => {
      assert.throws(
        () => checkResponse({ status, headers, body: "" }),
        TypeError,
      );
    });
  }
  await t.step("a good one", () => {
    checkResponse({
      status: 201,
      headers: [["Content-Type", "text/plain"]],
      body: "ok",
    });
  });
});

Deno.test("formatResponse: a Content-Type from the responder replaces the default", () => {
  const text = decode(formatResponse({
    status: 201,
    headers: [["Content-Type", "text/plain; charset=utf-8"]],
    body: "made",
  }));
  assert.match(text, /^HTTP\/1\.1 201 Created\r\n/);
  assert.equal(text.match(/content-type/gi)?.length, 1);
  assert.match(text, /\r\nContent-Type: text\/plain; charset=utf-8\r\n/);
  // A status without a phrase here gets an empty one (RFC 9112 4), not "undefined".
  assert.match(
    decode(formatResponse({ status: 299, body: "" })),
    /^HTTP\/1\.1 299 \r\n/,
  );
});

Deno.test("parseCommandLine reads the flags", () => {
  assert.deepEqual(parseCommandLine([]), {
    port: 8080,
    hostname: "127.0.0.1",
    allowedHosts: [],
    once: false,
    quiet: false,
    logFormat: "clf",
    help: false,
    version: false,
  });
  assert.deepEqual(
    parseCommandLine([
      "--port=0",
      "--allowed-host",
      "a.example",
      "--allowed-host=.b.example",
      "--quiet",
    ]).allowedHosts,
    ["a.example", ".b.example"],
  );
});

Deno.test("clientKey: the client an address stands for, for the per-client limit", async (t) => {
  const cases: [address: string, key: string][] = [
    ["127.0.0.2", "127.0.0.2"],
    ["::1", "0:0:0:0::/64"],
    ["2001:db8:1:2:aaaa::1", "2001:db8:1:2::/64"],
    ["2001:db8:1:2:bbbb:cccc:dddd:eeee", "2001:db8:1:2::/64"],
    ["2001:0DB8:0001:0002::", "2001:db8:1:2::/64"],
    ["[2001:db8::1]", "2001:db8:0:0::/64"],
    ["fe80::1", "fe80:0:0:0::/64"],
    ["::ffff:192.0.2.7", "192.0.2.7"],
    ["", "unknown"],
  ];
  for (const [address, key] of cases) {
    await t.step(`${address || '""'} -> ${key}`, () => {
      assert.equal(clientKey(address), key);
    });
  }
});
