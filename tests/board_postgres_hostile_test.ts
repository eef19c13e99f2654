// The PostgreSQL store against clients that wait: reads that clients start (older pages, a
// reconnecting browser's replay) leave connections for posts however many are stuck, and a
// post that gave up waiting never makes another post's answer wrong. Another session's lock
// stands in for a database that stalls.
import assert from "node:assert/strict";
import postgres from "npm:postgres@3.4.7";
import { freshDatabase, pgTestOptions } from "./_postgres.ts";
import { openPostgresStore } from "../board_postgres.ts";
import { createBoardHandler, StoreUnavailableError } from "../message_board.ts";

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Another session (a migration, a backup tool, a person in psql) takes `lock` and holds it
 * until `release()`; disposing releases it and ends that session.
 */
async function holdLock(url: string, lock: string) {
  const side = postgres(url, { max: 1, onnotice: () => {} });
  const released = Promise.withResolvers<void>();
  const locked = Promise.withResolvers<void>();
  const holding = side.begin(async (tx) => {
    await tx.unsafe(lock);
    locked.resolve();
    await released.promise;
  });
  await Promise.race([locked.promise, holding]);
  const release = async () => {
    released.resolve();
    await holding;
  };
  return {
    release,
    async [Symbol.asyncDispose]() {
      released.resolve();
      await holding.catch(() => {});
      await side.end();
    },
  };
}

Deno.test({
  name:
    "postgres store: 30 replay reads stuck on a lock leave a connection for posts",
  ...pgTestOptions(),
  async fn(t) {
    await using pg = await freshDatabase();
    const store = await openPostgresStore(pg.url, { log: () => {} });
    try {
      await store.appendMessage({ text: "first" });
      // Another session holds board_clears, which every replay reads and no post touches.
      await using lock = await holdLock(
        pg.url,
        "lock table board_clears in access exclusive mode",
      );
      // A reconnect storm: more stuck reads than the pool has connections.
      const reads = Array.from(
        { length: 30 },
        () => store.eventsAfter(0, 201).then(() => "read", (error) => error),
      );
      await new Promise((resolve) => setTimeout(resolve, 200));
      await t.step("a post is still written", async () => {
        const message = await store.appendMessage({ text: "during the storm" });
        assert.equal(message.text, "during the storm");
      });
      await lock.release();
      await t.step("each stuck read ends, with 503 or its events", async () => {
        for (const outcome of await Promise.all(reads)) {
          assert.ok(
            outcome === "read" || outcome instanceof StoreUnavailableError,
            String(outcome),
          );
        }
      });
    } finally {
      await store.close();
    }
  },
});

Deno.test({
  name:
    "postgres store: a post whose batch neighbour gave up waiting gets its own message",
  ...pgTestOptions(),
  async fn() {
    await using pg = await freshDatabase();
    const store = await openPostgresStore(pg.url, { log: () => {} });
    try {
      // Inserts wait for this lock, as they would behind a vacuum or a slow disk.
      await using lock = await holdLock(
        pg.url,
        "lock table board_messages in share mode",
      );
      // A 503 that may still be saved says so (its poster must look before sending it again).
      const outcome = (text: string) =>
        store.appendMessage({ text }).then(
          (message) => message.text,
          (error) =>
            `${error.name}${error.mayStillComplete ? ", may be saved" : ""}`,
        );
      // Its batch waits for the lock until statement_timeout (3 s) ends it.
      const first = outcome("first");
      await sleep(300);
      // Both wait behind it, so they share the next batch, which waits for the lock too;
      // "early" gives up 4 s after it came (503), while that batch is being written.
      const early = outcome("early");
      await sleep(1_200);
      const late = outcome("late");
      await sleep(3_500);
      await lock.release();
      // "early" was sent with "late" and committed with it, after its 503: told so.
      assert.equal(await early, "StoreUnavailableError, may be saved");
      assert.equal(await late, "late");
      // The database cancelled "first" (statement_timeout): never saved, and told so.
      assert.equal(await first, "StoreUnavailableError");
      const { messages } = await store.listMessages({ limit: 10 });
      assert.deepEqual(messages.map((m) => m.text).sort(), ["early", "late"]);
    } finally {
      await store.close();
    }
  },
});

Deno.test({
  name:
    "postgres store: regression: a read that times out leaves the board writable",
  ...pgTestOptions(),
  async fn() {
    await using pg = await freshDatabase();
    const store = await openPostgresStore(pg.url, { log: () => {} });
    try {
      await store.appendMessage({ text: "first" });
      // Every replay reads board_clears; no post touches it.
      await using lock = await holdLock(
        pg.url,
        "lock table board_clears in access exclusive mode",
      );
      const read = await store.eventsAfter(0, 10).then(
        () => "read",
        (error) => error,
      );
      assert.ok(read instanceof StoreUnavailableError, String(read));
      // It turned read-only here: the page said posts were refused and /healthz sent posters
      // away, though nothing had been written, nor failed to be.
      assert.equal(store.writable, true);
      const health = await createBoardHandler(store)(
        new Request("http://127.0.0.1/healthz"),
      );
      assert.deepEqual(await health.json(), { status: "ok" });
      await lock.release();
      const message = await store.appendMessage({ text: "after" });
      assert.equal(message.text, "after");
    } finally {
      await store.close();
    }
  },
});

Deno.test({
  name:
    "postgres store: regression: a database that turned read-only (a failover) gives 503, not 500",
  ...pgTestOptions(),
  async fn() {
    await using pg = await freshDatabase();
    const store = await openPostgresStore(pg.url, { log: () => {} });
    const side = postgres(pg.url, { max: 1, onnotice: () => {} });
    const name = new URL(pg.url).pathname.slice(1);
    try {
      await store.appendMessage({ text: "first" });
      // As a standby promoted the wrong way round, or an operator freezing the database:
      // new sessions may read and not write. The board's sessions reconnect into that.
      await side.unsafe(
        `alter database "${name}" set default_transaction_read_only = on`,
      );
      await side`
        select pg_terminate_backend(pid) from pg_stat_activity
        where datname = ${name} and pid <> pg_backend_pid()`;
      await sleep(300); // the driver notices its sessions went
      const refused = await store.appendMessage({ text: "refused" }).then(
        () => "written",
        (error) => error,
      );
      assert.ok(refused instanceof StoreUnavailableError, String(refused));
      assert.ok((refused.retryAfterSeconds ?? 0) > 0);
      assert.equal(store.writable, false);
      const { messages } = await store.listMessages({ limit: 10 });
      assert.deepEqual(messages.map((m) => m.text), ["first"]);
      await side.unsafe(
        `alter database "${name}" set default_transaction_read_only = off`,
      );
      await side`
        select pg_terminate_backend(pid) from pg_stat_activity
        where datname = ${name} and pid <> pg_backend_pid()`;
      await sleep(300); // the driver notices its sessions went
      const message = await store.appendMessage({ text: "after" });
      assert.equal(message.text, "after");
    } finally {
      await side.end();
      await store.close();
    }
  },
});

Deno.test({
  name:
    "postgres store: regression: reads of one older page share its messages (an answer left unread holds one copy)",
  ...pgTestOptions(),
  async fn() {
    // Each read made new strings, and an HTTP/2 client that gives its streams no window
    // leaves each answer held: 600 streams asking for one older page of 100 long messages
    // held 1,088 MB, now 364 MB.
    await using pg = await freshDatabase();
    const store = await openPostgresStore(pg.url, { log: () => {} });
    try {
      for (let i = 0; i < 3; i++) {
        await store.appendMessage({ text: `long ${i} ${"😀".repeat(100)}` });
      }
      const first = await store.listMessages({ before: 4, limit: 10 });
      const second = await store.listMessages({ before: 4, limit: 10 });
      assert.equal(first.messages.length, 3);
      assert.deepEqual(second, first);
      first.messages.forEach((message, i) =>
        assert.ok(message === second.messages[i], `message ${message.id}`)
      );
      const [replayed] = await store.eventsAfter(2, 1);
      assert.ok(
        replayed?.type === "message" && replayed.message === first.messages[0],
      );
    } finally {
      await store.close();
    }
  },
});

Deno.test({
  name:
    "postgres store: regression: a lock not granted in the database's lock_timeout gives 503, not 500",
  ...pgTestOptions(),
  async fn() {
    await using pg = await freshDatabase();
    const name = new URL(pg.url).pathname.slice(1);
    const side = postgres(pg.url, { max: 1, onnotice: () => {} });
    // An operator's setting for every session: waits for a lock end after 100 ms (55P03),
    // as a deadlock (40P01) or a serialization failure (40001) ends a transaction. All of
    // them pass: the same request a moment later goes through. They were 500s.
    await side.unsafe(`alter database "${name}" set lock_timeout = '100ms'`);
    const store = await openPostgresStore(pg.url, { log: () => {} });
    try {
      await store.appendMessage({ text: "first" });
      await using lock = await holdLock(
        pg.url,
        "lock table board_messages in share mode",
      );
      for (
        const [what, write] of [
          ["a clear", () => store.clearMessages()],
          ["a delete", () => store.deleteMessage(1)],
          ["a post", () => store.appendMessage({ text: "waits" })],
        ] as const
      ) {
        const outcome = await write().then(() => "done", (error) => error);
        assert.ok(
          outcome instanceof StoreUnavailableError,
          `${what}: ${outcome}`,
        );
        assert.ok((outcome.retryAfterSeconds ?? 0) > 0);
        assert.equal(outcome.mayStillComplete, false);
      }
      await lock.release();
      const { messages } = await store.listMessages({ limit: 10 });
      assert.deepEqual(messages.map((m) => m.text), ["first"]);
      assert.equal(
        (await store.appendMessage({ text: "after" })).text,
        "after",
      );
    } finally {
      await side.end();
      await store.close();
    }
  },
});
