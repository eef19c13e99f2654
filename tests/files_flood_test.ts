// server_files.ts against an unlucky operator and a hostile client: a flood
// of idle connections under a small descriptor limit must not end it (it
// answers again once they close), and a file swapped for a FIFO must never
// hang a request or the shutdown.
import assert from "node:assert/strict";
import {
  NotServableError,
  openNativeReader,
  openRegularFile,
  serveFile,
} from "../server_files.ts";
import { makeTree, mkfifo, startFilesProcess } from "./_files.ts";
import { readRss, toolTestOptions } from "./_process.ts";
import { readUntilClosed } from "./_raw.ts";

const encoder = new TextEncoder();

/** Starts server_files.ts on `root` (quiet) under `prlimit --nofile=256`. */
function startUnder256(root: string) {
  return startFilesProcess({
    readable: [root],
    args: ["--root", root, "--quiet"],
    wrapper: ["prlimit", "--nofile=256"],
  });
}

/** Opens up to `count` idle TCP connections (1 s per attempt at most). */
async function openIdle(port: number, count: number): Promise<Deno.TcpConn[]> {
  const attempts = Array.from(
    { length: count },
    () => Deno.connect({ hostname: "127.0.0.1", port }).catch(() => null),
  );
  const conns = await Promise.all(attempts);
  return conns.filter((conn): conn is Deno.TcpConn => conn !== null);
}

/** Sends one request on an open connection and reads the head of the answer (bounded). */
async function answerOn(conn: Deno.Conn): Promise<string> {
  await conn.write(
    encoder.encode("GET /a.txt HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"),
  );
  const buffer = new Uint8Array(4096);
  let timer: ReturnType<typeof setTimeout> | undefined;
  const read = await Promise.race([
    conn.read(buffer),
    new Promise<"timeout">((resolve) => {
      timer = setTimeout(() => resolve("timeout"), 3000);
    }),
  ]);
  clearTimeout(timer);
  if (read === "timeout" || read === null) return String(read);
  return new TextDecoder().decode(buffer.subarray(0, read));
}

/** Polls with short fetches until one is answered; returns the time it took, or null. */
async function timeToAnswer(
  url: string,
  limitMs: number,
): Promise<number | null> {
  const started = Date.now();
  while (Date.now() - started < limitMs) {
    try {
      const res = await fetch(url, { signal: AbortSignal.timeout(300) });
      const text = await res.text();
      if (res.status === 200 && text === "hello a") return Date.now() - started;
    } catch {
      // refused or timed out: the listener is not back yet
    }
    await new Promise((r) => setTimeout(r, 20));
  }
  return null;
}

Deno.test({
  name: "300 idle connections under --nofile=256",
  ...await toolTestOptions("the descriptor-flood test", ["prlimit"]),
}, async (t) => {
  await using tree = await makeTree();
  const server = await startUnder256(tree.root);
  const early = await Deno.connect({
    hostname: "127.0.0.1",
    port: server.port,
  });
  let flood: Deno.TcpConn[] = [];
  try {
    const before = await answerOn(early);
    assert.match(before, /^HTTP\/1\.1 200/);
    assert.doesNotMatch(before, /^connection: close/im);
    flood = await openIdle(server.port, 300);
    // Let the server try (and fail) to accept them all.
    await new Promise((r) => setTimeout(r, 1000));
    await t.step(
      "a keep-alive connection idle since before is closed cleanly",
      async () => {
        // To get its descriptor back (as nginx does), with no stray bytes.
        assert.equal(await readUntilClosed(early), "");
      },
    );
    for (const conn of flood) conn.close();
    flood = [];
    await t.step("once they close, it answers within 2 s", async () => {
      const took = await timeToAnswer(`${server.url}a.txt`, 5000);
      console.log(`answered ${took} ms after the flood closed`);
      assert.ok(took !== null && took < 2000, `took ${took} ms`);
      assert.ok(await readRss(server.pid) > 0, "the server process is alive");
    });
    await t.step("it logs the failure in one line, no stack trace", () => {
      const stderr = server.stderr.join("\n");
      assert.match(
        stderr,
        /accepting connections failed .*Too many open files/,
      );
      assert.equal(
        stderr.match(/accepting connections failed/g)?.length,
        1,
        stderr,
      );
      assert.doesNotMatch(stderr, /Uncaught|^\s+at /m);
    });
    await t.step(
      "for a while after, answers say Connection: close",
      async () => {
        // Keep-alive clients are asked to hand back their descriptors.
        const after = await Deno.connect({
          hostname: "127.0.0.1",
          port: server.port,
        });
        try {
          assert.match(await answerOn(after), /^connection: close/im);
        } finally {
          after.close();
        }
      },
    );
    await t.step("a second flood is survived too", async () => {
      flood = await openIdle(server.port, 300);
      await new Promise((r) => setTimeout(r, 500));
      for (const conn of flood) conn.close();
      flood = [];
      const took = await timeToAnswer(`${server.url}a.txt`, 5000);
      assert.ok(took !== null, "no answer within 5 s");
    });
    await t.step("SIGTERM then ends it with exit code 0", async () => {
      let timer: ReturnType<typeof setTimeout> | undefined;
      const stopped = await Promise.race([
        server.stop("SIGTERM"),
        new Promise<null>((r) => timer = setTimeout(() => r(null), 10_000)),
      ]);
      clearTimeout(timer);
      assert.ok(stopped !== null, "SIGTERM did not end it within 10 s");
      assert.equal(stopped.code, 0, stopped.stderr);
    });
  } finally {
    for (const conn of flood) conn.close();
    try {
      early.close();
    } catch {
      // closed by readUntilClosed's timer
    }
    await server.stop("SIGKILL");
  }
});

Deno.test({
  name:
    "a flood of half-sent heads under --nofile=256 is closed, and new clients are answered during it",
  ...await toolTestOptions("the slowloris test", ["prlimit"]),
}, async () => {
  await using tree = await makeTree();
  const server = await startUnder256(tree.root);
  const flood: Deno.TcpConn[] = [];
  try {
    // Each sends the start of a head, never the blank line that ends it.
    const attempts = await Promise.all(
      Array.from({ length: 300 }, async () => {
        try {
          const conn = await Deno.connect({
            hostname: "127.0.0.1",
            port: server.port,
          });
          await conn.write(
            encoder.encode("GET /a.txt HTTP/1.1\r\nHost: 127.0.0.1\r\n"),
          );
          return conn;
        } catch {
          return null;
        }
      }),
    );
    for (const conn of attempts) if (conn !== null) flood.push(conn);
    // While the flood is still open on our side, a new client is answered.
    const took = await timeToAnswer(`${server.url}a.txt`, 4000);
    console.log(`answered ${took} ms into the flood`);
    assert.ok(took !== null, "no answer while the flood was open");
    // Because the server closed flood connections to get descriptors back.
    const ends = await Promise.all(flood.map(readUntilClosed));
    const closed = ends.filter((text) => text === "").length;
    console.log(`${closed} of ${flood.length} flood connections closed`);
    assert.ok(closed >= 100, `${closed} of ${flood.length}`);
  } finally {
    for (const conn of flood) {
      try {
        conn.close();
      } catch {
        // closed by readUntilClosed's timer
      }
    }
    await server.stop("SIGKILL");
  }
});

Deno.test({
  name:
    "serveFile on a path that became a FIFO answers 404 at once (the open never blocks)",
  ...await toolTestOptions("the FIFO test", ["mkfifo"]),
}, async () => {
  await using tree = await makeTree();
  const path = `${tree.root}/pipe.txt`;
  await Deno.writeTextFile(path, "a regular file");
  // A caller's stat, taken before the file was swapped for a FIFO: the open
  // itself meets the FIFO, as it does when the swap falls between a stat
  // and an open under load.
  const fileInfo = await Deno.stat(path);
  await Deno.remove(path);
  await mkfifo(path);
  const started = Date.now();
  let timer: ReturnType<typeof setTimeout> | undefined;
  const answer = await Promise.race([
    serveFile(new Request("http://localhost/pipe.txt"), path, { fileInfo }),
    new Promise<"hung">((r) => timer = setTimeout(() => r("hung"), 2000)),
  ]);
  clearTimeout(timer);
  if (answer === "hung") {
    // A blocking open is still waiting for a writer: let it go.
    const writer = await Deno.open(path, { write: true });
    writer.close();
  }
  assert.notEqual(answer, "hung", "the open blocked on the FIFO");
  assert.equal((answer as Response).status, 404);
  await (answer as Response).body?.cancel();
  assert.ok(Date.now() - started < 1000);
  await assert.rejects(
    openRegularFile(path),
    (error: unknown) =>
      error instanceof NotServableError && error.status === 404,
  );
});

Deno.test({
  name: "files swapped for FIFOs under load",
  ...await toolTestOptions("the FIFO swap test", ["mkfifo"]),
}, async (t) => {
  await using tree = await makeTree();
  const small = new Uint8Array(1000).fill(115);
  const big = new Uint8Array(300 * 1024).fill(98); // past the cache: opened per request
  const names = ["small.txt", "big.bin"];
  const contents = [small, big];
  for (let i = 0; i < 2; i++) {
    await Deno.writeFile(`${tree.root}/${names[i]}`, contents[i]);
  }
  const server = await startFilesProcess({
    readable: [tree.root],
    args: ["--root", tree.root, "--quiet"],
  });
  const writers: Deno.FsFile[] = [];
  try {
    let swapping = true;
    const swapper = (async () => {
      for (let round = 0; swapping; round++) {
        const i = round % 2;
        const target = `${tree.root}/${names[i]}`;
        await mkfifo(`${tree.root}/.fifo`);
        await Deno.rename(`${tree.root}/.fifo`, target);
        await new Promise((r) => setTimeout(r, 5));
        await Deno.writeFile(`${tree.root}/.file`, contents[i]);
        await Deno.rename(`${tree.root}/.file`, target);
      }
    })();
    const statuses = new Map<number | string, number>();
    const client = async () => {
      for (let n = 0; n < 40; n++) {
        let key: number | string;
        try {
          const res = await fetch(`${server.url}${names[n % 2]}`, {
            signal: AbortSignal.timeout(3000),
          });
          await res.body?.cancel();
          key = res.status;
        } catch (error) {
          key = (error as Error).name;
        }
        statuses.set(key, (statuses.get(key) ?? 0) + 1);
      }
    };
    await Promise.all(Array.from({ length: 10 }, client));
    swapping = false;
    await swapper;
    console.log("answers:", Object.fromEntries(statuses));
    await t.step("every request is answered, 200 or 404", () => {
      for (const key of statuses.keys()) {
        assert.ok(key === 200 || key === 404, `got ${key}: ${[...statuses]}`);
      }
    });
    // Leave a FIFO in place: neither a request nor the shutdown waits for it.
    await mkfifo(`${tree.root}/.fifo`);
    await Deno.rename(`${tree.root}/.fifo`, `${tree.root}/big.bin`);
    await t.step("a FIFO left in place is a generic 404 at once", async () => {
      const res = await fetch(`${server.url}big.bin`, {
        signal: AbortSignal.timeout(2000),
      });
      assert.equal(res.status, 404);
      assert.equal(await res.text(), "Not Found\n");
    });
    let timer: ReturnType<typeof setTimeout> | undefined;
    const stopped = await Promise.race([
      server.stop("SIGTERM"),
      new Promise<null>((r) => timer = setTimeout(() => r(null), 5000)),
    ]);
    clearTimeout(timer);
    if (stopped === null) {
      // Release an open stuck on a FIFO so the process can be reaped.
      for (const name of names) {
        try {
          writers.push(
            await Deno.open(`${tree.root}/${name}`, { write: true }),
          );
        } catch {
          // a regular file again
        }
      }
    }
    await t.step("with the FIFO there, SIGTERM ends it within 5 s", () => {
      assert.ok(stopped !== null, "SIGTERM did not end the server in 5 s");
      assert.equal(stopped.code, 0, stopped.stderr);
    });
  } finally {
    await server.stop("SIGKILL");
    for (const writer of writers) writer.close();
  }
});

Deno.test("a big file swapped between its open and its stream", async (t) => {
  await using tree = await makeTree();
  const path = `${tree.root}/big.bin`;
  const size = 600 * 1024; // past the cache and a read chunk: streamed natively
  const data = new Uint8Array(size).fill(97);
  const secret = `${tree.base}/secret.bin`; // outside the root
  await Deno.writeFile(secret, new Uint8Array(size).fill(83));
  const swaps: [string, () => Promise<void>][] = [
    ["a symlink out of the root", () => Deno.symlink(secret, path)],
    ["another file", () => Deno.copyFile(secret, path)],
  ];
  for (const [name, swap] of swaps) {
    await t.step(
      `for ${name}: the bytes come from the file opened first`,
      async () => {
        await Deno.writeFile(path, data);
        const file = await openRegularFile(path);
        await Deno.remove(path);
        await swap();
        assert.equal(await file.openNative(), false);
        const body = await new Response(file.stream(0, size)).arrayBuffer();
        assert.deepEqual(new Uint8Array(body), data);
        await Deno.remove(path);
      },
    );
  }
  await Deno.writeFile(path, data.map((_, i) => i & 0xff));
  for (const start of [0, 1000]) {
    await t.step(
      `unswapped, from byte ${start}: the native reader serves it`,
      async () => {
        const file = await openRegularFile(path);
        assert.equal(await file.openNative(), true);
        const body = await new Response(file.stream(start, size - start))
          .arrayBuffer();
        assert.deepEqual(
          new Uint8Array(body),
          data.map((_, i) => i & 0xff).subarray(start),
        );
      },
    );
  }
});

Deno.test({
  name: "openNativeReader with a FIFO swapped in",
  ...await toolTestOptions("the FIFO reopen test", ["mkfifo"]),
}, async (t) => {
  await using tree = await makeTree();
  const path = `${tree.root}/movie.bin`;
  const other = `${tree.root}/other.bin`;
  await Deno.writeFile(path, new Uint8Array(1000));
  await Deno.writeFile(other, new Uint8Array(1000));
  const infoOf = async (p: string) => {
    const file = await openRegularFile(p);
    file.close();
    return file.info;
  };
  const info = await infoOf(path);
  const otherInfo = await infoOf(other);
  await Deno.remove(path);
  await mkfifo(path);
  await t.step("it gives up after its timeout", async () => {
    const started = Date.now();
    assert.equal(await openNativeReader(path, info, 100), null);
    const ms = Date.now() - started;
    assert.ok(ms < 1000, `gave up after ${ms} ms`);
  });
  await t.step("while that open waits, no other open is tried", async () => {
    assert.equal(await openNativeReader(other, otherInfo), null);
  });
  await t.step("once the stuck open returns, opens work again", async () => {
    // A writer lets it return; it is closed.
    const writer = await Deno.open(path, { write: true });
    writer.close();
    let reopened: Deno.FsFile | null = null;
    for (let i = 0; i < 100 && reopened === null; i++) {
      await new Promise((r) => setTimeout(r, 10));
      reopened = await openNativeReader(other, otherInfo);
    }
    assert.ok(reopened !== null, "no open within 1 s");
    reopened.close();
  });
});
