#!/usr/bin/env -S deno run --allow-net=127.0.0.1 --allow-env=DATABASE_URL,PG*
/**
 * The message board on PostgreSQL, so that several board processes, on one machine or many,
 * serve one board. This file is that mode's entry point; it imports `message_board.ts` (the
 * page, the HTTP handling, the command line), never the reverse, so the file board needs
 * neither this file nor the driver (`npm:postgres`, at an exact version, in `deno.lock`).
 *
 * ```sh
 * deno run --allow-net=127.0.0.1 --allow-env=DATABASE_URL,PG* board_postgres.ts --store postgres://board@127.0.0.1:5432/board [--port 8080] [--hostname 127.0.0.1] [--quiet]
 * ```
 *
 * It takes message_board.ts's options (`--help` lists them), with `--store URL` (or the
 * `DATABASE_URL` environment variable) in place of `--data`.
 *
 * What it keeps from the file store:
 * - a post is acknowledged only after its transaction has committed, that is, after
 *   PostgreSQL has flushed it to its write-ahead log; posts that arrive together share one
 *   transaction (group commit, with the board's own {@linkcode WriteQueue});
 * - clearing never destroys data: the messages move to the `board_archive` table in one
 *   transaction;
 * - validation and limits stay in the board; this file stores what it is given.
 *
 * What it adds: live updates across processes. Every post and every clear sends
 * `NOTIFY board_events` inside its own transaction, so the note goes out exactly when the
 * change commits. Each process LISTENs and, on each note, reads the new rows from the tables:
 * the note is only a wake-up call, so a message of any length fits, and a note missed while a
 * connection was down costs nothing, since the next read catches up. (It also means a note
 * made up by any other session that can connect changes nothing: it costs one read.) A
 * post's note names its last id, `message 42`: the process that posted the batch has usually
 * handed it on already, from the statement's answer, and then skips the read.
 *
 * Speed: the newest page is served from memory (see the PostgresStore class), and a batch
 * of posts is one statement (the function `board_insert_batch`), so one round trip, and
 * the writers' lock below is held only while PostgreSQL runs it and commits: processes
 * posting at once wait for each other's commit, never for each other's network or event loop.
 *
 * Ids without gaps in time: every writer holds the same table lock from before it takes an id
 * until it commits, so ids become visible in increasing order and "every message after id N"
 * is always a complete answer. That is what lets a browser resume with `Last-Event-ID`.
 *
 * @module
 */

import postgres from "npm:postgres@3.4.7";
import {
  type BoardEvent,
  type ClearResult,
  CommandLineError,
  EventFanOut,
  MAX_PAGE_LIMIT,
  type Message,
  type MessagePage,
  type MessageStore,
  type NewMessage,
  type PageQuery,
  runCommandLine,
  StartupError,
  StoreUnavailableError,
  WriteQueue,
} from "./message_board.ts";

// The board's types, re-exported so this module's documentation is complete on its own.
export type {
  BoardEvent,
  ClearResult,
  Message,
  MessagePage,
  MessageStore,
  NewMessage,
  PageQuery,
};

/** The channel every board process LISTENs on. */
const CHANNEL = "board_events";
/** Seconds to wait for a connection; then the request fails with 503. */
const CONNECT_TIMEOUT_S = 4;
/**
 * Longest a query may run. The server stops it after STATEMENT_TIMEOUT_MS (`statement_timeout`);
 * the board stops waiting after QUERY_TIMEOUT_MS even when the server does not answer at all
 * (a hung or stopped database), and the request gets 503 well within 5 s.
 */
const STATEMENT_TIMEOUT_MS = 3_000;
/** See STATEMENT_TIMEOUT_MS. */
const QUERY_TIMEOUT_MS = 4_000;
/** What Retry-After says while the database cannot be reached. */
const RETRY_AFTER_S = 2;
/** Connections per process for queries (the LISTEN connection is one more). */
const MAX_CONNECTIONS = 10;
/**
 * Reads that clients start (older pages, a reconnecting browser's replay) run at most this
 * many at once, so the pool always keeps connections for posts and the catch-up read: a
 * reconnect storm, or reads stuck behind another session's lock, took all ten, and posts
 * waited behind them until they got 503.
 */
const MAX_CLIENT_READS = MAX_CONNECTIONS - 2;
/** Client reads that may wait for a turn; past this a read gets 503 at once (load shedding). */
const MAX_WAITING_READS = 200;
/** Rows read per catch-up query; a longer backlog is read in several queries. */
const MAX_EVENTS_PER_READ = 500;
/** Newest messages each process keeps in memory: the newest page, with room for deletes. */
const CACHED_MESSAGES = 2 * MAX_PAGE_LIMIT;
/** Milliseconds between reads for changes when no note has come (LISTEN is the fast path). */
const POLL_MS = 10_000;
/** Milliseconds between attempts to LISTEN again after its connection was lost. */
const LISTEN_RETRY_MS = 1_000;
/**
 * Longest wait, in seconds, before reconnecting a lost connection. The driver's own backoff
 * grows to 20 s, so after a long outage the first requests would hang that long even with
 * the database back.
 */
const MAX_RECONNECT_DELAY_S = 1;

/**
 * The tables, created when missing (and brought up to date when an older board made them).
 *
 * - `board_messages`: the board. Ids never pass 2^53 - 1, the largest a JSON number holds.
 * - `board_archive`: every message taken off the board, by a clear (`clear_id`) or a delete
 *   (`delete_id`); a restore moves a clear's messages back.
 * - `board_clears`: each clear and `through_id`, the last message id it removed, so that a
 *   client which saw message N can be told "everything up to here is gone".
 * - `board_changes`: every clear, delete and restore in commit order, with `newest_id`, the
 *   last id given out then: a change sorts after message `newest_id` and before the next.
 * - `board_insert_batch(batch)`: a batch of posts as one statement (one transaction): takes
 *   the writers' lock, inserts, and returns the new messages with the newest message and
 *   change ids from before them (see PostgresStore.#handOn); its note names the last id.
 *   Replaced on every start, so it always matches the board that runs.
 *
 * The advisory lock keeps two processes that start together from racing on
 * `create table if not exists` (which is not safe against itself). The columns and the
 * constraint an older board lacked are added only when missing: an ALTER TABLE locks its
 * table against everything, and would deadlock with a board already serving.
 */
const SCHEMA = `
  select pg_advisory_xact_lock(hashtext('message_board schema'));
  create table if not exists board_messages (
    id bigint generated always as identity primary key,
    text text not null,
    name text,
    posted_at timestamptz not null default now()
  );
  create table if not exists board_clears (
    id bigint generated always as identity primary key,
    through_id bigint not null,
    cleared_at timestamptz not null default now()
  );
  create table if not exists board_archive (
    id bigint primary key,
    text text not null,
    name text,
    posted_at timestamptz not null,
    clear_id bigint not null references board_clears (id)
  );
  create table if not exists board_changes (
    id bigint generated always as identity primary key,
    kind text not null check (kind in ('clear', 'delete', 'restore')),
    event_id bigint not null,
    newest_id bigint not null,
    changed_at timestamptz not null default now()
  );
  do $$ begin
    if not exists (select from information_schema.columns
                   where table_name = 'board_clears' and column_name = 'restored_at') then
      alter table board_clears add column restored_at timestamptz;
      alter table board_archive alter column clear_id drop not null;
      alter table board_archive add column delete_id bigint references board_changes (id);
    end if;
    if not exists (select from pg_constraint where conname = 'board_messages_id_safe') then
      alter table board_messages add constraint board_messages_id_safe
        check (id <= 9007199254740991);
    end if;
  end $$;
  create or replace function board_insert_batch(batch jsonb,
      out messages jsonb, out previous_id bigint, out change_id bigint)
    language plpgsql as $body$
  begin
    -- One writer at a time, from before it takes ids until it commits (see the module doc).
    lock table board_messages in share row exclusive mode;
    -- What came before this batch: a process that has read up to here can hand the batch on
    -- without reading it back (see PostgresStore.#handOn).
    select max(m.id) into previous_id from board_messages m;
    select coalesce(max(c.id), 0) into change_id from board_changes c;
    with inserted as (
      insert into board_messages as m (text, name)
      select post ->> 'text', post ->> 'name'
        from jsonb_array_elements(batch) with ordinality as b (post, position)
       order by position
      returning m.id, m.text, m.name, m.posted_at
    )
    -- posted_at as text: the very string the driver parses when it reads the column.
    select jsonb_agg(jsonb_build_array(i.id, i.text, i.name, i.posted_at::text)
                     order by i.id)
      into messages from inserted i;
    -- "message LAST": the poster, which has the batch already, need not read it back.
    perform pg_notify('${CHANNEL}', 'message ' || (messages -> -1 ->> 0));
  end
  $body$;
`;

/** The last message id given out, inside a transaction that holds the writers' lock. */
const LAST_ID_GIVEN =
  `coalesce(pg_sequence_last_value(pg_get_serial_sequence('board_messages', 'id')), 0)`;

/** Options for {@linkcode openPostgresStore}. */
export interface PostgresStoreOptions {
  /** Where problems of the background listener are reported. @default console.error */
  log?: (line: string) => void;
}

type Sql = postgres.Sql;

/** A message row as the queries select it (bigint arrives as a string). */
interface MessageRow {
  id: string;
  text: string;
  name: string | null;
  posted_at: Date;
}

/** The rows of a query that returns exactly one (an aggregate, an insert ... returning). */
type OneRow = [postgres.Row];

/** A message as board_insert_batch returns it: [id, text, name, posted_at as text]. */
type InsertedMessage = [number, string, string | null, string];

/** What board_insert_batch returns (bigint arrives as a string). */
interface InsertedBatch {
  /** The batch's messages, in id order. */
  messages: InsertedMessage[];
  /** The newest message id on the board before the batch (null: none). */
  previous_id: string | null;
  /** The newest board_changes id before the batch (0: none). */
  change_id: string;
}

/** A post's note: "message LAST" (LAST: the batch's last id). */
const POST_NOTE = /^message (\d+)$/;

/** A post waiting in the queue; `abandoned` once its client got 503 for waiting too long. */
interface PendingPost {
  input: NewMessage;
  abandoned: boolean;
}

/**
 * Connects to `url` (`postgres://user:password@host:port/database`), creates the tables when
 * missing and starts listening for changes from other processes. Throws
 * {@linkcode StoreUnavailableError} when the database cannot be reached.
 */
export async function openPostgresStore(
  url: string,
  { log = console.error }: PostgresStoreOptions = {},
): Promise<MessageStore> {
  const settings = {
    connect_timeout: CONNECT_TIMEOUT_S,
    // Otherwise each new connection first runs a query for array types whose failure (the
    // database shutting down at that moment) nothing catches, and Deno ends the process on
    // an unhandled rejection. We need no array types from the catalogue.
    fetch_types: false,
    backoff: (attempt: number) =>
      Math.min(0.05 * 2 ** attempt, MAX_RECONNECT_DELAY_S),
    onnotice: () => {}, // "relation already exists, skipping" is not news
    connection: {
      application_name: "message_board",
      statement_timeout: STATEMENT_TIMEOUT_MS,
      // A transaction left open (a board process stopped mid-way) must not hold the lock.
      idle_in_transaction_session_timeout: 2 * STATEMENT_TIMEOUT_MS,
    },
  };
  const sql = postgres(url, { ...settings, max: MAX_CONNECTIONS });
  try {
    // A LATIN1 (or other one-byte) database cannot hold an emoji: such a post would fail
    // with 500, and with it every post of its batch. SQL_ASCII keeps the bytes as sent.
    const [{ encoding }] = await withDeadline(
      sql<OneRow>`select current_setting('server_encoding') as encoding`,
      "reading the encoding",
    );
    if (encoding !== "UTF8" && encoding !== "SQL_ASCII") {
      throw new StartupError(
        `the database's encoding is ${encoding}, which cannot hold every message; ` +
          `create it with UTF8 (createdb --encoding=UTF8 --template=template0)`,
      );
    }
    await withDeadline(sql.begin((tx) => tx.unsafe(SCHEMA)), "creating tables");
    // Every id that exists, ever existed or may come back with a restore is at most this.
    const [row] = await withDeadline(
      sql<OneRow>`
      select greatest((select max(id) from board_messages),
                      (select max(through_id) from board_clears),
                      (select max(newest_id) from board_changes), 0) as message,
             (select coalesce(max(id), 0) from board_changes) as change`,
      "reading the newest ids",
    );
    const store = new PostgresStore(
      sql,
      Number(row.message),
      Number(row.change),
      log,
    );
    await store.listen(
      postgres(url, { ...settings, ...store.listenerOptions() }),
    );
    return store;
  } catch (error) {
    await sql.end({ timeout: 0 });
    throw toStoreError(error);
  }
}

/** The newest messages, kept in memory from the change events (see PostgresStore). */
interface NewestCache {
  /** Oldest first; at most CACHED_MESSAGES. */
  messages: Message[];
  /** Whether older messages exist on the board. */
  hasOlder: boolean;
}

/**
 * The PostgreSQL store once open. Posts queue up and are written in batches by one loop, as
 * in the file store.
 *
 * The newest page costs no query: each process keeps the newest messages in memory and
 * updates them from the change events it reads anyway for live updates (a change by any
 * process reaches every process that way). Whenever it may have missed one (the LISTEN
 * connection lost, a read failed, a restore), it forgets them and the next page is read from
 * the database, which fills them again. Older pages are always read from the database.
 */
class PostgresStore implements MessageStore {
  #writes = new WriteQueue<PendingPost, Message | null>(async (posts) => {
    const inserting = this.#insertBatch(posts);
    this.#inserting = inserting;
    try {
      return await inserting;
    } catch (error) {
      throw this.#toStoreError(error);
    } finally {
      this.#inserting = null;
    }
  });
  /** The batch being written; a note that arrives meanwhile may be its own (see onnotify). */
  #inserting: Promise<unknown> | null = null;
  #events: EventFanOut;
  #listenSql: Sql | null = null;
  #retryTimer: ReturnType<typeof setTimeout> | undefined;
  #pollTimer: ReturnType<typeof setInterval> | undefined;
  #relistening: Promise<void> | null = null;
  /** LISTEN is active: every change is announced to this process. */
  #listening = false;
  // Log a lost LISTEN, or failing reads, once per outage rather than every second.
  #listenFailing = false;
  #readFailing = false;
  #reading: Promise<void> | null = null;
  #readAgain = false;
  #writable = true;
  #idsUsedUp = false;
  #closed = false;
  #cache: NewestCache | null = null;
  #reads = new TurnTaker(MAX_CLIENT_READS, MAX_WAITING_READS);
  /** Counts changes applied to the cache, so a fill that raced with one is not kept. */
  #cacheVersion = 0;
  /** The newest message id and change id this process committed itself. */
  #ownMessageId = 0;
  #ownChangeId = 0;

  constructor(
    private sql: Sql,
    /** The last message id handed to subscribers. */
    private lastMessageId: number,
    /** The last change (its row id in board_changes) handed to subscribers. */
    private lastChangeId: number,
    private log: (line: string) => void,
  ) {
    this.#events = new EventFanOut(log);
  }

  get writable(): boolean {
    return this.#writable && !this.#closed;
  }

  async listMessages({ before, limit }: PageQuery): Promise<MessagePage> {
    if (before === undefined && limit <= MAX_PAGE_LIMIT) {
      const cached = await this.#newestFromCache(limit);
      if (cached !== null) return cached;
    }
    const rows = await this.#clientRead((sql) =>
      sql<MessageRow[]>`
        select id, text, name, posted_at from board_messages
        where ${before === undefined ? sql`true` : sql`id < ${before}`}
        order by id desc limit ${limit + 1}`
    );
    return {
      messages: rows.slice(0, limit).map(toMessage),
      hasOlder: rows.length > limit,
    };
  }

  async appendMessage(input: NewMessage): Promise<Message> {
    if (this.#closed) throw new StoreUnavailableError("the store is closed");
    const post = { input, abandoned: false };
    try {
      const message = await withDeadline(this.#writes.add(post), "posting");
      return message!;
    } catch (error) {
      post.abandoned = true; // not written if its batch has not started yet
      throw error;
    }
  }

  /**
   * Moves every message into `board_archive` and records the clear, in one transaction
   * under the writers' lock, so no post can slip in between the copy and the delete.
   */
  clearMessages(): Promise<ClearResult> {
    return this.#change<ClearResult>("clearing", async (tx) => {
      const [{ last }] = await tx<
        OneRow
      >`select max(id) as last from board_messages`;
      if (last === null) return [{ archived: 0, archive: null }, null];
      const [clear] = await tx<OneRow>`
        insert into board_clears (through_id) values (${last}) returning id`;
      const change = await recordChange(tx, "clear", last);
      const moved = await tx`
        with moved as (delete from board_messages returning id, text, name, posted_at)
        insert into board_archive (id, text, name, posted_at, clear_id)
        select id, text, name, posted_at, ${clear.id} from moved`;
      return [
        { archived: moved.count, archive: "table board_archive" },
        change,
      ];
    });
  }

  /** Moves one message into `board_archive` (with its delete), under the writers' lock. */
  deleteMessage(id: number): Promise<boolean> {
    return this.#change<boolean>("deleting", async (tx) => {
      const found = await tx`select 1 from board_messages where id = ${id}`;
      if (found.length === 0) return [false, null];
      const change = await recordChange(tx, "delete", id);
      await tx`
        with moved as (delete from board_messages where id = ${id}
                       returning id, text, name, posted_at)
        insert into board_archive (id, text, name, posted_at, delete_id)
        select id, text, name, posted_at, ${change} from moved`;
      return [true, change];
    });
  }

  /** Moves the messages of the newest clear not yet restored back, ids kept. */
  restoreNewestArchive(): Promise<{ restored: number }> {
    return this.#change<{ restored: number }>("restoring", async (tx) => {
      const [clear] = await tx`
        select id from board_clears where restored_at is null order by id desc limit 1`;
      if (clear === undefined) return [{ restored: 0 }, null];
      const moved = await tx`
        with moved as (delete from board_archive where clear_id = ${clear.id}
                       returning id, text, name, posted_at)
        insert into board_messages (id, text, name, posted_at) overriding system value
        select id, text, name, posted_at from moved`;
      await tx`update board_clears set restored_at = now() where id = ${clear.id}`;
      const [{ newest }] = await tx<OneRow>`
        select coalesce(max(id), 0) as newest from board_messages`;
      const change = await recordChange(tx, "restore", newest);
      return [{ restored: moved.count }, change];
    });
  }

  /**
   * What a client that last saw event `id` has missed (see MessageStore.eventsAfter), in one
   * statement, so one snapshot: a change that commits meanwhile is in every part or in none.
   */
  async eventsAfter(id: number, limit: number): Promise<BoardEvent[]> {
    const rows = await this.#clientRead((sql) =>
      sql<(MessageRow & { kind: BoardEvent["type"] })[]>`
        with last_clear as (
          select through_id, restored_at from board_clears order by id desc limit 1
        ), clear_change as (
          select coalesce(max(id), 0) as id from board_changes where kind = 'clear'
        )
        select * from (
          select 0 as rank, 0::bigint as seq, 'clear' as kind, through_id as id,
                 null as text, null as name, null::timestamptz as posted_at
            from last_clear where through_id >= ${id} and restored_at is null
          union all
          (select 1, id, 'delete', event_id, null, null, null from board_changes
            where kind = 'delete' and id > (select id from clear_change)
              and event_id <= ${id} and newest_id >= ${id}
            order by id limit ${limit})
          union all
          (select 2, id, 'message', id, text, name, posted_at from board_messages
            where id > ${id} order by id limit ${limit})
          union all
          (select 3, id, 'restore', event_id, null, null, null from board_changes
            where kind = 'restore' and event_id > ${id} order by id desc limit 1)
        ) as missed
        order by rank, seq, id
        limit ${limit}`
    );
    return rows.map((row) =>
      row.kind === "message"
        ? messageEvent(toMessage(row))
        : { type: row.kind, id: Number(row.id) }
    );
  }

  subscribe(listener: (event: BoardEvent) => void): () => void {
    return this.#events.subscribe(listener);
  }

  /** Finishes the posts already accepted, stops listening and closes every connection. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    clearTimeout(this.#retryTimer);
    clearInterval(this.#pollTimer);
    await this.#writes.idle();
    this.#events.clear();
    await this.#reading;
    await this.#relistening;
    // Nothing of ours is in flight now, so the connections can go at once. (A plain end()
    // can wait for ever on a connection the server dropped in the middle of a query: the
    // driver still counts that query as running.)
    await Promise.all([
      this.#listenSql?.end({ timeout: 0 }),
      this.sql.end({ timeout: 0 }),
    ]);
  }

  // -- Writing -------------------------------------------------------------

  /** Inserts posts in one transaction; resolves, in input order, once it has committed. */
  async #insertBatch(
    pending: PendingPost[],
  ): Promise<(Message | null)[]> {
    const live = pending.filter((post) => !post.abandoned);
    if (live.length === 0) return pending.map(() => null);
    const posts = live.map(({ input: { text, name } }) => ({
      text,
      name: name ?? null,
    }));
    // One statement, so one transaction and one round trip: the writers' lock is held only
    // while PostgreSQL runs it and commits, never while a reply travels to us and back.
    // The batch travels as one JSON array, [{"text": "...", "name": "..."}, ...]; its rows
    // are inserted, and numbered, in array order (see board_insert_batch in SCHEMA).
    const [batch] = await this.sql<[InsertedBatch]>`
      select * from board_insert_batch(${this.sql.json(posts)}::jsonb)`;
    this.#writable = true;
    const messages = batch.messages.map(fromInserted);
    this.#ownMessageId = Math.max(this.#ownMessageId, messages.at(-1)!.id);
    this.#handOn(
      messages,
      Number(batch.previous_id ?? 0),
      Number(batch.change_id),
    );
    let next = 0;
    // By the posts sent, not by `abandoned` now: one may have given up (503) while its batch
    // was being written, and each later post of the batch then got its neighbour's message.
    const sent = new Set(live);
    return pending.map((post) => sent.has(post) ? messages[next++]! : null);
  }

  /**
   * Hands this process's own new batch to the cache and the subscribers without reading it
   * back, when it has read everything that came before the batch (messages up to
   * `previous`, changes up to `change`): then they are the next events. Returns false,
   * having done nothing, otherwise: then the catch-up read delivers them, in order.
   */
  #handOn(messages: Message[], previous: number, change: number): boolean {
    if (previous > this.lastMessageId || change > this.lastChangeId) {
      return false;
    }
    for (const message of messages) {
      if (message.id <= this.lastMessageId) continue; // a catch-up was quicker
      this.lastMessageId = message.id;
      const event = messageEvent(message);
      this.#applyToCache(event);
      this.#events.publish(event);
    }
    return true;
  }

  /**
   * Runs a clear, delete or restore in one transaction under the writers' lock, announced
   * with NOTIFY. `run` returns its result and the board_changes row it added (null: none).
   */
  async #change<T>(
    doing: string,
    run: (tx: postgres.TransactionSql) => Promise<[T, number | null]>,
  ): Promise<T> {
    const [result, change] = await this.#query((sql) =>
      withDeadline(
        sql.begin(async (tx) => {
          await tx`lock table board_messages in share row exclusive mode`;
          const outcome = await run(tx);
          if (outcome[1] !== null) {
            await tx`select pg_notify(${CHANNEL}, 'change')`;
          }
          return outcome;
        }) as Promise<[T, number | null]>,
        doing,
      )
    );
    if (change !== null) {
      this.#ownChangeId = Math.max(this.#ownChangeId, change);
    }
    return result;
  }

  // -- Listening -----------------------------------------------------------

  /**
   * Options for the LISTEN connection. We reconnect it ourselves rather than use the driver's
   * `sql.listen()`, which after `sql.end()` can leave a reconnect timer behind that opens a
   * new connection. `onnotify` is the option `sql.listen()` is built on (the driver's
   * src/index.js); its type declarations omit it.
   */
  listenerOptions() {
    return {
      max: 1,
      max_lifetime: null, // a recycled connection would silently drop the LISTEN
      onnotify: (_channel: string, payload: string) =>
        this.#noteArrived(payload),
      onclose: () => {
        // Changes made from now until LISTEN works again are announced to no one.
        this.#listening = false;
        this.#forgetCache();
        this.#listenLater();
      },
    };
  }

  /**
   * A note: "change" (a clear, delete or restore), or a post's "message LAST" (an older board
   * sends just "message"). A note is only ever a wake-up call: any session that can connect
   * may NOTIFY on our channel, so nothing in a note is taken as content. A post whose
   * messages this process has already (its own batch, see #handOn) costs no read.
   */
  #noteArrived(note: string): void {
    const last = Number(POST_NOTE.exec(note)?.[1] ?? Infinity);
    const readIfNew = () => {
      if (last > this.lastMessageId) void this.#catchUp();
    };
    // Our own note may arrive before our own batch's answer: decide once that is in.
    if (this.#inserting === null) readIfNew();
    else this.#inserting.then(readIfNew, readIfNew);
  }

  /** Starts listening on `listener`, a connection pool of one made with listenerOptions(). */
  async listen(listener: Sql): Promise<void> {
    this.#listenSql = listener;
    try {
      await withDeadline(listener`listen ${listener(CHANNEL)}`, "listening");
    } catch (error) {
      this.#closed = true;
      await listener.end({ timeout: 0 });
      throw error;
    }
    this.#listening = true;
    // The safety net: should a note ever go missing with no sign of a lost connection,
    // this read still delivers the change, only later.
    this.#pollTimer = setInterval(() => void this.#catchUp(), POLL_MS);
  }

  #listenLater(): void {
    if (this.#closed || this.#retryTimer !== undefined) return;
    this.#retryTimer = setTimeout(() => {
      this.#retryTimer = undefined;
      this.#relistening = this.#relisten().finally(() =>
        this.#relistening = null
      );
    }, LISTEN_RETRY_MS);
  }

  /** LISTENs again after the connection was lost, then reads what was missed meanwhile. */
  async #relisten(): Promise<void> {
    try {
      await withDeadline(
        this.#listenSql!`listen ${this.#listenSql!(CHANNEL)}`,
        "listening",
      );
      if (this.#listenFailing) {
        this.log("message board: listening for changes again");
      }
      this.#listenFailing = false;
      this.#listening = true;
      // Read whatever was posted while no one was listening.
      await this.#catchUp();
    } catch (error) {
      if (this.#closed) return;
      if (!this.#listenFailing) {
        this.log(
          `message board: cannot listen for changes (retrying): ${
            describe(error)
          }`,
        );
      }
      this.#listenFailing = true;
      this.#listenLater();
    }
  }

  /**
   * Reads the rows added since the last read and hands them to the cache and the subscribers,
   * in order. Runs one read at a time; a note that arrives during a read makes one more read
   * after it.
   */
  #catchUp(): Promise<void> {
    if (this.#reading) {
      this.#readAgain = true;
      return this.#reading;
    }
    this.#reading = (async () => {
      try {
        do {
          this.#readAgain = false;
          while (
            !this.#closed &&
            (await this.#readNewEvents()) === MAX_EVENTS_PER_READ
          );
        } while (this.#readAgain && !this.#closed);
        this.#readFailing = false;
      } catch (error) {
        // The next note, the next poll or the re-LISTEN after an outage reads again.
        this.#forgetCache();
        if (this.#closed || this.#readFailing) return;
        this.#readFailing = true;
        this.log(
          `message board: cannot read new changes (retrying): ${
            describe(error)
          }`,
        );
      } finally {
        this.#reading = null;
      }
    })();
    return this.#reading;
  }

  /**
   * One catch-up query; returns how many rows it read. Messages and changes come in commit
   * order: a change right after message `newest_id` (the last id given out when it was
   * made), changes among themselves by their own id.
   */
  async #readNewEvents(): Promise<number> {
    const rows = await withDeadline(
      this.sql<
        (MessageRow & { kind: BoardEvent["type"]; seq: string })[]
      >`
      select * from (
        (select 'message' as kind, id as seq, id as position, id, text, name, posted_at
           from board_messages where id > ${this.lastMessageId} order by id
          limit ${MAX_EVENTS_PER_READ})
        union all
        (select kind, id, newest_id, event_id, null, null, null::timestamptz
           from board_changes where id > ${this.lastChangeId} order by id
          limit ${MAX_EVENTS_PER_READ})
      ) as changes
      order by position, (kind = 'message') desc, seq
      limit ${MAX_EVENTS_PER_READ}`,
      "reading changes",
    );
    for (const row of rows) {
      // A row this process already handed on (its own post, see #handOnOwn) is skipped.
      let event: BoardEvent;
      if (row.kind === "message") {
        if (Number(row.id) <= this.lastMessageId) continue;
        this.lastMessageId = Number(row.id);
        event = messageEvent(toMessage(row));
      } else {
        if (Number(row.seq) <= this.lastChangeId) continue;
        this.lastChangeId = Number(row.seq);
        event = { type: row.kind, id: Number(row.id) };
      }
      this.#applyToCache(event);
      this.#events.publish(event);
    }
    return rows.length;
  }

  // -- The newest page, in memory ------------------------------------------

  /** The newest page from memory, or null when it must be read from the database. */
  async #newestFromCache(limit: number): Promise<MessagePage | null> {
    if (!this.#listening || this.#readFailing || this.#closed) return null;
    // This process's own last write may not have come back as an event yet: read it first,
    // so a poster always sees their own message.
    if (
      this.#ownMessageId > this.lastMessageId ||
      this.#ownChangeId > this.lastChangeId
    ) {
      await withDeadline(this.#catchUp(), "reading changes");
      if (!this.#listening || this.#readFailing) return null;
    }
    let cache = this.#cache;
    if (cache === null || (cache.messages.length < limit && cache.hasOlder)) {
      cache = await this.#fillCache();
    }
    const messages = cache.messages.slice(-limit).reverse();
    return {
      messages,
      hasOlder: cache.hasOlder || cache.messages.length > limit,
    };
  }

  /** Reads the newest messages; keeps them unless a change arrived meanwhile. */
  async #fillCache(): Promise<NewestCache> {
    const version = this.#cacheVersion;
    const rows = await this.#clientRead((sql) =>
      sql<MessageRow[]>`
        select id, text, name, posted_at from board_messages
        order by id desc limit ${CACHED_MESSAGES + 1}`
    );
    const cache = {
      messages: rows.slice(0, CACHED_MESSAGES).map(toMessage).reverse(),
      hasOlder: rows.length > CACHED_MESSAGES,
    };
    // A change applied during the query may be older than what it read: keep nothing then.
    // Changes that arrive later are applied on top (each is harmless to apply twice).
    if (
      version === this.#cacheVersion && this.#listening && !this.#readFailing
    ) {
      this.#cache = cache;
    }
    return cache;
  }

  #forgetCache(): void {
    this.#cache = null;
    this.#cacheVersion++;
  }

  /** Brings the newest messages in memory up to date with one change. */
  #applyToCache(event: BoardEvent): void {
    this.#cacheVersion++;
    const cache = this.#cache;
    if (cache === null) return;
    const { messages } = cache;
    switch (event.type) {
      case "message":
        if (event.id <= (messages.at(-1)?.id ?? 0)) return; // already read by a fill
        messages.push(event.message);
        if (messages.length > CACHED_MESSAGES) {
          messages.shift();
          cache.hasOlder = true;
        }
        return;
      case "clear":
        // Everything up to `id` went; anything newer in memory is a surprise: read again.
        if ((messages.at(-1)?.id ?? 0) <= event.id) {
          this.#cache = { messages: [], hasOlder: false };
        } else this.#forgetCache();
        return;
      case "delete": {
        const index = messages.findIndex((message) => message.id === event.id);
        if (index !== -1) messages.splice(index, 1);
        else if (cache.hasOlder) this.#forgetCache(); // hasOlder may be out of date
        return;
      }
      case "restore":
        this.#forgetCache(); // old ids came back: read them
        return;
    }
  }

  /** Runs a query, turning "cannot reach the database" into StoreUnavailableError. */
  async #query<T>(run: (sql: Sql) => Promise<T>): Promise<T> {
    if (this.#closed) throw new StoreUnavailableError("the store is closed");
    try {
      const result = await withDeadline(run(this.sql), "a query");
      this.#writable = true;
      return result;
    } catch (error) {
      throw this.#toStoreError(error);
    }
  }

  /**
   * A query a client's request started, run when one of MAX_CLIENT_READS turns is free. The
   * wait counts toward the same deadline as the query, so a read never waits for ever.
   */
  #clientRead<T>(run: (sql: Sql) => Promise<T>): Promise<T> {
    if (this.#closed) {
      return Promise.reject(new StoreUnavailableError("the store is closed"));
    }
    const givenUpAt = Date.now() + QUERY_TIMEOUT_MS;
    return withDeadline(
      this.#reads.run(() =>
        // Its client has had its 503 already: the turn goes to the next read.
        Date.now() >= givenUpAt
          ? Promise.reject(new StoreUnavailableError("a read waited too long"))
          : this.#query(run)
      ),
      "reading",
    );
  }

  /** toStoreError, and notes that writes fail (writable) or that every id is used. */
  #toStoreError(error: unknown): unknown {
    const code = (error as { constraint_name?: unknown }).constraint_name;
    if (code === "board_messages_id_safe") {
      if (!this.#idsUsedUp) {
        this.log(
          `message board: every message id up to ${Number.MAX_SAFE_INTEGER} is used; no ` +
            `more posts are accepted (ids are never reused)`,
        );
      }
      this.#idsUsedUp = true;
      return new StoreUnavailableError("every message id is used", {
        cause: error,
        retryAfterSeconds: 3600,
      });
    }
    const storeError = toStoreError(error);
    if (storeError instanceof StoreUnavailableError) this.#writable = false;
    return storeError;
  }
}

/** Adds a board_changes row (kind, event id, the last id given out); returns its id. */
async function recordChange(
  tx: postgres.TransactionSql,
  kind: "clear" | "delete" | "restore",
  eventId: number | string,
): Promise<number> {
  const [row] = await tx.unsafe<OneRow>(
    `insert into board_changes (kind, event_id, newest_id)
     values ($1, $2, ${LAST_ID_GIVEN}) returning id`,
    [kind, eventId],
  );
  return Number(row.id);
}

/**
 * Runs tasks at most `size` at once, in the order they came; `maxWaiting` more may wait, and
 * a task past that is refused with StoreUnavailableError (503 with Retry-After).
 */
class TurnTaker {
  #running = 0;
  #waiting: (() => void)[] = [];

  constructor(readonly size: number, readonly maxWaiting: number) {}

  async run<T>(task: () => Promise<T>): Promise<T> {
    if (this.#running >= this.size) {
      if (this.#waiting.length >= this.maxWaiting) {
        throw new StoreUnavailableError(
          `${this.maxWaiting} reads are waiting for the database already`,
          { retryAfterSeconds: RETRY_AFTER_S },
        );
      }
      const turn = Promise.withResolvers<void>();
      this.#waiting.push(turn.resolve);
      await turn.promise;
    } else {
      this.#running++;
    }
    try {
      return await task();
    } finally {
      // The turn passes straight to the next waiting task, or is given back.
      const next = this.#waiting.shift();
      if (next) next();
      else this.#running--;
    }
  }
}

/**
 * Waits at most QUERY_TIMEOUT_MS for `promise`, then gives up with StoreUnavailableError: a
 * database that stopped answering (SIGSTOP, a hung host) never hangs a request.
 */
function withDeadline<T>(promise: Promise<T>, doing: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () =>
        reject(
          new StoreUnavailableError(
            `the database did not answer within ${QUERY_TIMEOUT_MS} ms (${doing})`,
            { retryAfterSeconds: RETRY_AFTER_S },
          ),
        ),
      QUERY_TIMEOUT_MS,
    );
  });
  return Promise.race([promise, deadline]).finally(() => clearTimeout(timer));
}

/**
 * Connection failures become {@linkcode StoreUnavailableError} (503); anything else, a bug or a
 * broken schema, stays as it is (500). SQLSTATE classes 08 (connection exception), 53
 * (insufficient resources) and 57 (operator intervention, e.g. the server shutting down) are
 * outages, and so are 3D000 (the database is gone: dropped, or not yet restored from a backup)
 * and class 28 (the role or its password changed): a new connection cannot be made, whatever
 * the request. Errors without a SQLSTATE come from the socket (ECONNREFUSED...).
 */
function toStoreError(error: unknown): unknown {
  if (!(error instanceof Error) || error instanceof StoreUnavailableError) {
    return error;
  }
  const code = String((error as { code?: unknown }).code ?? "");
  const outage = error.name === "PostgresError"
    ? /^(08|53|57|28|3D000)/.test(code)
    : code !== "";
  if (!outage) return error;
  return new StoreUnavailableError(
    `the database is unavailable (${describe(error)})`,
    { cause: error, retryAfterSeconds: RETRY_AFTER_S },
  );
}

/** One line for the log: the error's message, which the driver keeps free of passwords. */
function describe(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/** A database row as the board's message: same keys, same order as the file store's. */
function toMessage(row: MessageRow): Message {
  const id = Number(row.id);
  const postedAt = new Date(row.posted_at).toISOString();
  return row.name === null
    ? { id, text: row.text, postedAt }
    : { id, text: row.text, name: row.name, postedAt };
}

/** A message of board_insert_batch (or of its note) as the board's message. */
function fromInserted([id, text, name, postedAt]: InsertedMessage): Message {
  // postedAt is the column's text, parsed as the driver parses it: the same Date either way.
  return toMessage({
    id: String(id),
    text,
    name,
    posted_at: new Date(postedAt),
  });
}

function messageEvent(message: Message): BoardEvent {
  return { type: "message", id: message.id, message };
}

/**
 * A database URL fit for logs: the password hidden.
 *
 * @example redactUrl("postgres://board:secret@db:5432/board") // => "postgres://board:***@db:5432/board"
 */
export function redactUrl(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.password !== "") parsed.password = "***";
    return parsed.href;
  } catch {
    return "(a database URL that does not parse)";
  }
}

// ---------------------------------------------------------------------------
// Command line: message_board.ts's, with the database in place of the data file.
// ---------------------------------------------------------------------------

function main(): Promise<void> {
  return runCommandLine(Deno.args, "board_postgres", (commandLine) => {
    if (commandLine.dataFile !== undefined) {
      throw new CommandLineError(
        "--data is the file store's; board_postgres.ts keeps the messages in --store",
      );
    }
    // DATABASE_URL is read only when --store is missing (the flag wins).
    const url = commandLine.databaseUrl ?? Deno.env.get("DATABASE_URL");
    if (url === undefined) {
      throw new CommandLineError(
        "give the database: --store postgres://user@host:5432/board (or set DATABASE_URL)",
      );
    }
    if (!/^postgres(ql)?:\/\//.test(url)) {
      throw new CommandLineError("DATABASE_URL must be a postgres:// URL");
    }
    return {
      storeLabel: `store: ${redactUrl(url)}`,
      openStore: async () => {
        try {
          return await openPostgresStore(url);
        } catch (error) {
          if (error instanceof Deno.errors.NotCapable) throw error; // a missing --allow-env
          throw new StartupError(
            `cannot open the database at ${redactUrl(url)}: ${describe(error)}`,
          );
        }
      },
    };
  });
}

if (import.meta.main) {
  await main();
}
