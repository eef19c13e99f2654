// server_files.ts as a real process under a small descriptor limit: a flood of
// idle connections must not end it, and it must answer again once they close.
import assert from "node:assert/strict";
import { makeTree } from "./files_fixtures.ts";
import { canRunAsRoot, startFilesProcess } from "./files_process.ts";

const encoder = new TextEncoder();

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

Deno.test("300 idle connections under --nofile=256: the server survives and answers within 2 s after", async (t) => {
  if (!(await canRunAsRoot("the descriptor-flood test"))) {
    await t.step({ name: "fd flood (needs prlimit)", ignore: true, fn() {} });
    return;
  }
  await using tree = await makeTree();
  const server = await startFilesProcess({
    readable: [tree.root],
    args: ["--root", tree.root, "--quiet"],
    prefix: ["prlimit", "--nofile=256"],
  });
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
    // A connection opened before the flood is still served.
    assert.match(await answerOn(early), /^HTTP\/1\.1 200/);
    for (const conn of flood) conn.close();
    flood = [];
    const took = await timeToAnswer(`${server.url}a.txt`, 5000);
    console.log(`answered ${took} ms after the flood closed`);
    assert.ok(took !== null && took < 2000, `took ${took} ms`);
    // Alive, and it said what happened in one line, without a stack trace.
    assert.equal(server.child.pid, server.pid);
    const stderr = server.stderr();
    assert.match(stderr, /accepting connections failed .*Too many open files/);
    assert.equal(
      stderr.match(/accepting connections failed/g)?.length,
      1,
      stderr,
    );
    assert.ok(!stderr.includes("Uncaught"), stderr);
    // For a while after, answers ask keep-alive clients to hand back their descriptors.
    const after = await Deno.connect({
      hostname: "127.0.0.1",
      port: server.port,
    });
    try {
      assert.match(await answerOn(after), /^connection: close/im);
    } finally {
      after.close();
    }
    // A second flood is survived too.
    flood = await openIdle(server.port, 300);
    await new Promise((r) => setTimeout(r, 500));
    for (const conn of flood) conn.close();
    flood = [];
    assert.ok((await timeToAnswer(`${server.url}a.txt`, 5000)) !== null);
    early.close();
    let timer: ReturnType<typeof setTimeout> | undefined;
    const stopped = await Promise.race([
      server.stop("SIGTERM"),
      new Promise<null>((r) => timer = setTimeout(() => r(null), 10_000)),
    ]);
    clearTimeout(timer);
    assert.ok(stopped !== null, "SIGTERM ended the server");
    assert.equal(stopped.code, 0, stopped.stderr);
  } finally {
    for (const conn of flood) conn.close();
    try {
      early.close();
    } catch {
      // closed above
    }
    await server.stop("SIGKILL");
  }
});
