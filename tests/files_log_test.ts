// server_files.ts's access log as a real process: lines are written in
// batches (one write per turn of the event loop), so these check that a lone
// request's line still comes, that a burst's lines all come whole and in
// order, and that a SIGTERM drain loses none.
import assert from "node:assert/strict";
import { FILES_SCRIPT, makeTree, startFilesProcess } from "./_files.ts";
import { sendRaw } from "./_raw.ts";

const STAMP = String.raw`\[\d\d/[A-Z][a-z]{2}/\d{4}:\d\d:\d\d:\d\d \+0000\]`;

/** A log line for GET /a.txt?c=C&n=N&pad=..., captured: the whole line must match. */
const TAGGED_LINE = new RegExp(
  String
    .raw`^127\.0\.0\.1 - - ${STAMP} "GET /a\.txt\?c=(\d+)&n=(\d+)&pad=x+ HTTP/1\.1" 200 7$`,
);

/** Enough padding that a burst's lines pass the log's batch size several times. */
const PAD = "x".repeat(1000);

/** `count` pipelined GETs of a.txt tagged with connection `c`; the last closes. */
function pipelined(c: number, count: number, close = true): string {
  let text = "";
  for (let n = 0; n < count; n++) {
    const last = close && n === count - 1;
    text +=
      `GET /a.txt?c=${c}&n=${n}&pad=${PAD} HTTP/1.1\r\nHost: 127.0.0.1\r\n` +
      (last ? "Connection: close\r\n" : "") + "\r\n";
  }
  return text;
}

/** The tagged log lines, as [connection, request number], each checked whole. */
function taggedLines(stdout: string[]): [number, number][] {
  return stdout.filter((line) => line.includes("GET /a.txt?c=")).map(
    (line) => {
      const match = line.match(TAGGED_LINE);
      assert.ok(match, `a whole log line: ${line.slice(0, 120)}...`);
      return [Number(match[1]), Number(match[2])];
    },
  );
}

Deno.test("a lone request's access-log line is written without more traffic", async () => {
  await using tree = await makeTree();
  await using server = await startFilesProcess({
    readable: [tree.root],
    args: ["--root", tree.root],
  });
  const response = await fetch(`${server.url}a.txt?lone=1`);
  assert.equal(await response.text(), "hello a");
  // Nothing else is sent: the line must not wait for a batch to fill.
  const line = await server.waitForLine(/"GET \/a\.txt\?lone=1 /, 10_000);
  assert.match(line, /"GET \/a\.txt\?lone=1 HTTP\/1\.1" 200 7$/);
});

Deno.test("a burst's access-log lines all come, whole and in order", async () => {
  await using tree = await makeTree();
  await using server = await startFilesProcess({
    readable: [tree.root],
    args: ["--root", tree.root],
  });
  const connections = 8, perConnection = 60;
  const replies = await Promise.all(
    Array.from(
      { length: connections },
      (_, c) => sendRaw(server.port, pipelined(c, perConnection), 20_000),
    ),
  );
  for (const reply of replies) {
    assert.equal(reply.text.match(/HTTP\/1\.1 200 /g)?.length, perConnection);
  }
  for (let c = 0; c < connections; c++) {
    await server.waitForLine(
      new RegExp(`c=${c}&n=${perConnection - 1}&`),
      10_000,
    );
  }
  const lines = taggedLines(server.stdout);
  assert.equal(lines.length, connections * perConnection);
  for (let c = 0; c < connections; c++) {
    const order = lines.filter(([k]) => k === c).map(([, n]) => n);
    assert.deepEqual(order, Array.from({ length: perConnection }, (_, n) => n));
  }
});

Deno.test("every request answered before a SIGTERM drain ends has its log line, before Server stopped.", async () => {
  await using tree = await makeTree();
  const server = await startFilesProcess({
    readable: [tree.root],
    args: ["--root", tree.root],
  });
  try {
    // Keep-alive connections with requests still queued when SIGTERM comes.
    const connections = 8, perConnection = 40;
    const conns = await Promise.all(
      Array.from(
        { length: connections },
        () => Deno.connect({ hostname: "127.0.0.1", port: server.port }),
      ),
    );
    const encoder = new TextEncoder();
    await Promise.all(
      conns.map((conn, c) =>
        conn.write(encoder.encode(pipelined(c, perConnection, false)))
      ),
    );
    const received = conns.map(async (conn) => {
      let text = "";
      const buffer = new Uint8Array(65536);
      try {
        while (true) {
          const n = await conn.read(buffer);
          if (n === null) break;
          text += new TextDecoder().decode(buffer.subarray(0, n));
        }
      } catch {
        // reset by the server as it stops
      } finally {
        try {
          conn.close();
        } catch {
          // closed already
        }
      }
      return text.match(/HTTP\/1\.1 200 /g)?.length ?? 0;
    });
    await server.waitForLine(/GET \/a\.txt\?c=/, 10_000);
    const { code, stderr } = await server.stop("SIGTERM", 10_000);
    assert.equal(code, 0, stderr);
    const answered = await Promise.all(received);
    const stopped = server.stdout.indexOf("Server stopped.");
    assert.equal(stopped, server.stdout.length - 1, "the last line");
    const lines = taggedLines(server.stdout.slice(0, stopped));
    assert.equal(
      taggedLines(server.stdout).length,
      lines.length,
      "no log line after Server stopped.",
    );
    for (let c = 0; c < connections; c++) {
      const logged = lines.filter(([k]) => k === c).map(([, n]) => n);
      assert.ok(
        logged.length >= answered[c],
        `connection ${c}: ${answered[c]} answered, ${logged.length} logged`,
      );
      assert.deepEqual(logged, Array.from(logged, (_, n) => n));
    }
  } finally {
    await server.stop("SIGKILL");
  }
});

Deno.test("with stdout gone (piped into a program that quit), requests are still answered", async () => {
  await using tree = await makeTree();
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--allow-net=127.0.0.1",
      `--allow-read=${tree.root}`,
      FILES_SCRIPT,
      ...["--root", tree.root, "--port", "0"],
    ],
    env: { NO_COLOR: "1", DENO_NO_UPDATE_CHECK: "1" },
    stdin: "null",
    stdout: "piped",
    stderr: "null",
  }).spawn();
  try {
    // Read up to the "Serving" line, then close our end, as `| head -1` would.
    const reader = child.stdout.pipeThrough(new TextDecoderStream())
      .getReader();
    let text = "";
    while (!/Serving .* on http:\/\/[^/]+\/\n/.test(text)) {
      const { value, done } = await reader.read();
      assert.ok(!done, `it exited first: ${text}`);
      text += value;
    }
    const url = text.match(/http:\/\/[^/\s]+\//)![0];
    await reader.cancel();
    for (let i = 0; i < 3; i++) {
      const response = await fetch(`${url}a.txt?i=${i}`);
      assert.equal(response.status, 200);
      assert.equal(await response.text(), "hello a");
      // Let the batch be written (and fail) before the next request.
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  } finally {
    child.kill("SIGKILL");
    await child.status;
  }
});
