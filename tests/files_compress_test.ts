// Compression in server_files.ts: Accept-Encoding negotiation, the cache's
// br and gzip copies, precompressed files on disk, gzip while streaming,
// one ETag per coding, Vary, and ranges that stay identity.
import assert from "node:assert/strict";
import zlib from "node:zlib";
import {
  createHandler,
  type HandlerOptions,
  isCompressible,
  negotiateCoding,
  serveDir,
  serveFile,
} from "../server_files.ts";
import { makeTree } from "./_files.ts";

/** A stylesheet that compresses well but not absurdly (like a real one). */
function makeCss(bytes: number): string {
  let text = "";
  for (let i = 0; text.length < bytes; i++) {
    const color = (i * 2654435761 % 0xffffff).toString(16).padStart(6, "0");
    text += `.item-${i} { color: #${color}; margin: ${i % 17}px ${
      i % 5
    }em; }\n`;
  }
  return text.slice(0, bytes);
}

function decode(coding: string | null, bytes: Uint8Array): string {
  const raw = coding === "br"
    ? zlib.brotliDecompressSync(bytes)
    : coding === "gzip"
    ? zlib.gunzipSync(bytes)
    : coding === "zstd"
    ? zlib.zstdDecompressSync(bytes)
    : bytes;
  return new TextDecoder().decode(raw);
}

Deno.test("negotiateCoding table: q-values, *, identity;q=0, x-gzip, br preferred", () => {
  const both = ["br", "gzip"] as const;
  const cases: [string | null, readonly ("br" | "zstd" | "gzip")[], string][] =
    [
      [null, both, "identity"],
      ["", both, "identity"],
      ["gzip, deflate, br", both, "br"],
      ["br, gzip", both, "br"],
      ["gzip", both, "gzip"],
      ["GZIP", both, "gzip"],
      ["x-gzip", both, "gzip"],
      ["br", ["gzip"], "identity"],
      ["deflate", both, "identity"],
      ["gzip;q=0, br;q=0", both, "identity"],
      ["br;q=0, gzip", both, "gzip"],
      ["br;q=0.5, gzip;q=0.8", both, "gzip"],
      ["br;q=0.8, gzip;q=0.8", both, "br"],
      ["gzip;q=0.5, identity", both, "identity"],
      ["gzip;q=0.5, identity;q=0.4", both, "gzip"],
      ["gzip;q=0.5", both, "gzip"],
      ["*", both, "br"],
      ["*;q=0", both, "identity"],
      ["*, br;q=0", both, "gzip"],
      ["identity;q=0", both, "identity"], // nothing acceptable: the file as it is
      ["identity;q=0, gzip", both, "gzip"],
      ["gzip;q=2", both, "identity"], // not a qvalue: refused
      ["gzip;q=abc, br;q=0.1", both, "br"],
      ["gzip ; q = 0.3 , br;q=0.2", both, "gzip"],
      [" , ,gzip", both, "gzip"],
      ["gzip", [], "identity"],
      // zstd: ties go to the first offered (the server's order), q-values rule.
      ["gzip, deflate, br, zstd", ["br", "zstd", "gzip"], "br"],
      ["gzip, deflate, br, zstd", ["zstd", "gzip"], "zstd"],
      ["gzip, zstd", ["br", "zstd", "gzip"], "zstd"],
      ["br;q=0.5, zstd", ["br", "zstd", "gzip"], "zstd"],
      ["zstd;q=0, gzip", ["br", "zstd", "gzip"], "gzip"],
      ["zstd;q=0.9, gzip", ["zstd", "gzip"], "gzip"],
      ["ZSTD", ["zstd", "gzip"], "zstd"],
      ["*, br;q=0", ["br", "zstd", "gzip"], "zstd"],
      ["zstd", ["br", "gzip"], "identity"],
    ];
  for (const [header, offered, expected] of cases) {
    assert.equal(
      negotiateCoding(header, offered),
      expected,
      `${JSON.stringify(header)} offered ${offered}`,
    );
  }
});

Deno.test("isCompressible", async (t) => {
  const yes = [
    "text/html; charset=utf-8",
    "text/css; charset=utf-8",
    "text/javascript; charset=utf-8",
    "application/javascript",
    "application/json; charset=utf-8",
    "application/manifest+json; charset=utf-8",
    "application/xml; charset=utf-8",
    "application/rss+xml",
    "image/svg+xml; charset=utf-8",
    "application/wasm",
    "TEXT/PLAIN",
  ];
  const no = [
    "image/png",
    "image/jpeg",
    "image/webp",
    "image/x-icon",
    "video/mp4",
    "audio/mpeg",
    "application/zip",
    "application/gzip",
    "application/pdf",
    "font/woff2",
    "font/ttf",
    "application/octet-stream",
  ];
  await t.step(
    "text, scripts, JSON, XML, SVG and wasm are compressible",
    () => {
      for (const type of yes) assert.equal(isCompressible(type), true, type);
    },
  );
  await t.step("images, media, archives and fonts are not", () => {
    for (const type of no) assert.equal(isCompressible(type), false, type);
  });
});

Deno.test("cache: the coding chosen for each Accept-Encoding, the same on a hit", async (t) => {
  await using tree = await makeTree();
  const css = makeCss(15_000);
  await Deno.writeTextFile(`${tree.root}/style.css`, css);
  await Deno.writeTextFile(`${tree.root}/tiny.css`, "a{}"); // nothing to save
  await Deno.writeFile(`${tree.root}/logo.png`, new Uint8Array(5000).fill(7));
  const handler = createHandler({ fsRoot: tree.root, quiet: true });
  const get = (path: string, headers: Record<string, string> = {}) =>
    Promise.resolve(
      handler(new Request(`http://localhost${path}`, { headers })),
    );
  const cases: [string, Record<string, string>, string | null, boolean][] = [
    ["/style.css", {}, null, true],
    ["/style.css", { "accept-encoding": "gzip, deflate, br" }, "br", true],
    [
      "/style.css",
      { "accept-encoding": "gzip, deflate, br, zstd" },
      "br",
      true,
    ],
    ["/style.css", { "accept-encoding": "gzip, zstd" }, "zstd", true],
    ["/style.css", { "accept-encoding": "br;q=0.5, zstd" }, "zstd", true],
    ["/style.css", { "accept-encoding": "gzip" }, "gzip", true],
    ["/style.css", { "accept-encoding": "br;q=0, gzip" }, "gzip", true],
    ["/style.css", { "accept-encoding": "identity" }, null, true],
    ["/style.css", { "accept-encoding": "gzip;q=0, br;q=0" }, null, true],
    ["/tiny.css", { "accept-encoding": "br, gzip" }, null, true],
    ["/logo.png", { "accept-encoding": "br, gzip" }, null, false],
  ];
  const etags = new Map<string, string>();
  for (const [path, headers, coding, vary] of cases) {
    const ae = headers["accept-encoding"];
    const name = `${path} ${
      ae === undefined ? "without Accept-Encoding" : `for "${ae}"`
    } is ${coding ?? "unencoded"}${vary ? " with Vary" : ""}`;
    await t.step(name, async () => {
      for (let round = 0; round < 2; round++) { // fill, then hit
        const res = await get(path, headers);
        assert.equal(res.status, 200);
        assert.equal(res.headers.get("content-encoding"), coding);
        assert.equal(res.headers.get("vary"), vary ? "Accept-Encoding" : null);
        const body = new Uint8Array(await res.arrayBuffer());
        assert.equal(
          res.headers.get("content-length"),
          String(body.byteLength),
        );
        assert.equal(res.headers.get("accept-ranges"), coding ? null : "bytes");
        if (path === "/style.css") {
          assert.equal(decode(coding, body), css);
          if (coding !== null) assert.ok(body.byteLength < css.length * 0.5);
          const etag = res.headers.get("etag")!;
          assert.match(etag, /^"[0-9a-f]+-[0-9a-f]+(-br|-zstd|-gzip)?"$/);
          assert.equal(etags.get(coding ?? "identity") ?? etag, etag);
          etags.set(coding ?? "identity", etag);
        }
      }
    });
  }
  await t.step("identity, br, zstd and gzip have different ETags", () => {
    assert.equal(new Set(etags.values()).size, 4);
  });
  await t.step("If-None-Match with a coding's ETag is 304", async () => {
    for (
      const [coding, ae] of [
        ["br", "br"],
        ["zstd", "zstd"],
        ["gzip", "gzip"],
        ["identity", ""],
      ]
    ) {
      const etag = etags.get(coding)!;
      const res = await get("/style.css", {
        "accept-encoding": ae,
        "if-none-match": etag,
      });
      assert.equal(res.status, 304, coding);
      assert.equal(res.headers.get("etag"), etag);
      assert.equal(res.headers.get("vary"), "Accept-Encoding");
      await res.body?.cancel();
    }
  });
  await t.step("a coding's ETag does not validate another's", async () => {
    for (const coding of ["br", "gzip", "identity"]) {
      // The br tag does not validate the gzip answer: a full 200 in gzip.
      const other = await get("/style.css", {
        "accept-encoding": coding === "gzip" ? "br" : "gzip",
        "if-none-match": etags.get(coding)!,
      });
      assert.equal(other.status, 200, coding);
      assert.equal(
        other.headers.get("content-encoding"),
        coding === "gzip" ? "br" : "gzip",
      );
      await other.body?.cancel();
    }
  });
  await t.step(
    "a Range is served from the file itself, never encoded",
    async () => {
      const ifRanges: Record<string, string>[] = [
        {},
        { "if-range": etags.get("identity")! },
      ];
      for (const extra of ifRanges) {
        const res = await get("/style.css", {
          "accept-encoding": "br, gzip",
          range: "bytes=10-19",
          ...extra,
        });
        assert.equal(res.status, 206);
        assert.equal(res.headers.get("content-encoding"), null);
        assert.equal(
          res.headers.get("content-range"),
          `bytes 10-19/${css.length}`,
        );
        assert.equal(res.headers.get("vary"), "Accept-Encoding");
        assert.equal(await res.text(), css.slice(10, 20));
      }
    },
  );
  await t.step("If-Range with the br ETag gets the whole file", async () => {
    // The br tag names another representation than the file's bytes.
    const stale = await get("/style.css", {
      "accept-encoding": "br",
      range: "bytes=10-19",
      "if-range": etags.get("br")!,
    });
    assert.equal(stale.status, 200);
    assert.equal(
      decode(
        stale.headers.get("content-encoding"),
        new Uint8Array(await stale.arrayBuffer()),
      ),
      css,
    );
  });
  await t.step(
    "HEAD carries exactly GET's headers for each coding",
    async () => {
      for (const ae of ["br", "zstd", "gzip", ""]) {
        const init = { headers: { "accept-encoding": ae } };
        const getRes = await handler(
          new Request("http://localhost/style.css", init),
        );
        const head = await handler(
          new Request("http://localhost/style.css", {
            ...init,
            method: "HEAD",
          }),
        );
        assert.deepEqual([...head.headers], [...getRes.headers], ae);
        assert.equal(head.body, null);
        await getRes.body?.cancel();
      }
    },
  );
});

Deno.test("compress: false sends files unencoded, without Vary", async (t) => {
  await using tree = await makeTree();
  const css = makeCss(20_000);
  await Deno.writeTextFile(`${tree.root}/style.css`, css);
  const headers = { "accept-encoding": "br, gzip" };
  const off: HandlerOptions = {
    fsRoot: tree.root,
    quiet: true,
    compress: false,
  };
  const serves: [string, () => Promise<Response>][] = [
    ["createHandler", async () =>
      await createHandler(off)(
        new Request("http://localhost/style.css", { headers }),
      )],
    [
      "serveDir",
      () =>
        serveDir(new Request("http://localhost/style.css", { headers }), off),
    ],
    ["serveFile", () =>
      serveFile(
        new Request("http://localhost/", { headers }),
        `${tree.root}/style.css`,
        { compress: false },
      )],
  ];
  for (const [label, serve] of serves) {
    await t.step(label, async () => {
      const res = await serve();
      assert.equal(res.headers.get("content-encoding"), null);
      assert.equal(res.headers.get("vary"), null);
      assert.equal(await res.text(), css);
    });
  }
});

Deno.test("from disk (serveDir, serveFile, big files): gzip while streaming", async (t) => {
  await using tree = await makeTree();
  const small = makeCss(20_000);
  const big = makeCss(600_000); // above the cache's limit
  await Deno.writeTextFile(`${tree.root}/style.css`, small);
  await Deno.writeTextFile(`${tree.root}/big.css`, big);
  const handler = createHandler({ fsRoot: tree.root, quiet: true });
  const runs: [string, string, string, (r: Request) => Promise<Response>][] = [
    [
      "serveDir",
      "/style.css",
      small,
      (r) => serveDir(r, { fsRoot: tree.root, quiet: true }),
    ],
    [
      "serveFile",
      "/style.css",
      small,
      (r) => serveFile(r, `${tree.root}/style.css`),
    ],
    ["a big file", "/big.css", big, async (r) => await handler(r)],
  ];
  for (const [label, path, text, serve] of runs) {
    const url = `http://localhost${path}`;
    const headers = { "accept-encoding": "gzip, br" };
    let etag = "";
    await t.step(`${label}: gzip as it streams, with no length`, async () => {
      const res = await serve(new Request(url, { headers }));
      assert.equal(res.status, 200);
      assert.equal(res.headers.get("content-encoding"), "gzip");
      assert.equal(res.headers.get("content-length"), null);
      assert.equal(res.headers.get("vary"), "Accept-Encoding");
      etag = res.headers.get("etag")!;
      const body = new Uint8Array(await res.arrayBuffer());
      assert.equal(decode("gzip", body), text);
      assert.ok(body.byteLength < text.length / 2, `${body.byteLength} bytes`);
    });
    await t.step(`${label}: a weak gzip ETag that validates`, async () => {
      assert.match(etag, /^W\/"[0-9a-f]+-[0-9a-f]+-gzip"$/);
      const again = await serve(
        new Request(url, { headers: { ...headers, "if-none-match": etag } }),
      );
      assert.equal(again.status, 304);
    });
    await t.step(`${label}: HEAD has GET's gzip headers`, async () => {
      const head = await serve(new Request(url, { headers, method: "HEAD" }));
      assert.equal(head.headers.get("content-encoding"), "gzip");
      assert.equal(head.headers.get("content-length"), null);
      // An empty stream, not null: Deno.serve would add `Content-Length: 0`.
      assert.equal((await head.arrayBuffer()).byteLength, 0);
    });
    await t.step(`${label}: a Range is sent unencoded`, async () => {
      const range = await serve(
        new Request(url, { headers: { ...headers, range: "bytes=0-9" } }),
      );
      assert.equal(range.status, 206);
      assert.equal(range.headers.get("content-encoding"), null);
      assert.equal(await range.text(), text.slice(0, 10));
    });
    await t.step(`${label}: without Accept-Encoding, the file`, async () => {
      const plain = await serve(new Request(url));
      assert.equal(plain.headers.get("content-length"), String(text.length));
      assert.equal(plain.headers.get("vary"), "Accept-Encoding");
      assert.equal(await plain.text(), text);
    });
  }
  // A client that gives up mid-stream: the file is closed (the sanitizer checks).
  const abandoned = await handler(
    new Request("http://localhost/big.css", {
      headers: { "accept-encoding": "gzip" },
    }),
  );
  const reader = abandoned.body!.getReader();
  await reader.read();
  await reader.cancel();
});

Deno.test("precompressed x.css.br / x.css.gz beside x.css: sent with x.css's type when not older", async (t) => {
  await using tree = await makeTree();
  const css = makeCss(20_000);
  const bigCss = makeCss(600_000);
  // Precompressed copies whose content we can tell apart from our own.
  const marked = css.replace(".item-0", ".from-disk");
  const bigMarked = bigCss.replace(".item-0", ".from-disk");
  await Deno.writeTextFile(`${tree.root}/style.css`, css);
  await Deno.writeTextFile(`${tree.root}/big.css`, bigCss);
  const later = new Date(Date.now() + 5000);
  for (const [name, text] of [["style.css", marked], ["big.css", bigMarked]]) {
    await Deno.writeFile(
      `${tree.root}/${name}.br`,
      zlib.brotliCompressSync(text, {
        params: { [zlib.constants.BROTLI_PARAM_QUALITY]: 5 },
      }),
    );
    await Deno.writeFile(`${tree.root}/${name}.gz`, zlib.gzipSync(text));
    await Deno.utime(`${tree.root}/${name}.br`, later, later);
    await Deno.utime(`${tree.root}/${name}.gz`, later, later);
  }
  const handler = createHandler({ fsRoot: tree.root, quiet: true });
  const serves: [string, (r: Request) => Promise<Response>][] = [
    ["createHandler (cache)", async (r) => await handler(r)],
    ["serveDir", (r) => serveDir(r, { fsRoot: tree.root, quiet: true })],
  ];
  for (const [label, serve] of serves) {
    for (
      const [path, text] of [["/style.css", marked], ["/big.css", bigMarked]]
    ) {
      await t.step(`${label} ${path}`, async () => {
        for (const coding of ["br", "gzip"]) {
          const res = await serve(
            new Request(`http://localhost${path}`, {
              headers: { "accept-encoding": coding },
            }),
          );
          assert.equal(res.headers.get("content-encoding"), coding);
          assert.equal(
            res.headers.get("content-type"),
            "text/css; charset=utf-8",
          );
          const body = new Uint8Array(await res.arrayBuffer());
          assert.equal(
            res.headers.get("content-length"),
            String(body.byteLength),
          );
          assert.equal(decode(coding, body), text);
          assert.match(
            res.headers.get("etag")!,
            new RegExp(`^"[0-9a-f-]+-${coding}"$`),
          );
        }
      });
    }
  }
  await t.step("an older precompressed file is stale: never sent", async () => {
    const past = new Date(Date.now() - 86400_000);
    await Deno.utime(`${tree.root}/style.css.br`, past, past);
    const res = await serveDir(
      new Request("http://localhost/style.css", {
        headers: { "accept-encoding": "br, gzip" },
      }),
      { fsRoot: tree.root, quiet: true },
    );
    // No fresh .br: the .gz.
    assert.equal(res.headers.get("content-encoding"), "gzip");
    // The .gz beside it is still fresh, so it is the one sent...
    assert.ok(
      decode("gzip", new Uint8Array(await res.arrayBuffer())).includes(
        "from-disk",
      ),
    );
    // ...and a client that takes only br gets the file itself.
    const brOnly = await serveDir(
      new Request("http://localhost/style.css", {
        headers: { "accept-encoding": "br" },
      }),
      { fsRoot: tree.root, quiet: true },
    );
    assert.equal(brOnly.headers.get("content-encoding"), null);
    assert.equal(await brOnly.text(), css);
  });
  await t.step(
    "a symlinked .br is never followed (it could point outside the root)",
    async () => {
      await Deno.remove(`${tree.root}/style.css.br`);
      await Deno.remove(`${tree.root}/style.css.gz`);
      await Deno.writeFile(
        `${tree.base}/evil.br`,
        zlib.brotliCompressSync("OUTSIDE SECRET"),
      );
      await Deno.symlink(`${tree.base}/evil.br`, `${tree.root}/style.css.br`);
      for (
        const serve of [
          (r: Request) => serveDir(r, { fsRoot: tree.root, quiet: true }),
          async (r: Request) =>
            await createHandler({ fsRoot: tree.root, quiet: true })(r),
        ]
      ) {
        const res = await serve(
          new Request("http://localhost/style.css", {
            headers: { "accept-encoding": "br" },
          }),
        );
        const coding = res.headers.get("content-encoding");
        const text = decode(coding, new Uint8Array(await res.arrayBuffer()));
        assert.equal(text, css);
      }
    },
  );
  await t.step(
    "the .br file itself is still served as what it is",
    async () => {
      const res = await serveDir(new Request("http://localhost/big.css.gz"), {
        fsRoot: tree.root,
        quiet: true,
      });
      assert.equal(res.headers.get("content-type"), "application/gzip");
      assert.equal(res.headers.get("content-encoding"), null);
      await res.body?.cancel();
    },
  );
});
