// The board as a real process with a small descriptor limit (prlimit --nofile=256): 300 idle
// connections use up every descriptor, the listener fails, and the board must neither exit
// nor stop serving: it keeps the open connections, listens again, and answers a normal
// request soon after the idle ones close. Needs prlimit (util-linux): skipped loudly
// without it, and failing under CI=true.
import assert from "node:assert/strict";
import { startBoard, tempFolder } from "./_board.ts";
import { toolTestOptions } from "./_process.ts";

const PRLIMIT = await toolTestOptions("the descriptor-limit test", ["prlimit"]);

/** Opens up to `count` idle TCP connections; stops at the first refused one. */
async function openIdle(port: number, count: number): Promise<Deno.Conn[]> {
  const conns: Deno.Conn[] = [];
  for (let i = 0; i < count; i++) {
    try {
      conns.push(await Deno.connect({ hostname: "127.0.0.1", port }));
    } catch {
      break; // refused: the listener is down
    }
  }
  return conns;
}

/** Sends a GET on an open connection and returns the status line (or "no answer"). */
async function askOn(conn: Deno.Conn): Promise<string> {
  await conn.write(
    new TextEncoder().encode("GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"),
  );
  const buffer = new Uint8Array(256);
  let timer: ReturnType<typeof setTimeout> | undefined;
  const n = await Promise.race([
    conn.read(buffer),
    new Promise<null>((resolve) =>
      timer = setTimeout(() => resolve(null), 3_000)
    ),
  ]);
  clearTimeout(timer);
  if (n === null) return "no answer";
  return new TextDecoder().decode(buffer.subarray(0, n)).split("\r\n")[0];
}

Deno.test({
  name: "accept: 300 idle connections at --nofile=256, twice",
  ...PRLIMIT,
  async fn(t) {
    await using folder = await tempFolder();
    const board = await startBoard(folder.path, [], {
      wrapper: ["prlimit", "--nofile=256"],
    });
    const port = Number(new URL(board.url).port);
    let exited = false;
    board.output.then(() => exited = true);
    try {
      for (let round = 1; round <= 2; round++) {
        const idle = await openIdle(port, 300);
        // Give the accept loop time to fail on the descriptors that are left.
        await new Promise((resolve) => setTimeout(resolve, 500));
        assert.ok(idle.length < 300, "the limit was reached");
        await t.step(`round ${round}: the board keeps running`, () => {
          assert.equal(exited, false);
        });
        await t.step(
          `round ${round}: an open connection is served`,
          async () => {
            assert.equal(await askOn(idle[0]), "HTTP/1.1 200 OK");
          },
        );
        for (const conn of idle) conn.close();
        const closedAt = Date.now();
        let status = 0;
        while (status !== 200 && Date.now() - closedAt < 5_000) {
          status = await fetch(board.url, {
            signal: AbortSignal.timeout(1_000),
          })
            .then(async (
              response,
            ) => (await response.body?.cancel(), response.status))
            .catch(() => 0);
          if (status !== 200) {
            await new Promise((resolve) => setTimeout(resolve, 50));
          }
        }
        const recovery = Date.now() - closedAt;
        console.log(
          `  round ${round}: ${idle.length} idle connections held before refusal; ` +
            `answered again ${recovery} ms after they closed`,
        );
        await t.step(
          `round ${round}: it answers again within 2 s of their closing`,
          () => {
            assert.equal(status, 200, "a normal request is answered again");
            assert.ok(recovery < 2_000, `recovered in ${recovery} ms`);
          },
        );
      }
    } finally {
      board.kill("SIGTERM");
    }
    const { code, stderr } = await board.output;
    await t.step("SIGTERM then stops it with exit code 0", () => {
      assert.equal(code, 0, stderr);
    });
    await t.step("it logs why it cannot accept, without a stack trace", () => {
      assert.match(
        stderr,
        /cannot accept connections \(.*\); serving the open ones/,
      );
      assert.doesNotMatch(stderr, /Uncaught|^\s+at /m);
    });
  },
});
