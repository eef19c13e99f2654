// The README's table "Differences from @std/http/file-server", our side:
// one row per line of the table, in its order, each checked in-process
// through serveDir (std's side is described from std's file_server.ts).
import assert from "node:assert/strict";
import {
  createHandler,
  parseCommandLine,
  serveDir,
  type ServeDirOptions,
  serveFile,
} from "../server_files.ts";
import { makeTree } from "./_files.ts";

interface Row {
  /** The table's first column, to find the row. */
  what: string;
  path: string;
  init?: RequestInit;
  options?: ServeDirOptions;
  check(res: Response): void | Promise<void>;
}

const ROWS: Row[] = [
  {
    what: "a malformed percent-escape",
    path: "/%E0%A4%A",
    check: (res) => assert.equal(res.status, 400),
  },
  {
    what: "a symlink whose target is outside the root",
    path: "/link-out",
    check: async (res) => {
      assert.equal(res.status, 404);
      assert.ok(!(await res.text()).includes("SECRET"));
    },
  },
  {
    what: "ETag",
    path: "/a.txt",
    check: (res) =>
      assert.match(res.headers.get("etag")!, /^"[0-9a-f]+-[0-9a-f]+"$/),
  },
  {
    what: "Location of a redirect",
    path: "/sub?q=1",
    check: (res) => {
      assert.equal(res.status, 301);
      assert.equal(res.headers.get("location"), "/sub/?q=1");
    },
  },
  {
    what: "several ranges",
    path: "/digits.txt",
    init: { headers: { range: "bytes=0-1,10-11" } },
    check: (res) => {
      assert.equal(res.status, 206);
      assert.match(
        res.headers.get("content-type")!,
        /^multipart\/byteranges; boundary=/,
      );
    },
  },
  {
    what: "compression",
    path: "/style.css",
    init: { headers: { "accept-encoding": "gzip" } },
    check: (res) => {
      assert.equal(res.headers.get("content-encoding"), "gzip");
      assert.equal(res.headers.get("vary"), "Accept-Encoding");
    },
  },
  {
    what: "HEAD",
    path: "/a.txt",
    init: { method: "HEAD" },
    check: (res) => {
      assert.equal(res.status, 200);
      assert.equal(res.headers.get("content-length"), "7");
      assert.equal(res.body, null);
    },
  },
  {
    what: "405",
    path: "/a.txt",
    init: { method: "POST" },
    check: (res) => {
      assert.equal(res.status, 405);
      assert.match(res.headers.get("allow")!, /^GET, HEAD/);
    },
  },
  {
    what: "CORS preflight",
    path: "/a.txt",
    init: {
      method: "OPTIONS",
      headers: {
        origin: "https://app.example",
        "access-control-request-method": "GET",
        "access-control-request-headers": "range",
      },
    },
    options: { enableCors: true },
    check: (res) => {
      assert.equal(res.status, 204);
      assert.match(res.headers.get("access-control-allow-methods")!, /GET/);
      assert.match(res.headers.get("access-control-allow-headers")!, /range/i);
      assert.ok(res.headers.get("access-control-max-age"));
    },
  },
  {
    what: "clean URLs",
    path: "/page.html?x=1",
    options: { cleanUrls: true },
    check: (res) => {
      assert.equal(res.status, 301);
      assert.equal(res.headers.get("location"), "/page?x=1");
    },
  },
  {
    what: "a fallback page for single-page apps",
    path: "/app/some/route",
    init: { headers: { accept: "text/html,*/*;q=0.8" } },
    options: { fallback: "page.html" },
    check: async (res) => {
      assert.equal(res.status, 200);
      assert.equal(await res.text(), "<p>page</p>");
    },
  },
  {
    what: "If-Modified-Since later than the server's clock",
    path: "/a.txt",
    init: { headers: { "if-modified-since": "Fri, 01 Jan 2999 00:00:00 GMT" } },
    check: (res) => assert.equal(res.status, 200),
  },
  {
    what: "If-Match and If-Unmodified-Since",
    path: "/a.txt",
    init: { headers: { "if-match": '"another-version"' } },
    check: (res) => assert.equal(res.status, 412),
  },
  {
    what: "If-Range",
    path: "/digits.txt",
    init: { headers: { range: "bytes=0-1", "if-range": '"another-version"' } },
    check: (res) => assert.equal(res.status, 200),
  },
  {
    what: "an unknown extension",
    path: "/data.unknown",
    check: (res) => {
      assert.equal(res.headers.get("content-type"), "application/octet-stream");
      assert.equal(res.headers.get("x-content-type-options"), "nosniff");
    },
  },
  {
    what: "`Content-Type` of text",
    path: "/a.txt",
    check: (res) =>
      assert.equal(
        res.headers.get("content-type"),
        "text/plain; charset=utf-8",
      ),
  },
  {
    what: "CORS headers on a GET (`enableCors`)",
    path: "/sub",
    options: { enableCors: true },
    check: (res) => {
      assert.equal(res.status, 301);
      assert.equal(res.headers.get("access-control-allow-origin"), "*");
      assert.match(res.headers.get("access-control-expose-headers")!, /ETag/);
      assert.equal(res.headers.get("access-control-allow-headers"), null);
    },
  },
  {
    what: "`Server` header",
    path: "/a.txt",
    check: (res) => assert.equal(res.headers.get("server"), null),
  },
  {
    what: "`Accept-Ranges` on a directory listing",
    path: "/sub/",
    options: { showDirListing: true },
    check: (res) => {
      assert.equal(res.status, 200);
      assert.equal(res.headers.get("accept-ranges"), null);
    },
  },
  {
    what: "Cache-Control",
    path: "/a.txt",
    check: (res) => assert.equal(res.headers.get("cache-control"), "no-cache"),
  },
  {
    what: "custom headers",
    path: "/sub",
    options: { headers: ["X-Frame-Options: DENY"], enableCors: true },
    check: (res) => {
      assert.equal(res.status, 301);
      assert.equal(res.headers.get("x-frame-options"), "DENY");
      assert.equal(res.headers.get("access-control-allow-origin"), "*");
    },
  },
  {
    what: "etagAlgorithm",
    path: "/a.txt",
    // Code written for std passes it; it must type-check and change nothing.
    options: { etagAlgorithm: "SHA-1" },
    check: (res) =>
      assert.match(res.headers.get("etag")!, /^"[0-9a-f]+-[0-9a-f]+"$/),
  },
  {
    what: "errors caused by the request",
    path: "/" + "a".repeat(5000), // longer than a file name may be
    check: async (res) => {
      assert.equal(res.status, 404);
      assert.equal(await res.text(), "Not Found\n");
    },
  },
  {
    what: "the directory listing",
    path: "/sub/?sort=size&order=desc&format=json",
    options: { showDirListing: true },
    check: async (res) => {
      const body = await res.json();
      assert.equal(body.entries[0].name, "b.txt");
    },
  },
];

Deno.test("README differences from std: a Host the server does not answer to gets 421", async () => {
  await using tree = await makeTree();
  const readme = await Deno.readTextFile(
    new URL("../README.md", import.meta.url),
  );
  assert.match(readme, /\| The Host header +\|/);
  const handler = createHandler({ fsRoot: tree.root, quiet: true });
  const ok = await handler(new Request("http://localhost:8080/a.txt"));
  assert.equal(await ok.text(), "hello a");
  const other = await handler(new Request("http://rebound.example/a.txt"));
  assert.equal(other.status, 421);
  await other.body?.cancel();
});

Deno.test("README differences from std: serveFile's fileInfo tells file from folder; the opened file gives size and validators", async () => {
  await using tree = await makeTree();
  const readme = await Deno.readTextFile(
    new URL("../README.md", import.meta.url),
  );
  assert.match(readme, /\| `serveFile`'s `fileInfo` option +\|/);
  const path = `${tree.root}/a.txt`;
  const stale = await Deno.stat(path);
  await Deno.writeTextFile(path, "a longer text than before");
  const res = await serveFile(new Request("http://localhost/a.txt"), path, {
    fileInfo: stale,
  });
  assert.equal(res.headers.get("content-length"), "25");
  assert.equal(await res.text(), "a longer text than before");
});

Deno.test("README differences from std: a 404.html in the root is the body of a 404, the status stays", async () => {
  await using tree = await makeTree();
  const readme = await Deno.readTextFile(
    new URL("../README.md", import.meta.url),
  );
  assert.match(readme, /\| A `404\.html` in the root +\|/);
  await Deno.writeTextFile(`${tree.root}/404.html`, "<h1>gone</h1>");
  const res = await serveDir(new Request("http://localhost/no/such/page"), {
    fsRoot: tree.root,
    quiet: true,
  });
  assert.equal(res.status, 404);
  assert.equal(res.headers.get("content-type"), "text/html; charset=utf-8");
  assert.equal(await res.text(), "<h1>gone</h1>");
});

Deno.test("README differences from std: the CLI's defaults are the safe ones", async () => {
  const readme = await Deno.readTextFile(
    new URL("../README.md", import.meta.url),
  );
  assert.match(readme, /\| The CLI's defaults +\|/);
  const flags = parseCommandLine([]);
  assert.equal(flags.hostname, "127.0.0.1");
  assert.equal(flags.showDirListing, false);
  assert.equal(flags.showDotfiles, false);
  assert.equal(flags.enableCors, false);
});

Deno.test("README differences from std: the CLI takes std's flag spellings as well as ours", async () => {
  const readme = await Deno.readTextFile(
    new URL("../README.md", import.meta.url),
  );
  assert.match(readme, /\| The CLI's flags +\|/);
  const std = parseCommandLine(["-p", "0", "--host", "127.0.0.2", "-v"]);
  const ours = parseCommandLine(["--port", "0", "--hostname", "127.0.0.2"]);
  assert.deepEqual(std, ours);
  assert.equal(parseCommandLine(["./public"]).fsRoot, "./public");
  assert.throws(
    () => parseCommandLine(["./public", "x"]),
    /unexpected argument/,
  );
});

Deno.test("README differences from std: each row's claim about server_files.ts holds", async () => {
  await using tree = await makeTree();
  await Deno.writeTextFile(`${tree.root}/digits.txt`, "0123456789".repeat(10));
  await Deno.writeTextFile(
    `${tree.root}/style.css`,
    "body{color:red}\n".repeat(100),
  );
  await Deno.writeTextFile(`${tree.root}/data.unknown`, "?");
  await Deno.writeTextFile(`${tree.root}/page.html`, "<p>page</p>");
  const readme = await Deno.readTextFile(
    new URL("../README.md", import.meta.url),
  );
  const table = readme.slice(
    readme.indexOf("#### Differences from `@std/http/file-server`"),
  );
  for (const row of ROWS) {
    assert.ok(
      table.toLowerCase().includes(`| ${row.what.toLowerCase()}`),
      `the README table has a row "${row.what}"`,
    );
    const res = await serveDir(
      new Request(`http://localhost${row.path}`, row.init),
      { fsRoot: tree.root, quiet: true, ...row.options },
    );
    try {
      await row.check(res);
    } catch (error) {
      throw new Error(`row "${row.what}": ${(error as Error).message}`);
    } finally {
      await res.body?.cancel().catch(() => {});
    }
  }
});

// What std's serveDir sends (its mime-db table, as nginx's mime.types) for
// formats a browser plays, shows or hands on; with nosniff, a video or a
// subtitle track sent as application/octet-stream does not work at all.
const STD_CONTENT_TYPES: [string, string][] = [
  ["clip.mov", "video/quicktime"],
  ["clip.m4v", "video/x-m4v"],
  ["clip.ogv", "video/ogg"],
  ["clip.mpeg", "video/mpeg"],
  ["segment.ts", "video/mp2t"],
  ["live.m3u8", "application/vnd.apple.mpegurl"],
  ["live.mpd", "application/dash+xml"],
  ["subtitles.vtt", "text/vtt"],
  ["song.m4a", "audio/mp4"],
  ["song.aac", "audio/aac"],
  ["song.flac", "audio/flac"],
  ["song.opus", "audio/ogg"],
  ["song.weba", "audio/webm"],
  ["tune.mid", "audio/midi"],
  ["anim.apng", "image/apng"],
  ["scan.bmp", "image/bmp"],
  ["scan.tiff", "image/tiff"],
  ["photo.jxl", "image/jxl"],
  ["photo.heic", "image/heic"],
  ["old.eot", "application/vnd.ms-fontobject"],
  ["page.xhtml", "application/xhtml+xml"],
  ["feed.rss", "application/rss+xml"],
  ["feed.atom", "application/atom+xml"],
  ["data.jsonld", "application/ld+json"],
  ["map.geojson", "application/geo+json"],
  ["config.yaml", "text/yaml"],
  ["config.yml", "text/yaml"],
  ["config.toml", "application/toml"],
  ["event.ics", "text/calendar"],
  ["app.jsx", "text/jsx"],
  ["server.log", "text/plain"],
  ["model.glb", "model/gltf-binary"],
  ["model.gltf", "model/gltf+json"],
  ["backup.tar", "application/x-tar"],
  ["backup.7z", "application/x-7z-compressed"],
  ["backup.bz2", "application/x-bzip2"],
  ["backup.xz", "application/x-xz"],
  ["backup.rar", "application/vnd.rar"],
  ["book.epub", "application/epub+zip"],
  ["letter.rtf", "application/rtf"],
  [
    "letter.docx",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
  ],
  [
    "sheet.xlsx",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
  ],
  [
    "slides.pptx",
    "application/vnd.openxmlformats-officedocument.presentationml.presentation",
  ],
  ["letter.odt", "application/vnd.oasis.opendocument.text"],
];

Deno.test("serveDir sends std's Content-Type for each format a browser plays, shows or hands on", async () => {
  await using tree = await makeTree();
  for (const [name] of STD_CONTENT_TYPES) {
    await Deno.writeTextFile(`${tree.root}/${name}`, "x");
  }
  const wrong: string[] = [];
  for (const [name, type] of STD_CONTENT_TYPES) {
    const res = await serveDir(new Request(`http://localhost/${name}`), {
      fsRoot: tree.root,
      quiet: true,
    });
    await res.body?.cancel();
    const sent = res.headers.get("content-type")?.split(";")[0];
    if (res.status !== 200 || sent !== type) {
      wrong.push(`${name}: ${res.status} ${sent}, std sends ${type}`);
    }
  }
  assert.deepEqual(wrong, []);
});

Deno.test("a Vary in headers is added to Vary: Accept-Encoding, never in its place", async (t) => {
  await using tree = await makeTree();
  await Deno.writeTextFile(
    `${tree.root}/style.css`,
    "body{color:red}\n".repeat(100),
  );
  const headers = ["Vary: Origin", "Cache-Control: max-age=60"];
  const handlers = {
    serveDir: (req: Request) =>
      serveDir(req, { fsRoot: tree.root, quiet: true, headers }),
    createHandler: createHandler({ fsRoot: tree.root, quiet: true, headers }),
  };
  for (const [name, handler] of Object.entries(handlers)) {
    for (const encoding of [null, "gzip, br"]) {
      await t.step(`${name}, Accept-Encoding ${encoding}`, async () => {
        const res = await handler(
          new Request("http://localhost/style.css", {
            headers: encoding === null ? {} : { "accept-encoding": encoding },
          }),
        );
        await res.body?.cancel();
        assert.equal(res.status, 200);
        const vary = res.headers.get("vary")!.split(/\s*,\s*/).sort();
        assert.deepEqual(vary, ["Accept-Encoding", "Origin"]);
        // Any other name the server sets still takes the user's value.
        assert.equal(res.headers.get("cache-control"), "max-age=60");
      });
    }
  }
});

Deno.test("an Access-Control-Allow-Origin in headers replaces --cors's *, on every answer", async (t) => {
  await using tree = await makeTree();
  const options = {
    fsRoot: tree.root,
    quiet: true,
    enableCors: true,
    headers: ["Access-Control-Allow-Origin: https://app.example"],
  };
  const handlers = {
    serveDir: (req: Request) => serveDir(req, options),
    createHandler: createHandler(options),
  };
  for (const [name, handler] of Object.entries(handlers)) {
    for (
      const [path, status] of [["/a.txt", 200], ["/missing", 404], [
        "/sub",
        301,
      ]] as const
    ) {
      await t.step(`${name}, ${path}`, async () => {
        const res = await handler(new Request(`http://localhost${path}`));
        await res.body?.cancel();
        assert.equal(res.status, status);
        assert.equal(
          res.headers.get("access-control-allow-origin"),
          "https://app.example",
        );
      });
    }
  }
});
