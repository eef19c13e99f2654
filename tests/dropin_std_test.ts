// Code switching from @std/http/file-server: each behaviour std's own
// file_server tests pin down, asked of our serveDir and serveFile the same way
// (in-process, plus a real socket for request-targets only a raw client can
// send). Where ours answers differently on purpose, README's table
// "Differences from @std/http/file-server" says so and files_std_diff_test
// checks it; this file holds what a switching user can count on as before.
import assert from "node:assert/strict";
import { serveDir, type ServeDirOptions, serveFile } from "../server_files.ts";
import { FILES_SCRIPT } from "./_files.ts";
import { startScript } from "./_process.ts";
import { sendRaw } from "./_raw.ts";

/** A site shaped like std's test data: names with spaces, `#`, `%`, a dotfile. */
async function makeStdSite() {
  const base = await Deno.realPath(
    await Deno.makeTempDir({ prefix: "dropin_std_" }),
  );
  const root = `${base}/site`;
  await Deno.mkdir(`${root}/with-index`, { recursive: true });
  await Deno.mkdir(`${root}/nested`);
  await Deno.writeTextFile(`${root}/hello.html`, "<p>Hello World</p>\n");
  await Deno.writeTextFile(`${root}/space file.txt`, TEXT);
  await Deno.writeTextFile(`${root}/hash#1.txt`, "hash");
  await Deno.writeTextFile(`${root}/hash#dir`, "hash without extension");
  await Deno.writeTextFile(`${root}/%`, "percent");
  await Deno.writeTextFile(`${root}/%41.txt`, "escaped-looking");
  await Deno.writeTextFile(`${root}/.hidden`, "dot");
  await Deno.writeTextFile(`${root}/empty.txt`, "");
  await Deno.writeTextFile(`${root}/with-index/index.html`, "the index");
  await Deno.writeTextFile(`${root}/nested/n.txt`, "n");
  return {
    base,
    root,
    async [Symbol.asyncDispose]() {
      await Deno.remove(base, { recursive: true });
    },
  };
}

/** 1,000 bytes, each line numbered, so every range has its own bytes. */
const TEXT = Array.from(
  { length: 100 },
  (_, i) => `line ${String(i).padStart(3, "0")}\n`,
).join("");
const SIZE = TEXT.length;

interface Case {
  /** The behaviour, as std's test states it. */
  name: string;
  path: string;
  init?: RequestInit;
  options?: ServeDirOptions;
  status: number;
  headers?: Record<string, string | null>;
  body?: string;
}

const CASES: Case[] = [
  {
    name: "a file, with its type (charset on text) and Accept-Ranges",
    path: "/hello.html",
    status: 200,
    headers: {
      "content-type": "text/html; charset=utf-8",
      "accept-ranges": "bytes",
    },
    body: "<p>Hello World</p>\n",
  },
  {
    name: "a name with `#`, sent as %23",
    path: "/hash%231.txt",
    status: 200,
    headers: { "content-type": "text/plain; charset=utf-8" },
    body: "hash",
  },
  {
    name: "a name with a space",
    path: "/space%20file.txt",
    status: 200,
    body: TEXT,
  },
  { name: "a file named %", path: "/%25", status: 200, body: "percent" },
  { name: "the query is ignored", path: "/hello.html?key=value", status: 200 },
  { name: "a missing file is 404", path: "/badfile.txt", status: 404 },
  {
    name:
      "dot segments are resolved by the URL parser before serveDir sees them",
    path: "/../../../../hello.html",
    status: 200,
  },
  {
    name: "an escaped backslash is 400",
    path: "/..%5C..%5Csecret.txt",
    status: 400,
  },
  { name: "a backslash inside a name is 400", path: "/a%5Cb.txt", status: 400 },
  { name: "a lone % is 400", path: "/100%", status: 400 },
  { name: "a bad escape is 400", path: "/a%zzb.html", status: 400 },
  {
    name: "a doubled slash redirects, `#` kept escaped in Location",
    path: "/hash%23dir//",
    status: 301,
    headers: { location: "/hash%23dir/" },
  },
  {
    name: "a file with a trailing slash redirects to the file, query kept",
    path: "/space%20file.txt/?test",
    status: 301,
    headers: { location: "/space%20file.txt?test" },
  },
  {
    name: "a folder without its slash redirects to it, query kept",
    path: "/with-index?test",
    status: 301,
    headers: { location: "/with-index/?test" },
  },
  {
    name: "showIndex (on by default) serves index.html",
    path: "/with-index/",
    status: 200,
    body: "the index",
  },
  {
    name: "showIndex false: a folder without a listing is 404",
    path: "/with-index/",
    options: { showIndex: false },
    status: 404,
  },
  {
    name: "no listing unless showDirListing",
    path: "/",
    status: 404,
  },
  {
    name: "a dotfile is 404 without showDotfiles",
    path: "/.hidden",
    status: 404,
  },
  {
    name: "a dotfile is served with showDotfiles",
    path: "/.hidden",
    options: { showDotfiles: true },
    status: 200,
    body: "dot",
  },
  {
    name: "urlRoot is stripped",
    path: "/static/hello.html",
    options: { urlRoot: "static" },
    status: 200,
    body: "<p>Hello World</p>\n",
  },
  {
    name: "urlRoot: a path that only shares its letters is 404",
    path: "/statichello.html",
    options: { urlRoot: "static" },
    status: 404,
  },
  {
    name: "urlRoot: a path outside it is 404",
    path: "/hello.html",
    options: { urlRoot: "static" },
    status: 404,
  },
  {
    name: "headers are added, `name:value` without a space too",
    path: "/hello.html",
    options: { headers: ["cache-control:max-age=100", "x-custom-header:hi"] },
    status: 200,
    headers: { "cache-control": "max-age=100", "x-custom-header": "hi" },
  },
  {
    name: "enableCors lets any origin read a file",
    path: "/hello.html",
    options: { enableCors: true },
    status: 200,
    headers: { "access-control-allow-origin": "*" },
  },
  {
    name: "enableCors on a 404 too",
    path: "/badfile.txt",
    options: { enableCors: true },
    status: 404,
    headers: { "access-control-allow-origin": "*" },
  },
  // Ranges, std's table: the same statuses, Content-Range and bytes.
  {
    name: "bytes=0-0 is the first byte",
    path: "/space%20file.txt",
    init: { headers: { range: "bytes=0-0" } },
    status: 206,
    headers: { "content-range": `bytes 0-0/${SIZE}` },
    body: "l",
  },
  {
    name: "bytes=0-100",
    path: "/space%20file.txt",
    init: { headers: { range: "bytes=0-100" } },
    status: 206,
    headers: {
      "content-range": `bytes 0-100/${SIZE}`,
      "content-length": "101",
    },
    body: TEXT.slice(0, 101),
  },
  {
    name: "bytes=300- runs to the end",
    path: "/space%20file.txt",
    init: { headers: { range: "bytes=300-" } },
    status: 206,
    headers: { "content-range": `bytes 300-${SIZE - 1}/${SIZE}` },
    body: TEXT.slice(300),
  },
  {
    name: "bytes=-200 is the last 200",
    path: "/space%20file.txt",
    init: { headers: { range: "bytes=-200" } },
    status: 206,
    headers: { "content-range": `bytes ${SIZE - 200}-${SIZE - 1}/${SIZE}` },
    body: TEXT.slice(-200),
  },
  {
    name: "an end past the file is clamped",
    path: "/space%20file.txt",
    init: { headers: { range: "bytes=0-999999999" } },
    status: 206,
    headers: { "content-range": `bytes 0-${SIZE - 1}/${SIZE}` },
    body: TEXT,
  },
  {
    name: "a suffix longer than the file is clamped",
    path: "/space%20file.txt",
    init: { headers: { range: "bytes=-999999999" } },
    status: 206,
    headers: { "content-range": `bytes 0-${SIZE - 1}/${SIZE}` },
    body: TEXT,
  },
  {
    name: "a range that ends before it starts is 416",
    path: "/space%20file.txt",
    init: { headers: { range: "bytes=500-200" } },
    status: 416,
    headers: { "content-range": `bytes */${SIZE}` },
  },
  {
    name: "a range past the end is 416",
    path: "/space%20file.txt",
    init: { headers: { range: "bytes=99999-999999" } },
    status: 416,
    headers: { "content-range": `bytes */${SIZE}` },
  },
  {
    name: "an open range past the end is 416",
    path: "/space%20file.txt",
    init: { headers: { range: "bytes=99999-" } },
    status: 416,
    headers: { "content-range": `bytes */${SIZE}` },
  },
  {
    name: "bytes=100 (no dash) is ignored",
    path: "/space%20file.txt",
    init: { headers: { range: "bytes=100" } },
    status: 200,
    body: TEXT,
  },
  {
    name: "bytes=a-b is ignored",
    path: "/space%20file.txt",
    init: { headers: { range: "bytes=a-b" } },
    status: 200,
    body: TEXT,
  },
  {
    name: "a range on an empty file is the empty file, 200",
    path: "/empty.txt",
    init: { headers: { range: "bytes=0-10, 20-30" } },
    status: 200,
    body: "",
  },
  // Conditional requests.
  {
    name:
      "If-None-Match naming another tag, with a matching If-Modified-Since, is 200",
    path: "/space%20file.txt",
    init: {
      headers: {
        "if-none-match": '"not-this-one"',
        "if-modified-since": new Date().toUTCString(),
      },
    },
    status: 200,
  },
];

Deno.test("std's serveDir cases answer the same from ours", async (t) => {
  await using site = await makeStdSite();
  for (const c of CASES) {
    await t.step(c.name, async () => {
      const res = await serveDir(
        new Request(`http://localhost${c.path}`, c.init),
        { fsRoot: site.root, quiet: true, ...c.options },
      );
      const body = await res.text();
      assert.equal(res.status, c.status, body);
      for (const [name, value] of Object.entries(c.headers ?? {})) {
        assert.equal(res.headers.get(name), value, name);
      }
      if (c.body !== undefined) assert.equal(body, c.body);
    });
  }
});

Deno.test("std's validator cases: ETag, Last-Modified, 304 and the status texts", async () => {
  await using site = await makeStdSite();
  const url = "http://localhost/space%20file.txt";
  const options = { fsRoot: site.root, quiet: true };
  const first = await serveDir(new Request(url), options);
  await first.body?.cancel();
  assert.equal(first.statusText, "OK");
  const etag = first.headers.get("etag")!;
  const lastModified = first.headers.get("last-modified")!;
  const { mtime } = await Deno.stat(`${site.root}/space file.txt`);
  // Last-Modified is the file's mtime, to the second (RFC 9110 5.6.7).
  assert.equal(
    Date.parse(lastModified),
    Math.floor(mtime!.getTime() / 1000) * 1000,
  );
  const conditionals: Record<string, string>[] = [
    { "if-none-match": etag },
    { "if-none-match": `W/${etag}` }, // a weak comparison, as std's
    { "if-none-match": `"other", ${etag}` },
    { "if-modified-since": lastModified },
  ];
  for (const headers of conditionals) {
    const res = await serveDir(new Request(url, { headers }), options);
    assert.equal(res.status, 304, JSON.stringify(headers));
    assert.equal(res.statusText, "Not Modified");
    assert.equal(await res.text(), "");
    assert.equal(res.headers.get("etag"), etag);
  }
  const partial = await serveDir(
    new Request(url, { headers: { range: "bytes=0-1" } }),
    options,
  );
  await partial.body?.cancel();
  assert.equal(partial.statusText, "Partial Content");
  const unsatisfiable = await serveDir(
    new Request(url, { headers: { range: "bytes=500-200" } }),
    options,
  );
  await unsatisfiable.body?.cancel();
  assert.equal(unsatisfiable.statusText, "Range Not Satisfiable");
});

Deno.test("std's listing cases: escaped links, a parent link below the root only, dotfiles hidden", async () => {
  await using site = await makeStdSite();
  const options = { fsRoot: site.root, quiet: true, showDirListing: true };
  const top = await serveDir(new Request("http://localhost/"), options);
  assert.equal(top.status, 200);
  const page = await top.text();
  assert.match(page, /href="hello\.html"/);
  assert.match(page, /href="nested\/"/);
  assert.match(page, /href="%2541\.txt"/); // "%41.txt" must not turn into "A.txt"
  assert.match(page, /href="hash%231\.txt"/); // a "#" would cut the link short
  assert.match(page, /href="space%20file\.txt"/);
  assert.ok(!page.includes(".hidden"));
  assert.ok(!page.includes('href="../"'));
  const nested = await serveDir(
    new Request("http://localhost/nested/"),
    options,
  );
  assert.match(await nested.text(), /href="\.\.\/"/);
  const dotted = await serveDir(new Request("http://localhost/"), {
    ...options,
    showDotfiles: true,
  });
  assert.match(await dotted.text(), /href="\.hidden"/);
});

Deno.test("serveDir with a missing fsRoot answers 404, as std, and says so once in the log", async () => {
  await using site = await makeStdSite();
  const missing = `${site.base}/not-made-yet`;
  const logged: string[] = [];
  const original = console.error;
  console.error = (...args: unknown[]) => logged.push(args.join(" "));
  try {
    for (const path of ["/a.txt", "/", "/sub/"]) {
      const res = await serveDir(new Request(`http://localhost${path}`), {
        fsRoot: missing,
        quiet: true,
        enableCors: true,
      });
      assert.equal(res.status, 404);
      assert.equal(res.headers.get("access-control-allow-origin"), "*");
      assert.equal(await res.text(), "Not Found\n");
    }
  } finally {
    console.error = original;
  }
  assert.equal(logged.length, 1, logged.join("\n"));
  assert.match(logged[0]!, /no folder .*not-made-yet/);
  // Created later, it is served at once: serveDir looks at each request.
  await Deno.mkdir(missing);
  await Deno.writeTextFile(`${missing}/a.txt`, "now here");
  const res = await serveDir(new Request("http://localhost/a.txt"), {
    fsRoot: missing,
    quiet: true,
  });
  assert.equal(await res.text(), "now here");
});

Deno.test("serveDir without fsRoot serves the working directory, as std", async () => {
  await using site = await makeStdSite();
  const cwd = Deno.cwd();
  Deno.chdir(site.root);
  try {
    const res = await serveDir(new Request("http://localhost/hello.html"), {
      quiet: true,
    });
    assert.equal(await res.text(), "<p>Hello World</p>\n");
  } finally {
    Deno.chdir(cwd);
  }
});

Deno.test("std's serveFile cases answer the same from ours", async () => {
  await using site = await makeStdSite();
  const file = `${site.root}/space file.txt`;
  const request = (init?: RequestInit) =>
    new Request("http://localhost/any/name", init);
  const ok = await serveFile(request(), file);
  assert.equal(ok.status, 200);
  assert.equal(await ok.text(), TEXT);
  const missing = await serveFile(request(), `${site.root}/nope.txt`);
  await missing.body?.cancel();
  assert.equal(missing.status, 404);
  assert.equal(missing.statusText, "Not Found");
  const folder = await serveFile(request(), site.root);
  await folder.body?.cancel();
  assert.equal(folder.status, 404);
  const range = await serveFile(
    request({ headers: { range: "bytes=200-500" } }),
    file,
  );
  assert.equal(range.status, 206);
  assert.equal(await range.text(), TEXT.slice(200, 501));
  const backwards = await serveFile(
    request({ headers: { range: "bytes=500-200" } }),
    file,
  );
  await backwards.body?.cancel();
  assert.equal(backwards.status, 416);
  assert.equal(backwards.headers.get("content-range"), `bytes */${SIZE}`);
  const etag = ok.headers.get("etag")!;
  const revalidated = await serveFile(
    request({ headers: { "if-none-match": etag } }),
    file,
  );
  assert.equal(revalidated.status, 304);
  assert.equal(revalidated.statusText, "Not Modified");
  // A fileInfo from Deno.stat, as std's serveDir passes it, is accepted.
  const fileInfo = await Deno.stat(file);
  const withInfo = await serveFile(request(), file, { fileInfo });
  assert.equal(await withInfo.text(), TEXT);
  const folderInfo = await Deno.stat(site.root);
  const notFile = await serveFile(request(), site.root, {
    fileInfo: folderInfo,
  });
  await notFile.body?.cancel();
  assert.equal(notFile.status, 404);
});

/** Sends one raw request head and returns the status line's code. */
async function rawStatus(port: number, target: string): Promise<number> {
  const request =
    `GET ${target} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n`;
  return (await sendRaw(port, request)).status;
}

Deno.test("std's raw request-targets through Deno.serve: no leading slash 400, absolute-form served", async () => {
  await using site = await makeStdSite();
  await using server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen() {} },
    (req) => serveDir(req, { fsRoot: site.root, quiet: true }),
  );
  const { port } = server.addr;
  assert.equal(await rawStatus(port, "../../../.."), 400);
  assert.equal(await rawStatus(port, "http://localhost/hello.html"), 200);
  // std resolves the dots here and serves; ours is 400, as README's table says
  // (a browser never sends them, so they are a probe).
  assert.equal(await rawStatus(port, "http://localhost/../../hello.html"), 400);
  assert.equal(await rawStatus(port, "/hello.html"), 200);
});

Deno.test("std's own CLI command, word for word but the port, serves the folder it names", async () => {
  // std's tests start `file_server.ts <target> --cors -p <port> --no-dir-listing`
  // (and -H for headers); a user's script written that way must keep working.
  await using site = await makeStdSite();
  await using server = await startScript(FILES_SCRIPT, [
    "--allow-read",
    "--allow-net=127.0.0.1",
  ], [
    site.root,
    "--cors",
    "-p",
    "0",
    "--no-dir-listing",
    "-H=X-From: std",
  ], { cwd: site.base });
  const res = await fetch(`${server.origin}/hello.html`);
  assert.equal(await res.text(), "<p>Hello World</p>\n");
  assert.equal(res.headers.get("access-control-allow-origin"), "*");
  assert.equal(res.headers.get("x-from"), "std");
  const listing = await fetch(`${server.origin}/`);
  await listing.body?.cancel();
  assert.equal(listing.status, 404);
});

Deno.test("on 0.0.0.0 with --allow-sys, the CLI prints the address to open from another machine, as std's 'Network:' line", async () => {
  const address = Deno.networkInterfaces().find(({ family, address }) =>
    family === "IPv4" && !address.startsWith("127.")
  )?.address;
  if (address === undefined) {
    assert.notEqual(Deno.env.get("CI"), "true", "no IPv4 address to test on");
    console.warn("SKIPPED: this machine has no IPv4 address but loopback");
    return;
  }
  await using site = await makeStdSite();
  await using server = await startScript(
    FILES_SCRIPT,
    [
      "--allow-net=0.0.0.0",
      "--allow-sys=networkInterfaces",
      `--allow-read=${site.root}`,
    ],
    [site.root, "--hostname", "0.0.0.0", "--port", "0"],
    { cwd: site.base },
  );
  const line = await server.waitForLine(/^On your network: /);
  assert.equal(line, `On your network: http://${address}:${server.port}/`);
  const res = await fetch(`http://${address}:${server.port}/hello.html`);
  assert.equal(await res.text(), "<p>Hello World</p>\n");
});
