// The sixth hostile-client round against server_files.ts, by class of attack
// (paths, headers, HTTP/2, resource exhaustion): one test per defect found,
// each failing on the code before its fix.
import assert from "node:assert/strict";
import net from "node:net";
import {
  createHandler,
  MAX_OPEN_FILES_PER_CLIENT,
  parseHttpDateSeconds,
  renderListing,
  renderListingJson,
} from "../server_files.ts";
import {
  makeTree,
  prepareForNobody,
  serveDirAt,
  shuffledWords,
  startHttpsFilesProcess,
} from "./_files.ts";
import { certTestOptions } from "./_certs.ts";
import { openStalledStreams } from "./_raw.ts";
import { startScript, toolTestOptions } from "./_process.ts";

// --- Paths: names in listings ------------------------------------------------

Deno.test("listing: control characters in a name are shown as marks, never sent raw to a browser or a terminal", () => {
  // `curl http://host/dir/` in a terminal ran the escape sequences of a file
  // named "x\x1b[2J" (the screen was cleared); a browser showed nothing.
  const names = [
    "x\x1b[2J.txt",
    "new\nline",
    "del\x7f",
    "csi\x9b2J",
    "ls\u2028",
  ];
  const entries = names.map((name) => ({
    name,
    isDirectory: false,
    size: 1,
    mtime: null,
  }));
  const html = renderListing("/d\x1b[0m/", entries);
  assert.ok(
    !/[\p{Cc}\u2028\u2029]/u.test(html.replaceAll("\n", "")),
    "no raw control character anywhere in the page (its own newlines aside)",
  );
  assert.ok(html.includes('<span>x<span class="ctl">U+001B</span>[2J.txt'));
  assert.ok(html.includes('<span>new<span class="ctl">U+000A</span>line'));
  assert.ok(html.includes("<title>Index of /dU+001B[0m/</title>"));
  const json = renderListingJson("/d/", entries);
  assert.ok(
    !/[\p{Cc}\u2028\u2029]/u.test(json.trimEnd()),
    "no raw control character in the JSON text",
  );
  assert.deepEqual(
    JSON.parse(json).entries.map((entry: { name: string }) => entry.name)
      .sort(),
    [...names].sort(),
    "the names parse back exactly",
  );
});

// --- Headers: conditions -----------------------------------------------------

Deno.test("parseHttpDateSeconds: the three forms of RFC 9110 5.6.7, and nothing else", () => {
  const when = 784111777; // Sun, 06 Nov 1994 08:49:37 GMT
  const table: [string, number][] = [
    ["Sun, 06 Nov 1994 08:49:37 GMT", when],
    [" Sun, 06 Nov 1994 08:49:37 GMT ", when],
    ["Sunday, 06-Nov-94 08:49:37 GMT", when],
    ["Sun Nov  6 08:49:37 1994", when],
    ["Thu, 01 Jan 1970 00:00:00 GMT", 0],
    ["1", NaN],
    ["2026", NaN],
    ["0", NaN],
    ["-1", NaN],
    ["Sun, 06 Nov 1994 08:49:37 +0000", NaN],
    ["Sun, 06 Nov 1994 08:49:37", NaN],
    ["06 Nov 1994 08:49:37 GMT", NaN],
    ["Sun, 6 Nov 1994 08:49:37 GMT", NaN],
    ["sun, 06 nov 1994 08:49:37 gmt", NaN],
    ["Sun, 06 Foo 1994 08:49:37 GMT", NaN],
    ["Sun, 06 Nov 1994 25:49:37 GMT", NaN],
    ["Sun, 32 Nov 1994 08:49:37 GMT", NaN],
    ["1994-11-06T08:49:37Z", NaN],
    ["", NaN],
  ];
  for (const [text, seconds] of table) {
    assert.equal(parseHttpDateSeconds(text), seconds, JSON.stringify(text));
  }
});

Deno.test("conditions: a date that is no HTTP-date is ignored, never a 412 or a 304", async () => {
  // Date.parse read "1" as 1 January 2001 and "2026" as that New Year:
  // If-Unmodified-Since: 1 answered 412, If-Modified-Since: 2026 answered 304.
  await using tree = await makeTree();
  await Deno.utime(`${tree.root}/a.txt`, 1e9, 1e9); // 9 September 2001
  const conditions: Record<string, string>[] = [
    { "if-unmodified-since": "1" },
    { "if-unmodified-since": "2000" },
    { "if-modified-since": "2026" },
    { "if-modified-since": "2001-12-01" },
    { "range": "bytes=0-1", "if-range": "2001" },
  ];
  for (const headers of conditions) {
    const res = await serveDirAt(tree.root, "/a.txt", { headers });
    assert.equal(res.status, 200, JSON.stringify(headers));
    assert.equal(await res.text(), "hello a");
  }
  // A real date still counts.
  const res = await serveDirAt(tree.root, "/a.txt", {
    headers: { "if-modified-since": "Sat, 01 Dec 2001 00:00:00 GMT" },
  });
  assert.equal(res.status, 304);
});

// --- Paths: a root that cannot be read ----------------------------------------

Deno.test({
  name:
    "start-up: a --root this user may not look into stops the server with one line (as nobody)",
  ...await toolTestOptions("the unreadable-root test", ["runuser"], {
    root: true,
  }),
}, async () => {
  // It started and answered every request 403, saying nothing.
  await using tree = await makeTree();
  const nobody = await prepareForNobody(tree.base);
  const start = async (mode: number) => {
    await Deno.chmod(tree.root, mode);
    const server = await startScript(
      nobody.script,
      ["--allow-net=127.0.0.1", `--allow-read=${tree.root}`],
      ["--root", tree.root, "--port", "0", "--quiet"],
      { ...nobody, ready: /^(Serving |server_files: )/ },
    );
    // One that starts serving is killed after this wait, and fails below.
    return await server.waitForExit(5000);
  };
  for (const mode of [0o000, 0o644]) {
    const run = await start(mode);
    assert.equal(run.code, 1, `mode ${mode.toString(8)}: ${run.stderr}`);
    assert.equal(
      run.stderr,
      `server_files: cannot start: this user may not read the folder ${tree.root} (it needs read and search permission: chmod a+rX)\n`,
    );
    assert.equal(run.stdout, "");
  }
  // A folder it may search but not list still serves its files.
  await Deno.chmod(tree.root, 0o711);
  const server = await startScript(
    nobody.script,
    ["--allow-net=127.0.0.1", `--allow-read=${tree.root}`],
    ["--root", tree.root, "--port", "0", "--quiet"],
    { ...nobody, ready: /^Serving / },
  );
  try {
    const res = await fetch(`${server.url}a.txt`);
    assert.equal(await res.text(), "hello a");
  } finally {
    await server.stop("SIGKILL");
    await Deno.chmod(tree.root, 0o755);
  }
});

// --- HTTP/2: streams of a closed connection -----------------------------------

/** How many descriptors process `pid` has open on the file `path`. */
function fdsOn(pid: number, path: string): number {
  let count = 0;
  for (const { name } of Deno.readDirSync(`/proc/${pid}/fd`)) {
    try {
      if (Deno.readLinkSync(`/proc/${pid}/fd/${name}`) === path) count++;
    } catch {
      // closed since the listing
    }
  }
  return count;
}

Deno.test({
  name:
    "HTTP/2: one client's connections that read nothing hold a bounded number of files, and none once they close",
  ...certTestOptions(),
}, async () => {
  // 20 connections held 16 files each (and hyper's send buffer for each);
  // once closed, their waiting streams were answered one after another,
  // each opening the file, for seconds after the close.
  await using tree = await makeTree();
  const big = `${tree.root}/big.bin`;
  await Deno.writeFile(big, new Uint8Array(4 << 20)); // too big for the cache
  await using https = await startHttpsFilesProcess(tree);
  const { pid } = https.server;
  const stalled = await openStalledStreams(https.server.port, https.pem, {
    connections: 20,
    perConnection: 199,
    path: () => "/big.bin",
  });
  // While an answer is set up it holds two descriptors of the file for a
  // moment (the O_NONBLOCK handle that checks it, then the Deno.open
  // reader handed to Deno.serve, the first closed asynchronously): on a
  // loaded machine the server may still be setting up the last answers
  // when the client is done sending (64 + 16 of one connection were seen).
  // So: at most two per turn at any instant, and one per turn once the
  // count has settled (the same for a second).
  let peak = 0;
  let held = -1;
  for (let same = 0, at = Date.now(); same < 10;) {
    assert.ok(Date.now() - at < 20_000, `no settled count: last ${held}`);
    await new Promise((r) => setTimeout(r, 100));
    const count = fdsOn(pid, big);
    peak = Math.max(peak, count);
    same = count === held ? same + 1 : 0;
    held = count;
  }
  assert.ok(
    held >= MAX_OPEN_FILES_PER_CLIENT / 2 &&
      held <= MAX_OPEN_FILES_PER_CLIENT,
    `the client holds its turns, no more: ${held}`,
  );
  assert.ok(
    peak <= 2 * MAX_OPEN_FILES_PER_CLIENT,
    `at most two descriptors per turn at any time: ${peak}`,
  );
  stalled[Symbol.dispose]();
  // The waiting streams of the closed connections are refused after 16 cut
  // answers each; until then their turns pass on (1-2 s on a loaded machine).
  let open = fdsOn(pid, big);
  for (const at = Date.now(); open > 0 && Date.now() - at < 10_000;) {
    await new Promise((r) => setTimeout(r, 100));
    open = fdsOn(pid, big);
  }
  assert.equal(open, 0, "within 10 s of the close");
  using client = Deno.createHttpClient({ caCerts: [https.pem] });
  const res = await fetch(`${https.server.url}a.txt`, { client });
  assert.equal(await res.text(), "hello a");
});

// --- Resource exhaustion: cache thrash --------------------------------------

Deno.test("cache: many distinct compressible files asked for at once are not all compressed at once; they get their copies later", async () => {
  // Each new cache entry made br, zstd and gzip copies on the event loop
  // (50-60 ms for 250 KB of JS): cycling through more files than the cache
  // holds made every request cost that, and a cached file's answer waited.
  await using tree = await makeTree();
  const count = 60;
  for (let i = 0; i < count; i++) {
    await Deno.writeTextFile(
      `${tree.root}/f${i}.js`,
      shuffledWords(30_000, i + 1), // about 190 KB, compressible
    );
  }
  const handler = createHandler({
    fsRoot: tree.root,
    quiet: true,
    cacheMs: 50,
  });
  const codings = async () =>
    await Promise.all(
      Array.from({ length: count }, async (_, i) => {
        const res = await handler(
          new Request(`http://localhost/f${i}.js`, {
            headers: { "accept-encoding": "br" },
          }),
        );
        await res.arrayBuffer();
        assert.equal(res.status, 200);
        assert.equal(res.headers.get("vary"), "Accept-Encoding");
        return res.headers.get("content-encoding") ?? "identity";
      }),
    );
  const first = await codings();
  assert.ok(
    first.includes("identity"),
    "some are sent as they are at first",
  );
  assert.ok(first.includes("br"), "the first ones are compressed");
  // Within the budget, the rest get their copies at later revalidations.
  let later = first;
  for (let i = 0; i < 100 && later.includes("identity"); i++) {
    await new Promise((r) => setTimeout(r, 100));
    later = await codings();
  }
  assert.deepEqual(later, first.map(() => "br"));
});

// --- Resource exhaustion: one address's file turns ----------------------------

Deno.test("turns: a request from an address whose file turns are all taken gets 503 with Retry-After in bounded time, not a hang; another address is served", async () => {
  // Behind a proxy on TCP (or one NAT) every visitor is one address: with 64
  // slow downloads under way, the 65th waited for a turn with no answer at all.
  await using tree = await makeTree();
  const big = `${tree.root}/big.bin`;
  using file = await Deno.open(big, { create: true, write: true });
  await file.truncate(50 << 20); // sparse, far too big for the cache
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen() {} },
    createHandler({ fsRoot: tree.root, quiet: true, sendTimeoutMs: 2_000 }),
  );
  const { port } = server.addr;
  const get = "GET /big.bin HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
  // Slow readers that keep making progress (64 KiB now and then), so the
  // send timeout never frees their turns.
  const holders: {
    socket: net.Socket;
    timer?: ReturnType<typeof setTimeout>;
  }[] = [];
  try {
    for (let i = 0; i < MAX_OPEN_FILES_PER_CLIENT; i++) {
      const holder: {
        socket: net.Socket;
        timer?: ReturnType<typeof setTimeout>;
      } = {
        socket: net.connect({
          port,
          host: "127.0.0.1",
          localAddress: "127.0.0.3",
        }),
      };
      holder.socket.on("error", () => {});
      holder.socket.on("data", () => {
        holder.socket.pause();
        holder.timer = setTimeout(() => holder.socket.resume(), 50);
      });
      holder.socket.write(get);
      holders.push(holder);
    }
    await new Promise((r) => setTimeout(r, 500)); // every holder has its turn
    const started = Date.now();
    const [busy, other] = await Promise.all([
      sendRawFrom(port, "127.0.0.3", get),
      sendRawFrom(port, "127.0.0.4", get),
    ]);
    assert.match(busy, /^HTTP\/1\.1 503 /, busy.slice(0, 200));
    assert.match(busy, /\r\nretry-after: 1\r\n/i);
    assert.ok(Date.now() - started < 8_000, "answered once the wait was up");
    assert.match(
      other,
      /^HTTP\/1\.1 200 /,
      "another address has its own turns",
    );
  } finally {
    for (const { socket, timer } of holders) {
      clearTimeout(timer);
      socket.destroy();
    }
    await server.shutdown();
    // The holders' streams end with their connections: let their timers go.
    await new Promise((r) => setTimeout(r, 100));
  }
});

/** Sends `request` from `localAddress` and resolves the answer's head, then closes. */
function sendRawFrom(port: number, localAddress: string, request: string) {
  return new Promise<string>((resolve, reject) => {
    const socket = net.connect({ port, host: "127.0.0.1", localAddress });
    let text = "";
    socket.setEncoding("latin1");
    socket.on("error", reject);
    socket.setTimeout(10_000, () => {
      socket.destroy();
      reject(new Error(`no answer within 10 s from ${localAddress}`));
    });
    socket.on("data", (chunk: string) => {
      text += chunk;
      if (text.includes("\r\n\r\n")) {
        socket.destroy();
        resolve(text.slice(0, text.indexOf("\r\n\r\n") + 4));
      }
    });
    socket.write(request);
  });
}
