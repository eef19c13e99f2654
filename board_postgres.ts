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
 * connection was down costs nothing, since the next read catches up.
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
const CONNECT_TIMEOUT_S = 5;
/** Connections per process for queries (the LISTEN connection is one more). */
const MAX_CONNECTIONS = 10;
/** Rows read per catch-up query; a longer backlog is read in several queries. */
const MAX_EVENTS_PER_READ = 500;
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
 * The tables, created when missing. A clear remembers `through_id`, the last message id it
 * removed, so that a client which saw message N can be told "everything up to here is gone".
 * The advisory lock keeps two processes that start together from racing on
 * `create table if not exists` (which is not safe against itself).
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
`;

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
    connection: { application_name: "message_board" },
  };
  const sql = postgres(url, { ...settings, max: MAX_CONNECTIONS });
  try {
    await sql.begin((tx) => tx.unsafe(SCHEMA));
    const [row] = await sql`
      select (select coalesce(max(id), 0) from board_messages) as message,
             (select coalesce(max(id), 0) from board_clears) as clear`;
    const store = new PostgresStore(
      sql,
      Number(row.message),
      Number(row.clear),
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

/**
 * The PostgreSQL store once open. Pages are read from the database on every request; posts
 * queue up and are written in batches by one loop, as in the file store.
 */
class PostgresStore implements MessageStore {
  #writes = new WriteQueue<NewMessage, Message>(async (inputs) => {
    try {
      return await this.#insertBatch(inputs);
    } catch (error) {
      throw toStoreError(error);
    }
  });
  #events: EventFanOut;
  #listenSql: Sql | null = null;
  #retryTimer: ReturnType<typeof setTimeout> | undefined;
  #pollTimer: ReturnType<typeof setInterval> | undefined;
  #relistening: Promise<void> | null = null;
  // Log a lost LISTEN, or failing reads, once per outage rather than every second.
  #listenFailing = false;
  #readFailing = false;
  #reading: Promise<void> | null = null;
  #readAgain = false;
  #closed = false;

  constructor(
    private sql: Sql,
    /** The last message id handed to subscribers. */
    private lastMessageId: number,
    /** The last clear (its row id) handed to subscribers. */
    private lastClearId: number,
    private log: (line: string) => void,
  ) {
    this.#events = new EventFanOut(log);
  }

  async listMessages({ before, limit }: PageQuery): Promise<MessagePage> {
    const rows = await this.#query((sql) =>
      sql<MessageRow[]>`
        select id, text, name, posted_at from board_messages
        where id < ${before ?? Number.MAX_SAFE_INTEGER}
        order by id desc limit ${limit + 1}`
    );
    return {
      messages: rows.slice(0, limit).map(toMessage),
      hasOlder: rows.length > limit,
    };
  }

  appendMessage(input: NewMessage): Promise<Message> {
    if (this.#closed) {
      return Promise.reject(new StoreUnavailableError("the store is closed"));
    }
    return this.#writes.add(input);
  }

  /**
   * Moves every message into `board_archive` and records the clear, in one transaction
   * under the writers' lock, so no post can slip in between the copy and the delete.
   */
  clearMessages(): Promise<ClearResult> {
    return this.#query((sql) =>
      sql.begin(async (tx) => {
        await tx`lock table board_messages in share row exclusive mode`;
        const [{ last }] = await tx`select max(id) as last from board_messages`;
        if (last === null) return { archived: 0, archive: null };
        const [clear] = await tx`
          insert into board_clears (through_id) values (${last}) returning id`;
        const moved = await tx`
          with moved as (delete from board_messages returning id, text, name, posted_at)
          insert into board_archive (id, text, name, posted_at, clear_id)
          select id, text, name, posted_at, ${clear.id} from moved`;
        await tx`select pg_notify(${CHANNEL}, 'clear')`;
        return { archived: moved.count, archive: "table board_archive" };
      })
    );
  }

  /**
   * What a client that last saw event `id` has missed: the latest clear that removed message
   * `id` or later ones (sending a clear twice does no harm), then the messages after `id`.
   */
  async eventsAfter(id: number, limit: number): Promise<BoardEvent[]> {
    // One statement, so one snapshot: a clear that commits meanwhile is in both parts or in
    // neither. Messages the clear left are all newer than it, so it sorts first.
    const rows = await this.#query((sql) =>
      sql<(MessageRow & { kind: "message" | "clear" })[]>`
        select 'clear' as kind, max(through_id) as id, null as text, null as name,
               null::timestamptz as posted_at
          from board_clears where through_id >= ${id}
        having max(through_id) is not null
        union all
        (select 'message', id, text, name, posted_at
           from board_messages where id > ${id} order by id limit ${limit})
        order by id
        limit ${limit}`
    );
    return rows.map((row) =>
      row.kind === "clear"
        ? { type: "clear", id: Number(row.id) }
        : messageEvent(toMessage(row))
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
  async #insertBatch(inputs: NewMessage[]): Promise<Message[]> {
    const posts = inputs.map(({ text, name }) => ({
      text,
      name: name ?? null,
    }));
    // The three statements go out together (pipelined: one round trip), then COMMIT.
    const [, rows] = await this.sql.begin((tx) => [
      // One writer at a time, from before it takes ids until it commits: ids become
      // visible in increasing order (see the module doc). Clears take the same lock.
      tx`lock table board_messages in share row exclusive mode`,
      // The batch travels as one JSON array, [{"text": "...", "name": "..."}, ...];
      // its rows are inserted, and numbered, in array order.
      tx<MessageRow[]>`
        insert into board_messages (text, name)
        select post ->> 'text', post ->> 'name'
          from jsonb_array_elements(${
        tx.json(posts)
      }) with ordinality as batch (post, position)
         order by position
        returning id, text, name, posted_at`,
      tx`select pg_notify(${CHANNEL}, 'message')`,
    ]);
    return (rows as MessageRow[]).map(toMessage).sort((a, b) => a.id - b.id);
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
      onnotify: () => void this.#catchUp(),
      onclose: () => this.#listenLater(),
    };
  }

  /** Starts listening on `listener`, a connection pool of one made with listenerOptions(). */
  async listen(listener: Sql): Promise<void> {
    this.#listenSql = listener;
    try {
      await listener`listen ${listener(CHANNEL)}`;
    } catch (error) {
      this.#closed = true;
      await listener.end({ timeout: 0 });
      throw error;
    }
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
      await this.#listenSql!`listen ${this.#listenSql!(CHANNEL)}`;
      if (this.#listenFailing) {
        this.log("message board: listening for changes again");
      }
      this.#listenFailing = false;
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
   * Reads the rows added since the last read and hands them to the subscribers, in order: a
   * clear right after the message it was "through". Runs one read at a time; a note that
   * arrives during a read makes one more read after it.
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

  /** One catch-up query; returns how many rows it read. */
  async #readNewEvents(): Promise<number> {
    const rows = await this.sql<
      (MessageRow & { kind: "message" | "clear"; through: string })[]
    >`
      select * from (
        (select 'clear' as kind, id, through_id as through, null as text, null as name,
                null::timestamptz as posted_at
           from board_clears where id > ${this.lastClearId} order by id limit ${MAX_EVENTS_PER_READ})
        union all
        (select 'message', id, id, text, name, posted_at
           from board_messages where id > ${this.lastMessageId} order by id
          limit ${MAX_EVENTS_PER_READ})
      ) as changes
      order by through, kind desc -- a message before the clear through it
      limit ${MAX_EVENTS_PER_READ}`;
    for (const row of rows) {
      let event: BoardEvent;
      if (row.kind === "clear") {
        this.lastClearId = Number(row.id);
        event = { type: "clear", id: Number(row.through) };
      } else {
        this.lastMessageId = Number(row.id);
        event = messageEvent(toMessage(row));
      }
      this.#events.publish(event);
    }
    return rows.length;
  }

  /** Runs a query, turning "cannot reach the database" into StoreUnavailableError. */
  async #query<T>(run: (sql: Sql) => Promise<T>): Promise<T> {
    if (this.#closed) throw new StoreUnavailableError("the store is closed");
    try {
      return await run(this.sql);
    } catch (error) {
      throw toStoreError(error);
    }
  }
}

/**
 * Connection failures become {@linkcode StoreUnavailableError} (503); anything else, a bug or a
 * broken schema, stays as it is (500). SQLSTATE classes 08 (connection exception), 53
 * (insufficient resources) and 57 (operator intervention, e.g. the server shutting down) are
 * outages; errors without a SQLSTATE come from the socket (ECONNREFUSED, CONNECTION_CLOSED...).
 */
function toStoreError(error: unknown): unknown {
  if (!(error instanceof Error) || error instanceof StoreUnavailableError) {
    return error;
  }
  const code = String((error as { code?: unknown }).code ?? "");
  const outage = error.name === "PostgresError"
    ? /^(08|53|57)/.test(code)
    : code !== "";
  if (!outage) return error;
  return new StoreUnavailableError(
    `the database is unavailable (${describe(error)})`,
    {
      cause: error,
    },
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
