#!/usr/bin/env -S deno run --allow-net=127.0.0.1 --allow-read=./data --allow-write=./data
/**
 * The Tiny Message Board: a page where anyone can leave a short message, kept
 * in a JSON Lines file that never loses an acknowledged message.
 *
 * ```sh
 * deno run --allow-net=127.0.0.1 --allow-read=./data --allow-write=./data message_board.ts
 * ```
 *
 * It keeps the messages in `./data/messages.jsonl` and serves
 * http://127.0.0.1:8080/; `--help` lists the options.
 *
 * Behind a reverse proxy on the same machine it can listen on a Unix domain
 * socket instead of a port (the folder must exist; the proxy speaks TLS):
 *
 * ```sh
 * deno run --allow-read=./data,/run/board/board.sock --allow-write=./data,/run/board/board.sock --allow-net=unix:/run/board/board.sock message_board.ts --unix /run/board/board.sock --trust-proxy --allowed-host board.example.com
 * ```
 *
 * Several processes can serve one board from PostgreSQL instead of the file:
 * board_postgres.ts, which imports this file, is that mode's entry point (this
 * file never imports it, so it works copied alone):
 *
 * ```sh
 * deno run --allow-net=127.0.0.1 --allow-env='DATABASE_URL,PG*' board_postgres.ts --store postgres://board@127.0.0.1:5432/board
 * ```
 *
 * Security stance, up front:
 * - Every piece of user text is HTML-escaped, and the Content-Security-Policy
 *   allows no inline script, so stored text can never run in a visitor's browser.
 * - It answers only to its own names (421 for any other Host: a page on a
 *   DNS-rebinding name gets nothing), and refuses posts whose Origin is not this
 *   board's scheme, port and an allowed host, or that the browser says another
 *   site or origin sent (Sec-Fetch-Site) (403), so a hostile page cannot post or
 *   clear on a visitor's behalf. `--allowed-host NAME` adds names.
 * - Every input has a named limit with its own status (413, 422, 408...);
 *   bad input gets a clear 4xx, stores nothing, and the board keeps serving.
 *   An ambiguous request (a form with both message and clear, a key sent
 *   twice, in a form or in JSON) is a 400, never a guess.
 * - One client cannot flood it: 5 posts at once, then one per 3 s, 8 live streams
 *   and 32 answers on their way per address (429 with Retry-After); `--rate-limit
 *   off` for load tests. Whatever that says, one connection has at most 8 answers
 *   on their way (an HTTP/2 client that reads none of them holds no more), the
 *   process 500 (503).
 * - Moderation needs a credential: with `--admin-token` a moderator signs in at
 *   /admin (a session cookie, HttpOnly and SameSite=Strict) to clear (after a
 *   confirmation), delete one message, or restore the newest archive. Without
 *   one, only visitors on this machine may clear, as in the chapter.
 * - Clearing and deleting move messages to an archive; nothing is ever destroyed.
 * - It binds to 127.0.0.1 by default: a board on all interfaces is open to
 *   your whole network, and plain HTTP can be read by anyone on the way, so
 *   give it `--cert` and `--key` (HTTPS), or a proxy (deploy/), before you expose it.
 *
 * Routes (under `basePath` when mounted in a larger app, see {@linkcode createBoardHandler}):
 *
 * | Path                | Methods         | What                                                |
 * | ------------------- | --------------- | --------------------------------------------------- |
 * | `/`, `/index.html`  | GET, HEAD, POST | the board; POST a form with `message` (and `name`), or `clear` |
 * | `/style.css`        | GET, HEAD       | the stylesheet                                      |
 * | `/board.js`         | GET, HEAD       | the page's script: live updates, local times        |
 * | `/events`           | GET, HEAD       | live updates (Server-Sent Events)                   |
 * | `/api/messages`     | GET, HEAD, POST | JSON: pages of messages; POST `{"text", "name"}`   |
 * | `/admin`            | GET, HEAD, POST | the moderator's sign-in form; POST `token`         |
 * | `/admin/sign-out`   | POST            | ends the session                                    |
 * | `/admin/clear`      | GET, HEAD       | the confirmation before a clear                     |
 * | `/admin/delete`     | POST            | takes message `id` off the board                    |
 * | `/admin/restore`    | POST            | puts the newest archive back                        |
 *
 * Storage: one JSON object per line, appended; the answer (303 or 201) is
 * sent only after the line is on disk (fdatasync). Concurrent posts share one
 * write and one sync (group commit). See {@linkcode openJsonLinesStore}.
 *
 * Live updates: the page loads /board.js, which listens to GET /events
 * (Server-Sent Events) and shows new messages without a reload.
 *
 * @module
 */

import { basename, dirname, extname, join, resolve } from "node:path";
import { parseArgs, type ParseArgsOptionsConfig } from "node:util";

// ---------------------------------------------------------------------------
// Limits. Each one answers with its own status.
// ---------------------------------------------------------------------------

/** Largest request body we read; more gets 413 Content Too Large (RFC 9110 15.5.14). */
export const MAX_BODY_BYTES = 64 * 1024;
/**
 * Most pieces (chunks, reads) a request body may arrive in; more gets 413. A real 64 KiB
 * body comes in a few dozen; each piece costs a trip through the body stream, and a body
 * sent a byte at a time took seconds of the server's time.
 */
export const MAX_BODY_PIECES = 1024;
/** Longest message in characters (code points); more gets 422. */
export const MAX_MESSAGE_CHARS = 4000;
/** Longest poster name in characters; more gets 422. */
export const MAX_NAME_CHARS = 40;
/**
 * Most code points in one character as a reader sees it (a grapheme cluster: a letter with
 * its marks, an emoji sequence); more gets 422. A base and 30 marks is the most Unicode's
 * Stream-Safe Text Format (UAX #15) allows; real text and emoji need about 10 at most. A
 * browser never breaks a line inside one, so one letter with 3,000 marks made the page
 * 5,477 px wide.
 */
export const MAX_CHARACTER_CODE_POINTS = 31;
/** Messages per page on the board. */
export const PAGE_SIZE = 50;
/** Largest `limit` the JSON API accepts; more gets 400. */
export const MAX_PAGE_LIMIT = 100;
/** A body that takes longer than this to arrive gets 408 Request Timeout. */
export const BODY_TIMEOUT_MS = 10_000;
/**
 * Bytes of request bodies the process holds at once while they arrive; a body that would
 * pass it gets 503 with Retry-After. Each body may hold MAX_BODY_BYTES for BODY_TIMEOUT_MS,
 * and 2,000 connections that each sent 60 KB and stalled held 567 MB.
 */
export const MAX_BODY_BYTES_HELD = 16 * 1024 * 1024;
/** Most posts written together in one group commit. */
const MAX_BATCH_MESSAGES = 1000;
/**
 * A write (post, delete, clear, restore) not on disk within this gets 503 with Retry-After:
 * a disk that stops answering (a frozen or hung filesystem, a dying drive) blocks a write
 * for as long as it lasts, and every post would hang with it.
 */
export const WRITE_TIMEOUT_MS = 10_000;

// Limits per client, so that one client cannot flood the board or take every
// live-update slot. `rateLimit: false` (`--rate-limit off`) turns them off for
// benchmarks and load tests; the sign-in limit always stays on.

/** Posts one client may make in a burst before 429 Too Many Requests (RFC 6585 4). */
export const POST_BURST = 5;
/** After the burst, one more post per this many milliseconds (a token bucket). */
export const POST_REFILL_MS = 3_000;
/** Live-update streams one client may hold open; more get 429. */
export const MAX_STREAMS_PER_CLIENT = 8;
/**
 * Requests with a body (posts, sign-ins, deletes) one client may have in flight at once;
 * more get 429 before their body is read. A browser sends one at a time.
 */
export const MAX_BODIES_PER_CLIENT = 8;
/** Live-update streams open at once from all clients (each holds a connection); more get 503. */
export const MAX_EVENT_STREAMS = 1000;
/**
 * Answers one connection may have on their way at once (its live-update streams aside);
 * more get 429 at once. HTTP/1.1 sends one at a time, but an HTTP/2 client may open 200
 * streams on a connection and give them no window (RFC 9113 6.9.2), and Deno.serve holds
 * each answer until the client takes it: 10 such connections asking 199 times each for an
 * 818 KB page took the board from 59 to 478 MB in 4 s, and rising. A page loads its
 * stylesheet, its script and its event stream: four.
 */
export const MAX_ANSWERS_PER_CONNECTION = 8;
/**
 * Answers on their way at once from all connections (live-update streams aside); more get
 * 503 with Retry-After. An answer that waits for its client holds up to about 400 KB in
 * Deno.serve: 150 connections as above, 8 answers each, held 458 MB.
 */
export const MAX_ANSWERS_IN_FLIGHT = 500;
/**
 * Answers one client (an address, an IPv6 /64; behind a trusted proxy the client it
 * forwards) may have on their way at once, on all its connections; more get 429. Without
 * it one client with 70 connections of 8 answers took every one of MAX_ANSWERS_IN_FLIGHT,
 * and everyone else got 503 for as long as it liked. A request with no client address (a
 * Unix socket whose proxy is not trusted) has MAX_ANSWERS_IN_FLIGHT alone: every visitor
 * would be the same client.
 */
export const MAX_ANSWERS_PER_CLIENT = 32;
/**
 * An answer its client has not taken within this many milliseconds stops counting towards
 * MAX_ANSWERS_IN_FLIGHT, and one sent in pieces is dropped: nginx's `send_timeout`, counted
 * between two reads of a piece (a slow client that keeps reading is never cut off) or, for
 * an answer Deno.serve took whole, from when it was handed over. Without it 16 addresses
 * under MAX_ANSWERS_PER_CLIENT, reading nothing, filled MAX_ANSWERS_IN_FLIGHT and every
 * new visitor got 503 for as long as they stayed (redteam F4). It still counts for its
 * connection and its client until it is sent or the connection is gone (what Deno.serve
 * holds of it stays until then), so one client never holds more than
 * MAX_ANSWERS_PER_CLIENT. Shorter than nginx's 60 s: the largest answer is 1.6 MB.
 */
export const SEND_TIMEOUT_MS = 30_000;
/**
 * Answers kept past MAX_ANSWERS_IN_FLIGHT for clients with fewer than
 * MAX_RESERVED_ANSWERS_PER_CLIENT on their way: a visitor the others crowd out is still
 * answered (redteam F11: 20 addresses of 32 answers each held all 500, and a new visitor
 * got 503 every second for 30 s). To take them all, 50 more addresses must each hold 2.
 */
export const MAX_RESERVED_ANSWERS = 100;
/** A client with fewer answers than this on their way may take a MAX_RESERVED_ANSWERS slot. */
export const MAX_RESERVED_ANSWERS_PER_CLIENT = 2;
/** Wrong admin tokens one client may send in a burst before 429. */
export const SIGN_IN_BURST = 5;
/** After that, one more try per this many milliseconds. */
export const SIGN_IN_REFILL_MS = 60_000;
/** Clients a limiter remembers; past this the longest-idle ones are forgotten (memory stays bounded). */
export const MAX_TRACKED_CLIENTS = 10_000;
/** Bytes queued for a live-update reader that does not keep up (about two of the largest
 * messages); then its connection is dropped, and the browser reconnects and resumes. 1,000
 * streams that never read hold at most 32 MB. */
export const MAX_STREAM_QUEUE_BYTES = 32 * 1024;

// Timings and lifetimes.

/** Every event stream gets a comment line this often, so proxies and browsers keep it open. */
export const HEARTBEAT_MS = 15_000;
/** How long a browser waits before reconnecting a broken stream. */
export const RECONNECT_MS = 2_000;
/**
 * Most events replayed to a reconnecting browser; if it missed more (or more than
 * MAX_STREAM_QUEUE_BYTES of them), it is told to reload.
 */
export const MAX_REPLAY_EVENTS = 200;
/** Retry-After (seconds) when every live-update slot is taken. */
export const STREAMS_RETRY_AFTER_S = 30;
/** Retry-After (seconds) for a 503 from a store that did not say when to retry. */
export const STORE_RETRY_AFTER_S = 5;
/** How long browsers may reuse /style.css and /board.js (Cache-Control max-age, seconds). */
export const STATIC_MAX_AGE_S = 3600;
/** How long the poster's name is remembered (cookie Max-Age, seconds): a year. */
export const NAME_COOKIE_MAX_AGE_S = 365 * 24 * 60 * 60;
/** How long an admin stays signed in (session cookie Max-Age, seconds): 8 hours. */
export const ADMIN_SESSION_S = 8 * 60 * 60;
/** Admin sessions kept at once; signing in past this ends the oldest. */
export const MAX_ADMIN_SESSIONS = 100;

// ===========================================================================
// Part 1. The store: keeping messages so that an acknowledged one is never lost.
// Teaches: an append-only file, fdatasync before answering, group commit (many
// posts, one flush), and crash states that start-up can always sort out.
// ===========================================================================

// ---------------------------------------------------------------------------
// The store: what the board needs from its storage, whatever that is.
// ---------------------------------------------------------------------------

/** One stored message, as kept on disk and sent by the JSON API. */
export interface Message {
  /** Increasing integer, never reused (not even after a clear). */
  readonly id: number;
  /** The message as posted; line breaks are `\n`. */
  readonly text: string;
  /** The poster's name, when given. */
  readonly name?: string;
  /** When it was stored, ISO 8601 UTC (`2026-11-21T22:44:51.000Z`). */
  readonly postedAt: string;
}

/** A message as a poster sends it, already validated. */
export interface NewMessage {
  /** The message, 1 to MAX_MESSAGE_CHARS characters. */
  text: string;
  /** The poster's name, when given. */
  name?: string;
}

/** Which page of messages to list. */
export interface PageQuery {
  /** Only messages with an id below this one; all when omitted. */
  before?: number | undefined;
  /** At most this many messages. */
  limit: number;
}

/** A page of messages, newest first. */
export interface MessagePage {
  /** The messages on this page, newest first. */
  messages: Message[];
  /** Whether older messages exist beyond this page. */
  hasOlder: boolean;
}

/** What a clear did. */
export interface ClearResult {
  /** How many messages were moved out of the board. */
  archived: number;
  /** Where they went (a file path for the file store); null when nothing was archived. */
  archive: string | null;
}

/**
 * A change on the board, for live updates. Events are numbered by message id:
 * a new message carries its own id; a clear carries the id of the last
 * message it removed ("everything up to here is gone").
 */
export type BoardEvent =
  | { type: "message"; id: number; message: Message }
  | { type: "clear"; id: number }
  | { type: "delete"; id: number }
  | { type: "restore"; id: number };

/**
 * The board's storage. The JSON Lines file is the default implementation;
 * PostgreSQL (board_postgres.ts) is the other; each provides these operations.
 */
export interface MessageStore {
  /** Up to `limit` messages older than `before`, newest first. */
  listMessages(query: PageQuery): Promise<MessagePage>;
  /** Stores a message durably, then resolves with it (id and time assigned). */
  appendMessage(input: NewMessage): Promise<Message>;
  /** Moves every message into an archive, durably; the board is then empty. */
  clearMessages(): Promise<ClearResult>;
  /**
   * Takes one message off the board; it is kept (tombstone line in JSON Lines, archive row
   * in PostgreSQL), never destroyed. Resolves false when no such message is on the board.
   */
  deleteMessage(id: number): Promise<boolean>;
  /**
   * Puts the messages of the newest archive back on the board (ids kept). Resolves how many
   * came back (0 when there is no archive). Throws StoreUnavailableError like appendMessage.
   */
  restoreNewestArchive(): Promise<{ restored: number }>;
  /**
   * False while the store is read-only after a failed write or sync (posts get 503 with
   * Retry-After); true again once a background retry succeeds.
   */
  readonly writable: boolean;
  /**
   * What a client that last saw event `id` has missed, oldest first, at most
   * `limit`: the latest clear that removed message `id` or later ones (a clear
   * sent twice does no harm); the deletes, since that clear, of messages up to
   * `id` made while `id` or a later one was the newest (the client may have
   * missed them; a delete sent twice does no harm); every message after `id`;
   * last, a restore made while a message after `id` was the newest (the page
   * reloads; one made while `id` itself was the newest is not repeated, so a
   * page that reloads for it is not sent it again).
   */
  eventsAfter(id: number, limit: number): Promise<BoardEvent[]>;
  /**
   * Calls `listener` with every change from now on, in id order (in PostgreSQL
   * mode, also the changes made by other board processes). Returns a function
   * that stops the calls.
   */
  subscribe(listener: (event: BoardEvent) => void): () => void;
  /** Finishes the writes already accepted, then releases the storage. */
  close(): Promise<void>;
}

/** The store cannot take writes now (closed, or failed); the board answers 503. */
export class StoreUnavailableError extends Error {
  /** Always "StoreUnavailableError". */
  override name = "StoreUnavailableError";
  /** When to try again, for the Retry-After header; undefined: the board's default. */
  readonly retryAfterSeconds?: number | undefined;
  /**
   * The write timed out on its way to storage and may still be stored: the client is told
   * its message may still appear, so that it looks before sending it again.
   */
  readonly mayStillComplete: boolean;

  /** `retryAfterSeconds` and `mayStillComplete` (default false) go with the message and `cause`. */
  constructor(
    message: string,
    options: ErrorOptions & {
      retryAfterSeconds?: number | undefined;
      mayStillComplete?: boolean | undefined;
    } = {},
  ) {
    super(message, options);
    this.retryAfterSeconds = options.retryAfterSeconds;
    this.mayStillComplete = options.mayStillComplete ?? false;
  }
}

/** The board cannot start: its data file is locked or unreadable. The message says why. */
export class StartupError extends Error {
  /** Always "StartupError". */
  override name = "StartupError";
}

/**
 * Hands every board event to the subscribers, in the order published: the
 * live-update fan-out both stores use. A listener that throws is logged; the
 * others still get the event.
 */
export class EventFanOut {
  #listeners = new Set<(event: BoardEvent) => void>();
  #log: (line: string) => void;

  /** `log` gets one line when a listener throws. */
  constructor(log: (line: string) => void) {
    this.#log = log;
  }

  /** Adds a listener; returns the function that removes it. */
  subscribe(listener: (event: BoardEvent) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** Calls every listener with `event`. */
  publish(event: BoardEvent): void {
    for (const listener of this.#listeners) {
      try {
        listener(event);
      } catch (error) {
        this.#log(`message board: a change listener failed: ${error}`);
      }
    }
  }

  /** Removes every listener (the store is closing). */
  clear(): void {
    this.#listeners.clear();
  }
}

/** One entry of a {@linkcode WriteQueue}. */
type QueuedWrite<Input, Output> =
  | {
    input: Input;
    resolve: (output: Output) => void;
    reject: (error: unknown) => void;
  }
  | { task: () => Promise<void> };

/**
 * The group-commit queue both stores use: every write goes through it, one at
 * a time, in arrival order. Posts that wait together are handed to
 * `writeBatch` as one batch (one write and one fdatasync, or one transaction),
 * so 32 clients posting at once pay for one disk flush, not 32. Other writes
 * (a clear, a delete) run alone, between batches, through `run`.
 */
export class WriteQueue<Input, Output> {
  #queue: QueuedWrite<Input, Output>[] = [];
  #draining: Promise<void> | null = null;
  #writeBatch: (inputs: Input[]) => Promise<Output[]>;

  /**
   * `writeBatch` stores its inputs durably and resolves with one output per
   * input, in order; when it throws, every post of that batch is refused
   * with the error.
   */
  constructor(writeBatch: (inputs: Input[]) => Promise<Output[]>) {
    this.#writeBatch = writeBatch;
  }

  /** Queues one post; resolves once its batch is stored. */
  add(input: Input): Promise<Output> {
    const { promise, resolve, reject } = Promise.withResolvers<Output>();
    this.#push({ input, resolve, reject });
    return promise;
  }

  /** Runs `task` alone, after every write queued before it. */
  run<T>(task: () => Promise<T>): Promise<T> {
    const { promise, resolve, reject } = Promise.withResolvers<T>();
    this.#push({ task: () => task().then(resolve, reject) });
    return promise;
  }

  /** Resolves once every write queued so far is done. */
  async idle(): Promise<void> {
    while (this.#draining) await this.#draining;
  }

  #push(entry: QueuedWrite<Input, Output>): void {
    this.#queue.push(entry);
    this.#draining ??= this.#drain();
  }

  async #drain(): Promise<void> {
    while (this.#queue.length > 0) {
      const first = this.#queue[0]!;
      if ("task" in first) {
        this.#queue.shift();
        await first.task();
        continue;
      }
      let count = 1;
      while (
        count < this.#queue.length && count < MAX_BATCH_MESSAGES &&
        "input" in this.#queue[count]!
      ) count++;
      const batch = this.#queue.splice(0, count) as Extract<
        QueuedWrite<Input, Output>,
        { input: Input }
      >[];
      try {
        const outputs = await this.#writeBatch(batch.map((job) => job.input));
        batch.forEach((job, i) => job.resolve(outputs[i] as Output));
      } catch (error) {
        for (const job of batch) job.reject(error);
      }
    }
    this.#draining = null;
  }
}

// ---------------------------------------------------------------------------
// The JSON Lines file store.
//
// Files beside the data file `messages.jsonl`:
//   messages.jsonl.lock                   held locked while a board runs (and the data file too)
//   messages.jsonl.new                    a clear in progress (see clearNow below)
//   messages.jsonl.restore                a restore in progress (see restoreNow)
//   messages.jsonl.probe                  a short-lived test write while read-only
//   messages.cleared-<time>.jsonl         archives made by clears
//   messages.cleared-<time>.jsonl.restored  an archive whose messages were put back
//   messages.jsonl.torn-<time>            an unacknowledged tail set aside
//
// The data file holds one message per line, and a tombstone line
// `{"deletedId": 7, "deletedAt": "...", "newestId": 12}` for each message
// taken off the board (the message's own line stays: nothing is destroyed).
// After a clear its first line is a clear record,
// `{"clearedAt": "...", "nextId": 58, "archive": "..."}`, so that ids keep
// increasing across clears (a client paging with `before=ID`, or a cache,
// must never see an old id come back with new text); after a restore it is a
// restore record, `{"restoredAt": "...", "archive": "...", "nextId": 58,
// "newestId": 57}`.
// ---------------------------------------------------------------------------

/** Options for {@linkcode openJsonLinesStore}. */
export interface JsonLinesStoreOptions {
  /** Where notices go (a torn line set aside, a failed write). @default console.error */
  log?: ((line: string) => void) | undefined;
  /** A write not on disk within this many milliseconds gets 503. @default WRITE_TIMEOUT_MS (10 s) */
  writeTimeoutMs?: number | undefined;
}

/** First wait before a read-only store tries its file again; it doubles up to the next. */
const RETRY_FIRST_MS = 1_000;
/** Longest wait between two tries of a read-only store. */
const RETRY_MAX_MS = 10_000;
/** Bytes a read-only store writes (and removes) to see whether the disk takes writes again. */
const PROBE_BYTES = 16 * 1024;

/**
 * Opens (creating when missing) the JSON Lines store at `dataFile`: takes the
 * exclusive lock, finishes an interrupted clear or restore, reads every line,
 * sets aside a torn last line. Throws {@linkcode StartupError} when another
 * process holds the lock or a line other than the last cannot be read; the
 * file is then left exactly as it was. When the disk takes no writes (full),
 * it opens read-only: pages are served, posts get 503, and it retries in the
 * background.
 */
export async function openJsonLinesStore(
  dataFile: string,
  { log = console.error, writeTimeoutMs = WRITE_TIMEOUT_MS }:
    JsonLinesStoreOptions = {},
): Promise<MessageStore> {
  await Deno.mkdir(dirname(dataFile), { recursive: true });
  const lock = await lockDataFile(dataFile);
  try {
    try {
      const { loaded, file } = await loadDataFile(dataFile, null, log);
      return new JsonLinesStore({
        dataFile,
        lock,
        file,
        log,
        loaded,
        writeTimeoutMs,
      });
    } catch (error) {
      if (!isWriteFailure(error)) throw error;
      // The file can be read but not repaired (a torn tail cannot be set
      // aside on a full disk): serve it read-only and keep trying.
      const { loaded } = await readDataFile(dataFile, null);
      const store = new JsonLinesStore({
        dataFile,
        lock,
        file: null,
        log,
        loaded,
        writeTimeoutMs,
      });
      store.startReadOnly(error);
      return store;
    }
  } catch (error) {
    lock.close();
    throw error;
  }
}

/** Errors that a full or failing disk gives on a write (not a bad line, not a permission). */
function isWriteFailure(error: unknown): boolean {
  return error instanceof Error && !(error instanceof StartupError) &&
    !(error instanceof Deno.errors.NotCapable) &&
    !(error instanceof Deno.errors.PermissionDenied) &&
    !(error instanceof Deno.errors.NotFound);
}

/**
 * Brings the data file to a state every later write can append to, and reads
 * it: finishes an interrupted clear or restore, creates a missing file, then
 * sets aside whatever follows the acknowledged bytes (`ackedSize`; at
 * start-up, null: everything up to the last newline) into a `.torn-` file and
 * cuts it off. Returns what the file holds and an append handle on it.
 */
async function loadDataFile(
  dataFile: string,
  ackedSize: number | null,
  log: (line: string) => void,
): Promise<{ loaded: LoadedData; file: Deno.FsFile }> {
  await finishInterruptedClear(dataFile);
  await Deno.remove(`${dataFile}.restore`).catch(() => {}); // never renamed into place
  const { loaded, tail } = await readDataFile(dataFile, ackedSize);
  // Locked before anything is changed: the tail may be a write of a board that is running.
  const file = await openForAppend(dataFile);
  try {
    if (loaded.restoredArchive !== null) {
      await markArchiveRestored(dataFile, loaded.restoredArchive);
    }
    if (tail.byteLength > 0) {
      const sideFile = await setAsideTornTail(dataFile, tail, loaded.size);
      log(
        ackedSize === null
          ? `${dataFile}: the last line was incomplete (a write cut short by a crash; ` +
            `it was never acknowledged); its ${tail.byteLength} bytes were moved to ${sideFile}`
          : `${dataFile}: the ${tail.byteLength} bytes of a write that failed (never ` +
            `acknowledged) were moved to ${sideFile}`,
      );
    }
  } catch (error) {
    file.close();
    throw error;
  }
  return { loaded, file };
}

/**
 * Opens the data file for appending, with an exclusive lock on the file itself (see
 * {@linkcode lockDataFile}), or throws StartupError when another process holds it: a
 * second board that reaches the file by another name (a symbolic or hard link to it)
 * takes another lock file, and two boards appended to one file with the same ids.
 */
async function openForAppend(dataFile: string): Promise<Deno.FsFile> {
  const file = await Deno.open(dataFile, { append: true });
  // Windows locks are mandatory: they would stop this process's own reads of the file.
  if (Deno.build.os === "windows" || await file.tryLock(true)) return file;
  file.close();
  throw new StartupError(
    `${dataFile} is in use by another message board process (the file itself is locked: ` +
      `that board reaches it by another name, a link); stop that one first, or give ` +
      `this one its own --data file`,
  );
}

/** Bytes of the data file read at a time: start-up never holds the whole file (100 MB). */
const READ_CHUNK_BYTES = 1024 * 1024;

/**
 * Reads the data file (creating it when missing) a chunk at a time, parsing its lines as
 * they come (see {@linkcode parseDataFile}): the lines up to `ackedSize` (null: up to the
 * last newline), and `tail`, the bytes after them.
 */
async function readDataFile(
  dataFile: string,
  ackedSize: number | null,
): Promise<{ loaded: LoadedData; tail: Uint8Array }> {
  const parser = new DataFileParser(dataFile);
  const file = await openOrCreateDataFile(dataFile);
  if (file === null) {
    return { loaded: parser.finish(), tail: new Uint8Array(0) };
  }
  try {
    // `buffer` holds a line's start (`held` bytes) followed by what is read next; it grows
    // only for a line longer than itself.
    let buffer = new Uint8Array(READ_CHUNK_BYTES);
    let held = 0;
    let limit = ackedSize ?? Infinity;
    while (limit > 0) {
      if (held === buffer.byteLength) {
        const larger = new Uint8Array(buffer.byteLength * 2);
        larger.set(buffer);
        buffer = larger;
      }
      const room = Math.min(buffer.byteLength - held, limit);
      const read = await file.read(buffer.subarray(held, held + room));
      if (read === null) break;
      held += read;
      limit -= read;
      const end = buffer.subarray(0, held).lastIndexOf(0x0a) + 1;
      if (end === 0) continue;
      parser.addLines(buffer.subarray(0, end));
      buffer.copyWithin(0, end, held);
      held -= end;
    }
    // What follows the last whole line: a torn line, or what came after `ackedSize`.
    const tail = [buffer.slice(0, held)];
    if (ackedSize !== null) {
      for await (const chunk of file.readable) tail.push(chunk);
    }
    return { loaded: parser.finish(), tail: concatBytes(tail) };
  } finally {
    try {
      file.close();
    } catch {
      // closed by reading file.readable to its end
    }
  }
}

/** The data file opened for reading, or null when it was missing (then created empty). */
async function openOrCreateDataFile(
  dataFile: string,
): Promise<Deno.FsFile | null> {
  try {
    // A FIFO would block the read (and start-up) until some other process writes to it.
    if (!(await Deno.stat(dataFile)).isFile) {
      throw new StartupError(
        `${dataFile} is not a regular file; give --data a file (it is created when missing)`,
      );
    }
    return await Deno.open(dataFile, { read: true });
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
    await writeFileDurably(dataFile, new Uint8Array(0));
    await syncDirectory(dirname(dataFile));
    return null;
  }
}

/** The pieces joined into one array. */
function concatBytes(pieces: Uint8Array[]): Uint8Array {
  if (pieces.length === 1) return pieces[0]!;
  const bytes = new Uint8Array(
    pieces.reduce((sum, piece) => sum + piece.byteLength, 0),
  );
  let offset = 0;
  for (const piece of pieces) {
    bytes.set(piece, offset);
    offset += piece.byteLength;
  }
  return bytes;
}

/**
 * Takes an exclusive lock on `<dataFile>.lock`, or throws at once when another
 * process holds it. The lock sits on its own file, not on the data file,
 * because a clear replaces the data file and a lock follows the old inode.
 * These are flock(2) locks: the kernel drops them when the process dies, so
 * a crash never leaves a stale lock behind. The data file is locked as well
 * ({@linkcode openForAppend}), against a board that names it by another path
 * (a link), and that lock also stops a second board when another process removed
 * the lock file; the store then takes the lock file again before its next write.
 */
async function lockDataFile(dataFile: string): Promise<Deno.FsFile> {
  const lockFile = `${dataFile}.lock`;
  const lock = await Deno.open(lockFile, {
    read: true,
    write: true,
    create: true,
  });
  if (!(await lock.tryLock(true))) {
    lock.close();
    throw new StartupError(
      `${dataFile} is in use by another message board process (${lockFile} is locked); ` +
        `stop that one first, or give this one its own --data file`,
    );
  }
  return lock;
}

/**
 * Completes or forgets a clear that a crash interrupted (see `clearNow`): a
 * `.new` file beside a missing data file means the messages were already moved
 * to the archive, so the clear is finished; beside an existing data file it
 * means the clear had not started moving anything, so the `.new` file goes.
 */
async function finishInterruptedClear(dataFile: string): Promise<void> {
  const newFile = `${dataFile}.new`;
  if (!(await pathExists(newFile))) return;
  if (await pathExists(dataFile)) {
    await Deno.remove(newFile);
  } else {
    await Deno.rename(newFile, dataFile);
  }
  await syncDirectory(dirname(dataFile));
}

/**
 * The last step of a restore (see `restoreNow`): the archive whose messages
 * are back on the board gets `.restored` added to its name, so the next
 * restore takes the one before it. Done again at start-up when a crash came
 * between the two renames.
 */
async function markArchiveRestored(
  dataFile: string,
  archiveName: string,
): Promise<void> {
  const archive = join(dirname(dataFile), archiveName);
  if (!(await pathExists(archive))) return;
  await Deno.rename(archive, `${archive}.restored`);
  await syncDirectory(dirname(dataFile));
}

/**
 * The newest archive not yet restored, beside `dataFile`, or null. Archives
 * are named `<stem>.cleared-<time>[-N]<extension>` (see `clearNow`); the time
 * sorts as text, and N counts clears within one millisecond.
 */
async function findNewestArchive(dataFile: string): Promise<string | null> {
  const extension = extname(dataFile);
  const stem = basename(dataFile).slice(0, -extension.length || undefined);
  let newest: { name: string; stamp: string; n: number } | null = null;
  for await (const entry of Deno.readDir(dirname(dataFile))) {
    if (!entry.isFile) continue;
    const prefix = `${stem}.cleared-`;
    if (!entry.name.startsWith(prefix) || !entry.name.endsWith(extension)) {
      continue;
    }
    const middle = entry.name.slice(
      prefix.length,
      entry.name.length - extension.length,
    );
    const match = /^(.*Z)(?:-(\d+))?$/.exec(middle);
    if (match === null) continue;
    const stamp = match[1]!;
    const n = Number(match[2] ?? 1);
    if (
      newest === null || stamp > newest.stamp ||
      (stamp === newest.stamp && n > newest.n)
    ) newest = { name: entry.name, stamp, n };
  }
  return newest === null ? null : join(dirname(dataFile), newest.name);
}

/** A message taken off the board, for clients catching up. */
export interface DeleteRecord {
  /** The message's id. */
  id: number;
  /** The last id given out when it was deleted. */
  newestId: number;
}

/** The outcome of reading a data file. */
export interface LoadedData {
  /** Every message on the board, oldest first (deleted ones left out). */
  messages: Message[];
  /** The id the next post gets. */
  nextId: number;
  /** The last message id the latest clear removed; 0 when there was none (or a restore since). */
  clearedThrough: number;
  /** The deletes since the latest clear, oldest first. */
  deletes: DeleteRecord[];
  /** The newest id on the board right after the latest restore; null when there was none. */
  restoredNewest: number | null;
  /** The archive file (a name in the same folder) the latest restore took; null when none. */
  restoredArchive: string | null;
  /** Bytes up to the last newline: the complete lines. */
  size: number;
  /** Bytes after the last newline: a line cut short by a crash (often empty). */
  tornTail: Uint8Array;
}

const utf8 = new TextDecoder("utf-8", { fatal: true });
/** For pieces of a data file: keeps a byte order mark, which only a line's start may have. */
const dataFileUtf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });
const encoder = new TextEncoder();

/**
 * Parses a whole data file. Every complete line must be a valid message with
 * an id above the one before, a tombstone, or (as line 1) a clear or restore
 * record; otherwise it throws {@linkcode StartupError} naming the file and
 * line number. Bytes after the last newline are returned as `tornTail`: every
 * acknowledged line ended with its newline in the same write, so an
 * unfinished line was never acknowledged.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { parseDataFile } from "./message_board.ts";
 * const bytes = new TextEncoder().encode(
 *   '{"id":1,"text":"hi","postedAt":"2026-11-21T22:44:51.000Z"}\n{"id',
 * );
 * const loaded = parseDataFile(bytes, "m.jsonl");
 * assert.equal(loaded.messages.length, 1);
 * assert.equal(loaded.messages[0].id, 1);
 * assert.equal(loaded.nextId, 2);
 * assert.equal(loaded.clearedThrough, 0);
 * assert.deepEqual(loaded.tornTail, new TextEncoder().encode('{"id'));
 * ```
 */
export function parseDataFile(bytes: Uint8Array, fileName: string): LoadedData {
  const parser = new DataFileParser(fileName);
  const end = bytes.lastIndexOf(0x0a) + 1; // 0 when there is no newline at all
  let start = 0;
  while (start < end) {
    // Decoded a chunk at a time: one decode per line took a sixth of a start-up.
    const stop = bytes.lastIndexOf(0x0a, start + READ_CHUNK_BYTES - 1) + 1;
    const next = stop > start ? stop : bytes.indexOf(0x0a, start) + 1;
    parser.addLines(bytes.subarray(start, next));
    start = next;
  }
  return { ...parser.finish(), tornTail: bytes.slice(end) };
}

/**
 * {@linkcode parseDataFile}'s state between chunks, so that start-up can parse the file as
 * it reads it: `addLines` takes whole lines (each ending in a newline), `finish` says
 * what they held.
 */
class DataFileParser {
  #fileName: string;
  #messages: Message[] = [];
  #deletes: DeleteRecord[] = [];
  #lastId = 0;
  #minId = 1; // after a clear record: its nextId (ids are never reused)
  #recordNextId = 1;
  #clearedThrough = 0;
  #restoredNewest: number | null = null;
  #restoredArchive: string | null = null;
  #lineNumber = 0;
  #size = 0;

  constructor(fileName: string) {
    this.#fileName = fileName;
  }

  /** Parses `bytes`: whole lines, the last one ending in a newline. */
  addLines(bytes: Uint8Array): void {
    let text: string;
    try {
      text = dataFileUtf8.decode(bytes);
    } catch {
      throw lineError(
        this.#fileName,
        this.#lineNumber + lineOfBadUtf8(bytes),
        "not a valid JSON line",
      );
    }
    // A 0x0a byte is always a newline in UTF-8, and JSON never has a raw one in a string.
    let start = 0;
    while (start < text.length) {
      const newline = text.indexOf("\n", start);
      this.#addLine(text.slice(start, newline));
      start = newline + 1;
    }
    this.#size += bytes.byteLength;
  }

  #addLine(line: string): void {
    const lineNumber = ++this.#lineNumber;
    let value: unknown;
    try {
      // A byte order mark starting a line (an editor's, or two files put together) is
      // skipped, as the decoder did when each line was decoded alone.
      value = JSON.parse(line.charCodeAt(0) === 0xfeff ? line.slice(1) : line);
    } catch {
      throw lineError(this.#fileName, lineNumber, "not a valid JSON line");
    }
    const message = toMessage(value);
    if (message !== null) {
      if (message.id <= this.#lastId || message.id < this.#minId) {
        throw lineError(
          this.#fileName,
          lineNumber,
          `message id ${message.id} does not increase`,
        );
      }
      this.#messages.push(message);
      this.#lastId = message.id;
      return;
    }
    const tombstone = toTombstone(value);
    if (tombstone !== null) {
      // A tombstone for a message not on the board does nothing (deleting twice is harmless).
      const index = indexOfId(this.#messages, tombstone.id);
      if (this.#messages[index]?.id === tombstone.id) {
        this.#messages.splice(index, 1);
      }
      this.#deletes.push(tombstone);
      return;
    }
    const record = lineNumber === 1 ? toFirstLineRecord(value) : null;
    if (record === null) {
      throw lineError(
        this.#fileName,
        lineNumber,
        "not a message (id, text, postedAt)",
      );
    }
    this.#recordNextId = record.nextId;
    if (record.kind === "clear") {
      this.#minId = record.nextId;
      this.#clearedThrough = record.nextId - 1;
    } else {
      this.#restoredNewest = record.newestId;
      this.#restoredArchive = record.archive;
    }
  }

  /** What the lines held; `size` counts their bytes, `tornTail` is left empty. */
  finish(): LoadedData {
    return {
      messages: this.#messages,
      nextId: Math.max(this.#lastId + 1, this.#recordNextId),
      clearedThrough: this.#clearedThrough,
      deletes: this.#deletes,
      restoredNewest: this.#restoredNewest,
      restoredArchive: this.#restoredArchive,
      size: this.#size,
      tornTail: new Uint8Array(0),
    };
  }
}

/** The line (1 for the first) of `bytes` that is not valid UTF-8. */
function lineOfBadUtf8(bytes: Uint8Array): number {
  let start = 0;
  for (let line = 1;; line++) {
    const newline = bytes.indexOf(0x0a, start);
    const end = newline === -1 ? bytes.byteLength : newline;
    try {
      utf8.decode(bytes.subarray(start, end));
    } catch {
      return line;
    }
    if (newline === -1) return line;
    start = newline + 1;
  }
}

/** The index of the first message whose id is `id` or more (binary search). */
function indexOfId(messages: readonly Message[], id: number): number {
  let low = 0;
  let high = messages.length;
  while (low < high) {
    const middle = (low + high) >>> 1;
    if (messages[middle]!.id < id) low = middle + 1;
    else high = middle;
  }
  return low;
}

/** The start-up error for an unreadable line, in the `file:line: reason` shape editors jump to. */
function lineError(
  fileName: string,
  lineNumber: number,
  why: string,
): StartupError {
  return new StartupError(
    `${fileName}:${lineNumber}: ${why}; the board will not start until this line is ` +
      `repaired or removed (the file was not changed)`,
  );
}

/** Returns the message in a parsed line, or null when it is not a valid one. */
function toMessage(value: unknown): Message | null {
  if (typeof value !== "object" || value === null) return null;
  const { id, text, name, postedAt } = value as Record<string, unknown>;
  if (
    !isPositiveSafeInteger(id) || typeof text !== "string" ||
    !text.isWellFormed()
  ) return null;
  if (
    name !== undefined && (typeof name !== "string" || !name.isWellFormed())
  ) return null;
  const time = typeof postedAt === "string" ? canonicalTime(postedAt) : null;
  if (time === null) return null;
  return makeMessage(id, text, name, time);
}

/** Returns the tombstone in a parsed line, or null. */
function toTombstone(value: unknown): DeleteRecord | null {
  if (typeof value !== "object" || value === null) return null;
  const { deletedId, deletedAt, newestId } = value as Record<string, unknown>;
  if (
    !isPositiveSafeInteger(deletedId) || !isPositiveSafeInteger(newestId) ||
    typeof deletedAt !== "string" || !isIsoTime(deletedAt)
  ) return null;
  return { id: deletedId, newestId };
}

/** Returns the clear or restore record in a parsed first line, or null. */
function toFirstLineRecord(
  value: unknown,
):
  | { kind: "clear"; nextId: number }
  | { kind: "restore"; nextId: number; newestId: number; archive: string }
  | null {
  if (typeof value !== "object" || value === null) return null;
  const { clearedAt, restoredAt, nextId, newestId, archive } = value as Record<
    string,
    unknown
  >;
  // nextId may be one past the largest safe id: every id was used.
  if (!isPositiveSafeInteger(nextId) && nextId !== MAX_ID + 1) return null;
  if (typeof clearedAt === "string") return { kind: "clear", nextId };
  if (
    typeof restoredAt === "string" && typeof archive === "string" &&
    archive === basename(archive) && archive !== "" &&
    (newestId === 0 || isPositiveSafeInteger(newestId))
  ) return { kind: "restore", nextId, newestId, archive };
  return null;
}

const ISO_UTC = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?Z$/;

function isIsoTime(text: string): boolean {
  return ISO_UTC.test(text) && !Number.isNaN(new Date(text).getTime());
}

/** A time of day in the form toISOString writes (`T22:44:51.000Z`), in range. */
const ISO_TIME_OF_DAY =
  /^\d{4}-\d{2}-\d{2}T(?:[01]\d|2[0-3]):[0-5]\d:[0-5]\d\.\d{3}Z$/;
/** The day (`2026-11-21T`) of the last time canonicalTime found in toISOString's form. */
let canonicalDay = "-";

/**
 * `text` (an ISO 8601 UTC time) as toISOString writes it, or null when it is none. A
 * start-up checks every line's time, and two Date objects for each took a quarter of it:
 * a time in that form on a day already seen is taken as it is (every time of day within
 * a valid day is one).
 */
function canonicalTime(text: string): string | null {
  if (
    text.length === 24 && text.startsWith(canonicalDay) &&
    ISO_TIME_OF_DAY.test(text)
  ) return text;
  if (!ISO_UTC.test(text)) return null;
  const time = Date.parse(text);
  if (Number.isNaN(time)) return null;
  const iso = new Date(time).toISOString();
  if (iso === text) canonicalDay = text.slice(0, 11);
  return iso;
}

function isPositiveSafeInteger(value: unknown): value is number {
  return typeof value === "number" && Number.isSafeInteger(value) && value > 0;
}

/** Builds a message object with its keys in file order (id, text, name, postedAt). */
function makeMessage(
  id: number,
  text: string,
  name: string | undefined,
  postedAt: string,
) {
  return name === undefined
    ? { id, text, postedAt }
    : { id, text, name, postedAt };
}

/**
 * Moves the bytes after the acknowledged ones into a side file, then cuts
 * them off the data file. Order matters: the side file is on disk before the
 * data file shrinks, so a crash in between leaves the bytes in both places
 * (and the next start-up sets them aside again), never in neither. A side file
 * that cannot be written (a full disk) is removed again, never left empty.
 */
async function setAsideTornTail(
  dataFile: string,
  tail: Uint8Array,
  keptSize: number,
): Promise<string> {
  const sideFile = await freePath(
    `${dataFile}.torn-${fileStamp(new Date())}`,
    "",
  );
  try {
    await writeFileDurably(sideFile, tail, true);
    await syncDirectory(dirname(dataFile));
  } catch (error) {
    await Deno.remove(sideFile).catch(() => {});
    throw error;
  }
  using file = await Deno.open(dataFile, { write: true });
  await file.truncate(keptSize);
  await file.syncData();
  return sideFile;
}

/**
 * A post in the write queue; `abandoned` once its client got 503 for waiting too long,
 * `writing` once its batch started (from then on it may reach the disk whatever its client
 * was told).
 */
interface QueuedPost {
  input: NewMessage;
  abandoned: boolean;
  writing: boolean;
}

/**
 * The file store once open. Messages live in memory (an array in id order)
 * and every page is served from there; the file is only ever appended to,
 * so a post costs the same with ten messages or a million.
 *
 * All writes go through one {@linkcode WriteQueue}: posts waiting together
 * become one write and one fdatasync (group commit).
 *
 * Live updates stay inside the process: subscribers are called right after
 * each write is on disk, in id order, since one loop does all the writing.
 *
 * When a write or a sync fails, the store turns read-only: pages are still
 * served, writes get {@linkcode StoreUnavailableError} with a Retry-After,
 * and a background retry repairs the file and turns it writable again (see
 * `#recover`).
 */
class JsonLinesStore implements MessageStore {
  readonly dataFile: string;
  #lock: Deno.FsFile;
  #file: Deno.FsFile | null;
  #log: (line: string) => void;
  #messages: Message[];
  #nextId: number;
  /** The last message id the latest clear removed (0: none), for clients resuming. */
  #clearedThrough: number;
  #deletes: DeleteRecord[];
  #restoredNewest: number | null;
  /** Bytes of the data file that hold acknowledged lines; anything after is not ours. */
  #ackedSize: number;
  #writes = new WriteQueue<QueuedPost, Message | null>((posts) =>
    this.#appendNow(posts)
  );
  #writeTimeoutMs: number;
  /** A write outlasted #writeTimeoutMs and has not finished yet: the disk does not answer. */
  #stalled = false;
  #events: EventFanOut;
  /** Why the store is read-only; null while it is writable. */
  #failure: unknown = null;
  /** The file may have been replaced (a clear or restore failed half-way): reread all of it. */
  #reloadAll = false;
  #retryTimer: ReturnType<typeof setTimeout> | undefined;
  #retryDelayMs = RETRY_FIRST_MS;
  #retryAt = 0;
  #idsUsedUp = false;
  #closed = false;

  constructor(state: {
    dataFile: string;
    lock: Deno.FsFile;
    file: Deno.FsFile | null;
    log: (line: string) => void;
    loaded: LoadedData;
    writeTimeoutMs: number;
  }) {
    this.dataFile = state.dataFile;
    this.#writeTimeoutMs = state.writeTimeoutMs;
    this.#lock = state.lock;
    this.#file = state.file;
    this.#log = state.log;
    this.#events = new EventFanOut(state.log);
    this.#messages = state.loaded.messages;
    this.#nextId = state.loaded.nextId;
    this.#clearedThrough = state.loaded.clearedThrough;
    this.#deletes = state.loaded.deletes;
    this.#restoredNewest = state.loaded.restoredNewest;
    this.#ackedSize = state.loaded.size;
  }

  get writable(): boolean {
    return this.#failure === null && !this.#closed && !this.#stalled;
  }

  listMessages({ before, limit }: PageQuery): Promise<MessagePage> {
    const end = before === undefined
      ? this.#messages.length
      : indexOfId(this.#messages, before);
    const start = Math.max(0, end - limit);
    const messages = this.#messages.slice(start, end).reverse();
    return Promise.resolve({ messages, hasOlder: start > 0 });
  }

  appendMessage(input: NewMessage): Promise<Message> {
    if (this.#closed) return Promise.reject(closedError());
    if (this.#stalled) return Promise.reject(this.#stalledError(false));
    const post = { input, abandoned: false, writing: false };
    return this.#withinTimeout(this.#writes.add(post), () => {
      post.abandoned = true; // not written if its batch has not started yet
      return post.writing;
    }) as Promise<Message>;
  }

  clearMessages(): Promise<ClearResult> {
    return this.#runWithinTimeout(() => this.#clearNow());
  }

  deleteMessage(id: number): Promise<boolean> {
    return this.#runWithinTimeout(() => this.#deleteNow(id));
  }

  restoreNewestArchive(): Promise<{ restored: number }> {
    return this.#runWithinTimeout(() => this.#restoreNow());
  }

  /** Queues a clear, delete or restore; one whose client got its 503 meanwhile never runs. */
  #runWithinTimeout<T>(task: () => Promise<T>): Promise<T> {
    if (this.#closed) return Promise.reject(closedError());
    if (this.#stalled) return Promise.reject(this.#stalledError(false));
    let abandoned = false;
    let started = false;
    const queued = this.#writes.run(() => {
      if (abandoned) return Promise.reject(this.#stalledError(false));
      started = true;
      return task();
    });
    return this.#withinTimeout(queued, () => {
      abandoned = true;
      return started;
    });
  }

  /**
   * `write`, or StoreUnavailableError once it has taken #writeTimeoutMs (then `abandon` is
   * called and says whether the write had started, and the store says it is not writable
   * until that write ends). The queue runs one write at a time, so any write that ends after
   * a stall means the disk has answered. Writes that come meanwhile are refused at once: they
   * would only wait behind the stalled one, and pile up in memory for as long as it lasts.
   */
  #withinTimeout<T>(write: Promise<T>, abandon: () => boolean): Promise<T> {
    const { promise, resolve, reject } = Promise.withResolvers<T>();
    const timer = setTimeout(() => {
      const started = abandon();
      if (!this.#stalled) {
        this.#stalled = true;
        this.#log(
          `${this.dataFile}: the disk did not finish a write within ${this.#writeTimeoutMs} ms; ` +
            `writes get 503 until it does`,
        );
      }
      reject(this.#stalledError(started));
    }, this.#writeTimeoutMs);
    const settled = () => {
      clearTimeout(timer);
      if (!this.#stalled) return;
      this.#stalled = false;
      // A write that failed (EIO) leaves the store read-only: then it does not take posts yet.
      this.#log(
        `${this.dataFile}: the disk answers again` +
          (this.#failure === null ? "; posts are accepted" : ""),
      );
    };
    write.then((value) => {
      settled();
      resolve(value);
    }, (error) => {
      settled();
      reject(error);
    });
    return promise;
  }

  /** `started`: the write was on its way to the disk, and may still land there. */
  #stalledError(started: boolean): StoreUnavailableError {
    return new StoreUnavailableError(
      started
        ? `the disk did not finish a write within ${this.#writeTimeoutMs} ms`
        : "a write was refused: an earlier one is stuck on the disk",
      { retryAfterSeconds: STORE_RETRY_AFTER_S, mayStillComplete: started },
    );
  }

  eventsAfter(id: number, limit: number): Promise<BoardEvent[]> {
    const events: BoardEvent[] = [];
    if (this.#clearedThrough > 0 && this.#clearedThrough >= id) {
      events.push({ type: "clear", id: this.#clearedThrough });
    }
    for (const deleted of this.#deletes) {
      if (deleted.id <= id && deleted.newestId >= id) {
        events.push({ type: "delete", id: deleted.id });
      }
    }
    const start = indexOfId(this.#messages, id + 1);
    for (const message of this.#messages.slice(start, start + limit)) {
      events.push({ type: "message", id: message.id, message });
    }
    if (this.#restoredNewest !== null && this.#restoredNewest > id) {
      events.push({ type: "restore", id: this.#restoredNewest });
    }
    return Promise.resolve(events.slice(0, limit));
  }

  subscribe(listener: (event: BoardEvent) => void): () => void {
    return this.#events.subscribe(listener);
  }

  /**
   * Waits for the writes already queued, for #writeTimeoutMs at most (none once a write
   * has outlasted it): on a disk that stopped
   * answering (frozen, hung) a write never ends, and a SIGTERM would then wait for ever. No
   * write still running was acknowledged (its client got 503 at its own timeout), and none
   * queued behind it is written later (the file is closed): nothing acknowledged is lost.
   */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    clearTimeout(this.#retryTimer);
    this.#events.clear();
    // A write that already outlasted its timeout is not waited for again.
    const waitMs = this.#stalled ? 0 : this.#writeTimeoutMs;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const idle = await Promise.race([
      this.#writes.idle().then(() => true),
      new Promise<false>((resolve) => {
        timer = setTimeout(resolve, waitMs, false);
      }),
    ]);
    clearTimeout(timer);
    if (!idle) {
      this.#log(
        `${this.dataFile}: closing without the write still on its way to the disk ` +
          `(not done within ${this.#writeTimeoutMs} ms; it was never acknowledged)`,
      );
    }
    clearTimeout(this.#retryTimer); // a failure while draining may have set one
    this.#closeFile();
    this.#lock.close(); // closing the file releases the lock
  }

  /** Starts read-only (the file could not be repaired at start-up); retries in the background. */
  startReadOnly(error: unknown): void {
    this.#fail(error, "opening");
  }

  #closeFile(): void {
    try {
      this.#file?.close();
    } catch {
      // already closed
    }
    this.#file = null;
  }

  /** The error for a write while read-only, with when to try again. */
  #unavailable(): StoreUnavailableError {
    const seconds = Math.max(1, Math.ceil((this.#retryAt - Date.now()) / 1000));
    return new StoreUnavailableError(
      "the message store is read-only after a failed write; it retries by itself",
      { cause: this.#failure, retryAfterSeconds: seconds },
    );
  }

  /**
   * Refuses a write while read-only; else makes sure the data file is still the one this
   * store appends to and holds just its acknowledged bytes. Another process may have appended
   * to it (half a line, which the next post would be glued onto: the next start stops at that
   * line), cut it short, removed it, or saved over it (editors write a new file and rename it
   * into place; appends would then go to a file no name leads to, and every later post would
   * be gone at the next start). Two stats per write, beside an fdatasync. A changed file is
   * repaired at once as after a failed write (see `#recover`): bytes after ours are set
   * aside, and a replaced, shortened or missing file is read again as it now is.
   */
  async #checkWritable(): Promise<void> {
    if (this.#failure !== null || this.#file === null) {
      throw this.#unavailable();
    }
    try {
      // Another process removed or replaced the lock file: the lock is taken again, so that a
      // second board stops at it. (None can have written meanwhile: the data file is locked.)
      await this.#retakeLock();
    } catch (error) {
      this.#fail(error, "locking the data file again");
      throw this.#unavailable();
    }
    let change: string | null;
    try {
      // Sync on purpose: two stats take about 10 us so, five times that through the thread
      // pool, and the file is on a local disk (it is fsynced on every write anyway).
      const open = this.#file.statSync();
      const named = Deno.statSync(this.dataFile);
      change = open.ino !== named.ino || open.dev !== named.dev
        ? "replaced"
        : open.size < this.#ackedSize
        ? "cut short"
        : open.size > this.#ackedSize
        ? "appended to"
        : null;
    } catch (error) {
      if (!(error instanceof Deno.errors.NotFound)) {
        this.#fail(error, "checking the data file");
        throw this.#unavailable();
      }
      change = "removed";
    }
    if (change === null) return;
    if (change !== "appended to") this.#reloadAll = true;
    this.#log(
      `${this.dataFile}: another process ${change} the data file since the board's last ` +
        (change === "appended to"
          ? "write; the bytes it added are set aside"
          : "write; the board reads the file again as it is now, and acknowledged messages it " +
            "no longer holds are gone"),
    );
    this.#failure = new Error(`the data file was ${change} by another process`);
    await this.#recover();
    if (this.#failure !== null) {
      this.#scheduleRetry();
      throw this.#unavailable();
    }
  }

  /** Whether `<dataFile>.lock` is still the file this store holds locked (two stats). */
  #holdsLock(): boolean {
    try {
      const named = Deno.statSync(`${this.dataFile}.lock`);
      const held = this.#lock.statSync();
      return named.ino === held.ino && named.dev === held.dev;
    } catch {
      return false; // removed, or its folder unreadable: the retry sorts it out
    }
  }

  /** Locks `<dataFile>.lock` again when it is not the file held (StartupError: another has it). */
  async #retakeLock(): Promise<void> {
    if (this.#holdsLock()) return;
    const lock = await lockDataFile(this.dataFile);
    this.#lock.close();
    this.#lock = lock;
    this.#log(
      `${this.dataFile}.lock was removed or replaced by another process; the board locked it again`,
    );
  }

  /** Appends lines and syncs them; on failure the store turns read-only. */
  async #appendLines(text: string): Promise<void> {
    if (this.#failure !== null || this.#file === null) {
      throw this.#unavailable();
    }
    const bytes = encoder.encode(text);
    const file = this.#file; // close() may let go of it while the disk hangs
    try {
      await writeAll(file, bytes);
      await file.syncData();
    } catch (error) {
      this.#fail(error, "writing");
      throw this.#unavailable();
    }
    this.#ackedSize += bytes.byteLength;
  }

  /** Writes a batch of posts as one write and one fdatasync; resolves once they are on disk. */
  async #appendNow(posts: QueuedPost[]): Promise<(Message | null)[]> {
    // Posts whose clients already got 503 (the disk stalled before their turn) are dropped.
    const written = posts.filter((post) => !post.abandoned);
    if (written.length === 0) return posts.map(() => null);
    for (const post of written) post.writing = true;
    const inputs = written.map((post) => post.input);
    await this.#checkWritable();
    // (Written this way round because 2^53 + 1 - 1 is 2^53 - 1 in floating point.)
    if (this.#nextId > MAX_ID - (inputs.length - 1)) {
      if (!this.#idsUsedUp) {
        this.#log(
          `${this.dataFile}: every message id up to ${MAX_ID} is used; no more posts are ` +
            `accepted (ids are never reused; start a new board with a new --data file)`,
        );
      }
      this.#idsUsedUp = true;
      throw new StoreUnavailableError("every message id is used", {
        retryAfterSeconds: 3600,
      });
    }
    const postedAt = new Date().toISOString();
    const messages = inputs.map((input) =>
      makeMessage(this.#nextId++, input.text, input.name, postedAt)
    );
    // The ids are used even if the write fails: the lines may be in a .torn- file later.
    await this.#appendLines(
      messages.map((message) => JSON.stringify(message) + "\n").join(""),
    );
    // Only now, on disk, do the messages become visible and acknowledged.
    for (const message of messages) {
      this.#messages.push(message);
      this.#events.publish({ type: "message", id: message.id, message });
    }
    // By the posts chosen above: one abandoned while its batch was written still got its line.
    const byPost = new Map(written.map((post, i) => [post, messages[i]!]));
    return posts.map((post) => byPost.get(post) ?? null);
  }

  /** Appends a tombstone for message `id`; false when it is not on the board. */
  async #deleteNow(id: number): Promise<boolean> {
    await this.#checkWritable();
    const index = indexOfId(this.#messages, id);
    if (this.#messages[index]?.id !== id) return false;
    const tombstone = {
      deletedId: id,
      deletedAt: new Date().toISOString(),
      newestId: this.#nextId - 1,
    };
    await this.#appendLines(JSON.stringify(tombstone) + "\n");
    this.#messages.splice(index, 1);
    this.#deletes.push({ id, newestId: tombstone.newestId });
    this.#events.publish({ type: "delete", id });
    return true;
  }

  /**
   * Moves every message into a new archive file, then starts an empty data
   * file. Each step is durable before the next, and at every moment each
   * message is in exactly one of the data file and the archive:
   *
   * 1. Write `<data>.new` holding the clear record (next id), fsync it and the
   *    directory. A crash now: start-up sees the data file still there and
   *    deletes the unused `.new` file; nothing was cleared.
   * 2. Rename the data file to the archive name, fsync the directory. The
   *    rename is atomic, and the file's lines were already synced. A crash
   *    now: start-up finds no data file but a `.new` file, so it finishes the
   *    clear by renaming `.new` into place.
   * 3. Rename `<data>.new` to the data file, fsync the directory. Done.
   *
   * The fsync between 2 and 3 matters: without it, rename 3 could reach the
   * disk before rename 2, and the old data file would vanish with no name.
   */
  async #clearNow(): Promise<ClearResult> {
    await this.#checkWritable();
    if (this.#messages.length === 0) return { archived: 0, archive: null };
    const directory = dirname(this.dataFile);
    const clearedAt = new Date();
    const extension = extname(this.dataFile);
    const stem = this.dataFile.slice(
      0,
      this.dataFile.length - extension.length,
    );
    const archive = await freePath(
      `${stem}.cleared-${fileStamp(clearedAt)}`,
      extension,
    );
    const newFile = `${this.dataFile}.new`;
    const record = {
      clearedAt: clearedAt.toISOString(),
      nextId: this.#nextId,
      archive: basename(archive),
    };
    const recordLine = encoder.encode(JSON.stringify(record) + "\n");
    // Step 1: if this fails (disk full), nothing has changed; the board goes on.
    try {
      await writeFileDurably(newFile, recordLine);
      await syncDirectory(directory);
    } catch (error) {
      await Deno.remove(newFile).catch(() => {});
      throw notWritten("clear", error);
    }
    // Steps 2 and 3: a failure here leaves files in a state that
    // finishInterruptedClear sorts out; the background retry runs it.
    try {
      this.#closeFile();
      await Deno.rename(this.dataFile, archive);
      await syncDirectory(directory);
      await Deno.rename(newFile, this.dataFile);
      await syncDirectory(directory);
      this.#file = await openForAppend(this.dataFile);
    } catch (error) {
      this.#reloadAll = true;
      this.#fail(error, "clearing");
      throw this.#unavailable();
    }
    const archived = this.#messages.length;
    this.#clearedThrough = this.#messages[archived - 1]!.id;
    this.#messages = [];
    this.#deletes = [];
    this.#restoredNewest = null;
    this.#ackedSize = recordLine.byteLength;
    this.#events.publish({ type: "clear", id: this.#clearedThrough });
    return { archived, archive };
  }

  /**
   * Puts the messages of the newest archive back (ids kept, deleted ones
   * not), in three durable steps:
   *
   * 1. Write `<data>.restore`: a restore record naming the archive, the
   *    archive's messages, then every line of the data file after its first
   *    record (the restored ids are all older). A crash now: start-up removes
   *    the unused file; nothing changed.
   * 2. Rename it over the data file (atomic), fsync the directory. The
   *    messages are now in both the data file and the archive.
   * 3. Rename the archive to `<archive>.restored`, fsync the directory. A
   *    crash between 2 and 3: start-up reads the restore record and does 3.
   */
  async #restoreNow(): Promise<{ restored: number }> {
    await this.#checkWritable();
    const archive = await findNewestArchive(this.dataFile);
    if (archive === null) return { restored: 0 };
    // The archive is read a chunk at a time, and the new file written a piece at a time:
    // built whole in memory, an 800,000-message restore held the archive, the new file as
    // text and as bytes, and the current file, at once (274 -> 875 MB).
    const { loaded: fromArchive } = await readDataFile(archive, null);
    const firstId = this.#messages[0]?.id ?? this.#nextId;
    const restored = fromArchive.messages.filter((m) => m.id < firstId);
    let bodyStart: number;
    try {
      bodyStart = await endOfFirstRecord(this.dataFile, this.#ackedSize);
    } catch (error) {
      throw notWritten("restore", error);
    }
    const newestId = this.#messages.at(-1)?.id ?? restored.at(-1)?.id ?? 0;
    const record = {
      restoredAt: new Date().toISOString(),
      archive: basename(archive),
      nextId: this.#nextId,
      newestId,
    };
    const directory = dirname(this.dataFile);
    const tempFile = `${this.dataFile}.restore`;
    // Step 1: if this fails (disk full), nothing has changed; the board goes on.
    let size: number;
    try {
      size = await writeRestoreFile(tempFile, [record], restored, {
        dataFile: this.dataFile,
        start: bodyStart,
        end: this.#ackedSize,
      });
      await syncDirectory(directory);
    } catch (error) {
      await Deno.remove(tempFile).catch(() => {});
      throw notWritten("restore", error);
    }
    try {
      this.#closeFile();
      await Deno.rename(tempFile, this.dataFile);
      await syncDirectory(directory);
      await markArchiveRestored(this.dataFile, basename(archive));
      this.#file = await openForAppend(this.dataFile);
    } catch (error) {
      this.#reloadAll = true;
      this.#fail(error, "restoring");
      throw this.#unavailable();
    }
    this.#messages = [...restored, ...this.#messages];
    this.#clearedThrough = 0;
    this.#restoredNewest = newestId;
    this.#ackedSize = size;
    this.#events.publish({ type: "restore", id: newestId });
    return { restored: restored.length };
  }

  /**
   * Turns the store read-only after a failed write or sync, and schedules the
   * background retry. After a failed fsync the kernel may already have
   * dropped the unwritten pages, so writing on as if nothing happened could
   * acknowledge data that is gone; `#recover` first puts the file back to
   * its acknowledged bytes.
   */
  #fail(error: unknown, doing: string): void {
    if (this.#failure === null && !this.#closed) {
      this.#log(
        `${this.dataFile}: ${doing} failed, the board is read-only until a retry succeeds: ${error}`,
      );
    }
    this.#failure = error;
    this.#scheduleRetry();
  }

  #scheduleRetry(): void {
    if (this.#closed || this.#retryTimer !== undefined) return;
    const delay = this.#retryDelayMs;
    this.#retryDelayMs = Math.min(delay * 2, RETRY_MAX_MS);
    this.#retryAt = Date.now() + delay;
    this.#retryTimer = setTimeout(() => {
      this.#retryTimer = undefined;
      // Through the queue, so that no write runs while the file is repaired.
      if (!this.#closed) void this.#writes.run(() => this.#recover());
    }, delay);
  }

  /**
   * One background retry: checks the disk takes a write again (a probe file,
   * written, synced and removed), then repairs the data file as start-up
   * would (an interrupted clear or restore finished; bytes after the
   * acknowledged ones, from the write that failed, set aside and cut off),
   * rereads what is really in it, and reopens it. Only then are posts taken
   * again.
   */
  async #recover(): Promise<void> {
    if (this.#closed || this.#failure === null) return;
    const probe = `${this.dataFile}.probe`;
    try {
      await this.#retakeLock();
      try {
        await writeFileDurably(probe, new Uint8Array(PROBE_BYTES));
      } finally {
        await Deno.remove(probe).catch(() => {});
      }
      this.#closeFile();
      const { loaded, file } = await loadDataFile(
        this.dataFile,
        this.#reloadAll ? null : this.#ackedSize,
        this.#log,
      );
      const lastAcked = this.#messages.at(-1)?.id;
      if (!this.#reloadAll && loaded.messages.at(-1)?.id !== lastAcked) {
        this.#log(
          `${this.dataFile}: the file does not hold every acknowledged message; ` +
            `serving what it holds`,
        );
      }
      this.#file = file;
      this.#messages = loaded.messages;
      this.#nextId = Math.max(this.#nextId, loaded.nextId);
      this.#clearedThrough = loaded.clearedThrough;
      this.#deletes = loaded.deletes;
      this.#restoredNewest = loaded.restoredNewest;
      this.#ackedSize = loaded.size;
    } catch (error) {
      this.#failure = error;
      this.#scheduleRetry();
      return;
    }
    this.#failure = null;
    this.#reloadAll = false;
    this.#retryDelayMs = RETRY_FIRST_MS;
    this.#log(`${this.dataFile}: writing works again; posts are accepted`);
  }
}

/** The largest message id: the largest integer a JSON number (a double) holds exactly. */
const MAX_ID = Number.MAX_SAFE_INTEGER;

/**
 * The error for a clear or restore whose first step could not be written (a full disk):
 * nothing changed, the board stays writable, and the client may try again soon.
 */
function notWritten(what: string, cause: unknown): StoreUnavailableError {
  return new StoreUnavailableError(
    `the ${what} could not be written (nothing changed): ${cause}`,
    { cause, retryAfterSeconds: RETRY_FIRST_MS / 1000 },
  );
}

/** The error for writes after close(). */
function closedError(): StoreUnavailableError {
  return new StoreUnavailableError("the store is closed");
}

// Small file helpers.

/** Writes all of `bytes`: one write call may take only part of them. */
async function writeAll(file: Deno.FsFile, bytes: Uint8Array): Promise<void> {
  let written = 0;
  while (written < bytes.byteLength) {
    written += await file.write(bytes.subarray(written));
  }
}

/** Creates (or replaces) `path` holding `bytes`, flushed to disk before it returns. */
async function writeFileDurably(
  path: string,
  bytes: Uint8Array,
  createNew = false,
) {
  using file = await Deno.open(path, {
    write: true,
    create: true,
    truncate: !createNew,
    createNew,
  });
  await writeAll(file, bytes);
  await file.syncData();
}

/**
 * Where the lines after the data file's first line start when that line is a clear or
 * restore record, else 0 (reading line 1 only, within its first `end` bytes). Throws
 * when line 1 does not parse (another process wrote over it).
 */
async function endOfFirstRecord(
  dataFile: string,
  end: number,
): Promise<number> {
  using file = await Deno.open(dataFile, { read: true });
  const pieces: Uint8Array[] = [];
  let size = 0;
  while (size < end) {
    const piece = new Uint8Array(Math.min(64 * 1024, end - size));
    const read = await file.read(piece);
    if (read === null) break;
    const newline = piece.subarray(0, read).indexOf(0x0a);
    pieces.push(piece.subarray(0, newline === -1 ? read : newline + 1));
    size += newline === -1 ? read : newline + 1;
    if (newline === -1) continue;
    const line = utf8.decode(concatBytes(pieces));
    return toFirstLineRecord(JSON.parse(line)) === null ? 0 : size;
  }
  return 0; // no whole line: nothing acknowledged yet
}

/**
 * Creates (or replaces) `path` holding `records` and `messages` as JSON lines, then the bytes
 * of `body.dataFile` from `start` to `end`, flushed to disk before it returns; resolves its
 * size. Written a piece of about READ_CHUNK_BYTES at a time, never whole in memory.
 */
async function writeRestoreFile(
  path: string,
  records: readonly unknown[],
  messages: readonly Message[],
  body: { dataFile: string; start: number; end: number },
): Promise<number> {
  using file = await Deno.open(path, {
    write: true,
    create: true,
    truncate: true,
  });
  let size = 0;
  let lines: string[] = [];
  let length = 0;
  const flush = async () => {
    const bytes = encoder.encode(lines.join(""));
    await writeAll(file, bytes);
    size += bytes.byteLength;
    lines = [];
    length = 0;
  };
  for (const line of [...records, ...messages]) {
    const text = JSON.stringify(line) + "\n";
    lines.push(text);
    length += text.length;
    if (length >= READ_CHUNK_BYTES) await flush();
  }
  await flush();
  using source = await Deno.open(body.dataFile, { read: true });
  await source.seek(body.start, Deno.SeekMode.Start);
  const buffer = new Uint8Array(READ_CHUNK_BYTES);
  for (let left = body.end - body.start; left > 0;) {
    const read = await source.read(
      buffer.subarray(0, Math.min(left, buffer.byteLength)),
    );
    if (read === null) {
      throw new Error(
        `${body.dataFile} is shorter than its acknowledged lines`,
      );
    }
    await writeAll(file, buffer.subarray(0, read));
    size += read;
    left -= read;
  }
  await file.syncData();
  return size;
}

/** Flushes a directory, so that files created or renamed in it survive a crash. */
async function syncDirectory(path: string): Promise<void> {
  if (Deno.build.os === "windows") return; // directories cannot be opened there
  using directory = await Deno.open(path, { read: true });
  await directory.syncData();
}

async function pathExists(path: string): Promise<boolean> {
  try {
    await Deno.lstat(path);
    return true;
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return false;
    throw error;
  }
}

/** `base + extension`, or `base-2 + extension`... whichever does not exist yet. */
async function freePath(base: string, extension: string): Promise<string> {
  for (let n = 1;; n++) {
    const path = n === 1 ? `${base}${extension}` : `${base}-${n}${extension}`;
    if (!(await pathExists(path))) return path;
  }
}

/**
 * A timestamp safe in file names on every system.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { fileStamp } from "./message_board.ts";
 * assert.equal(
 *   fileStamp(new Date("2026-11-22T01:30:00.123Z")),
 *   "2026-11-22T01-30-00-123Z",
 * );
 * ```
 */
export function fileStamp(date: Date): string {
  return date.toISOString().replaceAll(":", "-").replace(".", "-");
}

// ===========================================================================
// Part 2. HTTP handling: a Request in, a Response out.
// Teaches: read bodies within limits, validate every field with its own status,
// refuse what is ambiguous, check who is asking (Host, Origin, client address,
// session) before acting, route from one table, and map errors to responses in
// one place that never shows internals to a client.
// ===========================================================================

// ---------------------------------------------------------------------------
// HTTP: errors, bodies, validation.
// ---------------------------------------------------------------------------

/**
 * A request we refuse, with its status and a message for the client: {@linkcode errorResponse}
 * shows the message as it is (on the page, or as JSON's `error`), so it says what to fix and
 * never holds a path or an error's own text, which go to the log.
 */
export class HttpError extends Error {
  /** Always "HttpError". */
  override name = "HttpError";
  /** `status`: the HTTP status; `message`: shown to the client; `headers`: sent along (Allow). */
  constructor(
    readonly status: number,
    message: string,
    readonly headers: HeadersInit = {},
  ) {
    super(message);
  }
}

/** Host names every board answers to, whatever else is allowed. */
const ALWAYS_ALLOWED_HOSTS = ["localhost", "127.0.0.1", "[::1]"];

/**
 * The host name of a Host header (or a URL's host), lower-cased, without the port
 * or a trailing dot; IPv6 addresses keep their brackets. Null when there is none.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { hostName } from "./message_board.ts";
 * assert.equal(hostName("Board.Example:8080"), "board.example");
 * assert.equal(hostName("[::1]:8080"), "[::1]");
 * ```
 */
export function hostName(host: string): string | null {
  let name = host.trim().toLowerCase();
  if (name.startsWith("[")) {
    const close = name.indexOf("]");
    if (close === -1) return null;
    const rest = name.slice(close + 1);
    if (rest !== "" && !/^:\d*$/.test(rest)) return null;
    name = name.slice(0, close + 1);
  } else {
    const colon = name.indexOf(":");
    if (colon !== -1) {
      if (!/^:\d*$/.test(name.slice(colon))) return null;
      name = name.slice(0, colon);
    }
    if (name.endsWith(".")) name = name.slice(0, -1);
  }
  return name === "" ? null : name;
}

/**
 * Whether a Host header (or a request target's authority) has the form RFC 9112 3.2 allows:
 * a registered name or IP literal and an optional port, nothing else. Userinfo (`a@host`),
 * spaces, lists (`a, b`), paths and an empty value are refused with 400: Deno builds
 * `request.url` from the Host text as it is, so `Host: localhost/x` would change the path.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { isValidHost } from "./message_board.ts";
 * assert.equal(isValidHost("board.example:8080"), true);
 * assert.equal(isValidHost("[::1]:8080"), true);
 * assert.equal(isValidHost("a@127.0.0.1"), false);
 * assert.equal(isValidHost(""), false);
 * ```
 */
export function isValidHost(host: string): boolean {
  return /^(?:\[[0-9a-f:.]+\]|[a-z0-9\-._~!$&'()*+,;=%]+)(?::\d{0,5})?$/i.test(
    host,
  );
}

/** The authority of a request URL as written (`URL.host` drops userinfo and default ports). */
function authorityOf(href: string, url: URL): string {
  const rest = href.slice(url.protocol.length + 2);
  const end = rest.search(/[/?#]/);
  return end === -1 ? rest : rest.slice(0, end);
}

/**
 * One allow-list entry in the form {@linkcode isAllowedHost} compares: lower-case, an IPv6
 * address in brackets, a leading dot kept (`.example.com` allows its subdomains).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { normalizeAllowedHost } from "./message_board.ts";
 * assert.equal(normalizeAllowedHost("::1"), "[::1]");
 * ```
 */
export function normalizeAllowedHost(entry: string): string {
  const name = entry.trim().toLowerCase();
  if (name.includes(":") && !name.startsWith("[")) return `[${name}]`;
  return name.endsWith(".") ? name.slice(0, -1) : name;
}

/**
 * Whether a host name (from {@linkcode hostName}) is on the allow-list: localhost,
 * 127.0.0.1 and [::1] always are; `allowed` adds exact names, and entries with a leading
 * dot (`.example.com`) that allow the name and every subdomain.
 *
 * This defeats DNS rebinding: a hostile page whose name the attacker points at 127.0.0.1
 * reaches the board, but its requests carry `Host: evil.example`, which is not on the list.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { isAllowedHost } from "./message_board.ts";
 * assert.equal(isAllowedHost("evil.example", []), false);
 * assert.equal(isAllowedHost("a.board.example", [".board.example"]), true);
 * ```
 */
export function isAllowedHost(
  name: string,
  allowed: readonly string[],
): boolean {
  for (const entry of [...ALWAYS_ALLOWED_HOSTS, ...allowed]) {
    if (entry === name) return true;
    if (
      entry.startsWith(".") &&
      (name === entry.slice(1) || name.endsWith(entry))
    ) return true;
  }
  return false;
}

/** Where a request was sent: the board's scheme, the Host header and its name. */
export interface RequestTarget {
  /** "http:" or "https:" (from X-Forwarded-Proto when the proxy is trusted). */
  protocol: string;
  /** The Host header (or the URL's authority when the client sent none). */
  host: string;
  /** The port the client addressed, "" for the scheme's default (URL rules). */
  port: string;
}

/**
 * Checks the Origin of a state-changing request (cross-site request forgery, RFC 6454):
 * its scheme and port must be this board's, and its host name on the allow-list. So a
 * hostile page, even one on a rebinding name, an `https://` page for a plain-HTTP board,
 * or another port of the same machine, cannot post or clear for a visitor. `null` and
 * garbage are refused.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { isAllowedOrigin } from "./message_board.ts";
 * assert.equal(
 *   isAllowedOrigin("http://localhost:8080", {
 *     protocol: "http:",
 *     host: "127.0.0.1:8080",
 *     port: "8080",
 *   }, []),
 *   true,
 * );
 * assert.equal(
 *   isAllowedOrigin("https://localhost:8080", {
 *     protocol: "http:",
 *     host: "localhost:8080",
 *     port: "8080",
 *   }, []),
 *   false,
 * );
 * ```
 */
export function isAllowedOrigin(
  origin: string,
  target: RequestTarget,
  allowed: readonly string[],
): boolean {
  let url: URL;
  try {
    url = new URL(origin);
  } catch {
    return false; // "null" or garbage
  }
  const name = hostName(url.host);
  return url.protocol === target.protocol && url.port === target.port &&
    name !== null && isAllowedHost(name, allowed);
}

/**
 * The first object key that appears twice in one object of a JSON text, or null. Call it
 * on text JSON.parse accepted: JSON.parse keeps the last of two equal keys without a word,
 * so `{"text":"a","text":"b"}` would be stored as "b" although the client may have meant
 * "a". Keys are compared decoded (`"te\u0078t"` is `"text"`).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { findDuplicateKey } from "./message_board.ts";
 * assert.equal(findDuplicateKey('{"text":"a","text":"b"}'), "text");
 * assert.equal(findDuplicateKey('{"a":{"b":1},"b":[{"a":2}]}'), null);
 * ```
 */
export function findDuplicateKey(json: string): string | null {
  // One entry per open object (its keys so far) or array (null).
  const open: (Set<string> | null)[] = [];
  let expectKey = false;
  for (let i = 0; i < json.length; i++) {
    const character = json[i];
    if (character === '"') {
      let end = i + 1;
      while (json[end] !== '"') end += json[end] === "\\" ? 2 : 1;
      const keys = open.at(-1);
      if (expectKey && keys) {
        const key: string = JSON.parse(json.slice(i, end + 1));
        if (keys.has(key)) return key;
        keys.add(key);
        expectKey = false;
      }
      i = end;
    } else if (character === "{") {
      open.push(new Set());
      expectKey = true;
    } else if (character === "[") {
      open.push(null);
    } else if (character === "}" || character === "]") {
      open.pop();
      expectKey = false;
    } else if (character === ",") {
      expectKey = open.at(-1) instanceof Set;
    }
  }
  return null;
}

/**
 * Reads the whole request body, at most {@linkcode MAX_BODY_BYTES}. A declared
 * Content-Length over the limit is refused before reading anything; a chunked
 * body (no length) is counted as it arrives and cut off past the limit. A
 * body not complete within `timeoutMs` gets 408, so a client sending one
 * byte a minute cannot hold a request open for ever; one in more than
 * {@linkcode MAX_BODY_PIECES} pieces gets 413. A body in a content coding
 * gets 415, one in a transfer coding other than chunked 501.
 */
async function readBody(
  request: Request,
  timeoutMs = BODY_TIMEOUT_MS,
): Promise<Uint8Array<ArrayBuffer>> {
  const tooLarge = () =>
    new HttpError(
      413,
      `The message is too large (at most ${MAX_BODY_BYTES / 1024} KiB).`,
    );
  // We do not decode gzip or br bodies (nor risk a decompression bomb), and reading one as
  // it is would store bytes the client never meant as text: 415, RFC 9110 15.5.16.
  const coding = request.headers.get("content-encoding")?.trim().toLowerCase();
  if (coding && coding !== "identity") {
    await request.body?.cancel().catch(() => {});
    throw new HttpError(
      415,
      "Send the body as it is, without Content-Encoding (no gzip, no br).",
      { "accept-encoding": "identity" },
    );
  }
  // Deno.serve takes off the chunked framing and hands on the rest as it came: with
  // `Transfer-Encoding: gzip, chunked` the body was gzip bytes, read as if they were text.
  // A transfer coding we do not understand gets 501 (RFC 9112 6.1).
  const transfer = request.headers.get("transfer-encoding");
  if (
    transfer !== null &&
    transfer.split(",").some((coding) => !/^(?:chunked)?$/i.test(coding.trim()))
  ) {
    await request.body?.cancel().catch(() => {});
    throw new HttpError(
      501,
      "Send the body with no transfer coding but chunked (no gzip, no deflate).",
    );
  }
  const declared = Number(request.headers.get("content-length") ?? 0);
  if (declared > MAX_BODY_BYTES) {
    await request.body?.cancel().catch(() => {});
    throw tooLarge();
  }
  if (bodyBytesHeld + declared > MAX_BODY_BYTES_HELD) {
    await request.body?.cancel().catch(() => {});
    throw busyReceiving();
  }
  if (request.body === null) return new Uint8Array(0);
  const reader = request.body.getReader();
  const chunks: Uint8Array<ArrayBuffer>[] = [];
  let size = 0;
  // One timer for the whole body that cancels the reader, which ends a pending read (a
  // race per read would cost a promise for every piece).
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    reader.cancel().catch(() => {});
  }, timeoutMs);
  try {
    while (true) {
      const { done, value } = await reader.read();
      if (done || timedOut) break;
      size += value.byteLength;
      bodyBytesHeld += value.byteLength;
      if (size > MAX_BODY_BYTES) throw tooLarge();
      if (bodyBytesHeld > MAX_BODY_BYTES_HELD) throw busyReceiving();
      if (chunks.length === MAX_BODY_PIECES) {
        throw new HttpError(
          413,
          "The request body came in too many small pieces; send it in one.",
        );
      }
      chunks.push(value);
    }
  } catch (error) {
    await reader.cancel().catch(() => {});
    if (error instanceof HttpError) throw error;
    if (!timedOut) {
      throw new HttpError(400, "The request body could not be read.");
    }
  } finally {
    clearTimeout(timer);
    bodyBytesHeld -= size; // the caller parses the body at once
  }
  if (timedOut) {
    throw new HttpError(408, "The request body took too long to arrive.");
  }
  if (chunks.length === 1) return chunks[0]!;
  const body = new Uint8Array(size);
  let offset = 0;
  for (const chunk of chunks) {
    body.set(chunk, offset);
    offset += chunk.byteLength;
  }
  return body;
}

/** Bytes all readBody calls in this process hold now (see MAX_BODY_BYTES_HELD). */
let bodyBytesHeld = 0;

function busyReceiving(): HttpError {
  return new HttpError(
    503,
    "The board is receiving too many messages at once; try again in a moment.",
    { "retry-after": String(STORE_RETRY_AFTER_S) },
  );
}

/**
 * The media type of a Content-Type header, lower-cased, and its charset. A parameter given
 * twice (`charset=latin1; charset=utf-8`, two boundaries) is a 400: a proxy or filter in
 * front may read the other one, and see another body than the board stores.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { parseContentType } from "./message_board.ts";
 * assert.deepEqual(parseContentType("Application/JSON; charset=UTF-8"), {
 *   type: "application/json",
 *   charset: "utf-8",
 * });
 * ```
 */
export function parseContentType(
  header: string | null,
): { type: string; charset?: string | undefined } {
  const [type, ...parameters] = (header ?? "").split(";");
  let charset: string | undefined;
  const keys = new Set<string>();
  for (const parameter of parameters) {
    const [name, value = ""] = parameter.split("=");
    const key = name!.trim().toLowerCase();
    if (keys.has(key)) {
      const shown = /^[a-z0-9._-]{1,40}$/.test(key) ? key : "a parameter";
      throw new HttpError(400, `The Content-Type header gives ${shown} twice.`);
    }
    keys.add(key);
    if (key === "charset") {
      charset = value.trim().replace(/^"(.*)"$/, "$1").toLowerCase();
    }
  }
  return { type: type!.trim().toLowerCase(), charset };
}

/** Refuses a charset other than UTF-8 with 415. */
function requireUtf8(
  charset: string | undefined,
  message = "Only UTF-8 text is accepted.",
): void {
  if (charset !== undefined && charset !== "utf-8" && charset !== "utf8") {
    throw new HttpError(415, message);
  }
}

/**
 * Refuses a form whose parts say their bytes mean something else than UTF-8 text, which
 * FormData ignores and the board would store as it came: a part's Content-Type with
 * another charset (RFC 7578 4.4) or a `_charset_` field naming one (4.6), 415; a
 * Content-Transfer-Encoding other than 7bit, 8bit or binary (4.7: senders must not use
 * it; base64 was stored as its letters), 400.
 */
function checkFormCharsets(
  text: string,
  contentType: string,
  fields: Map<string, string>,
): void {
  const otherCharset =
    "A form field in a charset other than UTF-8 is not accepted.";
  requireUtf8(fields.get("_charset_")?.trim().toLowerCase(), otherCharset);
  const boundary = contentType.match(/;\s*boundary\s*=\s*("?)([^";]*)\1/i)
    ?.[2];
  if (boundary === undefined || boundary === "") return;
  for (const part of text.split(`--${boundary}`).slice(1)) {
    if (part.startsWith("--")) break; // the closing delimiter
    const head = part.split(/\r?\n\r?\n/, 1)[0]!;
    for (const line of head.split(/\r?\n/)) {
      const colon = line.indexOf(":");
      if (colon === -1) continue;
      const name = line.slice(0, colon).trim().toLowerCase();
      const value = line.slice(colon + 1);
      if (name === "content-type") {
        requireUtf8(parseContentType(value).charset, otherCharset);
      } else if (
        name === "content-transfer-encoding" &&
        !/^\s*(7bit|8bit|binary)\s*$/i.test(value)
      ) {
        throw new HttpError(
          400,
          "A form field in a Content-Transfer-Encoding is not accepted: send it as it is.",
        );
      }
    }
  }
}

/** Decodes UTF-8, refusing broken byte sequences with 400 (no silent U+FFFD). */
function decodeUtf8(bytes: Uint8Array): string {
  try {
    return utf8.decode(bytes);
  } catch {
    throw new HttpError(400, "The request is not valid UTF-8.");
  }
}

/**
 * Parses an `application/x-www-form-urlencoded` body strictly: a broken
 * percent-escape, or one that decodes to invalid UTF-8, is a 400 (the
 * built-in URLSearchParams would quietly turn it into U+FFFD); a field given
 * twice is a 400 too, since we could not tell which one the poster meant.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { HttpError, parseUrlEncoded } from "./message_board.ts";
 * const bytesOf = (text: string) => new TextEncoder().encode(text);
 * assert.deepEqual(
 *   parseUrlEncoded(bytesOf("message=Hi+there%21&name=Ann")),
 *   new Map([["message", "Hi there!"], ["name", "Ann"]]),
 * );
 * assert.throws(
 *   () => parseUrlEncoded(bytesOf("message=%E2%28")),
 *   (error) => error instanceof HttpError && error.status === 400,
 * );
 * ```
 */
export function parseUrlEncoded(body: Uint8Array): Map<string, string> {
  const fields = new Map<string, string>();
  for (const pair of decodeUtf8(body).split("&")) {
    if (pair === "") continue;
    const equals = pair.indexOf("=");
    const name = decodeFormComponent(
      equals === -1 ? pair : pair.slice(0, equals),
    );
    const value = equals === -1
      ? ""
      : decodeFormComponent(pair.slice(equals + 1));
    addField(fields, name, value);
  }
  return fields;
}

function decodeFormComponent(text: string): string {
  try {
    return decodeURIComponent(text.replaceAll("+", " "));
  } catch {
    throw new HttpError(400, "The form data has a broken percent-escape.");
  }
}

function addField(
  fields: Map<string, string>,
  name: string,
  value: string,
): void {
  if (fields.has(name)) {
    // Named in at most 40 characters: a 30,000-character name came back whole in the page.
    const shown = isLongerThan(name, 40)
      ? `${Array.from(name).slice(0, 40).join("")}...`
      : name;
    throw new HttpError(400, `The form field "${shown}" was sent twice.`);
  }
  fields.set(name, value);
}

/** Reads a form post (urlencoded or multipart) into its fields. */
async function readFormFields(
  request: Request,
  timeoutMs: number,
): Promise<Map<string, string>> {
  const contentType = request.headers.get("content-type");
  const { type, charset } = parseContentType(contentType);
  if (
    type !== "application/x-www-form-urlencoded" &&
    type !== "multipart/form-data"
  ) {
    await request.body?.cancel().catch(() => {});
    throw new HttpError(415, "Send the form as a normal form post.");
  }
  requireUtf8(charset);
  const body = await readBody(request, timeoutMs);
  if (type === "application/x-www-form-urlencoded") {
    const fields = parseUrlEncoded(body);
    checkFormCharsets("", type, fields);
    return fields;
  }
  // FormData would quietly turn broken UTF-8 into U+FFFD; no part may be a file, so the
  // whole body is text.
  const text = decodeUtf8(body);
  let form: FormData;
  try {
    form = await new Response(body, {
      headers: { "content-type": contentType! },
    }).formData();
  } catch {
    throw new HttpError(400, "The form data could not be read.");
  }
  const fields = new Map<string, string>();
  for (const [name, value] of form) {
    if (typeof value !== "string") {
      throw new HttpError(400, "File uploads are not accepted.");
    }
    addField(fields, name, value);
  }
  checkFormCharsets(text, contentType!, fields);
  return fields;
}

// Control characters (Unicode category Cc: C0, DEL, C1) other than tab and
// newline have no business in a message and can confuse terminals and logs.
const CONTROL_CHARACTERS = /[^\P{Cc}\t\n]/u;
// A name is one line: no control characters, and no line or paragraph separator (U+2028,
// U+2029), which are not controls but still break the line it is shown on.
const NAME_FORBIDDEN = /[\p{Cc}\p{Zl}\p{Zp}]/u;

// Nothing a reader could see: white space, the default-ignorable characters (zero-width
// spaces and joiners, bidi controls, soft hyphens, variation selectors, Hangul fillers) and
// the braille blank, U+2800.
const INVISIBLE_ONLY =
  /^[\p{White_Space}\p{Default_Ignorable_Code_Point}\u2800]*$/u;

const graphemes = new Intl.Segmenter("en", { granularity: "grapheme" });

/** Whether one character (grapheme cluster) of `text` has more than MAX_CHARACTER_CODE_POINTS. */
function hasEndlessCharacter(text: string): boolean {
  // Below U+0300 (where the combining marks start) only CR LF joins, and a segmenter pass
  // costs tens of microseconds: plain Latin text skips it.
  if (!/[^\0-\u02ff]/.test(text)) return false;
  for (const { segment } of graphemes.segment(text)) {
    if (isLongerThan(segment, MAX_CHARACTER_CODE_POINTS)) return true;
  }
  return false;
}

/**
 * Checks a message and an optional name, returning them cleaned up: line
 * breaks become `\n` (browsers send `\r\n`), the name is trimmed and dropped
 * when empty. Wrong types get 400; blank, too long or control characters 422.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { HttpError, validateNewMessage } from "./message_board.ts";
 * assert.deepEqual(validateNewMessage("Hello\r\nworld", " Ann "), {
 *   text: "Hello\nworld",
 *   name: "Ann",
 * });
 * assert.throws(
 *   () => validateNewMessage("   ", undefined),
 *   (error) => error instanceof HttpError && error.status === 422,
 * );
 * ```
 */
export function validateNewMessage(text: unknown, name: unknown): NewMessage {
  if (typeof text !== "string") {
    throw new HttpError(400, "The message must be text.");
  }
  if (name !== undefined && name !== null && typeof name !== "string") {
    throw new HttpError(400, "The name must be text.");
  }
  // Lone UTF-16 surrogates (possible in JSON, "\ud800") are not characters
  // and cannot be stored as UTF-8 without changing them.
  if (!text.isWellFormed() || (name && !name.isWellFormed())) {
    throw new HttpError(400, "The text is not valid Unicode.");
  }
  const cleanText = text.replace(/\r\n?/g, "\n");
  if (INVISIBLE_ONLY.test(cleanText)) {
    throw new HttpError(422, "Please write a message first.");
  }
  if (isLongerThan(cleanText, MAX_MESSAGE_CHARS)) {
    throw new HttpError(
      422,
      `The message is too long (at most ${MAX_MESSAGE_CHARS} characters).`,
    );
  }
  if (CONTROL_CHARACTERS.test(cleanText)) {
    throw new HttpError(422, "The message contains control characters.");
  }
  if (hasEndlessCharacter(cleanText)) {
    throw new HttpError(422, tooManyParts("message"));
  }
  const cleanName = (name ?? "").trim();
  if (cleanName === "") return { text: cleanText };
  if (isLongerThan(cleanName, MAX_NAME_CHARS)) {
    throw new HttpError(
      422,
      `The name is too long (at most ${MAX_NAME_CHARS} characters).`,
    );
  }
  if (NAME_FORBIDDEN.test(cleanName)) {
    throw new HttpError(422, "The name must be a single line of text.");
  }
  if (INVISIBLE_ONLY.test(cleanName)) {
    throw new HttpError(422, "The name has nothing visible in it.");
  }
  if (hasEndlessCharacter(cleanName)) {
    throw new HttpError(422, tooManyParts("name"));
  }
  return { text: cleanText, name: cleanName };
}

function tooManyParts(field: string): string {
  return `The ${field} has a character built from too many marks or joined parts ` +
    `(at most ${MAX_CHARACTER_CODE_POINTS} code points in one).`;
}

/**
 * Whether `text` has more than `max` characters, counting code points (as a
 * person does: "👍" is one), not UTF-16 units.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { isLongerThan } from "./message_board.ts";
 * assert.equal(isLongerThan("👍👍", 2), false); // though "👍👍".length is 4
 * ```
 */
export function isLongerThan(text: string, max: number): boolean {
  if (text.length <= max) return false; // never more code points than units
  let count = 0;
  for (const _ of text) if (++count > max) return true;
  return false;
}

/**
 * Parses a whole positive number no larger than `max`; null for anything
 * else (signs, decimals, exponents, spaces, leading zeros, huge values).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { parsePositiveInteger } from "./message_board.ts";
 * assert.equal(parsePositiveInteger("42", 100), 42);
 * assert.equal(parsePositiveInteger("1e3", 10000), null);
 * ```
 */
export function parsePositiveInteger(
  value: string,
  max: number,
): number | null {
  if (!/^[1-9][0-9]{0,15}$/.test(value)) return null;
  const number = Number(value);
  return number <= max ? number : null;
}

/**
 * One query parameter: null when absent, 400 when sent twice (`?limit=1&limit=100`
 * would be a guess, as a repeated form field is).
 */
function readQueryParameter(url: URL, name: string): string | null {
  const values = url.searchParams.getAll(name);
  if (values.length > 1) {
    throw new HttpError(400, `The parameter ${name} was sent twice.`);
  }
  return values[0] ?? null;
}

/** Reads `before` from a query string: undefined when absent, 400 when malformed. */
function readBeforeParameter(url: URL): number | undefined {
  const before = readQueryParameter(url, "before");
  if (before === null) return undefined;
  const id = parsePositiveInteger(before, Number.MAX_SAFE_INTEGER);
  if (id === null) {
    throw new HttpError(400, "before must be a message id (a whole number).");
  }
  return id;
}

// ---------------------------------------------------------------------------
// Who is asking: client addresses, rate limits, admin sessions.
// ---------------------------------------------------------------------------

/**
 * The client a request comes from, as the key for per-client limits: the socket's
 * address, or behind a trusted proxy the address it forwarded (see
 * {@linkcode forwardedClient}). IPv6 clients are keyed by their
 * /64 network, since one machine usually has a whole /64 to pick addresses from.
 * "unknown" when the handler was called without `Deno.serve`'s `info`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { clientKey } from "./message_board.ts";
 * assert.equal(clientKey("2001:db8:1:2:aaaa::1"), "2001:db8:1:2::/64");
 * ```
 */
export function clientKey(address: string | undefined): string {
  if (address === undefined || address === "") return "unknown";
  const bare = address.replace(/^\[|\]$/g, "").toLowerCase();
  if (!bare.includes(":")) return bare;
  const mapped = bare.match(/^::ffff:(\d+\.\d+\.\d+\.\d+)$/);
  if (mapped) return mapped[1]!; // an IPv4 client on a dual-stack socket
  const [head, tail = ""] = bare.split("::", 2);
  const groups = head === "" ? [] : head!.split(":");
  if (bare.includes("::")) {
    const tailGroups = tail === "" ? [] : tail.split(":");
    groups.push(...Array(8 - groups.length - tailGroups.length).fill("0"));
    groups.push(...tailGroups);
  }
  return `${
    groups.slice(0, 4).map((g) => g.replace(/^0+(?=.)/, "")).join(":")
  }::/64`;
}

/**
 * Which peers may say who the client is, as `trustProxy` gives them: `true` for whatever
 * peer connects (one proxy, and the board reachable only through it), or addresses and
 * CIDR ranges (`"127.0.0.1"`, `"10.0.0.0/8"`, `"::1"`; `"loopback"` is 127.0.0.0/8 and
 * ::1). A peer on a Unix socket is trusted whenever a list is given: only the proxy
 * connects there. Throws TypeError on an entry that is none of these.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { trustedProxies } from "./message_board.ts";
 * const trusted = trustedProxies(["loopback", "10.0.0.0/8"]);
 * assert.equal(trusted("10.1.2.3"), true);
 * assert.equal(trusted("192.0.2.1"), false);
 * ```
 */
export function trustedProxies(
  trust: boolean | readonly string[],
): (address: string) => boolean {
  if (trust === true) return () => true;
  if (trust === false) return () => false;
  const ranges = trust.flatMap((entry) =>
    entry === "loopback" ? ["127.0.0.0/8", "::1"] : [entry]
  ).map((entry) => {
    const [address = "", bits, extra] = entry.split("/");
    const bytes = parseIpAddress(address);
    const prefix = bytes === null || extra !== undefined
      ? Infinity
      : bits === undefined
      ? bytes.length * 8
      : /^\d{1,3}$/.test(bits)
      ? Number(bits)
      : Infinity;
    if (bytes === null || prefix > bytes.length * 8) {
      throw new TypeError(
        `a trusted proxy is an address or a CIDR range (10.0.0.0/8), got ${
          JSON.stringify(entry)
        }`,
      );
    }
    return { bytes, prefix };
  });
  return (address) => {
    const bytes = parseIpAddress(address);
    return bytes !== null &&
      ranges.some((range) =>
        range.bytes.length === bytes.length &&
        range.bytes.every((byte, i) => {
          const bits = Math.min(8, Math.max(0, range.prefix - i * 8));
          const mask = (0xff00 >> bits) & 0xff;
          return (byte & mask) === (bytes[i]! & mask);
        })
      );
  };
}

/**
 * An IP address's bytes: 4 for IPv4 (dotted decimal only), 16 for IPv6 (bracketed or
 * not); an IPv4-mapped IPv6 address (`::ffff:192.0.2.1`) is its IPv4 address. Null for
 * anything else. So `parseIpAddress("[::1]")` is 15 zero bytes and a 1.
 */
function parseIpAddress(text: string): number[] | null {
  const bare = text.replace(/^\[(.*)\]$/, "$1");
  if (!bare.includes(":")) return parseIpv4(bare);
  if (!/^[0-9a-fA-F:.]{2,45}$/.test(bare)) return null;
  const halves = bare.split("::");
  if (halves.length > 2) return null;
  /** The 16-bit groups of `part`; its last may be dotted IPv4 when it ends the address. */
  const groupsOf = (part: string, last: boolean): number[] | null => {
    if (part === "") return [];
    const groups: number[] = [];
    const pieces = part.split(":");
    for (const [i, piece] of pieces.entries()) {
      if (/^[0-9a-fA-F]{1,4}$/.test(piece)) groups.push(parseInt(piece, 16));
      else if (last && i === pieces.length - 1 && piece.includes(".")) {
        const v4 = parseIpv4(piece);
        if (v4 === null) return null;
        groups.push(v4[0]! << 8 | v4[1]!, v4[2]! << 8 | v4[3]!);
      } else return null;
    }
    return groups;
  };
  const head = groupsOf(halves[0]!, halves.length === 1);
  const tail = halves.length === 2 ? groupsOf(halves[1]!, true) : [];
  if (head === null || tail === null) return null;
  const zeros = 8 - head.length - tail.length;
  if (halves.length === 2 ? zeros < 1 : zeros !== 0) return null;
  const bytes = [
    ...head,
    ...Array(halves.length === 2 ? zeros : 0).fill(0),
    ...tail,
  ]
    .flatMap((group) => [group >> 8, group & 0xff]);
  const mapped = bytes.slice(0, 10).every((byte) => byte === 0) &&
    bytes[10] === 0xff && bytes[11] === 0xff;
  return mapped ? bytes.slice(12) : bytes;
}

/** An IPv4 address's 4 bytes (dotted decimal: `192.0.2.1`), or null. */
function parseIpv4(text: string): number[] | null {
  if (!/^\d{1,3}(\.\d{1,3}){3}$/.test(text)) return null;
  const bytes = text.split(".").map(Number);
  return bytes.every((byte) => byte < 256) ? bytes : null;
}

/**
 * The client's address (null when unknown: no `info`, or a Unix socket with no proxy to
 * trust): the socket's, or when the socket's peer is a trusted proxy, the rightmost
 * `X-Forwarded-For` hop that is not one (each proxy appends the address it saw, so the
 * hops left of the first untrusted one are whatever the client wrote), as nginx's
 * `real_ip_recursive on` and Caddy's `trusted_proxies` find it. With `trustProxy: true`
 * that is the last hop. A hop that is not an address (a proxy passing on the client's own
 * text) ends the walk: made-up values must not each become a client with its own limits.
 */
export function forwardedClient(
  request: Request,
  info: Deno.ServeHandlerInfo | undefined,
  trustProxy: boolean | readonly string[],
  trusted: (address: string) => boolean = trustedProxies(trustProxy),
): string | null {
  const remote = info?.remoteAddr;
  let client = remote?.transport === "tcp" ? remote.hostname : null;
  if (!isTrustedPeer(info, trustProxy, trusted)) return client;
  const hops = request.headers.get("x-forwarded-for")?.split(",") ?? [];
  for (let i = hops.length - 1; i >= 0; i--) {
    // Some proxies (Azure's Application Gateway) add the client's port: `1.2.3.4:5678`,
    // `[2001:db8::1]:5678`. It is not part of who the client is.
    const hop = hops[i]!.trim().replace(
      /^(\d{1,3}(?:\.\d{1,3}){3}):\d{1,5}$|^\[([0-9a-fA-F:.]+)\]:\d{1,5}$/,
      (_, v4, v6) => v4 ?? v6,
    ).replace(/^\[(.*)\]$/, "$1");
    if (parseIpAddress(hop) === null) break;
    client = hop;
    if (trustProxy === true || !trusted(hop)) break;
  }
  return client;
}

/** Whether the socket's peer is a proxy `trustProxy` trusts (see {@linkcode trustedProxies}). */
function isTrustedPeer(
  info: Deno.ServeHandlerInfo | undefined,
  trustProxy: boolean | readonly string[],
  trusted: (address: string) => boolean,
): boolean {
  if (typeof trustProxy === "boolean") return trustProxy;
  const remote = info?.remoteAddr;
  return remote?.transport === "unix" ||
    (remote?.transport === "tcp" && trusted(remote.hostname));
}

/** The client of a request, as {@linkcode clientKey} names it (see {@linkcode forwardedClient}). */
function clientAddress(
  request: Request,
  info: Deno.ServeHandlerInfo | undefined,
  trustProxy: boolean | readonly string[],
  trusted: (address: string) => boolean,
): string {
  return clientKey(
    forwardedClient(request, info, trustProxy, trusted) ?? undefined,
  );
}

/** Whether an address (as {@linkcode clientKey} writes it) is this machine's own. */
function isLoopbackClient(key: string): boolean {
  return /^127\.\d+\.\d+\.\d+$/.test(key) || key === "0:0:0:0::/64";
}

/**
 * A token bucket per client (RFC 6585's 429 is the answer when it is empty): each client
 * may act `burst` times at once, then once more every `refillMs`. Buckets live in a Map in
 * order of last use; past {@linkcode MAX_TRACKED_CLIENTS} the longest-idle ones go, so a
 * flood of addresses cannot grow memory without bound.
 */
export class RateLimiter {
  #buckets = new Map<string, { tokens: number; at: number }>();

  /** `burst` actions at once, then one per `refillMs` milliseconds. */
  constructor(readonly burst: number, readonly refillMs: number) {}

  /** Milliseconds until `key` may act again; 0 when it may act now (nothing is taken). */
  waitFor(key: string, now: number = Date.now()): number {
    const tokens = this.#tokens(key, now);
    return tokens >= 1 ? 0 : Math.ceil((1 - tokens) * this.refillMs);
  }

  /** Takes one action for `key`: returns 0 when allowed, else the milliseconds to wait. */
  take(key: string, now: number = Date.now()): number {
    const wait = this.waitFor(key, now);
    if (wait > 0) return wait;
    const tokens = this.#tokens(key, now) - 1;
    this.#buckets.delete(key); // re-inserted last: the Map stays in order of use
    this.#buckets.set(key, { tokens, at: now });
    while (this.#buckets.size > MAX_TRACKED_CLIENTS) {
      this.#buckets.delete(this.#buckets.keys().next().value!);
    }
    return 0;
  }

  /** Gives back the action `take` charged `key` for (it turned out not to count). */
  refund(key: string): void {
    const bucket = this.#buckets.get(key);
    if (bucket) bucket.tokens = Math.min(this.burst, bucket.tokens + 1);
  }

  #tokens(key: string, now: number): number {
    const bucket = this.#buckets.get(key);
    if (bucket === undefined) return this.burst;
    const refilled = (now - bucket.at) / this.refillMs;
    return Math.min(this.burst, bucket.tokens + Math.max(0, refilled));
  }
}

/** A 429 Too Many Requests that says when to come back. */
function tooManyRequests(message: string, waitMs: number): HttpError {
  const seconds = Math.max(1, Math.ceil(waitMs / 1000));
  return new HttpError(429, message, { "retry-after": String(seconds) });
}

/**
 * Whether two tokens are equal, in time that does not depend on where they differ: both
 * are hashed first (SHA-256), so neither the comparison nor the lengths leak anything a
 * timing attacker could use to guess the token byte by byte.
 */
export async function tokensMatch(
  given: string,
  expected: string,
): Promise<boolean> {
  const [a, b] = await Promise.all(
    [given, expected].map((token) =>
      crypto.subtle.digest("SHA-256", encoder.encode(token))
    ),
  );
  const x = new Uint8Array(a!);
  const y = new Uint8Array(b!);
  let difference = 0;
  for (let i = 0; i < x.length; i++) difference |= x[i]! ^ y[i]!;
  return difference === 0;
}

/** Admin sessions, kept in memory only: random ids with an expiry (a restart signs everyone out). */
class AdminSessions {
  #expiries = new Map<string, number>();

  /** Starts a session; returns its id (256 random bits, base64url). */
  start(now = Date.now()): string {
    const id = btoa(
      String.fromCharCode(...crypto.getRandomValues(new Uint8Array(32))),
    ).replaceAll("+", "-").replaceAll("/", "_").replace(/=+$/, "");
    this.#expiries.set(id, now + ADMIN_SESSION_S * 1000);
    while (this.#expiries.size > MAX_ADMIN_SESSIONS) {
      this.#expiries.delete(this.#expiries.keys().next().value!);
    }
    return id;
  }

  /** Whether `id` is a session that has not expired. */
  isValid(id: string | undefined, now = Date.now()): boolean {
    if (id === undefined) return false;
    const expiry = this.#expiries.get(id);
    if (expiry === undefined) return false;
    if (expiry > now) return true;
    this.#expiries.delete(id);
    return false;
  }

  /** Ends a session (signing out). */
  end(id: string | undefined): void {
    if (id !== undefined) this.#expiries.delete(id);
  }
}

// ---------------------------------------------------------------------------
// Responses.
// ---------------------------------------------------------------------------

/**
 * Sent with every response, error pages included. The policy allows nothing but our own
 * stylesheet, our own script file (/board.js, live updates) with its event stream, and form
 * posts to ourselves: no inline script, so even text that slipped past escaping could not
 * run. No other site may frame a page (clickjacking: `frame-ancestors`, and X-Frame-Options
 * for browsers older than it), keep a handle on a window it opened (COOP), or load our
 * answers into its own page, as a script or image would (CORP: the JSON API stays ours).
 */
const SECURITY_HEADERS = {
  "content-security-policy":
    "default-src 'none'; style-src 'self'; script-src 'self'; " +
    "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
  "x-frame-options": "DENY",
  "x-content-type-options": "nosniff",
  "referrer-policy": "same-origin",
  "cross-origin-opener-policy": "same-origin",
  "cross-origin-resource-policy": "same-origin",
};

function respond(
  body: BodyInit | null,
  status: number,
  contentType: string,
  ...extras: HeadersInit[]
): Response {
  const headers = new Headers(SECURITY_HEADERS);
  if (body !== null) headers.set("content-type", contentType);
  for (const extra of extras) {
    new Headers(extra).forEach((value, key) => headers.set(key, value));
  }
  return new Response(body, { status, headers });
}

function htmlResponse(
  html: string | ReadableStream<Uint8Array>,
  status = 200,
  extra: HeadersInit = {},
): Response {
  // The page shows the visitor's own name (from the cookie): never cache it.
  return respond(html, status, "text/html; charset=utf-8", {
    "cache-control": "no-store",
  }, extra);
}

function jsonResponse(
  value: unknown,
  status = 200,
  extra: HeadersInit = {},
): Response {
  return jsonBodyResponse(JSON.stringify(value), status, extra);
}

function jsonBodyResponse(
  body: string | ReadableStream<Uint8Array>,
  status = 200,
  extra: HeadersInit = {},
): Response {
  const type = "application/json; charset=utf-8";
  return respond(body, status, type, { "cache-control": "no-store" }, extra);
}

/**
 * Characters of a long answer rendered at a time when it goes in pieces (see
 * {@linkcode piecesBody}); an answer no longer than this goes whole to a request with a
 * Host header (the newest page of ordinary messages is about 17,000).
 */
const ANSWER_PIECE_CHARS = 32 * 1024;

/**
 * The body of an answer made of `pieces`: the text when it is one piece or less and
 * `whole` (see {@linkcode sendsWhole}), else a {@linkcode watchedStream} that renders the
 * next piece only when Deno.serve asks for it.
 *
 * Deno.serve holds a whole body until it is sent. An HTTP/2 client may give a stream no
 * window (RFC 9113 6.9.2) and open 200 of them on one connection: 600 such streams asking
 * for the 1.6 MB /api/messages?limit=100 held 464 MB, and another client waited 4-5 s; in
 * pieces, each holds what Deno.serve buffers (160 MB for the 600). A long answer goes in
 * pieces over HTTP/1.1 too, which cannot be told from an HTTP/2 request that sends a Host
 * header: sent whole, 10 such connections of 199 streams took the board to 1,995 MB.
 */
function piecesBody(
  pieces: Iterable<string>,
  whole: boolean,
): string | ReadableStream<Uint8Array> {
  const iterator = pieces[Symbol.iterator]();
  let done = false;
  const nextPiece = () => {
    const parts: string[] = [];
    let length = 0;
    while (!done && length < ANSWER_PIECE_CHARS) {
      const result = iterator.next();
      if (result.done) done = true;
      else {
        parts.push(result.value);
        length += result.value.length;
      }
    }
    return parts.join("");
  };
  let first: string | null = nextPiece();
  if (done && whole) return first;
  return watchedStream(() => {
    const text = first ?? (done ? "" : nextPiece());
    first = null;
    return text === "" ? null : encoder.encode(text);
  });
}

/**
 * A stream of the chunks `next` gives (null: the end), one each time Deno.serve asks for
 * more, which the send timeout watches (see {@linkcode SEND_TIMEOUT_MS}).
 */
function watchedStream(
  next: () => Uint8Array | null,
): ReadableStream<Uint8Array> {
  let ended = false;
  const progress: SendProgress = { waitingSince: Date.now(), drop() {} };
  const stream = new ReadableStream<Uint8Array>({
    start(controller) {
      progress.drop = (reason) => {
        if (ended) return;
        ended = true;
        controller.error(reason);
      };
    },
    pull(controller) {
      progress.waitingSince = Date.now();
      const chunk = ended ? null : next();
      if (chunk !== null) return controller.enqueue(chunk);
      ended = true;
      controller.close();
    },
  }, { highWaterMark: 0 });
  watchedStreams.set(stream, progress);
  return stream;
}

/** What the send timeout needs of an answer's stream (see {@linkcode SEND_TIMEOUT_MS}). */
interface SendProgress {
  /** When Deno.serve last asked for more. */
  waitingSince: number;
  /** Gives no more: the stream fails with `reason`, which Deno.serve logs, and ends the answer. */
  drop(reason: string): void;
}

/** Each stream {@linkcode watchedStream} made, with its progress. */
const watchedStreams = new WeakMap<ReadableStream<Uint8Array>, SendProgress>();

/**
 * `response` with its body (a text) as one chunk of a {@linkcode watchedStream}, and its
 * Content-Length. Deno.serve hands a text body to HTTP/2 whole and says at once that it
 * was sent, while it waits for the stream's window (RFC 9113 6.9): the answer limits never
 * counted those, and 10 connections of 199 zero-window streams took the board from 276 to
 * 1,995 MB. A stream goes as the window allows, and counts until it has gone. Over
 * HTTP/1.1 a text is faster (a stream took a third off the page's requests a second).
 */
async function asWatchedStream(response: Response): Promise<Response> {
  const bytes: Uint8Array | null = new Uint8Array(await response.arrayBuffer());
  let left: Uint8Array | null = bytes;
  const headers = new Headers(response.headers);
  headers.set("content-length", String(bytes.length));
  return new Response(
    watchedStream(() => {
      const chunk = left;
      left = null;
      return chunk;
    }),
    { status: response.status, headers },
  );
}

/** An answer counted towards the board's limits (see `admitAnswer` in createBoardHandler). */
interface AnswerSlot {
  /** Gives the counts back now: the answer had no body, or was refused. */
  release(): void;
  /** Starts the send timeout for `body`, on its way to the client. */
  watch(body: ReadableStream<Uint8Array>): void;
}

/** The slot of an answer nothing counts (an event stream, or no `info`). */
const UNCOUNTED_ANSWER: AnswerSlot = { release() {}, watch() {} };

/**
 * Whether to send a short answer as a text (faster), or as a stream that the answer
 * limits can count (see {@linkcode asWatchedStream}): a text when the request has a Host
 * header. Deno.serve does not say which HTTP version a request came in; an HTTP/1.1
 * request must have a Host header (RFC 9112 3.2), and HTTP/2 clients name the host in
 * `:authority` instead (RFC 9113 8.3.1). One that sends both gets texts, of at most
 * ANSWER_PIECE_CHARS each.
 */
function sendsWhole(request: Request): boolean {
  return request.headers.has("host");
}

/** `{"messages":[...],"older":...}` in pieces, the same text JSON.stringify writes. */
function* messageListPieces(
  messages: readonly Message[],
  older: string | null,
): Generator<string> {
  yield '{"messages":[';
  for (let i = 0; i < messages.length; i++) {
    yield (i === 0 ? "" : ",") + JSON.stringify(messages[i]);
  }
  yield `],"older":${JSON.stringify(older)}}`;
}

/** 303 See Other (RFC 9110 15.4.4): the browser follows with a GET, so a refresh never posts again. */
function seeOther(location: string, extra: HeadersInit = {}): Response {
  return respond(null, 303, "", { location }, extra);
}

/** The stylesheet or the script: the same for everyone, so browsers may keep it a while. */
function staticText(text: string, contentType: string): Response {
  return respond(text, 200, contentType, {
    "cache-control": `public, max-age=${STATIC_MAX_AGE_S}`,
  });
}

/**
 * 421 Misdirected Request (RFC 9110 15.5.20) for a Host that is not on the allow-list, in
 * plain text that tells the operator which flag fixes it, should the name be real.
 */
function misdirected(name: string | null): Response {
  const shown = name === null ? "(none)" : name.slice(0, 100);
  return respond(
    `421 Misdirected Request: this board does not answer to the host name ${shown}.\n` +
      `If that is its real name, start it with --allowed-host ${shown} ` +
      `(option allowedHosts).\n`,
    421,
    "text/plain; charset=utf-8",
    { "cache-control": "no-store" },
  );
}

/**
 * Turns any error into a response: an {@linkcode HttpError} keeps its status
 * and message; anything else is logged here and answered with a generic body,
 * because error text can reveal file paths and internals to a stranger.
 */
function errorResponse(
  error: unknown,
  format: "html" | "json",
  base = "",
): Response {
  let status = 500;
  let message = "Something went wrong on the server.";
  let headers: HeadersInit = {};
  // Said in JSON too, for a script that retries on a 503: this one it must check first.
  const mayStillBeSaved = error instanceof StoreUnavailableError &&
    error.mayStillComplete;
  if (error instanceof StoreUnavailableError) error = storeUnavailable(error);
  if (error instanceof HttpError) {
    ({ status, message, headers } = error);
  } else {
    console.error("message board: unexpected error:", error);
  }
  return format === "json"
    ? jsonResponse(
      mayStillBeSaved
        ? { error: message, mayStillBeSaved }
        : { error: message },
      status,
      headers,
    )
    : htmlResponse(renderErrorPage(status, message, base), status, headers);
}

/** The 503 a client gets when the store cannot take a write now (its cause is logged here). */
function storeUnavailable(error: StoreUnavailableError): HttpError {
  console.error(`message board: ${error.message}`);
  // A write that timed out on its way to the disk may land after this answer: a client
  // told only "try again" would post its message twice.
  const message = error.mayStillComplete
    ? "The board did not finish saving this in time, and it may still be saved: " +
      "reload the board and look before you send it again."
    : "The message store is unavailable right now; try again in a moment.";
  const retryAfter = error.retryAfterSeconds ?? STORE_RETRY_AFTER_S;
  return new HttpError(503, message, { "retry-after": String(retryAfter) });
}

/** HEAD is GET without the body (RFC 9110 9.3.2). */
function withoutBody(response: Response): Response {
  response.body?.cancel();
  return new Response(null, {
    status: response.status,
    headers: response.headers,
  });
}

function methodNotAllowed(allow: string): HttpError {
  return new HttpError(405, "That method is not allowed here.", { allow });
}

// ---------------------------------------------------------------------------
// Cookies: remembering the poster's name, and an admin's session.
// ---------------------------------------------------------------------------

const NAME_COOKIE = "board_name";
const ADMIN_COOKIE = "board_admin";

/** The value of cookie `key` in the Cookie header, undefined when absent. */
function readCookie(request: Request, key: string): string | undefined {
  const header = request.headers.get("cookie");
  if (header === null) return undefined;
  for (const part of header.split(";")) {
    const [name, value = ""] = part.trim().split("=", 2);
    if (name === key) return value;
  }
  return undefined;
}

/** Reads the remembered name from the Cookie header; "" when missing or invalid. */
function readNameCookie(request: Request): string {
  const value = readCookie(request, NAME_COOKIE);
  if (value === undefined) return "";
  try {
    return validateNewMessage("x", decodeURIComponent(value)).name ?? "";
  } catch {
    return ""; // a cookie we did not write, or a bad one: ignore it
  }
}

/**
 * The Set-Cookie value that remembers `name` (or forgets it when empty).
 * HttpOnly: scripts cannot read it. SameSite=Lax: other sites' posts don't
 * carry it (RFC 6265bis 5.4.7). Secure when served over HTTPS.
 */
function nameCookie(name: string, secure: boolean, base: string): string {
  const value = encodeURIComponent(name);
  const age = name === "" ? 0 : NAME_COOKIE_MAX_AGE_S;
  return `${NAME_COOKIE}=${value}; Path=${base}/; Max-Age=${age}; HttpOnly; SameSite=Lax${
    secure ? "; Secure" : ""
  }`;
}

/**
 * The Set-Cookie value of an admin session (an empty id signs out). SameSite=Strict: no
 * request started by another site carries it, not even a link followed from there.
 */
function adminCookie(id: string, secure: boolean, base: string): string {
  const age = id === "" ? 0 : ADMIN_SESSION_S;
  return `${ADMIN_COOKIE}=${id}; Path=${base}/; Max-Age=${age}; HttpOnly; SameSite=Strict${
    secure ? "; Secure" : ""
  }`;
}

// ---------------------------------------------------------------------------
// The handler: one table of routes, the checks every request passes, and the
// handlers of each route.
// ---------------------------------------------------------------------------

/** Options for {@linkcode createBoardHandler}. */
export interface BoardHandlerOptions {
  /** Messages per page. @default PAGE_SIZE (50) */
  pageSize?: number;
  /** How long a request body may take to arrive. @default BODY_TIMEOUT_MS (10 s) */
  bodyTimeoutMs?: number;
  /** Milliseconds between heartbeats on an idle event stream. @default HEARTBEAT_MS (15 s) */
  heartbeatMs?: number;
  /** How long an answer may wait for its client (see SEND_TIMEOUT_MS). @default SEND_TIMEOUT_MS (30 s) */
  sendTimeoutMs?: number;
  /**
   * Ends every open event stream when aborted. Abort it before `server.shutdown()`, which
   * waits for open responses, and an event stream never ends by itself.
   * @default a signal that is never aborted
   */
  signal?: AbortSignal;
  /**
   * Host names the board answers to besides localhost, 127.0.0.1 and [::1] (the CLI adds
   * the names and addresses it listens on). A leading dot (`.example.com`) allows every
   * subdomain. Requests for any other Host get 421. @default []
   */
  allowedHosts?: string[];
  /**
   * The moderators' token: with it, whoever signs in at /admin may clear (after a
   * confirmation), delete single messages and restore the newest archive. Without it
   * only visitors on this machine (loopback address and Host) may, and with `trustProxy`
   * no one.
   * @default undefined (no sign-in)
   */
  adminToken?: string | undefined;
  /**
   * The proxies in front, whose `X-Forwarded-For` and `X-Forwarded-Proto` say who the
   * client is and which scheme it used: addresses and CIDR ranges (`["loopback"]` for a
   * proxy on this machine), or `true` for whatever peer connects (only when nothing else
   * can reach the board). A request from any other peer is taken as it came. See
   * {@linkcode forwardedClient}. @default false
   */
  trustProxy?: boolean | readonly string[];
  /**
   * Per-client limits (posts, live-update streams); false turns them off for benchmarks
   * and load tests. The sign-in limit stays on. @default true
   */
  rateLimit?: boolean;
  /** Posts one client may make at once. @default POST_BURST (5) */
  postBurst?: number;
  /** Then one post per this many milliseconds. @default POST_REFILL_MS (3 s) */
  postRefillMs?: number;
  /** Live-update streams per client. @default MAX_STREAMS_PER_CLIENT (8) */
  maxStreamsPerClient?: number;
  /**
   * Where the board is mounted inside a larger app, like `/board`: every link, form,
   * stylesheet, script, event stream and API address starts with it. @default "" (the root)
   */
  basePath?: string;
}

/**
 * A request handler for `Deno.serve`. Pass `info` along (the handler's second argument):
 * the per-client limits and local moderation need the client's address; without it every
 * request counts as one unknown, non-local client.
 */
export type BoardHandler = (
  request: Request,
  info?: Deno.ServeHandlerInfo,
) => Promise<Response>;

/** Everything a route handler needs to know about one request. */
interface RequestContext {
  request: Request;
  url: URL;
  /** The client, as {@linkcode clientKey} names it. */
  client: string;
  /** Where the request was sent (scheme, host, port). */
  target: RequestTarget;
  /** Whether the client talks HTTPS to us (or to the trusted proxy in front). */
  secure: boolean;
  /** Settles once the response is sent or the client has gone (Deno.serve's `completed`). */
  completed: Promise<void>;
}

/** One route: a handler per method; HEAD is derived from GET. */
type Route = Partial<
  Record<"GET" | "POST", (context: RequestContext) => Promise<Response>>
>;

/**
 * Checks a base path: "" or "/" for the root, else "/name" (segments of letters, digits,
 * `-`, `_`, `.`, `~`), returned without a trailing slash.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { normalizeBasePath } from "./message_board.ts";
 * assert.equal(normalizeBasePath("/board/"), "/board");
 * ```
 */
export function normalizeBasePath(basePath: string): string {
  const base = basePath.replace(/\/+$/, "");
  if (base !== "" && !/^(\/[A-Za-z0-9._~-]+)+$/.test(base)) {
    throw new TypeError(
      `basePath must look like "/board" (got ${JSON.stringify(basePath)})`,
    );
  }
  return base;
}

/**
 * Headers a proxy adds. Without `trustProxy`, a request that has one came through a proxy
 * on this machine from anywhere (one that sends `Host: 127.0.0.1`, as nginx's
 * `proxy_pass http://127.0.0.1:8080` does): it is not a visitor on this machine.
 */
const FORWARDING_HEADERS = ["forwarded", "x-forwarded-for", "x-real-ip", "via"];

/** Whether a host name (from {@linkcode hostName}) names this machine. */
function isLoopbackName(name: string | null): boolean {
  return name === "localhost" || name === "[::1]" ||
    (name !== null && /^127\.\d+\.\d+\.\d+$/.test(name));
}

/** Adds one to `key`'s count. */
function countUp(counts: Map<string, number>, key: string): void {
  counts.set(key, (counts.get(key) ?? 0) + 1);
}

/** Takes one from `key`'s count, forgetting the key at 0 (the map stays small). */
function countDown(counts: Map<string, number>, key: string): void {
  const left = (counts.get(key) ?? 1) - 1;
  if (left === 0) counts.delete(key);
  else counts.set(key, left);
}

/**
 * Builds the board's request handler over any {@linkcode MessageStore}.
 *
 * Every request passes, in order: the Host allow-list (421), the route table (404, 405
 * with Allow), for a POST the Origin check (403), then its route, where the per-client
 * limits answer 429 with Retry-After.
 */
export function createBoardHandler(
  store: MessageStore,
  {
    pageSize = PAGE_SIZE,
    bodyTimeoutMs = BODY_TIMEOUT_MS,
    heartbeatMs = HEARTBEAT_MS,
    sendTimeoutMs = SEND_TIMEOUT_MS,
    signal = new AbortController().signal,
    allowedHosts = [],
    adminToken,
    trustProxy = false,
    rateLimit = true,
    postBurst = POST_BURST,
    postRefillMs = POST_REFILL_MS,
    maxStreamsPerClient = MAX_STREAMS_PER_CLIENT,
    basePath = "",
  }: BoardHandlerOptions = {},
): BoardHandler {
  const base = normalizeBasePath(basePath);
  const allowed = allowedHosts.map(normalizeAllowedHost);
  const trusted = trustedProxies(trustProxy);
  const behindProxy = trustProxy === true ||
    (trustProxy !== false && trustProxy.length > 0);
  const posts = new RateLimiter(postBurst, postRefillMs);
  const signIns = new RateLimiter(SIGN_IN_BURST, SIGN_IN_REFILL_MS);
  const sessions = new AdminSessions();
  const streamsByClient = new Map<string, number>();
  const bodiesByClient = new Map<string, number>();
  const answersByConnection = new Map<string, number>();
  const answersByClient = new Map<string, number>();
  let answersInFlight = 0;
  let openStreams = 0;

  /** Who may moderate this request (see {@linkcode Moderation}). */
  function moderationOf({ request, client, target }: RequestContext) {
    if (adminToken !== undefined) {
      return sessions.isValid(readCookie(request, ADMIN_COOKIE))
        ? "admin"
        : "sign-in";
    }
    // Behind a trusted proxy no one is local: who the client is comes from the proxy's
    // X-Forwarded-For, only as good as its configuration. nginx's default proxy_pass sends
    // none (every client then looked like this machine) and passes on one a client wrote.
    const local = !behindProxy && isLoopbackClient(client) &&
      isLoopbackName(hostName(target.host)) &&
      !FORWARDING_HEADERS.some((h) => request.headers.has(h));
    return local ? "open" : "off";
  }

  function requireModerator(context: RequestContext): void {
    const moderation = moderationOf(context);
    if (moderation === "open" || moderation === "admin") return;
    throw new HttpError(
      403,
      moderation === "sign-in"
        ? "Only a signed-in moderator can do that."
        : "Clearing and deleting are turned off on this board (start it with --admin-token to moderate).",
    );
  }

  /**
   * Counts a request with a body for its client, or refuses it with 429 when the client has
   * MAX_BODIES_PER_CLIENT in flight (each may hold a connection and a body for
   * BODY_TIMEOUT_MS). Returns the function that gives the slot back.
   */
  function admitBody(client: string): () => void {
    // No address (an untrusted proxy's Unix socket): every visitor would share the 8.
    if (!rateLimit || client === "unknown") return () => {};
    const mine = bodiesByClient.get(client) ?? 0;
    if (mine >= MAX_BODIES_PER_CLIENT) {
      throw tooManyRequests(
        "Too many requests from your address at once; wait for the others to finish.",
        1000,
      );
    }
    bodiesByClient.set(client, mine + 1);
    return () => {
      const left = (bodiesByClient.get(client) ?? 1) - 1;
      if (left === 0) bodiesByClient.delete(client);
      else bodiesByClient.set(client, left);
    };
  }

  /**
   * Counts an answer on its connection (`address:port`, on TCP), for its client and in the
   * process until Deno.serve has sent it or the client has gone (`completed`), or refuses
   * it: 429 past MAX_ANSWERS_PER_CONNECTION or (with the per-client limits on)
   * MAX_ANSWERS_PER_CLIENT, 503 past MAX_ANSWERS_IN_FLIGHT (but for a client with almost
   * none on their way, MAX_RESERVED_ANSWERS more), which a post is not refused by (its
   * answer is a redirect, and its body has limits of its own). The client is the one
   * a trusted proxy forwards; on a Unix socket there is no connection to count, and without
   * a forwarded client only the process counts. Without `info` (a handler called
   * directly) nothing is counted.
   */
  function admitAnswer(
    { request, client }: RequestContext,
    info: Deno.ServeHandlerInfo | undefined,
  ): AnswerSlot {
    const completed = info?.completed;
    if (info === undefined || completed === undefined) return UNCOUNTED_ANSWER;
    const addr = info.remoteAddr;
    const connection = addr.transport === "tcp"
      ? `${addr.hostname}:${addr.port}`
      : null;
    const known = rateLimit && client !== "unknown";
    if (
      connection !== null &&
      (answersByConnection.get(connection) ?? 0) >= MAX_ANSWERS_PER_CONNECTION
    ) {
      throw tooManyRequests(
        "Too many requests on this connection at once; wait for the others to finish.",
        1000,
      );
    }
    if (known && (answersByClient.get(client) ?? 0) >= MAX_ANSWERS_PER_CLIENT) {
      throw tooManyRequests(
        "Too many requests from your address at once; wait for the others to finish.",
        1000,
      );
    }
    if (
      request.method !== "POST" && answersInFlight >= MAX_ANSWERS_IN_FLIGHT &&
      (!known ||
        (answersByClient.get(client) ?? 0) >= MAX_RESERVED_ANSWERS_PER_CLIENT ||
        answersInFlight >= MAX_ANSWERS_IN_FLIGHT + MAX_RESERVED_ANSWERS)
    ) {
      throw new HttpError(
        503,
        "The board is sending too many answers at once; try again in a moment.",
        { "retry-after": String(STORE_RETRY_AFTER_S) },
      );
    }
    if (connection !== null) countUp(answersByConnection, connection);
    if (known) countUp(answersByClient, client);
    answersInFlight++;
    let inFlight = true;
    let released = false;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const leaveFlight = () => {
      if (inFlight) answersInFlight--;
      inFlight = false;
    };
    const release = () => {
      if (released) return;
      released = true;
      clearTimeout(timer);
      leaveFlight();
      if (connection !== null) countDown(answersByConnection, connection);
      if (known) countDown(answersByClient, client);
    };
    completed.then(release, release);
    return {
      release,
      watch(body) {
        if (released) return;
        const pieces = watchedStreams.get(body);
        const handedAt = Date.now();
        // One timer per answer, re-armed only when it fires: a pull just notes the time.
        const check = () => {
          if (released) return;
          const waited = Date.now() - (pieces?.waitingSince ?? handedAt);
          if (waited < sendTimeoutMs) {
            timer = setTimeout(check, sendTimeoutMs - waited);
            Deno.unrefTimer(timer);
            return;
          }
          // The send timeout: the process's slot goes back, and the rest of an answer in
          // pieces is never rendered (Deno.serve ends the stream when it next writes).
          leaveFlight();
          // A string, not an Error: Deno.serve logs it, and one line is enough.
          pieces?.drop(
            `message board: dropped an answer its client took nothing of for ${sendTimeoutMs} ms (send timeout)`,
          );
        };
        timer = setTimeout(check, sendTimeoutMs);
        Deno.unrefTimer(timer);
      },
    };
  }

  /** Takes one post from the client's allowance, or refuses with 429. */
  function chargePost(client: string): void {
    if (!rateLimit) return;
    const wait = posts.take(client);
    if (wait > 0) {
      throw tooManyRequests(
        `You are posting too fast; try again in ${Math.ceil(wait / 1000)} s.`,
        wait,
      );
    }
  }

  async function renderPage(
    context: RequestContext,
    view: Partial<PageView> = {},
  ): Promise<string | ReadableStream<Uint8Array>> {
    const page = view.page ??
      await store.listMessages({ before: view.before, limit: pageSize });
    const board: PageView = {
      name: readNameCookie(context.request),
      ...view,
      page,
      base,
      moderation: moderationOf(context),
      readOnly: !store.writable,
    };
    return piecesBody(boardPieces(board), sendsWhole(context.request));
  }

  /** GET /: the newest page, or `?before=ID` for older ones. */
  async function showBoard(context: RequestContext): Promise<Response> {
    const before = readBeforeParameter(context.url);
    return htmlResponse(await renderPage(context, { before }));
  }

  /** POST /: a form with `clear`, or with `message` (and `name`). */
  async function postForm(context: RequestContext): Promise<Response> {
    const { request, client, secure } = context;
    let fields = new Map<string, string>();
    try {
      fields = await readFormFields(request, bodyTimeoutMs);
      if (fields.has("clear")) {
        if (fields.has("message")) {
          throw new HttpError(
            400,
            "Send either a message or clear, not both: which one was meant?",
          );
        }
        requireModerator(context);
        // An admin confirms first (GET /admin/clear); the chapter's local button clears at once.
        if (adminToken !== undefined && fields.get("confirm") !== "yes") {
          return seeOther(`${base}/admin/clear`);
        }
        await store.clearMessages();
        return seeOther(`${base}/`);
      }
      const input = validateNewMessage(
        fields.get("message") ?? "",
        fields.get("name"),
      );
      chargePost(client);
      await store.appendMessage(input);
      // Remember a new name, forget a removed one; send nothing when unchanged.
      const name = input.name ?? "";
      if (name === readNameCookie(request)) return seeOther(`${base}/`);
      return seeOther(`${base}/`, {
        "set-cookie": nameCookie(name, secure, base),
      });
    } catch (error) {
      if (!request.bodyUsed) await request.body?.cancel().catch(() => {});
      // Show the board again with the error, keeping what was typed: a refused post, or one
      // the store could not take now (503), so the text is not lost.
      const refused = error instanceof StoreUnavailableError
        ? storeUnavailable(error)
        : error;
      if (!(refused instanceof HttpError)) throw error;
      const html = await renderPage(context, {
        error: refused.message,
        draft: fields.get("message") ?? "",
        name: fields.get("name") ?? readNameCookie(request),
      });
      return htmlResponse(html, refused.status, refused.headers);
    }
  }

  /** GET /events: the live event stream. */
  async function openEvents(
    { request, url, client, completed }: RequestContext,
  ): Promise<Response> {
    const after = readResumePoint(request, url);
    if (signal.aborted) {
      throw new StoreUnavailableError("the board is shutting down");
    }
    if (openStreams >= MAX_EVENT_STREAMS) {
      throw new HttpError(503, "Too many live connections; try again later.", {
        "retry-after": String(STREAMS_RETRY_AFTER_S),
      });
    }
    const mine = streamsByClient.get(client) ?? 0;
    // A request with no address (an untrusted proxy's Unix socket) has MAX_EVENT_STREAMS.
    if (rateLimit && client !== "unknown" && mine >= maxStreamsPerClient) {
      throw tooManyRequests(
        `Too many live connections from your address (at most ${maxStreamsPerClient}); close some tabs.`,
        STREAMS_RETRY_AFTER_S * 1000,
      );
    }
    openStreams++;
    streamsByClient.set(client, mine + 1);
    return await streamEvents(store, {
      after,
      heartbeatMs,
      signal,
      onClose() {
        // The slot is given back once the connection is done as well: a stream dropped
        // while its bytes wait in a full socket keeps that connection until the client
        // reads or leaves, and one client must not pile up such connections.
        const release = () => {
          openStreams--;
          const left = (streamsByClient.get(client) ?? 1) - 1;
          if (left === 0) streamsByClient.delete(client);
          else streamsByClient.set(client, left);
        };
        completed.then(release, release);
      },
    });
  }

  /** GET /api/messages?before=ID&limit=N */
  async function listApi(
    { request, url }: RequestContext,
  ): Promise<Response> {
    const before = readBeforeParameter(url);
    const limitText = readQueryParameter(url, "limit");
    const limit = limitText === null
      ? pageSize
      : parsePositiveInteger(limitText, MAX_PAGE_LIMIT);
    if (limit === null) {
      throw new HttpError(
        400,
        `limit must be a whole number from 1 to ${MAX_PAGE_LIMIT}.`,
      );
    }
    const page = await store.listMessages({ before, limit });
    const oldest = page.messages.at(-1);
    const older = page.hasOlder && oldest
      ? `${base}/api/messages?before=${oldest.id}&limit=${limit}`
      : null;
    return jsonBodyResponse(
      piecesBody(messageListPieces(page.messages, older), sendsWhole(request)),
    );
  }

  /** POST /api/messages with {"text": "...", "name": "..."} */
  async function postApi(
    { request, client }: RequestContext,
  ): Promise<Response> {
    const { type, charset } = parseContentType(
      request.headers.get("content-type"),
    );
    if (type !== "application/json") {
      await request.body?.cancel().catch(() => {});
      throw new HttpError(415, "Send JSON (Content-Type: application/json).");
    }
    requireUtf8(charset);
    const text = decodeUtf8(await readBody(request, bodyTimeoutMs));
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch {
      throw new HttpError(400, "The body is not valid JSON.");
    }
    if (typeof value !== "object" || value === null || Array.isArray(value)) {
      throw new HttpError(
        400,
        'Send an object: {"text": "...", "name": "..."}.',
      );
    }
    const duplicate = findDuplicateKey(text);
    if (duplicate !== null) {
      throw new HttpError(
        400,
        `The key "${duplicate.slice(0, 40)}" was sent twice.`,
      );
    }
    const fields = value as Record<string, unknown>;
    const unknown = Object.keys(fields).find((key) =>
      key !== "text" && key !== "name"
    );
    if (unknown !== undefined) {
      throw new HttpError(400, "Only text and name may be sent.");
    }
    const input = validateNewMessage(fields.text, fields.name);
    chargePost(client);
    return jsonResponse(await store.appendMessage(input), 201);
  }

  /** GET /admin: the sign-in form (or, signed in, back to the board). */
  function showSignIn(context: RequestContext): Promise<Response> {
    if (adminToken === undefined) {
      throw new HttpError(
        404,
        "This board has no moderator sign-in (start it with --admin-token to add one).",
      );
    }
    if (moderationOf(context) === "admin") {
      return Promise.resolve(seeOther(`${base}/`));
    }
    return Promise.resolve(htmlResponse(renderSignIn(base)));
  }

  /** POST /admin with `token`: starts a session when the token is right. */
  async function signIn(context: RequestContext): Promise<Response> {
    const { request, client, secure } = context;
    if (adminToken === undefined) {
      await request.body?.cancel().catch(() => {});
      throw new HttpError(404, "This board has no moderator sign-in.");
    }
    // Refused before the token is even compared, so guessing stays slow.
    const wait = signIns.waitFor(client);
    if (wait > 0) {
      await request.body?.cancel().catch(() => {});
      throw tooManyRequests(
        `Too many wrong tokens; try again in ${Math.ceil(wait / 1000)} s.`,
        wait,
      );
    }
    const fields = await readFormFields(request, bodyTimeoutMs);
    // Charged before the (asynchronous) comparison, so that tries sent at once cannot all
    // pass the check above before the first wrong one is counted; a right one is refunded.
    const waitNow = signIns.take(client);
    if (waitNow > 0) {
      throw tooManyRequests(
        `Too many wrong tokens; try again in ${Math.ceil(waitNow / 1000)} s.`,
        waitNow,
      );
    }
    if (!(await tokensMatch(fields.get("token") ?? "", adminToken))) {
      return htmlResponse(
        renderSignIn(base, "That token is not right."),
        403,
      );
    }
    signIns.refund(client);
    const id = sessions.start();
    return seeOther(`${base}/`, {
      "set-cookie": adminCookie(id, secure, base),
    });
  }

  /** POST /admin/sign-out: ends the session. */
  async function signOut(
    { request, secure }: RequestContext,
  ): Promise<Response> {
    await request.body?.cancel().catch(() => {});
    sessions.end(readCookie(request, ADMIN_COOKIE));
    return seeOther(`${base}/`, {
      "set-cookie": adminCookie("", secure, base),
    });
  }

  /** GET /admin/clear: the confirmation step before an admin clears. */
  function confirmClear(context: RequestContext): Promise<Response> {
    requireModerator(context);
    return Promise.resolve(htmlResponse(renderClearConfirmation(base)));
  }

  /** POST /admin/delete with `id`: takes one message off the board (it stays in the archive). */
  async function deleteForm(context: RequestContext): Promise<Response> {
    requireModerator(context);
    const fields = await readFormFields(context.request, bodyTimeoutMs);
    const id = parsePositiveInteger(
      fields.get("id") ?? "",
      Number.MAX_SAFE_INTEGER,
    );
    if (id === null) {
      throw new HttpError(400, "id must be a message id (a whole number).");
    }
    if (!(await store.deleteMessage(id))) {
      throw new HttpError(404, "That message is not on the board.");
    }
    return seeOther(`${base}/`);
  }

  /** POST /admin/restore: puts the messages of the newest archive back. */
  async function restoreForm(context: RequestContext): Promise<Response> {
    requireModerator(context);
    await context.request.body?.cancel().catch(() => {});
    await store.restoreNewestArchive();
    return seeOther(`${base}/`);
  }

  /**
   * GET /healthz, for a load balancer or an orchestrator: 200 `{"status":"ok"}`
   * when the store answers a read and takes posts; 503 (with `Retry-After`)
   * when it is read-only (posts would get 503, so send posters elsewhere) or
   * cannot be read. Never cached.
   */
  async function checkHealth(): Promise<Response> {
    let status = "ok";
    try {
      await store.listMessages({ limit: 1 });
      if (!store.writable) status = "read-only";
    } catch (error) {
      // The client sees only "unavailable"; the operator needs the cause.
      console.error(
        `message board: health check failed: ${
          error instanceof Error ? error.message : error
        }`,
      );
      status = "unavailable";
    }
    if (status === "ok") return jsonResponse({ status });
    return jsonResponse({ status }, 503, {
      "retry-after": String(STORE_RETRY_AFTER_S),
    });
  }

  const routes: Record<string, Route> = {
    "/healthz": { GET: checkHealth },
    "/": { GET: showBoard, POST: postForm },
    "/index.html": { GET: showBoard, POST: postForm },
    "/style.css": {
      GET: () =>
        Promise.resolve(staticText(STYLESHEET, "text/css; charset=utf-8")),
    },
    "/board.js": {
      GET: () =>
        Promise.resolve(
          staticText(BROWSER_SCRIPT, "text/javascript; charset=utf-8"),
        ),
    },
    "/events": { GET: openEvents },
    "/api/messages": { GET: listApi, POST: postApi },
    "/admin": { GET: showSignIn, POST: signIn },
    "/admin/sign-out": { POST: signOut },
    "/admin/clear": { GET: confirmClear },
    "/admin/delete": { POST: deleteForm },
    "/admin/restore": { POST: restoreForm },
  };

  /** The scheme, Host and port this request was sent to. */
  function targetOf(
    request: Request,
    url: URL,
    fromProxy: boolean,
  ): RequestTarget {
    // Deno.serve's URL for a request on a Unix socket says http+unix: (plain HTTP).
    let protocol = url.protocol === "http+unix:" ? "http:" : url.protocol;
    if (fromProxy) {
      const proto = request.headers.get("x-forwarded-proto")?.split(",").at(-1)
        ?.trim().toLowerCase();
      if (proto === "https" || proto === "http") protocol = `${proto}:`;
    }
    const host = request.headers.get("host") ?? authorityOf(request.url, url);
    let port = "";
    try {
      port = new URL(`${protocol}//${host}`).port;
    } catch {
      // a Host that does not parse has already been refused by the allow-list
    }
    return { protocol, host, port };
  }

  /** Refuses a post made by another site's page (see {@linkcode isAllowedOrigin}). */
  function checkSameOrigin({ request, target }: RequestContext): void {
    // Browsers send Sec-Fetch-Site and, on every POST, Origin; a form on a hostile page can
    // reach us but cannot make these lie. Only our own pages ("same-origin") and a person's
    // own action ("none") may post, as Go's CrossOriginProtection decides: "same-site" is
    // a page on another subdomain or port, which gets SameSite=Strict cookies along and, with
    // `.example.com` allowed, an Origin on the allow-list. Clients that send neither header
    // (curl, scripts) are not browsers acting for a visitor.
    const site = request.headers.get("sec-fetch-site");
    const origin = request.headers.get("origin");
    if (
      (site !== null && site !== "same-origin" && site !== "none") ||
      (origin !== null && !isAllowedOrigin(origin, target, allowed))
    ) {
      throw new HttpError(403, "Posts from other sites are not accepted.");
    }
  }

  /** The answer to any request, HEAD's with its body still (see handleRequest). */
  async function answerRequest(
    request: Request,
    info?: Deno.ServeHandlerInfo,
  ): Promise<Response> {
    // A Host that is not a host name and port, or that no URL can hold (`[zz`, a port past
    // 65535), gets 400, as RFC 9112 says.
    const hostHeader = request.headers.get("host");
    const url = hostHeader !== null && !isValidHost(hostHeader)
      ? null
      : URL.parse(request.url);
    if (url === null) {
      await request.body?.cancel().catch(() => {});
      return errorResponse(
        new HttpError(400, "The Host header is not a valid host name."),
        "html",
        base,
      );
    }
    const path = url.pathname === base
      ? ""
      : url.pathname.startsWith(`${base}/`)
      ? url.pathname.slice(base.length)
      : null;
    const format = path?.startsWith("/api/") ? "json" : "html";
    try {
      const target = targetOf(
        request,
        url,
        isTrustedPeer(info, trustProxy, trusted),
      );
      // An absolute-form target (`GET http://name/ HTTP/1.1`) names its own authority,
      // which RFC 9112 3.2.2 puts before Host: both must be allowed.
      const name = hostName(target.host);
      const targetName = hostName(authorityOf(request.url, url));
      if (
        name === null || !isAllowedHost(name, allowed) || targetName === null ||
        !isAllowedHost(targetName, allowed)
      ) {
        await request.body?.cancel().catch(() => {});
        return misdirected(name);
      }
      if (path === "") {
        // "/board" without its slash: relative links would break, so send the browser to "/board/".
        return respond(null, 308, "", { location: `${base}/${url.search}` });
      }
      const route = path === null ? undefined : routes[path];
      if (route === undefined) {
        throw new HttpError(404, "There is no page at this address.");
      }
      const method = request.method === "HEAD" ? "GET" : request.method;
      const handle = route[method as keyof Route];
      if (handle === undefined) {
        const allow = [
          ...(route.GET ? ["GET", "HEAD"] : []),
          ...(route.POST ? ["POST"] : []),
        ];
        throw methodNotAllowed(allow.join(", "));
      }
      const context: RequestContext = {
        request,
        url,
        client: clientAddress(request, info, trustProxy, trusted),
        target,
        secure: target.protocol === "https:",
        completed: info?.completed ?? Promise.resolve(),
      };
      // Deno.serve rejects `completed` when an answer was not sent whole (an HTTP/2 client
      // resetting its event stream), and a rejection nobody handles ends the process: it is
      // handled here, at once, whatever the route does with it later.
      context.completed.catch(() => {});
      if (method === "POST") checkSameOrigin(context);
      // An event stream never ends: it has its own limits (MAX_STREAMS_PER_CLIENT).
      const answer = path === "/events"
        ? UNCOUNTED_ANSWER
        : admitAnswer(context, info);
      let response: Response;
      const release = method === "POST" ? admitBody(context.client) : () => {};
      try {
        response = await handle(context);
      } catch (error) {
        answer.release();
        throw error;
      } finally {
        release();
      }
      if (
        response.body !== null && answer !== UNCOUNTED_ANSWER &&
        !sendsWhole(request) && !watchedStreams.has(response.body)
      ) {
        response = await asWatchedStream(response);
      }
      if (response.body === null || request.method === "HEAD") answer.release();
      else answer.watch(response.body);
      return response;
    } catch (error) {
      // Discard a body we did not read (a 404, 405 or 403 comes before reading).
      if (!request.bodyUsed) await request.body?.cancel().catch(() => {});
      return errorResponse(error, format, base);
    }
  }

  return async function handleRequest(
    request: Request,
    info?: Deno.ServeHandlerInfo,
  ): Promise<Response> {
    const response = await answerRequest(request, info);
    // HEAD is GET without the body (RFC 9110 9.3.2), here for every route, error and
    // refusal alike: each answers HEAD as it answers GET, and only the body goes.
    return request.method === "HEAD" ? withoutBody(response) : response;
  };
}

// ===========================================================================
// Part 3. Live updates: a response that never ends (Server-Sent Events).
// Teaches: resuming with Last-Event-ID without gaps or repeats, heartbeats, and
// bounding what a reader that never reads can cost.
// ===========================================================================

// ---------------------------------------------------------------------------
// Server-Sent Events at /events (the page's script, /board.js, is in Part 4).
// ---------------------------------------------------------------------------

/**
 * One event in the `text/event-stream` format (HTML Living Standard, "Server-sent
 * events"): `id:` becomes the browser's Last-Event-ID, `event:` the listener it reaches,
 * `data:` one line of JSON (JSON.stringify never writes a raw line break). A delete
 * carries no `id:`, so the browser's resume point stays the newest message it has.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { formatEvent } from "./message_board.ts";
 * assert.equal(
 *   formatEvent({ type: "clear", id: 7 }),
 *   "id: 7\nevent: clear\ndata: {}\n\n",
 * );
 * assert.equal(
 *   formatEvent({ type: "delete", id: 3 }),
 *   'event: delete\ndata: {"id":3}\n\n',
 * );
 * ```
 */
export function formatEvent(event: BoardEvent): string {
  switch (event.type) {
    case "message":
      return `id: ${event.id}\nevent: message\ndata: ${
        JSON.stringify(event.message)
      }\n\n`;
    case "delete":
      return `event: delete\ndata: {"id":${event.id}}\n\n`;
    default:
      return `id: ${event.id}\nevent: ${event.type}\ndata: {}\n\n`;
  }
}

/**
 * Where a client resumes: the `Last-Event-ID` header that a browser sends when it reconnects,
 * else `?after=` that the page gives on the first connection (the newest id it shows);
 * undefined for "from now on". Anything but a whole number gets 400.
 */
function readResumePoint(request: Request, url: URL): number | undefined {
  const text = request.headers.get("last-event-id") ??
    readQueryParameter(url, "after");
  if (text === null || text === "") return undefined;
  const id = text === "0"
    ? 0
    : parsePositiveInteger(text, Number.MAX_SAFE_INTEGER);
  if (id === null) {
    throw new HttpError(
      400,
      "The event id to resume from must be a whole number.",
    );
  }
  return id;
}

/**
 * Each event's frame, encoded once: every open stream gets the same event object from the
 * store, so a message posted to 1,000 listeners is one copy in memory, not 1,000.
 */
const encodedEvents = new WeakMap<BoardEvent, Uint8Array>();

function encodeEvent(event: BoardEvent): Uint8Array {
  let bytes = encodedEvents.get(event);
  if (bytes === undefined) {
    bytes = encoder.encode(formatEvent(event));
    encodedEvents.set(event, bytes);
  }
  return bytes;
}

const HEARTBEAT_FRAME = encoder.encode(": heartbeat\n\n");

/** Why a stream was dropped (Deno.serve logs it); a browser reconnects and resumes. */
const SLOW_READER =
  "message board: a live-update reader fell behind; its connection was dropped";

/** Options for {@linkcode streamEvents}. */
interface EventStreamOptions {
  /** Resume after this event id (see readResumePoint). */
  after?: number | undefined;
  heartbeatMs: number;
  /** Closes the stream when aborted (the board shutting down). */
  signal: AbortSignal;
  /** Called once when the stream ends, whoever ends it. */
  onClose: () => void;
}

/**
 * Answers GET /events: first what the client missed since `after`, then every change as it
 * happens, with a heartbeat comment every `heartbeatMs`. It subscribes *before* reading the missed
 * events and holds live ones back until those are sent: a change that happens in between is
 * then in one list or both (and sent once), never in neither.
 */
async function streamEvents(
  store: MessageStore,
  { after, heartbeatMs, signal, onClose }: EventStreamOptions,
): Promise<Response> {
  const held: BoardEvent[] = [];
  let deliver: ((event: BoardEvent) => void) | null = null;
  const unsubscribe = store.subscribe((event) =>
    deliver ? deliver(event) : held.push(event)
  );
  let missed: BoardEvent[] = [];
  try {
    if (after !== undefined) {
      missed = await store.eventsAfter(after, MAX_REPLAY_EVENTS + 1);
    }
  } catch (error) {
    unsubscribe();
    onClose();
    throw error;
  }

  let heartbeat: ReturnType<typeof setInterval> | undefined;
  let finished = false;
  let end = () => {};
  const finish = () => {
    if (finished) return;
    finished = true;
    unsubscribe();
    clearInterval(heartbeat);
    signal.removeEventListener("abort", end);
    onClose();
  };

  const body = new ReadableStream<Uint8Array>({
    start(controller) {
      end = () => {
        if (finished) return;
        finish();
        controller.close();
      };
      const write = (bytes: Uint8Array) => {
        if (finished) return;
        // desiredSize is minus the bytes still queued (high-water mark 0, sized in bytes).
        if ((controller.desiredSize ?? 0) < -MAX_STREAM_QUEUE_BYTES) {
          // Dropped, not closed: a close waits for the queue to be read, so the connection
          // and its bytes stayed while the client's stream slot was given back.
          finish();
          return controller.error(SLOW_READER);
        }
        controller.enqueue(bytes);
      };
      let lastMessage = after ?? 0;
      let lastClear = 0;
      deliver = (event) => {
        switch (event.type) {
          case "message":
            // Skip what this client has (from the missed list, or the page itself).
            if (event.id <= lastMessage) return;
            lastMessage = event.id;
            break;
          case "clear":
            if (event.id < lastMessage || event.id === lastClear) return;
            lastClear = event.id;
            break;
          case "delete":
            if (event.id > lastMessage) return; // a message this client never had
            break;
          case "restore":
            // Old ids came back: the page reloads rather than merge them in.
            write(encodeEvent(event));
            return end();
        }
        write(encodeEvent(event));
      };

      write(encoder.encode(`retry: ${RECONNECT_MS}\n\n`));
      const replay = [...missed, ...held];
      // Too far behind to catch up event by event: the page starts afresh. That is more than
      // MAX_REPLAY_EVENTS, or more bytes than a stream may queue: the replay is queued before
      // anyone can read it, so it would be dropped as a slow reader every time, and the
      // browser would reconnect and be dropped again, every RECONNECT_MS, for ever.
      if (
        missed.length > MAX_REPLAY_EVENTS ||
        replay.reduce((sum, event) => sum + encodeEvent(event).byteLength, 0) >
          MAX_STREAM_QUEUE_BYTES
      ) {
        write(encoder.encode("event: reload\ndata: {}\n\n"));
        return end();
      }
      for (const event of replay) {
        deliver(event);
        if (finished) return;
      }
      heartbeat = setInterval(() => write(HEARTBEAT_FRAME), heartbeatMs);
      if (signal.aborted) return end();
      signal.addEventListener("abort", end);
    },
    cancel: finish, // the browser went away
  }, { highWaterMark: 0, size: (chunk) => chunk.byteLength });

  return respond(body, 200, "text/event-stream; charset=utf-8", {
    "cache-control": "no-store",
    // Proxies such as nginx would otherwise hold events back in a buffer.
    "x-accel-buffering": "no",
  });
}

// ===========================================================================
// Part 4. The page: HTML built from escaped values, with its stylesheet and script.
// Teaches: escape every value put into HTML; serve style and script as files so
// the Content-Security-Policy can forbid inline code; a page that works without
// its script, which only adds to it.
// ===========================================================================

// ---------------------------------------------------------------------------
// HTML.
// ---------------------------------------------------------------------------

const HTML_ESCAPES: Record<string, string> = {
  "&": "&amp;",
  "<": "&lt;",
  ">": "&gt;",
  '"': "&quot;",
  "'": "&#39;",
};

/**
 * Escapes text for HTML element content and quoted attribute values. Every
 * value put into the page goes through here.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { escapeHtml } from "./message_board.ts";
 * assert.equal(
 *   escapeHtml(`<script>alert("x")</script>`),
 *   "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;",
 * );
 * ```
 */
export function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (character) => HTML_ESCAPES[character]!);
}

/**
 * Shows an ISO time as readable UTC, for readers without JavaScript; the page's
 * script shows it in the reader's own time zone instead, from the `<time datetime>`
 * element that carries the exact value.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { formatTime } from "./message_board.ts";
 * assert.equal(formatTime("2026-11-21T22:44:51.000Z"), "2026-11-21 22:44:51 UTC");
 * ```
 */
export function formatTime(iso: string): string {
  return `${iso.slice(0, 10)} ${iso.slice(11, 19)} UTC`;
}

/** A moderator's Delete button for one message (a form post, so it works without script). */
function renderDeleteForm(id: number, base: string): string {
  return `<form method="post" action="${base}/admin/delete" class="delete">
<input type="hidden" name="id" value="${id}">
<button type="submit" aria-label="Delete message ${id}">Delete</button>
</form>
`;
}

function renderMessage(
  message: Message,
  base: string,
  canDelete: boolean,
): string {
  const name = message.name === undefined
    ? ""
    : ` by <span class="name">${escapeHtml(message.name)}</span>`;
  return `<article class="message" id="m${message.id}">
<p class="meta">Posted: <time datetime="${escapeHtml(message.postedAt)}">${
    formatTime(message.postedAt)
  }</time>${name}</p>
<p class="text">${escapeHtml(message.text)}</p>
${canDelete ? renderDeleteForm(message.id, base) : ""}</article>
`;
}

/**
 * Who may moderate, as the page shows it: `open` (no admin token, a visitor on this
 * machine: the chapter's Clear button), `admin` (signed in), `sign-in` (a token is set,
 * this visitor is not signed in), `off` (no token, a visitor from elsewhere).
 */
export type Moderation = "open" | "admin" | "sign-in" | "off";

/** What the page shows around the messages. */
export interface PageView {
  /** The messages to show. */
  page: MessagePage;
  /** The `before` id of this page; undefined on the newest page. */
  before?: number | undefined;
  /** An error to show above the form. */
  error?: string;
  /** Text to put back in the form after a rejected post. */
  draft?: string;
  /** The name to fill in (from the cookie, or as typed). */
  name?: string;
  /** Where the board is mounted ("" or like "/board"). @default "" */
  base?: string;
  /** Which moderation controls to show. @default "open" */
  moderation?: Moderation;
  /** The store takes no posts for now (a failed write; it retries by itself). @default false */
  readOnly?: boolean;
}

/** The Clear section, as far as this visitor may moderate. */
function renderModeration(moderation: Moderation, base: string): string {
  if (moderation === "off") return "";
  if (moderation === "sign-in") {
    return `<section class="clear" aria-labelledby="clear-heading">
<h2 id="clear-heading">Moderation</h2>
<p><a href="${base}/admin">Sign in as a moderator</a> to clear the board or delete messages.</p>
</section>
`;
  }
  // An admin confirms a clear on its own page; the chapter's local button clears at once.
  const clearForm = moderation === "admin"
    ? `<form method="get" action="${base}/admin/clear">
<button type="submit">Clear Messages</button>
</form>`
    : `<form method="post" action="${base}/">
<button type="submit" name="clear" value="1">Clear Messages</button>
</form>`;
  const signOut = moderation === "admin"
    ? `\n<form method="post" action="${base}/admin/sign-out">
<button type="submit" class="quiet">Sign out</button>
</form>`
    : "";
  return `<section class="clear" aria-labelledby="clear-heading">
<h2 id="clear-heading">Clear the board</h2>
<p>Clearing moves every message into an archive file on the server; nothing is deleted.</p>
${clearForm}
<form method="post" action="${base}/admin/restore">
<button type="submit" class="quiet">Restore the last cleared messages</button>
</form>${signOut}
</section>
`;
}

/** Renders the whole board page. */
export function renderBoard(view: PageView): string {
  return [...boardPieces(view)].join("");
}

/** {@linkcode renderBoard}'s page in pieces: the top, each message, the rest. */
function* boardPieces(
  {
    page,
    before,
    error,
    draft = "",
    name = "",
    base = "",
    moderation = "open",
    readOnly = false,
  }: PageView,
): Generator<string> {
  const canDelete = moderation === "open" || moderation === "admin";
  const links: string[] = [];
  if (before !== undefined) {
    links.push(`<a href="${base}/">Newest messages</a>`);
  }
  if (page.hasOlder) {
    const oldest = page.messages[page.messages.length - 1]!.id;
    links.push(
      `<a href="${base}/?before=${oldest}" rel="next">Older messages</a>`,
    );
  }
  // The newest page gets live updates (board.js) from the newest message it shows on.
  const live = before === undefined
    ? ` data-after="${page.messages[0]?.id ?? 0}" data-events="${base}/events"${
      canDelete ? ` data-delete="${base}/admin/delete"` : ""
    }`
    : "";
  const errorBlock = error === undefined
    ? ""
    : `<p class="error" role="alert">${escapeHtml(error)}</p>\n`;
  // The newline after <textarea> matters: the HTML parser drops one leading
  // newline there, so a draft that starts with a blank line keeps it.
  yield `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Tiny Message Board</title>
<link rel="stylesheet" href="${base}/style.css">
<script src="${base}/board.js" defer></script>
</head>
<body>
<main>
<h1>Tiny Message Board</h1>
<section class="new" aria-labelledby="new-heading">
<h2 id="new-heading">New Message</h2>
${
    readOnly
      ? `<p class="notice" role="status">The board cannot take new messages for a moment (its storage failed); posting will work again by itself.</p>\n`
      : ""
  }${errorBlock}<form method="post" action="${base}/">
<label for="name">Your name <small>(optional, remembered in a cookie)</small></label>
<input id="name" name="name" maxlength="${MAX_NAME_CHARS}" autocomplete="nickname" value="${
    escapeHtml(name)
  }">
<label for="message">Message</label>
<textarea id="message" name="message" rows="4" maxlength="${MAX_MESSAGE_CHARS}" required>
${escapeHtml(draft)}</textarea>
<button type="submit">Save Message</button>
</form>
</section>
<section class="messages" aria-labelledby="messages-heading" aria-live="polite"${live}>
<h2 id="messages-heading">Messages</h2>
`;
  if (page.messages.length === 0) {
    yield `<p class="empty">${
      before === undefined ? "No messages yet." : "No older messages."
    }</p>\n`;
  }
  for (const message of page.messages) {
    yield renderMessage(message, base, canDelete);
  }
  yield `${
    links.length > 0 ? `<nav class="pages">${links.join(" ")}</nav>\n` : ""
  }</section>
${renderModeration(moderation, base)}</main>
</body>
</html>
`;
}

/** The frame of the small pages (errors, sign-in, confirmation). */
function renderSmallPage(title: string, body: string, base: string): string {
  return `<!doctype html>
<html lang="en">
<head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${escapeHtml(title)} - Tiny Message Board</title>
<link rel="stylesheet" href="${base}/style.css"></head>
<body><main>
${body}
<p><a href="${base}/">Back to the board</a></p>
</main></body>
</html>
`;
}

/** A simple page for errors outside the board form (404, 403...). */
function renderErrorPage(status: number, message: string, base = ""): string {
  return renderSmallPage(
    String(status),
    `<h1>${status}</h1><p>${escapeHtml(message)}</p>`,
    base,
  );
}

/** The moderator's sign-in form (GET /admin), with an error after a wrong token. */
export function renderSignIn(base = "", error?: string): string {
  const errorBlock = error === undefined
    ? ""
    : `<p class="error" role="alert">${escapeHtml(error)}</p>\n`;
  return renderSmallPage(
    "Moderator sign-in",
    `<h1>Moderator sign-in</h1>
${errorBlock}<form method="post" action="${base}/admin">
<label for="token">Admin token <small>(given to the board with --admin-token)</small></label>
<input id="token" name="token" type="password" autocomplete="current-password" required>
<button type="submit">Sign in</button>
</form>`,
    base,
  );
}

/** The confirmation step before an admin clears the board (GET /admin/clear). */
function renderClearConfirmation(base: string): string {
  return renderSmallPage(
    "Clear the board?",
    `<h1>Clear the board?</h1>
<p>This moves every message on the board into an archive file on the server. Nothing
is deleted, and "Restore the last cleared messages" puts them back.</p>
<form method="post" action="${base}/">
<input type="hidden" name="confirm" value="yes">
<button type="submit" name="clear" value="1">Yes, clear the board</button>
</form>`,
    base,
  );
}

/** Served at /style.css, so the CSP can forbid inline styles and scripts alike. */
const STYLESHEET =
  `:root { color-scheme: light dark; --accent: #2f6f4e; --muted: #666; --line: #ccc; }
* { box-sizing: border-box; }
body { margin: 0; font: 1rem/1.5 system-ui, sans-serif; background: Canvas; color: CanvasText; }
main { max-width: 42rem; margin: 0 auto; padding: 1.5rem 1rem 3rem; }
h1 { margin: 0 0 1rem; font-size: 1.8rem; }
h2 { font-size: 1.2rem; margin: 2rem 0 0.75rem; }
label { display: block; margin: 0.75rem 0 0.25rem; font-weight: 600; }
label small { font-weight: normal; color: var(--muted); }
input, textarea { width: 100%; padding: 0.5rem; font: inherit; border: 1px solid var(--line); border-radius: 6px; }
textarea { resize: vertical; }
button { margin-top: 0.75rem; padding: 0.5rem 1.1rem; font: inherit; border: 0; border-radius: 6px; background: var(--accent); color: #fff; cursor: pointer; }
.clear button { background: #8a2c2c; }
.clear button.quiet, .delete button { background: transparent; color: inherit; border: 1px solid var(--line); }
.delete button { margin-top: 0.25rem; padding: 0.1rem 0.6rem; font-size: 0.85rem; }
.clear p { color: var(--muted); font-size: 0.9rem; }
.notice { padding: 0.5rem 0.75rem; border-left: 4px solid var(--muted); }
.error { padding: 0.5rem 0.75rem; border-left: 4px solid #b3261e; background: rgba(179, 38, 30, 0.1); }
.message { padding: 0.75rem 0; border-top: 1px solid var(--line); }
.meta { margin: 0; color: var(--muted); font-size: 0.85rem; overflow-wrap: anywhere; }
.name { font-weight: 600; }
/* pre-wrap keeps the poster's line breaks; isolate keeps right-to-left
   override characters from spilling into the rest of the page. */
.text { margin: 0.25rem 0 0; white-space: pre-wrap; overflow-wrap: anywhere; unicode-bidi: isolate; }
.empty { color: var(--muted); }
.pages { display: flex; gap: 1rem; justify-content: space-between; padding-top: 0.75rem; border-top: 1px solid var(--line); }
`;

/**
 * Served at /board.js: live updates for the first page, and times in the reader's own
 * zone. Loaded with `defer` from the page, so the CSP allows our own script file and
 * still no inline script. Without it (or without JavaScript) the page works as before,
 * times in UTC. It builds each message with textContent, never innerHTML, so message text
 * stays text. Addresses come from the page's data attributes, so a board mounted under a
 * base path needs no change here.
 */
const BROWSER_SCRIPT =
  `// Tiny Message Board: shows new messages as they are posted, without a reload.
"use strict";
for (const time of document.querySelectorAll("time[datetime]")) showLocalTime(time);

const section = document.querySelector("section.messages[data-after]");
if (section !== null && "EventSource" in window) {
  // On reconnection the browser sends Last-Event-ID itself, which the server prefers.
  const source = new EventSource(section.dataset.events + "?after=" + encodeURIComponent(section.dataset.after));
  source.addEventListener("message", (event) => showMessage(JSON.parse(event.data)));
  source.addEventListener("clear", showCleared);
  source.addEventListener("delete", (event) => removeMessage(JSON.parse(event.data).id));
  source.addEventListener("restore", () => location.reload());
  source.addEventListener("reload", () => location.reload());
  // A form sent leaves this page: a reload from the stream must not cut that navigation off.
  document.addEventListener("submit", () => source.close());
}

function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

// Same markup as renderMessage on the server; newest first, right under the heading.
function showMessage(message) {
  if (document.getElementById("m" + message.id) !== null) return;
  const article = element("article", "message");
  article.id = "m" + message.id;
  const meta = element("p", "meta", "Posted: ");
  const time = element("time", "");
  time.dateTime = message.postedAt;
  showLocalTime(time);
  meta.append(time);
  if (message.name !== undefined) meta.append(" by ", element("span", "name", message.name));
  article.append(meta, element("p", "text", message.text));
  if (section.dataset.delete !== undefined) article.append(deleteForm(message.id));
  section.querySelector("p.empty")?.remove();
  section.querySelector("h2").after(article);
}

// Same form as renderDeleteForm on the server, for a moderator's page.
function deleteForm(id) {
  const form = element("form", "delete");
  form.method = "post";
  form.action = section.dataset.delete;
  const input = element("input");
  input.type = "hidden";
  input.name = "id";
  input.value = String(id);
  const button = element("button", "", "Delete");
  button.type = "submit";
  button.setAttribute("aria-label", "Delete message " + id);
  form.append(input, button);
  return form;
}

function removeMessage(id) {
  document.getElementById("m" + id)?.remove();
  showEmptyIfNone();
}

function showCleared() {
  for (const message of section.querySelectorAll("article.message")) message.remove();
  section.querySelector("nav.pages")?.remove();
  showEmptyIfNone();
}

function showEmptyIfNone() {
  if (section.querySelector("article.message, p.empty, nav.pages") === null) {
    section.querySelector("h2").after(element("p", "empty", "No messages yet."));
  }
}

// "2026-11-21T22:44:51.000Z" in the reader's time zone and language; UTC stays in the title.
function showLocalTime(time) {
  const date = new Date(time.dateTime);
  if (Number.isNaN(date.getTime())) return;
  time.textContent = date.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "medium" });
  time.title = time.dateTime.slice(0, 10) + " " + time.dateTime.slice(11, 19) + " UTC";
}
`;

// ===========================================================================
// Part 5. Running it: the board, and the command line.
// Teaches: openBoard ties a store to the handler; the command line parses flags
// into options, listens, and shuts down gracefully.
// ===========================================================================

// ---------------------------------------------------------------------------
// The board: store + handler.
// ---------------------------------------------------------------------------

/** Options for {@linkcode openBoard}. */
export interface BoardOptions
  extends BoardHandlerOptions, JsonLinesStoreOptions {
  /** The JSON Lines data file; its folder is created when missing. @default "./data/messages.jsonl" */
  dataFile?: string | undefined;
  /**
   * A store opened elsewhere, used instead of `dataFile` (board_postgres.ts passes its
   * PostgreSQL store); the board closes it in `close()`.
   * @default undefined (the JSON Lines store on `dataFile`)
   */
  store?: MessageStore | undefined;
}

/** An open board: hand `handler` to `Deno.serve`, call `close()` when done. */
export interface Board {
  /** Answers every request; give it to `Deno.serve`. */
  handler: BoardHandler;
  /** The store underneath, for tests and tools. */
  store: MessageStore;
  /** Ends every open event stream; call it before `server.shutdown()`, which waits for them. */
  endEventStreams(): void;
  /** Ends the event streams, waits for accepted writes, then closes the store. */
  close(): Promise<void>;
}

/**
 * Opens the board on its data file (or on the `store` given).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { openBoard } from "./message_board.ts";
 * const dir = await Deno.makeTempDir();
 * const board = await openBoard({ dataFile: `${dir}/messages.jsonl` });
 * const server = Deno.serve(
 *   { hostname: "127.0.0.1", port: 0, onListen() {} },
 *   board.handler,
 * );
 * const response = await fetch(`http://127.0.0.1:${server.addr.port}/`);
 * await response.body?.cancel();
 * assert.equal(response.status, 200);
 * await server.shutdown();
 * await board.close();
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export async function openBoard(options: BoardOptions = {}): Promise<Board> {
  const { dataFile = "./data/messages.jsonl", log } = options;
  const store = options.store ??
    await openJsonLinesStore(dataFile, {
      log,
      writeTimeoutMs: options.writeTimeoutMs,
    });
  const streams = new AbortController();
  const signal = options.signal
    ? AbortSignal.any([options.signal, streams.signal])
    : streams.signal;
  return {
    handler: createBoardHandler(store, { ...options, signal }),
    store,
    endEventStreams: () => streams.abort(),
    async close() {
      streams.abort();
      await store.close();
    },
  };
}

// ---------------------------------------------------------------------------
// Command line: parseCommandLine reads the flags, startServer runs the board,
// main() (and board_postgres.ts's) only joins the two and says what went wrong.
// ---------------------------------------------------------------------------

/** The PostgreSQL mode's permission flags, for the usage text and error lines. */
const POSTGRES_COMMAND =
  "deno run --allow-net=127.0.0.1 --allow-env=DATABASE_URL,PG* board_postgres.ts --store postgres://user@127.0.0.1:5432/board";

/** Shortest admin token the command line accepts: a short one is guessed too easily. */
export const MIN_ADMIN_TOKEN_CHARS = 12;

/**
 * This script's version, the same in server_tiny.ts and server_files.ts:
 * the date of the deno-servers release it comes from (`--version` prints it),
 * so that a copy pasted into another project can be told apart.
 */
export const VERSION = "2026.12.2";

const USAGE =
  `Usage: deno run --allow-net=127.0.0.1 --allow-read=./data --allow-write=./data message_board.ts [options]

The Tiny Message Board: a page where anyone can leave a short message, kept in a JSON Lines file.

PostgreSQL mode (several processes serve one board; board_postgres.ts takes the
same options):
  ${POSTGRES_COMMAND}

Options:
  --data FILE         JSON Lines data file (default ./data/messages.jsonl)
  --store URL         board_postgres.ts only: the PostgreSQL database
                      (postgres://...; or set DATABASE_URL)
  --port N            port to listen on; 0 picks a free one (default 8080)
  --hostname HOST     address to listen on (default 127.0.0.1, this machine
                      only); 0.0.0.0, every address, needs --allow-net=0.0.0.0,
                      and --allow-sys=networkInterfaces to answer to this
                      machine's addresses
  --unix PATH         listen on a Unix domain socket instead of a port, for a
                      proxy on this machine (plain HTTP; it replaces --port and
                      --hostname; the proxy's site name goes in --allowed-host).
                      Needs --allow-read=PATH --allow-write=PATH
                      --allow-net=unix:/ABSOLUTE/PATH; a socket file left by a
                      killed run is replaced, any other file refused
  --unix-mode MODE    the socket file's mode, in octal (660: the proxy's group
                      may connect; default: what the umask gives, 755 with the
                      usual 022)
  --trust-proxy [LIST]
                      the proxies in front: addresses and CIDR ranges,
                      comma-separated (alone: loopback, 127.0.0.0/8 and ::1; a
                      --unix peer always). From them the client is the rightmost
                      X-Forwarded-For hop that is none of them, for the limits
                      and the log, and the scheme is X-Forwarded-Proto; any
                      other peer's headers are ignored
  --allowed-host NAME also answer to this host name (repeatable; .example.com
                      allows its subdomains); by default only localhost,
                      127.0.0.1, [::1] and the names and addresses it listens on
                      (any other Host gets 421)
  --base-path PATH    serve the board under PATH (/board: its page at /board/,
                      every link, form and API address below it), for a proxy
                      that passes that prefix on
  --admin-token TOKEN moderators sign in at /admin with this token (at least ${MIN_ADMIN_TOKEN_CHARS}
                      characters) to clear, delete and restore; or set
                      BOARD_ADMIN_TOKEN (with --allow-env=BOARD_ADMIN_TOKEN).
                      Without one, only visitors on this machine may clear
  --cert FILE         TLS certificate (PEM), with --key, to serve HTTPS (needs
                      --allow-read for both files)
  --key FILE          TLS private key (PEM)
  --quiet             no access log
  --log-format FMT    the access log's lines: clf (default, the Common Log
                      Format), combined (clf and the Referer and User-Agent, as
                      nginx's default) or json (one object per line: time,
                      remote_addr, method, target, status, bytes, duration_ms;
                      written once the answer is sent)
  --rate-limit off    no per-client limits (${POST_BURST} posts at once then one per ${
    POST_REFILL_MS / 1000
  } s, ${MAX_STREAMS_PER_CLIENT}
                      live streams), for benchmarks and load tests
  -V, --version       print the version and exit
  -h, --help          show this help`;

/** A command line that cannot be used; `main` prints its message in one line and exits 2. */
export class CommandLineError extends Error {
  /** Always "CommandLineError". */
  override name = "CommandLineError";
}

/** What {@linkcode parseCommandLine} found on the command line, as {@linkcode startServer} takes it. */
export interface CommandLineOptions {
  /** --data; undefined when not given (the default file then). */
  dataFile?: string | undefined;
  /** --store: a PostgreSQL URL, for board_postgres.ts. */
  databaseUrl?: string | undefined;
  /** --port (0 picks a free one). */
  port: number;
  /** --hostname. */
  hostname: string;
  /** --unix: a Unix domain socket's path, instead of hostname and port. */
  unixPath?: string | undefined;
  /** --unix-mode: the socket file's mode. */
  unixMode?: number | undefined;
  /** --cert: a PEM file path. */
  cert?: string | undefined;
  /** --key: a PEM file path. */
  key?: string | undefined;
  /** --quiet: no access log. */
  quiet: boolean;
  /** --log-format: clf or json. */
  logFormat: "clf" | "combined" | "json";
  /** --help. */
  help: boolean;
  /** --version. */
  version: boolean;
  /** --allowed-host, each time it is given. */
  allowedHosts: string[];
  /** --admin-token. */
  adminToken?: string | undefined;
  /** --base-path: where the board is mounted (`/board`); absent without it. */
  basePath?: string;
  /** --trust-proxy: the proxies' addresses and ranges (`loopback` when given alone); false without it. */
  trustProxy: false | string[];
  /** False for --rate-limit off. */
  rateLimit: boolean;
}

const FLAGS = {
  data: { type: "string" },
  store: { type: "string" },
  port: { type: "string" }, // 8080, unless --unix
  hostname: { type: "string" }, // 127.0.0.1, unless --unix
  unix: { type: "string" },
  "unix-mode": { type: "string" },
  cert: { type: "string" },
  key: { type: "string" },
  quiet: { type: "boolean", default: false },
  "log-format": { type: "string", default: "clf" },
  help: { type: "boolean", short: "h", default: false },
  version: { type: "boolean", short: "V", default: false },
  "allowed-host": { type: "string", multiple: true, default: [] },
  "admin-token": { type: "string" },
  "trust-proxy": { type: "string", multiple: true, default: [] },
  "base-path": { type: "string" },
  "rate-limit": { type: "string", default: "on" },
} satisfies ParseArgsOptionsConfig;

/**
 * Parses the board's command line; throws {@linkcode CommandLineError} with a
 * one-line message for anything it cannot run with.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { CommandLineError, parseCommandLine } from "./message_board.ts";
 * const commandLine = parseCommandLine(["--port", "0", "--quiet"]);
 * assert.equal(commandLine.port, 0);
 * assert.equal(commandLine.hostname, "127.0.0.1");
 * assert.equal(commandLine.quiet, true);
 * assert.throws(() => parseCommandLine(["--port", "x"]), CommandLineError);
 * ```
 */
export function parseCommandLine(args: string[]): CommandLineOptions {
  const values = readFlags(withBareTrustProxy(args), FLAGS);
  const port = parsePort(values.port ?? "8080");
  if ((values.cert === undefined) !== (values.key === undefined)) {
    throw new CommandLineError("--cert and --key go together");
  }
  if (values.unix !== undefined) checkUnixFlags(values);
  const unixMode = parseUnixMode(values["unix-mode"], values.unix);
  const logFormat = parseLogFormat(values["log-format"]);
  if (values.store !== undefined && !/^postgres(ql)?:\/\//.test(values.store)) {
    throw new CommandLineError("--store takes a postgres:// URL");
  }
  if (values["rate-limit"] !== "on" && values["rate-limit"] !== "off") {
    throw new CommandLineError(
      `--rate-limit takes on or off, got ${showArg(values["rate-limit"])}`,
    );
  }
  for (const name of values["allowed-host"]) {
    const entry = normalizeAllowedHost(name);
    if (!/^(\.?[a-z0-9_-]+(\.[a-z0-9_-]+)*|\[[0-9a-f:.]+\])$/.test(entry)) {
      throw new CommandLineError(
        `--allowed-host takes a host name, got ${showArg(name)}`,
      );
    }
  }
  const adminToken = values["admin-token"];
  if (adminToken !== undefined) checkAdminToken(adminToken, "--admin-token");
  const basePath = values["base-path"];
  if (basePath !== undefined) {
    try {
      normalizeBasePath(basePath);
    } catch {
      throw new CommandLineError(
        `--base-path takes a path such as /board, got ${showArg(basePath)}`,
      );
    }
  }
  return {
    dataFile: values.data,
    databaseUrl: values.store,
    port,
    hostname: values.hostname ?? "127.0.0.1",
    unixPath: values.unix,
    unixMode,
    cert: values.cert,
    key: values.key,
    quiet: values.quiet,
    logFormat,
    help: values.help,
    version: values.version,
    allowedHosts: values["allowed-host"],
    adminToken,
    trustProxy: parseTrustProxy(values["trust-proxy"]),
    ...(basePath === undefined ? {} : { basePath }),
    rateLimit: values["rate-limit"] === "on",
  };
}

/**
 * `--trust-proxy` given without a list (last, or before another flag or a
 * word that is no list of addresses, such as a folder) means a proxy on this
 * machine: `--trust-proxy=loopback`. A list has a `.` or `:` and only the
 * characters of addresses and ranges, or says loopback: `--trust-proxy
 * ./public` trusts loopback and serves ./public, while a mistyped
 * `--trust-proxy 10.0.0.0/33` is refused as a list. Words after `--` are left
 * alone. The same function is in server_files.ts.
 */
function withBareTrustProxy(args: string[]): string[] {
  const end = args.indexOf("--");
  const isList = (word: string | undefined) =>
    word !== undefined &&
    (/^(?=.*[.:])[0-9a-fA-F.:,/[\]]+$/.test(word) || word.includes("loopback"));
  return args.map((arg, i) =>
    arg === "--trust-proxy" && (end === -1 || i < end) && !isList(args[i + 1])
      ? "--trust-proxy=loopback"
      : arg
  );
}

/**
 * Reads the `--trust-proxy` lists (`10.0.0.1,10.0.0.2`, each time the flag is
 * given): false when it was not given. The same check is in server_files.ts.
 */
function parseTrustProxy(lists: string[]): false | string[] {
  if (lists.length === 0) return false;
  const entries = lists.flatMap((list) => list.split(",")).map((entry) =>
    entry.trim()
  );
  const bad = entries.find((entry) => {
    try {
      trustedProxies([entry]);
      return false;
    } catch {
      return true;
    }
  });
  if (bad !== undefined) {
    throw new CommandLineError(
      `--trust-proxy takes addresses and CIDR ranges (127.0.0.1,10.0.0.0/8) or loopback, got ${
        showArg(bad)
      }`,
    );
  }
  return entries;
}

/** Reads `--log-format`: clf, combined or json. The same check is in server_tiny.ts and server_files.ts. */
function parseLogFormat(value: string): "clf" | "combined" | "json" {
  if (value === "clf" || value === "combined" || value === "json") return value;
  throw new CommandLineError(
    `--log-format takes clf, combined or json, got ${showArg(value)}`,
  );
}

/**
 * The two fields nginx's `combined` format adds to the Common Log Format line
 * (`--log-format combined`): ` "referer" "user-agent"`, each escaped as the
 * request line is, `-` for a header not sent. The same function is in the
 * other two scripts.
 */
function combinedFields(referer: string | null, userAgent: string | null) {
  const field = (value: string | null) =>
    value === null ? "-" : escapeForLog(value);
  return ` "${field(referer)}" "${field(userAgent)}"`;
}

/**
 * Reads `--unix-mode`: an octal file mode (`660`, `0660` or `0o660`) for the
 * socket, only with `--unix`. The same check is in server_files.ts.
 */
function parseUnixMode(
  value: string | undefined,
  unix: string | undefined,
): number | undefined {
  if (value === undefined) return undefined;
  if (unix === undefined) {
    throw new CommandLineError("--unix-mode goes with --unix PATH");
  }
  const digits = /^(?:0o?)?([0-7]{3})$/.exec(value)?.[1];
  if (digits === undefined) {
    throw new CommandLineError(
      `--unix-mode takes an octal file mode such as 660, got ${showArg(value)}`,
    );
  }
  return parseInt(digits, 8);
}

/** Refuses what cannot go with `--unix`: another place to listen, or TLS. */
function checkUnixFlags(
  values: { unix?: string; port?: string; hostname?: string; cert?: string },
): void {
  if (values.unix === "") throw new CommandLineError("--unix needs a path");
  const other = values.port !== undefined
    ? "--port"
    : values.hostname !== undefined
    ? "--hostname"
    : null;
  if (other !== null) {
    throw new CommandLineError(
      `--unix and ${other} are two places to listen: give one`,
    );
  }
  if (values.cert !== undefined) {
    // Deno.serve has TLS on TCP only; the proxy in front speaks TLS.
    throw new CommandLineError("--cert and --key are for TCP, not --unix");
  }
}

/**
 * `parseArgs`'s values, with each mistake thrown as a {@linkcode CommandLineError}
 * in one line of our own (its own messages can run over several lines).
 */
function readFlags<T extends ParseArgsOptionsConfig>(args: string[], flags: T) {
  try {
    return parseArgs({ args, options: flags, strict: true }).values;
  } catch {
    throw new CommandLineError(describeFlagMistake(args, flags));
  }
}

/** The first mistake in `args`: an unknown flag, a missing or unwanted value, a stray word. */
function describeFlagMistake(
  args: string[],
  flags: ParseArgsOptionsConfig,
): string {
  const { tokens } = parseArgs({
    args,
    options: flags,
    strict: false,
    allowPositionals: true,
    tokens: true,
  });
  for (const token of tokens) {
    if (token.kind === "positional") {
      return `unexpected argument ${
        showArg(token.value)
      } (flags start with --)`;
    }
    if (token.kind !== "option") continue;
    const flag = showArg(token.rawName);
    const spec = Object.hasOwn(flags, token.name) ? flags[token.name]! : null;
    if (spec === null) return `unknown flag ${flag}`;
    if (spec.type === "boolean" && token.value !== undefined) {
      return `${flag} takes no value`;
    }
    if (spec.type === "string" && token.value === undefined) {
      return `${flag} needs a value`;
    }
    if (
      spec.type === "string" && !token.inlineValue && token.value?.[0] === "-"
    ) {
      return `${flag} needs a value (write ${flag}=${
        showArg(token.value)
      } for one that starts with -)`;
    }
  }
  return "the command line cannot be read";
}

/**
 * Reads `--port`: a whole number from 0 (any free port) to 65535. The same
 * check, with the same message, is in server_tiny.ts and server_files.ts.
 */
function parsePort(value: string): number {
  const port = Number(value);
  if (!/^\d{1,5}$/.test(value) || port > 65535) {
    throw new CommandLineError(
      `--port must be a number from 0 to 65535, got ${showArg(value)}`,
    );
  }
  return port;
}

/** A word from the command line for a message: as it is when plain, else quoted and escaped. */
function showArg(text: string): string {
  return /^[\x21\x23-\x5b\x5d-\x7e]+$/.test(text)
    ? text
    : `"${escapeForLog(text)}"`;
}

const MONTHS = "Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec".split(" ");

/** One request, as {@linkcode formatAccessLog} writes it. */
export interface AccessLogEntry {
  /** The client's address; null (written `-`) when unknown. */
  client: string | null;
  /** When the request arrived. */
  date: Date;
  /** The request line, `GET /a HTTP/1.1`; null (written `-`) when none arrived. */
  requestLine: string | null;
  /** The response's status code. */
  status: number;
  /** Bytes of body sent; 0 or null is written `-`. */
  bodyBytes: number | null;
  /**
   * With these two, the line is nginx's `combined` format: the Referer and
   * the User-Agent after the size, null written `-`. Without, the Common Log
   * Format.
   */
  referer?: string | null | undefined;
  /** See `referer`. */
  userAgent?: string | null | undefined;
}

/**
 * One access-log line in the Common Log Format of Apache and nginx. The
 * request line is written as nginx writes it: printable ASCII as it is, `"`,
 * `\` and every other character as `\xNN` (`\u{NNNN}` above U+00FF), so a
 * request can neither end the line, forge another, nor send a terminal escape
 * codes. The same function, with the same output, is in server_tiny.ts and
 * server_files.ts.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { formatAccessLog } from "./message_board.ts";
 * assert.equal(
 *   formatAccessLog({ client: "127.0.0.1", date: new Date(0), requestLine: "GET / HTTP/1.1", status: 200, bodyBytes: 512 }),
 *   '127.0.0.1 - - [01/Jan/1970:00:00:00 +0000] "GET / HTTP/1.1" 200 512',
 * );
 * ```
 */
export function formatAccessLog(entry: AccessLogEntry): string {
  const { client, date, requestLine, status, bodyBytes } = entry;
  const pad = (n: number) => String(n).padStart(2, "0");
  const time =
    `${pad(date.getUTCDate())}/${
      MONTHS[date.getUTCMonth()]
    }/${date.getUTCFullYear()}:` +
    `${pad(date.getUTCHours())}:${pad(date.getUTCMinutes())}:${
      pad(date.getUTCSeconds())
    } +0000`;
  const request = requestLine === null ? "-" : escapeForLog(requestLine);
  const line = `${client ?? "-"} - - [${time}] "${request}" ${status} ${
    bodyBytes ? bodyBytes : "-"
  }`;
  return entry.referer === undefined && entry.userAgent === undefined
    ? line
    : line + combinedFields(entry.referer ?? null, entry.userAgent ?? null);
}

/** One request, as {@linkcode formatJsonAccessLog} writes it. */
export interface JsonAccessLogEntry {
  /** When the request arrived. */
  date: Date;
  /** The client's address; null when unknown (a Unix socket). */
  client: string | null;
  /** The request's method; null when none could be read. */
  method: string | null;
  /** The request target as received (`/a?b=1`); null when none could be read. */
  target: string | null;
  /** The response's status code. */
  status: number;
  /** Bytes of body sent, when known (Content-Length); else null. */
  bodyBytes: number | null;
  /** Milliseconds from the request's arrival until its answer was sent. */
  durationMs: number;
}

/**
 * One access-log line as a JSON object, for log collectors (`--log-format
 * json`): `time` (ISO 8601, UTC), `remote_addr`, `method`, `target`,
 * `status`, `bytes` and `duration_ms`, always in that order. Every character
 * that is not printable ASCII is written `\uXXXX`, including those that
 * JSON.stringify leaves as they are (DEL, C1 controls, U+2028), so a request
 * can neither end the line, forge another, nor send a terminal escape codes,
 * and a line is ASCII. The same function, with the same output, is in
 * server_tiny.ts and server_files.ts.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { formatJsonAccessLog } from "./message_board.ts";
 * assert.equal(
 *   formatJsonAccessLog({ date: new Date(0), client: "127.0.0.1", method: "GET", target: "/a", status: 200, bodyBytes: 12, durationMs: 0.25 }),
 *   '{"time":"1970-01-01T00:00:00.000Z","remote_addr":"127.0.0.1","method":"GET","target":"/a","status":200,"bytes":12,"duration_ms":0.25}',
 * );
 * ```
 */
export function formatJsonAccessLog(entry: JsonAccessLogEntry): string {
  return JSON.stringify({
    time: entry.date.toISOString(),
    remote_addr: entry.client,
    method: entry.method,
    target: entry.target,
    status: entry.status,
    bytes: entry.bodyBytes,
    duration_ms: Math.round(entry.durationMs * 1000) / 1000,
  }).replace(
    /[^\x20-\x7e]/g,
    (char) => `\\u${char.charCodeAt(0).toString(16).padStart(4, "0")}`,
  );
}

/** Printable ASCII but `"` and `\`: what a log line shows as it is. */
const LOG_PLAIN = /^[\x20\x21\x23-\x5b\x5d-\x7e]*$/;
const LOG_ESCAPED = /[^\x20\x21\x23-\x5b\x5d-\x7e]/gu;

/** Text for a log line, escaped as {@linkcode formatAccessLog} says. */
function escapeForLog(text: string): string {
  if (LOG_PLAIN.test(text)) return text;
  return text.replace(LOG_ESCAPED, (char) => {
    const code = char.codePointAt(0)!;
    const digits = code.toString(16);
    return code < 0x100
      ? `\\x${digits.padStart(2, "0")}`
      : `\\u{${digits.padStart(4, "0")}}`;
  });
}

/**
 * The request line for the access log. `Deno.serve` does not tell the
 * protocol version, so it says HTTP/1.1.
 */
function requestLineOf(request: Request): string {
  return `${request.method} ${logTargetOf(request)} HTTP/1.1`;
}

/**
 * The request target for the access log, taken from the URL's text, which
 * holds even when its Host part does not parse (`[zz`).
 */
function logTargetOf(request: Request): string {
  const url = request.url;
  const start = url.indexOf("/", url.indexOf("//") + 2);
  return start < 0 ? "/" : url.slice(start);
}

function checkAdminToken(token: string, where: string): void {
  if (isLongerThan(token, MIN_ADMIN_TOKEN_CHARS - 1)) return;
  throw new CommandLineError(
    `${where} must be at least ${MIN_ADMIN_TOKEN_CHARS} characters (a short token is easy to guess)`,
  );
}

/**
 * The names the board answers to because it listens there: the --hostname itself (so the
 * printed `http://0.0.0.0:8080/` opens the board), and for 0.0.0.0 / :: this machine's
 * addresses too (Deno.networkInterfaces, which needs --allow-sys=networkInterfaces;
 * without it, `log` says how to name them instead).
 */
function listeningNames(
  hostname: string,
  log: (line: string) => void,
): string[] {
  if (hostname !== "0.0.0.0" && hostname !== "::" && hostname !== "") {
    return [hostname];
  }
  const names = hostname === "" ? [] : [hostname];
  try {
    return [
      ...names,
      ...Deno.networkInterfaces().map((entry) => entry.address),
    ];
  } catch (error) {
    if (!(error instanceof Deno.errors.NotCapable)) throw error;
    log(
      "Note: without --allow-sys=networkInterfaces this board answers only to localhost " +
        "and --allowed-host names, not to this machine's addresses.",
    );
    return names;
  }
}

/**
 * Answers `request` with `handler` and logs its JSON line once the answer has
 * been sent (`info.completed`: the whole body, as nginx's `$request_time`; a
 * live event stream is logged when it ends), or at once without a connection.
 */
async function logJsonWhenSent(
  handler: BoardHandler,
  request: Request,
  info: Deno.ServeHandlerInfo | undefined,
  client: string | null,
): Promise<Response> {
  const date = new Date();
  const startedAt = performance.now();
  // Read now: once the answer is sent, the request's parts throw "Request closed".
  const method = request.method;
  const target = logTargetOf(request);
  const response = await handler(request, info);
  const length = method === "HEAD"
    ? null
    : response.headers.get("content-length");
  const entry = {
    date,
    client,
    method,
    target,
    status: response.status,
    bodyBytes: length === null ? null : Number(length),
  };
  const write = () =>
    console.log(formatJsonAccessLog({
      ...entry,
      durationMs: performance.now() - startedAt,
    }));
  // A connection that breaks mid-way rejects it: the line is still written.
  if (info?.completed === undefined) write();
  else info.completed.then(write, write);
  return response;
}

/** First wait before listening again after an accept failure (out of file descriptors). */
const ACCEPT_RETRY_FIRST_MS = 100;
/** Longest wait between two tries to listen again. */
const ACCEPT_RETRY_MAX_MS = 1_000;
/** For this long after accepting fails, answers say `Connection: close`. */
const ACCEPT_PRESSURE_MS = 10_000;
/**
 * On Ctrl-C or SIGTERM, how long requests in flight get before the board stops
 * waiting for them and closes the store: a client that never sends the body it
 * announced, or never reads a page or its event stream, would otherwise hold
 * the shutdown for ever. Posts already accepted are written and synced first, for
 * WRITE_TIMEOUT_MS more at most (a frozen disk never finishes one): a SIGTERM ends
 * within 15 s, and never loses an acknowledged post.
 */
export const SHUTDOWN_GRACE_MS = 5_000;

/** Options for {@linkcode startServer}: a parsed command line, or the same fields by hand. */
export interface ServerOptions extends BoardOptions {
  /** Port to listen on; 0 picks a free one. @default 8080 */
  port?: number;
  /** Address to bind. @default "127.0.0.1" */
  hostname?: string;
  /**
   * A Unix domain socket to listen on instead of `hostname` and `port`; a
   * socket file there that no server accepts on (a killed run's) is
   * replaced, any other file refused. @default undefined (TCP)
   */
  unixPath?: string | undefined;
  /**
   * The Unix socket file's mode (`0o660`: the proxy's group may connect).
   * @default undefined (what the umask gives: `0o755` with the usual 022)
   */
  unixMode?: number | undefined;
  /** TLS certificate and key files (PEM), to serve HTTPS. @default undefined (HTTP) */
  cert?: string | undefined;
  /** See `cert`. */
  key?: string | undefined;
  /** No access log. @default false */
  quiet?: boolean;
  /**
   * The access log's format: `"clf"` ({@linkcode formatAccessLog}) or
   * `"json"` ({@linkcode formatJsonAccessLog}, written once the answer is sent).
   * @default "clf"
   */
  logFormat?: "clf" | "combined" | "json" | undefined;
  /**
   * Opens the store, after the TLS files are read (board_postgres.ts gives its own).
   * @default undefined (`store`, or the JSON Lines store on `dataFile`)
   */
  openStore?: () => Promise<MessageStore>;
  /** What the start-up line says the storage is. @default "data: <dataFile>" */
  storeLabel?: string;
  /** How long `shutdown()` waits for requests in flight. @default SHUTDOWN_GRACE_MS (5 s) */
  shutdownGraceMs?: number;
}

/** A running board server. */
export interface BoardServer<Addr extends Deno.Addr = Deno.NetAddr> {
  /** The address it listens on (the real port when 0 was asked for). */
  addr: Addr;
  /** The board it serves. */
  board: Board;
  /**
   * Ends the event streams, stops accepting, lets answers in flight finish (for
   * `shutdownGraceMs` at most), then writes and syncs the accepted posts and closes the store.
   */
  shutdown(): Promise<void>;
  /** Resolves once shut down. */
  finished: Promise<void>;
}

/**
 * Opens the board and serves it with `Deno.serve`, printing its real address
 * (`Tiny Message Board on http://127.0.0.1:8080/ (data: ./data/messages.jsonl)`).
 * Throws {@linkcode StartupError} (or a Deno error, such as AddrInUse) when it
 * cannot start; a `store` given is closed then.
 */
export function startServer(
  options: ServerOptions & { unixPath: string },
): Promise<BoardServer<Deno.UnixAddr>>;
/** {@linkcode startServer} on TCP: `addr` has the real port. */
export function startServer(
  options?: ServerOptions & { unixPath?: undefined },
): Promise<BoardServer>;
/** {@linkcode startServer} on TCP, or on a Unix socket with `unixPath`. */
export function startServer(
  options?: ServerOptions,
): Promise<BoardServer<Deno.NetAddr | Deno.UnixAddr>>;
export async function startServer(
  options: ServerOptions = {},
): Promise<BoardServer<Deno.NetAddr | Deno.UnixAddr>> {
  const {
    port = 8080,
    hostname = "127.0.0.1",
    unixPath,
    cert,
    key,
    quiet = false,
    dataFile = "./data/messages.jsonl",
    storeLabel = `data: ${dataFile}`,
    shutdownGraceMs = SHUTDOWN_GRACE_MS,
  } = options;
  let tls: { cert: string; key: string } | undefined;
  try {
    if (cert !== undefined && key !== undefined) {
      tls = {
        cert: await Deno.readTextFile(cert),
        key: await Deno.readTextFile(key),
      };
    }
  } catch (error) {
    await options.store?.close();
    throw error;
  }
  const store = options.store ?? await options.openStore?.();
  // Notes come after the address line, once the board listens: a start that
  // fails (no permission for 0.0.0.0) then prints only why.
  const notes: string[] = [];
  const allowedHosts = [
    ...(options.allowedHosts ?? []),
    ...(unixPath === undefined
      ? listeningNames(hostname, (line) => notes.push(line))
      : []),
  ];
  if (unixPath !== undefined && !options.trustProxy) {
    notes.push(
      "On --unix without --trust-proxy the board cannot tell visitors apart: they share " +
        "one post allowance; give --trust-proxy so the proxy's X-Forwarded-For names each.",
    );
  }
  const board = await openBoard({ ...options, dataFile, store, allowedHosts });
  // Where the start-up line sends a browser: the board's own page.
  const base = normalizeBasePath(options.basePath ?? "");
  // The log names the client the limits count: behind a trusted proxy, the one it forwarded.
  const trustProxy = options.trustProxy ?? false;
  const trusted = trustedProxies(trustProxy);
  const clientOf = (request: Request, info?: Deno.ServeHandlerInfo) =>
    forwardedClient(request, info, trustProxy, trusted);
  const handler: BoardHandler = quiet
    ? board.handler
    : options.logFormat === "json"
    ? (request, info) =>
      logJsonWhenSent(board.handler, request, info, clientOf(request, info))
    : async (request, info) => {
      const date = new Date();
      const client = clientOf(request, info);
      const combined = options.logFormat === "combined"
        ? {
          referer: request.headers.get("referer"),
          userAgent: request.headers.get("user-agent"),
        }
        : {};
      const response = await board.handler(request, info);
      // Content-Length when the board set it (streams and pages may not).
      const length = request.method === "HEAD"
        ? null
        : response.headers.get("content-length");
      console.log(formatAccessLog({
        client,
        date,
        requestLine: requestLineOf(request),
        status: response.status,
        bodyBytes: length === null ? null : Number(length),
        ...combined,
      }));
      return response;
    };
  let announced = false;
  let generation = 0;
  let failing = false;
  let pressureUntil = 0;
  /** The start-up lines, once: where it listens, and whether visitors may clear. */
  const announce = (where: string, local: boolean) => {
    if (announced) return; // listening again after an accept failure
    announced = true;
    console.log(`Tiny Message Board on ${where} (${storeLabel})`);
    for (const note of notes) console.log(note);
    if (options.adminToken === undefined && (!local || options.trustProxy)) {
      console.log(
        "Clearing and deleting are off for visitors from other machines " +
          "(for everyone, behind --trust-proxy or on --unix); " +
          "give --admin-token (or BOARD_ADMIN_TOKEN with --allow-env=BOARD_ADMIN_TOKEN) " +
          "to moderate at /admin.",
      );
    }
  };
  const listen = (port: number): Deno.HttpServer<Deno.Addr> => {
    const mine = ++generation;
    // The first request this listener accepts after a failure ends the outage.
    const serve: BoardHandler = (request, info) => {
      if (failing && mine === generation) {
        failing = false;
        console.error(`message board: accepting connections again`);
      }
      if (pressureUntil === 0 || Date.now() > pressureUntil) {
        return handler(request, info);
      }
      // Short of descriptors: keep-alive clients are asked to hand theirs back.
      return handler(request, info).then((response) => {
        try {
          response.headers.set("Connection", "close");
        } catch {
          // Immutable headers: leave the response as it is.
        }
        return response;
      });
    };
    if (unixPath !== undefined) {
      // The mode is set as soon as the socket file exists, before the start-up line.
      let failed: { error: unknown } | null = null;
      const server = Deno.serve({
        path: unixPath,
        onListen({ path }) {
          try {
            if (options.unixMode !== undefined) {
              Deno.chmodSync(path, options.unixMode);
            }
          } catch (error) {
            failed = { error };
            return;
          }
          // No client address on a Unix socket: no visitor counts as on this machine.
          announce(`unix:${path}`, false);
        },
      }, serve);
      if (failed !== null) {
        server.shutdown();
        throw (failed as { error: unknown }).error;
      }
      return server;
    }
    return Deno.serve({
      hostname,
      port,
      ...tls,
      onListen({ hostname, port }) {
        const host = hostname.includes(":") ? `[${hostname}]` : hostname;
        const scheme = tls ? "https" : "http";
        announce(
          `${scheme}://${host}:${port}${base}/`,
          isLoopbackName(hostName(host)),
        );
      },
    }, serve);
  };
  let server: Deno.HttpServer<Deno.Addr>;
  try {
    if (unixPath !== undefined && await claimSocketPath(unixPath)) {
      console.error(
        `message board: removed ${unixPath}, a socket file no server accepted on (left by a run that was killed)`,
      );
    }
    server = listen(port);
  } catch (error) {
    await board.close();
    throw error;
  }
  const addr = server.addr as Deno.NetAddr | Deno.UnixAddr;

  // Surviving accept failures. When the process runs out of file descriptors
  // (idle connections pile up: Deno.serve has no idle or header timeout), the
  // listener fails and `finished` rejects. Say so once, and shut the failed
  // server down at once: that closes its idle connections (kept alive between
  // requests, or a head that never ends: a slowloris flood), which gives their
  // descriptors back, while requests in flight finish, as nginx closes idle
  // keep-alive connections when it runs out. Then listen again on the same
  // port, waiting longer each time (up to ACCEPT_RETRY_MAX_MS); for
  // ACCEPT_PRESSURE_MS every answer says `Connection: close`.
  const servers = new Set([server]);
  let retryTimer: ReturnType<typeof setTimeout> | undefined;
  let retryMs = ACCEPT_RETRY_FIRST_MS;
  let stopping: Promise<void> | null = null;
  const relisten = () => {
    retryTimer = undefined;
    if (stopping) return;
    try {
      watch(listen("port" in addr ? addr.port : 0));
      retryMs = ACCEPT_RETRY_FIRST_MS;
    } catch {
      retryMs = Math.min(retryMs * 2, ACCEPT_RETRY_MAX_MS);
      retryTimer = setTimeout(relisten, retryMs);
    }
  };
  const watch = (current: Deno.HttpServer<Deno.Addr>) => {
    servers.add(current);
    current.finished.then(() => servers.delete(current), (error) => {
      if (stopping) return;
      if (!failing) {
        console.error(
          `message board: cannot accept connections (${
            (error as Error).message
          }); closing idle connections, letting requests in flight finish, ` +
            `and listening again until descriptors are free`,
        );
      }
      failing = true;
      pressureUntil = Date.now() + ACCEPT_PRESSURE_MS;
      current.shutdown().catch(() => {}).finally(() => servers.delete(current));
      retryTimer = setTimeout(relisten, retryMs);
    });
  };
  watch(server);

  // Stopping: end the live event streams (they never finish by themselves),
  // stop accepting, let answers in flight finish for shutdownGraceMs at most
  // (a client may never send its body or never read), then write and sync the
  // accepted posts and release the lock. An acknowledged post is on disk already.
  const stopped = Promise.withResolvers<void>();
  const shutdown = () =>
    stopping ??= (async () => {
      clearTimeout(retryTimer);
      board.endEventStreams();
      const drained = Promise.all(
        [...servers].map((current) => current.shutdown().catch(() => {})),
      );
      let graceTimer: ReturnType<typeof setTimeout> | undefined;
      const graceOver = new Promise<"grace over">((resolve) => {
        graceTimer = setTimeout(resolve, shutdownGraceMs, "grace over");
      });
      if (await Promise.race([drained, graceOver]) === "grace over") {
        console.error(
          `message board: requests still in flight ${shutdownGraceMs} ms after the shutdown began; not waiting for them`,
        );
      }
      clearTimeout(graceTimer);
      await board.close();
    })().then(stopped.resolve, stopped.reject);
  return { addr, board, shutdown, finished: stopped.promise };
}

/**
 * Makes `path` ready for a Unix socket listener. Listening fails (AddrInUse)
 * on a path where any file is, and a board that was killed leaves its socket
 * file behind (Deno removes it when the server stops). So a socket file on
 * which nothing accepts a connection is removed; a socket a server still
 * accepts on is left alone (AddrInUse), and so is anything that is not a
 * socket (AlreadyExists): a typo in --unix must never delete a file. Returns
 * whether a stale socket file was removed.
 */
async function claimSocketPath(path: string): Promise<boolean> {
  try {
    if (!(await Deno.lstat(path)).isSocket) {
      throw new Deno.errors.AlreadyExists(`${path} exists and is not a socket`);
    }
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return false;
    throw error;
  }
  try {
    (await Deno.connect({ transport: "unix", path })).close();
  } catch (error) {
    if (!(error instanceof Deno.errors.ConnectionRefused)) throw error;
    await Deno.remove(path); // no one listens: a killed run's
    return true;
  }
  throw new Deno.errors.AddrInUse(`a server accepts connections on ${path}`);
}

/**
 * What a command-line program adds to {@linkcode startServer}'s options: main()
 * here gives none (the data file); board_postgres.ts opens its store.
 */
export type StoreChoice = (
  commandLine: CommandLineOptions,
) => Promise<Partial<ServerOptions>> | Partial<ServerOptions>;

/**
 * Runs the board from a command line until SIGINT or SIGTERM: a bad command
 * line gets one line and exit 2, a failed start one line and exit 1. Every
 * line starts with `program` (`message_board: ...`).
 */
export async function runCommandLine(
  args: string[],
  program: string,
  chooseStore: StoreChoice,
): Promise<void> {
  let commandLine: CommandLineOptions;
  let extra: Partial<ServerOptions>;
  try {
    commandLine = parseCommandLine(args);
    if (commandLine.help) {
      console.log(USAGE);
      return;
    }
    if (commandLine.version) {
      // board_postgres.ts is this board's PostgreSQL mode: the same version.
      console.log(`${program}.ts ${VERSION} (Deno ${Deno.version.deno})`);
      return;
    }
    // BOARD_ADMIN_TOKEN is read only when the command allows it (--allow-env=BOARD_ADMIN_TOKEN).
    const envToken = Deno.permissions.querySync({
        name: "env",
        variable: "BOARD_ADMIN_TOKEN",
      }).state === "granted"
      ? Deno.env.get("BOARD_ADMIN_TOKEN")
      : undefined;
    if (commandLine.adminToken === undefined && envToken) {
      checkAdminToken(envToken, "BOARD_ADMIN_TOKEN");
      commandLine.adminToken = envToken;
    }
    extra = await chooseStore(commandLine);
  } catch (error) {
    if (!(error instanceof CommandLineError)) throw error;
    console.error(`${program}: ${error.message} (see --help)`);
    Deno.exit(2);
  }
  let server: BoardServer<Deno.Addr>;
  try {
    server = await startServer({ ...commandLine, ...extra });
  } catch (error) {
    console.error(`${program}: ${describeStartupError(error, commandLine)}`);
    Deno.exit(1);
  }
  const shutdown = () => void server.shutdown();
  Deno.addSignalListener("SIGINT", shutdown);
  Deno.addSignalListener("SIGTERM", shutdown);
  await server.finished;
  Deno.removeSignalListener("SIGINT", shutdown);
  Deno.removeSignalListener("SIGTERM", shutdown);
  console.log("Tiny Message Board stopped.");
  // Exit now: a connection the grace gave up on would keep the process alive.
  Deno.exit(0);
}

/** One line on why the board could not start. */
function describeStartupError(
  error: unknown,
  commandLine: CommandLineOptions,
): string {
  const why = error instanceof Error ? error.message : String(error);
  if (error instanceof StartupError) return why;
  const socket = commandLine.unixPath;
  if (socket !== undefined) {
    const shown = showArg(socket);
    const absolute = resolve(socket);
    if (error instanceof Deno.errors.AddrInUse) {
      return `${shown} is in use: a server accepts connections on it (stop it, or give another --unix PATH)`;
    }
    if (error instanceof Deno.errors.AlreadyExists) {
      return `${shown} exists and is not a socket, so it is left alone (remove it, or give another --unix PATH)`;
    }
    if (
      error instanceof Deno.errors.NotCapable &&
      (why.includes(`"${socket}"`) || why.includes(`"unix:${absolute}"`))
    ) {
      // --allow-net=unix: takes only an absolute path.
      return `no permission for the socket ${shown}: run with --allow-read=${shown} --allow-write=${shown} --allow-net=unix:${
        showArg(absolute)
      } (besides the data folder's or the database's flags)`;
    }
  }
  const host = commandLine.hostname.includes(":")
    ? `[${commandLine.hostname}]`
    : commandLine.hostname;
  // Permission scopes are literal: --allow-net=127.0.0.1 does not cover 0.0.0.0.
  const wanted = /net access to "([^"]+)"/.exec(why)?.[1];
  if (error instanceof Deno.errors.NotCapable && wanted !== undefined) {
    const where = `${commandLine.hostname}:${commandLine.port}`;
    if (wanted === `${host}:${commandLine.port}`) {
      return `no permission to listen on ${where}: run with --allow-net=${host}`;
    }
    // The database: --allow-net must name its host as well as the listening address.
    return `no permission to reach the database at ${wanted}: run with --allow-net=${host},${
      wanted.replace(/:\d+$/, "")
    }`;
  }
  if (error instanceof Deno.errors.NotCapable) {
    const tlsFile = [commandLine.cert, commandLine.key].some((file) =>
      file !== undefined && why.includes(`"${file}"`)
    );
    const hint = tlsFile
      ? "add the --cert and --key files to --allow-read"
      : commandLine.databaseUrl === undefined
      ? "--allow-read and --allow-write must cover the folder of --data"
      : "PostgreSQL mode needs the flags shown in --help";
    return `${why} (${hint})`;
  }
  if (error instanceof Deno.errors.AddrInUse) {
    return `${commandLine.hostname}:${commandLine.port} is in use (try another --port, or --port 0)`;
  }
  return `cannot start: ${why}`;
}

function main(): Promise<void> {
  return runCommandLine(Deno.args, "message_board", (commandLine) => {
    if (commandLine.databaseUrl !== undefined) {
      throw new CommandLineError(
        `--store is PostgreSQL mode, which board_postgres.ts runs: ${POSTGRES_COMMAND}`,
      );
    }
    return {};
  });
}

if (import.meta.main) {
  await main();
}
