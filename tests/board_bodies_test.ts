// Request bodies that arrive slowly, or never end, against the board's memory and its other
// clients: one client gets at most MAX_BODIES_PER_CLIENT in flight (429 past it, before
// reading), and all bodies together hold at most MAX_BODY_BYTES_HELD (503 past it), so a
// flood of stalled 60 KB posts cannot grow the process without bound.
import assert from "node:assert/strict";
import {
  type Board,
  MAX_BODIES_PER_CLIENT,
  MAX_BODY_BYTES_HELD,
} from "../message_board.ts";
import { openTempBoard } from "./_board.ts";

/** How long each stalled body is given before its 408 (keeps the test short). */
const BODY_TIMEOUT_MS = 1_500;

function clientInfo(address: string): Deno.ServeHandlerInfo {
  return {
    remoteAddr: { transport: "tcp", hostname: address, port: 40000 },
    completed: Promise.resolve(),
  };
}

/** A form post from `address` whose body sends `bytes` bytes and then never ends. */
function stalledPost(board: Board, address: string, bytes: number) {
  const body = new ReadableStream<Uint8Array>({
    start(controller) {
      controller.enqueue(
        new TextEncoder().encode("message=".padEnd(bytes, "a")),
      );
    },
  });
  return board.handler(
    new Request("http://127.0.0.1/", {
      method: "POST",
      headers: { "content-type": "application/x-www-form-urlencoded" },
      body,
    }),
    clientInfo(address),
  );
}

/** A whole form post from `address`. */
function post(board: Board, address: string, text: string) {
  return board.handler(
    new Request("http://127.0.0.1/", {
      method: "POST",
      headers: { "content-type": "application/x-www-form-urlencoded" },
      body: `message=${encodeURIComponent(text)}`,
    }),
    clientInfo(address),
  );
}

/** The status of `response` if it comes within `ms`, else "pending". */
async function statusWithin(
  response: Promise<Response>,
  ms: number,
): Promise<number | "pending"> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const outcome = await Promise.race([
    response,
    new Promise<"pending">((resolve) => {
      timer = setTimeout(() => resolve("pending"), ms);
    }),
  ]);
  clearTimeout(timer);
  if (outcome === "pending") return outcome;
  await outcome.body?.cancel();
  return outcome.status;
}

async function withBoard(fn: (board: Board) => Promise<void>): Promise<void> {
  await using board = await openTempBoard({
    log: () => {},
    bodyTimeoutMs: BODY_TIMEOUT_MS,
  });
  await fn(board);
}

Deno.test("bodies: one client's stalled posts past MAX_BODIES_PER_CLIENT get 429 at once", async (t) => {
  await withBoard(async (board) => {
    const stalled = Array.from(
      { length: MAX_BODIES_PER_CLIENT },
      () => stalledPost(board, "192.0.2.1", 100),
    );
    await t.step("the next one from that address gets 429", async () => {
      const response = await board.handler(
        new Request("http://127.0.0.1/", {
          method: "POST",
          headers: { "content-type": "application/x-www-form-urlencoded" },
          body: "message=one%20more",
        }),
        clientInfo("192.0.2.1"),
      );
      assert.equal(response.status, 429);
      assert.ok(Number(response.headers.get("retry-after")) >= 1);
      await response.body?.cancel();
    });
    await t.step("another client still posts", async () => {
      assert.equal(
        await statusWithin(post(board, "192.0.2.2", "hi"), 1_000),
        303,
      );
    });
    await t.step("the stalled ones end with 408", async () => {
      for (const response of await Promise.all(stalled)) {
        assert.equal(response.status, 408);
        await response.body?.cancel();
      }
    });
    await t.step("then that client may post again", async () => {
      assert.equal(
        await statusWithin(post(board, "192.0.2.1", "back"), 1_000),
        303,
      );
    });
  });
});

Deno.test("bodies: stalled posts from many clients hold at most MAX_BODY_BYTES_HELD", async (t) => {
  await withBoard(async (board) => {
    const size = 60_000;
    const count = Math.ceil(MAX_BODY_BYTES_HELD / size) + 20;
    // Each from its own address, so the per-client limit never applies.
    const stalled = Array.from(
      { length: count },
      (_, i) => stalledPost(board, `10.0.${i >> 8}.${i & 255}`, size),
    );
    const statuses = await Promise.all(
      stalled.map((response) => statusWithin(response, 500)),
    );
    await t.step("those past the budget get 503 at once", () => {
      const refused = statuses.filter((status) => status === 503).length;
      const held = statuses.filter((status) => status === "pending").length;
      assert.ok(held * size <= MAX_BODY_BYTES_HELD, `${held} held`);
      assert.ok(refused >= 20, `${refused} refused`);
    });
    await t.step("every stalled one ends", async () => {
      for (const response of await Promise.all(stalled)) {
        assert.ok(
          [408, 503].includes(response.status),
          String(response.status),
        );
        await response.body?.cancel();
      }
    });
    await t.step("once they have ended, posts are taken again", async () => {
      assert.equal(
        await statusWithin(post(board, "192.0.2.9", "after"), 1_000),
        303,
      );
    });
  });
});
