// The board as a real process with a small descriptor limit (prlimit --nofile=256): 300 idle
// connections (or half-sent heads, a slowloris flood) use up every descriptor, the listener
// fails, and the board must neither exit nor stop serving: it closes the idle connections to
// get their descriptors back, listens again, and answers new clients during the flood and
// after it. Needs prlimit (util-linux): skipped loudly without it, and failing under CI=true.
import assert from "node:assert/strict";
import net from "node:net";
import { startBoard, tempFolder } from "./_board.ts";
import { toolTestOptions } from "./_process.ts";
import { readUntilClosed } from "./_raw.ts";

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

/** Sends a GET from `from` on a new connection; the status line, or null (refused, or 1 s). */
function askFrom(port: number, from: string): Promise<string | null> {
  return new Promise((resolve) => {
    const socket = net.connect({ host: "127.0.0.1", port, localAddress: from });
    const timer = setTimeout(() => socket.destroy(), 1_000);
    let text = "";
    socket.setEncoding("utf8");
    socket.on("connect", () => {
      socket.write(
        "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
      );
    });
    socket.on("data", (chunk: string) => {
      text += chunk;
      if (text.includes("\r\n")) socket.destroy();
    });
    socket.on("error", () => {});
    socket.on("close", () => {
      clearTimeout(timer);
      resolve(text.includes("\r\n") ? text.split("\r\n")[0] : null);
    });
  });
}

/** Asks from `from` until the board answers 200; the milliseconds it took, or null. */
async function timeToAnswer(
  port: number,
  from: string,
  withinMs: number,
): Promise<number | null> {
  const started = Date.now();
  while (Date.now() - started < withinMs) {
    if (await askFrom(port, from) === "HTTP/1.1 200 OK") {
      return Date.now() - started;
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return null;
}

/** A connection that sent the start of a head and never the blank line that ends it. */
interface HalfSentHead {
  socket: net.Socket;
  /** Resolves true when the board ended it cleanly (false when never connected, or reset). */
  closedByBoard: Promise<boolean>;
}

/** Opens one half-sent head from `from`. */
function openHalfSentHead(port: number, from: string): HalfSentHead {
  const socket = net.connect({ host: "127.0.0.1", port, localAddress: from });
  let connected = false;
  const closedByBoard = new Promise<boolean>((resolve) => {
    socket.on("connect", () => {
      connected = true;
      socket.write("GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n");
    });
    socket.on("error", () => {});
    socket.on("end", () => resolve(connected));
    socket.on("close", () => resolve(false)); // by us, or reset
  });
  return { socket, closedByBoard };
}

/** The board in `folder` under `prlimit --nofile=256`, and its port. */
async function startUnder256(folder: string) {
  const board = await startBoard(folder, [], {
    wrapper: ["prlimit", "--nofile=256"],
  });
  return { board, port: Number(new URL(board.url).port) };
}

Deno.test({
  name: "accept: 300 idle connections at --nofile=256, twice",
  ...PRLIMIT,
  async fn(t) {
    await using folder = await tempFolder();
    const { board, port } = await startUnder256(folder.path);
    let exited = false;
    board.output.then(() => exited = true);
    try {
      await t.step(
        "before a failure, answers keep the connection",
        async () => {
          const response = await fetch(board.url);
          await response.body?.cancel();
          assert.notEqual(response.headers.get("connection"), "close");
        },
      );
      for (let round = 1; round <= 2; round++) {
        const idle = await openIdle(port, 300);
        // Give the accept loop time to fail on the descriptors that are left.
        await new Promise((resolve) => setTimeout(resolve, 500));
        assert.ok(idle.length < 300, "the limit was reached");
        await t.step(`round ${round}: the board keeps running`, () => {
          assert.equal(exited, false);
        });
        await t.step(
          `round ${round}: an idle connection is closed, with no stray bytes`,
          async () => {
            assert.equal(await readUntilClosed(idle[0]), "");
          },
        );
        for (const conn of idle) {
          try {
            conn.close();
          } catch {
            // closed by readUntilClosed's timer
          }
        }
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
        await t.step(
          `round ${round}: for a while after, answers say Connection: close`,
          async () => {
            const response = await fetch(board.url);
            await response.body?.cancel();
            assert.equal(response.headers.get("connection"), "close");
          },
        );
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
        /cannot accept connections \(.*\); closing idle connections/,
      );
      assert.doesNotMatch(stderr, /Uncaught|^\s+at /m);
    });
  },
});

Deno.test({
  name: "accept: a flood of half-sent heads at --nofile=256",
  ...PRLIMIT,
  async fn(t) {
    await using folder = await tempFolder();
    const { board, port } = await startUnder256(folder.path);
    const flood: HalfSentHead[] = [];
    try {
      // 300 from five other clients, 127.0.0.2 to 127.0.0.6.
      for (let i = 0; i < 300; i++) {
        flood.push(openHalfSentHead(port, `127.0.0.${2 + i % 5}`));
      }
      await new Promise((resolve) => setTimeout(resolve, 500));
      await t.step(
        "a new client (127.0.0.9) is answered while the flood is open",
        async () => {
          const took = await timeToAnswer(port, "127.0.0.9", 5_000);
          console.log(`  answered ${took} ms into the flood`);
          assert.ok(took !== null, "no answer while the flood was open");
        },
      );
      await t.step(
        "the board closed flood connections to get descriptors back",
        async () => {
          let timer: ReturnType<typeof setTimeout> | undefined;
          const closed = await Promise.race([
            Promise.all(flood.map((head) => head.closedByBoard)),
            new Promise<boolean[]>((resolve) => {
              timer = setTimeout(() => resolve([]), 3_000);
            }),
          ]);
          clearTimeout(timer);
          const count = closed.filter(Boolean).length;
          console.log(
            `  ${count} of ${flood.length} flood connections closed by the board`,
          );
          assert.ok(count >= 100, `${count} of ${flood.length}`);
        },
      );
      for (const head of flood) head.socket.destroy();
      await t.step("it answers normally after the flood", async () => {
        assert.ok(await timeToAnswer(port, "127.0.0.1", 5_000) !== null);
      });
    } finally {
      for (const head of flood) head.socket.destroy();
      board.kill("SIGTERM");
    }
    const { code, stderr } = await board.output;
    await t.step("SIGTERM then stops it with exit code 0", () => {
      assert.equal(code, 0, stderr);
    });
  },
});
