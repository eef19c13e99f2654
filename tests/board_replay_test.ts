// A browser that reconnects to /events after missing long messages (a laptop that slept, a
// train tunnel): what it missed is replayed before it can read any of it, so a replay larger
// than a stream may queue (MAX_STREAM_QUEUE_BYTES) must not count as a reader falling behind.
import assert from "node:assert/strict";
import { MAX_STREAM_QUEUE_BYTES, openBoard } from "../message_board.ts";
import { openTempBoard } from "./_board.ts";
import { frameReader } from "./_sse.ts";

/** A message of about 3 KB in UTF-8 (1,500 two-byte letters), the `n`th. */
const longText = (n: number) => `m${n} ${"é".repeat(1_500)}`;

async function withMessages(
  count: number,
  test: (board: Awaited<ReturnType<typeof openBoard>>) => Promise<void>,
) {
  await using board = await openTempBoard({ log: () => {} });
  for (let i = 1; i <= count; i++) {
    await board.store.appendMessage({ text: longText(i) });
  }
  await test(board);
}

const resume = (id: number) =>
  new Request("http://localhost/events", {
    headers: { "last-event-id": String(id) },
  });

Deno.test("replay: a browser that missed more than a stream may queue is told to reload", async () => {
  const count = Math.ceil(MAX_STREAM_QUEUE_BYTES / 3_000) + 5;
  await withMessages(count, async (board) => {
    const stream = frameReader(await board.handler(resume(0)));
    assert.deepEqual(await stream.next(), { retry: "2000" });
    // Not an error (a dropped stream), after which the browser would come back, and again.
    assert.deepEqual(await stream.next(), { event: "reload", data: "{}" });
    assert.equal(await stream.next(), null, "the stream ends");
  });
});

Deno.test("replay: a browser that missed a few long messages gets each of them", async () => {
  await withMessages(5, async (board) => {
    const stream = frameReader(await board.handler(resume(1)));
    try {
      for (let id = 2; id <= 5; id++) {
        const frame = await stream.nextEvent();
        assert.equal(frame?.id, String(id));
        assert.equal(JSON.parse(frame!.data!).text, longText(id));
      }
    } finally {
      await stream.cancel();
    }
  });
});
