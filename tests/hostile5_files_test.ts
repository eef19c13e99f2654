// The sixth hostile-client round against server_files.ts: real processes, raw
// sockets, one test per defect found, each failing on the code before its fix.
import assert from "node:assert/strict";
import {
  createHandler,
  MAX_ACCEPT_ENCODING_ITEMS,
  MAX_COMPRESSING_STREAMS,
  negotiateCoding,
} from "../server_files.ts";
import { certTestOptions } from "./_certs.ts";
import {
  makeTree,
  startFilesProcess,
  startHttpsFilesProcess,
} from "./_files.ts";
import { countOpenFds, readRss, toolTestOptions } from "./_process.ts";
import { openStalledStreams } from "./_raw.ts";

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

/**
 * Sends `GET /big.bin` on `conn` and reads the answer's head: a 503 is read
 * to its end (the connection can ask again), a 200 is left unread.
 */
async function startDownload(conn: Deno.Conn): Promise<number> {
  await conn.write(
    encoder.encode("GET /big.bin HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"),
  );
  let text = "";
  const buffer = new Uint8Array(1);
  while (!text.endsWith("\r\n\r\n")) {
    // One byte at a time: nothing past the head is taken.
    if (await conn.read(buffer) === null) return 0;
    text += String.fromCharCode(buffer[0]!);
  }
  const status = Number(text.slice(9, 12));
  if (status === 503) {
    let left = Number(/content-length: (\d+)/i.exec(text)?.[1] ?? 0);
    const body = new Uint8Array(left);
    while (left > 0) {
      const n = await conn.read(body.subarray(body.length - left));
      if (n === null) return 0;
      left -= n;
    }
  }
  return status;
}

Deno.test({
  name:
    "files: a read of 404.html that failed for want of descriptors is tried again at the next 404",
  ...await toolTestOptions("the 404.html retry test", ["prlimit"]),
}, async () => {
  // The failed read was remembered until the file changed: once the process
  // had run out of descriptors, every 404 was plain text from then on.
  await using tree = await makeTree();
  let page = "<!doctype html><title>Not here</title><p>lost</p>";
  await Deno.writeTextFile(`${tree.root}/404.html`, page);
  // Too big for the cache: each download keeps its file open while unread.
  await Deno.writeFile(`${tree.root}/big.bin`, new Uint8Array(16 << 20));
  const limit = 128;
  const server = await startFilesProcess({
    readable: [tree.root],
    args: ["--root", tree.root, "--quiet"],
    wrapper: ["prlimit", `--nofile=${limit}`],
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
    // 100 connections fit under the limit (accepting one at a full table
    // would fail, and the server would close idle connections, this
    // flood's among them).
    const before = countOpenFds(server.pid);
    for (let i = 0; i < 99; i++) {
      flood.push(
        await Deno.connect({ hostname: "127.0.0.1", port: server.port }),
      );
    }
    // A connection is made once the kernel has it, before the server takes
    // it: on a loaded machine downloads could fill the table while some
    // are still to be accepted.
    const accepted = Date.now() + 10_000;
    while (countOpenFds(server.pid) < before + flood.length) {
      assert.ok(Date.now() < accepted, "the server takes all 99 connections");
      await new Promise((r) => setTimeout(r, 20));
    }
    // Unread downloads take the descriptors that are left, the others get
    // 503: asked again until a round where all get 503, the table is full.
    let asking = flood;
    const fillTable = async () => {
      for (let round = 0; round < 20; round++) {
        const answers = await Promise.all(asking.map(startDownload));
        asking = asking.filter((_, i) => answers[i] === 503);
        if (asking.length > 0 && answers.every((s) => s === 503)) return;
      }
      assert.fail("the flood does not fill the descriptor table");
    };
    await fillTable();
    let starved = await getOn(conn, "/missing");
    // A descriptor may come free just after (a download's first handle is
    // closed asynchronously once its second is open): then the page is
    // read, and kept. Change it (a new version is read again), fill the
    // table again (the flood took the free descriptor only once it asked
    // again) and ask again.
    for (let i = 1; i < 10 && starved.body !== "Not Found\n"; i++) {
      assert.equal(starved.body, page);
      page = `${page}<!-- ${i} -->`;
      await Deno.writeTextFile(`${tree.root}/404.html`, page);
      await fillTable();
      starved = await getOn(conn, "/missing");
    }
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

Deno.test({
  name:
    "files: HTTP/2 streams that read nothing share one body of a small listing",
  ...certTestOptions(),
}, async () => {
  // Each request built its listing into a new buffer, which Deno.serve held
  // whole while the stream had no window: 600 such streams for a 60 KB
  // listing took 57-119 MB more (now 17-27 MB; 12-15 MB for a 3 KB one).
  await using tree = await makeTree();
  await Deno.mkdir(`${tree.root}/list`);
  for (let i = 0; i < 160; i++) {
    const name = `file-number-${String(i).padStart(5, "0")}-with-a-long-name`;
    await Deno.writeTextFile(`${tree.root}/list/${name}.txt`, "x");
  }
  await using https = await startHttpsFilesProcess(tree, [
    "--quiet",
    "--dir-listing",
  ]);
  const { server, pem } = https;
  {
    using client = Deno.createHttpClient({ caCerts: [pem], http1: false });
    const first = await fetch(`${server.url}list/`, { client });
    assert.equal(first.status, 200);
    const html = await first.text();
    assert.ok(
      html.length > 50_000 && html.length < 64 * 1024,
      `${html.length}`,
    );
    await new Promise((r) => setTimeout(r, 300));
    const before = await readRss(server.pid);
    // 40 GETs at a time: a burst of 200 listings at once would get 503s for
    // want of a listing turn (MAX_WAITING_LISTINGS) instead of being held.
    using _stalled = await openStalledStreams(server.port, pem, {
      connections: 3,
      perConnection: 200,
      path: (i) => `/list/?${i}`,
      pace: { every: 40, pauseMs: 100 },
    });
    await new Promise((r) => setTimeout(r, 2000));
    const grown = (await readRss(server.pid) - before) / 1e6;
    console.log(`RSS grew by ${grown.toFixed(0)} MB`);
    assert.ok(grown < 45, `RSS grew by ${grown.toFixed(0)} MB`);
    // And a new file shows once the kept listing is a second old.
    await Deno.writeTextFile(`${tree.root}/list/new.txt`, "x");
    await new Promise((r) => setTimeout(r, 1100));
    const after = await fetch(`${server.url}list/`, { client });
    assert.match(await after.text(), /new\.txt/);
  }
});

Deno.test("files: a folder swapped for a symlink to the outside while files in it are asked for never sends the outside", async () => {
  // The open followed the folders on the path as they were then: with `d`
  // swapped for a symlink to a folder outside in a loop, 8 clients got the
  // outside file 114 times in 8 s (8,823 times for a small one, which the
  // cache then kept for a second), and the outside folder's listing 147.
  await using tree = await makeTree();
  const big = 300 * 1024; // not cached: each request opens the file
  await Deno.mkdir(`${tree.root}/d`);
  await Deno.mkdir(`${tree.base}/out`);
  for (
    const [folder, letter] of [[`${tree.root}/d`, "I"], [
      `${tree.base}/out`,
      "O",
    ]]
  ) {
    await Deno.writeTextFile(`${folder}/small.txt`, letter!.repeat(100));
    await Deno.writeTextFile(`${folder}/big.txt`, letter!.repeat(big));
  }
  await Deno.writeTextFile(`${tree.base}/out/outside-only.txt`, "O");
  const server = await startFilesProcess({
    readable: [tree.root, tree.base],
    args: ["--root", tree.root, "--quiet", "--dir-listing"],
  });
  const swapper = new Deno.Command("sh", {
    args: [
      "-c",
      `cd '${tree.root}' && while true; do mv d d2; ln -s '${tree.base}/out' d; rm d; mv d2 d; done`,
    ],
    stdout: "null",
    stderr: "null",
  }).spawn();
  const seen: Record<string, number> = {};
  try {
    const until = Date.now() + 3000;
    await Promise.all(Array.from({ length: 8 }, async (_, i) => {
      const paths = ["d/small.txt", "d/big.txt", "d/"];
      for (let n = i; Date.now() < until; n++) {
        const path = paths[n % paths.length]!;
        const response = await fetch(`${server.url}${path}`);
        const text = await response.text();
        const outside = /O/.test(text.slice(0, 1)) ||
          text.includes("outside-only");
        const key = `${path} ${response.status}${outside ? " OUTSIDE" : ""}`;
        seen[key] = (seen[key] ?? 0) + 1;
      }
    }));
  } finally {
    swapper.kill("SIGKILL");
    await swapper.status;
    await server.stop("SIGKILL");
  }
  console.log(seen);
  assert.deepEqual(
    Object.keys(seen).filter((key) => key.endsWith("OUTSIDE")),
    [],
  );
  // The swaps did happen while the files were asked for: some requests met a folder.
  assert.ok(Object.keys(seen).some((key) => key.startsWith("d/big.txt 200")));
  assert.ok(Object.keys(seen).some((key) => key.endsWith(" 404")));
});

Deno.test({
  name:
    "files: clients that stop reading hold a bounded number of compressions; the others get the file as it is",
  ...certTestOptions(),
}, async () => {
  // Each file compressed while it streams holds its compressor and a read
  // or two (1.4-1.6 MB) until its client reads on, with no bound: 160
  // HTTP/2 streams with no window for a big text file took 222 MB.
  await using tree = await makeTree();
  let seed = 1;
  const text = new Uint8Array(4 << 20).map(() => {
    seed = (seed * 1103515245 + 12345) % 2147483648;
    return 97 + (seed >>> 16) % 26; // random letters: gzip leaves ~60%
  });
  await Deno.writeFile(`${tree.root}/big.txt`, text);
  await using https = await startHttpsFilesProcess(tree);
  const { server, pem } = https;
  const gzip = { "accept-encoding": "gzip" };
  {
    using client = Deno.createHttpClient({ caCerts: [pem], http1: false });
    const ask = async () => {
      const response = await fetch(`${server.url}big.txt`, {
        client,
        headers: gzip,
      });
      const coding = response.headers.get("content-encoding");
      const body = new Uint8Array(await response.arrayBuffer());
      return { coding, length: body.length };
    };
    assert.equal((await ask()).coding, "gzip");
    {
      // 3 connections of 16 streams each (their turns) that read nothing.
      using _stalled = await openStalledStreams(server.port, pem, {
        connections: 3,
        perConnection: 16,
        path: (i) => `/big.txt?${i}`,
        headers: [["accept-encoding", "gzip"]],
      });
      assert.ok(3 * 16 > MAX_COMPRESSING_STREAMS);
      await new Promise((r) => setTimeout(r, 1000));
      const meanwhile = await ask();
      assert.equal(meanwhile.coding, null);
      assert.equal(meanwhile.length, text.length);
    }
    // Once they are gone, their compressions end.
    const deadline = Date.now() + 5000;
    let after = await ask();
    while (after.coding === null && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 100));
      after = await ask();
    }
    assert.equal(after.coding, "gzip");
  }
});

Deno.test("files: an Accept-Encoding of thousands of codings is read only as far as its first items", () => {
  // Every item was read: a 60 KB header of 5,000 made-up codings cost 6 ms
  // of CPU per request (about 1 µs an item), 0.3 ms now.
  const junk = Array.from(
    { length: 5000 },
    (_, i) => `x-made-up-${i};q=0.5`,
  );
  assert.equal(negotiateCoding(["gzip", ...junk].join(", "), ["gzip"]), "gzip");
  const late = [...junk.slice(0, MAX_ACCEPT_ENCODING_ITEMS), "gzip"];
  assert.equal(negotiateCoding(late.join(", "), ["gzip"]), "identity");
  const inTime = [...junk.slice(0, MAX_ACCEPT_ENCODING_ITEMS - 1), "gzip"];
  assert.equal(negotiateCoding(inTime.join(", "), ["gzip"]), "gzip");
});

Deno.test("files: 300 clients that stop reading a big file hold a bounded share of buffers kept for reuse", async () => {
  // Each file stream kept up to 3 of its buffers for reuse, with no bound
  // across streams: 300 such downloads of a 20 MB file took 198 MB more,
  // a third of it in kept buffers (now 100-139 MB, most of it what Deno.serve
  // holds of each answer).
  await using tree = await makeTree();
  await Deno.writeFile(`${tree.root}/f.bin`, new Uint8Array(20_000_000));
  const server = await startFilesProcess({
    readable: [tree.root],
    args: ["--root", tree.root, "--quiet"],
  });
  const conns: Deno.TcpConn[] = [];
  try {
    await (await fetch(`${server.url}f.bin`)).arrayBuffer();
    await new Promise((r) => setTimeout(r, 300));
    const before = await readRss(server.pid);
    const request = encoder.encode(
      "GET /f.bin HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
    );
    for (let i = 0; i < 300; i++) {
      const conn = await Deno.connect({
        hostname: "127.0.0.1",
        port: server.port,
      });
      conns.push(conn);
      await conn.write(request);
    }
    await new Promise((r) => setTimeout(r, 3000));
    const grown = (await readRss(server.pid) - before) / 1e6;
    console.log(`RSS grew by ${grown.toFixed(0)} MB`);
    assert.ok(grown < 170, `RSS grew by ${grown.toFixed(0)} MB`);
  } finally {
    for (const conn of conns) conn.close();
    await server.stop("SIGKILL");
  }
});
