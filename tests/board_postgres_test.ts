// The PostgreSQL message store on a throwaway server (see _postgres.ts): storage, the
// archive, events across two stores (as two board processes have), an outage and recovery.
import assert from "node:assert/strict";
import { pgTestOptions, startPostgres } from "./_postgres.ts";
import { openPostgresStore } from "../board_postgres.ts";
import {
  type BoardEvent,
  type MessageStore,
  StoreUnavailableError,
} from "../message_board.ts";

const quiet = () => {};

/** Runs `fn` with a direct one-connection client to the test database, then closes it. */
async function withDatabase<T>(
  url: string,
  fn: (sql: import("npm:postgres@3.4.7").Sql) => Promise<T>,
): Promise<T> {
  const { default: postgres } = await import("npm:postgres@3.4.7");
  const sql = postgres(url, { max: 1, onnotice: () => {} });
  try {
    return await fn(sql);
  } finally {
    await sql.end();
  }
}

/** The newest page as the database has it (a `before` page always queries). */
function freshPage(store: MessageStore, limit = 50) {
  return store.listMessages({ before: Number.MAX_SAFE_INTEGER, limit });
}

/** Resolves with the first `count` events a store delivers; fails after `timeoutMs`. */
function collectEvents(
  store: MessageStore,
  count: number,
  timeoutMs = 15_000,
): Promise<BoardEvent[]> {
  const events: BoardEvent[] = [];
  const { promise, resolve, reject } = Promise.withResolvers<BoardEvent[]>();
  const timer = setTimeout(() => {
    unsubscribe();
    reject(
      new Error(
        `only ${events.length} of ${count} events within ${timeoutMs} ms: ${
          JSON.stringify(events)
        }`,
      ),
    );
  }, timeoutMs);
  const unsubscribe = store.subscribe((event) => {
    events.push(event);
    if (events.length === count) {
      clearTimeout(timer);
      unsubscribe();
      resolve(events);
    }
  });
  return promise;
}

Deno.test({
  name:
    "postgres store: append, pages, clear into the archive, events on a second store",
  ...pgTestOptions(),
  async fn() {
    await using pg = await startPostgres();
    const a = await openPostgresStore(pg.url, { log: quiet });
    const b = await openPostgresStore(pg.url, { log: quiet });
    try {
      const seenMessages = collectEvents(b, 3);
      const first = await a.appendMessage({ text: "hello\n<b>", name: "Ann" });
      const second = await a.appendMessage({ text: "second" });
      const third = await b.appendMessage({ text: "third" });
      assert.ok(first.id < second.id && second.id < third.id);
      assert.deepEqual(Object.keys(first), ["id", "text", "name", "postedAt"]);
      assert.deepEqual(Object.keys(second), ["id", "text", "postedAt"]);
      assert.match(first.postedAt, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);

      assert.deepEqual(await b.listMessages({ limit: 2 }), {
        messages: [third, second],
        hasOlder: true,
      });
      assert.deepEqual(await b.listMessages({ before: second.id, limit: 50 }), {
        messages: [first],
        hasOlder: false,
      });

      assert.deepEqual(await seenMessages, [
        { type: "message", id: first.id, message: first },
        { type: "message", id: second.id, message: second },
        { type: "message", id: third.id, message: third },
      ]);

      // Wait for the messages before clearing: a store whose reader is still behind when a
      // clear commits never sees the messages that clear removed, only the clear itself
      // (the board's state is the same either way), and a busy machine makes that happen.
      const seenClear = collectEvents(b, 1);
      assert.deepEqual(await a.clearMessages(), {
        archived: 3,
        archive: "table board_archive",
      });
      assert.deepEqual(await a.clearMessages(), { archived: 0, archive: null });
      // B's newest page follows the events it receives: empty once the clear has arrived.
      assert.deepEqual(await seenClear, [{ type: "clear", id: third.id }]);
      assert.deepEqual(await b.listMessages({ limit: 50 }), {
        messages: [],
        hasOlder: false,
      });

      // Resuming after the first message: the clear (through the third), then what is new.
      const fourth = await b.appendMessage({ text: "fourth" });
      assert.deepEqual(await a.eventsAfter(first.id, 10), [
        { type: "clear", id: third.id },
        { type: "message", id: fourth.id, message: fourth },
      ]);
      assert.deepEqual(await a.eventsAfter(fourth.id, 10), []);

      // The archive keeps every cleared message.
      const archived = await withDatabase(
        pg.url,
        (sql) => sql`select id, text, name from board_archive order by id`,
      );
      assert.deepEqual(archived.map((r) => [Number(r.id), r.text, r.name]), [
        [first.id, "hello\n<b>", "Ann"],
        [second.id, "second", null],
        [third.id, "third", null],
      ]);
    } finally {
      await a.close();
      await b.close();
    }
  },
});

Deno.test({
  name:
    "postgres store: 300 concurrent posts on two stores are all kept, events in id order",
  ...pgTestOptions(),
  async fn() {
    await using pg = await startPostgres();
    const a = await openPostgresStore(pg.url, { log: quiet });
    const b = await openPostgresStore(pg.url, { log: quiet });
    try {
      const seenByA = collectEvents(a, 300);
      const seenByB = collectEvents(b, 300);
      const posted = await Promise.all(
        Array.from(
          { length: 300 },
          (_, i) => (i % 2 ? a : b).appendMessage({ text: `m${i}` }),
        ),
      );
      const ids = posted.map((m) => m.id);
      assert.equal(new Set(ids).size, 300);
      assert.deepEqual(posted.map((m) => m.text), ids.map((_, i) => `m${i}`));
      assert.equal(
        (await a.listMessages({ limit: 1000 })).messages.length,
        300,
      );
      const sorted = [...ids].sort((x, y) => x - y);
      assert.deepEqual((await seenByA).map((e) => e.id), sorted);
      assert.deepEqual((await seenByB).map((e) => e.id), sorted);
      // Each newest page, in memory from its own posts and the other's, is the database's.
      for (const store of [a, b]) {
        assert.deepEqual(
          await store.listMessages({ limit: 100 }),
          await freshPage(store, 100),
        );
      }
    } finally {
      await a.close();
      await b.close();
    }
  },
});

Deno.test({
  name:
    "postgres store: a stopped database gives StoreUnavailableError, then recovers",
  ...pgTestOptions(),
  async fn() {
    await using pg = await startPostgres();
    const a = await openPostgresStore(pg.url, { log: quiet });
    const b = await openPostgresStore(pg.url, { log: quiet });
    try {
      const seenBefore = collectEvents(b, 1);
      const before = await a.appendMessage({ text: "before" });
      assert.deepEqual(await seenBefore, [{
        type: "message",
        id: before.id,
        message: before,
      }]);
      await pg.stop();
      await assert.rejects(
        a.appendMessage({ text: "lost" }),
        StoreUnavailableError,
      );
      await assert.rejects(a.listMessages({ limit: 5 }), StoreUnavailableError);
      await assert.rejects(a.clearMessages(), StoreUnavailableError);
      await pg.start();
      // b's LISTEN connection comes back by itself and catches up on what it missed.
      const seen = collectEvents(b, 1);
      const after = await a.appendMessage({ text: "after" });
      assert.deepEqual((await a.listMessages({ limit: 5 })).messages, [
        after,
        before,
      ]);
      assert.deepEqual(await seen, [{
        type: "message",
        id: after.id,
        message: after,
      }]);
    } finally {
      await a.close();
      await b.close();
    }
  },
});

Deno.test({
  name:
    "postgres store: opening with the database down fails with StoreUnavailableError",
  ...pgTestOptions(),
  async fn() {
    await using pg = await startPostgres();
    await pg.stop();
    await assert.rejects(
      openPostgresStore(pg.url, { log: quiet }),
      StoreUnavailableError,
    );
  },
});

Deno.test({
  name: "postgres store: after close, posts are refused",
  ...pgTestOptions(),
  async fn() {
    await using pg = await startPostgres();
    const store = await openPostgresStore(pg.url, { log: quiet });
    const pending = store.appendMessage({ text: "in flight" });
    await store.close(); // waits for the post already accepted
    assert.equal((await pending).text, "in flight");
    await assert.rejects(
      store.appendMessage({ text: "late" }),
      StoreUnavailableError,
    );
  },
});

Deno.test({
  name:
    "postgres store: delete and restore reach the other store as events; its newest page follows each",
  ...pgTestOptions(),
  async fn() {
    await using pg = await startPostgres();
    const a = await openPostgresStore(pg.url, { log: quiet });
    const b = await openPostgresStore(pg.url, { log: quiet });
    try {
      assert.equal(a.writable, true);
      // b's newest page is in memory from here on; every step checks it against the database.
      assert.deepEqual(await b.listMessages({ limit: 50 }), await freshPage(b));
      const posted = collectEvents(b, 3);
      const one = await a.appendMessage({ text: "one" });
      const two = await a.appendMessage({ text: "two" });
      const three = await a.appendMessage({ text: "three" });
      await posted;
      assert.deepEqual((await b.listMessages({ limit: 50 })).messages, [
        three,
        two,
        one,
      ]);

      const deleted = collectEvents(b, 1);
      assert.equal(await a.deleteMessage(two.id), true);
      assert.equal(await a.deleteMessage(two.id), false);
      assert.equal(await a.deleteMessage(12345), false);
      assert.deepEqual(await deleted, [{ type: "delete", id: two.id }]);
      assert.deepEqual(await b.listMessages({ limit: 50 }), {
        messages: [three, one],
        hasOlder: false,
      });
      assert.deepEqual(await b.listMessages({ limit: 50 }), await freshPage(b));
      // A client that saw message 3 may have missed the delete; it is replayed.
      assert.deepEqual(await b.eventsAfter(three.id, 10), [
        { type: "delete", id: two.id },
      ]);

      const cleared = collectEvents(b, 1);
      await a.clearMessages();
      await cleared;
      const restored = collectEvents(b, 2); // message four, then the restore
      const four = await a.appendMessage({ text: "four" });
      assert.deepEqual(await a.restoreNewestArchive(), { restored: 2 });
      assert.deepEqual((await restored).at(-1), {
        type: "restore",
        id: four.id,
      });
      assert.deepEqual(await b.listMessages({ limit: 50 }), {
        messages: [four, three, one],
        hasOlder: false,
      });
      assert.deepEqual(await a.restoreNewestArchive(), { restored: 0 });
      assert.deepEqual((await b.eventsAfter(three.id, 10)).at(-1), {
        type: "restore",
        id: four.id,
      });
      assert.deepEqual(await b.eventsAfter(four.id, 10), []);

      // Deleted and cleared messages are kept: message two is still in the archive.
      const rows = await withDatabase(
        pg.url,
        (sql) => sql`select id, delete_id from board_archive`,
      );
      assert.deepEqual(rows.map((r) => Number(r.id)), [two.id]);
      assert.notEqual(rows[0].delete_id, null);
    } finally {
      await a.close();
      await b.close();
    }
  },
});

Deno.test({
  name:
    "postgres store: the newest page is never stale once an event arrived, and is right after a database restart",
  ...pgTestOptions(),
  async fn() {
    await using pg = await startPostgres();
    const a = await openPostgresStore(pg.url, { log: quiet });
    const b = await openPostgresStore(pg.url, { log: quiet });
    try {
      for (let i = 0; i < 120; i++) {
        const seen = collectEvents(b, 1);
        const message = await a.appendMessage({ text: `post ${i}` });
        await seen;
        const page = await b.listMessages({ limit: 50 });
        assert.deepEqual(page.messages[0], message, `post ${i}`);
        if (i % 40 === 0) assert.deepEqual(page, await freshPage(b));
      }
      assert.deepEqual(
        await b.listMessages({ limit: 100 }),
        await freshPage(b, 100),
      );

      await pg.stop();
      await assert.rejects(
        b.listMessages({ limit: 50 }),
        StoreUnavailableError,
      );
      await pg.start();
      // Posted while b may not be listening yet: b reads it when it listens again.
      const seen = collectEvents(b, 1);
      const after = await a.appendMessage({ text: "after the restart" });
      await seen;
      assert.deepEqual(
        (await b.listMessages({ limit: 50 })).messages[0],
        after,
      );
      assert.deepEqual(await b.listMessages({ limit: 50 }), await freshPage(b));
    } finally {
      await a.close();
      await b.close();
    }
  },
});

Deno.test({
  name:
    "postgres store: a hung database (SIGSTOP) fails posts and older pages within 5 s; the newest page needs no query",
  ...pgTestOptions(),
  async fn() {
    await using pg = await startPostgres();
    const store = await openPostgresStore(pg.url, { log: quiet });
    try {
      const first = await store.appendMessage({ text: "first" });
      const newest = await store.listMessages({ limit: 50 });
      await pg.signal("SIGSTOP");
      try {
        const timed = async <T>(work: Promise<T>) => {
          const start = Date.now();
          const outcome = await work.then(
            (value) => ({ value, error: null }),
            (error) => ({ value: null, error }),
          );
          return { ...outcome, ms: Date.now() - start };
        };
        const [post, older, page] = await Promise.all([
          timed(store.appendMessage({ text: "while hung" })),
          timed(store.listMessages({ before: first.id + 1, limit: 50 })),
          timed(store.listMessages({ limit: 50 })),
        ]);
        for (const [what, result] of Object.entries({ post, older })) {
          assert.ok(result.error instanceof StoreUnavailableError, what);
          assert.ok(result.ms < 5_000, `${what} took ${result.ms} ms`);
          assert.ok((result.error.retryAfterSeconds ?? 0) >= 1, what);
        }
        assert.equal(store.writable, false);
        // Nothing can commit while the database is stopped, so memory is the truth.
        assert.deepEqual(page.value, newest);
        assert.ok(page.ms < 500, `the newest page took ${page.ms} ms`);
      } finally {
        await pg.signal("SIGCONT");
      }
      // It goes on by itself when the database does.
      const deadline = Date.now() + 15_000;
      let after = null;
      while (after === null && Date.now() < deadline) {
        after = await store.appendMessage({ text: "after" }).catch(() => null);
      }
      assert.ok(after !== null, "posts work again within 15 s");
      assert.equal(store.writable, true);
    } finally {
      await store.close();
    }
  },
});

Deno.test({
  name:
    "postgres store: the largest id is stored, the next post is refused with a log line",
  ...pgTestOptions(),
  async fn() {
    await using pg = await startPostgres();
    const logged: string[] = [];
    const store = await openPostgresStore(pg.url, {
      log: (line) => logged.push(line),
    });
    try {
      await withDatabase(
        pg.url,
        (sql) =>
          sql`alter table board_messages alter column id restart with 9007199254740991`,
      );
      const last = await store.appendMessage({ text: "the last" });
      assert.equal(last.id, Number.MAX_SAFE_INTEGER);
      await assert.rejects(
        store.appendMessage({ text: "one too many" }),
        StoreUnavailableError,
      );
      assert.match(
        logged.join("\n"),
        /every message id up to 9007199254740991 is used/,
      );
      assert.deepEqual((await store.listMessages({ limit: 50 })).messages, [
        last,
      ]);
      assert.deepEqual(await store.eventsAfter(0, 10), [
        { type: "message", id: last.id, message: last },
      ]);
    } finally {
      await store.close();
    }
  },
});

Deno.test({
  name:
    "postgres store: boards starting together beside a serving one do not deadlock; an older board's tables are brought up to date",
  ...pgTestOptions(),
  async fn() {
    await using pg = await startPostgres();
    const { default: postgres } = await import("npm:postgres@3.4.7");
    const sql = postgres(pg.url, { max: 1, onnotice: () => {} });
    try {
      // The tables as the previous version of the board made them, with one cleared message.
      await sql.unsafe(`
        create table board_messages (id bigint generated always as identity primary key,
          text text not null, name text, posted_at timestamptz not null default now());
        create table board_clears (id bigint generated always as identity primary key,
          through_id bigint not null, cleared_at timestamptz not null default now());
        create table board_archive (id bigint primary key, text text not null, name text,
          posted_at timestamptz not null, clear_id bigint not null references board_clears (id));
        insert into board_messages (text) values ('old');
        insert into board_clears (through_id) values (1);
        insert into board_archive select id, text, name, posted_at, 1 from board_messages;
        delete from board_messages;`);
    } finally {
      await sql.end();
    }
    const first = await openPostgresStore(pg.url, { log: quiet });
    const stores = [first];
    try {
      let serving = true;
      const reads = (async () => {
        while (serving) await first.listMessages({ before: 100, limit: 5 });
      })();
      stores.push(
        ...await Promise.all(
          Array.from(
            { length: 4 },
            () => openPostgresStore(pg.url, { log: quiet }),
          ),
        ),
      );
      serving = false;
      await reads;
      assert.deepEqual(await first.restoreNewestArchive(), { restored: 1 });
      const [old] = (await first.listMessages({ limit: 5 })).messages;
      assert.equal(old.text, "old");
      assert.equal(await stores[1].deleteMessage(old.id), true);
      assert.equal((await stores[2].appendMessage({ text: "new" })).id, 2);
    } finally {
      await Promise.all(stores.map((store) => store.close()));
    }
  },
});

Deno.test({
  name:
    "postgres store: the newest page costs no query, a post one statement and no read back by its poster (counted by pg_stat_statements)",
  ...pgTestOptions(),
  async fn() {
    await using pg = await startPostgres();
    await withDatabase(
      pg.url,
      (sql) =>
        sql`alter system set shared_preload_libraries = 'pg_stat_statements'`,
    );
    await pg.stop();
    await pg.start();
    await withDatabase(
      pg.url,
      (sql) => sql`create extension pg_stat_statements`,
    );
    /** Calls since the last reset of statements whose text matches `pattern`. */
    const calls = (pattern: string) =>
      withDatabase(pg.url, async (sql) => {
        const [row] = await sql`
          select coalesce(sum(calls), 0)::int as calls from pg_stat_statements
          where query ilike ${pattern} and query not ilike '%pg_stat_statements%'`;
        return row.calls as number;
      });
    const reset = () =>
      withDatabase(pg.url, (sql) => sql`select pg_stat_statements_reset()`);
    // Every page read, the newest or an older one, ends "order by id desc limit".
    const pageReads = "%order by id desc%";

    const a = await openPostgresStore(pg.url, { log: quiet });
    const b = await openPostgresStore(pg.url, { log: quiet });
    try {
      const seen = collectEvents(b, 3);
      for (const text of ["one", "two", "three"]) {
        await a.appendMessage({ text });
      }
      await seen;
      await a.listMessages({ limit: 50 }); // the first page fills the memory
      await b.listMessages({ limit: 50 });
      await reset();
      for (let i = 0; i < 100; i++) {
        await a.listMessages({ limit: 50 });
        await b.listMessages({ limit: 10 });
      }
      assert.equal(await calls(pageReads), 0, "newest pages read the table");
      // The count is not blind: an older page is always read from the database.
      await b.listMessages({ before: 3, limit: 50 });
      assert.equal(await calls(pageReads), 1);

      // A post is one statement, and its process does not read it back (the other does).
      await b.close();
      await reset();
      const posted = [];
      for (let i = 0; i < 5; i++) {
        posted.push(await a.appendMessage({ text: `post ${i}` }));
      }
      assert.equal(await calls("%board_insert_batch(%"), 5);
      // At most the background poll (one read every 10 s) reads changes meanwhile.
      const reads = await calls("%from board_changes%");
      assert.ok(reads <= 1, `${reads} reads of changes`);
      assert.equal(await calls(pageReads), 0);
      assert.deepEqual(
        (await a.listMessages({ limit: 5 })).messages,
        posted.toReversed(),
      );
      assert.deepEqual(await a.listMessages({ limit: 50 }), await freshPage(a));
    } finally {
      await a.close();
      await b.close();
    }
  },
});

Deno.test({
  name:
    "postgres store: a note without a message id (an older board's post) is read like any other",
  ...pgTestOptions(),
  async fn() {
    await using pg = await startPostgres();
    const store = await openPostgresStore(pg.url, { log: quiet });
    try {
      assert.deepEqual(await store.listMessages({ limit: 50 }), {
        messages: [],
        hasOlder: false,
      });
      // Sooner than the background poll (every 10 s) would find it: the note was heard.
      const seen = collectEvents(store, 1, 5_000);
      // What the previous version of the board sent for a post.
      await withDatabase(pg.url, (sql) =>
        sql.begin((tx) => [
          tx`lock table board_messages in share row exclusive mode`,
          tx`insert into board_messages (text) values ('from an older board')`,
          tx`select pg_notify('board_events', 'message')`,
        ]));
      const [event] = await seen;
      assert.equal(
        event.type === "message" && event.message.text,
        "from an older board",
      );
      assert.deepEqual(
        await store.listMessages({ limit: 50 }),
        await freshPage(store),
      );
      assert.equal(
        (await store.listMessages({ limit: 50 })).messages.length,
        1,
      );
    } finally {
      await store.close();
    }
  },
});

Deno.test({
  name:
    "postgres store: a post whose note arrives after a missed one is delivered after the message missed, by its poster and by another store",
  ...pgTestOptions(),
  async fn() {
    await using pg = await startPostgres();
    const a = await openPostgresStore(pg.url, { log: quiet });
    const b = await openPostgresStore(pg.url, { log: quiet });
    try {
      for (const store of [a, b]) await store.listMessages({ limit: 50 });
      const seen = Promise.all([collectEvents(a, 2), collectEvents(b, 2)]);
      // A row neither store is told about (no NOTIFY), older than the next post.
      await withDatabase(
        pg.url,
        (sql) => sql`insert into board_messages (text) values ('unannounced')`,
      );
      const own = await a.appendMessage({ text: "own" });
      const seenBy = await seen;
      for (const [i, store] of [a, b].entries()) {
        const events = seenBy[i];
        assert.deepEqual(
          events.map((e) => e.type === "message" && e.message.text),
          ["unannounced", "own"],
        );
        assert.deepEqual(events[1], {
          type: "message",
          id: own.id,
          message: own,
        });
        const page = await store.listMessages({ limit: 50 });
        assert.deepEqual(page.messages.map((m) => m.text), [
          "own",
          "unannounced",
        ]);
        assert.deepEqual(page, await freshPage(store));
      }
    } finally {
      await a.close();
      await b.close();
    }
  },
});

Deno.test({
  name:
    "postgres store: a note is only a wake-up call: one made up by another session adds nothing",
  ...pgTestOptions(),
  async fn() {
    await using pg = await startPostgres();
    const store = await openPostgresStore(pg.url, { log: quiet });
    try {
      await store.listMessages({ limit: 50 }); // the newest page in memory
      const seen = collectEvents(store, 1);
      // Any role that can connect may NOTIFY on the board's channel.
      await withDatabase(pg.url, async (sql) => {
        for (
          const note of [
            'message 99 0 0 [[99, "forged", null, "2026-01-01 00:00:00+00"]]',
            "message 1",
            "message",
            "change",
            "clear 5",
            "",
          ]
        ) await sql`select pg_notify('board_events', ${note})`;
      });
      const real = await store.appendMessage({ text: "real" });
      assert.deepEqual(await seen, [
        { type: "message", id: real.id, message: real },
      ]);
      assert.deepEqual(await store.listMessages({ limit: 50 }), {
        messages: [real],
        hasOlder: false,
      });
      assert.deepEqual(
        await store.listMessages({ limit: 50 }),
        await freshPage(store),
      );
    } finally {
      await store.close();
    }
  },
});
