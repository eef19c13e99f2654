// The fourth hostile-client round against server_files.ts and server_tiny.ts:
// real processes, raw sockets, small descriptor limits. One test per defect
// found, each failing on the code before its fix.
import assert from "node:assert/strict";
import { makeTree, startFilesProcess } from "./_files.ts";
import { canRunAsRoot } from "./_process.ts";

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

Deno.test("files: 503s for want of descriptors log one short line a second, no stack traces", async (t) => {
  if (!(await canRunAsRoot("the descriptor-shortage log test"))) {
    await t.step({ name: "503 log (needs prlimit)", ignore: true, fn() {} });
    return;
  }
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
    const refused =
      lines.filter((line) => line === "HTTP/1.1 503 Service Unavailable")
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
