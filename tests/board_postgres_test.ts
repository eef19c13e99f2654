// The PostgreSQL message store on a throwaway server (see pg_harness.ts): storage, the archive,
// events across two stores (as two board processes would have), an outage and the recovery.
import assert from "node:assert/strict";
import { pgTestOptions, startPostgres } from "./pg_harness.ts";
import { type BoardEvent, openPostgresStore, StoreUnavailableError } from "../board_postgres.ts";

const quiet = () => {};

/** Resolves with the first `count` events a store delivers. */
function collectEvents(
  store: { subscribe(listener: (event: BoardEvent) => void): () => void },
  count: number,
): Promise<BoardEvent[]> {
  const events: BoardEvent[] = [];
  const { promise, resolve } = Promise.withResolvers<BoardEvent[]>();
  const unsubscribe = store.subscribe((event) => {
    events.push(event);
    if (events.length === count) {
      unsubscribe();
      resolve(events);
    }
  });
  return promise;
}

Deno.test({
  name: "postgres store: append, pages, clear into the archive, events on a second store",
  ...pgTestOptions(),
  async fn() {
    await using pg = await startPostgres();
    const a = await openPostgresStore({ url: pg.url, log: quiet });
    const b = await openPostgresStore({ url: pg.url, log: quiet });
    try {
      const seen = collectEvents(b, 4);
      const first = await a.append({ text: "hello\n<b>", name: "Ann" });
      const second = await a.append({ text: "second" });
      const third = await b.append({ text: "third" });
      assert.ok(first.id < second.id && second.id < third.id);
      assert.equal(first.name, "Ann");
      assert.equal("name" in second, false);
      assert.match(first.postedAt, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);

      assert.deepEqual(await b.loadPage({ limit: 2 }), [third, second]);
      assert.deepEqual(await b.loadPage({ before: second.id, limit: 50 }), [first]);

      assert.deepEqual(await a.clear(), { archived: 3 });
      assert.deepEqual(await b.loadPage({ limit: 50 }), []);
      const events = await seen;
      assert.deepEqual(events.slice(0, 3), [
        { type: "message", id: first.id, message: first },
        { type: "message", id: second.id, message: second },
        { type: "message", id: third.id, message: third },
      ]);
      assert.equal(events[3].type, "clear");
      assert.ok(events[3].id > third.id);

      // Resume: after the first message, the clear hides the archived ones.
      const fourth = await b.append({ text: "fourth" });
      assert.ok(fourth.id > events[3].id);
      assert.deepEqual(await a.eventsAfter(first.id), [
        { type: "clear", id: events[3].id },
        { type: "message", id: fourth.id, message: fourth },
      ]);
      assert.deepEqual(await a.eventsAfter(fourth.id), []);

      // The archive keeps every cleared message.
      const { default: connect } = await import("npm:postgres@3.4.7");
      const sql = connect(pg.url, { max: 1 });
      try {
        const archived = await sql`select id, text, name from board_archive order by id`;
        assert.deepEqual(archived.map((r) => [Number(r.id), r.text, r.name]), [
          [first.id, "hello\n<b>", "Ann"],
          [second.id, "second", null],
          [third.id, "third", null],
        ]);
      } finally {
        await sql.end();
      }
    } finally {
      await a.close();
      await b.close();
    }
  },
});

Deno.test({
  name: "postgres store: 200 concurrent appends from two stores get distinct ids, all kept",
  ...pgTestOptions(),
  async fn() {
    await using pg = await startPostgres();
    const a = await openPostgresStore({ url: pg.url, log: quiet });
    const b = await openPostgresStore({ url: pg.url, log: quiet });
    try {
      const seen = collectEvents(a, 200);
      const posted = await Promise.all(
        Array.from({ length: 200 }, (_, i) => (i % 2 ? a : b).append({ text: `m${i}` })),
      );
      const ids = posted.map((m) => m.id);
      assert.equal(new Set(ids).size, 200);
      assert.equal((await a.loadPage({ limit: 500 })).length, 200);
      // Events arrive exactly once each and in increasing id order.
      const eventIds = (await seen).map((e) => e.id);
      assert.deepEqual(eventIds, [...ids].sort((x, y) => x - y));
    } finally {
      await a.close();
      await b.close();
    }
  },
});

Deno.test({
  name: "postgres store: a stopped database gives StoreUnavailableError, then recovers",
  ...pgTestOptions(),
  async fn() {
    await using pg = await startPostgres();
    const a = await openPostgresStore({ url: pg.url, log: quiet });
    const b = await openPostgresStore({ url: pg.url, log: quiet });
    try {
      const before = await a.append({ text: "before" });
      await pg.stop();
      await assert.rejects(a.append({ text: "lost" }), StoreUnavailableError);
      await assert.rejects(a.loadPage({ limit: 5 }), StoreUnavailableError);
      await pg.start();
      // Posts made while b's listener reconnects still reach b (it catches up on re-LISTEN).
      const seen = collectEvents(b, 1);
      const after = await a.append({ text: "after" });
      assert.deepEqual(await a.loadPage({ limit: 5 }), [after, before]);
      assert.deepEqual(await seen, [{ type: "message", id: after.id, message: after }]);
    } finally {
      await a.close();
      await b.close();
    }
  },
});

Deno.test({
  name: "postgres store: opening with the database down fails clearly",
  ...pgTestOptions(),
  async fn() {
    await using pg = await startPostgres();
    await pg.stop();
    await assert.rejects(openPostgresStore({ url: pg.url, log: quiet }), StoreUnavailableError);
  },
});
