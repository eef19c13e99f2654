// Reads that clients start (older pages, a reconnecting browser's replay) against the
// PostgreSQL store's connection pool: however many there are and however long they wait,
// posts still get a connection, and the reads themselves end with 503, never hang.
import assert from "node:assert/strict";
import postgres from "npm:postgres@3.4.7";
import { freshDatabase, pgTestOptions } from "./_postgres.ts";
import { openPostgresStore } from "../board_postgres.ts";
import { StoreUnavailableError } from "../message_board.ts";

Deno.test({
  name:
    "postgres store: 30 replay reads stuck on a lock leave a connection for posts",
  ...pgTestOptions(),
  async fn(t) {
    await using pg = await freshDatabase();
    const store = await openPostgresStore(pg.url, { log: () => {} });
    const side = postgres(pg.url, { max: 1, onnotice: () => {} });
    const release = Promise.withResolvers<void>();
    try {
      await store.appendMessage({ text: "first" });
      // Another session (a migration, a backup tool, a person in psql) holds board_clears,
      // which every replay reads and no post touches.
      const locked = Promise.withResolvers<void>();
      const holding = side.begin(async (tx) => {
        await tx`lock table board_clears in access exclusive mode`;
        locked.resolve();
        await release.promise;
      });
      await locked.promise;
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
      release.resolve();
      await holding;
      await t.step("each stuck read ends, with 503 or its events", async () => {
        for (const outcome of await Promise.all(reads)) {
          assert.ok(
            outcome === "read" || outcome instanceof StoreUnavailableError,
            String(outcome),
          );
        }
      });
    } finally {
      release.resolve();
      await side.end();
      await store.close();
    }
  },
});
