// The small-file cache of createHandler: one entry per file whatever the URL
// spelling, bounded memory, and revalidation that sees what a fresh open would.
import assert from "node:assert/strict";
import { createHandler, serveWithRestart } from "../server_files.ts";
import { makeTree, prepareForNobody, startFilesProcess } from "./_files.ts";
import { readRss, toolTestOptions } from "./_process.ts";
import { sendRaw } from "./_raw.ts";

const NAME = "abcdefghijklmnopqrstuvwxyz-cached-file-name";

/** The n-th spelling of `/dir/NAME.txt`: letters percent-encoded by the bits of n. */
function spelling(dir: string, n: number): string {
  let name = "";
  for (let i = 0; i < NAME.length; i++) {
    const c = NAME[i];
    name += i < 20 && (n >> i) & 1
      ? "%" + c.charCodeAt(0).toString(16).toUpperCase()
      : c;
  }
  return `/${dir}/${name}.txt`;
}

Deno.test("10,000 spellings of cached files leave RSS growth under 20 MB", async () => {
  await using tree = await makeTree();
  const dirs = ["d1", "d2", "d3", "d4"];
  for (const dir of dirs) {
    await Deno.mkdir(`${tree.root}/${dir}`);
    await Deno.writeFile(
      `${tree.root}/${dir}/${NAME}.txt`,
      new Uint8Array(4096).fill(97),
    );
  }
  const server = await startFilesProcess({
    readable: [tree.root],
    args: ["--root", tree.root, "--quiet"],
  });
  const get = async (path: string) => {
    const res = await fetch(server.url.slice(0, -1) + path);
    const body = await res.bytes();
    assert.equal(res.status, 200, path);
    assert.equal(body.byteLength, 4096, path);
  };
  try {
    // Eight clients at a time (a sequential run spends seconds waiting on round trips).
    const CLIENTS = 8;
    const inTurns = (count: number, path: (n: number) => string) =>
      Promise.all(
        Array.from({ length: CLIENTS }, async (_, client) => {
          for (let n = client + 1; n <= count; n += CLIENTS) await get(path(n));
        }),
      );
    // Warm up the HTTP machinery on the plain URLs, then measure.
    await inTurns(2000, (n) => spelling(dirs[n % 4], 0));
    const before = await readRss(server.pid);
    await inTurns(10_000, (n) => spelling(dirs[n % 4], n));
    const after = await readRss(server.pid);
    const growth = (after - before) / 1024 / 1024;
    console.log(
      `RSS ${(before / 1048576).toFixed(1)} MB -> ${
        (after / 1048576).toFixed(1)
      } MB after 10,000 spellings (+${growth.toFixed(1)} MB)`,
    );
    assert.ok(growth < 20, `RSS grew by ${growth.toFixed(1)} MB`);
  } finally {
    await server.stop("SIGKILL");
  }
});

Deno.test("an in-place edit that keeps size and mtime is seen at the next revalidation", async () => {
  await using tree = await makeTree();
  const file = `${tree.root}/same.txt`;
  await Deno.writeTextFile(file, "version one");
  const { mtime } = await Deno.stat(file);
  const handler = createHandler({
    fsRoot: tree.root,
    quiet: true,
    cacheMs: 50,
  });
  const get = async (path = "/same.txt") => {
    const res = await handler(new Request(`http://localhost${path}`));
    return await res.text();
  };
  assert.equal(await get(), "version one");
  // Same size, same mtime, same inode: only ctime (and the bytes) differ.
  await Deno.writeTextFile(file, "version two");
  await Deno.utime(file, mtime!, mtime!);
  assert.equal((await Deno.stat(file)).mtime?.getTime(), mtime?.getTime());
  await new Promise((r) => setTimeout(r, 80));
  assert.equal(await get(), "version two");
  // A second URL for the same file shares the entry: it sees the new bytes.
  assert.equal(await get("/%73ame.txt"), "version two");
});

Deno.test("an edit long after the read is caught by ctime alone", async () => {
  await using tree = await makeTree();
  const file = `${tree.root}/late.txt`;
  await Deno.writeTextFile(file, "first");
  const { mtime } = await Deno.stat(file);
  // Let the file's timestamps age past their granularity before the read.
  await new Promise((r) => setTimeout(r, 1200));
  const handler = createHandler({
    fsRoot: tree.root,
    quiet: true,
    cacheMs: 50,
  });
  const get = async () =>
    await (await handler(new Request("http://localhost/late.txt"))).text();
  assert.equal(await get(), "first");
  await new Promise((r) => setTimeout(r, 80));
  assert.equal(await get(), "first");
  await Deno.writeTextFile(file, "other");
  await Deno.utime(file, mtime!, mtime!);
  await new Promise((r) => setTimeout(r, 80));
  assert.equal(await get(), "other");
});

Deno.test({
  name:
    "a cached file made unreadable is dropped: 403 like an uncached request (as nobody)",
  ...await toolTestOptions("the chmod cache test", ["runuser"], { root: true }),
}, async () => {
  await using tree = await makeTree();
  const nobody = await prepareForNobody(tree.base);
  await Deno.chmod(tree.root, 0o755);
  await Deno.writeTextFile(`${tree.root}/p.txt`, "readable for now");
  await Deno.chmod(`${tree.root}/p.txt`, 0o644);
  const server = await startFilesProcess({
    readable: [tree.root],
    args: ["--root", tree.root, "--quiet"],
    ...nobody,
  });
  const get = async (path: string) => {
    const res = await fetch(server.url.slice(0, -1) + path);
    return { status: res.status, text: await res.text() };
  };
  try {
    assert.deepEqual(await get("/p.txt"), {
      status: 200,
      text: "readable for now",
    });
    await Deno.chmod(`${tree.root}/p.txt`, 0o000);
    // An uncached spelling is refused at once.
    assert.equal((await get("/%70.txt")).status, 403);
    // The cached URL is refused after the cache's 1 s revalidation, for good.
    await new Promise((r) => setTimeout(r, 1200));
    for (let i = 0; i < 5; i++) {
      const answer = await get("/p.txt");
      assert.equal(answer.status, 403);
      assert.ok(!answer.text.includes("readable"), answer.text);
    }
    await Deno.chmod(`${tree.root}/p.txt`, 0o644);
    await new Promise((r) => setTimeout(r, 1200));
    assert.equal((await get("/p.txt")).status, 200);
  } finally {
    await server.stop("SIGKILL");
  }
});

Deno.test("a cached file through serveWithRestart: one exact Content-Length on GET, gzip GET and HEAD; in-process too", async (t) => {
  await using tree = await makeTree();
  const page = `<!DOCTYPE html><p>${"cached page ".repeat(40)}</p>\n`;
  await Deno.writeTextFile(`${tree.root}/page.html`, page);
  const handler = createHandler({ fsRoot: tree.root, quiet: true });
  const server = serveWithRestart(
    { hostname: "127.0.0.1", port: 0, onListen() {} },
    handler,
  );
  const port = server.addr.port;
  /** The reply to one raw request, with its Content-Length headers (any case) and body. */
  const ask = async (method: string, more = "") => {
    const { status, text } = await sendRaw(
      port,
      `${method} /page.html HTTP/1.1\r\nHost: 127.0.0.1\r\n${more}Connection: close\r\n\r\n`,
    );
    const end = text.indexOf("\r\n\r\n");
    const lengths = text.slice(0, end).split("\r\n")
      .filter((line) => /^content-length:/i.test(line))
      .map((line) => Number(line.slice(line.indexOf(":") + 1)));
    return { status, lengths, body: text.slice(end + 4) };
  };
  try {
    // The first request fills the cache; the rest are answered from it.
    await ask("GET");
    for (let round = 0; round < 3; round++) {
      await t.step(`GET, round ${round + 1}`, async () => {
        const { status, lengths, body } = await ask("GET");
        assert.equal(status, 200);
        assert.deepEqual(lengths, [page.length]);
        assert.equal(body, page);
      });
      await t.step(`gzip GET, round ${round + 1}`, async () => {
        const reply = await ask("GET", "Accept-Encoding: gzip\r\n");
        assert.equal(reply.status, 200);
        assert.equal(reply.lengths.length, 1);
        assert.equal(reply.lengths[0], reply.body.length);
        assert.ok(reply.body.length < page.length, "sent compressed");
      });
      await t.step(`HEAD, round ${round + 1}`, async () => {
        const { status, lengths, body } = await ask("HEAD");
        assert.equal(status, 200);
        assert.deepEqual(lengths, [page.length], "the length a GET would send");
        assert.equal(body, "");
      });
    }
    await t.step(
      "a handler called in-process still says Content-Length",
      async () => {
        const own = createHandler({ fsRoot: tree.root, quiet: true });
        for (let i = 0; i < 2; i++) { // filled, then from the cache
          const res = await own(new Request("http://127.0.0.1/page.html"));
          assert.equal(res.headers.get("content-length"), String(page.length));
          assert.equal(await res.text(), page);
        }
      },
    );
  } finally {
    await server.shutdown();
  }
});
