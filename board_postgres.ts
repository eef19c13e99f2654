#!/usr/bin/env -S deno run --allow-net=127.0.0.1 --allow-env='DATABASE_URL,PG*'
/**
 * The message board on PostgreSQL, so that several board processes, on one machine or many,
 * serve one board. This file is that mode's entry point; it imports `message_board.ts` (the
 * page, the HTTP handling, the command line), never the reverse, so the file board needs
 * neither this file nor the driver (`npm:postgres`, at an exact version, in `deno.lock`).
 *
 * ```sh
 * deno run --allow-net=127.0.0.1 --allow-env='DATABASE_URL,PG*' board_postgres.ts --store postgres://board@127.0.0.1:5432/board
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
 * `NOTIFY board_events` once it has committed (a clear, delete or restore inside its own
 * transaction; a post just after, see below). Each process LISTENs and, on each note, reads
 * the new rows from the tables: the note is only a wake-up call, so a message of any length
 * fits, and a note missed while a connection was down costs nothing, since the next read
 * catches up. (It also means a note made up by any other session that can connect changes
 * nothing: it costs one read.) A post's note names its last id, `message 42`: the process
 * that posted the batch has usually handed it on already, from the statement's answer, and
 * then skips the read.
 *
 * Speed: the newest page is served from memory (see the PostgresStore class), and a batch
 * of posts is one statement (the function `board_post`), so one round trip. Processes posting
 * at once do not wait for each other's commit: PostgreSQL flushes their commits to the
 * write-ahead log together, so a second process no longer takes turns with the first. That
 * is why a post's NOTIFY is not in its transaction: PostgreSQL
 * holds one lock from a notifying transaction's commit until it is flushed, so notifying
 * commits always take turns.
 *
 * Ids without gaps in time: commits may finish out of id order (ids 5-8 committed while 1-4
 * are still being written), yet a reader must never show 5 and later 1, or "every message
 * after id N" would not be a complete answer, and that is what lets a browser resume with
 * `Last-Event-ID`. So:
 * - a post takes its transaction id and its message ids together, under a lock held for just
 *   that moment (board_post): a post with an older transaction id has the smaller ids;
 * - every row keeps its writer's transaction id (`xid`);
 * - a reader first notes the oldest board writer still running (board_visible_horizon), then
 *   reads, in a fresh snapshot, only the messages written by older transactions: all of
 *   them have committed (or failed) by then, so every smaller id is settled. Newer messages
 *   wait for the next read, a few milliseconds later.
 * Clears, deletes and restores still lock the table against posts, from before they note the
 * newest id until they commit, so they sort between messages exactly.
 *
 * Boards of an older version on the same database keep working (their posts take the old
 * table lock, which waits for posts of this version and holds them off), but while one still
 * runs, its own live feed can miss a message that committed out of order: replace them all.
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
/**
 * Every board connection's `application_name`: readers tell board writers still running by
 * it (see board_visible_horizon in SCHEMA).
 */
const APPLICATION_NAME = "message_board";
/** The LISTEN connection's `application_name`: it sends the posts' notes, and no messages. */
const LISTENER_NAME = "message_board listener";
/** The advisory lock a post holds while it takes its transaction id and message ids. */
const ID_GATE = "hashtext('message_board ids')";
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
const MAX_WAITING_READS = 5_000;
/** Rows read per catch-up query; a longer backlog is read in several queries. */
const MAX_EVENTS_PER_READ = 500;
/** Newest messages each process keeps in memory: the newest page, with room for deletes. */
const CACHED_MESSAGES = 2 * MAX_PAGE_LIMIT;
/** Milliseconds between reads for changes when no note has come (LISTEN is the fast path). */
const POLL_MS = 10_000;
/**
 * Milliseconds until a read that held newer messages back (an older post still being
 * written) is made again. The older post's own note usually comes first.
 */
const HELD_RETRY_MS = 20;
/**
 * Milliseconds of messages held back after which reads use the exact horizon (see
 * board_events_after in SCHEMA). Posts take a few milliseconds; a backup or a batch job in
 * another database of the same server may hold a transaction open for minutes.
 */
const EXACT_AFTER_MS = 100;
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
 * - `board_post(batch)`: a batch of posts as one statement (one transaction): takes its ids
 *   (see "Ids without gaps in time" above), inserts, and returns the new messages with the
 *   newest message and change ids from before them when those are settled already (see
 *   PostgresStore.#handOn).
 * - `board_visible_horizon()`: the oldest transaction id a board writer still running may
 *   have; messages of older transactions are settled.
 * - `board_events_after(message, change, limit)`: the messages and changes after those ids,
 *   in commit order, up to the horizon, and a `held` row when newer messages wait.
 * The functions are replaced on every start, so they always match the board that runs.
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
    posted_at timestamptz not null default now(),
    xid xid8 default pg_current_xact_id()
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
    if not exists (select from information_schema.columns
                   where table_name = 'board_messages' and column_name = 'xid') then
      -- Older rows keep null: their writers finished long ago.
      alter table board_messages add column xid xid8;
      alter table board_messages alter column xid set default pg_current_xact_id();
    end if;
  end $$;
  create or replace function board_oldest_writer() returns xid8
    language plpgsql volatile as $body$
  declare
    here bigint := pg_snapshot_xmax(pg_current_snapshot())::text::bigint;
    oldest bigint;
  begin
    -- The oldest transaction id of another board session still running, read afresh.
    -- pg_stat_activity shows 32-bit xids: each is made whole from the nearest full id, less
    -- than 2^31 away from it either way.
    perform pg_stat_clear_snapshot();
    select min(here + case when d >= 2147483648 then d - 4294967296 else d end)
      into oldest
      from (select ((a.backend_xid::text::bigint - here) % 4294967296 + 4294967296)
                   % 4294967296 as d
              from pg_stat_activity a
             where a.datname = current_database()
               and a.application_name = '${APPLICATION_NAME}'
               and a.backend_xid is not null and a.pid <> pg_backend_pid()) as running;
    return oldest::text::xid8;
  end
  $body$;
  create or replace function board_visible_horizon() returns xid8
    language plpgsql volatile as $body$
  declare
    given xid8;
  begin
    -- 1. Every transaction id below this one had been given out by now...
    given := pg_snapshot_xmax(pg_current_snapshot());
    -- 2. ...and then, looking afresh, none older than the oldest board writer still running
    -- may be unfinished (a post takes its transaction id and message ids together, see
    -- board_post): messages of older transactions are settled.
    return least(given, board_oldest_writer());
  end
  $body$;
  create or replace function board_post(batch jsonb,
      out messages jsonb, out previous_id bigint, out change_id bigint)
    language plpgsql as $body$
  declare
    ids bigint[];
  begin
    -- Waits for a clear, delete or restore in progress, and holds the next one off until
    -- this commits; posts take this lock together.
    lock table board_messages in row exclusive mode;
    -- The id gate, held only while this takes its transaction id and its message ids, so a
    -- writer with an older transaction id always has the smaller message ids. Session
    -- locks outlive an error: released by hand, whatever happens.
    perform pg_advisory_lock(${ID_GATE});
    begin
      perform pg_current_xact_id();
      select array_agg(v order by v) into ids from (
        select nextval(pg_get_serial_sequence('board_messages', 'id')) as v
          from generate_series(1, jsonb_array_length(batch))) as given;
    exception when others or query_canceled then
      perform pg_advisory_unlock(${ID_GATE});
      raise;
    end;
    perform pg_advisory_unlock(${ID_GATE});
    with inserted as (
      insert into board_messages as m (id, text, name) overriding system value
      select ids[position], post ->> 'text', post ->> 'name'
        from jsonb_array_elements(batch) with ordinality as b (post, position)
      returning m.id, m.text, m.name, m.posted_at
    )
    -- posted_at as text: the very string the driver parses when it reads the column.
    select jsonb_agg(jsonb_build_array(i.id, i.text, i.name, i.posted_at::text)
                     order by i.id)
      into messages from inserted i;
    -- What came before this batch, when that is settled already (no older writer still
    -- running): a process that has read up to here can hand the batch on without reading
    -- it back (see PostgresStore.#handOn). Null otherwise.
    -- (No transaction at all older than this one is the quick answer; a look at the
    -- sessions the exact one.)
    if pg_snapshot_xmin(pg_current_snapshot()) < pg_current_xact_id() then
      if not coalesce(board_oldest_writer() > pg_current_xact_id(), true) then
        return;
      end if;
    end if;
    select coalesce(max(m.id), 0) into previous_id from board_messages m
     where m.id < ids[1];
    select coalesce(max(c.id), 0) into change_id from board_changes c;
  end
  $body$;
  create or replace function board_events_after(after_message bigint, after_change bigint,
      max_rows integer, exact boolean)
    returns table (kind text, seq bigint, "position" bigint, id bigint, text text, name text,
                   posted_at timestamptz, held boolean)
    language plpgsql as $body$
  #variable_conflict use_column
  declare
    horizon xid8;
  begin
    -- Exact: the horizon from the board's own writers (see board_visible_horizon), read
    -- before the fresh snapshot below. Otherwise the snapshot's own xmin, the oldest
    -- transaction of anyone still running: cheaper (no look at the sessions), as sure, and
    -- as quick unless a long transaction of something else holds it back; the board then
    -- asks for the exact one (see PostgresStore.#readNewEvents).
    if exact then horizon := board_visible_horizon(); end if;
    return query
    select * from (
      (select 'message' as kind, m.id as seq, m.id as position, m.id, m.text, m.name,
              m.posted_at, false as held
         from board_messages m
        where m.id > after_message and (m.xid is null or m.xid <
              coalesce(horizon, pg_snapshot_xmin(pg_current_snapshot())))
        order by m.id limit max_rows)
      union all
      (select c.kind, c.id, c.newest_id, c.event_id, null, null, null::timestamptz, false
         from board_changes c where c.id > after_change order by c.id limit max_rows)
      union all
      -- One row when newer messages are held back: the reader looks again soon.
      (select 'held', null, null, null, null, null, null, true
         from board_messages m where m.id > after_message
          and m.xid >= coalesce(horizon, pg_snapshot_xmin(pg_current_snapshot()))
        order by m.id limit 1) -- by id: from the index, not a scan of the whole table
    ) as changes
    order by held, position, (kind = 'message') desc, seq
    limit max_rows;
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

/** A message as board_post returns it: [id, text, name, posted_at as text]. */
type InsertedMessage = [number, string, string | null, string];

/** What board_post returns (bigint arrives as a string). */
interface InsertedBatch {
  /** The batch's messages, in id order. */
  messages: InsertedMessage[];
  /**
   * The newest message id on the board before the batch (0: none), or null when an older
   * post was still being written then (and so the batch must be read back in order).
   */
  previous_id: string | null;
  /** The newest board_changes id before the batch (0: none; null with previous_id). */
  change_id: string | null;
}

/** A post's note: "message LAST" (LAST: the batch's last id). */
const POST_NOTE = /^message (\d+)$/;

/**
 * A post waiting in the queue; `abandoned` once its client got 503 for waiting too long,
 * `sent` once its batch went to the database (from then on it may commit).
 */
interface PendingPost {
  input: NewMessage;
  abandoned: boolean;
  sent: boolean;
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
      application_name: APPLICATION_NAME,
      // The visibility horizon needs a fresh snapshot per statement (see SCHEMA), whatever
      // the database's default.
      default_transaction_isolation: "read committed" as const,
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
    // Where the live feed starts: every settled id that exists, ever existed or may come
    // back with a restore is at most this. (Not simply the largest id: a post still being
    // written may have smaller ids than one that committed, and they are news to come.)
    const horizon = await withDeadline(readHorizon(sql), "reading the horizon");
    const [row] = await withDeadline(
      sql<OneRow>`
      select greatest((select max(id) from board_messages
                        where ${settled(sql, horizon)}),
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
      postgres(url, {
        ...settings,
        ...store.listenerOptions(),
        // Not a writer of messages (see board_oldest_writer in SCHEMA).
        connection: { ...settings.connection, application_name: LISTENER_NAME },
      }),
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
  /** Notes of posts on their way (see #insertBatch); close() waits for them. */
  #notes = new Set<Promise<unknown>>();
  /** Since when reads have held newer messages back (null: the last read held none). */
  #heldSince: number | null = null;
  /** Set while a read is due again soon because newer messages were held back. */
  #heldTimer: ReturnType<typeof setTimeout> | undefined;
  /**
   * Messages read for clients, by id, while some answer still holds them (see #share).
   * Entries whose message is gone are dropped by #forgotten.
   */
  #readMessages = new Map<number, WeakRef<Message>>();
  #forgotten = new FinalizationRegistry<number>((id) => {
    if (this.#readMessages.get(id)?.deref() === undefined) {
      this.#readMessages.delete(id);
    }
  });
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
    const rows = await this.#clientRead(async (sql) =>
      sql<MessageRow[]>`
        select id, text, name, posted_at from board_messages
        where ${before === undefined ? sql`true` : sql`id < ${before}`}
          and ${settled(sql, await readHorizon(sql))}
        order by id desc limit ${limit + 1}`
    );
    return {
      messages: rows.slice(0, limit).map((row) => this.#share(toMessage(row))),
      hasOlder: rows.length > limit,
    };
  }

  async appendMessage(input: NewMessage): Promise<Message> {
    if (this.#closed) throw new StoreUnavailableError("the store is closed");
    const post = { input, abandoned: false, sent: false };
    try {
      const message = await withDeadline(this.#writes.add(post), "posting");
      return message!;
    } catch (error) {
      post.abandoned = true; // not written if its batch has not started yet
      // A post that got no answer in time (a hung database) turns the store read-only too.
      if (error instanceof StoreUnavailableError) this.#writable = false;
      // Sent, and no answer (the deadline passed, or the connection broke mid-way): the batch
      // may still commit, so its poster is told to look before sending it again. A refusal
      // from the database, or a connection never made (ECONNREFUSED...), saved nothing.
      const cause = (error as { cause?: { code?: unknown } }).cause;
      const unanswered = cause === undefined || MID_WAY.has(String(cause.code));
      if (post.sent && unanswered && error instanceof StoreUnavailableError) {
        throw new StoreUnavailableError(error.message, {
          cause: error,
          retryAfterSeconds: error.retryAfterSeconds,
          mayStillComplete: true,
        });
      }
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
    const rows = await this.#clientRead(async (sql) => {
      const horizon = await readHorizon(sql);
      return sql<(MessageRow & { kind: BoardEvent["type"] })[]>`
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
            where id > ${id} and ${
        settled(sql, horizon)
      } order by id limit ${limit})
          union all
          (select 3, id, 'restore', event_id, null, null, null from board_changes
            where kind = 'restore' and event_id > ${id} order by id desc limit 1)
        ) as missed
        order by rank, seq, id
        limit ${limit}`;
    });
    return rows.map((row) =>
      row.kind === "message"
        ? messageEvent(this.#share(toMessage(row)))
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
    await Promise.all(this.#notes);
    clearTimeout(this.#heldTimer);
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
    for (const post of live) post.sent = true;
    const posts = live.map(({ input: { text, name } }) => ({
      text,
      name: name ?? null,
    }));
    // One statement, so one transaction and one round trip; no lock that other posts wait
    // for beyond the moment it takes its ids (see board_post in SCHEMA). The batch travels
    // as one JSON array, [{"text": "...", "name": "..."}, ...]; its rows are inserted, and
    // numbered, in array order.
    const [batch] = await this.sql<[InsertedBatch]>`
      select * from board_post(${this.sql.json(posts)}::jsonb)`;
    this.#writable = true;
    const messages = batch.messages.map(fromInserted);
    const last = messages.at(-1)!.id;
    this.#ownMessageId = Math.max(this.#ownMessageId, last);
    // The wake-up call goes out after the commit, in a transaction of its own: a NOTIFY
    // inside the post's transaction would make every commit wait for the one before
    // (PostgreSQL orders notes by holding one lock from a NOTIFY's commit until it is
    // flushed). Should it be lost (this process killed just now), the next note or the
    // poll reads the batch.
    // It goes on the LISTEN connection, whose session readers do not count as a writer: a
    // NOTIFY takes a transaction id, and would otherwise hold newer messages back.
    const note = withDeadline(
      this.#listenSql!`select pg_notify(${CHANNEL}, ${`message ${last}`})`,
      "notifying",
    ).catch(() => {}).finally(() => this.#notes.delete(note));
    this.#notes.add(note);
    if (batch.previous_id !== null) {
      this.#handOn(
        messages,
        Number(batch.previous_id),
        Number(batch.change_id),
      );
    }
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
      ), "write");
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
   * made), changes among themselves by their own id. Messages that committed while an older
   * post was still being written are held back until it is done (see board_events_after in
   * SCHEMA); a read that held some back is made again soon, whether or not a note comes.
   */
  async #readNewEvents(): Promise<number> {
    // Messages held back for long: perhaps by something else's long transaction, which
    // only the exact horizon sees past.
    const exact = this.#heldSince !== null &&
      Date.now() - this.#heldSince > EXACT_AFTER_MS;
    const rows = await withDeadline(
      this.sql<
        (MessageRow & { kind: BoardEvent["type"] | "held"; seq: string })[]
      >`
      select * from board_events_after(${this.lastMessageId}, ${this.lastChangeId},
                                       ${MAX_EVENTS_PER_READ}, ${exact})`,
      "reading changes",
    );
    let read = 0;
    if (!rows.some((row) => row.kind === "held")) this.#heldSince = null;
    for (const row of rows) {
      // A row this process already handed on (its own post, see #handOnOwn) is skipped.
      let event: BoardEvent;
      if (row.kind === "held") {
        this.#heldSince ??= Date.now();
        this.#readSoon();
        continue;
      }
      read++;
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
    return read;
  }

  /** Reads again after HELD_RETRY_MS (once, however many reads ask). */
  #readSoon(): void {
    if (this.#closed || this.#heldTimer !== undefined) return;
    this.#heldTimer = setTimeout(() => {
      this.#heldTimer = undefined;
      void this.#catchUp();
    }, HELD_RETRY_MS);
  }

  // -- The newest page, in memory ------------------------------------------

  /** The newest page from memory, or null when it must be read from the database. */
  async #newestFromCache(limit: number): Promise<MessagePage | null> {
    if (!this.#listening || this.#readFailing || this.#closed) return null;
    // This process's own last write may not have come back as an event yet: read it first,
    // so a poster always sees their own message. It may be held back a moment, while an
    // older post of another process is still being written (at most a statement's time).
    const deadline = Date.now() + STATEMENT_TIMEOUT_MS;
    for (let read = 0;; read++) {
      const behind = this.#ownMessageId > this.lastMessageId ||
        this.#ownChangeId > this.lastChangeId;
      if (!behind || Date.now() > deadline) break;
      if (read > 0) await delay(HELD_RETRY_MS);
      await withDeadline(this.#catchUp(), "reading changes");
      if (!this.#listening || this.#readFailing || this.#closed) return null;
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
    const rows = await this.#clientRead(async (sql) =>
      sql<MessageRow[]>`
        select id, text, name, posted_at from board_messages
        where ${settled(sql, await readHorizon(sql))}
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

  /**
   * Runs a query, turning "cannot reach the database" into StoreUnavailableError. Any answer
   * means the database is back (posts are accepted again); only a failed write turns the
   * store read-only: a read that timed out (an older page stuck behind another session's
   * lock) said nothing about posts, and /healthz would have sent posters away.
   */
  async #query<T>(
    run: (sql: Sql) => Promise<T>,
    kind: "read" | "write",
  ): Promise<T> {
    if (this.#closed) throw new StoreUnavailableError("the store is closed");
    try {
      const result = await withDeadline(run(this.sql), "a query");
      this.#writable = true;
      return result;
    } catch (error) {
      throw kind === "write" ? this.#toStoreError(error) : toStoreError(error);
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
          : this.#query(run, "read")
      ),
      "reading",
    );
  }

  /**
   * `message`, or the same message read before and still held by an answer: each read makes
   * new strings, and a client can leave an answer unread (an HTTP/2 stream given no window).
   * 600 such streams asking for one older page of long messages held 1,088 MB, a copy of
   * the page each; sharing, they hold one. (A message's text never changes: ids are never
   * reused, and a restore brings back the same message.)
   */
  #share(message: Message): Message {
    const known = this.#readMessages.get(message.id)?.deref();
    if (
      known !== undefined && known.text === message.text &&
      known.name === message.name && known.postedAt === message.postedAt
    ) return known;
    this.#readMessages.set(message.id, new WeakRef(message));
    this.#forgotten.register(message, message.id);
    return message;
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

/**
 * The visibility horizon, read before the query it guards (see board_visible_horizon in
 * SCHEMA): that query's fresh snapshot holds every message below it that will ever be.
 */
async function readHorizon(sql: Sql): Promise<string> {
  const [{ horizon }] = await sql<OneRow>`
    select board_visible_horizon()::text as horizon`;
  return horizon;
}

/** The messages settled below `horizon` (rows of an older board have no xid). */
function settled(sql: Sql, horizon: string) {
  return sql`(xid is null or xid < ${horizon}::xid8)`;
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

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
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

/** The driver's codes for a connection lost while a query was on it (its outcome unknown). */
const MID_WAY = new Set(["CONNECTION_CLOSED", "CONNECTION_DESTROYED"]);

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
 * outages, and so are 3D000 (the database is gone: dropped, or not yet restored from a backup),
 * class 28 (the role or its password changed): a new connection cannot be made, whatever
 * the request, and 25006 (the database takes no writes now: a standby in a failover, or
 * `default_transaction_read_only` set). So are a lock not granted within the operator's
 * `lock_timeout` (55P03), a deadlock (40P01) and a serialization failure (40001): the
 * transaction was rolled back, and the same request a moment later goes through. Errors
 * without a SQLSTATE come from the socket (ECONNREFUSED...).
 */
function toStoreError(error: unknown): unknown {
  if (!(error instanceof Error) || error instanceof StoreUnavailableError) {
    return error;
  }
  const code = String((error as { code?: unknown }).code ?? "");
  const outage = error.name === "PostgresError"
    ? /^(08|53|57|28|3D000|25006|55P03|40P01|40001)/.test(code)
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

/** A message of board_post as the board's message. */
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
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * assert.equal(
 *   redactUrl("postgres://board:secret@db:5432/board"),
 *   "postgres://board:***@db:5432/board",
 * );
 * assert.equal(redactUrl("not a url"), "(a database URL that does not parse)");
 * ```
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
