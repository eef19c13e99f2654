// serveDir / serveFile / createHandler in-process: methods, content types,
// directories, listing, 404 page, validators, conditionals, ranges, cache.
import assert from "node:assert/strict";
import { format } from "node:util";
import {
  contentTypeFor,
  createHandler,
  type ExtraHeaders,
  formatAccessLog,
  type HandlerOptions,
  parseRanges,
  planFileResponse,
  serveDir,
  serveFile,
} from "../server_files.ts";
import { makeTree, serveDirAt } from "./_files.ts";

const DIGITS = "0123456789".repeat(10); // 100 bytes, byte i is String(i % 10)

const dir = serveDirAt;

async function app(
  handlerOptions: HandlerOptions,
  path: string,
  init: RequestInit = {},
) {
  return await createHandler({ quiet: true, ...handlerOptions })(
    new Request(`http://localhost${path}`, init),
  );
}

Deno.test("only GET and HEAD: other methods get 405 with Allow", async () => {
  await using tree = await makeTree();
  for (const method of ["POST", "PUT", "DELETE", "PATCH", "OPTIONS"]) {
    const res = await dir(tree.root, "/a.txt", { method });
    assert.equal(res.status, 405, method);
    assert.equal(res.headers.get("allow"), "GET, HEAD");
    await res.body?.cancel();
    const appRes = await app({ fsRoot: tree.root }, "/suggest", { method });
    assert.equal(appRes.status, 405);
    assert.equal(appRes.headers.get("allow"), "GET, HEAD");
    await appRes.body?.cancel();
  }
});

Deno.test("a file: 200 with body, type, length, validators, nosniff, revalidation", async () => {
  await using tree = await makeTree();
  const res = await dir(tree.root, "/a.txt");
  assert.equal(res.status, 200);
  assert.equal(await res.text(), "hello a");
  assert.equal(res.headers.get("content-type"), "text/plain; charset=utf-8");
  assert.equal(res.headers.get("content-length"), "7");
  assert.equal(res.headers.get("x-content-type-options"), "nosniff");
  assert.equal(res.headers.get("accept-ranges"), "bytes");
  assert.equal(res.headers.get("cache-control"), "no-cache");
  assert.match(res.headers.get("etag")!, /^"[0-9a-f]+-[0-9a-f]+"$/);
  const mtime = (await Deno.stat(`${tree.root}/a.txt`)).mtime!;
  assert.equal(
    res.headers.get("last-modified"),
    new Date(Math.floor(mtime.getTime() / 1000) * 1000).toUTCString(),
  );
});

Deno.test("HEAD is GET without the body: same status, statusText and every header", async () => {
  await using tree = await makeTree();
  await Deno.writeTextFile(`${tree.root}/big.bin`, "x".repeat(300_000)); // not cached
  await Deno.writeTextFile(`${tree.root}/empty.txt`, "");
  const etag = (await dir(tree.root, "/a.txt", { method: "HEAD" })).headers
    .get("etag")!;
  const cases: [string, Record<string, string>][] = [
    ["/a.txt", {}],
    ["/a.txt", { range: "bytes=1-2" }],
    ["/a.txt", { range: "bytes=99-" }],
    ["/a.txt", { "if-none-match": etag }],
    ["/a.txt", { "if-match": `"other"` }],
    ["/empty.txt", { range: "bytes=0-" }],
    ["/big.bin", {}],
    ["/big.bin", { range: "bytes=10-19" }],
    ["/big.bin", { range: "bytes=10-" }],
    ["/sub/", {}],
    ["/nope", {}],
    ["/sub", {}],
    ["/%zz", {}],
    ["/suggest?firstname=Ann&food=Pizza", {}],
  ];
  const handlers = [
    (req: Request) => serveDir(req, { fsRoot: tree.root, quiet: true }),
    // Twice: the first request fills the cache, the second is a cache hit.
    createHandler({ fsRoot: tree.root, quiet: true, showDirListing: true }),
    createHandler({ fsRoot: tree.root, quiet: true, showDirListing: true }),
  ];
  for (const handler of handlers) {
    for (const [path, headers] of cases) {
      const url = `http://localhost${path}`;
      const get = await handler(new Request(url, { headers }));
      const head = await handler(new Request(url, { method: "HEAD", headers }));
      const label = `${path} ${JSON.stringify(headers)}`;
      assert.equal(head.status, get.status, label);
      assert.equal(head.statusText, get.statusText, label);
      assert.equal(head.body, null, label);
      assert.deepEqual([...head.headers], [...get.headers], label);
      await get.body?.cancel();
    }
  }
  const file = await serveFile(
    new Request("http://localhost/", { method: "HEAD" }),
    `${tree.root}/big.bin`,
  );
  assert.equal(file.body, null);
  assert.equal(file.headers.get("content-length"), "300000");
});

Deno.test("responses carry their statusText, as std's do", async () => {
  await using tree = await makeTree();
  await Deno.writeTextFile(`${tree.root}/digits.txt`, DIGITS);
  const cases: [string, RequestInit, number, string][] = [
    ["/a.txt", {}, 200, "OK"],
    [
      "/digits.txt",
      { headers: { range: "bytes=0-1" } },
      206,
      "Partial Content",
    ],
    ["/sub", {}, 301, "Moved Permanently"],
    ["/a.txt", { headers: { "if-none-match": "*" } }, 304, "Not Modified"],
    ["/%zz", {}, 400, "Bad Request"],
    ["/nope", {}, 404, "Not Found"],
    ["/a.txt", { method: "POST" }, 405, "Method Not Allowed"],
    ["/a.txt", { headers: { "if-match": `"x"` } }, 412, "Precondition Failed"],
    [
      "/digits.txt",
      { headers: { range: "bytes=200-" } },
      416,
      "Range Not Satisfiable",
    ],
  ];
  for (const [path, init, status, text] of cases) {
    for (const cached of [false, true]) {
      const res = cached
        ? await app({ fsRoot: tree.root }, path, init)
        : await dir(tree.root, path, init);
      assert.equal(res.status, status, path);
      assert.equal(res.statusText, text, path);
      await res.body?.cancel();
    }
  }
  const file = await serveFile(
    new Request("http://localhost/"),
    `${tree.root}/missing`,
  );
  assert.equal(file.statusText, "Not Found");
  await file.body?.cancel();
});

Deno.test("content types from the extension", async () => {
  await using tree = await makeTree();
  const types: [string, string][] = [
    ["x.html", "text/html; charset=utf-8"],
    ["x.HTM", "text/html; charset=utf-8"],
    ["x.css", "text/css; charset=utf-8"],
    ["x.js", "text/javascript; charset=utf-8"],
    ["x.mjs", "text/javascript; charset=utf-8"],
    ["x.json", "application/json; charset=utf-8"],
    ["x.map", "application/json; charset=utf-8"],
    ["x.txt", "text/plain; charset=utf-8"],
    ["x.md", "text/markdown; charset=utf-8"],
    ["x.xml", "application/xml; charset=utf-8"],
    ["x.svg", "image/svg+xml; charset=utf-8"],
    ["x.png", "image/png"],
    ["x.jpg", "image/jpeg"],
    ["x.jpeg", "image/jpeg"],
    ["x.gif", "image/gif"],
    ["x.webp", "image/webp"],
    ["x.avif", "image/avif"],
    ["x.ico", "image/x-icon"],
    ["x.wasm", "application/wasm"],
    ["x.woff", "font/woff"],
    ["x.woff2", "font/woff2"],
    ["x.mp4", "video/mp4"],
    ["x.webm", "video/webm"],
    ["x.mp3", "audio/mpeg"],
    ["x.pdf", "application/pdf"],
    ["x.unknown", "application/octet-stream"],
    ["noextension", "application/octet-stream"],
  ];
  for (const [name, type] of types) {
    await Deno.writeTextFile(`${tree.root}/${name}`, "data");
    const res = await dir(tree.root, `/${name}`);
    assert.equal(res.status, 200, name);
    assert.equal(res.headers.get("content-type"), type, name);
    assert.equal(res.headers.get("x-content-type-options"), "nosniff");
    await res.body?.cancel();
  }
});

Deno.test("directories with index.html", async (t) => {
  await using tree = await makeTree();
  await Deno.writeTextFile(`${tree.root}/sub/index.html`, "<p>sub index</p>");
  await t.step("without the slash: 301 to it, query kept", async () => {
    const redirect = await dir(tree.root, "/sub?x=1&y=2");
    assert.equal(redirect.status, 301);
    assert.equal(redirect.headers.get("location"), "/sub/?x=1&y=2");
    await redirect.body?.cancel();
  });
  await t.step("with the slash: index.html", async () => {
    const index = await dir(tree.root, "/sub/");
    assert.equal(index.status, 200);
    assert.equal(index.headers.get("content-type"), "text/html; charset=utf-8");
    assert.equal(await index.text(), "<p>sub index</p>");
  });
  await t.step("with showIndex: false: 404", async () => {
    const noIndex = await dir(tree.root, "/sub/", {}, { showIndex: false });
    assert.equal(noIndex.status, 404);
    assert.equal(await noIndex.text(), "Not Found\n");
  });
});

Deno.test("the slash redirect cannot point to another host", async () => {
  await using tree = await makeTree();
  await Deno.mkdir(`${tree.root}/evil.example`);
  for (const path of ["//evil.example", "///evil.example?q=1"]) {
    const res = await dir(tree.root, path);
    assert.equal(res.status, 301, path);
    assert.match(
      res.headers.get("location")!,
      /^\/evil\.example\/?(\?q=1)?$/, // one hop or two, never "//"
      path,
    );
    await res.body?.cancel();
  }
});

Deno.test("directories without index.html", async (t) => {
  await using tree = await makeTree();
  await t.step("are 404 by default", async () => {
    const res = await dir(tree.root, "/sub/");
    assert.equal(res.status, 404);
    assert.equal(await res.text(), "Not Found\n");
  });
  await t.step("are listed with showDirListing", async () => {
    const listing = await dir(tree.root, "/sub/", {}, { showDirListing: true });
    assert.equal(listing.status, 200);
    const html = await listing.text();
    assert.match(html, /<a href="b\.txt">/); // more in files_listing_test.ts
  });
});

Deno.test("dotfiles", async (t) => {
  await using tree = await makeTree();
  await t.step("are 404 by default, with a generic body", async () => {
    for (const path of ["/.secret", "/.git/config", "/.git/", "/link-dot"]) {
      const res = await dir(tree.root, path);
      assert.equal(res.status, 404, path);
      assert.equal(await res.text(), "Not Found\n", path);
    }
  });
  await t.step("are served with showDotfiles", async () => {
    const shown = await dir(tree.root, "/.secret", {}, { showDotfiles: true });
    assert.equal(shown.status, 200);
    assert.equal(await shown.text(), "DOT SECRET");
  });
});

Deno.test("symlinks and bad paths", async (t) => {
  await using tree = await makeTree();
  await t.step("a symlink to a file inside the root is served", async () => {
    const inside = await dir(tree.root, "/link-in");
    assert.equal(inside.status, 200);
    assert.equal(await inside.text(), "hello a");
  });
  for (
    const [path, status] of [
      ["/link-out", 404],
      ["/dir-out/c.txt", 404],
      ["/link-prefix", 404],
      // new Request() already resolves %2e%2e like "..": the raw form is tested on a socket.
      ["/%2e%2e/outside.txt", 404],
      ["/..%2foutside.txt", 400],
      ["/%5c..%5coutside.txt", 400],
      ["/a%00", 400],
      ["/%zz", 400],
    ] as const
  ) {
    const what = status === 404 ? "outside the root" : "malformed";
    await t.step(
      `${path} (${what}) gets a generic ${status}`,
      async () => {
        const res = await dir(tree.root, path);
        assert.equal(res.status, status);
        assert.equal(
          await res.text(),
          status === 404 ? "Not Found\n" : "Bad Request\n",
        );
      },
    );
  }
});

Deno.test("404: the root's 404.html is the body of every 404", async () => {
  await using tree = await makeTree();
  const plain = await dir(tree.root, "/nope");
  assert.equal(plain.status, 404);
  assert.equal(await plain.text(), "Not Found\n");
  const page = "<!doctype html><title>Lost</title><p>No such page</p>";
  await Deno.writeTextFile(`${tree.root}/404.html`, page);
  for (
    const path of ["/nope", "/sub/", "/.secret", "/link-out", "/sub/nope.txt"]
  ) {
    const res = await dir(tree.root, path);
    assert.equal(res.status, 404, path);
    assert.equal(res.headers.get("content-type"), "text/html; charset=utf-8");
    assert.equal(await res.text(), page, path);
  }
  const fromApp = await app({ fsRoot: tree.root }, "/nope");
  assert.equal(fromApp.status, 404);
  assert.equal(await fromApp.text(), page);
});

Deno.test("404.html symlinked outside the root is not used", async () => {
  await using tree = await makeTree();
  await Deno.symlink(`${tree.base}/outside.txt`, `${tree.root}/404.html`);
  const res = await dir(tree.root, "/nope");
  assert.equal(res.status, 404);
  assert.equal(await res.text(), "Not Found\n");
});

Deno.test("enableCors and headers on every response", async (t) => {
  await using tree = await makeTree();
  const options = {
    enableCors: true,
    headers: ["X-Frame-Options: DENY", "X-Test:  two words "],
  };
  const answers: [string, Headers][] = [];
  for (
    const [path, init] of [
      ["/a.txt", {}],
      ["/nope", {}],
      ["/a.txt", { method: "POST" }],
      ["/%zz", {}],
    ] as const
  ) {
    const res = await dir(tree.root, path, init, options);
    answers.push([`${path} (${res.status})`, res.headers]);
    await res.body?.cancel();
  }
  const etag = (await dir(tree.root, "/a.txt", { method: "HEAD" })).headers.get(
    "etag",
  )!;
  const notModified = await dir(
    tree.root,
    "/a.txt",
    { headers: { "if-none-match": etag } },
    options,
  );
  assert.equal(notModified.status, 304);
  answers.push(["/a.txt (304)", notModified.headers]);
  await t.step("enableCors allows every origin on each answer", () => {
    for (const [label, headers] of answers) {
      assert.equal(headers.get("access-control-allow-origin"), "*", label);
    }
  });
  await t.step("headers are added to each answer, values trimmed", () => {
    for (const [label, headers] of answers) {
      assert.equal(headers.get("x-frame-options"), "DENY", label);
      assert.equal(headers.get("x-test"), "two words", label);
    }
  });
  await t.step("without enableCors no origin is allowed", async () => {
    const plain = await dir(tree.root, "/a.txt");
    assert.equal(plain.headers.get("access-control-allow-origin"), null);
    await plain.body?.cancel();
  });
});

Deno.test("custom headers on every entry point and status", async (t) => {
  await using tree = await makeTree();
  await Deno.writeTextFile(`${tree.root}/digits.txt`, DIGITS);
  const headers = [
    "X-One: 1",
    "Link: </a.css>; rel=preload",
    "Link: </b.js>; rel=preload",
    "Cache-Control: max-age=60",
  ];
  const answers: [string, Headers][] = [];
  const expect = (res: Response, label: string) =>
    answers.push([label, res.headers]);
  const requests: [string, RequestInit][] = [
    ["/digits.txt", {}],
    ["/digits.txt", { headers: { range: "bytes=0-1" } }],
    ["/digits.txt", { headers: { "if-none-match": "*" } }],
    ["/digits.txt", { headers: { range: "bytes=500-" } }],
    ["/nope", {}],
  ];
  for (const [path, init] of requests) {
    const label = `${path} ${JSON.stringify(init)}`;
    const res = await serveFile(
      new Request(`http://localhost${path}`, init),
      `${tree.root}${path}`,
      { headers },
    );
    expect(res, `serveFile ${label}`);
    await res.body?.cancel();
    for (const cached of [false, true]) {
      const res = cached
        ? await app({ fsRoot: tree.root, headers }, path, init)
        : await dir(tree.root, path, init, { headers });
      expect(res, `${cached ? "app" : "serveDir"} ${label}`);
      await res.body?.cancel();
    }
  }
  await t.step("a header is sent once", () => {
    for (const [label, headers] of answers) {
      assert.deepEqual(
        [...headers].filter(([n]) => n === "x-one"),
        [["x-one", "1"]],
        label,
      );
    }
  });
  await t.step("a repeated name is sent with both values", () => {
    for (const [label, headers] of answers) {
      // Headers joins repeated names with ", " (what a client sees).
      assert.equal(
        headers.get("link"),
        "</a.css>; rel=preload, </b.js>; rel=preload",
        label,
      );
    }
  });
  await t.step("a header replaces the server's default", () => {
    for (const [label, headers] of answers) {
      assert.equal(headers.get("cache-control"), "max-age=60", label);
    }
  });
});

Deno.test("a range on an empty file is 200 with the empty file, as std and Go do", async () => {
  await using tree = await makeTree();
  await Deno.writeTextFile(`${tree.root}/empty.txt`, "");
  for (const range of ["bytes=0-", "bytes=-1", "bytes=0-0", "bytes=5-9"]) {
    for (const cached of [false, true]) {
      const init = { headers: { range } };
      const res = cached
        ? await app({ fsRoot: tree.root }, "/empty.txt", init)
        : await dir(tree.root, "/empty.txt", init);
      assert.equal(res.status, 200, range);
      assert.equal(res.headers.get("content-length"), "0");
      assert.equal(res.headers.get("content-range"), null);
      assert.equal(await res.text(), "");
    }
  }
});

Deno.test("the error mapper", async (t) => {
  await using tree = await makeTree();
  const logged: string[] = [];
  const original = console.error;
  const originalLog = console.log; // the access log, not under test here
  // What the console prints: its format directives applied, as node:util's format does.
  console.error = (...args: unknown[]) => logged.push(format(...args));
  console.log = () => {};
  try {
    await t.step("with quiet, a 4xx is not logged", async () => {
      const quiet = await dir(tree.root, "/nope.txt");
      assert.equal(await quiet.text(), "Not Found\n");
      assert.deepEqual(logged, []);
    });
    await t.step("the client gets a generic body", async () => {
      for (
        const [path, status, text] of [
          ["/nope.txt", 404, "Not Found\n"],
          ["/%zz", 400, "Bad Request\n"],
        ] as const
      ) {
        const res = await dir(tree.root, path, {}, { quiet: false });
        assert.equal(res.status, status);
        assert.equal(await res.text(), text);
      }
    });
  } finally {
    console.error = original;
    console.log = originalLog;
  }
  await t.step("the log has the status, request and internal message", () => {
    assert.equal(logged.length, 2, logged.join("\n"));
    assert.match(
      logged[0],
      /^server_files: 404 for GET "\/nope\.txt": not found: /,
    );
    assert.ok(logged[0].includes(tree.root), "the log names the path");
    assert.match(logged[1], /^server_files: 400 for GET "\/%zz": malformed/);
  });
});

Deno.test("CORS preflight with enableCors: 204, methods, safe requested headers echoed, max age", async () => {
  await using tree = await makeTree();
  const cors = { enableCors: true, headers: ["X-Frame-Options: DENY"] };
  const serves: [string, (req: Request) => Promise<Response>][] = [
    [
      "serveDir",
      (req) => serveDir(req, { fsRoot: tree.root, quiet: true, ...cors }),
    ],
    [
      "createHandler",
      async (req) =>
        await createHandler({ fsRoot: tree.root, quiet: true, ...cors })(req),
    ],
    ["serveFile", (req) => serveFile(req, `${tree.root}/a.txt`, cors)],
  ];
  const cases: [Record<string, string>, string | null][] = [
    [{
      origin: "https://other.example",
      "access-control-request-method": "GET",
      "access-control-request-headers": "range, if-none-match",
    }, "range, if-none-match"],
    [{
      origin: "https://other.example",
      "access-control-request-method": "GET",
      "access-control-request-headers":
        "X-Secret-Token, Range,RANGE, authorization",
    }, "range"],
    [{
      origin: "https://other.example",
      "access-control-request-method": "GET",
    }, null],
    [{}, null], // a plain OPTIONS: the same answer
  ];
  for (const [name, serve] of serves) {
    for (const [headers, allowHeaders] of cases) {
      for (const path of ["/a.txt", "/nope", "/suggest"]) {
        const label = `${name} ${path} ${JSON.stringify(headers)}`;
        const res = await serve(
          new Request(`http://localhost${path}`, {
            method: "OPTIONS",
            headers,
          }),
        );
        assert.equal(res.status, 204, label);
        assert.equal(res.statusText, "No Content");
        assert.equal(res.body, null);
        assert.equal(
          res.headers.get("access-control-allow-origin"),
          "*",
          label,
        );
        assert.equal(
          res.headers.get("access-control-allow-methods"),
          "GET, HEAD, OPTIONS",
        );
        assert.equal(res.headers.get("allow"), "GET, HEAD, OPTIONS");
        assert.equal(
          res.headers.get("access-control-allow-headers"),
          allowHeaders,
          label,
        );
        assert.equal(res.headers.get("access-control-max-age"), "86400");
        assert.equal(res.headers.get("vary"), "Access-Control-Request-Headers");
        assert.equal(res.headers.get("x-frame-options"), "DENY");
      }
    }
    // Other methods stay 405, and Allow now names OPTIONS.
    const post = await serve(
      new Request("http://localhost/a.txt", { method: "POST" }),
    );
    assert.equal(post.status, 405);
    assert.equal(post.headers.get("allow"), "GET, HEAD, OPTIONS");
    await post.body?.cancel();
    // A script may read the headers ranges and revalidation need.
    const get = await serve(new Request("http://localhost/a.txt"));
    assert.match(
      get.headers.get("access-control-expose-headers")!,
      /Content-Range/,
    );
    await get.body?.cancel();
  }
  // Without enableCors, OPTIONS is 405 like any other method.
  const off = await serveDir(
    new Request("http://localhost/a.txt", {
      method: "OPTIONS",
      headers: { "access-control-request-method": "GET" },
    }),
    { fsRoot: tree.root, quiet: true },
  );
  assert.equal(off.status, 405);
  assert.equal(off.headers.get("allow"), "GET, HEAD");
  assert.equal(off.headers.get("access-control-allow-origin"), null);
  await off.body?.cancel();
});

Deno.test("urlRoot strips a prefix", async () => {
  await using tree = await makeTree();
  const options = { urlRoot: "static" };
  const res = await dir(tree.root, "/static/a.txt", {}, options);
  assert.equal(await res.text(), "hello a");
  for (const path of ["/a.txt", "/staticx/a.txt"]) {
    const miss = await dir(tree.root, path, {}, options);
    assert.equal(miss.status, 404, path);
    await miss.body?.cancel();
  }
  const listing = await dir(tree.root, "/static/", {}, {
    ...options,
    showDirListing: true,
  });
  const html = await listing.text();
  assert.match(html, /Index of \/static\//);
  assert.ok(!html.includes(`href="../"`), "no parent link above urlRoot");
  const folder = await dir(tree.root, "/static/sub", {}, options);
  assert.equal(folder.headers.get("location"), "/static/sub/");
  await folder.body?.cancel();
});

// --- Conditional requests --------------------------------------------------

Deno.test("conditional requests table (RFC 9110 13.2.2)", async (t) => {
  await using tree = await makeTree();
  // A day old, so that "an hour later" is still in the server's past.
  const dayAgo = new Date(Date.now() - 86400_000);
  await Deno.utime(`${tree.root}/a.txt`, dayAgo, dayAgo);
  const probe = await dir(tree.root, "/a.txt", { method: "HEAD" });
  const etag = probe.headers.get("etag")!;
  const lastModified = probe.headers.get("last-modified")!;
  const hourLater = new Date(Date.parse(lastModified) + 3600_000).toUTCString();
  const hourEarlier = new Date(Date.parse(lastModified) - 3600_000)
    .toUTCString();
  const cases: [string, Record<string, string>, number][] = [
    ["no conditions", {}, 200],
    ["If-None-Match same tag", { "if-none-match": etag }, 304],
    ["If-None-Match weak form matches (weak comparison)", {
      "if-none-match": `W/${etag}`,
    }, 304],
    ["If-None-Match list", { "if-none-match": `"other", ${etag}` }, 304],
    ["If-None-Match *", { "if-none-match": "*" }, 304],
    ["If-None-Match other tag", { "if-none-match": `"other"` }, 200],
    [
      "If-Modified-Since = Last-Modified",
      { "if-modified-since": lastModified },
      304,
    ],
    ["If-Modified-Since later", { "if-modified-since": hourLater }, 304],
    ["If-Modified-Since earlier", { "if-modified-since": hourEarlier }, 200],
    // RFC 2616 14.25: a date later than the server's clock is invalid.
    ["If-Modified-Since in the future ignored", {
      "if-modified-since": "Tue, 01 Jan 2999 00:00:00 GMT",
    }, 200],
    [
      "If-Modified-Since garbage",
      { "if-modified-since": "yesterday-ish" },
      200,
    ],
    [
      "If-None-Match wins over If-Modified-Since",
      { "if-none-match": `"other"`, "if-modified-since": hourLater },
      200,
    ],
    ["If-Match same tag", { "if-match": etag }, 200],
    ["If-Match *", { "if-match": "*" }, 200],
    ["If-Match list", { "if-match": `"x", ${etag}` }, 200],
    ["If-Match other tag", { "if-match": `"other"` }, 412],
    ["If-Match weak tag (strong comparison)", { "if-match": `W/${etag}` }, 412],
    ["If-Unmodified-Since = Last-Modified", {
      "if-unmodified-since": lastModified,
    }, 200],
    [
      "If-Unmodified-Since earlier",
      { "if-unmodified-since": hourEarlier },
      412,
    ],
    ["If-Unmodified-Since garbage", { "if-unmodified-since": "soon" }, 200],
    [
      "If-Match passes, If-Unmodified-Since ignored",
      { "if-match": etag, "if-unmodified-since": hourEarlier },
      200,
    ],
    ["If-Match fails before If-None-Match", {
      "if-match": `"x"`,
      "if-none-match": etag,
    }, 412],
  ];
  for (const [name, headers, status] of cases) {
    await t.step(name, async () => {
      for (const method of ["GET", "HEAD"]) {
        const res = await dir(tree.root, "/a.txt", { method, headers });
        assert.equal(res.status, status, method);
        const body = await res.text();
        if (status === 304) {
          assert.equal(body, "");
          assert.equal(res.headers.get("etag"), etag);
          assert.equal(res.headers.get("cache-control"), "no-cache");
        }
        if (status === 200) {
          assert.equal(body, method === "GET" ? "hello a" : "");
        }
      }
    });
  }
});

Deno.test("a changed file gets a new ETag and the old one no longer matches", async () => {
  await using tree = await makeTree();
  const first = await app({ fsRoot: tree.root, cacheMs: 0 }, "/a.txt");
  const etag = first.headers.get("etag")!;
  await first.body?.cancel();
  await Deno.writeTextFile(`${tree.root}/a.txt`, "hello again, longer");
  const handler = createHandler({ fsRoot: tree.root, quiet: true, cacheMs: 0 });
  const res = await handler(
    new Request("http://localhost/a.txt", {
      headers: { "if-none-match": etag },
    }),
  );
  assert.equal(res.status, 200);
  assert.notEqual(res.headers.get("etag"), etag);
  assert.equal(await res.text(), "hello again, longer");
});

Deno.test("planFileResponse decides status, headers and body without touching the disk", () => {
  const meta = {
    size: 100,
    etag: `"64-1"`,
    lastModified: "Sun, 22 Nov 2026 01:26:25 GMT",
    mtimeSeconds: Date.parse("Sun, 22 Nov 2026 01:26:25 GMT") / 1000,
    contentType: "text/plain; charset=utf-8",
  };
  const extra: [string, string][] = [["X-Extra", "1"]];
  const cases: [
    Record<string, string>,
    number,
    unknown,
    Record<string, string | null>,
  ][] = [
    [{}, 200, { kind: "whole" }, {
      "content-length": "100",
      "accept-ranges": "bytes",
      etag: `"64-1"`,
      "x-extra": "1",
    }],
    [{ range: "bytes=10-19" }, 206, {
      kind: "ranges",
      pieces: [{ start: 10, end: 19 }],
    }, { "content-length": "10", "content-range": "bytes 10-19/100" }],
    [{ "if-none-match": `"64-1"` }, 304, { kind: "none" }, {
      etag: `"64-1"`,
      "content-length": null,
      "content-type": null,
      "x-extra": "1",
    }],
    [{ "if-match": `"0-0"` }, 412, { kind: "reason" }, {
      "content-length": "20", // "Precondition Failed\n"
      etag: null,
    }],
    [{ range: "bytes=100-" }, 416, { kind: "reason" }, {
      "content-range": "bytes */100",
      "x-extra": "1",
    }],
  ];
  for (const [headers, status, body, expected] of cases) {
    for (const method of ["GET", "HEAD"]) {
      const plan = planFileResponse(
        new Request("http://localhost/x", { method, headers }),
        meta,
        extra,
      );
      const label = `${method} ${JSON.stringify(headers)}`;
      assert.equal(plan.status, status, label);
      assert.deepEqual(plan.body, body, label);
      const got = new Headers(plan.headers);
      for (const [name, value] of Object.entries(expected)) {
        assert.equal(got.get(name), value, `${label} ${name}`);
      }
    }
  }
});

// --- Ranges --------------------------------------------------------------

Deno.test("parseRanges table: one range, several, merged, capped (CVE-2011-3192)", () => {
  const cases: [string, number, ReturnType<typeof parseRanges>][] = [
    ["bytes=0-499", 1000, [{ start: 0, end: 499 }]],
    ["bytes=500-999", 1000, [{ start: 500, end: 999 }]],
    ["bytes=500-", 1000, [{ start: 500, end: 999 }]],
    ["bytes=-500", 1000, [{ start: 500, end: 999 }]],
    ["bytes=-1", 1000, [{ start: 999, end: 999 }]],
    ["bytes=-5000", 1000, [{ start: 0, end: 999 }]],
    ["bytes=900-5000", 1000, [{ start: 900, end: 999 }]],
    ["bytes=0-0", 1000, [{ start: 0, end: 0 }]],
    ["bytes=999-999", 1000, [{ start: 999, end: 999 }]],
    ["BYTES=1-2", 1000, [{ start: 1, end: 2 }]],
    [" bytes = 1 - 2 ", 1000, [{ start: 1, end: 2 }]],
    ["bytes=0-99999999999999999999", 1000, [{ start: 0, end: 999 }]],
    ["bytes=1000-", 1000, "unsatisfiable"],
    ["bytes=1000-2000", 1000, "unsatisfiable"],
    ["bytes=99999999999999999999-", 1000, "unsatisfiable"],
    ["bytes=-0", 1000, "unsatisfiable"],
    // An empty file has no range to send: the whole (empty) file, as std and Go do.
    ["bytes=0-", 0, null],
    ["bytes=-5", 0, null],
    ["bytes=5-9", 0, null],
    ["bytes=5-2", 1000, "unsatisfiable"],
    ["bytes=-", 1000, null],
    ["bytes=", 1000, null],
    ["bytes=a-b", 1000, null],
    ["bytes=1.5-2", 1000, null],
    ["bytes=-1-2", 1000, null],
    ["bytes=+1-2", 1000, null],
    // Several ranges: kept in the client's order; overlapping or touching ones merged.
    ["bytes=0-1,3-4", 1000, [{ start: 0, end: 1 }, { start: 3, end: 4 }]],
    ["bytes=500-599, 0-9", 1000, [{ start: 500, end: 599 }, {
      start: 0,
      end: 9,
    }]],
    ["bytes=0-9,10-19", 1000, [{ start: 0, end: 19 }]],
    ["bytes=0-9,5-14,-10", 1000, [{ start: 0, end: 14 }, {
      start: 990,
      end: 999,
    }]],
    ["bytes=50-59,0-9,55-60", 1000, [{ start: 50, end: 60 }, {
      start: 0,
      end: 9,
    }]],
    ["bytes=0-1, ,5-6,", 1000, [{ start: 0, end: 1 }, { start: 5, end: 6 }]],
    // Unsatisfiable ones are dropped; all unsatisfiable is 416.
    ["bytes=0-1,2000-3000", 1000, [{ start: 0, end: 1 }]],
    ["bytes=2000-,-0", 1000, "unsatisfiable"],
    // One bad range makes the whole header ignored; a backwards one, 416.
    ["bytes=0-1,x", 1000, null],
    ["bytes=0-1,5-2", 1000, "unsatisfiable"],
    // More than 16 ranges, or more bytes than the file: the whole file.
    [
      `bytes=${Array.from({ length: 16 }, (_, i) => `${i * 10}-${i * 10}`)}`,
      1000,
      Array.from({ length: 16 }, (_, i) => ({ start: i * 10, end: i * 10 })),
    ],
    [
      `bytes=${Array.from({ length: 17 }, (_, i) => `${i * 10}-${i * 10}`)}`,
      1000,
      null,
    ],
    ["bytes=0-599,400-999", 1000, null],
    ["bytes=0-,0-", 1000, null],
    ["bytes=0-499,500-999", 1000, [{ start: 0, end: 999 }]],
    ["items=0-1", 1000, null],
    ["0-1", 1000, null],
    ["", 1000, null],
  ];
  for (const [header, size, expected] of cases) {
    assert.deepEqual(
      parseRanges(header, size),
      expected,
      `${JSON.stringify(header)} of ${size}`,
    );
  }
});

Deno.test("Range requests table: 206, 416, ignored ranges and If-Range", async (t) => {
  await using tree = await makeTree();
  await Deno.writeTextFile(`${tree.root}/digits.txt`, DIGITS);
  const probe = await dir(tree.root, "/digits.txt", { method: "HEAD" });
  const etag = probe.headers.get("etag")!;
  const lastModified = probe.headers.get("last-modified")!;
  const earlier = new Date(Date.parse(lastModified) - 3600_000).toUTCString();
  const cases: [
    string,
    Record<string, string>,
    number,
    [number, number] | null,
  ][] = [
    ["first bytes", { range: "bytes=0-9" }, 206, [0, 9]],
    ["middle", { range: "bytes=37-41" }, 206, [37, 41]],
    ["open-ended", { range: "bytes=90-" }, 206, [90, 99]],
    ["suffix", { range: "bytes=-5" }, 206, [95, 99]],
    ["suffix longer than the file", { range: "bytes=-500" }, 206, [0, 99]],
    ["end past the file", { range: "bytes=95-200" }, 206, [95, 99]],
    ["start past the file", { range: "bytes=100-" }, 416, null],
    ["empty suffix", { range: "bytes=-0" }, 416, null],
    ["backwards range: 416, as std", { range: "bytes=5-2" }, 416, null],
    [
      "more than 16 ranges ignored",
      {
        range: `bytes=${Array.from({ length: 17 }, (_, i) => `${i}-${i}`)}`,
      },
      200,
      null,
    ],
    [
      "ranges adding up to more than the file ignored",
      {
        range: "bytes=0-59,40-99",
      },
      200,
      null,
    ],
    [
      "overlapping ranges merged into one",
      {
        range: "bytes=0-9,5-19",
      },
      206,
      [0, 19],
    ],
    ["other unit ignored", { range: "items=0-1" }, 200, null],
    ["If-Range current ETag", { range: "bytes=0-9", "if-range": etag }, 206, [
      0,
      9,
    ]],
    [
      "If-Range old ETag",
      { range: "bytes=0-9", "if-range": `"old"` },
      200,
      null,
    ],
    [
      "If-Range weak ETag",
      { range: "bytes=0-9", "if-range": `W/${etag}` },
      200,
      null,
    ],
    [
      "If-Range current date",
      { range: "bytes=0-9", "if-range": lastModified },
      206,
      [0, 9],
    ],
    [
      "If-Range old date",
      { range: "bytes=0-9", "if-range": earlier },
      200,
      null,
    ],
    [
      "If-None-Match beats Range",
      { range: "bytes=0-9", "if-none-match": etag },
      304,
      null,
    ],
    [
      "If-Match failure beats Range",
      { range: "bytes=0-9", "if-match": `"x"` },
      412,
      null,
    ],
  ];
  for (const [name, headers, status, range] of cases) {
    await t.step(name, async () => {
      for (const fromMemory of [false, true]) {
        // Through serveDir (from disk) and through the app (from its memory cache).
        const res = !fromMemory
          ? await dir(tree.root, "/digits.txt", { headers })
          : await app({ fsRoot: tree.root }, "/digits.txt", { headers });
        assert.equal(res.status, status);
        const body = await res.text();
        if (status === 206) {
          const [start, end] = range!;
          assert.equal(body, DIGITS.slice(start, end + 1));
          assert.equal(
            res.headers.get("content-range"),
            `bytes ${start}-${end}/100`,
          );
          assert.equal(
            res.headers.get("content-length"),
            String(end - start + 1),
          );
          assert.equal(
            res.headers.get("content-type"),
            "text/plain; charset=utf-8",
          );
        } else if (status === 416) {
          assert.equal(res.headers.get("content-range"), "bytes */100");
        } else if (status === 200) {
          assert.equal(body, DIGITS);
          assert.equal(res.headers.get("content-range"), null);
        }
      }
    });
  }
  const head = await dir(tree.root, "/digits.txt", {
    method: "HEAD",
    headers: { range: "bytes=10-19" },
  });
  assert.equal(head.status, 206);
  assert.equal(head.body, null);
  assert.equal(head.headers.get("content-range"), "bytes 10-19/100");
  assert.equal(head.headers.get("content-length"), "10");
});

/** Splits a multipart/byteranges body into its parts' headers and bodies. */
function parseMultipart(contentType: string, body: string) {
  const boundary = /^multipart\/byteranges; boundary=([0-9a-f]+)$/.exec(
    contentType,
  )![1];
  assert.ok(body.startsWith(`--${boundary}\r\n`), "starts with a boundary");
  assert.ok(body.endsWith(`\r\n--${boundary}--\r\n`), "ends with the close");
  const inner = body.slice(0, -`\r\n--${boundary}--\r\n`.length);
  return inner.split(`--${boundary}\r\n`).slice(1).map((part, i, all) => {
    const cut = part.indexOf("\r\n\r\n");
    const headers = new Headers(
      part.slice(0, cut).split("\r\n").map((line) =>
        line.split(": ") as [string, string]
      ),
    );
    let data = part.slice(cut + 4);
    if (i < all.length - 1) {
      assert.ok(data.endsWith("\r\n"));
      data = data.slice(0, -2);
    }
    return { headers, data };
  });
}

Deno.test("multiple ranges: 206 multipart/byteranges, a Content-Range per part, exact length", async (t) => {
  await using tree = await makeTree();
  await Deno.writeTextFile(`${tree.root}/digits.txt`, DIGITS);
  const big = "abcdefghij".repeat(40_000); // 400 KB: served from disk
  await Deno.writeTextFile(`${tree.root}/big.txt`, big);
  const cases: [string, string, [number, number][]][] = [
    ["/digits.txt", "bytes=0-1,5-6", [[0, 1], [5, 6]]],
    ["/digits.txt", "bytes=90-,-3,10-12", [[90, 99], [10, 12]]],
    ["/digits.txt", "bytes=50-59, 0-9", [[50, 59], [0, 9]]],
    ["/digits.txt", "bytes=0-1,500-600,7-8", [[0, 1], [7, 8]]],
    ["/big.txt", "bytes=0-9,300000-300009,-5", [[0, 9], [300000, 300009], [
      399995,
      399999,
    ]]],
    ["/big.txt", "bytes=1-100000,200000-399999", [[1, 100000], [
      200000,
      399999,
    ]]],
  ];
  const handler = createHandler({ fsRoot: tree.root, quiet: true });
  for (const [path, range, expected] of cases) {
    await t.step(`${path} ${range}`, async () => {
      const text = path === "/big.txt" ? big : DIGITS;
      for (const from of ["disk", "app"]) {
        const req = () =>
          new Request(`http://localhost${path}`, {
            headers: { range, "accept-encoding": "gzip, br" },
          });
        const res = from === "disk"
          ? await serveDir(req(), { fsRoot: tree.root, quiet: true })
          : await handler(req());
        assert.equal(res.status, 206, from);
        assert.equal(res.headers.get("content-range"), null);
        assert.equal(res.headers.get("content-encoding"), null);
        const type = res.headers.get("content-type")!;
        const body = await res.text();
        assert.equal(res.headers.get("content-length"), String(body.length));
        const parts = parseMultipart(type, body);
        assert.deepEqual(
          parts.map((p) => p.data),
          expected.map(([a, b]) => text.slice(a, b + 1)),
          from,
        );
        parts.forEach((part, i) => {
          const [a, b] = expected[i];
          assert.equal(
            part.headers.get("content-range"),
            `bytes ${a}-${b}/${text.length}`,
          );
          assert.equal(
            part.headers.get("content-type"),
            "text/plain; charset=utf-8",
          );
        });
        const head = from === "disk"
          ? await serveDir(new Request(req(), { method: "HEAD" }), {
            fsRoot: tree.root,
            quiet: true,
          })
          : await handler(new Request(req(), { method: "HEAD" }));
        assert.equal(head.status, 206);
        assert.equal(head.body, null);
        assert.deepEqual([...head.headers], [...res.headers], "HEAD = GET");
      }
    });
  }
  await t.step(
    "a client that goes away mid-answer: the file is closed",
    async () => {
      const res = await serveDir(
        new Request("http://localhost/big.txt", {
          headers: { range: "bytes=0-300000,350000-350010" },
        }),
        { fsRoot: tree.root, quiet: true },
      );
      const reader = res.body!.getReader();
      await reader.read();
      await reader.cancel();
    },
  );
});

Deno.test("large files stream from disk", async (t) => {
  await using tree = await makeTree();
  const size = 3 * 1024 * 1024 + 123; // bigger than the cache limit and the 1 MiB chunk
  const data = new Uint8Array(size);
  for (let i = 0; i < size; i++) data[i] = (i * 7 + (i >> 10)) & 0xff;
  await Deno.writeFile(`${tree.root}/big.bin`, data);
  const handler = createHandler({ fsRoot: tree.root, quiet: true });
  await t.step("the whole file", async () => {
    const whole = await handler(new Request("http://localhost/big.bin"));
    assert.equal(whole.headers.get("content-length"), String(size));
    assert.deepEqual(new Uint8Array(await whole.arrayBuffer()), data);
  });
  const [start, end] = [1000, 2 * 1024 * 1024 + 5000];
  await t.step("a range across read chunks", async () => {
    const part = await handler(
      new Request("http://localhost/big.bin", {
        headers: { range: `bytes=${start}-${end}` },
      }),
    );
    assert.equal(part.status, 206);
    assert.deepEqual(
      new Uint8Array(await part.arrayBuffer()),
      data.subarray(start, end + 1),
    );
  });
  await t.step("a range to the end of the file", async () => {
    const tail = await handler(
      new Request("http://localhost/big.bin", {
        headers: { range: `bytes=${start}-` },
      }),
    );
    assert.equal(
      tail.headers.get("content-range"),
      `bytes ${start}-${size - 1}/${size}`,
    );
    assert.deepEqual(
      new Uint8Array(await tail.arrayBuffer()),
      data.subarray(start),
    );
  });
  // A client that gives up after the first chunk: the file is closed (sanitizer checks).
  const abandoned = await handler(
    new Request("http://localhost/big.bin", {
      headers: { range: "bytes=10-2000000" },
    }),
  );
  const reader = abandoned.body!.getReader();
  await reader.read();
  await reader.cancel();
  const abandonedTail = await handler(
    new Request("http://localhost/big.bin", {
      headers: { range: "bytes=10-" },
    }),
  );
  await abandonedTail.body!.cancel();
  const abandonedWhole = await handler(new Request("http://localhost/big.bin"));
  await abandonedWhole.body!.cancel();
});

// --- serveFile -----------------------------------------------------------

Deno.test("serveFile", async (t) => {
  await using tree = await makeTree();
  const req = () => new Request("http://localhost/anything");
  await t.step("serves the given file, whatever the URL", async () => {
    const res = await serveFile(req(), `${tree.root}/sub/b.txt`);
    assert.equal(res.status, 200);
    assert.equal(await res.text(), "hello b");
  });
  await t.step("takes the file's info from fileInfo", async () => {
    const info = await Deno.stat(`${tree.root}/a.txt`);
    const withInfo = await serveFile(req(), `${tree.root}/a.txt`, {
      fileInfo: info,
    });
    assert.equal(withInfo.headers.get("content-length"), String(info.size));
    assert.equal(await withInfo.text(), "hello a");
  });
  await t.step("a folder or a missing file is a generic 404", async () => {
    for (const path of [`${tree.root}/sub`, `${tree.root}/missing.txt`]) {
      const miss = await serveFile(req(), path);
      assert.equal(miss.status, 404, path);
      assert.equal(await miss.text(), "Not Found\n", path);
    }
  });
  await t.step("a Range gets 206 with the part", async () => {
    const ranged = await serveFile(
      new Request("http://localhost/", { headers: { range: "bytes=-1" } }),
      `${tree.root}/a.txt`,
    );
    assert.equal(ranged.status, 206);
    assert.equal(await ranged.text(), "a");
  });
  await t.step("POST gets 405 with Allow", async () => {
    const post = await serveFile(
      new Request("http://localhost/", { method: "POST" }),
      `${tree.root}/a.txt`,
    );
    assert.equal(post.status, 405);
    assert.equal(post.headers.get("allow"), "GET, HEAD");
    await post.body?.cancel();
  });
});

// --- The app's small-file cache ------------------------------------------

Deno.test("cache: revalidation", async (t) => {
  await using tree = await makeTree();
  const get = async (
    handler: ReturnType<typeof createHandler>,
    path = "/a.txt",
  ) => {
    const res = await handler(new Request(`http://localhost${path}`));
    return [res.status, await res.text()] as const;
  };
  const slow = createHandler({
    fsRoot: tree.root,
    quiet: true,
    cacheMs: 3_600_000,
  });
  const fresh = createHandler({ fsRoot: tree.root, quiet: true, cacheMs: 0 });
  assert.deepEqual(await get(slow), [200, "hello a"]);
  assert.deepEqual(await get(fresh), [200, "hello a"]);
  await Deno.writeTextFile(`${tree.root}/a.txt`, "changed!");
  await t.step("within cacheMs the cached copy is served", async () => {
    assert.deepEqual(await get(slow), [200, "hello a"]);
  });
  await t.step("after cacheMs the file is checked again", async () => {
    assert.deepEqual(await get(fresh), [200, "changed!"]);
  });
  await t.step("a file now a symlink to the outside is refused", async () => {
    await Deno.remove(`${tree.root}/a.txt`);
    await Deno.symlink(`${tree.base}/outside.txt`, `${tree.root}/a.txt`);
    assert.deepEqual(await get(fresh), [404, "Not Found\n"]);
  });
  await t.step("a folder's index.html is revalidated too", async () => {
    // The directory index is cached under the folder's URL.
    await Deno.writeTextFile(`${tree.root}/sub/index.html`, "one");
    assert.deepEqual(await get(fresh, "/sub/"), [200, "one"]);
    await Deno.remove(`${tree.root}/sub/index.html`);
    assert.deepEqual(await get(fresh, "/sub/"), [404, "Not Found\n"]);
  });
});

Deno.test("cache off (maxCachedFileBytes 0) serves from disk", async () => {
  await using tree = await makeTree();
  const handler = createHandler({
    fsRoot: tree.root,
    quiet: true,
    maxCachedFileBytes: 0,
    cacheMs: 3_600_000, // a cache would keep the first copy for an hour
  });
  const get = async () =>
    await (await handler(new Request("http://localhost/a.txt"))).text();
  assert.equal(await get(), "hello a");
  await Deno.writeTextFile(`${tree.root}/a.txt`, "changed!");
  assert.equal(await get(), "changed!");
});

Deno.test('headers: HeadersInit (a record, pairs, a Headers) works as std\'s newer serveDir takes it, beside "Name: value" strings', async () => {
  await using tree = await makeTree();
  const forms: ExtraHeaders[] = [
    ["X-Frame-Options: DENY", "Link: </a.css>; rel=preload"],
    { "X-Frame-Options": "DENY", "Link": "</a.css>; rel=preload" },
    [["X-Frame-Options", "DENY"], ["Link", "</a.css>; rel=preload"]],
    new Headers({ "x-frame-options": "DENY", link: "</a.css>; rel=preload" }),
  ];
  for (const headers of forms) {
    for (
      const res of [
        await dir(tree.root, "/a.txt", {}, { headers }),
        await serveFile(
          new Request("http://localhost/"),
          `${tree.root}/a.txt`,
          {
            headers,
          },
        ),
        await createHandler({ fsRoot: tree.root, quiet: true, headers })(
          new Request("http://localhost/a.txt"),
        ),
      ]
    ) {
      assert.equal(res.headers.get("x-frame-options"), "DENY");
      assert.equal(res.headers.get("link"), "</a.css>; rel=preload");
      assert.equal(await res.text(), "hello a");
    }
  }
  for (
    const bad of [{ "Bad Name": "x" }, [["X-A", "a\r\nX-B: b"]], [["X-A"]]]
  ) {
    assert.throws(
      () => createHandler({ fsRoot: tree.root, headers: bad as ExtraHeaders }),
      TypeError,
    );
  }
});

Deno.test("createHandler refuses a bad --header at creation", async () => {
  await using tree = await makeTree();
  assert.throws(
    () => createHandler({ fsRoot: tree.root, headers: ["no colon"] }),
    TypeError,
  );
  assert.throws(
    () => createHandler({ fsRoot: tree.root, headers: ["Bad Name: x"] }),
    TypeError,
  );
  assert.throws(
    () => createHandler({ fsRoot: `${tree.base}/missing` }),
    Deno.errors.NotFound,
  );
});

// --- Pure helpers ----------------------------------------------------------

Deno.test("formatAccessLog", async (t) => {
  const date = new Date(Date.UTC(2026, 10, 21, 22, 44, 51));
  const line = (requestLine: string | null, bodyBytes: number | null) =>
    formatAccessLog({
      client: "127.0.0.1",
      date,
      requestLine,
      status: 200,
      bodyBytes,
    });
  const cases: [
    requestLine: string | null,
    bytes: number | null,
    want: string,
  ][] = [
    ["GET /page.html HTTP/1.1", 1234, `"GET /page.html HTTP/1.1" 200 1234`],
    ["HEAD / HTTP/1.1", null, `"HEAD / HTTP/1.1" 200 -`],
    ["GET / HTTP/1.1", 0, `"GET / HTTP/1.1" 200 -`],
    [null, null, `"-" 200 -`],
  ];
  // A crafted target cannot close the quotes, start a line or colour a terminal.
  const forged: typeof cases = [
    [
      `GET /a" 200 1\n127.0.0.1 - - "x\\ HTTP/1.1`,
      9,
      `"GET /a\\x22 200 1\\x0a127.0.0.1 - - \\x22x\\x5c HTTP/1.1" 200 9`,
    ],
    [
      "GET /\x1b[2J\u202e\x85 HTTP/1.1",
      9,
      `"GET /\\x1b[2J\\u{202e}\\x85 HTTP/1.1" 200 9`,
    ],
  ];
  await t.step("it writes Common Log Format", () => {
    for (const [requestLine, bytes, want] of cases) {
      assert.equal(
        line(requestLine, bytes),
        `127.0.0.1 - - [21/Nov/2026:22:44:51 +0000] ${want}`,
      );
    }
  });
  await t.step("a crafted request line is escaped", () => {
    for (const [requestLine, bytes, want] of forged) {
      assert.equal(
        line(requestLine, bytes),
        `127.0.0.1 - - [21/Nov/2026:22:44:51 +0000] ${want}`,
      );
    }
  });
  await t.step("an unknown client is -", () => {
    assert.equal(
      formatAccessLog({
        client: null,
        date: new Date(0),
        requestLine: "GET / HTTP/1.1",
        status: 304,
        bodyBytes: null,
      }),
      `- - - [01/Jan/1970:00:00:00 +0000] "GET / HTTP/1.1" 304 -`,
    );
  });
});

Deno.test("contentTypeFor ignores the extension's case", () => {
  assert.equal(contentTypeFor("/a/b.d/Page.HTML"), "text/html; charset=utf-8");
});

Deno.test("contentTypeFor takes the extension of the name, not of a folder", () => {
  assert.equal(contentTypeFor("/a/b.css/file"), "application/octet-stream");
  assert.equal(contentTypeFor("archive.tar.gz"), "application/gzip");
  assert.equal(contentTypeFor(".hidden"), "application/octet-stream");
  assert.equal(contentTypeFor("x.__proto__"), "application/octet-stream");
});
