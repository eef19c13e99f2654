// Which URL gets which answer, in-process: filesystem errors are 4xx,
// non-canonical spellings redirect, the Host allow-list, the SPA fallback and
// clean URLs.
import assert from "node:assert/strict";
import {
  canonicalUrlPath,
  createHandler,
  type HandlerOptions,
  serveDir,
  statusForFsError,
} from "../server_files.ts";
import { makeTree } from "./_files.ts";

async function answer(
  options: HandlerOptions,
  path: string,
  headers: Record<string, string> = {},
  method = "GET",
) {
  const handler = createHandler({ quiet: true, ...options });
  const res = await handler(
    new Request(`http://localhost${path}`, { method, headers }),
  );
  return {
    status: res.status,
    location: res.headers.get("location"),
    text: await res.text(),
    headers: res.headers,
  };
}

Deno.test("filesystem errors caused by the request are 4xx, never 500", async (t) => {
  await using tree = await makeTree();
  await Deno.symlink("loop-b", `${tree.root}/loop-a`);
  await Deno.symlink("loop-a", `${tree.root}/loop-b`);
  await Deno.symlink(`${tree.base}/nowhere`, `${tree.root}/dangling`);
  const cases: [string, number, string][] = [
    [
      "/" + "a".repeat(5000),
      404,
      "a segment longer than NAME_MAX (ENAMETOOLONG)",
    ],
    ["/" + "a".repeat(300), 404, "just past NAME_MAX"],
    ["/" + "a/".repeat(3000) + "x", 404, "a path longer than PATH_MAX"],
    ["/" + "%61".repeat(400), 404, "encoded, too long once decoded"],
    ["/sub/" + "b".repeat(256) + "/c", 404, "too long in the middle"],
    ["/a.txt/x", 404, "a file used as a folder (ENOTDIR)"],
    ["/a.txt/x/y/z", 404, "deeper below a file"],
    ["/loop-a", 404, "a symlink loop (ELOOP)"],
    ["/loop-a/x", 404, "below a symlink loop"],
    ["/dangling", 404, "a dangling symlink"],
    ["/%ff", 400, "not UTF-8 once decoded"],
    ["/%", 400, "a truncated escape"],
  ];
  for (const [path, status, why] of cases) {
    await t.step(`${why}: ${status}`, async () => {
      for (const cacheMs of [1000, 0]) {
        const got = await answer({ fsRoot: tree.root, cacheMs }, path);
        assert.equal(got.status, status, path.slice(0, 80));
        assert.ok(!got.text.includes(tree.base), got.text);
      }
      const res = await serveDir(new Request(`http://localhost${path}`), {
        fsRoot: tree.root,
        quiet: true,
      });
      assert.equal(res.status, status, `serveDir ${path.slice(0, 80)}`);
      await res.body?.cancel();
    });
  }
});

Deno.test("statusForFsError: each errno caused by a request has its 4xx", () => {
  const cases: [string, number][] = [
    ["ENOENT", 404],
    ["ENOTDIR", 404],
    ["ENAMETOOLONG", 404],
    ["ELOOP", 404],
    ["EISDIR", 404],
    ["ENXIO", 404],
    ["EACCES", 403],
    ["EPERM", 403],
    ["EILSEQ", 400],
    ["EINVAL", 400],
    ["EMFILE", 503],
    ["ENFILE", 503],
    ["EIO", 500],
  ];
  for (const [code, status] of cases) {
    const error = Object.assign(new Error(code), { code });
    assert.equal(statusForFsError(error), status, code);
  }
  assert.equal(statusForFsError(new Deno.errors.NotFound("x")), 500);
  assert.equal(statusForFsError(new Deno.errors.NotCapable("x")), 404);
  assert.equal(statusForFsError("not an error"), 500);
});

Deno.test("canonicalUrlPath: std's normalisation, one leading slash, encoding kept", () => {
  const cases: [string, string | null][] = [
    ["/a.txt", null],
    ["/", null],
    ["/sub/", null],
    ["/%61.txt", null],
    ["/a//////b.txt", "/a/b.txt"],
    ["/a/./b.txt", "/a/b.txt"],
    ["/a/%2e/b.txt", "/a/b.txt"],
    ["/./a.txt", "/a.txt"],
    ["//a.txt", "/a.txt"],
    ["//evil.example/x", "/evil.example/x"],
    ["/%2f%2fevil.example", "/evil.example"],
    ["/sub//", "/sub/"],
    ["/sub/.", "/sub/"],
    ["/sub/./", "/sub/"],
    ["/a b//c", "/a%20b/c"],
    ["/caf%C3%A9//x", "/caf%C3%A9/x"],
    ["/q%3Fx//y", "/q%3Fx/y"],
    ["/h%23x//y", "/h%23x/y"],
    ["/p%25//y", "/p%25/y"],
    ["/it's(1)//y", "/it's(1)/y"],
  ];
  for (const [path, expected] of cases) {
    assert.equal(canonicalUrlPath(path), expected, path);
  }
});

// `new Request()` resolves `.` and `..` segments itself: those spellings are
// sent raw to a real server in files_socket_test.ts.
Deno.test("redirects to the canonical path (301, query kept)", async (t) => {
  await using tree = await makeTree();
  const cases: [string, number, string | null][] = [
    ["/a//////b.txt?x=1", 301, "/a/b.txt?x=1"],
    ["/sub//b.txt", 301, "/sub/b.txt"],
    ["//a.txt", 301, "/a.txt"],
    ["//evil.example/", 301, "/evil.example/"],
    ["/%2F%2Fevil.example", 301, "/evil.example"],
    ["/a.txt/", 301, "/a.txt"],
    ["/a.txt/?q=1", 301, "/a.txt?q=1"],
    ["/sub/b.txt/?x", 301, "/sub/b.txt" + "?x"],
    ["/sub", 301, "/sub/"],
    ["/sub/", 404, null],
    ["/a.txt", 200, null],
    ["/%61.txt", 200, null],
    ["/nope.txt/", 404, null],
    ["/%zz//a", 400, null],
    ["/.secret/", 404, null],
    ["/link-out/", 404, null],
  ];
  for (const [path, status, location] of cases) {
    const name = location === null
      ? `${path} is ${status}, not redirected`
      : `${path} redirects to ${location}`;
    await t.step(name, async () => {
      const got = await answer({ fsRoot: tree.root }, path);
      assert.equal(got.status, status);
      assert.equal(got.location, location);
      const res = await serveDir(new Request(`http://localhost${path}`), {
        fsRoot: tree.root,
        quiet: true,
      });
      assert.equal(res.status, status, "serveDir");
      assert.equal(res.headers.get("location"), location, "serveDir");
      await res.body?.cancel();
    });
  }
  await t.step("with a urlRoot, the Location keeps the prefix", async () => {
    const res = await serveDir(
      new Request("http://localhost/static//a.txt?v=2"),
      { fsRoot: tree.root, urlRoot: "static", quiet: true },
    );
    assert.equal(res.status, 301);
    assert.equal(res.headers.get("location"), "/static/a.txt?v=2");
    await res.body?.cancel();
  });
});

Deno.test("host allow-list", async (t) => {
  await using tree = await makeTree();
  const handler = createHandler({
    fsRoot: tree.root,
    quiet: true,
    allowedHosts: ["files.example", ".example.org"],
  });
  const get = async (url: string, host?: string) => {
    const res = await handler(
      new Request(url, { headers: host ? { host } : {} }),
    );
    return { status: res.status, text: await res.text() };
  };
  await t.step(
    "loopback names pass, in any case and with any port",
    async () => {
      for (
        const url of [
          "http://localhost:8080/a.txt",
          "http://LOCALHOST./a.txt",
          "http://127.0.0.1:9/a.txt",
          "http://[::1]:8080/a.txt",
        ]
      ) {
        assert.deepEqual(await get(url), { status: 200, text: "hello a" }, url);
      }
    },
  );
  await t.step(
    "allowedHosts pass, a leading dot with its subdomains",
    async () => {
      for (
        const url of [
          "http://files.example/a.txt",
          "http://FILES.example:443/a.txt",
          "http://example.org/a.txt",
          "http://a.b.example.org/a.txt",
        ]
      ) {
        assert.deepEqual(await get(url), { status: 200, text: "hello a" }, url);
      }
    },
  );
  await t.step("any other name is 421 naming the flag and option", async () => {
    for (
      const url of [
        "http://evil.example/a.txt",
        "http://evil.example:8080/suggest?firstname=x&food=Pizza",
        "http://localhost.evil.example/a.txt",
        "http://files.example.evil/a.txt",
        "http://badexample.org/a.txt",
        "http://127.0.0.2/a.txt",
      ]
    ) {
      const got = await get(url);
      assert.equal(got.status, 421, url);
      assert.match(got.text, /--allowed-host/);
      assert.match(got.text, /allowedHosts/);
      assert.doesNotMatch(got.text, /hello a/);
    }
  });
  await t.step("a cached file is not served to a rebinding name", async () => {
    // The check comes before the cache.
    assert.equal((await get("http://localhost/a.txt")).status, 200);
    assert.equal((await get("http://evil.example/a.txt")).status, 421);
  });
  await t.step("serveDir checks no Host unless asked, as std's", async () => {
    const res = await serveDir(new Request("http://evil.example/a.txt"), {
      fsRoot: tree.root,
      quiet: true,
    });
    assert.equal(res.status, 200);
    assert.equal(await res.text(), "hello a");
  });
});

Deno.test("--fallback", async (t) => {
  await using tree = await makeTree();
  await Deno.writeTextFile(`${tree.root}/app.html`, "<p>the app</p>");
  const options = { fsRoot: tree.root, fallback: "app.html" };
  const html = { accept: "text/html,application/xhtml+xml,*/*;q=0.8" };
  await t.step(
    "a GET for a missing path that accepts HTML gets the file",
    async () => {
      const spa = await answer(options, "/users/42?tab=1", html);
      assert.equal(spa.status, 200);
      assert.equal(spa.text, "<p>the app</p>");
      assert.match(spa.headers.get("content-type")!, /^text\/html/);
    },
  );
  await t.step("a HEAD gets its headers", async () => {
    const head = await answer(options, "/users/42", html, "HEAD");
    assert.equal(head.status, 200);
    assert.match(head.headers.get("content-type")!, /^text\/html/);
    assert.equal(head.text, "");
  });
  await t.step("a file that exists is itself", async () => {
    assert.equal((await answer(options, "/a.txt", html)).text, "hello a");
  });
  await t.step(
    "a request that does not accept HTML still gets 404",
    async () => {
      for (
        const accept of [undefined, "*/*", "application/json", "text/html;q=0"]
      ) {
        const got = await answer(
          options,
          "/missing.js",
          accept ? { accept } : {},
        );
        assert.equal(got.status, 404, accept);
        assert.equal(got.text, "Not Found\n", accept);
      }
    },
  );
  await t.step("a POST still gets 405", async () => {
    assert.equal((await answer(options, "/x", html, "POST")).status, 405);
  });
  await t.step("a malformed path still gets 400", async () => {
    assert.equal((await answer(options, "/%zz", html)).status, 400);
  });
  await t.step("a symlink out of the root gets the fallback", async () => {
    assert.equal(
      (await answer(options, "/link-out", html)).text,
      "<p>the app</p>",
    );
  });
  await t.step("a missing or outside fallback is refused at start-up", () => {
    assert.throws(
      () => createHandler({ fsRoot: tree.root, fallback: "nope.html" }),
      /fallback/,
    );
    assert.throws(
      () => createHandler({ fsRoot: tree.root, fallback: "../outside.txt" }),
      /fallback/,
    );
  });
});

Deno.test("--clean-urls", async (t) => {
  await using tree = await makeTree();
  await Deno.writeTextFile(`${tree.root}/about.html`, "about us");
  await Deno.mkdir(`${tree.root}/docs`);
  await Deno.writeTextFile(`${tree.root}/docs/index.html`, "docs index");
  await Deno.writeTextFile(`${tree.root}/docs.html`, "docs page");
  await Deno.writeTextFile(`${tree.root}/sub/page.html`, "a page");
  const options = { fsRoot: tree.root, cleanUrls: true };
  await t.step("/about serves about.html", async () => {
    const about = await answer(options, "/about?x=1");
    assert.equal(about.status, 200);
    assert.equal(about.text, "about us");
    assert.match(about.headers.get("content-type")!, /^text\/html/);
    assert.equal((await answer(options, "/sub/page")).text, "a page");
  });
  await t.step("/about.html redirects to /about, query kept", async () => {
    const redirect = await answer(options, "/about.html?x=1");
    assert.equal(redirect.status, 301);
    assert.equal(redirect.location, "/about?x=1");
    const page = await answer(options, "/sub/page.html");
    assert.equal(page.location, "/sub/page");
  });
  await t.step("a folder of the same name wins", async () => {
    assert.equal((await answer(options, "/docs")).location, "/docs/");
  });
  await t.step(
    "beside such a folder, the .html file keeps its URL",
    async () => {
      assert.equal((await answer(options, "/docs.html")).text, "docs page");
    },
  );
  await t.step("plain files and missing names are as before", async () => {
    assert.equal((await answer(options, "/a.txt")).text, "hello a");
    assert.equal((await answer(options, "/nope")).status, 404);
    assert.equal((await answer(options, "/nope.html")).status, 404);
  });
  await t.step("it is off by default", async () => {
    assert.equal((await answer({ fsRoot: tree.root }, "/about")).status, 404);
    assert.equal(
      (await answer({ fsRoot: tree.root }, "/about.html")).text,
      "about us",
    );
  });
});
