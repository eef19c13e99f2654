// zstd Content-Encoding in server_files.ts, on a real server (the CLI as a
// process), read as raw bytes off the socket (fetch() would decode) and
// decompressed with node:zlib: the cache's copies, zstd while streaming,
// precompressed x.zst beside x, q-values, one ETag and 304 per coding, HEAD,
// ranges unencoded, the listing, and a real Chromium reading zstd answers.
import assert from "node:assert/strict";
import zlib from "node:zlib";
import { serveDir } from "../server_files.ts";
import { makeTree, startFilesProcess } from "./_files.ts";
import { sendRaw } from "./_raw.ts";
import { launchChromium, planBrowserTests } from "./_browser.ts";

/** Text that compresses like a real stylesheet (not absurdly). */
function makeCss(bytes: number, mark = "item"): string {
  let text = "";
  for (let i = 0; text.length < bytes; i++) {
    const color = (i * 2654435761 % 0xffffff).toString(16).padStart(6, "0");
    text += `.${mark}-${i} { color: #${color}; margin: ${i % 17}px; }\n`;
  }
  return text.slice(0, bytes);
}

interface Reply {
  status: number;
  headers: Headers;
  body: Uint8Array;
}

/** One HTTP/1.1 request on its own connection; the body as sent (chunks joined). */
async function request(
  port: number,
  path: string,
  headers: Record<string, string> = {},
  method = "GET",
): Promise<Reply> {
  const lines = Object.entries(headers).map(([k, v]) => `${k}: ${v}\r\n`);
  const raw = await sendRaw(
    port,
    `${method} ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n${
      lines.join("")
    }\r\n`,
  );
  const end = raw.text.indexOf("\r\n\r\n");
  const head = raw.text.slice(0, end).split("\r\n").slice(1);
  const parsed = new Headers(head.map((line) => {
    const colon = line.indexOf(":");
    return [line.slice(0, colon), line.slice(colon + 1).trim()];
  }));
  let rest = raw.text.slice(end + 4);
  if (parsed.get("transfer-encoding") === "chunked") {
    let joined = "";
    while (true) {
      const lineEnd = rest.indexOf("\r\n");
      const size = parseInt(rest.slice(0, lineEnd), 16);
      if (size === 0) break;
      joined += rest.slice(lineEnd + 2, lineEnd + 2 + size);
      rest = rest.slice(lineEnd + 2 + size + 2);
    }
    rest = joined;
  }
  const body = Uint8Array.from(rest, (c) => c.charCodeAt(0));
  return { status: raw.status, headers: parsed, body };
}

function decode(coding: string | null, body: Uint8Array): string {
  const raw = coding === "zstd"
    ? zlib.zstdDecompressSync(body)
    : coding === "br"
    ? zlib.brotliDecompressSync(body)
    : coding === "gzip"
    ? zlib.gunzipSync(body)
    : body;
  return new TextDecoder().decode(raw);
}

const CHROME = "gzip, deflate, br, zstd";

Deno.test("zstd on a real server: cache, streaming, sidecars, q-values, ETags, HEAD, ranges", async (t) => {
  await using tree = await makeTree();
  const small = makeCss(15_000); // in the cache
  const big = makeCss(600_000); // above the cache's limit: streamed
  const sidecarText = makeCss(400_000, "from-disk");
  await Deno.writeTextFile(`${tree.root}/style.css`, small);
  await Deno.writeTextFile(`${tree.root}/big.css`, big);
  await Deno.writeTextFile(`${tree.root}/app.css`, makeCss(400_000));
  await Deno.writeFile(
    `${tree.root}/app.css.zst`,
    zlib.zstdCompressSync(sidecarText),
  );
  const later = new Date(Date.now() + 5000);
  await Deno.utime(`${tree.root}/app.css.zst`, later, later);
  await using server = await startFilesProcess({
    readable: [tree.root],
    args: ["--root", tree.root, "--quiet"],
  });
  const get = (path: string, headers: Record<string, string> = {}) =>
    request(server.port, path, headers);

  await t.step(
    "a small file: the coding each Accept-Encoding gets",
    async () => {
      const cases: [string, string | null][] = [
        [CHROME, "br"], // br is smaller at the cache's levels
        ["gzip, br", "br"], // the benchmark's header: unchanged
        ["gzip, zstd", "zstd"],
        ["zstd", "zstd"],
        ["br;q=0.5, zstd", "zstd"],
        ["zstd;q=0, gzip", "gzip"],
        ["zstd;q=0.5, gzip;q=0.6", "gzip"],
        ["*, br;q=0", "zstd"],
        ["identity", null],
      ];
      for (const [ae, coding] of cases) {
        for (let round = 0; round < 2; round++) { // fill, then hit
          const res = await get("/style.css", { "accept-encoding": ae });
          assert.equal(res.status, 200, ae);
          assert.equal(res.headers.get("content-encoding"), coding, ae);
          assert.equal(res.headers.get("vary"), "Accept-Encoding");
          assert.equal(
            res.headers.get("content-length"),
            String(res.body.length),
          );
          assert.equal(decode(coding, res.body), small, ae);
          if (coding === "zstd") {
            assert.match(
              res.headers.get("etag")!,
              /^"[0-9a-f]+-[0-9a-f]+-zstd"$/,
            );
            assert.ok(res.body.length < small.length / 2);
          }
        }
      }
    },
  );

  await t.step(
    "a small file: each coding's ETag gets 304 for its own coding only",
    async () => {
      const zstd = await get("/style.css", { "accept-encoding": "zstd" });
      const etag = zstd.headers.get("etag")!;
      const again = await get("/style.css", {
        "accept-encoding": "zstd",
        "if-none-match": etag,
      });
      assert.equal(again.status, 304);
      assert.equal(again.headers.get("etag"), etag);
      assert.equal(again.headers.get("vary"), "Accept-Encoding");
      assert.equal(again.body.length, 0);
      const gzip = await get("/style.css", {
        "accept-encoding": "gzip",
        "if-none-match": etag,
      });
      assert.equal(gzip.status, 200);
      assert.equal(gzip.headers.get("content-encoding"), "gzip");
    },
  );

  await t.step(
    "a big file: zstd while streaming, weak ETag, smaller than gzip",
    async () => {
      const zstd = await get("/big.css", { "accept-encoding": CHROME });
      assert.equal(zstd.status, 200);
      assert.equal(zstd.headers.get("content-encoding"), "zstd");
      assert.equal(zstd.headers.get("content-length"), null);
      assert.equal(zstd.headers.get("vary"), "Accept-Encoding");
      assert.equal(decode("zstd", zstd.body), big);
      const etag = zstd.headers.get("etag")!;
      assert.match(etag, /^W\/"[0-9a-f]+-[0-9a-f]+-zstd"$/);
      // The benchmark's header still gets gzip, as before zstd.
      const gzip = await get("/big.css", { "accept-encoding": "gzip, br" });
      assert.equal(gzip.headers.get("content-encoding"), "gzip");
      assert.equal(decode("gzip", gzip.body), big);
      assert.ok(
        zstd.body.length < gzip.body.length,
        `zstd ${zstd.body.length} B, gzip ${gzip.body.length} B`,
      );
      const again = await get("/big.css", {
        "accept-encoding": CHROME,
        "if-none-match": etag,
      });
      assert.equal(again.status, 304);
      assert.equal(again.headers.get("etag"), etag);
      const other = await get("/big.css", {
        "accept-encoding": "gzip",
        "if-none-match": etag,
      });
      assert.equal(other.status, 200);
      assert.equal(other.headers.get("content-encoding"), "gzip");
    },
  );

  await t.step(
    "x.css.zst beside x.css: sent as stored, with x.css's type",
    async () => {
      const res = await get("/app.css", { "accept-encoding": CHROME });
      assert.equal(res.status, 200);
      assert.equal(res.headers.get("content-encoding"), "zstd");
      assert.equal(res.headers.get("content-type"), "text/css; charset=utf-8");
      const size = (await Deno.stat(`${tree.root}/app.css.zst`)).size;
      assert.equal(res.headers.get("content-length"), String(size));
      assert.match(res.headers.get("etag")!, /^"[0-9a-f]+-[0-9a-f]+-zstd"$/);
      assert.equal(decode("zstd", res.body), sidecarText);
    },
  );

  await t.step("HEAD has GET's headers and no body", async () => {
    for (const path of ["/style.css", "/big.css", "/app.css"]) {
      const headers = { "accept-encoding": "zstd" };
      const getRes = await request(server.port, path, headers);
      const head = await request(server.port, path, headers, "HEAD");
      assert.equal(head.status, 200);
      assert.equal(head.body.length, 0, path);
      // Deno.serve writes `content-length: 0` on a HEAD whose GET streams
      // with no length (the same for gzip): not ours to compare there.
      const names = ["content-encoding", "etag", "vary", "content-type"];
      if (path !== "/big.css") names.push("content-length");
      for (const name of names) {
        assert.equal(head.headers.get(name), getRes.headers.get(name), name);
      }
    }
  });

  await t.step("a Range is cut from the file itself, never zstd", async () => {
    for (const [path, text] of [["/style.css", small], ["/big.css", big]]) {
      const res = await get(path, {
        "accept-encoding": CHROME,
        range: "bytes=100-199",
      });
      assert.equal(res.status, 206);
      assert.equal(res.headers.get("content-encoding"), null);
      assert.equal(new TextDecoder().decode(res.body), text.slice(100, 200));
    }
  });
});

Deno.test("listing: x.zst beside x is not listed; a .zst alone is", async () => {
  await using tree = await makeTree();
  await Deno.writeTextFile(`${tree.root}/sub/app.js`, "let a = 1;");
  await Deno.writeFile(
    `${tree.root}/sub/app.js.zst`,
    zlib.zstdCompressSync("let a = 1;"),
  );
  await Deno.writeFile(
    `${tree.root}/sub/alone.zst`,
    zlib.zstdCompressSync("x"),
  );
  const res = await serveDir(
    new Request("http://localhost/sub/?format=json"),
    { fsRoot: tree.root, quiet: true, showDirListing: true },
  );
  const names = (await res.json()).entries.map((e: { name: string }) => e.name);
  assert.ok(names.includes("app.js"));
  assert.ok(!names.includes("app.js.zst"));
  assert.ok(names.includes("alone.zst"));
  const alone = await serveDir(new Request("http://localhost/sub/alone.zst"), {
    fsRoot: tree.root,
    quiet: true,
  });
  assert.equal(alone.headers.get("content-type"), "application/zstd");
  assert.equal(alone.headers.get("content-encoding"), null);
  await alone.body?.cancel();
});

const browser = planBrowserTests();

Deno.test({
  name: "browser: Chromium sends zstd and reads our zstd answers",
  ignore: browser.ignore,
  async fn() {
    if (browser.missing) {
      throw new Error(`${browser.missing} (CI=true: browser tests must run)`);
    }
    await using tree = await makeTree();
    const big = makeCss(600_000, "big"); // streamed zstd
    const stored = makeCss(300_000, "stored"); // its .zst sidecar, no .br
    await Deno.writeTextFile(`${tree.root}/big.css`, big);
    await Deno.writeTextFile(`${tree.root}/stored.css`, stored);
    await Deno.writeFile(
      `${tree.root}/stored.css.zst`,
      zlib.zstdCompressSync(stored),
    );
    const later = new Date(Date.now() + 5000);
    await Deno.utime(`${tree.root}/stored.css.zst`, later, later);
    await Deno.writeTextFile(
      `${tree.root}/index.html`,
      `<!doctype html><html lang="en"><title>zstd</title>` +
        `<link rel="stylesheet" href="big.css"><link rel="stylesheet" href="stored.css">` +
        `<p class="big-599">styled by big.css</p><p class="stored-1">and stored.css</p>`,
    );
    await using server = await startFilesProcess({
      readable: [tree.root],
      args: ["--root", tree.root, "--quiet"],
    });
    const chromium = await launchChromium();
    try {
      const page = await chromium.newPage();
      const answers = new Map<string, Promise<Record<string, string>>>();
      const sent = new Map<string, Promise<Record<string, string>>>();
      page.on("response", (r) => {
        const path = new URL(r.url()).pathname;
        answers.set(path, r.allHeaders());
        sent.set(path, r.request().allHeaders());
      });
      const response = await page.goto(`${server.origin}/`);
      assert.equal(response?.status(), 200);
      await page.waitForLoadState("load");
      for (const path of ["/big.css", "/stored.css"]) {
        const request = await sent.get(path);
        assert.ok(request, `${path} was loaded`);
        assert.match(request["accept-encoding"]!, /\bzstd\b/);
        assert.equal((await answers.get(path))!["content-encoding"], "zstd");
      }
      // The page's own fetch() reads the decoded bytes: exactly the files.
      const texts = await page.evaluate(async () =>
        await Promise.all(
          ["/big.css", "/stored.css"].map(async (p) =>
            await (await fetch(p)).text()
          ),
        )
      );
      assert.equal(texts[0], big);
      assert.equal(texts[1], stored);
      // And the stylesheets applied: a rule from each file's end and start.
      const colors = await page.locator("p").evaluateAll((ps) =>
        // deno-lint-ignore no-explicit-any
        ps.map((p) => (globalThis as any).getComputedStyle(p).color)
      );
      assert.equal(colors.length, 2);
      for (const color of colors) assert.notEqual(color, "rgb(0, 0, 0)");
    } finally {
      await chromium.close();
    }
  },
});
