// The PostgreSQL message store on a throwaway server (see _postgres.ts; one for the file, a
// fresh database for each test): storage, the archive, events across two stores (as two
// board processes have), an outage and recovery.
import assert from "node:assert/strict";
import { freshDatabase, type PgServer, pgTestOptions } from "./_postgres.ts";
import { openPostgresStore } from "../board_postgres.ts";
import {
  type BoardEvent,
  type MessageStore,
  StartupError,
  StoreUnavailableError,
} from "../message_board.ts";

/** What a {@link storeTest} gets: its server and the stores open on it. */
interface StoreFixture {
  pg: PgServer;
  /** The stores opened before the test, in order (two boards: `[a, b]`). */
  stores: MessageStore[];
  /** Opens one more store; it is closed with the others after the test. */
  open(): Promise<MessageStore>;
  /** Every line the stores logged. */
  logged: string[];
  t: Deno.TestContext;
}

/**
 * Defines the test `postgres store: NAME` on a fresh database of the file's throwaway
 * PostgreSQL server with `stores` stores open on it (as that many board processes), closed
 * after `fn` however it ends. `prepare` runs on the empty database before the stores open.
 */
function storeTest(
  name: string,
  { stores = 2, prepare }: {
    stores?: number;
    prepare?: (pg: PgServer) => Promise<unknown>;
  },
  fn: (fixture: StoreFixture) => Promise<void>,
): void {
  Deno.test({
    name: `postgres store: ${name}`,
    ...pgTestOptions(),
    async fn(t) {
      await using pg = await freshDatabase();
      await prepare?.(pg);
      const logged: string[] = [];
      const opened: MessageStore[] = [];
      const open = async () => {
        const store = await openPostgresStore(pg.url, {
          log: (line) => logged.push(line),
        });
        opened.push(store);
        return store;
      };
      try {
        for (let i = 0; i < stores; i++) await open();
        await fn({ pg, stores: [...opened], open, logged, t });
      } finally {
        await Promise.all(opened.map((store) => store.close()));
      }
    },
  });
}

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

storeTest(
  "append, pages, clear into the archive, events on a second store",
  {},
  async ({ pg, stores: [a, b], t }) => {
    const seenMessages = collectEvents(b, 3);
    const first = await a.appendMessage({ text: "hello\n<b>", name: "Ann" });
    const second = await a.appendMessage({ text: "second" });
    const third = await b.appendMessage({ text: "third" });

    await t.step("a post gets the next id and its fields", () => {
      assert.ok(first.id < second.id && second.id < third.id);
      assert.deepEqual(Object.keys(first), ["id", "text", "name", "postedAt"]);
      assert.deepEqual(Object.keys(second), ["id", "text", "postedAt"]);
      assert.match(first.postedAt, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
    });

    await t.step("pages go newest first, older ones by `before`", async () => {
      assert.deepEqual(await b.listMessages({ limit: 2 }), {
        messages: [third, second],
        hasOlder: true,
      });
      assert.deepEqual(await b.listMessages({ before: second.id, limit: 50 }), {
        messages: [first],
        hasOlder: false,
      });
    });

    await t.step("the second store hears every post, in id order", async () => {
      assert.deepEqual(await seenMessages, [
        { type: "message", id: first.id, message: first },
        { type: "message", id: second.id, message: second },
        { type: "message", id: third.id, message: third },
      ]);
    });

    await t.step("a clear empties both stores' newest page", async () => {
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
    });

    await t.step(
      "events after an id replay the clear, then what is new",
      async () => {
        const fourth = await b.appendMessage({ text: "fourth" });
        assert.deepEqual(await a.eventsAfter(first.id, 10), [
          { type: "clear", id: third.id },
          { type: "message", id: fourth.id, message: fourth },
        ]);
        assert.deepEqual(await a.eventsAfter(fourth.id, 10), []);
      },
    );

    await t.step("the archive keeps every cleared message", async () => {
      const archived = await withDatabase(
        pg.url,
        (sql) => sql`select id, text, name from board_archive order by id`,
      );
      assert.deepEqual(archived.map((r) => [Number(r.id), r.text, r.name]), [
        [first.id, "hello\n<b>", "Ann"],
        [second.id, "second", null],
        [third.id, "third", null],
      ]);
    });
  },
);

storeTest(
  "300 concurrent posts on two stores",
  {},
  async ({ stores: [a, b], t }) => {
    const seenByA = collectEvents(a, 300);
    const seenByB = collectEvents(b, 300);
    const posted = await Promise.all(
      Array.from(
        { length: 300 },
        (_, i) => (i % 2 ? a : b).appendMessage({ text: `m${i}` }),
      ),
    );
    const ids = posted.map((m) => m.id);

    await t.step("all are kept", async () => {
      assert.equal(new Set(ids).size, 300);
      assert.deepEqual(posted.map((m) => m.text), ids.map((_, i) => `m${i}`));
      assert.equal(
        (await a.listMessages({ limit: 1000 })).messages.length,
        300,
      );
    });

    await t.step("both stores hear them in id order", async () => {
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
    });
  },
);

storeTest(
  "a stopped database gives StoreUnavailableError, then recovers",
  {},
  async ({ pg, stores: [a, b], t }) => {
    const seenBefore = collectEvents(b, 1);
    const before = await a.appendMessage({ text: "before" });
    assert.deepEqual(await seenBefore, [
      { type: "message", id: before.id, message: before },
    ]);
    await pg.stop();

    await t.step("posts, pages and clears fail while it is down", async () => {
      await assert.rejects(
        a.appendMessage({ text: "lost" }),
        StoreUnavailableError,
      );
      await assert.rejects(a.listMessages({ limit: 5 }), StoreUnavailableError);
      await assert.rejects(a.clearMessages(), StoreUnavailableError);
    });

    await pg.start();
    await t.step(
      "both stores go on by themselves once it is back",
      async () => {
        // b's LISTEN connection comes back by itself and catches up on what it missed.
        const seen = collectEvents(b, 1);
        const after = await a.appendMessage({ text: "after" });
        assert.deepEqual((await a.listMessages({ limit: 5 })).messages, [
          after,
          before,
        ]);
        assert.deepEqual(await seen, [
          { type: "message", id: after.id, message: after },
        ]);
      },
    );
  },
);

storeTest(
  "opening with the database down fails with StoreUnavailableError",
  { stores: 0 },
  async ({ pg, open }) => {
    await pg.stop();
    await assert.rejects(open(), StoreUnavailableError);
  },
);

storeTest(
  "regression: a database that cannot hold every character is refused at opening",
  { stores: 0 },
  async ({ pg }) => {
    // An emoji posted to it got 500, and so did every post of the same batch.
    const name = `${new URL(pg.url).pathname.slice(1)}_latin1`;
    await withDatabase(pg.url, (sql) =>
      sql.unsafe(
        `create database ${name} template template0 encoding 'LATIN1' locale 'C'`,
      ));
    try {
      const url = new URL(pg.url);
      url.pathname = `/${name}`;
      await assert.rejects(openPostgresStore(url.href), (error) => {
        assert(error instanceof StartupError);
        assert.match(error.message, /LATIN1.*UTF8/);
        return true;
      });
    } finally {
      await withDatabase(pg.url, (sql) => sql.unsafe(`drop database ${name}`));
    }
  },
);

storeTest(
  "after close, posts are refused",
  { stores: 1 },
  async ({ stores: [store] }) => {
    const pending = store.appendMessage({ text: "in flight" });
    await store.close(); // waits for the post already accepted
    assert.equal((await pending).text, "in flight");
    await assert.rejects(
      store.appendMessage({ text: "late" }),
      StoreUnavailableError,
    );
  },
);

storeTest(
  "delete and restore reach the other store as events; its newest page follows each",
  {},
  async ({ pg, stores: [a, b], t }) => {
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

    await t.step(
      "a delete reaches the other store and is replayed",
      async () => {
        const deleted = collectEvents(b, 1);
        assert.equal(await a.deleteMessage(two.id), true);
        assert.equal(await a.deleteMessage(two.id), false);
        assert.equal(await a.deleteMessage(12345), false);
        assert.deepEqual(await deleted, [{ type: "delete", id: two.id }]);
        assert.deepEqual(await b.listMessages({ limit: 50 }), {
          messages: [three, one],
          hasOlder: false,
        });
        assert.deepEqual(
          await b.listMessages({ limit: 50 }),
          await freshPage(b),
        );
        // A client that saw message 3 may have missed the delete; it is replayed.
        assert.deepEqual(await b.eventsAfter(three.id, 10), [
          { type: "delete", id: two.id },
        ]);
      },
    );

    await t.step(
      "a restore reaches the other store and is replayed",
      async () => {
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
      },
    );

    await t.step("a deleted message stays in the archive", async () => {
      const rows = await withDatabase(
        pg.url,
        (sql) => sql`select id, delete_id from board_archive`,
      );
      assert.deepEqual(rows.map((r) => Number(r.id)), [two.id]);
      assert.notEqual(rows[0].delete_id, null);
    });
  },
);

storeTest(
  "the newest page on another store",
  {},
  async ({ pg, stores: [a, b], t }) => {
    await t.step("is never stale once a post's event arrived", async () => {
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
    });

    await t.step("is right after a database restart", async () => {
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
    });
  },
);

/** Waits for `work` and says how it ended and how long it took from this call. */
async function timed<T>(work: Promise<T>) {
  const start = Date.now();
  const outcome = await work.then(
    (value) => ({ value, error: null }),
    (error) => ({ value: null, error }),
  );
  return { ...outcome, ms: Date.now() - start };
}

storeTest(
  "a hung database (SIGSTOP)",
  { stores: 1 },
  async ({ pg, stores: [store], t }) => {
    const first = await store.appendMessage({ text: "first" });
    const newest = await store.listMessages({ limit: 50 });
    await pg.signal("SIGSTOP");
    try {
      // All three at once, as a board's clients would send them.
      const [post, older, page] = await Promise.all([
        timed(store.appendMessage({ text: "while hung" })),
        timed(store.listMessages({ before: first.id + 1, limit: 50 })),
        timed(store.listMessages({ limit: 50 })),
      ]);

      for (const [what, result] of Object.entries({ post, older })) {
        await t.step(`fails ${what} within 5 s`, () => {
          assert.ok(result.error instanceof StoreUnavailableError, what);
          assert.ok(result.ms < 5_000, `${what} took ${result.ms} ms`);
          assert.ok((result.error.retryAfterSeconds ?? 0) >= 1, what);
        });
      }
      await t.step("makes the store read-only", () => {
        assert.equal(store.writable, false);
      });
      await t.step("the newest page needs no query", () => {
        // Nothing can commit while the database is stopped, so memory is the truth.
        assert.deepEqual(page.value, newest);
        assert.ok(page.ms < 500, `the newest page took ${page.ms} ms`);
      });
    } finally {
      await pg.signal("SIGCONT");
    }

    await t.step("posts work again by themselves when it goes on", async () => {
      const deadline = Date.now() + 15_000;
      let after = null;
      while (after === null && Date.now() < deadline) {
        after = await store.appendMessage({ text: "after" }).catch(() => null);
      }
      assert.ok(after !== null, "posts work again within 15 s");
      assert.equal(store.writable, true);
    });
  },
);

storeTest(
  "the largest id",
  { stores: 1 },
  async ({ pg, stores: [store], logged, t }) => {
    await withDatabase(
      pg.url,
      (sql) =>
        sql`alter table board_messages alter column id restart with 9007199254740991`,
    );
    const last = await store.appendMessage({ text: "the last" });

    await t.step("is stored", () => {
      assert.equal(last.id, Number.MAX_SAFE_INTEGER);
    });

    await t.step("the next post is refused with a log line", async () => {
      await assert.rejects(
        store.appendMessage({ text: "one too many" }),
        StoreUnavailableError,
      );
      assert.match(
        logged.join("\n"),
        /every message id up to 9007199254740991 is used/,
      );
    });

    await t.step("the board still reads the last message", async () => {
      assert.deepEqual((await store.listMessages({ limit: 50 })).messages, [
        last,
      ]);
      assert.deepEqual(await store.eventsAfter(0, 10), [
        { type: "message", id: last.id, message: last },
      ]);
    });
  },
);

storeTest(
  "an older board's tables",
  {
    stores: 1,
    // The tables as the previous version of the board made them, with one cleared message.
    prepare: (pg) =>
      withDatabase(pg.url, (sql) =>
        sql.unsafe(`
          create table board_messages (id bigint generated always as identity primary key,
            text text not null, name text, posted_at timestamptz not null default now());
          create table board_clears (id bigint generated always as identity primary key,
            through_id bigint not null, cleared_at timestamptz not null default now());
          create table board_archive (id bigint primary key, text text not null, name text,
            posted_at timestamptz not null, clear_id bigint not null references board_clears (id));
          insert into board_messages (text) values ('old');
          insert into board_clears (through_id) values (1);
          insert into board_archive select id, text, name, posted_at, 1 from board_messages;
          delete from board_messages;`)),
  },
  async ({ stores: [first], open, t }) => {
    const stores = [first];
    await t.step(
      "boards starting together beside a serving one do not deadlock",
      async () => {
        let serving = true;
        const reads = (async () => {
          while (serving) await first.listMessages({ before: 100, limit: 5 });
        })();
        stores.push(...await Promise.all(Array.from({ length: 4 }, open)));
        serving = false;
        await reads;
      },
    );

    await t.step(
      "are brought up to date: restore, delete and post work",
      async () => {
        assert.deepEqual(await first.restoreNewestArchive(), { restored: 1 });
        const [old] = (await first.listMessages({ limit: 5 })).messages;
        assert.equal(old.text, "old");
        assert.equal(await stores[1].deleteMessage(old.id), true);
        assert.equal((await stores[2].appendMessage({ text: "new" })).id, 2);
      },
    );
  },
);

// Every page read, the newest or an older one, ends "order by id desc limit".
const PAGE_READS = "%order by id desc%";

/** Calls since the last reset of statements whose text matches `pattern`. */
function countCalls(pg: PgServer, pattern: string): Promise<number> {
  return withDatabase(pg.url, async (sql) => {
    const [row] = await sql`
      select coalesce(sum(calls), 0)::int as calls from pg_stat_statements
      where query ilike ${pattern} and query not ilike '%pg_stat_statements%'`;
    return row.calls as number;
  });
}

storeTest(
  "queries counted by pg_stat_statements",
  {
    prepare: async (pg) => {
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
    },
  },
  async ({ pg, stores: [a, b], t }) => {
    const reset = () =>
      withDatabase(pg.url, (sql) => sql`select pg_stat_statements_reset()`);

    await t.step("the newest page costs no query", async () => {
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
      assert.equal(
        await countCalls(pg, PAGE_READS),
        0,
        "newest pages read the table",
      );
      // The count is not blind: an older page is always read from the database.
      await b.listMessages({ before: 3, limit: 50 });
      assert.equal(await countCalls(pg, PAGE_READS), 1);
    });

    await t.step(
      "a post is one statement, not read back by its poster",
      async () => {
        // Only the poster is open: the other store would read the posts back.
        await b.close();
        await reset();
        const posted = [];
        for (let i = 0; i < 5; i++) {
          posted.push(await a.appendMessage({ text: `post ${i}` }));
        }
        assert.equal(await countCalls(pg, "%board_post(%"), 5);
        // At most the background poll (one read every 10 s) reads changes meanwhile.
        const reads = await countCalls(pg, "%board_events_after(%");
        assert.ok(reads <= 1, `${reads} reads of changes`);
        assert.equal(await countCalls(pg, PAGE_READS), 0);
        assert.deepEqual(
          (await a.listMessages({ limit: 5 })).messages,
          posted.toReversed(),
        );
        assert.deepEqual(
          await a.listMessages({ limit: 50 }),
          await freshPage(a),
        );
      },
    );
  },
);

storeTest(
  "a note without a message id (an older board's post) is read like any other",
  { stores: 1 },
  async ({ pg, stores: [store] }) => {
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
    assert.equal((await store.listMessages({ limit: 50 })).messages.length, 1);
  },
);

storeTest(
  "a post whose note arrives after a missed one is delivered after the message missed",
  {},
  async ({ pg, stores: [a, b], t }) => {
    for (const store of [a, b]) await store.listMessages({ limit: 50 });
    const seen = Promise.all([collectEvents(a, 2), collectEvents(b, 2)]);
    // A row neither store is told about (no NOTIFY), older than the next post.
    await withDatabase(
      pg.url,
      (sql) => sql`insert into board_messages (text) values ('unannounced')`,
    );
    const own = await a.appendMessage({ text: "own" });
    const seenBy = await seen;
    for (const [i, who] of ["by its poster", "by another store"].entries()) {
      await t.step(who, async () => {
        const store = [a, b][i];
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
      });
    }
  },
);

storeTest(
  "a note is only a wake-up call: one made up by another session adds nothing",
  { stores: 1 },
  async ({ pg, stores: [store] }) => {
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
  },
);
