// The board as a real process on SIGTERM: a client that holds a connection (a POST whose
// announced body never comes, an event stream left open) must not keep it running, and
// no acknowledged post may be lost on the way out, in file and in PostgreSQL mode.
import assert from "node:assert/strict";
import { join } from "node:path";
import { SHUTDOWN_GRACE_MS } from "../message_board.ts";
import { openPostgresStore } from "../board_postgres.ts";
import { postJson, startBoard, startPgBoard, tempFolder } from "./_board.ts";
import { freshDatabase, pgTestOptions } from "./_postgres.ts";
import type { RunningProcess } from "./_process.ts";

/** Generous bound on the exit after SIGTERM: the grace, the store's flush, a loaded machine. */
const EXIT_BOUND_MS = SHUTDOWN_GRACE_MS + 15_000;

/** The texts of the messages in a JSON Lines data file. */
async function textsInFile(file: string): Promise<string[]> {
  const lines = (await Deno.readTextFile(file)).split("\n").filter(Boolean);
  return lines.map((line) => JSON.parse(line).text).filter((text) =>
    typeof text === "string"
  );
}

/**
 * Posts three messages to `board`, leaves a POST whose announced body never comes and an
 * unread event stream open, sends SIGTERM, and checks the exit and, with `readTexts`, that
 * the three posts were kept.
 */
async function stopWithStalledPost(
  t: Deno.TestContext,
  board: RunningProcess,
  readTexts: () => Promise<string[]>,
): Promise<void> {
  const stalled = await Deno.connect({
    hostname: "127.0.0.1",
    port: board.port,
  });
  try {
    for (const text of ["one", "two", "three"]) {
      assert.equal((await postJson(board.url, { text })).status, 201);
    }
    await stalled.write(
      new TextEncoder().encode(
        "POST /api/messages HTTP/1.1\r\nHost: 127.0.0.1\r\n" +
          "Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n" +
          '{"text":"never',
      ),
    );
    // A live stream nobody reads any more.
    const events = await fetch(new URL("events", board.url));
    assert.equal(events.status, 200);
    // Let the board start reading the stalled body.
    await new Promise((resolve) => setTimeout(resolve, 300));
    const { code, signal, stdout, stderr } = await board.stop(
      "SIGTERM",
      EXIT_BOUND_MS,
    );
    await events.body?.cancel().catch(() => {});
    await t.step("it exits by itself with code 0", () => {
      assert.equal(signal, null, "it had to be killed");
      assert.equal(code, 0, stderr);
      assert.match(stdout, /stopped/);
    });
    await t.step("it says it stopped waiting for the stalled request", () => {
      assert.match(
        stderr,
        new RegExp(
          `still in flight ${SHUTDOWN_GRACE_MS} ms after the shutdown`,
        ),
      );
    });
    await t.step("the posts acknowledged before SIGTERM are kept", async () => {
      assert.deepEqual(await readTexts(), ["one", "two", "three"]);
    });
  } finally {
    stalled.close();
    await board.stop("SIGKILL");
  }
}

Deno.test("shutdown: SIGTERM while a POST's announced body never comes", async (t) => {
  await using folder = await tempFolder();
  const board = await startBoard(folder.path);
  await stopWithStalledPost(
    t,
    board,
    () => textsInFile(join(folder.path, "data", "messages.jsonl")),
  );
});

Deno.test({
  name:
    "shutdown: PostgreSQL mode, SIGTERM while a POST's announced body never comes",
  ...pgTestOptions(),
  async fn(t) {
    await using pg = await freshDatabase();
    const board = await startPgBoard(pg);
    await stopWithStalledPost(t, board, async () => {
      const store = await openPostgresStore(pg.url);
      try {
        const { messages } = await store.listMessages({ limit: 10 });
        return messages.map((message) => message.text).reverse();
      } finally {
        await store.close();
      }
    });
  },
});

Deno.test("shutdown: every post acknowledged while SIGTERM arrives is in the file", async () => {
  await using folder = await tempFolder();
  const board = await startBoard(folder.path);
  try {
    const acknowledged: string[] = [];
    const posts = Array.from({ length: 40 }, async (_, i) => {
      const text = `post ${i}`;
      try {
        if ((await postJson(board.url, { text })).status === 201) {
          acknowledged.push(text);
        }
      } catch {
        // refused or cut off by the shutdown: not acknowledged
      }
    });
    // SIGTERM once the first post is acknowledged, with the others on their way.
    const firstAcknowledged = Date.now();
    while (
      acknowledged.length === 0 && Date.now() - firstAcknowledged < 10_000
    ) {
      await new Promise((resolve) => setTimeout(resolve, 1));
    }
    const { code, signal, stderr } = await board.stop("SIGTERM", EXIT_BOUND_MS);
    await Promise.all(posts);
    assert.equal(signal, null, "it had to be killed");
    assert.equal(code, 0, stderr);
    assert.ok(acknowledged.length > 0);
    const kept = new Set(
      await textsInFile(join(folder.path, "data", "messages.jsonl")),
    );
    const lost = acknowledged.filter((text) => !kept.has(text));
    assert.deepEqual(lost, [], `${acknowledged.length} acknowledged`);
  } finally {
    await board.stop("SIGKILL");
  }
});
