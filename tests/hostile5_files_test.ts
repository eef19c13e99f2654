// The sixth hostile-client round against server_files.ts: real processes, raw
// sockets, one test per defect found, each failing on the code before its fix.
import assert from "node:assert/strict";
import { createHandler } from "../server_files.ts";
import { makeTree, startFilesProcess } from "./_files.ts";
import { countOpenFds, toolTestOptions } from "./_process.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** A 404.html of about 200 KB whose text says `name`. */
function bigPage(name: string): string {
  return `<!doctype html><title>${name}</title>${
    `<p>${name} lost</p>`.repeat(10_000)
  }`;
}

/** Bytes this process has read so far (every read(2), files and sockets), from /proc. */
function bytesRead(): number {
  const io = Deno.readTextFileSync("/proc/self/io");
  return Number(/^rchar: (\d+)$/m.exec(io)![1]);
}

/**
 * Sends a GET of `path` on a kept-alive connection and reads one answer (by
 * its Content-Length): its status and body.
 */
async function getOn(
  conn: Deno.Conn,
  path: string,
): Promise<{ status: number; body: string }> {
  await conn.write(
    encoder.encode(`GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n`),
  );
  let bytes = new Uint8Array(0);
  const buffer = new Uint8Array(65536);
  const deadline = Date.now() + 5000;
  while (Date.now() < deadline) {
    const text = decoder.decode(bytes);
    const end = text.indexOf("\r\n\r\n");
    if (end >= 0) {
      const length = Number(/content-length: (\d+)/i.exec(text)?.[1] ?? 0);
      const head = encoder.encode(text.slice(0, end + 4)).length;
      if (bytes.length >= head + length) {
        return {
          status: Number(text.slice(9, 12)),
          body: decoder.decode(bytes.subarray(head, head + length)),
        };
      }
    }
    const n = await conn.read(buffer);
    if (n === null) throw new Error(`closed after ${JSON.stringify(text)}`);
    const more = new Uint8Array(bytes.length + n);
    more.set(bytes);
    more.set(buffer.subarray(0, n), bytes.length);
    bytes = more;
  }
  throw new Error(`no answer to ${path} within 5 s`);
}

Deno.test({
  name:
    "files: a read of 404.html that failed for want of descriptors is tried again at the next 404",
  ...await toolTestOptions("the 404.html retry test", ["prlimit"]),
}, async () => {
  // The failed read was remembered until the file changed: once the process
  // had run out of descriptors, every 404 was plain text from then on.
  await using tree = await makeTree();
  const page = "<!doctype html><title>Not here</title><p>lost</p>";
  await Deno.writeTextFile(`${tree.root}/404.html`, page);
  // Too big for the cache: each download keeps its file open while unread.
  await Deno.writeFile(`${tree.root}/big.bin`, new Uint8Array(16 << 20));
  const server = await startFilesProcess({
    readable: [tree.root],
    args: ["--root", tree.root, "--quiet"],
    wrapper: ["prlimit", "--nofile=128"],
  });
  const flood: Deno.TcpConn[] = [];
  const closeFlood = () => {
    for (const conn of flood.splice(0)) conn.close();
  };
  try {
    // Past the second in which an edit may not show in the timestamps.
    await new Promise((r) => setTimeout(r, 1200));
    using conn = await Deno.connect({
      hostname: "127.0.0.1",
      port: server.port,
    });
    assert.equal((await getOn(conn, "/a.txt")).body, "hello a");
    // 100 connections fit under the limit, and then unread downloads on
    // them take the descriptors that are left (the rest get 503).
    for (let i = 0; i < 99; i++) {
      flood.push(
        await Deno.connect({ hostname: "127.0.0.1", port: server.port }),
      );
    }
    const request = encoder.encode(
      "GET /big.bin HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
    );
    const statuses = await Promise.all(flood.map(async (other) => {
      await other.write(request);
      const head = new Uint8Array(12);
      let got = 0;
      while (got < 12) {
        const n = await other.read(head.subarray(got));
        if (n === null) break;
        got += n;
      }
      return decoder.decode(head.subarray(9, got));
    }));
    const refused = statuses.filter((status) => status === "503").length;
    assert.ok(refused > 0, "the descriptors did not run out");
    const starved = await getOn(conn, "/missing");
    assert.equal(starved.status, 404);
    assert.equal(starved.body, "Not Found\n"); // the page could not be read
    closeFlood();
    const deadline = Date.now() + 5000;
    while (countOpenFds(server.pid) > 64 && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 50));
    }
    const later = await getOn(conn, "/missing");
    assert.equal(later.status, 404);
    assert.equal(later.body, page);
  } finally {
    closeFlood();
    await server.stop("SIGKILL");
  }
});

Deno.test("files: two handlers in one process each keep their own 404.html, read once", async () => {
  // One slot for the whole process, keyed by path and headers: two handlers
  // took turns replacing it, so each 404 read its page again (and held a
  // copy of its own while a client did not read it).
  await using one = await makeTree();
  await using two = await makeTree();
  await Deno.writeTextFile(`${one.root}/404.html`, bigPage("one"));
  await Deno.writeTextFile(`${two.root}/404.html`, bigPage("two"));
  const first = createHandler({ fsRoot: one.root, quiet: true });
  const second = createHandler({
    fsRoot: two.root,
    quiet: true,
    headers: ["X-Site: two"],
  });
  // Past the second in which an edit may not show in the timestamps.
  await new Promise((r) => setTimeout(r, 1200));
  const before = bytesRead();
  for (let i = 0; i < 40; i++) {
    for (const [handler, name] of [[first, "one"], [second, "two"]] as const) {
      const response = await handler(
        new Request(`http://localhost/gone-${i}`),
      );
      assert.equal(response.status, 404);
      assert.equal(
        response.headers.get("x-site"),
        name === "two" ? "two" : null,
      );
      assert.equal(await response.text(), bigPage(name));
    }
  }
  const read = bytesRead() - before;
  const pages = read / bigPage("one").length;
  console.log(`80 404s read ${pages.toFixed(1)} pages' worth`);
  // Each page once (a few more while the machine is slow); 80 without sharing.
  assert.ok(pages < 10, `${pages.toFixed(1)} pages read`);
});
