// The board's HTTP rules, tested in-process: handler(new Request(...)).
import assert from "node:assert/strict";
import net from "node:net";
import { join } from "node:path";
import {
  type Board,
  type BoardOptions,
  clientKey,
  createBoardHandler,
  escapeHtml,
  findDuplicateKey,
  formatTime,
  hostName,
  isAllowedHost,
  isAllowedOrigin,
  isLongerThan,
  MAX_BODY_BYTES,
  MAX_BODY_PIECES,
  MAX_MESSAGE_CHARS,
  MAX_NAME_CHARS,
  MAX_STREAMS_PER_CLIENT,
  MAX_TRACKED_CLIENTS,
  normalizeBasePath,
  parseContentType,
  parsePositiveInteger,
  parseUrlEncoded,
  POST_BURST,
  POST_REFILL_MS,
  RateLimiter,
  SIGN_IN_BURST,
  StoreUnavailableError,
  tokensMatch,
  validateNewMessage,
} from "../message_board.ts";
import {
  failingStore,
  openTempBoard,
  startBoard,
  tempFolder,
} from "./_board.ts";

const BASE = "http://localhost:8080";

/** What Deno.serve tells the handler about a client at `hostname` (a person on this machine by default). */
function clientInfo(hostname = "127.0.0.1"): Deno.ServeHandlerInfo {
  return {
    remoteAddr: { transport: "tcp", hostname, port: 40000 },
    completed: Promise.resolve(),
  };
}

/**
 * Runs `fn` with a board on a fresh temp folder, then closes it. Its handler is called as
 * Deno.serve calls it, for a client on this machine unless `info` is given.
 */
async function withBoard(
  fn: (board: Board, folder: string) => Promise<void>,
  options: BoardOptions = {},
): Promise<void> {
  await using board = await openTempBoard({ log: () => {}, ...options });
  await fn({
    ...board,
    handler: (request, info = clientInfo()) => board.handler(request, info),
  }, board.folder);
}

function postForm(
  body: string | Uint8Array<ArrayBuffer>,
  headers: HeadersInit = {},
  path = "/",
): Request {
  return new Request(BASE + path, {
    method: "POST",
    headers: {
      "content-type": "application/x-www-form-urlencoded",
      ...headers,
    },
    body,
  });
}

function postApi(
  body: string | Uint8Array<ArrayBuffer>,
  headers: HeadersInit = {},
): Request {
  return new Request(BASE + "/api/messages", {
    method: "POST",
    headers: { "content-type": "application/json", ...headers },
    body,
  });
}

async function getPage(board: Board, path = "/", headers: HeadersInit = {}) {
  const response = await board.handler(new Request(BASE + path, { headers }));
  return { response, html: await response.text() };
}

async function storedCount(board: Board): Promise<number> {
  return (await board.store.listMessages({ limit: 1_000_000 })).messages.length;
}

Deno.test("page: GET / shows the board with both forms, safe headers and no inline script", async () => {
  await withBoard(async (board) => {
    for (const path of ["/", "/index.html"]) {
      const { response, html } = await getPage(board, path);
      assert.equal(response.status, 200);
      assert.equal(
        response.headers.get("content-type"),
        "text/html; charset=utf-8",
      );
      assert.equal(response.headers.get("x-content-type-options"), "nosniff");
      const csp = response.headers.get("content-security-policy") ?? "";
      assert.match(csp, /default-src 'none'/);
      // Only our own script file (live updates) may run; never inline script.
      assert.match(csp, /script-src 'self';/);
      assert.doesNotMatch(
        csp,
        /unsafe-inline|unsafe-eval|script-src [^;]*(\*|https?:|data:)/,
      );
      assert.match(html, /<title>Tiny Message Board<\/title>/);
      assert.match(html, /<h2 id="messages-heading">Messages<\/h2>/);
      assert.match(html, /<h2 id="new-heading">New Message<\/h2>/);
      assert.match(html, /<form method="post" action="\/">/);
      assert.match(html, /<textarea id="message" name="message"/);
      assert.match(html, /<button type="submit">Save Message<\/button>/);
      assert.match(
        html,
        /<button type="submit" name="clear" value="1">Clear Messages<\/button>/,
      );
      assert.match(html, /No messages yet\./);
      assert.doesNotMatch(
        html,
        /class="notice"/,
        "a writable board says nothing",
      );
      assert.match(html, /<link rel="stylesheet" href="\/style.css">/);
      assert.deepEqual(html.match(/<script[^>]*>/g), [
        '<script src="/board.js" defer>',
      ]);
      assert.match(
        html,
        /<script src="\/board.js" defer><\/script>/,
        "the script has no body",
      );
      assert.doesNotMatch(html, /<style| style=| on[a-z]+=/);
    }
  });
});

Deno.test("page: HEAD / is GET without the body", async () => {
  await withBoard(async (board) => {
    const head = await board.handler(
      new Request(BASE + "/", { method: "HEAD" }),
    );
    assert.equal(head.status, 200);
    assert.equal(head.headers.get("content-type"), "text/html; charset=utf-8");
    assert.equal(head.body, null);
  });
});

Deno.test("page: HEAD answers as GET does at every exit, without the body (table)", async () => {
  await using board = await openTempBoard({ log: () => {}, basePath: "/b" });
  const info = clientInfo();
  for (
    const [what, url, host, status] of [
      ["the page", "http://127.0.0.1/b/", null, 200],
      ["the stylesheet", "http://127.0.0.1/b/style.css", null, 200],
      ["the base path without its slash", "http://127.0.0.1/b", null, 308],
      ["an unknown path", "http://127.0.0.1/b/nothing", null, 404],
      ["a bad query", "http://127.0.0.1/b/api/messages?limit=0", null, 400],
      ["a Host not allowed", "http://evil.example/b/", null, 421],
      ["a Host no URL holds", "http://127.0.0.1/b/", "a@b", 400],
    ] as const
  ) {
    const ask = (method: string) =>
      board.handler(
        new Request(url, {
          method,
          headers: host === null ? {} : { host },
        }),
        info,
      );
    const get = await ask("GET");
    const getBody = await get.text();
    const head = await ask("HEAD");
    assert.equal(head.status, status, what);
    assert.equal(get.status, status, what);
    assert.deepEqual([...head.headers], [...get.headers], what);
    assert.equal(head.body, null, what);
    assert.equal(getBody.length > 0, status !== 308, what);
  }
});

Deno.test("page: /style.css is served as CSS", async () => {
  await withBoard(async (board) => {
    const css = await board.handler(new Request(BASE + "/style.css"));
    assert.equal(css.status, 200);
    assert.equal(css.headers.get("content-type"), "text/css; charset=utf-8");
    assert.match(await css.text(), /white-space: pre-wrap/);
  });
});

Deno.test("page: a form post", async (t) => {
  await withBoard(async (board) => {
    const response = await board.handler(
      postForm("message=Hello%0D%0Aworld+%26+all"),
    );
    await t.step("answers 303 to / without a body", () => {
      assert.equal(response.status, 303);
      assert.equal(response.headers.get("location"), "/");
      assert.equal(response.body, null);
    });
    const { html } = await getPage(board);
    const [message] = (await board.store.listMessages({ limit: 1 })).messages;
    await t.step("is stored with its line breaks as LF", () => {
      assert.equal(message.text, "Hello\nworld & all");
    });
    await t.step("shows on the page with its time", () => {
      assert.ok(
        html.includes(
          `Posted: <time datetime="${message.postedAt}">${
            formatTime(message.postedAt)
          }</time>`,
        ),
      );
    });
    await t.step("shows on the page with its line breaks, escaped", () => {
      assert.ok(html.includes(`<p class="text">Hello\nworld &amp; all</p>`));
      assert.doesNotMatch(html, /No messages yet/);
    });
  });
});

Deno.test("page: a multipart form post is accepted too", async () => {
  await withBoard(async (board) => {
    const form = new FormData();
    form.set("message", "from multipart");
    form.set("name", "Mo");
    const response = await board.handler(
      new Request(BASE + "/", { method: "POST", body: form }),
    );
    assert.equal(response.status, 303);
    const [message] = (await board.store.listMessages({ limit: 1 })).messages;
    assert.deepEqual([message.text, message.name], ["from multipart", "Mo"]);
  });
});

Deno.test("page: user text is escaped everywhere it appears", async () => {
  await withBoard(async (board) => {
    const text = `<script>alert("x")</script> & 'quotes'`;
    const name = `"><img src=x onerror=alert(1)>`;
    const body = new URLSearchParams({ message: text, name }).toString();
    assert.equal((await board.handler(postForm(body))).status, 303);
    const { html } = await getPage(board, "/", {
      cookie: `board_name=${encodeURIComponent(name)}`,
    });
    assert.ok(!html.includes("<script>alert"));
    assert.ok(!html.includes("<img src=x"));
    assert.ok(html.includes(escapeHtml(text)));
    assert.ok(html.includes(`<span class="name">${escapeHtml(name)}</span>`));
    assert.ok(
      html.includes(`value="${escapeHtml(name)}"`),
      "the name field is escaped too",
    );
  });
});

Deno.test("page: the poster's name", async (t) => {
  await withBoard(async (board) => {
    const posted = await board.handler(postForm("message=hi&name=Ann+Lee"));
    assert.equal(posted.status, 303);
    await t.step("is remembered in an HttpOnly, SameSite=Lax cookie", () => {
      const cookie = posted.headers.get("set-cookie") ?? "";
      assert.match(cookie, /^board_name=Ann%20Lee; /);
      assert.match(cookie, /; HttpOnly/);
      assert.match(cookie, /; SameSite=Lax/);
      assert.match(cookie, /; Path=\//);
      assert.doesNotMatch(
        cookie,
        /Secure/,
        "plain HTTP cannot use Secure cookies",
      );
    });

    const { html } = await getPage(board, "/", {
      cookie: "other=1; board_name=Ann%20Lee",
    });
    await t.step("fills the name field from the cookie", () => {
      assert.ok(
        html.includes(
          `name="name" maxlength="${MAX_NAME_CHARS}" autocomplete="nickname" value="Ann Lee"`,
        ),
      );
    });
    await t.step("is shown with the message", () => {
      assert.ok(html.includes(`by <span class="name">Ann Lee</span>`));
    });
    await t.step("posted again sets no new cookie", async () => {
      const same = await board.handler(
        postForm("message=again&name=Ann+Lee", {
          cookie: "board_name=Ann%20Lee",
        }),
      );
      assert.equal(same.headers.get("set-cookie"), null);
    });
    await t.step("left blank, is forgotten", async () => {
      const blank = await board.handler(
        postForm("message=anon&name=", { cookie: "board_name=Ann%20Lee" }),
      );
      assert.match(
        blank.headers.get("set-cookie") ?? "",
        /^board_name=; .*Max-Age=0/,
      );
      const [latest] = (await board.store.listMessages({ limit: 1 })).messages;
      assert.equal(latest.name, undefined);
    });
    await t.step("from a cookie we did not write is ignored", async () => {
      // A bad escape, a control character.
      for (const bad of ["board_name=%E0%A4%A", "board_name=a%0Ab"]) {
        const page = await getPage(board, "/", { cookie: bad });
        assert.ok(page.html.includes('autocomplete="nickname" value=""'), bad);
      }
    });
  });
});

Deno.test("page: over HTTPS the cookie is Secure", async () => {
  await withBoard(async (board) => {
    const response = await board.handler(
      new Request("https://localhost/", {
        method: "POST",
        headers: { "content-type": "application/x-www-form-urlencoded" },
        body: "message=hi&name=Ann",
      }),
    );
    assert.match(response.headers.get("set-cookie") ?? "", /; Secure$/);
  });
});

Deno.test("page: newest 50 first, with links to older pages", async () => {
  await withBoard(async (board) => {
    await Promise.all(
      Array.from(
        { length: 120 },
        (_, i) => board.store.appendMessage({ text: `n${i + 1}` }),
      ),
    );
    const ids = (html: string) =>
      [...html.matchAll(/id="m(\d+)"/g)].map((m) => Number(m[1]));
    const first = await getPage(board);
    assert.deepEqual(
      ids(first.html),
      Array.from({ length: 50 }, (_, i) => 120 - i),
    );
    assert.ok(
      first.html.includes(
        `<a href="/?before=71" rel="next">Older messages</a>`,
      ),
    );
    assert.ok(!first.html.includes("Newest messages"));

    const second = await getPage(board, "/?before=71");
    assert.deepEqual(
      ids(second.html),
      Array.from({ length: 50 }, (_, i) => 70 - i),
    );
    assert.ok(second.html.includes(`<a href="/">Newest messages</a>`));
    assert.ok(second.html.includes(`href="/?before=21"`));

    const last = await getPage(board, "/?before=21");
    assert.deepEqual(
      ids(last.html),
      Array.from({ length: 20 }, (_, i) => 20 - i),
    );
    assert.ok(!last.html.includes("Older messages"));

    const none = await getPage(board, "/?before=1");
    assert.match(none.html, /No older messages\./);

    for (const bad of ["abc", "-1", "0", "1e3", "99999999999999999999", ""]) {
      const { response } = await getPage(board, `/?before=${bad}`);
      assert.equal(response.status, 400, bad);
    }
  });
});

Deno.test("page: the Clear Messages form moves everything to an archive and empties the board", async () => {
  await withBoard(async (board, folder) => {
    await board.handler(postForm("message=one"));
    await board.handler(postForm("message=two"));
    const response = await board.handler(postForm("clear=1"));
    assert.equal(response.status, 303);
    assert.equal(response.headers.get("location"), "/");
    assert.match((await getPage(board)).html, /No messages yet\./);
    const archives = [];
    for await (const entry of Deno.readDir(folder)) {
      if (entry.name.includes(".cleared-")) archives.push(entry.name);
    }
    assert.equal(archives.length, 1);
    const archived = (await Deno.readTextFile(join(folder, archives[0]))).trim()
      .split("\n");
    assert.deepEqual(archived.map((line) => JSON.parse(line).text), [
      "one",
      "two",
    ]);
    // A message and a clear in one form is ambiguous: 400, and neither happens.
    await board.store.appendMessage({ text: "kept" });
    for (
      const body of [
        "message=three&clear=1",
        "message=hi&clear=",
        "clear=&message=",
      ]
    ) {
      const ambiguous = await board.handler(postForm(body));
      assert.equal(ambiguous.status, 400, body);
      assert.match(await ambiguous.text(), /either a message or clear/, body);
    }
    assert.equal(await storedCount(board), 1);
  });
});

Deno.test("page: a rejected post shows the page again with the error and the typed text kept", async () => {
  await withBoard(async (board) => {
    const draft = "x".repeat(MAX_MESSAGE_CHARS + 1);
    const response = await board.handler(postForm(`message=${draft}&name=Kim`));
    assert.equal(response.status, 422);
    const html = await response.text();
    assert.match(html, /<p class="error" role="alert">The message is too long/);
    assert.ok(
      html.includes(`required>\n${draft}</textarea>`),
      "the draft is kept",
    );
    assert.ok(html.includes('value="Kim"'), "the name is kept");
    assert.match(html, /<title>Tiny Message Board<\/title>/);
    assert.equal(await storedCount(board), 0);

    // A draft with markup and a leading blank line comes back escaped and whole.
    const tricky = "\n</textarea><script>x</script>";
    const again = await board.handler(
      postForm(new URLSearchParams({ message: tricky + "\u0007" }).toString()),
    );
    assert.equal(again.status, 422);
    assert.ok(
      (await again.text()).includes(
        `required>\n${escapeHtml(tricky + "\u0007")}</textarea>`,
      ),
    );
  });
});

/** A ReadableStream body without a Content-Length: sent chunked on the wire. */
function chunkedBody(
  chunks: number,
  size: number,
): { stream: ReadableStream<Uint8Array>; pulled: () => number } {
  let sent = 0;
  const stream = new ReadableStream<Uint8Array>({
    pull(controller) {
      if (sent === chunks) return controller.close();
      sent++;
      controller.enqueue(
        new TextEncoder().encode(sent === 1 ? "message=" : "a".repeat(size)),
      );
    },
  });
  return { stream, pulled: () => sent };
}

Deno.test("hostile: a chunked body over the limit", async (t) => {
  await withBoard(async (board) => {
    const { stream, pulled } = chunkedBody(1000, 16 * 1024); // 16 MB if read whole
    const request = new Request(BASE + "/", {
      method: "POST",
      headers: { "content-type": "application/x-www-form-urlencoded" },
      body: stream,
    });
    assert.equal(request.headers.get("content-length"), null);
    const response = await board.handler(request);
    await t.step("a form post gets 413", async () => {
      assert.equal(response.status, 413);
      assert.match(await response.text(), /too large/);
    });
    await t.step("it is not read to the end", () => {
      assert.ok(
        pulled() < 10,
        `read only a little past the limit (${pulled()} chunks)`,
      );
    });
    await t.step("nothing is stored", async () => {
      assert.equal(await storedCount(board), 0);
    });
    await t.step("an API post gets 413 in JSON", async () => {
      const api = await board.handler(
        new Request(BASE + "/api/messages", {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: chunkedBody(1000, 16 * 1024).stream,
        }),
      );
      assert.equal(api.status, 413);
      assert.match((await api.json()).error, /too large/);
    });
  });
});

Deno.test("hostile: a body that stalls", async (t) => {
  await using board = await openTempBoard({ bodyTimeoutMs: 50 });
  let cancelled = false;
  const stalled = new ReadableStream<Uint8Array>({
    start(controller) {
      controller.enqueue(new TextEncoder().encode("message=slow"));
    },
    cancel() {
      cancelled = true;
    },
  });
  const response = await board.handler(
    new Request(BASE + "/", {
      method: "POST",
      headers: { "content-type": "application/x-www-form-urlencoded" },
      body: stalled,
    }),
  );
  await t.step("gets 408", async () => {
    assert.equal(response.status, 408);
    assert.match(await response.text(), /took too long/);
  });
  await t.step("is cancelled", () => {
    assert.equal(cancelled, true);
  });
  await t.step("stores nothing", async () => {
    assert.equal(await storedCount(board), 0);
  });
});

Deno.test("hostile: a chunked body under the limit is read whole", async () => {
  await withBoard(async (board) => {
    const response = await board.handler(
      new Request(BASE + "/", {
        method: "POST",
        headers: { "content-type": "application/x-www-form-urlencoded" },
        body: chunkedBody(4, 100).stream,
      }),
    );
    assert.equal(response.status, 303);
    const [message] = (await board.store.listMessages({ limit: 1 })).messages;
    assert.equal(message.text, "a".repeat(300));
  });
});

Deno.test("hostile: regression: a body in very many small pieces gets 413 and is not read to the end", async () => {
  await withBoard(async (board) => {
    // 20,000 one-byte chunks (20 KB, under the size limit) took seconds to read one by one.
    const { stream, pulled } = chunkedBody(20_000, 1);
    const response = await board.handler(
      new Request(BASE + "/", {
        method: "POST",
        headers: { "content-type": "application/x-www-form-urlencoded" },
        body: stream,
      }),
    );
    assert.equal(response.status, 413);
    assert.match(await response.text(), /too many small pieces/);
    assert.ok(pulled() < MAX_BODY_PIECES + 10, `read ${pulled()} pieces`);
    assert.equal(await storedCount(board), 0);
    // A body in fewer, larger pieces is read whole.
    const fine = await board.handler(
      new Request(BASE + "/", {
        method: "POST",
        headers: { "content-type": "application/x-www-form-urlencoded" },
        body: chunkedBody(MAX_BODY_PIECES, 3).stream,
      }),
    );
    assert.equal(fine.status, 303);
  });
});

// Each bad form post: [what, request, status, text in the answer]. Nothing
// may be stored, and the board must keep serving afterwards.
const badFormPosts: [string, () => Request, number, RegExp][] = [
  [
    "a cross-site fetch",
    () => postForm("message=hi", { "sec-fetch-site": "cross-site" }),
    403,
    /other sites/,
  ],
  [
    "a foreign Origin",
    () => postForm("message=hi", { origin: "https://evil.example" }),
    403,
    /other sites/,
  ],
  [
    "Origin: null",
    () => postForm("message=hi", { origin: "null" }),
    403,
    /other sites/,
  ],
  [
    "another port as Origin",
    () => postForm("message=hi", { origin: "http://localhost:9999" }),
    403,
    /other sites/,
  ],
  [
    "an https:// Origin for a plain-HTTP board",
    () => postForm("message=hi", { origin: "https://localhost:8080" }),
    403,
    /other sites/,
  ],
  [
    "an ftp:// Origin",
    () => postForm("message=hi", { origin: "ftp://localhost:8080" }),
    403,
    /other sites/,
  ],
  [
    "a rebinding name as Origin",
    () => postForm("clear=1", { origin: "http://evil.example:8080" }),
    403,
    /other sites/,
  ],
  [
    "a clear from another site",
    () => postForm("clear=1", { origin: "https://evil.example" }),
    403,
    /other sites/,
  ],
  [
    "a blank message",
    () => postForm("message=+%0D%0A%09+"),
    422,
    /write a message/,
  ],
  ["no message field", () => postForm("name=Ann"), 422, /write a message/],
  ["an empty body", () => postForm(""), 422, /write a message/],
  [
    "a message one character too long",
    () => postForm(`message=${"é".repeat(MAX_MESSAGE_CHARS + 1)}`),
    422,
    /too long/,
  ],
  [
    "a control character",
    () => postForm("message=bell%07"),
    422,
    /control characters/,
  ],
  [
    "an escape sequence",
    () => postForm("message=%1B%5B2J"),
    422,
    /control characters/,
  ],
  [
    "a name too long",
    () => postForm(`message=hi&name=${"n".repeat(MAX_NAME_CHARS + 1)}`),
    422,
    /name is too long/,
  ],
  [
    "a name with a line break",
    () => postForm("message=hi&name=a%0Ab"),
    422,
    /single line/,
  ],
  [
    "a body over the limit",
    () => postForm(`message=${"a".repeat(MAX_BODY_BYTES)}`),
    413,
    /too large/,
  ],
  [
    "a JSON body",
    () => postForm('{"message":"hi"}', { "content-type": "application/json" }),
    415,
    /form post/,
  ],
  [
    "text/plain",
    () => postForm("message=hi", { "content-type": "text/plain" }),
    415,
    /form post/,
  ],
  [
    "no Content-Type",
    () =>
      new Request(BASE + "/", { method: "POST", body: new Uint8Array([1]) }),
    415,
    /form post/,
  ],
  [
    "a Latin-1 form",
    () =>
      postForm("message=hi", {
        "content-type": "application/x-www-form-urlencoded; charset=iso-8859-1",
      }),
    415,
    /UTF-8/,
  ],
  [
    "a broken percent-escape",
    () => postForm("message=100%"),
    400,
    /percent-escape/,
  ],
  [
    "a percent-escape that is not UTF-8",
    () => postForm("message=%FF%FE"),
    400,
    /percent-escape/,
  ],
  [
    "raw bytes that are not UTF-8",
    () => postForm(new Uint8Array([0x6d, 0x3d, 0xc3, 0x28])),
    400,
    /UTF-8/,
  ],
  [
    "the message field twice",
    () => postForm("message=a&message=b"),
    400,
    /twice/,
  ],
  [
    "regression: a multipart part that is not UTF-8 (was stored as U+FFFD)",
    () =>
      postForm(
        new Uint8Array([
          ...new TextEncoder().encode(
            '--x\r\nContent-Disposition: form-data; name="message"\r\n\r\nh',
          ),
          0xe9,
          ...new TextEncoder().encode("\r\n--x--\r\n"),
        ]),
        { "content-type": "multipart/form-data; boundary=x" },
      ),
    400,
    /UTF-8/,
  ],
  [
    "regression: a gzip body (was read as it is)",
    () => postForm("message=hi", { "content-encoding": "gzip" }),
    415,
    /Content-Encoding/,
  ],
  [
    "a broken multipart body",
    () =>
      postForm("garbage", {
        "content-type": "multipart/form-data; boundary=x",
      }),
    400,
    /could not be read/,
  ],
];

Deno.test("hostile: bad form posts", async (t) => {
  await withBoard(async (board) => {
    for (const [what, makeRequest, status, text] of badFormPosts) {
      await t.step(
        `${what}: a page saying why, with ${status}`,
        async () => {
          const response = await board.handler(makeRequest());
          assert.equal(response.status, status);
          assert.match(
            response.headers.get("content-type") ?? "",
            /^text\/html/,
          );
          assert.equal(
            response.headers.get("x-content-type-options"),
            "nosniff",
          );
          assert.match(await response.text(), text);
        },
      );
    }
    await t.step("none of them is stored", async () => {
      assert.equal(await storedCount(board), 0);
    });
    await t.step("the board still serves its page", async () => {
      const { response, html } = await getPage(board);
      assert.equal(response.status, 200);
      assert.match(html, /No messages yet\./);
    });
  });
});

Deno.test("hostile: a file upload in a multipart form is refused", async () => {
  await withBoard(async (board) => {
    const form = new FormData();
    form.set("message", new File(["hi"], "a.txt"));
    const response = await board.handler(
      new Request(BASE + "/", { method: "POST", body: form }),
    );
    assert.equal(response.status, 400);
    await response.body?.cancel();
    assert.equal(await storedCount(board), 0);
  });
});

Deno.test("hostile: isAllowedOrigin needs this board's scheme and port and an allowed host (table)", () => {
  const http = { protocol: "http:", host: "localhost:8080", port: "8080" };
  const https = { protocol: "https:", host: "board.example", port: "" };
  const cases: [string, typeof http, string[], boolean][] = [
    ["http://localhost:8080", http, [], true],
    ["http://127.0.0.1:8080", http, [], true], // another name of this machine, same port
    ["http://[::1]:8080", http, [], true],
    ["http://LOCALHOST:8080", http, [], true], // hosts are case-insensitive
    ["https://localhost:8080", http, [], false], // an https page for a plain-HTTP board
    ["ftp://localhost:8080", http, [], false],
    ["http://localhost", http, [], false],
    ["http://localhost:8081", http, [], false],
    ["http://localhost.evil.example:8080", http, [], false],
    ["http://evil.example:8080", http, [], false], // DNS rebinding
    ["http://evil.example:8080", http, ["evil.example"], true], // unless allowed
    ["https://board.example", https, ["board.example"], true],
    ["https://board.example:443", https, ["board.example"], true],
    ["http://board.example", https, ["board.example"], false],
    ["https://www.board.example", https, [".board.example"], true],
    ["https://board.example.evil", https, [".board.example"], false],
    ["null", http, [], false],
    ["", http, [], false],
  ];
  for (const [origin, target, allowed, ok] of cases) {
    assert.equal(
      isAllowedOrigin(origin, target, allowed),
      ok,
      `${origin} for ${target.protocol}//${target.host} ${allowed}`,
    );
  }
});

Deno.test("hostile: hostName takes the name out of a Host value (table)", () => {
  const names: [string, string | null][] = [
    ["localhost:8080", "localhost"],
    ["Board.Example", "board.example"],
    ["localhost.", "localhost"],
    ["[::1]:8080", "[::1]"],
    ["[::1]", "[::1]"],
    ["127.0.0.1:80", "127.0.0.1"],
    ["", null],
    [":8080", null],
    ["[::1", null],
    ["a:b:c", null],
    ["[::1]x", null],
  ];
  for (const [host, name] of names) assert.equal(hostName(host), name, host);
});

Deno.test("hostile: isAllowedHost allows the loopback names and the listed ones (table)", () => {
  const allowed: [string, string[], boolean][] = [
    ["localhost", [], true],
    ["127.0.0.1", [], true],
    ["[::1]", [], true],
    ["evil.example", [], false],
    ["127.0.0.2", [], false],
    ["board.example", ["board.example"], true],
    ["www.board.example", ["board.example"], false],
    ["www.board.example", [".board.example"], true],
    ["board.example", [".board.example"], true],
    ["evilboard.example", [".board.example"], false],
  ];
  for (const [name, list, ok] of allowed) {
    assert.equal(isAllowedHost(name, list), ok, `${name} in ${list}`);
  }
});

Deno.test("hostile: a same-origin browser post is accepted", async () => {
  await withBoard(async (board) => {
    const response = await board.handler(
      postForm("message=hi", { origin: BASE, "sec-fetch-site": "same-origin" }),
    );
    assert.equal(response.status, 303);
  });
});

Deno.test("hostile: unknown routes", async (t) => {
  await withBoard(async (board) => {
    const cases: [string, string, number, string | null][] = [
      ["GET", "/nope", 404, null],
      ["GET", "/../etc/passwd", 404, null],
      ["GET", "/api/nope", 404, null],
      ["GET", "/favicon.ico", 404, null],
      ["PUT", "/", 405, "GET, HEAD, POST"],
      ["DELETE", "/", 405, "GET, HEAD, POST"],
      ["PATCH", "/api/messages", 405, "GET, HEAD, POST"],
      ["POST", "/style.css", 405, "GET, HEAD"],
    ];
    for (const [method, path, status, allow] of cases) {
      const name = status === 404
        ? `${method} ${path}: an unknown path gets 404`
        : `${method} ${path}: a method not allowed gets 405 with Allow`;
      await t.step(name, async () => {
        const response = await board.handler(
          new Request(BASE + path, { method }),
        );
        assert.equal(response.status, status);
        assert.equal(response.headers.get("allow"), allow);
        const body = await response.text();
        if (path.startsWith("/api/")) {
          assert.equal(typeof JSON.parse(body).error, "string");
        }
      });
    }
  });
});

Deno.test("api: GET /api/messages pages with before and limit", async () => {
  await withBoard(async (board) => {
    for (let i = 1; i <= 5; i++) {
      await board.store.appendMessage({
        text: `t${i}`,
        name: i === 2 ? "Bo" : undefined,
      });
    }
    const get = async (query: string) => {
      const response = await board.handler(
        new Request(`${BASE}/api/messages${query}`),
      );
      return {
        status: response.status,
        type: response.headers.get("content-type"),
        json: await response.json(),
      };
    };
    const all = await get("");
    assert.equal(all.status, 200);
    assert.equal(all.type, "application/json; charset=utf-8");
    assert.deepEqual(all.json.messages.map((m: { id: number }) => m.id), [
      5,
      4,
      3,
      2,
      1,
    ]);
    assert.equal(all.json.older, null);
    assert.deepEqual(Object.keys(all.json.messages[3]), [
      "id",
      "text",
      "name",
      "postedAt",
    ]);
    assert.equal(all.json.messages[3].name, "Bo");
    assert.ok(
      !("name" in all.json.messages[0]),
      "no name key when none was given",
    );

    const page = await get("?limit=2");
    assert.deepEqual(page.json.messages.map((m: { id: number }) => m.id), [
      5,
      4,
    ]);
    assert.equal(page.json.older, "/api/messages?before=4&limit=2");
    const older = await get("?before=4&limit=2");
    assert.deepEqual(older.json.messages.map((m: { id: number }) => m.id), [
      3,
      2,
    ]);

    for (
      const bad of [
        "?limit=0",
        "?limit=101",
        "?limit=abc",
        "?limit=1e2",
        "?limit=-5",
        `?limit=${"9".repeat(400)}`,
        "?before=x",
        "?before=2.5",
      ]
    ) {
      const response = await get(bad);
      assert.equal(response.status, 400, bad);
      assert.equal(typeof response.json.error, "string", bad);
    }
  });
});

Deno.test("api: POST /api/messages answers 201 with the stored message", async () => {
  await withBoard(async (board) => {
    const response = await board.handler(
      postApi(JSON.stringify({ text: "via API", name: "Cy" })),
    );
    assert.equal(response.status, 201);
    const message = await response.json();
    assert.deepEqual(Object.keys(message), ["id", "text", "name", "postedAt"]);
    assert.deepEqual([message.id, message.text, message.name], [
      1,
      "via API",
      "Cy",
    ]);
    assert.deepEqual((await board.store.listMessages({ limit: 1 })).messages, [
      message,
    ]);
    // name may be null or left out.
    const plain = await board.handler(
      postApi(JSON.stringify({ text: "no name", name: null })),
    );
    assert.equal(plain.status, 201);
    assert.ok(!("name" in (await plain.json())));
    // Text that is valid but unusual is kept exactly: emoji, tabs, RTL marks.
    const unusual = "👍\tok \u202eevil\u202c";
    const kept = await board.handler(
      postApi(JSON.stringify({ text: unusual })),
    );
    assert.equal((await kept.json()).text, unusual);
  });
});

const badApiPosts: [string, () => Request, number][] = [
  ["bad JSON", () => postApi("{text: 'hi'}"), 400],
  [
    "regression: a br body (was read as it is)",
    () => postApi('{"text":"hi"}', { "content-encoding": "br" }),
    415,
  ],
  ["an empty body", () => postApi(""), 400],
  ["a JSON array", () => postApi('["hi"]'), 400],
  ["JSON null", () => postApi("null"), 400],
  ["a missing text", () => postApi('{"name":"Ann"}'), 400],
  ["a number as text", () => postApi('{"text":42}'), 400],
  ["a number as name", () => postApi('{"text":"hi","name":42}'), 400],
  ["an unknown field", () => postApi('{"text":"hi","admin":true}'), 400],
  ["a duplicate key", () => postApi('{"text":"a","text":"b"}'), 400],
  [
    "a duplicate key, escaped",
    () => postApi('{"text":"a","te\\u0078t":"b"}'),
    400,
  ],
  [
    "a duplicate name",
    () => postApi('{"name":"a","text":"hi","name":"b"}'),
    400,
  ],
  ["a lone surrogate", () => postApi('{"text":"bad \\ud800 half"}'), 400],
  [
    "bytes that are not UTF-8",
    () => postApi(new Uint8Array([0x7b, 0x22, 0xff, 0x22, 0x7d])),
    400,
  ],
  ["a blank text", () => postApi('{"text":"   "}'), 422],
  [
    "a text too long",
    () => postApi(JSON.stringify({ text: "a".repeat(MAX_MESSAGE_CHARS + 1) })),
    422,
  ],
  ["a NUL character", () => postApi('{"text":"a\\u0000b"}'), 422],
  [
    "form data",
    () =>
      postApi("text=hi", {
        "content-type": "application/x-www-form-urlencoded",
      }),
    415,
  ],
  [
    "no Content-Type",
    () =>
      new Request(BASE + "/api/messages", {
        method: "POST",
        body: new Uint8Array([1]),
      }),
    415,
  ],
  [
    "a body over the limit",
    () => postApi(JSON.stringify({ text: "a".repeat(MAX_BODY_BYTES) })),
    413,
  ],
  [
    "a cross-site fetch",
    () => postApi('{"text":"hi"}', { "sec-fetch-site": "cross-site" }),
    403,
  ],
];

Deno.test("api: bad posts", async (t) => {
  await withBoard(async (board) => {
    for (const [what, makeRequest, status] of badApiPosts) {
      await t.step(`${what}: a JSON error with ${status}`, async () => {
        const response = await board.handler(makeRequest());
        assert.equal(response.status, status);
        assert.equal(
          response.headers.get("content-type"),
          "application/json; charset=utf-8",
        );
        const { error } = await response.json();
        assert.equal(typeof error, "string");
      });
    }
    await t.step("none of them is stored", async () => {
      assert.equal(await storedCount(board), 0);
    });
  });
});

Deno.test("errors: store failures", async (t) => {
  const silence = console.error;
  console.error = () => {};
  try {
    const unavailable = createBoardHandler(
      failingStore(new StoreUnavailableError("disk gone")),
    );
    await t.step(
      "a store that cannot write gives the API 503 with Retry-After",
      async () => {
        const api = await unavailable(postApi('{"text":"hi"}'));
        assert.equal(api.status, 503);
        assert.equal(
          api.headers.get("retry-after"),
          "5",
          "a default Retry-After",
        );
        assert.doesNotMatch((await api.json()).error, /disk gone/);
      },
    );
    await t.step(
      "a store that cannot write gives a form post 503",
      async () => {
        const page = await unavailable(postForm("message=hi"));
        assert.equal(page.status, 503);
        assert.match(await page.text(), /unavailable right now/);
      },
    );
    const soon = createBoardHandler(
      failingStore(
        Object.assign(new StoreUnavailableError("disk full"), {
          retryAfterSeconds: 17,
        }),
      ),
    );
    await t.step("Retry-After is the store's retryAfterSeconds", async () => {
      const later = await soon(postApi('{"text":"hi"}'));
      assert.equal(later.headers.get("retry-after"), "17");
      await later.body?.cancel();
    });
    await t.step("the page says it cannot take posts for now", async () => {
      const board = await (await soon(new Request(BASE + "/"))).text();
      assert.match(
        board,
        /<p class="notice" role="status">The board cannot take new messages for a moment/,
      );
    });
    await t.step("other failures are 500 without details", async () => {
      const secret = "/secret/path/messages.jsonl: EIO";
      const broken = createBoardHandler(failingStore(new Error(secret)));
      for (const request of [postApi('{"text":"hi"}'), postForm("clear=1")]) {
        const response = await broken(request, clientInfo());
        assert.equal(response.status, 500);
        const body = await response.text();
        assert.match(body, /Something went wrong on the server\./);
        assert.doesNotMatch(body, /\/secret\/path|EIO/);
      }
    });
  } finally {
    console.error = silence;
  }
});

Deno.test("helpers: validateNewMessage normalises line breaks and trims the name", () => {
  assert.deepEqual(validateNewMessage("Hello\r\nworld\rend", " Ann "), {
    text: "Hello\nworld\nend",
    name: "Ann",
  });
  assert.deepEqual(validateNewMessage("hi", "   "), { text: "hi" });
  assert.deepEqual(validateNewMessage("hi", null), { text: "hi" });
});

Deno.test("helpers: isLongerThan counts characters, not UTF-16 units", () => {
  assert.equal(
    isLongerThan("👍".repeat(MAX_MESSAGE_CHARS), MAX_MESSAGE_CHARS),
    false,
  );
  assert.equal(
    isLongerThan("👍".repeat(MAX_MESSAGE_CHARS + 1), MAX_MESSAGE_CHARS),
    true,
  );
});

/** The status validateNewMessage refuses `text` and `name` with, or 0 when it takes them. */
function statusOf(text: unknown, name?: unknown): number {
  try {
    validateNewMessage(text, name);
    return 0;
  } catch (error) {
    return (error as { status: number }).status;
  }
}

Deno.test("helpers: validateNewMessage refuses bad text or names with 400 or 422 (table)", () => {
  assert.equal(statusOf(""), 422);
  assert.equal(statusOf("\u00a0\u2003"), 422); // only Unicode spaces
  assert.equal(statusOf("a\u0085b"), 422); // C1 control (NEL)
  assert.equal(statusOf("\udc00"), 400);
  assert.equal(statusOf(undefined), 400);
  assert.equal(statusOf("ok", ["Ann"]), 400);
  assert.equal(statusOf("ok", "tab\there"), 422);
  // Regression: line and paragraph separators made a "single line" name two.
  assert.equal(statusOf("ok", "Ann\u2028Admin"), 422);
  assert.equal(statusOf("ok", "Ann\u2029Admin"), 422);
  assert.equal(statusOf("line\u2028separator"), 0); // a message may have several lines
});

Deno.test("helpers: regression: validateNewMessage refuses invisible text and endless characters (table)", () => {
  const marks = (n: number) =>
    Array.from({ length: n }, (_, i) => String.fromCodePoint(0x300 + i % 0x70))
      .join("");
  const cases: [string, string, string | undefined, number][] = [
    // Nothing a reader can see: zero-width, format and filler characters only.
    [
      "zero-width spaces and joiners",
      "\u200b\u200c\u200d\u2060\ufeff",
      undefined,
      422,
    ],
    ["bidi controls only", "\u202e\u2066\u2069", undefined, 422],
    ["Hangul fillers", "\u3164\uffa0\u115f", undefined, 422],
    ["a braille blank", "\u2800 \u2800", undefined, 422],
    ["soft hyphens and a variation selector", "\u00ad\ufe0f", undefined, 422],
    ["an invisible name", "hi", "\u200b\u2800", 422],
    // One character (grapheme cluster) no line can break: 3,000 marks on one letter made
    // the page 5,477 px wide in Chromium; so did a thousand emoji joined with ZWJ.
    ["3,000 marks on one letter", `Z${marks(3000)}`, undefined, 422],
    ["31 marks on one letter", `Z${marks(31)}`, undefined, 422],
    ["1,000 emoji joined by ZWJ", "👍\u200d".repeat(1000), undefined, 422],
    ["a name with 100 marks", "hi", `Ann${marks(100)}`, 422],
    // What real text needs stays allowed.
    ["30 marks on one letter", `Z${marks(30)}`, undefined, 0],
    ["a zero-width space in a word", "a\u200bb", undefined, 0],
    ["emoji sequences", "👩🏽‍❤️‍💋‍👨🏻 🏴󠁧󠁢󠁳󠁣󠁴󠁿 1️⃣ 👨‍👩‍👧‍👦", undefined, 0],
    [
      "Hindi, Vietnamese, Hebrew with points",
      "क्षत्रिय Tiếng Việt שָׁלוֹם",
      undefined,
      0,
    ],
    ["a name with an RTL script", "hi", "مريم", 0],
    ["many marks on many letters", `e\u0301`.repeat(2000), undefined, 0],
  ];
  for (const [what, text, name, status] of cases) {
    assert.equal(statusOf(text, name), status, what);
  }
});

Deno.test("helpers: parseUrlEncoded decodes a form body", () => {
  assert.deepEqual(
    parseUrlEncoded(
      new TextEncoder().encode("message=Hi+there%21&name=Ann&&flag"),
    ),
    new Map([
      ["message", "Hi there!"],
      ["name", "Ann"],
      ["flag", ""],
    ]),
  );
});

Deno.test("helpers: parseContentType lowercases the type and charset", () => {
  assert.deepEqual(
    parseContentType('Application/X-WWW-Form-Urlencoded ; Charset="UTF-8"'),
    {
      type: "application/x-www-form-urlencoded",
      charset: "utf-8",
    },
  );
  assert.deepEqual(parseContentType(null), { type: "", charset: undefined });
});

Deno.test("helpers: parsePositiveInteger takes plain digits from 1 to the maximum (table)", () => {
  const integers: [string, number, number | null][] = [
    ["42", 100, 42],
    ["100", 100, 100],
    ["101", 100, null],
    ["0", 100, null],
    ["007", 100, null],
    ["+5", 100, null],
    [" 5", 100, null],
    ["5.0", 100, null],
    ["1e2", 1000, null],
    ["0x10", 100, null],
    ["99999999999999999", Number.MAX_SAFE_INTEGER, null],
  ];
  for (const [text, max, expected] of integers) {
    assert.equal(parsePositiveInteger(text, max), expected, text);
  }
});

Deno.test("helpers: escapeHtml escapes the five special characters", () => {
  assert.equal(
    escapeHtml(`<a href="x">'&'</a>`),
    "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;",
  );
});

Deno.test("helpers: formatTime shows a UTC time to the second", () => {
  assert.equal(
    formatTime("2026-11-21T22:44:51.000Z"),
    "2026-11-21 22:44:51 UTC",
  );
});

Deno.test("helpers: findDuplicateKey finds a key sent twice in one object (table)", () => {
  const cases: [string, string | null][] = [
    ['{"text":"a","text":"b"}', "text"],
    ['{"text":"a","te\\u0078t":"b"}', "text"],
    ['{"a":1,"b":{"a":2}}', null], // the same key in another object is fine
    ['{"a":[{"b":1},{"b":2}]}', null],
    ['{"a":{"b":1,"b":2}}', "b"],
    ['{"a":"{\\"a\\":1}","b":"a"}', null], // keys inside strings are text
    ['{"a\\"":1,"a":2}', null],
    ['["a","a"]', null],
    ["{}", null],
    ['{"":1,"":2}', ""],
  ];
  for (const [json, duplicate] of cases) {
    JSON.parse(json); // each case is valid JSON
    assert.equal(findDuplicateKey(json), duplicate, json);
  }
});

Deno.test("hosts: a Host that is not allowed gets 421 on every route, with a plain explanation", async () => {
  await withBoard(async (board) => {
    for (
      const path of [
        "/",
        "/style.css",
        "/board.js",
        "/events",
        "/api/messages",
        "/nope",
      ]
    ) {
      for (
        const host of [
          "evil.example",
          "evil.example:8080",
          "127.0.0.2:8080",
          "localhost.evil.example",
        ]
      ) {
        const response = await board.handler(
          new Request(BASE + path, { headers: { host } }),
        );
        assert.equal(response.status, 421, `${host} ${path}`);
        assert.equal(
          response.headers.get("content-type"),
          "text/plain; charset=utf-8",
        );
        assert.match(await response.text(), /--allowed-host/);
      }
    }
    // The board's own names answer, whatever the port or the case.
    for (
      const host of [
        "localhost:8080",
        "LOCALHOST",
        "127.0.0.1:1",
        "[::1]:8080",
        "localhost.",
      ]
    ) {
      const response = await board.handler(
        new Request(BASE + "/", { headers: { host } }),
      );
      assert.equal(response.status, 200, host);
      await response.body?.cancel();
    }
    // A post to a rebinding name stores nothing.
    const post = await board.handler(
      postForm("message=hi", { host: "evil.example:8080" }),
    );
    assert.equal(post.status, 421);
    await post.body?.cancel();
    assert.equal(await storedCount(board), 0);
  });
});

Deno.test("hosts: allowedHosts", async (t) => {
  await withBoard(async (board) => {
    const status = async (host: string) => {
      const response = await board.handler(
        new Request(BASE + "/", { headers: { host } }),
      );
      await response.body?.cancel();
      return response.status;
    };
    await t.step("a listed name is allowed, any case or port", async () => {
      assert.equal(await status("board.example"), 200);
      assert.equal(await status("Board.Example:8443"), 200);
    });
    await t.step("a subdomain of a name without the dot gets 421", async () => {
      assert.equal(await status("www.board.example"), 421);
    });
    await t.step(
      "a leading dot allows the name and its subdomains",
      async () => {
        assert.equal(await status("a.team.example"), 200);
        assert.equal(await status("team.example"), 200);
      },
    );
    await t.step("a name that only ends the same gets 421", async () => {
      assert.equal(await status("evilteam.example"), 421);
    });
  }, { allowedHosts: ["board.example", ".team.example"] });
});

/** Sends one raw HTTP/1.1 request over a real socket from `localAddress`; returns the answer. */
function rawRequest(
  port: number,
  head: string,
  body = "",
  localAddress = "127.0.0.1",
): Promise<{ status: number; headers: Headers; body: string }> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(
      { host: "127.0.0.1", port, localAddress },
      () => {
        // Not end(): the server may drop a half-closed connection before it answers.
        socket.write(
          `${head}\r\nConnection: close\r\nContent-Length: ${
            new TextEncoder().encode(body).length
          }\r\n\r\n${body}`,
        );
      },
    );
    let text = "";
    socket.setEncoding("utf8");
    socket.on("data", (chunk: string) => text += chunk);
    socket.on("error", reject);
    socket.on("close", () => {
      const [top, ...rest] = text.split("\r\n\r\n");
      const [statusLine, ...lines] = top.split("\r\n");
      const headers = new Headers();
      for (const line of lines) {
        const colon = line.indexOf(":");
        headers.append(line.slice(0, colon), line.slice(colon + 1).trim());
      }
      resolve({
        status: Number(statusLine.split(" ")[1]),
        headers,
        body: rest.join("\r\n\r\n"),
      });
    });
  });
}

/** A board served on a real socket at 127.0.0.1 port 0, as the CLI serves it. */
async function withServedBoard(
  fn: (port: number, board: Board) => Promise<void>,
  options: BoardOptions = {},
): Promise<void> {
  await using board = await openTempBoard({ log: () => {}, ...options });
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen() {} },
    board.handler,
  );
  try {
    await fn(server.addr.port, board);
  } finally {
    board.endEventStreams();
    await server.shutdown();
  }
}

Deno.test("hosts: regression: a rebinding page's clear (Host and Origin evil.example) does not clear", async () => {
  await withServedBoard(async (port, board) => {
    await board.store.appendMessage({ text: "still here" });
    const answer = await rawRequest(
      port,
      `POST / HTTP/1.1\r\nHost: evil.example:${port}\r\nOrigin: http://evil.example:${port}\r\n` +
        "Content-Type: application/x-www-form-urlencoded",
      "clear=1",
    );
    assert.equal(answer.status, 421);
    assert.match(answer.body, /evil\.example/);
    const api = await rawRequest(
      port,
      `POST /api/messages HTTP/1.1\r\nHost: evil.example:${port}\r\nOrigin: http://evil.example:${port}\r\n` +
        "Content-Type: application/json",
      '{"text":"from a rebinding page"}',
    );
    assert.equal(api.status, 421);
    const { messages } = await board.store.listMessages({ limit: 10 });
    assert.deepEqual(messages.map((m) => m.text), ["still here"]);
  });
});

Deno.test("limits: posts per client", async (t) => {
  await withServedBoard(async (port, board) => {
    const post = (from: string, text: string) =>
      rawRequest(
        port,
        `POST /api/messages HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nContent-Type: application/json`,
        JSON.stringify({ text }),
        from,
      );
    await t.step(`${POST_BURST} posts at once are taken`, async () => {
      for (let i = 1; i <= POST_BURST; i++) {
        const { status } = await post("127.0.0.2", `a${i}`);
        assert.equal(status, 201, `post ${i}`);
      }
    });
    await t.step("the next API post gets 429 with Retry-After", async () => {
      const refused = await post("127.0.0.2", "one too many");
      assert.equal(refused.status, 429);
      const retryAfter = Number(refused.headers.get("retry-after"));
      assert.ok(
        retryAfter >= 1 && retryAfter <= POST_REFILL_MS / 1000,
        `Retry-After ${retryAfter}`,
      );
      assert.match(JSON.parse(refused.body).error, /too fast/);
    });
    await t.step("the next form post gets 429, the draft kept", async () => {
      const form = await rawRequest(
        port,
        `POST / HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nContent-Type: application/x-www-form-urlencoded`,
        "message=my+draft",
        "127.0.0.2",
      );
      assert.equal(form.status, 429);
      assert.ok(Number(form.headers.get("retry-after")) >= 1);
      assert.match(form.body, /too fast/);
      assert.match(form.body, /my draft<\/textarea>/);
    });
    await t.step("another client is not held up", async () => {
      assert.equal((await post("127.0.0.3", "b1")).status, 201);
    });
    await t.step("only the posts taken are stored", async () => {
      assert.equal(await storedCount(board), POST_BURST + 1);
    });
  });
});

Deno.test("limits: postBurst and postRefillMs set the served board's post bucket", async () => {
  // The refill itself is RateLimiter's, tested with an explicit clock below; here a
  // refill interval no test run can outlast shows that both options reach the board.
  await withServedBoard(async (port) => {
    const post = () =>
      rawRequest(
        port,
        `POST /api/messages HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json`,
        '{"text":"hi"}',
        "127.0.0.2",
      );
    assert.equal((await post()).status, 201);
    assert.equal((await post()).status, 201);
    const refused = await post();
    assert.equal(refused.status, 429);
    const retryAfter = Number(refused.headers.get("retry-after"));
    assert(
      retryAfter > 3000 && retryAfter <= 3600,
      `Retry-After: ${retryAfter}`,
    );
  }, { postBurst: 2, postRefillMs: 3_600_000 });
});

Deno.test("limits: live-update streams per client", async (t) => {
  await withServedBoard(async (port) => {
    const sockets: net.Socket[] = [];
    /** Opens an event stream from `from`; resolves with the status line's code. */
    const open = (from: string) =>
      new Promise<number>((resolve, reject) => {
        const socket = net.connect({
          host: "127.0.0.1",
          port,
          localAddress: from,
        }, () => {
          socket.write(`GET /events HTTP/1.1\r\nHost: localhost\r\n\r\n`);
        });
        sockets.push(socket);
        socket.setEncoding("utf8");
        socket.once("data", (chunk: string) =>
          resolve(Number(chunk.split(" ")[1])));
        socket.on("error", reject);
      });
    try {
      await t.step(`${MAX_STREAMS_PER_CLIENT} streams are opened`, async () => {
        for (let i = 0; i < MAX_STREAMS_PER_CLIENT; i++) {
          assert.equal(await open("127.0.0.2"), 200, `stream ${i + 1}`);
        }
      });
      await t.step("the next one gets 429", async () => {
        assert.equal(await open("127.0.0.2"), 429);
      });
      await t.step("another client still connects", async () => {
        assert.equal(await open("127.0.0.3"), 200);
      });
    } finally {
      await Promise.all(sockets.map((socket) =>
        new Promise((resolve) => {
          socket.once("close", resolve);
          socket.destroy();
        })
      ));
    }
  });
});

Deno.test("limits: regression: a dropped stream keeps its client's slot until its connection is done", async () => {
  await withBoard(async (board) => {
    // As Deno.serve says it: `completed` settles once the response is sent or the client left.
    const connection = Promise.withResolvers<void>();
    const stuck = { ...clientInfo("127.0.0.2"), completed: connection.promise };
    const streams: Response[] = [];
    for (let i = 0; i < MAX_STREAMS_PER_CLIENT; i++) {
      const response = await board.handler(
        new Request(BASE + "/events"),
        stuck,
      );
      assert.equal(response.status, 200);
      streams.push(response); // never read
    }
    // Too much for readers that never read: each stream is dropped.
    for (let i = 0; i < 20; i++) {
      await board.store.appendMessage({ text: "x".repeat(4000) });
    }
    for (const response of streams) {
      await assert.rejects(response.body!.getReader().read(), /fell behind/);
    }
    // Their connections still hold the bytes in a socket nobody reads: no new slots yet
    // (they used to be given back at once, so one client could pile up connections).
    const more = await board.handler(new Request(BASE + "/events"), stuck);
    assert.equal(more.status, 429);
    await more.body?.cancel();
    connection.resolve();
    await connection.promise;
    const later = await board.handler(new Request(BASE + "/events"), stuck);
    assert.equal(later.status, 200);
    await later.body?.cancel();
  }, { rateLimit: true });
});

Deno.test("limits: rateLimit: false lets one client post and listen without limits", async () => {
  await withBoard(async (board) => {
    for (let i = 0; i < POST_BURST * 4; i++) {
      const response = await board.handler(
        postApi(JSON.stringify({ text: `m${i}` })),
      );
      assert.equal(response.status, 201);
      await response.body?.cancel();
    }
    const streams = [];
    for (let i = 0; i <= MAX_STREAMS_PER_CLIENT; i++) {
      const response = await board.handler(new Request(BASE + "/events"));
      assert.equal(response.status, 200);
      streams.push(response);
    }
    await Promise.all(streams.map((response) => response.body?.cancel()));
  }, { rateLimit: false });
});

Deno.test("limits: RateLimiter is a token bucket per key that forgets idle keys (table)", () => {
  const limiter = new RateLimiter(2, 1000);
  const steps: [string, number, number][] = [
    // key, time, expected wait
    ["a", 0, 0],
    ["a", 0, 0],
    ["a", 0, 1000],
    ["b", 0, 0], // another key has its own bucket
    ["a", 500, 500],
    ["a", 1000, 0],
    ["a", 1000, 1000],
    ["a", 5000, 0], // refilled (to the burst, not beyond)
    ["a", 5000, 0],
    ["a", 5000, 1000],
  ];
  for (const [key, now, wait] of steps) {
    assert.equal(limiter.take(key, now), wait, `${key} at ${now}`);
  }
  for (let i = 0; i < MAX_TRACKED_CLIENTS + 10; i++) {
    limiter.take(`c${i}`, 6000);
  }
  assert.equal(
    limiter.take("a", 6000),
    0,
    "a long-idle key was forgotten (a full bucket again)",
  );
});

Deno.test("limits: clientKey names a client by address, IPv6 by its /64 (table)", () => {
  const cases: [string | undefined, string][] = [
    ["127.0.0.2", "127.0.0.2"],
    ["::ffff:192.0.2.7", "192.0.2.7"],
    ["2001:db8:1:2:aaaa::1", "2001:db8:1:2::/64"],
    ["2001:db8:1:2:bbbb:cccc:dddd:eeee", "2001:db8:1:2::/64"],
    ["[2001:0db8::1]", "2001:db8:0:0::/64"],
    ["::1", "0:0:0:0::/64"],
    [undefined, "unknown"],
  ];
  for (const [address, key] of cases) {
    assert.equal(clientKey(address), key, String(address));
  }
});

Deno.test("limits: with trustProxy the client is the last X-Forwarded-For hop", async () => {
  await withBoard(async (board) => {
    const post = (forwarded: string) =>
      board.handler(postApi('{"text":"hi"}', { "x-forwarded-for": forwarded }));
    // The proxy (on 127.0.0.1) adds the real client last; what the client claimed comes first.
    assert.equal((await post("10.9.9.9, 192.0.2.1")).status, 201);
    assert.equal(
      (await post("10.9.9.8, 192.0.2.1")).status,
      429,
      "same last hop, same client",
    );
    assert.equal(
      (await post("192.0.2.1, 192.0.2.2")).status,
      201,
      "another last hop",
    );
  }, { trustProxy: true, postBurst: 1 });
});

Deno.test("limits: regression: with trustProxy a last hop with a port is its address's client", async () => {
  // Azure's Application Gateway and some others write the client's port too. Those hops fell
  // back to the proxy's own address: every client one bucket, so one client's posts used up
  // everybody's.
  await withBoard(async (board) => {
    const post = (forwarded: string) =>
      board.handler(postApi('{"text":"hi"}', { "x-forwarded-for": forwarded }));
    assert.equal((await post("203.0.113.5:50123")).status, 201);
    assert.equal(
      (await post("203.0.113.6:50124")).status,
      201,
      "another client",
    );
    assert.equal(
      (await post("[2001:db8::7]:50125")).status,
      201,
      "IPv6 with a port",
    );
    assert.equal(
      (await post("203.0.113.5:60000")).status,
      429,
      "same client, new port",
    );
    assert.equal(
      (await post("2001:db8::8")).status,
      429,
      "same /64 without a port",
    );
  }, { trustProxy: true, postBurst: 1 });
});

Deno.test("limits: with trustProxy a last hop that is no address counts as the socket's client", async () => {
  await withBoard(async (board) => {
    const post = (forwarded: string) =>
      board.handler(
        postApi('{"text":"hi"}', { "x-forwarded-for": forwarded }),
        clientInfo("127.0.0.9"),
      );
    // Made-up values would each be a client of their own; they all fall back to the socket.
    assert.equal((await post("not-an-address")).status, 201);
    assert.equal(
      (await post("x".repeat(500))).status,
      429,
      "same socket, same client",
    );
    assert.equal(
      (await post("10.0.0.1, <script>")).status,
      429,
      "same socket again",
    );
  }, { trustProxy: true, postBurst: 1 });
});

Deno.test("cli: --allowed-host adds a name to the process's allow-list", async () => {
  await using folder = await tempFolder();
  const board = await startBoard(folder.path, [
    "--allowed-host",
    "board.example",
  ], { rateLimit: true });
  try {
    const port = Number(new URL(board.url).port);
    const get = (host: string) =>
      rawRequest(port, `GET / HTTP/1.1\r\nHost: ${host}`);
    assert.equal((await get("board.example")).status, 200);
    assert.equal((await get(`127.0.0.1:${port}`)).status, 200);
    assert.equal((await get(`evil.example:${port}`)).status, 421);
  } finally {
    await board.stop();
  }
});

const ADMIN_TOKEN = "correct horse battery staple";

/** Signs in with `token`; returns the response (303 with a session cookie when right). */
function signIn(
  board: Board,
  token: string,
  info = clientInfo(),
): Promise<Response> {
  return board.handler(
    postForm(new URLSearchParams({ token }).toString(), {}, "/admin"),
    info,
  );
}

/** The `name=value` part of a Set-Cookie header. */
function cookiePair(response: Response): string {
  return (response.headers.get("set-cookie") ?? "").split(";")[0];
}

Deno.test("admin: signing in and out", async (t) => {
  await withBoard(async (board) => {
    await t.step("/admin shows a password form", async () => {
      const form = await getPage(board, "/admin");
      assert.equal(form.response.status, 200);
      assert.match(form.html, /<form method="post" action="\/admin">/);
      assert.match(
        form.html,
        /<input id="token" name="token" type="password"/,
      );
    });
    await t.step("a wrong token gets 403 and no cookie", async () => {
      const wrong = await signIn(board, "not the token");
      assert.equal(wrong.status, 403);
      assert.equal(wrong.headers.get("set-cookie"), null);
      assert.match(await wrong.text(), /not right/);
    });
    const right = await signIn(board, ADMIN_TOKEN);
    await t.step(
      "the right token starts an HttpOnly, SameSite=Strict session",
      () => {
        assert.equal(right.status, 303);
        assert.equal(right.headers.get("location"), "/");
        const cookie = right.headers.get("set-cookie") ?? "";
        assert.match(
          cookie,
          /^board_admin=[A-Za-z0-9_-]{43}; Path=\/; Max-Age=\d+; HttpOnly; SameSite=Strict$/,
        );
      },
    );
    await t.step(
      "signed in, the page shows the moderation buttons",
      async () => {
        const signedIn = await getPage(board, "/", {
          cookie: cookiePair(right),
        });
        assert.match(signedIn.html, /action="\/admin\/clear"/);
        assert.match(signedIn.html, /action="\/admin\/sign-out"/);
      },
    );
    await t.step("a visitor sees only a sign-in link", async () => {
      const visitor = await getPage(board);
      assert.doesNotMatch(
        visitor.html,
        /Clear Messages|admin\/clear|admin\/delete/,
      );
      assert.match(
        visitor.html,
        /<a href="\/admin">Sign in as a moderator<\/a>/,
      );
    });
    await t.step("a guessed cookie is no session", async () => {
      const forged = await getPage(board, "/", {
        cookie: "board_admin=guessed",
      });
      assert.doesNotMatch(forged.html, /admin\/clear/);
      assert.match(forged.html, /Sign in as a moderator/);
    });
    await t.step("signing out clears the cookie", async () => {
      const out = await board.handler(
        postForm("", { cookie: cookiePair(right) }, "/admin/sign-out"),
      );
      assert.equal(out.status, 303);
      assert.match(
        out.headers.get("set-cookie") ?? "",
        /^board_admin=; .*Max-Age=0/,
      );
    });
    await t.step("after signing out the old cookie is no session", async () => {
      const after = await getPage(board, "/", { cookie: cookiePair(right) });
      assert.doesNotMatch(after.html, /admin\/clear/);
    });
  }, { adminToken: ADMIN_TOKEN });
});

Deno.test("admin: over HTTPS the session cookie is Secure", async () => {
  await withBoard(async (board) => {
    const response = await board.handler(
      new Request("https://localhost/admin", {
        method: "POST",
        headers: { "content-type": "application/x-www-form-urlencoded" },
        body: new URLSearchParams({ token: ADMIN_TOKEN }).toString(),
      }),
    );
    assert.equal(response.status, 303);
    assert.match(
      response.headers.get("set-cookie") ?? "",
      /; SameSite=Strict; Secure$/,
    );
  }, { adminToken: ADMIN_TOKEN });
});

Deno.test("admin: wrong tokens are limited per client (429 with Retry-After), even the right one then", async () => {
  await withBoard(async (board) => {
    for (let i = 0; i < SIGN_IN_BURST; i++) {
      const response = await signIn(board, `guess ${i}`);
      assert.equal(response.status, 403, `guess ${i}`);
      await response.body?.cancel();
    }
    const limited = await signIn(board, "one more guess");
    assert.equal(limited.status, 429);
    assert.ok(Number(limited.headers.get("retry-after")) >= 1);
    await limited.body?.cancel();
    const right = await signIn(board, ADMIN_TOKEN);
    assert.equal(right.status, 429, "not even compared while limited");
    await right.body?.cancel();
    // Another client is not locked out by this one's guesses.
    const other = await signIn(board, ADMIN_TOKEN, clientInfo("127.0.0.3"));
    assert.equal(other.status, 303);
  }, { adminToken: ADMIN_TOKEN, rateLimit: false }); // the sign-in limit stays on
});

Deno.test("admin: regression: wrong tokens sent at once are limited too", async () => {
  await withBoard(async (board) => {
    // All 30 used to pass the limit check before the first wrong one was counted.
    const statuses = await Promise.all(
      Array.from({ length: 30 }, async (_, i) => {
        const response = await signIn(board, `guess ${i}`);
        await response.body?.cancel();
        return response.status;
      }),
    );
    assert.equal(statuses.filter((s) => s === 403).length, SIGN_IN_BURST);
    assert.equal(statuses.filter((s) => s === 429).length, 30 - SIGN_IN_BURST);
  }, { adminToken: ADMIN_TOKEN, rateLimit: false });
});

Deno.test("admin: a right token does not use up the client's tries", async () => {
  await withBoard(async (board) => {
    for (let i = 0; i < SIGN_IN_BURST + 2; i++) {
      const response = await signIn(board, ADMIN_TOKEN);
      assert.equal(response.status, 303, `sign-in ${i}`);
      await response.body?.cancel();
    }
  }, { adminToken: ADMIN_TOKEN, rateLimit: false });
});

Deno.test("admin: clearing with a token set", async (t) => {
  await withBoard(async (board) => {
    await board.store.appendMessage({ text: "one" });
    await t.step(
      "without a session it is refused, even from this machine",
      async () => {
        const anonymous = await board.handler(postForm("clear=1&confirm=yes"));
        assert.equal(anonymous.status, 403);
        await anonymous.body?.cancel();
        assert.equal(await storedCount(board), 1);
      },
    );
    await t.step(
      "without a session the confirmation page is refused",
      async () => {
        assert.equal(
          (await getPage(board, "/admin/clear")).response.status,
          403,
        );
      },
    );
    const cookie = cookiePair(await signIn(board, ADMIN_TOKEN));
    await t.step(
      "a clear without confirm leads to the confirmation page",
      async () => {
        const ask = await board.handler(postForm("clear=1", { cookie }));
        assert.equal(ask.status, 303);
        assert.equal(ask.headers.get("location"), "/admin/clear");
        assert.equal(await storedCount(board), 1);
      },
    );
    await t.step("the confirmation page asks with a Yes button", async () => {
      const confirm = await getPage(board, "/admin/clear", { cookie });
      assert.equal(confirm.response.status, 200);
      assert.match(
        confirm.html,
        /<input type="hidden" name="confirm" value="yes">/,
      );
      assert.match(
        confirm.html,
        /name="clear" value="1">Yes, clear the board<\/button>/,
      );
    });
    await t.step("a confirmed clear by a signed-in admin clears", async () => {
      const cleared = await board.handler(
        postForm("clear=1&confirm=yes", { cookie }),
      );
      assert.equal(cleared.status, 303);
      assert.equal(cleared.headers.get("location"), "/");
      assert.equal(await storedCount(board), 0);
    });
  }, { adminToken: ADMIN_TOKEN });
});

Deno.test("admin: regression: a page on a sibling subdomain cannot clear for a signed-in moderator", async (t) => {
  // With --allowed-host .example.com, a page on any other subdomain (user content, a
  // forgotten blog) is the same site: browsers send the SameSite=Strict session along, and
  // its Origin's host is on the allow-list. Sec-Fetch-Site says "same-site", not
  // "same-origin", and only the board's own pages (or none, for a typed address) may post.
  await withBoard(async (board) => {
    await board.store.appendMessage({ text: "keep me" });
    const signedIn = await board.handler(
      new Request("https://board.example.com/admin", {
        method: "POST",
        headers: {
          "content-type": "application/x-www-form-urlencoded",
          host: "board.example.com",
        },
        body: new URLSearchParams({ token: ADMIN_TOKEN }).toString(),
      }),
      clientInfo("192.0.2.7"),
    );
    assert.equal(signedIn.status, 303);
    const session = cookiePair(signedIn);
    const fromSibling = (path: string, body: string, site: string) =>
      board.handler(
        new Request(`https://board.example.com${path}`, {
          method: "POST",
          headers: {
            "content-type": "application/x-www-form-urlencoded",
            host: "board.example.com",
            origin: "https://evil.example.com",
            "sec-fetch-site": site,
            cookie: session,
          },
          body,
        }),
        clientInfo("192.0.2.7"),
      );
    for (
      const [what, path, body] of [
        ["a confirmed clear", "/", "clear=1&confirm=yes"],
        ["a delete", "/admin/delete", "id=1"],
        ["a restore", "/admin/restore", ""],
        ["a post", "/", "message=spam"],
      ]
    ) {
      await t.step(`${what} gets 403`, async () => {
        const response = await fromSibling(path, body, "same-site");
        await response.body?.cancel();
        assert.equal(response.status, 403);
      });
    }
    await t.step("nothing changed", async () => {
      const page = await board.store.listMessages({ limit: 10 });
      assert.deepEqual(page.messages.map((m) => m.text), ["keep me"]);
    });
    await t.step("the board's own page still posts (same-origin)", async () => {
      const response = await board.handler(
        new Request("https://board.example.com/", {
          method: "POST",
          headers: {
            "content-type": "application/x-www-form-urlencoded",
            host: "board.example.com",
            origin: "https://board.example.com",
            "sec-fetch-site": "same-origin",
          },
          body: "message=mine",
        }),
        clientInfo("192.0.2.7"),
      );
      await response.body?.cancel();
      assert.equal(response.status, 303);
    });
  }, { adminToken: ADMIN_TOKEN, allowedHosts: [".example.com"] });
});

Deno.test("admin: tokensMatch compares whole tokens (table)", async () => {
  const cases: [string, string, boolean][] = [
    ["secret-token-1", "secret-token-1", true],
    ["secret-token-1", "secret-token-2", false],
    ["secret-token", "secret-token-1", false],
    ["", "secret-token-1", false],
    ["é", "é", true],
  ];
  for (const [given, expected, same] of cases) {
    assert.equal(
      await tokensMatch(given, expected),
      same,
      `${given} vs ${expected}`,
    );
  }
});

Deno.test("moderation: without a token, a visitor from another machine cannot clear (403, no button)", async () => {
  await withBoard(async (board) => {
    await board.store.appendMessage({ text: "kept" });
    const remote = clientInfo("192.0.2.10"); // a documentation address: no packet is sent
    const page = await board.handler(new Request(BASE + "/"), remote);
    const html = await page.text();
    assert.doesNotMatch(html, /Clear Messages|class="clear"|admin\/delete/);
    const clear = await board.handler(postForm("clear=1"), remote);
    assert.equal(clear.status, 403);
    assert.match(await clear.text(), /--admin-token/);
    // So is a visitor on this machine who came through a name that is not local (a proxy).
    const proxied = await board.handler(
      postForm("clear=1", { host: "board.example" }),
      clientInfo("127.0.0.1"),
    );
    assert.equal(proxied.status, 403);
    await proxied.body?.cancel();
    // Regression: so is one through a proxy that sends a local Host (nginx's default) and
    // says whom it forwards for, on a board that does not trust it.
    for (
      const header of ["forwarded", "x-forwarded-for", "x-real-ip", "via"]
    ) {
      const request = postForm("clear=1", {
        host: "127.0.0.1:8080",
        [header]: header === "forwarded" ? "for=192.0.2.10" : "192.0.2.10",
      });
      const response = await board.handler(request, clientInfo("127.0.0.1"));
      assert.equal(response.status, 403, header);
      await response.body?.cancel();
    }
    // With trustProxy, a forwarded client is remote even though the socket is local.
    assert.equal(await storedCount(board), 1);
  }, { allowedHosts: ["board.example"] });
  await withBoard(async (board) => {
    const forwarded = await board.handler(
      postForm("clear=1", { "x-forwarded-for": "192.0.2.10" }),
      clientInfo("127.0.0.1"),
    );
    assert.equal(forwarded.status, 403);
    await forwarded.body?.cancel();
  }, { trustProxy: true });
});

Deno.test("basePath: mounted under /board next to another route, every address follows it", async () => {
  await withBoard(async (board) => {
    // A larger app: its own page at /, the board under /board.
    const app = (request: Request) =>
      new URL(request.url).pathname.startsWith("/board")
        ? board.handler(request)
        : Promise.resolve(new Response("the app's own page"));
    assert.equal(
      await (await app(new Request(BASE + "/"))).text(),
      "the app's own page",
    );

    const bare = await app(new Request(BASE + "/board?before=5"));
    assert.equal(bare.status, 308);
    assert.equal(bare.headers.get("location"), "/board/?before=5");

    const posted = await app(postForm("message=hi&name=Ann", {}, "/board/"));
    assert.equal(posted.status, 303);
    assert.equal(posted.headers.get("location"), "/board/");
    assert.match(posted.headers.get("set-cookie") ?? "", /; Path=\/board\/;/);
    for (let i = 0; i < 60; i++) {
      await board.store.appendMessage({ text: `m${i}` });
    }

    const html = await (await app(new Request(BASE + "/board/"))).text();
    assert.match(html, /<link rel="stylesheet" href="\/board\/style.css">/);
    assert.match(html, /<script src="\/board\/board.js" defer><\/script>/);
    assert.match(html, /<form method="post" action="\/board\/">/);
    assert.match(html, /data-events="\/board\/events"/);
    assert.match(html, /action="\/board\/admin\/delete"/);
    assert.match(html, /href="\/board\/\?before=\d+" rel="next"/);
    // Every address in the page is under /board.
    const addresses = [
      ...html.matchAll(/(?:href|src|action|data-[a-z]+)="(\/[^"]*)"/g),
    ].map((m) => m[1]);
    assert.ok(addresses.length >= 6);
    for (const address of addresses) {
      assert.ok(address.startsWith("/board/"), address);
    }

    for (
      const path of [
        "/board/style.css",
        "/board/board.js",
        "/board/api/messages?limit=1",
      ]
    ) {
      const response = await app(new Request(BASE + path));
      assert.equal(response.status, 200, path);
      if (path.includes("api")) {
        const { older } = await response.json();
        assert.match(older, /^\/board\/api\/messages\?before=\d+&limit=1$/);
      } else await response.body?.cancel();
    }
    const events = await app(new Request(BASE + "/board/events"));
    assert.equal(events.status, 200);
    await events.body?.cancel();
    const older = await (await app(new Request(BASE + "/board/?before=10")))
      .text();
    assert.match(older, /<a href="\/board\/">Newest messages<\/a>/);
    // The board answers nothing outside its path, and its errors link back under it.
    const outside = await board.handler(new Request(BASE + "/style.css"));
    assert.equal(outside.status, 404);
    assert.match(await outside.text(), /href="\/board\/"/);
  }, { basePath: "/board" });
});

Deno.test("basePath: normalizeBasePath accepts /name paths and refuses the rest (table)", () => {
  const cases: [string, string | null][] = [
    ["", ""],
    ["/", ""],
    ["/board", "/board"],
    ["/board/", "/board"],
    ["/apps/board-1", "/apps/board-1"],
    ["board", null],
    ["/a b", null],
    ['/"><script>', null],
    ["//evil.example", null],
  ];
  for (const [input, output] of cases) {
    if (output === null) {
      assert.throws(() => normalizeBasePath(input), TypeError, input);
    } else assert.equal(normalizeBasePath(input), output, input);
  }
});

Deno.test("routes: the route table", async (t) => {
  await withBoard(async (board) => {
    const table: [string, string][] = [
      ["/", "GET, HEAD, POST"],
      ["/index.html", "GET, HEAD, POST"],
      ["/style.css", "GET, HEAD"],
      ["/board.js", "GET, HEAD"],
      ["/events", "GET, HEAD"],
      ["/api/messages", "GET, HEAD, POST"],
      ["/admin", "GET, HEAD, POST"],
      ["/admin/sign-out", "POST"],
      ["/admin/clear", "GET, HEAD"],
    ];
    await t.step("405 lists the table's methods for each route", async () => {
      for (const [path, allow] of table) {
        const put = await board.handler(
          new Request(BASE + path, { method: "PUT" }),
        );
        assert.equal(put.status, 405, path);
        assert.equal(put.headers.get("allow"), allow, path);
        await put.body?.cancel();
      }
    });
    await t.step(
      "every GET route answers HEAD as GET without a body",
      async () => {
        for (const [path, allow] of table) {
          if (!allow.includes("GET")) continue;
          const get = await board.handler(new Request(BASE + path));
          const head = await board.handler(
            new Request(BASE + path, { method: "HEAD" }),
          );
          assert.equal(head.status, get.status, path);
          assert.equal(head.body, null, path);
          assert.equal(
            head.headers.get("content-type"),
            get.headers.get("content-type"),
            path,
          );
          await get.body?.cancel();
        }
      },
    );
  }, { adminToken: ADMIN_TOKEN });
});

Deno.test("moderation: delete and restore", async (t) => {
  await withBoard(async (board) => {
    for (const text of ["one", "two", "three"]) {
      await board.store.appendMessage({ text });
    }
    const texts = async () =>
      (await board.store.listMessages({ limit: 10 })).messages.map((m) =>
        m.text
      );
    await t.step("each message has a labelled Delete button", async () => {
      const page = await getPage(board);
      assert.match(
        page.html,
        /<form method="post" action="\/admin\/delete" class="delete">\n<input type="hidden" name="id" value="2">/,
      );
      assert.match(
        page.html,
        /aria-label="Delete message 2">Delete<\/button>/,
      );
    });
    await t.step("Delete takes one message off the board", async () => {
      const deleted = await board.handler(
        postForm("id=2", {}, "/admin/delete"),
      );
      assert.equal(deleted.status, 303);
      assert.equal(deleted.headers.get("location"), "/");
      assert.deepEqual(await texts(), ["three", "one"]);
    });

    const cases: [string, number][] = [
      ["id=2", 404], // already gone
      ["id=99", 404],
      ["id=abc", 400],
      ["id=0", 400],
      ["", 400],
      ["id=1&id=1", 400],
    ];
    await t.step("a missing id is 404, a bad one 400", async () => {
      for (const [body, status] of cases) {
        const response = await board.handler(
          postForm(body, {}, "/admin/delete"),
        );
        assert.equal(response.status, status, body);
        await response.body?.cancel();
      }
    });
    await t.step("a visitor from elsewhere cannot delete", async () => {
      const remote = await board.handler(
        postForm("id=1", {}, "/admin/delete"),
        clientInfo("192.0.2.10"),
      );
      assert.equal(remote.status, 403);
      await remote.body?.cancel();
      assert.deepEqual(await texts(), ["three", "one"]);
    });
    await t.step("restore brings back what a clear took", async () => {
      await board.handler(postForm("clear=1"));
      assert.deepEqual(await texts(), []);
      const restored = await board.handler(
        postForm("", {}, "/admin/restore"),
      );
      assert.equal(restored.status, 303);
      assert.deepEqual(await texts(), ["three", "one"]);
    });
    await t.step("a deleted message stays off after a restore", async () => {
      assert.ok(!(await texts()).includes("two"));
    });
  });
});

Deno.test("moderation: with a token, delete and restore need a signed-in admin", async () => {
  await withBoard(async (board) => {
    await board.store.appendMessage({ text: "one" });
    for (
      const [path, body] of [["/admin/delete", "id=1"], ["/admin/restore", ""]]
    ) {
      const response = await board.handler(postForm(body, {}, path));
      assert.equal(response.status, 403, path);
      await response.body?.cancel();
    }
    const cookie = cookiePair(await signIn(board, ADMIN_TOKEN));
    const page = await getPage(board, "/", { cookie });
    assert.match(page.html, /aria-label="Delete message 1"/);
    const deleted = await board.handler(
      postForm("id=1", { cookie }, "/admin/delete"),
    );
    assert.equal(deleted.status, 303);
    assert.equal(await storedCount(board), 0);
  }, { adminToken: ADMIN_TOKEN });
});

Deno.test("routes: the module doc comment's routes table matches what the handler answers", async () => {
  const source = await Deno.readTextFile(
    new URL("../message_board.ts", import.meta.url),
  );
  const rows = [
    ...source.matchAll(/^ \* \| (`[^|]+`)\s*\| ([A-Z, ]+?)\s*\|/gm),
  ];
  assert.ok(rows.length >= 10, "the table lists the routes");
  await withBoard(async (board) => {
    for (const [, paths, methods] of rows) {
      for (const [, path] of paths.matchAll(/`([^`]+)`/g)) {
        const response = await board.handler(
          new Request(BASE + path, { method: "PUT" }),
        );
        assert.equal(response.status, 405, path);
        assert.equal(response.headers.get("allow"), methods, path);
        await response.body?.cancel();
      }
    }
  }, { adminToken: ADMIN_TOKEN });
});
