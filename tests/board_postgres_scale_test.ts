// Two board processes posting at once on one PostgreSQL database, as a board that outgrew one
// machine runs: posts do not wait for each other's commit, so ids can commit out of order. What
// a reader sees must not show it: every reader (a live /events stream on each board, and one
// that keeps reconnecting with Last-Event-ID, as a browser on a bad network does) sees every
// stored message exactly once and in id order, across a SIGKILL and a restart of either board;
// and no acknowledged post is lost.
import assert from "node:assert/strict";
import postgres from "npm:postgres@3.4.7";
import { openPostgresStore } from "../board_postgres.ts";
import type { BoardEvent, MessageStore } from "../message_board.ts";
import { fetchAllMessages, postJson, startPgBoard } from "./_board.ts";
import { freshDatabase, type PgServer, pgTestOptions } from "./_postgres.ts";
import type { RunningProcess } from "./_process.ts";
import { frameReader } from "./_sse.ts";

/** Posts per phase (three phases: before the SIGKILL, after it, after a restart). */
const POSTS_PER_PHASE = 240;
/** Clients posting at once on each board. */
const WRITERS_PER_BOARD = 8;
/** How long the resuming reader stays connected before it reconnects. */
const RESUME_EVERY_MS = 150;

/** One reader's view: the message ids it was sent, in the order they came. */
interface ReaderView {
  name: string;
  ids: number[];
}

/** A reader: follows /events until stop(), which also ends the stream it has open. */
function follow(
  view: ReaderView,
  boards: () => RunningProcess[],
  reconnectMs = Infinity,
) {
  let stopped = false;
  let cancel = () => {};
  const done = (async () => {
    while (!stopped) {
      const stream = await connect(view, boards());
      if (stream === null) {
        await new Promise((resolve) => setTimeout(resolve, 50)); // restarting
        continue;
      }
      cancel = () => void stream.cancel().catch(() => {});
      const until = Date.now() + reconnectMs;
      try {
        while (!stopped && Date.now() < until) {
          const frame = await stream.nextEvent();
          if (frame === null) break; // the board went away
          assert.notEqual(frame.event, "reload", `${view.name}: fell behind`);
          if (frame.event === "message") view.ids.push(Number(frame.id));
        }
      } catch (error) {
        if (error instanceof assert.AssertionError) throw error;
        // the connection was cut (SIGKILL, or stop()): resume
      } finally {
        await stream.cancel().catch(() => {});
      }
    }
  })();
  done.catch(() => {}); // awaited at the end; not an unhandled rejection meanwhile
  return {
    done,
    stop() {
      stopped = true;
      cancel();
    },
  };
}

/**
 * Opens /events on the first of `boards` that answers, resuming after the last id the view
 * has (as a browser does, with Last-Event-ID); null when none answers.
 */
async function connect(view: ReaderView, boards: RunningProcess[]) {
  const last = view.ids.at(-1);
  for (const board of boards) {
    try {
      const response = await fetch(new URL("events", board.url), {
        headers: last === undefined ? {} : { "last-event-id": String(last) },
      });
      if (response.status === 200) return frameReader(response);
      await response.body?.cancel();
    } catch {
      // this one is down: the next
    }
  }
  return null;
}

/** Posts `count` messages from WRITERS_PER_BOARD clients on each board; returns those acknowledged. */
async function postPhase(
  phase: string,
  boards: (() => RunningProcess)[],
  count: number,
  acknowledged: Map<number, string>,
): Promise<void> {
  let next = 0;
  const writer = async (board: () => RunningProcess, w: number) => {
    for (let i = next++; i < count; i = next++) {
      for (let attempt = 1;; attempt++) {
        const text = `${phase} ${w} ${i} ${attempt}`;
        try {
          const { status, message } = await postJson(board().url, { text });
          if (status === 201) {
            acknowledged.set(message!.id, text);
            break;
          }
          assert.equal(status, 503, text); // a board stopping
        } catch (error) {
          if (error instanceof assert.AssertionError) throw error;
          // its board was killed or stopped mid-request: not acknowledged
        }
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    }
  };
  await Promise.all(
    boards.flatMap((board, b) =>
      Array.from(
        { length: WRITERS_PER_BOARD },
        (_, w) => writer(board, b * WRITERS_PER_BOARD + w),
      )
    ),
  );
}

async function waitUntil(what: string, ready: () => boolean, ms = 15_000) {
  const deadline = Date.now() + ms;
  while (!ready()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

Deno.test({
  name:
    "postgres scale: two boards posting at once; every reader sees every message once, in id order, across a SIGKILL and a restart",
  ...pgTestOptions(),
  async fn(t) {
    await using pg: PgServer = await freshDatabase();
    const processes: RunningProcess[] = [];
    const start = async () => {
      const board = await startPgBoard(pg);
      processes.push(board);
      return board;
    };
    let a = await start();
    let b = await start();
    const boardA = () => a;
    const boardB = () => b;
    const acknowledged = new Map<number, string>();
    const views: ReaderView[] = [
      { name: "live on A", ids: [] },
      { name: "live on B", ids: [] },
      { name: "resuming on A", ids: [] },
      { name: "resuming on B", ids: [] },
    ];
    const readers = [
      follow(views[0], () => [a, b]),
      follow(views[1], () => [b, a]),
      follow(views[2], () => [a, b], RESUME_EVERY_MS),
      follow(views[3], () => [b, a], RESUME_EVERY_MS),
    ];
    try {
      const boards = [boardA, boardB];

      // 1. Both post; halfway through, B is killed with SIGKILL and started again.
      const phase1 = postPhase("one", boards, POSTS_PER_PHASE, acknowledged);
      await waitUntil("posts", () => acknowledged.size >= POSTS_PER_PHASE / 2);
      b.kill("SIGKILL");
      await b.output;
      b = await start();
      await phase1;
      // 2. Both post again; A stops cleanly (SIGTERM) meanwhile and is started again.
      const phase2 = postPhase("two", boards, POSTS_PER_PHASE, acknowledged);
      await waitUntil(
        "posts",
        () => acknowledged.size >= POSTS_PER_PHASE * 1.5,
      );
      const { code } = await a.stop("SIGTERM");
      assert.equal(code, 0);
      a = await start();
      await phase2;
      await postPhase("three", boards, POSTS_PER_PHASE, acknowledged);

      const stored = await fetchAllMessages(a.url);
      const storedIds = stored.map((m) => m.id).reverse();
      const newest = storedIds.at(-1)!;
      await waitUntil(
        "every reader to see the newest message",
        () => views.every((view) => view.ids.some((id) => id >= newest)),
      );
      for (const reader of readers) reader.stop();
      await Promise.all(readers.map((reader) => reader.done));

      await t.step("no acknowledged post is lost", () => {
        const texts = new Map(stored.map((m) => [m.id, m.text]));
        assert.ok(acknowledged.size > POSTS_PER_PHASE * 2);
        for (const [id, text] of acknowledged) {
          assert.equal(texts.get(id), text, `message ${id}`);
        }
      });
      for (const view of views) {
        await t.step(
          `${view.name}: every stored message once, in id order`,
          () => {
            // From the first id it saw (a live stream starts "from now on").
            const first = storedIds.indexOf(view.ids[0]);
            assert.notEqual(first, -1, "its first id is stored");
            const expected = storedIds.slice(first);
            const at = expected.findIndex((id, i) => view.ids[i] !== id);
            assert.deepEqual(
              view.ids,
              expected,
              at === -1
                ? undefined
                : `from index ${at}: saw ${
                  view.ids.slice(Math.max(0, at - 3), at + 12)
                }; stored ${expected.slice(Math.max(0, at - 3), at + 12)}`,
            );
          },
        );
      }
    } finally {
      for (const reader of readers) reader.stop();
      for (const board of processes) await board.stop();
    }
  },
});

Deno.test({
  name:
    "postgres scale: a post does not wait for an older one's commit, and no reader sees it before the older one",
  ...pgTestOptions(),
  async fn(t) {
    await using pg = await freshDatabase();
    const stores: MessageStore[] = [];
    const open = async () => {
      const store = await openPostgresStore(pg.url, { log: () => {} });
      stores.push(store);
      return store;
    };
    // A board writer that has taken its id and not yet committed (its process is slow, or
    // PostgreSQL is flushing it): a session of the board's, in a transaction held open.
    const slow = postgres(pg.url, {
      max: 3,
      onnotice: () => {},
      connection: { application_name: "message_board" },
    });
    try {
      const [a, b] = [await open(), await open()];
      const seenByB = recordEvents(b);
      const committing = Promise.withResolvers<void>();
      const taken = Promise.withResolvers<number>();
      const writing = slow.begin(async (tx) => {
        const [row] = await tx`
          select messages -> 0 ->> 0 as id
            from board_post(${tx.json([{ text: "older" }])}::jsonb)`;
        taken.resolve(Number(row.id));
        await committing.promise;
      });
      const olderId = await taken.promise;

      const quick = await withTimeout(
        a.appendMessage({ text: "newer" }),
        "the newer post",
      );
      assert.equal(quick.id, olderId + 1);
      // Two more board sessions with transaction ids, newer than any that has finished (as
      // posts of other processes just starting): they hold nothing back that is settled.
      const newer = await Promise.all([1, 2].map(async () => {
        const started = Promise.withResolvers<void>();
        const done = slow.begin(async (tx) => {
          await tx`select pg_current_xact_id()`;
          started.resolve();
          await committing.promise;
        });
        await started.promise;
        return { done }; // not the promise itself: that would wait for the commit here
      }));
      // The newer post has committed; give its note time to reach every store.
      await new Promise((resolve) => setTimeout(resolve, 300));
      const late = await open(); // a board starting now
      const seenByLate = recordEvents(late);

      await t.step(
        "while the older post is written, no reader shows the newer",
        async () => {
          assert.deepEqual(seenByB, []);
          assert.deepEqual(await b.eventsAfter(0, 10), []);
          assert.deepEqual(
            (await b.listMessages({
              before: Number.MAX_SAFE_INTEGER,
              limit: 10,
            }))
              .messages,
            [],
          );
          assert.deepEqual(
            (await late.listMessages({ limit: 10 })).messages,
            [],
          );
        },
      );

      committing.resolve();
      await Promise.all([writing, ...newer.map(({ done }) => done)]);
      // As the board does: the note goes out after the commit.
      await slow`select pg_notify('board_events', ${`message ${olderId}`})`;
      await t.step(
        "once it has committed, every reader gets both, in id order",
        async () => {
          for (const seen of [seenByB, seenByLate]) {
            await waitUntil("both events", () => seen.length >= 2);
            assert.deepEqual(seen, [olderId, quick.id]);
          }
          assert.deepEqual(
            (await b.eventsAfter(0, 10)).map((event) => event.id),
            [olderId, quick.id],
          );
          for (const store of [a, b, late]) {
            assert.deepEqual(
              (await store.listMessages({ limit: 10 })).messages.map((m) =>
                m.id
              ),
              [quick.id, olderId],
            );
          }
        },
      );
    } finally {
      await slow.end();
      await Promise.all(stores.map((store) => store.close()));
    }
  },
});

/** The ids of the message events `store` delivers from now on. */
function recordEvents(store: MessageStore): number[] {
  const ids: number[] = [];
  store.subscribe((event) => {
    if (event.type === "message") ids.push(event.id);
  });
  return ids;
}

async function withTimeout<T>(promise: Promise<T>, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    return await Promise.race([
      promise,
      new Promise<never>((_, reject) => {
        timer = setTimeout(
          () => reject(new Error(`${what} waited for the older one`)),
          2_000,
        );
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Two board stores on `url`, then a session of another program's named `application`
 * (one connection); the caller ends the session and closes the stores.
 */
async function openStoresAndSession(url: string, application: string) {
  const stores = await Promise.all(
    [1, 2].map(() => openPostgresStore(url, { log: () => {} })),
  );
  const session = postgres(url, {
    max: 1,
    onnotice: () => {},
    connection: { application_name: application },
  });
  return { stores, session };
}

Deno.test({
  name:
    "postgres scale: a long transaction of another program on the same server holds no message back",
  ...pgTestOptions(),
  async fn() {
    await using pg = await freshDatabase();
    // A batch job (or a migration) in its own transaction, with a transaction id, open
    // for longer than the test.
    const { stores, session: job } = await openStoresAndSession(
      pg.url,
      "batch job",
    );
    const finish = Promise.withResolvers<void>();
    const started = Promise.withResolvers<void>();
    const running = job.begin(async (tx) => {
      await tx`select pg_current_xact_id()`;
      started.resolve();
      await finish.promise;
    });
    try {
      await started.promise;
      const [a, b] = stores;
      const seen = recordEvents(b);
      const posted = await a.appendMessage({ text: "during the job" });
      await waitUntil("the other store's event", () => seen.length > 0, 5_000);
      assert.deepEqual(seen, [posted.id]);
      assert.deepEqual(
        (await b.eventsAfter(0, 10)).map((event) => event.id),
        [posted.id],
      );
    } finally {
      finish.resolve();
      await running;
      await job.end();
      await Promise.all(stores.map((store) => store.close()));
    }
  },
});

Deno.test({
  name:
    "postgres scale: reads of new messages never scan the whole table, however long the board",
  ...pgTestOptions(),
  async fn() {
    await using pg = await freshDatabase();
    const admin = postgres(pg.url, { max: 1, onnotice: () => {} });
    const stores: MessageStore[] = [];
    const scans = async () => {
      const [row] = await admin`
        select seq_scan from pg_stat_user_tables where relname = 'board_messages'`;
      return Number(row?.seq_scan ?? 0);
    };
    try {
      // The tables, then a long board, before the stores that are counted open.
      await (await openPostgresStore(pg.url, { log: () => {} })).close();
      await admin`
        insert into board_messages (text)
        select 'old ' || n from generate_series(1, 20000) as n`;
      await admin`analyze board_messages`;
      const before = await scans();
      for (let i = 0; i < 2; i++) {
        stores.push(await openPostgresStore(pg.url, { log: () => {} }));
      }
      const [a, b] = stores;
      const seen = recordEvents(b);
      for (let i = 0; i < 20; i++) await a.appendMessage({ text: `new ${i}` });
      await waitUntil("the other store's events", () => seen.length === 20);
      await b.eventsAfter(20_005, 10);
      await b.listMessages({ before: 20_010, limit: 5 });
      // A session reports its counts when it ends, at the latest.
      await Promise.all(stores.splice(0).map((store) => store.close()));
      await new Promise((resolve) => setTimeout(resolve, 500));
      assert.equal(await scans(), before, "sequential scans of board_messages");
    } finally {
      await admin.end();
      await Promise.all(stores.map((store) => store.close()));
    }
  },
});

Deno.test({
  name:
    "postgres scale: a clear waits for a post still being written, and takes it too",
  ...pgTestOptions(),
  async fn() {
    await using pg = await freshDatabase();
    const { stores, session: slow } = await openStoresAndSession(
      pg.url,
      "message_board",
    );
    try {
      const [a, b] = stores;
      const seen: BoardEvent[] = [];
      b.subscribe((event) => seen.push(event));
      const committing = Promise.withResolvers<void>();
      const taken = Promise.withResolvers<number>();
      const writing = slow.begin(async (tx) => {
        const [row] = await tx`
          select messages -> 0 ->> 0 as id
            from board_post(${tx.json([{ text: "older" }])}::jsonb)`;
        taken.resolve(Number(row.id));
        await committing.promise;
      });
      const olderId = await taken.promise;
      const newer = await a.appendMessage({ text: "newer" });
      let cleared = false;
      const clearing = a.clearMessages().then((result) => {
        cleared = true;
        return result;
      });
      await new Promise((resolve) => setTimeout(resolve, 300));
      assert.equal(
        cleared,
        false,
        "the clear waits for the post being written",
      );
      committing.resolve();
      await writing;
      await slow`select pg_notify('board_events', ${`message ${olderId}`})`;
      assert.equal((await clearing).archived, 2);
      await waitUntil("the clear's event", () => seen.length >= 3);
      assert.deepEqual(seen.map((event) => [event.type, event.id]), [
        ["message", olderId],
        ["message", newer.id],
        ["clear", newer.id],
      ]);
      for (const store of stores) {
        assert.deepEqual(
          (await store.listMessages({ limit: 10 })).messages,
          [],
        );
      }
    } finally {
      await slow.end();
      await Promise.all(stores.map((store) => store.close()));
    }
  },
});
