// The PostgreSQL test harness and the pinned driver (npm:postgres@3.4.7) under this Deno:
// queries, LISTEN/NOTIFY between two connections, an outage and a restart. If these fail,
// the board's Postgres tests cannot tell a board bug from a setup problem. Both tests use
// the shared server of freshDatabase(), as the board's tests do (one initdb for the file).
import assert from "node:assert/strict";
import { freshDatabase, pgTestOptions } from "./_postgres.ts";

const { default: postgres } = await import("npm:postgres@3.4.7");

Deno.test({
  name: "pg harness: a fresh database answers queries and relays LISTEN/NOTIFY",
  ...pgTestOptions(),
  async fn() {
    await using pg = await freshDatabase();
    const name = pg.url.match(
      /^postgres:\/\/board@127\.0\.0\.1:\d+\/(test_\d+)$/,
    )
      ?.[1];
    assert.ok(name, pg.url);
    const listener = postgres(pg.url, { max: 1 });
    const notifier = postgres(pg.url, { max: 1 });
    try {
      const [row] =
        await notifier`select current_database() as db, 1 + 1 as two`;
      assert.deepEqual({ ...row }, { db: name, two: 2 });

      const received: string[] = [];
      const both = Promise.withResolvers<void>();
      const subscription = await listener.listen("probe", (payload) => {
        received.push(payload);
        if (received.length === 2) both.resolve();
      });
      await notifier`select pg_notify('probe', 'first')`;
      await notifier.notify("probe", "second");
      await both.promise;
      assert.deepEqual(received, ["first", "second"]);
      await subscription.unlisten();
    } finally {
      await listener.end();
      await notifier.end();
    }
  },
});

Deno.test({
  name:
    "pg harness: a stopped server refuses connections and serves again after start",
  ...pgTestOptions(),
  async fn() {
    await using pg = await freshDatabase();
    const sql = postgres(pg.url, { max: 1, connect_timeout: 2 });
    try {
      await sql`create table kept (n int)`;
      await sql`insert into kept values (7)`;
      await pg.stop();
      await assert.rejects(sql`select 1`);
      await pg.start();
      const rows = await sql`select n from kept`;
      assert.deepEqual(rows.map((r) => r.n), [7]);
    } finally {
      await sql.end();
    }
  },
});
