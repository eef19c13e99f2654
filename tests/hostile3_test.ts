// The fourth hostile-client round against server_files.ts and server_tiny.ts:
// real processes, raw sockets, small descriptor limits. One test per defect
// found, each failing on the code before its fix.
import assert from "node:assert/strict";
import {
  createHandler,
  MAX_OPEN_FILES_PER_CONNECTION,
  serveWithRestart,
} from "../server_files.ts";
import { certTestOptions, makeCertificate } from "./_certs.ts";
import {
  makeTree,
  rssGrowthUnderStalledStreams,
  shuffledWords,
  startFilesProcess,
  startHttpsFilesProcess,
} from "./_files.ts";
import { countFdsOn, toolTestOptions } from "./_process.ts";
import { collectH2Responses, connectZeroWindowH2, sendH2Gets } from "./_raw.ts";

const encoder = new TextEncoder();

/** Sends `request` on each of `conns` at once; the first line of each answer ("timeout" after 5 s). */
function firstLines(
  conns: readonly Deno.Conn[],
  request: string,
): Promise<string[]> {
  return Promise.all(conns.map(async (conn) => {
    let timer: ReturnType<typeof setTimeout> | undefined;
    try {
      await conn.write(encoder.encode(request));
      const buffer = new Uint8Array(256);
      const n = await Promise.race([
        conn.read(buffer),
        new Promise<"timeout">((resolve) => {
          timer = setTimeout(() => resolve("timeout"), 5000);
        }),
      ]);
      if (n === "timeout" || n === null) return String(n);
      return new TextDecoder().decode(buffer.subarray(0, n)).split("\r\n")[0]!;
    } catch (error) {
      return (error as Error).name;
    } finally {
      clearTimeout(timer);
    }
  }));
}

Deno.test({
  name:
    "files: 503s for want of descriptors log one short line a second, no stack traces",
  ...await toolTestOptions("the descriptor-shortage log test", ["prlimit"]),
}, async (t) => {
  await using tree = await makeTree();
  // Bigger than the cache takes, so every request opens the file.
  await Deno.writeFile(`${tree.root}/big.bin`, new Uint8Array(300 * 1024));
  const server = await startFilesProcess({
    readable: [tree.root],
    args: ["--root", tree.root, "--quiet"],
    wrapper: ["prlimit", "--nofile=128"],
  });
  let conns: Deno.TcpConn[] = [];
  /** 100 connections fit under the limit, but 100 open files more do not. */
  const burst = async () => {
    for (let i = 0; i < 100; i++) {
      conns.push(
        await Deno.connect({ hostname: "127.0.0.1", port: server.port }),
      );
    }
    const lines = await firstLines(
      conns,
      "GET /big.bin HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
    );
    for (const conn of conns) conn.close();
    conns = [];
    const refused = lines.filter((line) =>
      line === "HTTP/1.1 503 Service Unavailable"
    )
      .length;
    console.log(`${refused} of ${lines.length} got 503`);
    assert.ok(refused >= 10, lines.join("\n"));
    return refused;
  };
  try {
    const first = await burst();
    await new Promise((r) => setTimeout(r, 1100));
    const second = await burst();
    // Let the log lines arrive.
    await new Promise((r) => setTimeout(r, 300));
    const stderr = server.stderr.join("\n");
    await t.step("no stack trace, no error object in the log", () => {
      assert.doesNotMatch(stderr, /^\s+at |errno|syscall/m);
    });
    const logged = server.stderr.filter((line) => / 503 for GET /.test(line));
    await t.step("one short line for the first", () => {
      assert.match(
        logged[0]!,
        /^server_files: 503 for GET "\/big\.bin": out of file descriptors \(EMFILE\)$/,
      );
    });
    await t.step("at most about one line a second for the rest", () => {
      // Two bursts 1.1 s apart: two lines, three or four on a slow machine.
      assert.ok(logged.length >= 2 && logged.length <= 4, stderr);
    });
    await t.step("later lines count those not logged", () => {
      // Every 503 of the first burst is logged or counted by the time the
      // second burst's first one is logged.
      const counted = logged.reduce(
        (sum, line) =>
          sum + 1 +
          Number(
            /\((\d+) more since the last such line\)$/.exec(line)?.[1] ?? 0,
          ),
        0,
      );
      assert.ok(
        counted >= first + 1 && counted <= first + second,
        `${counted} for ${first} + ${second}:\n${stderr}`,
      );
    });
  } finally {
    for (const conn of conns) conn.close();
    await server.stop("SIGKILL");
  }
});

Deno.test("files: the error log shows bidi and zero-width characters of a path escaped, and clips a long path", async (t) => {
  await using tree = await makeTree();
  const server = await startFilesProcess({
    readable: [tree.root],
    args: ["--root", tree.root],
  });
  try {
    // U+202E turns the rest of a terminal line around; U+200B is invisible.
    const spoof = await fetch(`${server.url}%E2%80%AEtxt.exe%E2%80%8B`);
    await spoof.body?.cancel();
    assert.equal(spoof.status, 404);
    const long = await fetch(`${server.url}${"a".repeat(20_000)}`);
    await long.body?.cancel();
    assert.equal(long.status, 404);
    const lines = await Promise.all([
      server.waitForLine(/404 for GET .*txt\.exe/),
      server.waitForLine(/404 for GET "\/aaa/),
    ]);
    await t.step(
      "no bidi override or zero-width character reaches the log",
      () => {
        assert.doesNotMatch(lines[0], /[\u202e\u200b]/);
        assert.match(lines[0], /\\u\{202e\}txt\.exe\\u\{200b\}/);
      },
    );
    await t.step("a 20,000-character path is clipped in the log line", () => {
      assert.ok(lines[1].length < 3000, `${lines[1].length} characters`);
      assert.match(lines[1], /\.\.\. \(\d+ more characters\)/);
    });
  } finally {
    await server.stop("SIGKILL");
  }
});

Deno.test("files: clients that close gzip downloads of a big text file part way never end the server", async () => {
  await using tree = await makeTree();
  // Bigger than the cache takes, and compressible: gzipped while it streams.
  // Words in a shuffled order (a fixed seed), so gzip's output is big too.
  const text = shuffledWords(400_000, 1);
  await Deno.writeTextFile(`${tree.root}/big.txt`, text);
  const server = await startFilesProcess({
    readable: [tree.root],
    args: ["--root", tree.root, "--quiet"],
  });
  try {
    for (let round = 0; round < 4; round++) {
      await Promise.all(Array.from({ length: 100 }, async (_, i) => {
        const conn = await Deno.connect({
          hostname: "127.0.0.1",
          port: server.port,
        });
        try {
          await conn.write(encoder.encode(
            "GET /big.txt HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept-Encoding: gzip\r\n\r\n",
          ));
          // A few reads, then gone: gzip still has output pending.
          const buffer = new Uint8Array(16384);
          for (let k = 0; k <= i % 5; k++) {
            if (await conn.read(buffer) === null) break;
          }
        } finally {
          conn.close();
        }
      }));
    }
    const res = await fetch(`${server.url}big.txt`, {
      headers: { "accept-encoding": "gzip" },
    });
    assert.equal(res.headers.get("content-encoding"), "gzip");
    assert.equal(await res.text(), text);
    assert.doesNotMatch(server.stderr.join("\n"), /Uncaught|TypeError/);
  } finally {
    await server.stop("SIGKILL");
  }
});

Deno.test("files: a gzip download the client stops reading still closes its file after the send timeout", async () => {
  await using tree = await makeTree();
  // 1 MiB of shuffled words, 48 times: its gzip is far more than socket buffers hold.
  const block = shuffledWords(180_000, 7);
  const path = `${tree.root}/big.txt`;
  await Deno.writeTextFile(path, block.repeat(48));
  const server = serveWithRestart(
    { hostname: "127.0.0.1", port: 0, onListen() {} },
    createHandler({ fsRoot: tree.root, quiet: true, sendTimeoutMs: 300 }),
  );
  const conn = await Deno.connect({
    hostname: "127.0.0.1",
    port: server.addr.port,
  });
  try {
    await conn.write(encoder.encode(
      "GET /big.txt HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept-Encoding: gzip\r\n\r\n",
    ));
    const opened = Date.now();
    let open = -1;
    while (Date.now() - opened < 5000 && open !== 0) {
      await new Promise((r) => setTimeout(r, 100));
      open = await countFdsOn(path);
    }
    assert.equal(open, 0, "the file is still open 5 s later");
  } finally {
    conn.close();
    await server.shutdown();
  }
});

Deno.test({
  name:
    "files: HTTP/2 streams that read nothing hold a few big listings per connection, not one each",
  ...certTestOptions(),
}, async (t) => {
  // Deno.serve settles `completed` as soon as it holds a byte body, even on
  // a stream with no window to send it on, so listings took no turn of their
  // connection: 2 such connections asking 200 times each for the listing of
  // a 100,000-entry folder held 348 MB, and other listings waited over 5 s.
  await using tree = await makeTree();
  await Deno.mkdir(`${tree.root}/big`);
  for (let i = 0; i < 1500; i++) {
    const name = `entry-${String(i).padStart(5, "0")}-of-a-long-listing.txt`;
    await Deno.writeTextFile(`${tree.root}/big/${name}`, "x");
  }
  const { certFile, keyFile, pem } = await makeCertificate(tree.base);
  const server = serveWithRestart(
    {
      hostname: "127.0.0.1",
      port: 0,
      cert: await Deno.readTextFile(certFile),
      key: await Deno.readTextFile(keyFile),
      onListen() {},
    },
    createHandler({ fsRoot: tree.root, showDirListing: true, quiet: true }),
  );
  const conn = await connectZeroWindowH2(server.addr.port, pem);
  // The streams whose response HEADERS came (their DATA cannot).
  const answered = new Set<number>();
  const reading = collectH2Responses(conn, answered);
  try {
    await sendH2Gets(conn, 40, () => "/big/");
    await t.step("at most its share of them is answered", async () => {
      const share = MAX_OPEN_FILES_PER_CONNECTION;
      const working = Date.now() + 20_000;
      while (answered.size < share && Date.now() < working) {
        await new Promise((r) => setTimeout(r, 20));
      }
      assert.ok(answered.size >= share, `only ${answered.size} in 20 s`);
      // Without the turns the other 24 come within moments.
      await new Promise((r) => setTimeout(r, 1500));
      assert.equal(answered.size, share);
    });
    await t.step("another client gets the listing meanwhile", async () => {
      using client = Deno.createHttpClient({ caCerts: [pem], http1: false });
      const res = await fetch(`https://127.0.0.1:${server.addr.port}/big/`, {
        client,
        signal: AbortSignal.timeout(10_000),
      });
      assert.equal(res.status, 200);
      const html = await res.text();
      assert.match(html, /entry-01499-of-a-long-listing\.txt/);
      assert.equal(
        Number(res.headers.get("content-length")),
        new TextEncoder().encode(html).length,
      );
    });
  } finally {
    conn.close();
    await reading;
    await server.shutdown();
  }
});

Deno.test({
  name:
    "files: HTTP/2 streams that read nothing hold little for several ranges of a cached file",
  ...certTestOptions(),
}, async () => {
  // Several ranges of a file in memory were joined into a new buffer per
  // request, which Deno.serve then held whole while the stream had no
  // window: 5 connections asking 200 times each for two ranges of a 250 KB
  // file held 290 MB more (now 70 MB: the views of the cached bytes and one
  // piece per stream).
  await using tree = await makeTree();
  await Deno.writeFile(`${tree.root}/c.bin`, new Uint8Array(250_000).fill(7));
  await using https = await startHttpsFilesProcess(tree);
  const { server, pem } = https;
  // Cached by a first request, then measured.
  using client = Deno.createHttpClient({ caCerts: [pem], http1: false });
  const first = await fetch(`${server.url}c.bin`, { client });
  await first.body?.cancel();
  // 200 requests for two ranges on each of 3 connections.
  const grown = await rssGrowthUnderStalledStreams(https, {
    connections: 3,
    perConnection: 200,
    path: () => "/c.bin",
    headers: [["range", "bytes=0-1000,2000-249000"]],
  });
  // Joined per request: about 170 MB for these 600 streams.
  assert.ok(grown < 90, `RSS grew by ${grown.toFixed(0)} MB`);
});
