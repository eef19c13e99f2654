/**
 * PostgreSQL storage for `message_board.ts`, so that several board processes, on one machine or
 * many, serve one board.
 *
 * The board imports this file only when it is started with `--store postgres://...` (or the
 * `DATABASE_URL` environment variable), so the default file mode needs neither this file nor
 * the driver (`npm:postgres`, pinned to an exact version in `deno.lock`).
 *
 * What it keeps from the file store:
 * - a post is acknowledged only after its transaction has committed (PostgreSQL has written it
 *   to its write-ahead log and flushed it);
 * - clearing never destroys data: the messages move to `board_archive` in one transaction;
 * - validation and limits stay in the board; this file only stores what it is given.
 *
 * What it adds: live updates across processes. Every post and every clear sends a
 * `NOTIFY board_events` inside its own transaction, so the note goes out exactly when the
 * change commits. Each process LISTENs, and on each note reads the new events from the tables
 * (the note is only a wake-up call, so a message of any length fits and a missed note costs
 * nothing: the next read catches up).
 *
 * Gap-free ids: messages and clears take their ids from one sequence, and every writer holds
 * the same table lock from before it takes an id until it commits. So ids become visible in
 * increasing order, and "everything after id N" is always a complete answer; that is what lets
 * a browser resume with `Last-Event-ID` without missing a message.
 *
 * @module
 */

// These types mirror the board's own (message_board.ts) and are structural, so this file
// imports nothing from the board at run time.

/** A stored message, as the board shows and serves it. */
export interface Message {
  id: number;
  text: string;
  name?: string;
  /** ISO 8601 UTC, e.g. `2026-11-21T22:44:51.000Z`. */
  postedAt: string;
}

/** A change to the board, in id order: a new message, or a clear of everything before it. */
export type BoardEvent =
  | { type: "message"; id: number; message: Message }
  | { type: "clear"; id: number };

/** Thrown when the database cannot be reached; the board answers 503 and tries again later. */
export class StoreUnavailableError extends Error {
  constructor(cause: unknown) {
    super("the message database is unavailable", { cause });
    this.name = "StoreUnavailableError";
  }
}

/** The channel every board process LISTENs on. */
const CHANNEL = "board_events";
/** Seconds to wait for a connection before the request fails with 503. */
const CONNECT_TIMEOUT_S = 5;
/** Connections per process; posts serialise on a lock anyway (see the module doc). */
const MAX_CONNECTIONS = 10;
/** Milliseconds between attempts to LISTEN again after the connection was lost. */
const LISTEN_RETRY_MS = 1_000;
/** Posts written in one transaction at most (group commit). */
const MAX_BATCH_POSTS = 200;
/** Events read per catch-up query; a longer backlog is read in several queries. */
const MAX_EVENTS_PER_READ = 500;

/**
 * The tables, created when missing. `board_clears` shares the messages' id sequence, so one
 * number orders messages and clears. An advisory lock keeps two processes starting at the same
 * moment from racing on `create table if not exists`.
 */
const SCHEMA = `
  select pg_advisory_xact_lock(hashtext('board schema'));
  create table if not exists board_messages (
    id bigint generated always as identity primary key,
    text text not null,
    name text,
    posted_at timestamptz not null default now()
  );
  create table if not exists board_clears (
    id bigint primary key,
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

/** Options for {@link openPostgresStore}. */
export interface PostgresStoreOptions {
  /** Connection URL, e.g. `postgres://board@127.0.0.1:5432/board`. */
  url: string;
  /** Where failures of the background listener are reported. @default console.error */
  log?: (message: string) => void;
}

/** A message store on PostgreSQL. */
export interface PostgresStore {
  /** Newest messages first: up to `limit` with ids below `before` (all when omitted). */
  loadPage(options: { before?: number; limit: number }): Promise<Message[]>;
  /** Stores a message; resolves once it is committed. */
  append(input: { text: string; name?: string }): Promise<Message>;
  /** Moves every message to the archive; resolves with how many moved. */
  clear(): Promise<{ archived: number }>;
  /** Events with ids above `id`, oldest first (at most `limit`). */
  eventsAfter(id: number, limit?: number): Promise<BoardEvent[]>;
  /** Calls `listener` with every event from any process, in id order; returns unsubscribe. */
  subscribe(listener: (event: BoardEvent) => void): () => void;
  /** Stops listening and closes every connection. */
  close(): Promise<void>;
}

/** What the board hands over to store. */
interface NewMessage {
  text: string;
  name?: string;
}

/** A post waiting for the next transaction. */
interface PendingPost {
  input: NewMessage;
  resolve(message: Message): void;
  reject(error: unknown): void;
}

/** Row shape shared by the message queries. */
interface MessageRow {
  id: string;
  text: string;
  name: string | null;
  posted_at: Date;
}

/**
 * Connects, creates the tables when missing and starts listening for other processes' posts.
 * Fails (with {@link StoreUnavailableError}) when the database cannot be reached at start-up.
 */
export async function openPostgresStore(options: PostgresStoreOptions): Promise<PostgresStore> {
  const { url, log = console.error } = options;
  const { default: connect } = await import("npm:postgres@3.4.7");
  const settings = {
    connect_timeout: CONNECT_TIMEOUT_S,
    onnotice: () => {}, // "relation already exists, skipping" is not news
    connection: { application_name: "message_board" },
  };
  const sql = connect(url, { ...settings, max: MAX_CONNECTIONS });

  const listeners = new Set<(event: BoardEvent) => void>();
  let cursor = 0; // the id of the last event handed to listeners
  let closed = false;

  try {
    await sql.begin((tx) => tx.unsafe(SCHEMA));
    const [row] = await sql`
      select greatest(
        (select coalesce(max(id), 0) from board_messages),
        (select coalesce(max(id), 0) from board_clears)) as last`;
    cursor = Number(row.last);
  } catch (error) {
    await sql.end();
    throw toStoreError(error);
  }

  // Reads the events after the cursor and hands them to the listeners. Runs one at a time;
  // a wake-up that arrives during a read triggers one more read after it.
  let reading: Promise<void> | null = null;
  let readAgain = false;
  const catchUp = (): Promise<void> => {
    if (reading) {
      readAgain = true;
      return reading;
    }
    reading = (async () => {
      try {
        do {
          readAgain = false;
          let batch: BoardEvent[];
          do {
            batch = await eventsAfter(cursor, MAX_EVENTS_PER_READ);
            for (const event of batch) {
              cursor = event.id;
              for (const listener of listeners) listener(event);
            }
          } while (batch.length === MAX_EVENTS_PER_READ && !closed);
        } while (readAgain && !closed);
      } catch (error) {
        if (!closed) {
          log(`board: cannot read new events (retrying): ${describeError(error)}`);
          retryLater();
        }
      } finally {
        reading = null;
      }
    })();
    return reading;
  };

  // LISTEN on a connection of its own. We reconnect it ourselves rather than with the
  // driver's sql.listen(): that one leaves a reconnect timer behind after sql.end(), which
  // reopens a connection and keeps the process alive after close().
  // `onnotify` is the option sql.listen() itself is built on (the driver's src/index.js); its
  // type declarations omit it, which a variable (not an object literal) lets us pass.
  const listenerOptions = {
    ...settings,
    max: 1,
    max_lifetime: null, // a recycled connection would drop the LISTEN
    onnotify: () => void catchUp(),
    onclose: () => retryLater(),
  };
  const listener = connect(url, listenerOptions);
  let retryTimer: ReturnType<typeof setTimeout> | undefined;
  function retryLater() {
    if (closed || retryTimer !== undefined) return;
    retryTimer = setTimeout(() => {
      retryTimer = undefined;
      void listen();
    }, LISTEN_RETRY_MS);
  }
  // After (re)connecting, read what was posted while no one was listening.
  async function listen(): Promise<void> {
    try {
      await listener`listen ${listener(CHANNEL)}`;
      await catchUp();
    } catch (error) {
      if (closed) return;
      log(`board: cannot listen for new events (retrying): ${describeError(error)}`);
      retryLater();
    }
  }
  try {
    await listener`listen ${listener(CHANNEL)}`;
  } catch (error) {
    closed = true;
    await Promise.all([listener.end(), sql.end()]);
    throw toStoreError(error);
  }

  // Group commit: posts that arrive while a transaction is in flight wait and go together in
  // the next one, so one commit (one WAL flush, one NOTIFY) acknowledges many posts.
  const pending: PendingPost[] = [];
  let writing = false;
  const writeBatches = async () => {
    writing = true;
    while (pending.length > 0) {
      const batch = pending.splice(0, MAX_BATCH_POSTS);
      try {
        const messages = await insertBatch(batch.map((post) => post.input));
        batch.forEach((post, i) => post.resolve(messages[i]));
      } catch (error) {
        const storeError = toStoreError(error);
        for (const post of batch) post.reject(storeError);
      }
    }
    writing = false;
  };

  /** Inserts messages in one transaction; resolves, in input order, once it has committed. */
  function insertBatch(inputs: NewMessage[]): Promise<Message[]> {
    return sql.begin(async (tx) => {
      // Self-conflicting lock, held to commit: ids become visible in order (module doc).
      await tx`lock table board_messages in share row exclusive mode`;
      // Rows are inserted, and take their ids, in array order.
      const rows = await tx<MessageRow[]>`
        insert into board_messages (text, name)
        select text, name
          from unnest(${inputs.map((m) => m.text)}::text[], ${
        inputs.map((m) => m.name ?? null)
      }::text[])
               with ordinality as input (text, name, position)
         order by position
        returning id, text, name, posted_at`;
      await tx`select pg_notify(${CHANNEL}, ${rows.at(-1)!.id})`;
      return rows.map(toMessage).sort((a, b) => a.id - b.id);
    });
  }

  async function eventsAfter(id: number, limit = MAX_EVENTS_PER_READ): Promise<BoardEvent[]> {
    const rows = await sql<(MessageRow & { kind: "message" | "clear" })[]>`
      (select 'clear' as kind, id, null as text, null as name, null as posted_at
         from board_clears where id > ${id} order by id limit ${limit})
      union all
      (select 'message', id, text, name, posted_at
         from board_messages where id > ${id} order by id limit ${limit})
      order by id limit ${limit}`;
    return rows.map((row) =>
      row.kind === "clear"
        ? { type: "clear", id: Number(row.id) }
        : { type: "message", id: Number(row.id), message: toMessage(row) }
    );
  }

  return {
    async loadPage({ before, limit }) {
      const rows = await guard(() =>
        sql<MessageRow[]>`
          select id, text, name, posted_at from board_messages
          ${before === undefined ? sql`` : sql`where id < ${before}`}
          order by id desc limit ${limit}`
      );
      return rows.map(toMessage);
    },

    append(input) {
      const { promise, resolve, reject } = Promise.withResolvers<Message>();
      pending.push({ input, resolve, reject });
      if (!writing) void writeBatches();
      return promise;
    },

    clear() {
      return guard(() =>
        sql.begin(async (tx) => {
          await tx`lock table board_messages in share row exclusive mode`;
          const [{ id }] = await tx`
            insert into board_clears (id)
            values (nextval(pg_get_serial_sequence('board_messages', 'id')))
            returning id`;
          const moved = await tx`
            with moved as (delete from board_messages returning id, text, name, posted_at)
            insert into board_archive (id, text, name, posted_at, clear_id)
            select id, text, name, posted_at, ${id} from moved`;
          await tx`select pg_notify(${CHANNEL}, ${id})`;
          return { archived: moved.count };
        })
      );
    },

    eventsAfter: (id, limit) => guard(() => eventsAfter(id, limit)),

    subscribe(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },

    async close() {
      if (closed) return;
      closed = true;
      clearTimeout(retryTimer);
      listeners.clear();
      await reading;
      await Promise.all([listener.end(), sql.end()]);
    },
  };
}

/** Runs a query, turning "cannot reach the database" into {@link StoreUnavailableError}. */
async function guard<T>(query: () => Promise<T>): Promise<T> {
  try {
    return await query();
  } catch (error) {
    throw toStoreError(error);
  }
}

/**
 * Connection failures become {@link StoreUnavailableError}; anything else (a bug, a broken
 * schema) stays as it is and is a 500. SQLSTATE classes 08 (connection exception), 53
 * (insufficient resources) and 57 (operator intervention, e.g. shutting down) are outages;
 * errors without a SQLSTATE come from the socket (ECONNREFUSED, CONNECTION_CLOSED, ...).
 */
function toStoreError(error: unknown): unknown {
  if (!(error instanceof Error) || error instanceof StoreUnavailableError) return error;
  if (error.name === "PostgresError") {
    const state = String((error as Error & { code?: string }).code ?? "");
    return /^(08|53|57)/.test(state) ? new StoreUnavailableError(error) : error;
  }
  return "code" in error ? new StoreUnavailableError(error) : error;
}

/** One line for the log: the driver's message with the cause's, never a password. */
function describeError(error: unknown): string {
  const cause = error instanceof Error && error.cause instanceof Error
    ? `: ${error.cause.message}`
    : "";
  return error instanceof Error ? `${error.message}${cause}` : String(error);
}

/** A database row as the board's message object; `name` only when one was given. */
function toMessage(row: MessageRow): Message {
  const message: Message = {
    id: Number(row.id),
    text: row.text,
    postedAt: new Date(row.posted_at).toISOString(),
  };
  if (row.name !== null) message.name = row.name;
  return message;
}

/** Hides the password in a connection URL for logs: `postgres://u:***@host/db`. */
export function redactUrl(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.password) parsed.password = "***";
    return parsed.href;
  } catch {
    return "(unparseable database URL)";
  }
}
