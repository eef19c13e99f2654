#!/usr/bin/env -S deno run --allow-net=127.0.0.1
/**
 * server_tiny.ts: an HTTP/1.1 server written by hand on a raw TCP socket.
 *
 * Stage 1 of deno-servers. A web server is a program that reads bytes from a
 * socket and writes bytes back; HTTP is text with a precise shape (RFC 9112).
 * This file uses only `Deno.listen` and `Deno.Conn` (no `Deno.serve`, no HTTP
 * library), so every step is in front of you: read the request head, parse
 * it, decide the answer, write the response bytes, close.
 *
 * ```sh
 * deno run --allow-net=127.0.0.1 server_tiny.ts
 * ```
 *
 * `--help` lists the options. `--port 0` picks a free port (the default is
 * 8080). `--once` serves one connection and exits.
 * `--quiet` stops printing each request head (the access log stays).
 * Ctrl-C or SIGTERM stops accepting, lets requests in progress finish, exits 0.
 *
 * `/` answers with a page showing what your browser sent; other paths get 404
 * (watch the console: a browser also asks for `/favicon.ico`), methods other
 * than GET and HEAD get 405.
 *
 * Safety: it listens on 127.0.0.1 unless told otherwise; it reads at most
 * {@link MAX_HEAD_BYTES} per request, for at most {@link HEAD_TIMEOUT_MS};
 * it rejects anything that is not well-formed HTTP/1.x with a 4xx
 * whose body never contains details, and bytes that cannot start a request
 * (a browser told `https://` for this plain HTTP port) as soon as they
 * arrive; one client address holds at most
 * {@link MAX_CONNECTIONS_PER_CLIENT} connections; every value it echoes is
 * HTML-escaped.
 *
 * Deliberately left out: keep-alive (every response closes the connection)
 * and request content (a body is never read; see {@link closeGracefully}).
 *
 * @module
 */

import { parseArgs, type ParseArgsOptionsConfig } from "node:util";

// ---------------------------------------------------------------------------
// Limits. Each one has its own answer.

/**
 * The largest request head we accept, request line and header fields together,
 * blank line included. RFC 9112 leaves the limit to the server; a larger head
 * gets 431 Request Header Fields Too Large (RFC 6585 5), or 414 URI Too Long
 * (RFC 9110 15.5.15) when its request target alone does not fit.
 */
export const MAX_HEAD_BYTES = 8 * 1024;

/**
 * How long a client has to send its whole head. Later gets 408 Request Timeout
 * and the connection is closed; without this one silent client (or a
 * "slowloris" sending a byte a second) would hold a connection for ever.
 */
export const HEAD_TIMEOUT_MS = 10_000;

/**
 * After our response, how long we keep reading what the client still sends
 * (see {@link closeGracefully}).
 */
export const LINGER_TIMEOUT_MS = 2_000;

/** After our response, how many bytes we read and discard at most before closing. */
export const LINGER_MAX_BYTES = 64 * 1024;

/**
 * Connections open at once, at most. One waiting for its head holds about
 * 14 KB (its head buffer and the runtime's share), so 65,536 descriptors'
 * worth would be 1 GB; one whose client does not take an answer larger than
 * the socket buffers holds that answer too, until {@link SEND_TIMEOUT_MS}
 * (the largest hello page, for a head of quotes, each escaped in six bytes:
 * 69 KB in all, measured). At this many, each new connection makes room by
 * closing one other, as when the descriptors run out (see {@link serveTiny}):
 * one lingering after its answer if there is one, else one of the address
 * holding the most connections, the one that has waited longest for the rest
 * of its head (it gets 408) or for the client to take its answer (see
 * {@link SEND_TIMEOUT_MS}). One at a time, not all: when a thousand
 * addresses hold one connection each, a client that has just sent its head
 * is not cut with the idle ones.
 */
export const MAX_CONNECTIONS = 4096;

/**
 * Connections one client address (an IPv6 client: its /64, see
 * {@link clientKey}) may hold at once. A browser opens up to six
 * to a server, an office behind one NAT address a few dozen; one address
 * opening thousands (a slowloris, or a flood of idle connections) would
 * otherwise fill {@link MAX_CONNECTIONS} and leave every other client to
 * compete for the last places. A new connection from an address at this
 * many makes room among that address's own, as a full server does (its
 * oldest waiting for a head gets 408); when none can go (all are being
 * answered), the new one gets 429 Too Many Requests. Behind a proxy every
 * connection comes from the proxy's address: raise it to `maxConnections`,
 * or put the proxy on a Unix socket (`path`), whose peers are not capped.
 */
export const MAX_CONNECTIONS_PER_CLIENT = 256;

/**
 * How long a client may go without taking any of our answer before the
 * connection is closed, counted between two writes (nginx's `send_timeout`,
 * the same 60 s): a slow reader that makes progress is never cut off. Only an
 * answer larger than the socket's buffers waits at all (a {@link Responder}'s
 * big page), and only then is the limit set.
 */
export const SEND_TIMEOUT_MS = 60_000;

/** On Ctrl-C or SIGTERM, how long requests in progress get before their connections are closed. */
export const SHUTDOWN_GRACE_MS = 5_000;

/** How often time limits are checked; each fires at most this much late (see DeadlineSweep). */
const DEADLINE_TICK_MS = 50;

/** How long the access log gathers lines before writing them in one call (see batchedConsoleLog). */
const LOG_FLUSH_MS = 10;

/** The bytes a batch of log lines may take before it is written at once. */
const LOG_BATCH_BYTES = 64 * 1024;

/** If `accept` fails (for example no file descriptors left), try again after this long, or as soon as a connection closes. */
const ACCEPT_RETRY_MS = 100;

/** The methods this server implements; everything else gets 405 with this list in `Allow`. */
const ALLOWED_METHODS = "GET, HEAD";

/** Reason phrases (RFC 9110 15); a status not listed is sent with an empty one (RFC 9112 4). */
const STATUS_TEXT: Record<number, string> = {
  200: "OK",
  201: "Created",
  202: "Accepted",
  301: "Moved Permanently",
  302: "Found",
  303: "See Other",
  307: "Temporary Redirect",
  308: "Permanent Redirect",
  400: "Bad Request",
  401: "Unauthorized",
  403: "Forbidden",
  404: "Not Found",
  405: "Method Not Allowed",
  408: "Request Timeout",
  409: "Conflict",
  410: "Gone",
  413: "Content Too Large",
  414: "URI Too Long",
  421: "Misdirected Request",
  422: "Unprocessable Content",
  429: "Too Many Requests",
  431: "Request Header Fields Too Large",
  500: "Internal Server Error",
  501: "Not Implemented",
  503: "Service Unavailable",
};

// ---------------------------------------------------------------------------
// Reading the request head: as many reads as it takes, within the limits.

/** The one method of `Deno.Conn` that {@link readRequestHead} needs. Tests pass a fake. */
export interface ByteReader {
  /** Reads into `buffer`; resolves how many bytes came, or null at the end of the stream. */
  read(buffer: Uint8Array): Promise<number | null>;
}

/** The one method of `Deno.Conn` that {@link writeAll} needs. Tests pass a fake. */
export interface ByteWriter {
  /** Writes some of `bytes`; resolves how many were written (maybe fewer than given). */
  write(bytes: Uint8Array): Promise<number>;
}

/** Options for {@link readRequestHead}. */
export interface ReadHeadOptions {
  /** Heads larger than this are refused. @default {MAX_HEAD_BYTES} */
  maxBytes?: number;
  /** Time allowed for the whole head. @default {HEAD_TIMEOUT_MS} */
  timeoutMs?: number;
  /**
   * Aborting it ends the wait (within {@link DEADLINE_TICK_MS}), but only
   * while no byte has arrived yet: a graceful shutdown closes idle
   * connections and lets started requests finish.
   * @default undefined (the wait ends only with the head, the limit or the timeout)
   */
  idleSignal?: AbortSignal;
  /**
   * Where to put the bytes, at least `maxBytes` long; the head returned is a
   * view into it. serveTiny reuses buffers between connections.
   * @default a new buffer
   */
  buffer?: Uint8Array;
}

/** What {@link readRequestHead} found on the connection. */
export type HeadReadResult =
  /**
   * A whole head, up to and including the blank line, and how many bytes
   * came after it in the same reads (content, or a pipelined request).
   */
  | { kind: "head"; head: Uint8Array; bytesAfter: number }
  /** More than `maxBytes` without a blank line: answer 431. */
  | { kind: "too-large" }
  /** More than `maxBytes` and the request target had not ended yet: answer 414. */
  | { kind: "target-too-long" }
  /** The head did not arrive in time: answer 408. */
  | { kind: "timeout" }
  /**
   * The first bytes cannot begin an HTTP/1.x request line (a TLS handshake,
   * say): answer 400 without waiting for the rest. `received` is what came.
   */
  | { kind: "not-http"; received: Uint8Array }
  /** The client stopped sending in the middle of a head: answer 400. */
  | { kind: "incomplete" }
  /** The client sent nothing and closed, or we are shutting down: nothing to answer. */
  | { kind: "closed" };

/**
 * Reads from `reader` until the end of a request head (the first empty line).
 *
 * A single read is not a request: TCP delivers a stream of bytes, and a head
 * may arrive in many pieces (or together with the start of a body). Bytes after
 * the head are dropped, since this server never reads request content.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * // Any reader will do; a Deno.Conn is one. This one gives the head in two pieces.
 * const pieces = ["GET / HTTP/1.1\r\nHo", "st: x\r\n\r\n"].map((text) => new TextEncoder().encode(text));
 * const reader = {
 *   read(buffer: Uint8Array) {
 *     const piece = pieces.shift();
 *     if (piece === undefined) return Promise.resolve(null);
 *     buffer.set(piece);
 *     return Promise.resolve(piece.length);
 *   },
 * };
 * const result = await readRequestHead(reader, { timeoutMs: 5_000 });
 * assert.equal(result.kind, "head");
 * ```
 */
export function readRequestHead(
  reader: ByteReader,
  options: ReadHeadOptions = {},
): Promise<HeadReadResult> {
  return readHead(reader, options, undefined);
}

/**
 * {@link readRequestHead} for a connection of `peer`: a full server may give
 * up on the wait (see {@link DeadlineSweep.shedOne}).
 */
async function readHead(
  reader: ByteReader,
  options: ReadHeadOptions,
  peer: Peer | undefined,
): Promise<HeadReadResult> {
  const {
    maxBytes = MAX_HEAD_BYTES,
    timeoutMs = HEAD_TIMEOUT_MS,
    idleSignal,
  } = options;
  const buffer = options.buffer?.length === maxBytes
    ? options.buffer
    : options.buffer?.subarray(0, maxBytes) ?? new Uint8Array(maxBytes);
  let length = 0;
  let lineState = REQUEST_LINE_START;
  // RFC 9112 2.2: empty lines (CRLF) before the request line are ignored, as
  // nginx and hyper do. They still count toward the head's size and time.
  let lineStart = 0;
  let lineStarted = false;

  // One deadline for the whole head, not one per read: a client sending one
  // byte every few seconds must not be able to stretch it. It also expires
  // when the server gives up on an idle connection (shutdown).
  const deadline = deadlines.add(
    timeoutMs,
    ignoreExpiry,
    "head",
    idleSignal,
    peer,
  );

  try {
    while (length < maxBytes) {
      // Expired while no read was waiting: the idle signal had aborted
      // already, or the time ran out just as the last read came in.
      if (deadline.expired !== undefined) return expiredRead(deadline.expired);
      const read = reader.read(length === 0 ? buffer : buffer.subarray(length));
      const outcome = await raceDeadline(read, deadline);
      if (outcome === "timeout" || outcome === "idle") {
        // The caller closes the connection, which ends this pending read.
        return expiredRead(outcome);
      }
      if (outcome === null) {
        return { kind: lineStarted ? "incomplete" : "closed" };
      }
      // A request has started: from now on only the deadline ends the wait.
      deadline.idleSignal = undefined;
      let start = length;
      length += outcome;
      if (!lineStarted) {
        while (
          lineStart + 1 < length && buffer[lineStart] === CR &&
          buffer[lineStart + 1] === LF
        ) lineStart += 2;
        // Nothing yet, or a CR whose LF is still to come.
        if (
          lineStart === length ||
          (lineStart + 1 === length && buffer[lineStart] === CR)
        ) {
          continue;
        }
        lineStarted = true;
        start = lineStart;
      }
      // Bytes that cannot begin a request line (a TLS handshake sent to this
      // plain HTTP port, an SSH banner, binary noise) are refused as soon as
      // they arrive, as nginx does, not after the whole head timeout.
      lineState = scanRequestLine(buffer, start, length, lineState);
      if (lineState === NOT_HTTP) {
        return { kind: "not-http", received: buffer.subarray(0, length) };
      }
      // The blank line may straddle two reads, so search again from just
      // before where the new bytes start.
      const end = findHeadEnd(buffer, Math.max(lineStart, start - 2), length);
      if (end !== -1) {
        return {
          kind: "head",
          head: buffer.subarray(lineStart, end),
          bytesAfter: length - end,
        };
      }
    }
    return { kind: lineState === IN_TARGET ? "target-too-long" : "too-large" };
  } finally {
    deadlines.remove(deadline);
  }
}

/**
 * Settles with what `read` gives, or with why `deadline` expired if that
 * comes first. It is `Promise.race([read, expiry])` made by hand: the
 * deadline's `expire` settles this promise directly, so a request costs one
 * promise per read instead of an expiry promise, an array, an iterator and
 * a promise per racer (measured: about 0.35 µs a read less). A read that
 * loses rejects later, when the caller closes the connection, into a
 * promise already settled: nothing is left unhandled.
 */
function raceDeadline(
  read: Promise<number | null>,
  deadline: Deadline,
): Promise<number | null | Expiry> {
  return new Promise((resolve, reject) => {
    deadline.expire = resolve;
    read.then(resolve, reject);
  });
}

function expiredRead(why: Expiry): HeadReadResult {
  return { kind: why === "timeout" ? "timeout" : "closed" };
}

function ignoreExpiry(): void {}

/**
 * Items kept in an array, each knowing its place in it, so that taking one
 * out is a swap with the last. The server keeps its open connections and
 * their time limits in these rather than in a `Set`: thousands of items a
 * second passing through a Set made requests' garbage outlive the minor
 * garbage collections (1 to 3 MB survived each one, against 50 KB for the
 * bare accept loop), so V8 grew its young generation to the maximum and the
 * process used twice the loop's memory. With arrays nothing was promoted.
 */
class SlotList<T extends { slot: number }> {
  readonly items: T[] = [];

  add(item: T): void {
    item.slot = this.items.length;
    this.items.push(item);
  }

  /** Takes `item` out; nothing happens if it is not in the list. */
  remove(item: T): void {
    if (this.items[item.slot] !== item) return;
    const last = this.items.pop()!;
    if (last !== item) {
      this.items[item.slot] = last;
      last.slot = item.slot;
    }
    item.slot = -1;
  }
}

/** Why a time limit ended: its time was up, or the server gave up on an idle connection. */
type Expiry = "timeout" | "idle";

/**
 * What a connection waits for while its time limit runs: the rest of its
 * head, the client to take the rest of its answer, or the client to stop
 * sending after its answer (see {@link closeGracefully}).
 */
type Wait = "head" | "send" | "linger";

/**
 * A client address as one server counts its connections (see
 * {@link MAX_CONNECTIONS_PER_CLIENT}).
 */
interface Peer {
  /** Its {@link clientKey} (an IPv6 client's /64), or "unix" for a Unix socket. */
  address: string;
  /** How many of its connections the server has open. */
  held: number;
  /**
   * The table of its server's peers: every server in the process shares one
   * {@link DeadlineSweep}, and makes room among its own connections only.
   */
  group: Map<string, Peer>;
}

/** A time limit registered with {@link DeadlineSweep}. */
interface Deadline {
  slot: number;
  at: number;
  /** Called once, when the limit expires. */
  expire: (why: Expiry) => void;
  /** Why it expired; undefined while it has not. */
  expired: Expiry | undefined;
  /** While set, the limit also expires (as "idle") once this signal has aborted. */
  idleSignal: AbortSignal | undefined;
  wait: Wait;
  /**
   * When the wait began, or (sending) when the client last took some of the
   * answer, as a count that grows with each such event: two in the same
   * millisecond are still told apart.
   */
  since: number;
  /** The client it is waiting for, when a server counts it (see {@link DeadlineSweep.shedOne}). */
  peer: Peer | undefined;
}

/**
 * Time limits for many connections, kept with one timer. A `setTimeout` per
 * connection would cost its memory for the whole delay even when cleared at
 * once (the runtime keeps a cleared timer until it would have fired): with a
 * 10 s head timeout and thousands of connections a second, that was 30 MB of
 * RSS and 6 µs per request. Here each limit is a small object in a set, and
 * one interval, running only while there are limits, expires those that are
 * due: each fires up to {@link DEADLINE_TICK_MS} late. The same sweep notices
 * a shutdown (an aborted `idleSignal`), which is cheaper than an event
 * listener added and removed on every connection, and than reading the
 * signal's `aborted` on every one (about 400 instructions each): a limit
 * added with an aborted signal expires at the next tick, like any other.
 */
class DeadlineSweep {
  #pending = new SlotList<Deadline>();
  #timer: ReturnType<typeof setInterval> | undefined;
  #holders = 0;
  #events = 0;

  add(
    ms: number,
    expire: Deadline["expire"],
    wait: Wait,
    idleSignal?: AbortSignal,
    peer?: Peer,
  ): Deadline {
    const deadline: Deadline = {
      slot: -1,
      at: Date.now() + ms,
      expire,
      expired: undefined,
      idleSignal,
      wait,
      since: this.tick(),
      peer,
    };
    this.#pending.add(deadline);
    this.#timer ??= setInterval(() => this.#sweep(), DEADLINE_TICK_MS);
    return deadline;
  }

  remove(deadline: Deadline): void {
    this.#pending.remove(deadline);
    this.#stopWhenIdle();
  }

  /** The next value for a {@link Deadline}'s `since`. */
  tick(): number {
    return ++this.#events;
  }

  /**
   * A running server holds the interval: under load the set empties and
   * fills again between requests, and stopping and starting a timer each
   * time cost more than the ticks. Without holders it stops once nothing is
   * pending, so a program (or a test) that is done has no timer left.
   */
  hold(): void {
    this.#holders++;
  }

  release(): void {
    this.#holders--;
    this.#stopWhenIdle();
  }

  /**
   * Expires at once, as if its time were up, the limit of one connection of
   * a server (`group`, its peers) that is full or out of descriptors, or of
   * one of `peer`'s connections when that address holds all it may: the
   * connection whose loss costs least, chosen by {@link shedsBefore}. Its
   * wait ends (a head gets 408) and its descriptor comes back. Returns the
   * address of the client it waited for, or null when no connection of
   * theirs is waiting.
   */
  shedOne(group: Map<string, Peer>, peer?: Peer): string | null {
    const chosen = this.#findShed(group, peer);
    if (chosen === undefined) return null;
    this.#expire(chosen, "timeout");
    this.#stopWhenIdle();
    return chosen.peer!.address;
  }

  /** Whether {@link shedOne} would find a connection to close. */
  canShed(group: Map<string, Peer>): boolean {
    return this.#findShed(group, undefined) !== undefined;
  }

  #findShed(
    group: Map<string, Peer>,
    peer: Peer | undefined,
  ): Deadline | undefined {
    let chosen: Deadline | undefined;
    for (const deadline of this.#pending.items) {
      const owner = deadline.peer;
      if (owner === undefined || owner.group !== group) continue;
      if (peer !== undefined && owner !== peer) continue;
      if (chosen === undefined || shedsBefore(deadline, chosen)) {
        chosen = deadline;
      }
    }
    return chosen;
  }

  #sweep(): void {
    const now = Date.now();
    const pending = this.#pending.items;
    // Backwards: an expired limit's place is taken by the last one, already seen.
    for (let i = pending.length - 1; i >= 0; i--) {
      const deadline = pending[i]!;
      if (deadline.at <= now) this.#expire(deadline, "timeout");
      else if (deadline.idleSignal?.aborted) this.#expire(deadline, "idle");
    }
    this.#stopWhenIdle();
  }

  #expire(deadline: Deadline, why: Expiry): void {
    this.#pending.remove(deadline);
    deadline.expired = why;
    deadline.expire(why);
  }

  #stopWhenIdle(): void {
    if (this.#pending.items.length > 0 || this.#holders > 0) return;
    clearInterval(this.#timer);
    this.#timer = undefined;
  }
}

const deadlines = new DeadlineSweep();

/**
 * Whether a server that must close one connection closes `a`'s before
 * `b`'s: one lingering after its answer first (its client has what it came
 * for); then one of the address holding more connections, so that one
 * address opening thousands loses its own and not a client elsewhere; then
 * the one that has waited longest (for the rest of its head, or for its
 * client to take some of its answer), as nginx reuses its oldest idle
 * connections first.
 */
function shedsBefore(a: Deadline, b: Deadline): boolean {
  const aLingers = a.wait === "linger";
  if (aLingers !== (b.wait === "linger")) return aLingers;
  if (a.peer!.held !== b.peer!.held) return a.peer!.held > b.peer!.held;
  return a.since < b.since;
}

const CR = 0x0d;
const LF = 0x0a;

/**
 * Finds the end of a request head: the index just after its first empty line,
 * or -1 if there is none yet. A bare LF counts as a line end here, so a client
 * that sends `\n\n` gets a prompt 400 from {@link parseRequestHead} instead of
 * waiting for the timeout.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * assert.equal(findHeadEnd(new TextEncoder().encode("GET / HTTP/1.0\r\n\r\nbody")), 18);
 * ```
 */
export function findHeadEnd(
  bytes: Uint8Array,
  from = 0,
  to = bytes.length,
): number {
  for (let i = from; i < to; i++) {
    if (bytes[i] !== LF) continue;
    if (i + 1 < to && bytes[i + 1] === LF) return i + 2;
    if (i + 2 < to && bytes[i + 1] === CR && bytes[i + 2] === LF) return i + 3;
  }
  return -1;
}

const SP = 0x20;
const REQUEST_LINE_START = 0;
const IN_TARGET = 1;
// States from VERSION_START on: how much of "HTTP/d.d\r\n" has been seen.
const VERSION_START = 2;
const VERSION_SHAPE = [..."HTTP/#.#\r\n"].map((char) =>
  char === "#" ? -1 : char.charCodeAt(0)
);
/** scanRequestLine: the whole request line has arrived and has the right shape. */
const LINE_DONE = VERSION_START + VERSION_SHAPE.length;
/** scanRequestLine: these bytes cannot be the start of an HTTP/1.x request. */
const NOT_HTTP = -1;

/**
 * Checks the request line as its bytes arrive, `bytes[from, to)`, going on
 * from `state` (start with `REQUEST_LINE_START`; the result is the state for
 * the next bytes). Its shape is `method SP target SP HTTP/d.d CRLF` (RFC 9112
 * 3): a method of token characters, a target of visible characters, a
 * version. The first byte that cannot fit gives `NOT_HTTP`, as nginx's
 * parser stops at the first bad byte: a TLS ClientHello (first byte 0x16),
 * sent by a browser told `https://` for this plain port, is answered at once
 * instead of after {@link HEAD_TIMEOUT_MS}. {@link parseRequestHead} still
 * checks the whole head; this only decides early what it would refuse.
 */
function scanRequestLine(
  bytes: Uint8Array,
  from: number,
  to: number,
  state: number,
): number {
  for (let i = from; i < to && state >= 0 && state < LINE_DONE; i++) {
    const byte = bytes[i]!;
    if (state === REQUEST_LINE_START || state === IN_TARGET) {
      // (After LF: the first byte after ignored empty lines.)
      const first = i === 0 || bytes[i - 1] === SP || bytes[i - 1] === LF;
      if (byte === SP && !first) state++;
      else if (
        !(state === IN_TARGET ? isTargetByte(byte) : isTokenByte(byte))
      ) {
        state = NOT_HTTP;
      }
    } else {
      const want = VERSION_SHAPE[state - VERSION_START];
      const fits = want === -1 ? byte >= 0x30 && byte <= 0x39 : byte === want;
      state = fits ? state + 1 : NOT_HTTP;
    }
  }
  return state;
}

/** A byte allowed in a method or field name: tchar (as TOKEN below). */
function isTokenByte(byte: number): boolean {
  return TOKEN_BYTES[byte] === 1;
}

// One flag per byte value, looked up for each byte of a method as it arrives:
// a regular expression test per byte cost more than the rest of the scan.
const TOKEN_BYTES = Uint8Array.from(
  { length: 256 },
  (_, byte) =>
    /^[!#$%&'*+\-.^_`|~0-9A-Za-z]$/.test(String.fromCharCode(byte)) ? 1 : 0,
);

/** A byte allowed in a request target (as TARGET_CHARS below). */
function isTargetByte(byte: number): boolean {
  return byte >= 0x21 && byte <= 0x7e && byte !== 0x23;
}

// ---------------------------------------------------------------------------
// Parsing the head, strictly (RFC 9112 2 to 5, RFC 9110 5).

/** A well-formed request head. */
export interface RequestHead {
  /** As sent, for example `GET`. Methods are case-sensitive (RFC 9110 9.1). */
  method: string;
  /** The request-target as sent, for example `/search?q=1`. */
  target: string;
  /** The path part of the target, used for routing, for example `/search`. */
  path: string;
  /** As sent, for example `HTTP/1.1`. */
  version: string;
  /** Every header field line in order, names as sent, values without surrounding whitespace. */
  headers: [name: string, value: string][];
}

/** The result of {@link parseRequestHead}: a request, or the status to answer and why. */
export type ParseResult =
  | { ok: true; request: RequestHead }
  | { ok: false; status: 400; reason: string };

// A CR not followed by LF, or an LF not after a CR.
const STRAY_LINE_END = /\r(?!\n)|(?<!\r)\n/;
// RFC 9110 5.6.2: token = 1*tchar. Method and field names are tokens.
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
// RFC 9112 2.3: HTTP-version = "HTTP" "/" DIGIT "." DIGIT, case-sensitive.
const HTTP_VERSION = /^HTTP\/\d\.\d$/;
// Visible ASCII without "#" (a fragment is never sent). RFC 3986 is stricter,
// but browsers leave characters such as | ^ { } unencoded (WHATWG URL), and a
// server that answers 400 to a link a browser follows is not useful.
const TARGET_CHARS = /^[\x21\x22\x24-\x7e]+$/;
// RFC 9110 5.5: field-value = VCHAR, SP, HTAB and obs-text (bytes 0x80-0xFF).
// CR, LF, NUL and other control characters are invalid: we reject them.
const FIELD_VALUE = /^[\t\x20-\x7e\x80-\xff]*$/;
// RFC 9110 7.2: Host = uri-host [ ":" port ], where uri-host is an IP literal
// in brackets, an IPv4 address or a registered name (RFC 3986 3.2.2). An http
// URI always has a host, so an empty one is refused, as the other two servers do.
// The port, if any, is the first capture.
// A "%" in a name starts two hex digits (pct-encoded); `Host: %zz` is refused.
const HOST_VALUE =
  /^(?:\[[0-9A-Fa-f:.]+\]|(?:[A-Za-z0-9\-._~!$&'()*+,;=]|%[0-9A-Fa-f]{2})+)(?::(\d{0,5}))?$/;

/**
 * Parses a request head (as returned by {@link readRequestHead}) strictly.
 * Anything malformed is a 400, a major version other than 1 too.
 *
 * The usual head (see {@link parseUsualHead}) is checked and split in one
 * pass over its bytes; every other one goes through {@link parseHeadByRules},
 * which applies RFC 9112 rule by rule and says what is wrong. Both give the
 * same answer for every head: tests/tiny_fastparse_test.ts compares them on
 * many thousands of random and hostile ones.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * const head = new TextEncoder().encode("GET /?a=1 HTTP/1.1\r\nHost: x\r\n\r\n");
 * assert.deepEqual(parseRequestHead(head), {
 *   ok: true,
 *   request: { method: "GET", target: "/?a=1", path: "/", version: "HTTP/1.1", headers: [["Host", "x"]] },
 * });
 * const folded = new TextEncoder().encode("GET / HTTP/1.1\r\nHost: x\r\n  y\r\n\r\n");
 * assert.equal(parseRequestHead(folded).ok, false);
 * ```
 */
export function parseRequestHead(head: Uint8Array): ParseResult {
  const request = parseUsualHead(head);
  return request === null ? parseHeadByRules(head) : { ok: true, request };
}

const COLON = 0x3a;
const HTAB = 0x09;
const SLASH = 0x2f;
const QUESTION_MARK = 0x3f;
/** The bytes of " HTTP/1." after a request target. */
const VERSION_ONE = [...new TextEncoder().encode(" HTTP/1.")];

/**
 * The usual request head, checked and split in one pass over its bytes, with
 * no regular expression and no string made before the head is known to be
 * good: an origin-form target (`/path?query`), HTTP/1.x, exactly one Host
 * holding a name or an IPv4 address (and maybe a port), no Content-Length or
 * Transfer-Encoding, every line ending in CRLF. Anything else, well-formed or
 * not, gives null, and {@link parseHeadByRules} decides. What this accepts,
 * that accepts too, with the same result (the tests check both on random and
 * hostile heads): measured on a browser's head, this costs a fifth of it.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { parseHeadByRules, parseUsualHead } from "./server_tiny.ts";
 * const usual = new TextEncoder().encode("GET /a?b HTTP/1.1\r\nHost: x\r\n\r\n");
 * assert.deepEqual(parseHeadByRules(usual), { ok: true, request: parseUsualHead(usual) });
 * // Not the usual head (a body announced): null, and the rules decide.
 * const post = new TextEncoder().encode("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n");
 * assert.equal(parseUsualHead(post), null);
 * assert.equal(parseHeadByRules(post).ok, true);
 * ```
 */
export function parseUsualHead(head: Uint8Array): RequestHead | null {
  const length = head.length;
  // RFC 9112 3: method SP request-target SP HTTP-version CRLF.
  let i = 0;
  while (i < length && TOKEN_BYTES[head[i]!] === 1) i++;
  const methodEnd = i;
  if (methodEnd === 0 || head[i] !== SP || head[i + 1] !== SLASH) return null;
  const targetStart = ++i;
  let query = -1;
  for (; i < length && isTargetByte(head[i]!); i++) {
    if (query === -1 && head[i] === QUESTION_MARK) query = i;
  }
  const targetEnd = i;
  for (let k = 0; k < VERSION_ONE.length; k++, i++) {
    if (head[i] !== VERSION_ONE[k]) return null;
  }
  const minor = head[i]!;
  if (!(minor >= 0x30 && minor <= 0x39) || head[i + 1] !== CR) return null;
  if (head[i + 2] !== LF) return null;
  i += 3;

  // RFC 9112 5: field-name ":" OWS field-value OWS CRLF, until an empty line.
  // Each field's name and value, as offsets: [name start, name end, value
  // start, value end] one after the other.
  const fields: number[] = [];
  let hostValue = -1;
  let ascii = true;
  while (head[i] !== CR) {
    const nameStart = i;
    while (i < length && TOKEN_BYTES[head[i]!] === 1) i++;
    // Whitespace before the colon, or at the start of a line (obsolete
    // folding), or no colon at all: the rules say which.
    if (i === nameStart || head[i] !== COLON) return null;
    const nameEnd = i++;
    while (head[i] === SP || head[i] === HTAB) i++;
    const valueStart = i;
    let valueEnd = i;
    for (; i < length; i++) {
      const byte = head[i]!;
      if (byte === SP || byte === HTAB) continue;
      // CR, LF, NUL, the other controls and DEL end the value (RFC 9110 5.5).
      if (byte < 0x21 || byte === 0x7f) break;
      if (byte >= 0x80) ascii = false;
      valueEnd = i + 1;
    }
    if (head[i] !== CR || head[i + 1] !== LF) return null;
    i += 2;
    const nameLength = nameEnd - nameStart;
    if (nameLength === 4 && isFieldName(head, nameStart, "host")) {
      if (hostValue !== -1) return null;
      hostValue = fields.length + 2;
    } else if (
      (nameLength === 14 && isFieldName(head, nameStart, "content-length")) ||
      (nameLength === 17 && isFieldName(head, nameStart, "transfer-encoding"))
    ) return null;
    fields.push(nameStart, nameEnd, valueStart, valueEnd);
  }
  // The empty line, and nothing after it.
  if (head[i + 1] !== LF || i + 2 !== length) return null;
  if (
    hostValue === -1 ||
    !isUsualHost(head, fields[hostValue]!, fields[hostValue + 1]!)
  ) return null;

  // Bytes to string one to one, as parseHeadByRules makes them.
  const text = ascii ? asciiDecoder.decode(head) : byteString(head);
  const target = text.slice(targetStart, targetEnd);
  const headers: [string, string][] = new Array(fields.length / 4);
  for (let k = 0; k < fields.length; k += 4) {
    headers[k / 4] = [
      text.slice(fields[k], fields[k + 1]),
      text.slice(fields[k + 2], fields[k + 3]),
    ];
  }
  return {
    method: methodEnd === 3 && text.startsWith("GET")
      ? "GET"
      : text.slice(0, methodEnd),
    target,
    path: query === -1 ? target : text.slice(targetStart, query),
    version: text.slice(targetEnd + 1, targetEnd + 9),
    headers,
  };
}

/** Whether the token at `bytes[at]` is `lowerName`, in any case (RFC 9110 5.1). */
function isFieldName(
  bytes: Uint8Array,
  at: number,
  lowerName: string,
): boolean {
  for (let k = 0; k < lowerName.length; k++) {
    // A token's letters differ from their lower case in bit 0x20 only, and
    // no other token byte becomes a letter or "-" by setting it.
    if ((bytes[at + k]! | 0x20) !== lowerName.charCodeAt(k)) return false;
  }
  return true;
}

/**
 * Whether `bytes[start, end)` is a Host value as HOST_VALUE allows, without
 * an IP literal: a registered name or IPv4 address, then maybe ":" and a port
 * of up to five digits, at most 65535.
 */
function isUsualHost(bytes: Uint8Array, start: number, end: number): boolean {
  let i = start;
  while (i < end && HOST_NAME_BYTES[bytes[i]!] === 1) i++;
  if (i === start) return false;
  if (i === end) return true;
  if (bytes[i] !== COLON || end - i - 1 > 5) return false;
  let port = 0;
  for (i++; i < end; i++) {
    const digit = bytes[i]! - 0x30;
    if (digit < 0 || digit > 9) return false;
    port = port * 10 + digit;
  }
  return port <= 65535;
}

// The bytes of a registered name or IPv4 address in Host (as HOST_VALUE),
// but "%": a name with pct-encoding is left to the rules.
const HOST_NAME_BYTES = Uint8Array.from(
  { length: 256 },
  (_, byte) =>
    /^[A-Za-z0-9\-._~!$&'()*+,;=]$/.test(String.fromCharCode(byte)) ? 1 : 0,
);

/**
 * Parses a request head rule by rule, as {@link parseRequestHead} does for
 * any head that {@link parseUsualHead} leaves to it: each rule of RFC 9112
 * in turn, and the first one broken is the reason given.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * const head = new TextEncoder().encode("GET / HTTP/1.1\r\nHost : x\r\n\r\n");
 * assert.deepEqual(parseHeadByRules(head), {
 *   ok: false,
 *   status: 400,
 *   reason: "whitespace between a field name and the colon",
 * });
 * ```
 */
export function parseHeadByRules(head: Uint8Array): ParseResult {
  // Bytes to string one to one, so that each byte is checked as itself.
  const text = byteString(head);

  // RFC 9112 2.2: every line ends in CRLF. A bare LF is allowed as a MAY; we
  // refuse it (and a bare CR, which is never allowed) because a proxy in front
  // of us may split the lines differently, the root of request smuggling.
  const stray = STRAY_LINE_END.exec(text);
  if (stray !== null) {
    return reject(
      400,
      stray[0] === "\n"
        ? "a line ends with a bare LF instead of CRLF"
        : "a bare CR in the head",
    );
  }
  if (!text.endsWith("\r\n\r\n")) {
    return reject(400, "the head does not end with a blank line");
  }
  const requestLineEnd = text.indexOf("\r\n");

  // RFC 9112 3: request-line = method SP request-target SP HTTP-version,
  // exactly one space between the parts.
  const space1 = text.indexOf(" ");
  const space2 = text.indexOf(" ", space1 + 1);
  const space3 = text.indexOf(" ", space2 + 1);
  if (
    space1 === -1 || space2 === -1 || space2 > requestLineEnd ||
    (space3 !== -1 && space3 < requestLineEnd)
  ) {
    return reject(400, "the request line is not: method SP target SP version");
  }
  const method = text.slice(0, space1);
  const target = text.slice(space1 + 1, space2);
  const version = text.slice(space2 + 1, requestLineEnd);
  if (!TOKEN.test(method)) return reject(400, "the method is not a token");
  if (!HTTP_VERSION.test(version)) {
    return reject(400, "malformed HTTP version");
  }
  // HTTP/major.minor, one digit each.
  const major = version[5];
  const minor = version[7];
  // RFC 9110 2.5: a higher minor version (HTTP/1.2) is served as the highest
  // we implement. RFC 9110 has 505 for a major version we do not speak (an
  // HTTP/2 preface sent in clear text, HTTP/0.9); we answer 400, as hyper under
  // the other two servers does, so that bad input never gets a 5xx.
  if (major !== "1") {
    return reject(400, `unsupported version ${version}`);
  }
  const path = targetPath(method, target);
  if (path === null) return reject(400, "malformed request target");

  const headers: [string, string][] = [];
  // Each field line up to the blank line that ends the head.
  for (
    let start = requestLineEnd + 2, end = 0;
    start < text.length - 2;
    start = end + 2
  ) {
    // The line is text[start, end); it is read in place, not sliced out.
    end = text.indexOf("\r\n", start);
    // RFC 9112 5.2: obsolete line folding (a line starting with whitespace)
    // may be rejected with 400; so may whitespace right after the request line (2.2).
    if (isBlank(text, start)) {
      return reject(
        400,
        "a header line starts with whitespace (obsolete line folding)",
      );
    }
    const colon = text.indexOf(":", start);
    if (colon === -1 || colon > end) {
      return reject(400, "a header line has no colon");
    }
    // RFC 9112 5.1: whitespace between name and colon MUST be rejected with 400.
    if (colon > start && isBlank(text, colon - 1)) {
      return reject(400, "whitespace between a field name and the colon");
    }
    const name = text.slice(start, colon);
    if (!TOKEN.test(name)) return reject(400, "a field name is not a token");
    const value = trimSpaceAndTab(text, colon + 1, end);
    if (!FIELD_VALUE.test(value)) {
      return reject(400, `control character in the ${name} field`);
    }
    headers.push([name, value]);
  }

  const problem = checkHost(headers, minor !== "0") ??
    checkFraming(headers, minor !== "0");
  if (problem) return reject(400, problem);
  return { ok: true, request: { method, target, path, version, headers } };
}

function reject(status: 400, reason: string): ParseResult {
  return { ok: false, status, reason };
}

/**
 * `text` from `start` to `end` without the spaces and tabs around it (RFC 9112 5:
 * OWS); `trim()` would also take away other characters, such as U+00A0.
 */
function trimSpaceAndTab(
  text: string,
  start: number,
  end = text.length,
): string {
  while (start < end && isBlank(text, start)) start++;
  while (end > start && isBlank(text, end - 1)) end--;
  return text.slice(start, end);
}

function isBlank(text: string, at: number): boolean {
  return text[at] === " " || text[at] === "\t";
}

/** The start of an absolute-form request target (RFC 9112 3.2.2) this server takes. */
const ABSOLUTE_FORM = /^https?:\/\//i;

/**
 * The path of a request target, or null if the target is malformed
 * (RFC 9112 3.2). `targetPath("GET", "/a?b")` is `"/a"`.
 */
function targetPath(method: string, target: string): string | null {
  if (!TARGET_CHARS.test(target)) return null;
  // origin-form, what browsers send: absolute-path [ "?" query ].
  if (target.startsWith("/")) {
    const query = target.indexOf("?");
    return query === -1 ? target : target.slice(0, query);
  }
  // absolute-form, what clients send to proxies; servers MUST accept it (3.2.2).
  // Userinfo in it (`http://a@host/`) is refused, as in Host: RFC 9110 4.2.4
  // says to treat it as an error (it is used to make a URL look like another).
  if (ABSOLUTE_FORM.test(target)) {
    const authority = target.slice(target.indexOf("//") + 2).split(/[/?]/)[0]!;
    if (authority.includes("@") || !URL.canParse(target)) return null;
    return new URL(target).pathname;
  }
  // asterisk-form and authority-form exist only for OPTIONS and CONNECT,
  // which this server answers with 405.
  if (target === "*" && method === "OPTIONS") return target;
  if (method === "CONNECT") return target;
  return null;
}

/**
 * All values of one header field; names are case-insensitive (RFC 9110 5.1).
 * Most fields asked for are absent or sent once: an array is made only for
 * a value found, of its size (a `push` on `[]` would reserve 17 places).
 */
function fieldValues(
  headers: [string, string][],
  name: string,
): readonly string[] {
  let values: string[] | undefined;
  for (let i = 0; i < headers.length; i++) {
    const header = headers[i]!;
    const key = header[0];
    if (key.length === name.length && key.toLowerCase() === name) {
      if (values === undefined) values = [header[1]];
      else values.push(header[1]);
    }
  }
  return values ?? NO_VALUES;
}

const NO_VALUES: readonly string[] = [];

/**
 * RFC 9112 3.2: a server MUST answer 400 to an HTTP/1.1 request without Host,
 * with more than one Host, or with an invalid Host. HTTP/1.0 may omit it.
 */
function checkHost(
  headers: [string, string][],
  required: boolean,
): string | null {
  const hosts = fieldValues(headers, "host");
  if (hosts.length === 0) {
    return required ? "HTTP/1.1 request without Host" : null;
  }
  if (hosts.length > 1) return "more than one Host field";
  const shape = HOST_VALUE.exec(hosts[0]!);
  const port = shape?.[1];
  return shape !== null && (port === undefined || Number(port) <= 65535)
    ? null
    : "invalid Host value";
}

/**
 * We never read request content, but a head whose content length is ambiguous
 * is refused all the same (RFC 9112 6.3): a proxy in front of us might frame
 * the message differently, which is how request smuggling starts. The rules
 * are hyper's, under the other two servers, so that all three answer alike.
 */
function checkFraming(
  headers: [string, string][],
  http11: boolean,
): string | null {
  const lengths = fieldValues(headers, "content-length");
  const codings = fieldValues(headers, "transfer-encoding");
  if (lengths.length > 0 && codings.length > 0) {
    return "both Content-Length and Transfer-Encoding";
  }
  if (
    lengths.length > 1 ||
    (lengths.length === 1 && !isContentLength(lengths[0]!))
  ) {
    return "invalid Content-Length";
  }
  if (codings.length > 0) {
    // RFC 9112 6.1: HTTP/1.0 has no transfer codings; its framing is faulty.
    if (!http11) return "Transfer-Encoding in an HTTP/1.0 request";
    // Chunked once and last (a sender MUST NOT apply it twice), every coding
    // a token: no empty ones (`chunked,`), which parsers tell apart differently.
    const list = codings.join(",").split(",").map((coding) =>
      trimSpaceAndTab(coding, 0).toLowerCase()
    );
    const chunked = list.filter((coding) => coding === "chunked").length;
    if (list.at(-1) !== "chunked" || chunked > 1) {
      return "Transfer-Encoding does not end with chunked, once";
    }
    if (!list.every((coding) => TOKEN.test(coding))) {
      return "Transfer-Encoding has a coding that is not a token";
    }
  }
  return null;
}

/** 1*DIGIT (RFC 9110 8.6) and no more than 2^64 - 1: a length that can be counted. */
function isContentLength(value: string): boolean {
  return /^\d+$/.test(value) && BigInt(value) <= 0xffff_ffff_ffff_ffffn;
}

// ---------------------------------------------------------------------------
// Which names the server answers to: the defence against DNS rebinding.
//
// A page on another site can point its own DNS name at 127.0.0.1, and the
// browser then sends that page's requests here, with `Host: evil.example`,
// and lets the page read the answers: a server on loopback is not private
// unless it checks the name it was reached by. Vite's `server.allowedHosts`
// does the same for the same attack.

/**
 * The names every server answers to, wherever it listens: this machine's
 * loopback names.
 */
const LOOPBACK_HOSTS = ["localhost", "127.0.0.1", "[::1]"];

/**
 * The host names a server listening on `hostname` answers to by default:
 * {@link LOOPBACK_HOSTS}, the address it listens on and, for `0.0.0.0` and
 * `::` (every address), the addresses of this machine's interfaces, read with
 * `Deno.networkInterfaces()` when `--allow-sys=networkInterfaces` permits
 * (otherwise only the names in `extra`). `extra` names are added as given
 * (a leading dot, `.example.com`, also allows every subdomain).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * assert.deepEqual(allowedHostsFor("::1", ["Example.com"]), [
 *   "localhost", "127.0.0.1", "[::1]", "example.com",
 * ]);
 * ```
 */
export function allowedHostsFor(
  hostname: string,
  extra: readonly string[] = [],
  interfaceAddresses: () => string[] = listInterfaceAddresses,
): string[] {
  const names = [...LOOPBACK_HOSTS, hostname];
  if (hostname === "0.0.0.0" || hostname === "::" || hostname === "[::]") {
    names.push(...interfaceAddresses());
  }
  names.push(...extra);
  return [
    ...new Set(names.map((name) => normaliseHostName(bracketIpv6(name)))),
  ];
}

/** This machine's addresses, or none when `--allow-sys` does not permit reading them. */
function listInterfaceAddresses(): string[] {
  try {
    return Deno.networkInterfaces().map(({ address }) => address);
  } catch {
    return [];
  }
}

function bracketIpv6(address: string): string {
  return address.includes(":") && !address.startsWith("[")
    ? `[${address}]`
    : address;
}

/** Host names compare without case and without a final dot (`LocalHost.` is `localhost`). */
function normaliseHostName(name: string): string {
  const lower = name.toLowerCase();
  return lower.endsWith(".") && lower !== "." ? lower.slice(0, -1) : lower;
}

/**
 * The host name a request was sent to: from an absolute-form target when there
 * is one (RFC 9112 3.2.2: it overrides Host), else from the Host field, port
 * left out; null when there is neither (HTTP/1.0 may omit Host).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * const head = new TextEncoder().encode("GET / HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n");
 * const parsed = parseRequestHead(head);
 * assert.ok(parsed.ok);
 * assert.equal(requestHostName(parsed.request), "[::1]");
 * ```
 */
export function requestHostName(request: RequestHead): string | null {
  // Only an http(s) URL names a host: CONNECT's authority-form
  // (`example.com:443`) parses as a URL of scheme "example.com" and no host.
  if (ABSOLUTE_FORM.test(request.target) && URL.canParse(request.target)) {
    return normaliseHostName(new URL(request.target).hostname);
  }
  const host = fieldValues(request.headers, "host")[0];
  if (host === undefined || host === "") return null;
  // The parser checked the shape: an IP literal in brackets, or a name or
  // IPv4 address without a colon, then an optional port.
  const colon = host.indexOf(":");
  const name = host.startsWith("[")
    ? host.slice(0, host.indexOf("]") + 1)
    : colon === -1
    ? host
    : host.slice(0, colon);
  return normaliseHostName(name);
}

/**
 * Whether `name` (from {@link requestHostName}) is in `allowed` (from
 * {@link allowedHostsFor}); an entry with a leading dot allows the name after
 * the dot and all its subdomains.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * assert.ok(isAllowedHost("a.example.com", [".example.com"]));
 * assert.ok(!isAllowedHost("evil-example.com", [".example.com"]));
 * assert.ok(!isAllowedHost("evil.example", ["localhost"]));
 * ```
 */
export function isAllowedHost(
  name: string,
  allowed: readonly string[],
): boolean {
  for (const entry of allowed) {
    if (
      entry.startsWith(".")
        ? name === entry.slice(1) || name.endsWith(entry)
        : name === entry
    ) return true;
  }
  return false;
}

/** The answer to a request for a name this server does not answer to. */
export function misdirectedResponse(name: string): TinyResponse {
  return {
    status: 421,
    body: renderPage(
      "421 Misdirected Request",
      `<p>This server does not answer to the name <code>${
        escapeHtml(showBytes(encoder.encode(name)))
      }</code>. This check stops other web sites from reaching it through
their own DNS names (DNS rebinding).</p>
<p>If you run this server and meant to use that name, start it with
<code>--allowed-host ${
        escapeHtml(showBytes(encoder.encode(name)))
      }</code> (option <code>allowedHosts</code>).</p>`,
    ),
  };
}

// ---------------------------------------------------------------------------
// Deciding the answer.

/** A response before it becomes bytes. */
export interface TinyResponse {
  /**
   * 200 to 599, except 204 and 304 (every answer here has content, framed by
   * Content-Length). The reason phrase comes from the status.
   */
  status: number;
  /**
   * Header fields beyond the ones every response gets, e.g. `[["Allow", "GET, HEAD"]]`.
   * A `Content-Type` here replaces the default `text/html; charset=utf-8`;
   * `Content-Length`, `Transfer-Encoding`, `Connection` and `Date` belong to
   * the server (it frames every message itself) and are refused.
   */
  headers?: [string, string][];
  /** The content, sent as UTF-8 (an HTML page unless `headers` say otherwise). */
  body: string;
}

/**
 * What {@link serveTiny} calls for every well-formed request to an allowed
 * host name; {@link respondTo} is the default. A HEAD request arrives as GET:
 * the server sends the GET answer without its body (see {@link answerAsGet}).
 *
 * @example A route of your own, with today's page for everything else
 * ```ts
 * import assert from "node:assert/strict";
 * const respond: Responder = (request) =>
 *   request.path === "/time" && request.method === "GET"
 *     ? { status: 200, headers: [["Content-Type", "text/plain"]], body: new Date().toISOString() }
 *     : respondTo(request);
 * const server = serveTiny({ port: 0, respond, log: () => {} });
 * const answer = await fetch(`http://127.0.0.1:${server.addr.port}/time`);
 * assert.equal(answer.headers.get("content-type"), "text/plain");
 * assert.match(await answer.text(), /^\d{4}-/);
 * await server.shutdown();
 * ```
 */
export type Responder = (
  request: RequestHead,
) => TinyResponse | Promise<TinyResponse>;

// Header fields the server writes itself, for honest framing (RFC 9112 6).
const SERVER_FIELDS = new Set([
  "content-length",
  "transfer-encoding",
  "connection",
  "date",
]);
// Response field values: visible ASCII, space and tab, no CR or LF (RFC 9110 5.5).
const SAFE_FIELD_VALUE = /^[\t\x20-\x7e]*$/;

/**
 * Throws a TypeError naming what is wrong if `response` cannot be sent as it
 * is: a status out of range, a field name that is not a token, a value with
 * CR, LF or a control character (header injection), a field the server owns.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { checkResponse } from "./server_tiny.ts";
 * checkResponse({ status: 200, headers: [["Content-Type", "text/plain"]], body: "ok" });
 * assert.throws(
 *   () => checkResponse({ status: 200, headers: [["X-A", "a\r\nSet-Cookie: b"]], body: "" }),
 *   TypeError,
 * );
 * assert.throws(() => checkResponse({ status: 200, headers: [["Content-Length", "9"]], body: "" }), TypeError);
 * ```
 */
export function checkResponse(response: TinyResponse): void {
  const { status, headers = [], body } = response;
  if (
    !Number.isInteger(status) || status < 200 || status > 599 ||
    status === 204 || status === 304
  ) {
    throw new TypeError(`status ${status} is not one this server can send`);
  }
  if (typeof body !== "string") throw new TypeError("the body is not a string");
  for (const [name, value] of headers) {
    if (!TOKEN.test(name)) {
      throw new TypeError(
        `the field name ${JSON.stringify(name)} is not a token`,
      );
    }
    if (SERVER_FIELDS.has(name.toLowerCase())) {
      throw new TypeError(`the server writes ${name} itself`);
    }
    if (!SAFE_FIELD_VALUE.test(value)) {
      throw new TypeError(
        `the ${name} value has a control or non-ASCII character`,
      );
    }
  }
}

/**
 * Decides the answer to a well-formed request: the hello page for `/`, 404 for
 * other paths, 405 for methods other than GET and HEAD.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * const response = respondTo({ method: "POST", target: "/", path: "/", version: "HTTP/1.1", headers: [] });
 * assert.equal(response.status, 405);
 * assert.deepEqual(response.headers, [["Allow", "GET, HEAD"]]);
 * ```
 */
export function respondTo(request: RequestHead): TinyResponse {
  const answer = routeRequest(request);
  return "helloFor" in answer
    ? { status: 200, body: renderHelloPage(answer.helloFor) }
    : answer;
}

/**
 * A response as the server sends it: a {@link TinyResponse}, or the hello
 * page showing `helloFor`, which the server writes as bytes straight into
 * its response buffer (see {@link writeHelloPage}) and never makes as text.
 */
type Outgoing = TinyResponse | {
  status: 200;
  helloFor: RequestHead;
  headers?: undefined;
};

/** What {@link respondTo} answers, the hello page left as the request it shows. */
function routeRequest(request: RequestHead): Outgoing {
  // RFC 9110 15.5.6: a 405 MUST list the methods that are allowed.
  if (request.method !== "GET" && request.method !== "HEAD") {
    return { ...errorResponse(405), headers: [["Allow", ALLOWED_METHODS]] };
  }
  if (request.path !== "/") return errorResponse(404);
  return { status: 200, helloFor: request };
}

/** The statuses this server answers with when a request cannot be served. */
export type ErrorStatus = 400 | 404 | 405 | 408 | 414 | 429 | 431 | 500;

const ERROR_DETAILS: Record<ErrorStatus, string> = {
  400:
    "The server could not understand this request. It speaks HTTP/1.0 and HTTP/1.1.",
  404: 'There is no page at this address. Try <a href="/">the home page</a>.',
  405: "This server answers GET and HEAD requests only.",
  408: "The request did not arrive in time.",
  414: "The address is longer than this server accepts.",
  429:
    "Your address has as many connections open to this server as it may. Try again later.",
  431: "The request head is larger than this server accepts.",
  500: "Something went wrong on the server. Try again later.",
};

/**
 * The one place where a failure becomes a response. The body is generic on
 * purpose: what exactly was wrong goes to the server's console, never to the
 * client, which could be probing for weaknesses.
 */
export function errorResponse(status: ErrorStatus): TinyResponse {
  let body = errorPages.get(status);
  if (body === undefined) {
    const title = `${status} ${STATUS_TEXT[status]}`;
    body = renderPage(title, `<p>${ERROR_DETAILS[status]}</p>`);
    errorPages.set(status, body);
  }
  return { status, body };
}

/** Each error page, made the first time it is needed: they never change. */
const errorPages = new Map<ErrorStatus, string>();

/**
 * The page for `/`: what the browser sent, every value escaped.
 * {@link writeHelloPage} writes the same page as bytes.
 */
function renderHelloPage(request: RequestHead): string {
  const [beforeMethod, beforeTarget, beforeVersion, beforeRows, afterRows] =
    HELLO_PAGE.text;
  let page = beforeMethod + escapeHtml(request.method) + beforeTarget +
    escapeHtml(request.target) + beforeVersion + escapeHtml(request.version) +
    beforeRows;
  const [beforeName, beforeValue, afterValue] = HELLO_ROW.text;
  for (const [name, value] of request.headers) {
    page += beforeName + escapeHtml(name) + beforeValue +
      escapeHtml(showFieldValue(value)) + afterValue;
  }
  return page + afterRows;
}

/**
 * The hello page with a NUL where each value goes, made once: its text
 * around the values, and the same as bytes for {@link writeHelloPage}.
 */
function helloPageTemplate(
  method: string,
  target: string,
  version: string,
  rows: string,
): string {
  return renderPage(
    "Hello from server_tiny.ts",
    `<p>This page was written by hand, byte by byte, onto a TCP socket.
Here is what your browser sent (a byte that is not UTF-8, or an invisible or
control character, is shown as <code>\\xNN</code> or <code>\\u{NNNN}</code>).</p>
<p>Method <code>${method}</code>,
path <code>${target}</code>,
version <code>${version}</code>.</p>
<table>
<tr><th>Header field</th><th>Value</th></tr>
${rows}</table>`,
  );
}

function renderPage(title: string, content: string): string {
  const safeTitle = escapeHtml(title);
  return `<!doctype html>
<html lang="en">
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${safeTitle}</title>
<style>
body { font-family: system-ui, sans-serif; max-width: 50rem; margin: 1rem auto; padding: 0 1rem; }
th, td { text-align: left; padding: 0.2em 1em 0.2em 0; vertical-align: top; }
td { overflow-wrap: anywhere; }
</style>
<main>
<h1>${safeTitle}</h1>
${content}
</main>
</html>
`;
}

/**
 * Escapes text for HTML element content and quoted attribute values.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * assert.equal(escapeHtml(`<a href="x">'&'</a>`), "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;");
 * ```
 */
export function escapeHtml(text: string): string {
  if (!HTML_SPECIAL.test(text)) return text;
  return text.replace(/[&<>"']/g, (char) => HTML_ESCAPES[char]!);
}

const HTML_SPECIAL = /[&<>"']/;

const HTML_ESCAPES: Record<string, string> = {
  "&": "&amp;",
  "<": "&lt;",
  ">": "&gt;",
  '"': "&quot;",
  "'": "&#39;",
};

// ---------------------------------------------------------------------------
// Writing the response.

const encoder = new TextEncoder();

/** The parts of a text with NULs where values go: as text, and as bytes. */
function templateParts(text: string): { text: string[]; bytes: Uint8Array[] } {
  const parts = text.split("\0");
  return { text: parts, bytes: parts.map((part) => encoder.encode(part)) };
}

const HELLO_PAGE = templateParts(helloPageTemplate("\0", "\0", "\0", "\0"));
/** One header field's row in the hello page's table, NULs for name and value. */
const HELLO_ROW = templateParts("<tr><th>\0</th><td>\0</td></tr>\n");

/**
 * Writes the hello page {@link renderHelloPage} makes as UTF-8 into `bytes`
 * and returns its length, or -1 when it does not fit. The page's own text
 * is bytes made once; only the request's values are written one by one.
 * Making the page's text and encoding it made 1.8 KB of garbage per
 * request, more than all the rest of a request.
 */
function writeHelloPage(request: RequestHead, bytes: Uint8Array): number {
  // Indexed, not destructured: destructuring an array makes an iterator.
  const page = HELLO_PAGE.bytes;
  let at = writeBytes(page[0]!, bytes, 0);
  at = writeEscaped(request.method, bytes, at);
  at = writeBytes(page[1]!, bytes, at);
  at = writeEscaped(request.target, bytes, at);
  at = writeBytes(page[2]!, bytes, at);
  at = writeEscaped(request.version, bytes, at);
  at = writeBytes(page[3]!, bytes, at);
  const row = HELLO_ROW.bytes;
  const { headers } = request;
  for (let i = 0; i < headers.length; i++) {
    const field = headers[i]!;
    at = writeBytes(row[0]!, bytes, at);
    at = writeEscaped(field[0], bytes, at);
    at = writeBytes(row[1]!, bytes, at);
    at = writeEscaped(showFieldValue(field[1]), bytes, at);
    at = writeBytes(row[2]!, bytes, at);
  }
  return writeBytes(page[4]!, bytes, at);
}

/** Copies `part` into `bytes` at `at`; returns where it ends, -1 when it does not fit (or `at` is -1). */
function writeBytes(part: Uint8Array, bytes: Uint8Array, at: number): number {
  if (at === -1 || at + part.length > bytes.length) return -1;
  bytes.set(part, at);
  return at + part.length;
}

/**
 * Writes {@link escapeHtml}`(text)` as UTF-8 into `bytes` at `at`; returns
 * where it ends, -1 when it does not fit (or `at` is -1). ASCII, as nearly
 * every value is, goes a character at a time: no string is made.
 */
function writeEscaped(text: string, bytes: Uint8Array, at: number): number {
  if (at === -1) return -1;
  for (let i = 0; i < text.length; i++) {
    const code = text.charCodeAt(i);
    if (code >= 0x80) {
      const rest = escapeHtml(text.slice(i));
      const { read, written } = encoder.encodeInto(rest, bytes.subarray(at));
      return read === rest.length ? at + written : -1;
    }
    const entity = HTML_ESCAPE_BYTES[code];
    if (entity !== undefined) {
      at = writeBytes(entity, bytes, at);
      if (at === -1) return -1;
    } else if (at < bytes.length) {
      bytes[at++] = code;
    } else {
      return -1;
    }
  }
  return at;
}

/** {@link HTML_ESCAPES} as bytes, by character code (undefined: written as it is). */
const HTML_ESCAPE_BYTES: (Uint8Array | undefined)[] = [];
for (const [char, entity] of Object.entries(HTML_ESCAPES)) {
  HTML_ESCAPE_BYTES[char.charCodeAt(0)] = encoder.encode(entity);
}

/** Options for {@link formatResponse}. */
export interface FormatOptions {
  /** Leave the body out, for HEAD (RFC 9110 9.3.2). @default false */
  omitBody?: boolean;
  /** The time for the Date field. @default new Date() */
  date?: Date;
}

/**
 * Turns a response (checked with {@link checkResponse}) into the bytes that go
 * on the wire: status line, header fields, a blank line, the body.
 * Content-Length counts bytes, not characters.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * const date = new Date(Date.UTC(1994, 10, 6, 8, 49, 37));
 * assert.equal(
 *   new TextDecoder().decode(formatResponse({ status: 200, body: "hé" }, { date })),
 *   "HTTP/1.1 200 OK\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\n" +
 *     "Content-Type: text/html; charset=utf-8\r\nContent-Length: 3\r\n" +
 *     "Connection: close\r\n\r\nhé",
 * );
 * ```
 */
export function formatResponse(
  response: TinyResponse,
  options: FormatOptions = {},
): Uint8Array {
  const { omitBody = false, date = new Date() } = options;
  return encodeResponse(response, omitBody, date.getTime()).bytes;
}

let cachedDate = { second: NaN, text: "" };

/**
 * The Date field's value. toUTCString gives the IMF-fixdate format (RFC 9110
 * 5.6.7): "Sun, 06 Nov 1994 08:49:37 GMT". It changes once a second, so it is
 * made once a second (as nginx does), not once per response.
 */
function httpDate(time: number): string {
  const second = Math.floor(time / 1000);
  if (second !== cachedDate.second) {
    cachedDate = { second, text: new Date(time).toUTCString() };
  }
  return cachedDate.text;
}

/**
 * A buffer reused for responses (serveTiny keeps one per connection and
 * passes it from connection to connection): the body is encoded at `body`,
 * a view from {@link HEAD_ROOM} on, and the head is written just in front.
 */
interface ResponseBuffer {
  bytes: Uint8Array;
  body: Uint8Array;
}

/** Bytes kept in front of the body in a {@link ResponseBuffer}, for the head. */
const HEAD_ROOM = 1024;

function newResponseBuffer(size: number): ResponseBuffer {
  const bytes = new Uint8Array(size);
  return { bytes, body: bytes.subarray(HEAD_ROOM) };
}

/**
 * {@link formatResponse}, also saying how long the body is. With `into`, the
 * bytes go into that buffer when they fit, so a response costs no new memory.
 */
function encodeResponse(
  response: Outgoing,
  omitBody: boolean,
  time: number,
  into?: ResponseBuffer,
): { bytes: Uint8Array; bodyLength: number } {
  const { status, headers = NO_FIELDS } = response;
  // The body first: Content-Length counts bytes, and encoding is how we
  // learn how many there are. The head goes in front of it after.
  const encodedLength = into === undefined
    ? -1
    : "helloFor" in response
    ? writeHelloPage(response.helloFor, into.body)
    : encodeBody(response.body, into.body);
  if (encodedLength !== -1) {
    const bodyLength = encodedLength;
    const end = omitBody ? HEAD_ROOM : HEAD_ROOM + bodyLength;
    if (headers.length === 0) {
      // The usual answer, no fields of the responder's own: its head is
      // bytes made once a second, with the length's digits put in between.
      const start = writePlainHead(into!.bytes, status, time, bodyLength);
      return { bytes: into!.bytes.subarray(start, end), bodyLength };
    }
    const head = headText(status, time, headers, bodyLength);
    // The head is ASCII (checkResponse refuses anything else), one byte per
    // character: written at the start, then moved up to meet the body.
    if (head.length <= HEAD_ROOM) {
      const start = HEAD_ROOM - head.length;
      encoder.encodeInto(head, into!.bytes);
      into!.bytes.copyWithin(start, 0, head.length);
      return { bytes: into!.bytes.subarray(start, end), bodyLength };
    }
  }
  const bodyBytes = encoder.encode(
    "helloFor" in response ? renderHelloPage(response.helloFor) : response.body,
  );
  const headBytes = encoder.encode(
    headText(status, time, headers, bodyBytes.length),
  );
  if (omitBody) return { bytes: headBytes, bodyLength: bodyBytes.length };
  const bytes = new Uint8Array(headBytes.length + bodyBytes.length);
  bytes.set(headBytes);
  bytes.set(bodyBytes, headBytes.length);
  return { bytes, bodyLength: bodyBytes.length };
}

const NO_FIELDS: [string, string][] = [];

/** Encodes `body` into `bytes`; returns how many bytes it took, or -1 when it does not fit. */
function encodeBody(body: string, bytes: Uint8Array): number {
  const { read, written } = encoder.encodeInto(body, bytes);
  return read === body.length ? written : -1;
}

/** The status line and header fields of a response, and the blank line. */
function headText(
  status: number,
  time: number,
  headers: [string, string][],
  bodyLength: number,
): string {
  const typed = headers.some(([name]) => name.toLowerCase() === "content-type");
  // We always answer as HTTP/1.1, even to HTTP/1.0 requests (RFC 9110 6.2).
  let head = `HTTP/1.1 ${status} ${STATUS_TEXT[status] ?? ""}\r\n` +
    `Date: ${httpDate(time)}\r\n`;
  if (!typed) head += "Content-Type: text/html; charset=utf-8\r\n";
  // A HEAD response carries the Content-Length the GET body would have (RFC 9110 8.6).
  head += `Content-Length: ${bodyLength}\r\nConnection: close\r\n`;
  for (const [name, value] of headers) head += `${name}: ${value}\r\n`;
  return head + "\r\n";
}

/**
 * Per status, the bytes of {@link headText} with no fields of the
 * responder's own, made once a second: before the length's digits and after.
 */
const plainHeads = new Map<
  number,
  { second: number; bytes: Uint8Array; end: Uint8Array }
>();
const LENGTH_FIELD = "Content-Length: ";

/**
 * Writes the head {@link headText} would make for a response without fields
 * of its own into `bytes`, ending at {@link HEAD_ROOM}; returns where it starts.
 */
function writePlainHead(
  bytes: Uint8Array,
  status: number,
  time: number,
  bodyLength: number,
): number {
  const second = Math.floor(time / 1000);
  let start = plainHeads.get(status);
  if (start?.second !== second) {
    const text = headText(status, time, [], 0); // "...Content-Length: 0\r\n..."
    const digits = text.indexOf(LENGTH_FIELD) + LENGTH_FIELD.length;
    start = {
      second,
      bytes: encoder.encode(text.slice(0, digits)),
      end: encoder.encode(text.slice(digits + 1)),
    };
    plainHeads.set(status, start);
  }
  let at = HEAD_ROOM - start.end.length;
  bytes.set(start.end, at);
  // Content-Length's digits, the last first.
  let rest = bodyLength;
  do {
    bytes[--at] = 0x30 + rest % 10;
    rest = Math.floor(rest / 10);
  } while (rest > 0);
  at -= start.bytes.length;
  bytes.set(start.bytes, at);
  return at;
}

/**
 * Writes all of `bytes`. One `write` may take only part of a buffer (the
 * socket's send buffer is full), so we keep writing the rest until it is gone.
 */
export async function writeAll(
  writer: ByteWriter,
  bytes: Uint8Array,
): Promise<void> {
  let written = await writer.write(bytes);
  while (written < bytes.length) {
    written += await writer.write(bytes.subarray(written));
  }
}

/**
 * {@link writeAll} for the rest of an answer the socket did not take at once:
 * the client must take some of it every `sendTimeoutMs`, else the
 * connection is closed (see {@link SEND_TIMEOUT_MS}) and this throws.
 */
async function writeRest(
  conn: Deno.Conn,
  bytes: Uint8Array,
  sendTimeoutMs: number,
  peer: Peer,
): Promise<void> {
  let timedOut = false;
  const deadline = deadlines.add(
    sendTimeoutMs,
    () => {
      timedOut = true;
      closeQuietly(conn);
    },
    "send",
    undefined,
    peer,
  );
  try {
    let written = 0;
    while (written < bytes.length) {
      written += await conn.write(bytes.subarray(written));
      deadline.at = Date.now() + sendTimeoutMs;
      deadline.since = deadlines.tick();
    }
  } catch (error) {
    if (!timedOut) throw error;
    const timeout = new Error(`no progress for ${sendTimeoutMs} ms`);
    timeout.name = "SendTimeout"; // what the log line shows
    throw timeout;
  } finally {
    deadlines.remove(deadline);
  }
}

/**
 * Closes a connection in stages (RFC 9112 9.6). If we closed at once while the
 * client is still sending (a body, or the rest of an oversize head), the
 * unread bytes make our TCP stack send a reset, and the client may lose our
 * response before reading it. So: end our side (the client sees the end of the
 * response), read and discard what still arrives, within limits, then close.
 */
async function closeGracefully(
  conn: Deno.Conn,
  lingerMs: number,
  peer: Peer,
): Promise<void> {
  let closedByTimer = false;
  const deadline = deadlines.add(
    lingerMs,
    () => {
      closedByTimer = true;
      closeQuietly(conn);
    },
    "linger",
    undefined,
    peer,
  );
  try {
    await conn.closeWrite();
    let discarded = 0;
    while (discarded < LINGER_MAX_BYTES) {
      const count = await conn.read(DISCARD_BUFFER);
      if (count === null) break;
      discarded += count;
    }
  } catch {
    // The client has gone, or the timer closed the connection: either way, done.
  } finally {
    deadlines.remove(deadline);
    if (!closedByTimer) closeQuietly(conn);
  }
}

/**
 * Where every lingering connection reads what it discards: one buffer for
 * all, since nothing read into it is looked at (a buffer each was 4 KB per
 * connection that a pipelining flood kept lingering).
 */
const DISCARD_BUFFER = new Uint8Array(4096);

/**
 * Whether the client may still be sending when we have answered, so that
 * closing at once could reset the connection (see {@link closeGracefully}).
 * As nginx's `lingering_close on` does: only when the request announced
 * content, or more bytes came than the head, or the head was not understood
 * (its framing is unknown). A plain GET that sent its head and nothing else
 * is closed at once: one read, one timer and a shutdown call fewer.
 */
function maySendMore(
  result: HeadReadResult | OverLimit,
  request: RequestHead | null,
): boolean {
  if (
    result.kind === "too-large" || result.kind === "target-too-long" ||
    result.kind === "over-limit"
  ) {
    return true;
  }
  if (result.kind !== "head") return false;
  if (result.bytesAfter > 0 || request === null) return true;
  for (const [name, value] of request.headers) {
    if (
      (name.length === 14 && name.toLowerCase() === "content-length" &&
        value !== "0") ||
      (name.length === 17 && name.toLowerCase() === "transfer-encoding")
    ) return true;
  }
  return false;
}

/** Closes a connection that may already be closed. */
function closeQuietly(conn: Deno.Conn): void {
  try {
    conn.close();
  } catch {
    // Already closed.
  }
}

// ---------------------------------------------------------------------------
// Logging: the request head as received, and one access log line per request.

/**
 * Shows raw bytes as readable text, so that a client can send no escape code
 * to our terminal and no invisible trick to the page: valid UTF-8 is shown as
 * the characters it encodes, each byte that is not part of valid UTF-8 as
 * `\xNN`, control characters (C0, DEL, C1), invisible format characters (the
 * bidirectional overrides of "Trojan Source", zero-width characters) and line
 * separators as `\xNN` or `\u{NNNN}`, and the backslash itself as `\x5c`, so
 * that every escape seen is one the server made.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * const bytes = new Uint8Array([0x68, 0xc3, 0xa9, 0xff, 0x1b, 0x5b, 0x32, 0x4a]);
 * assert.equal(showBytes(bytes), "h\u00e9\\xff\\x1b[2J");
 * ```
 */
export function showBytes(bytes: Uint8Array): string {
  let text = "";
  let i = 0;
  while (i < bytes.length) {
    // Most of what clients send is printable ASCII: copy such runs as they are.
    let end = i;
    while (end < bytes.length && isPlainAscii(bytes[end]!)) end++;
    if (end > i) {
      text += byteString(bytes.subarray(i, end));
      i = end;
      continue;
    }
    const sequence = readUtf8(bytes, i);
    if (sequence === null) {
      text += `\\x${hex(bytes[i]!, 2)}`;
      i += 1;
      continue;
    }
    const [codePoint, length] = sequence;
    const char = String.fromCodePoint(codePoint);
    if (codePoint < 0x80 || UNSAFE_CHAR.test(char)) {
      // Controls, DEL and the backslash (plain ASCII was copied above).
      text += codePoint < 0x80
        ? `\\x${hex(codePoint, 2)}`
        : `\\u{${hex(codePoint, 4)}}`;
    } else {
      text += char;
    }
    i += length;
  }
  return text;
}

/** Printable ASCII other than the backslash: shown as itself. */
function isPlainAscii(byte: number): boolean {
  return byte >= 0x20 && byte <= 0x7e && byte !== 0x5c;
}

/**
 * Bytes to a string, one character per byte (Latin-1 as such; TextDecoder's
 * "latin1" is really windows-1252). `apply` takes the bytes without copying
 * them to an array, unlike a spread; chunks keep under the argument limit.
 */
function byteString(bytes: Uint8Array): string {
  // ASCII, as heads nearly always are, decodes the same in UTF-8, faster.
  if (isAsciiBytes(bytes)) return asciiDecoder.decode(bytes);
  let text = "";
  for (let i = 0; i < bytes.length; i += 4096) {
    const chunk = bytes.subarray(i, i + 4096) as unknown as number[];
    text += String.fromCharCode.apply(null, chunk);
  }
  return text;
}

const asciiDecoder = new TextDecoder();

function isAsciiBytes(bytes: Uint8Array): boolean {
  for (let i = 0; i < bytes.length; i++) if (bytes[i]! >= 0x80) return false;
  return true;
}

// Unicode controls (Cc), format characters (Cf: bidi overrides, zero-width
// joiners, BOM) and the line and paragraph separators.
const UNSAFE_CHAR = /[\p{Cc}\p{Cf}\p{Zl}\p{Zp}]/u;

function hex(value: number, digits: number): string {
  return value.toString(16).padStart(digits, "0");
}

/**
 * The code point and length of the UTF-8 sequence at `bytes[at]`, or null if
 * the bytes there are not valid UTF-8 (RFC 3629 4: no overlong forms, no
 * surrogates, nothing above U+10FFFF).
 */
function readUtf8(
  bytes: Uint8Array,
  at: number,
): [codePoint: number, length: number] | null {
  const lead = bytes[at]!;
  if (lead < 0x80) return [lead, 1];
  const [length, bits, smallest] = lead >= 0xc2 && lead <= 0xdf
    ? [2, lead & 0x1f, 0x80]
    : lead >= 0xe0 && lead <= 0xef
    ? [3, lead & 0x0f, 0x800]
    : lead >= 0xf0 && lead <= 0xf4
    ? [4, lead & 0x07, 0x10000]
    : [0, 0, 0];
  if (length === 0 || at + length > bytes.length) return null;
  let codePoint = bits;
  for (let k = 1; k < length; k++) {
    const next = bytes[at + k]!;
    if ((next & 0xc0) !== 0x80) return null;
    codePoint = (codePoint << 6) | (next & 0x3f);
  }
  const surrogate = codePoint >= 0xd800 && codePoint <= 0xdfff;
  if (codePoint < smallest || codePoint > 0x10ffff || surrogate) return null;
  return [codePoint, length];
}

/**
 * A header value as the parser keeps it (one character per byte, as Fetch's
 * `Headers` do) shown with {@link showBytes}: `h\xc3\xa9llo` becomes `héllo`.
 */
function showFieldValue(value: string): string {
  if (PLAIN_ASCII.test(value)) return value;
  return showBytes(Uint8Array.from(value, (char) => char.charCodeAt(0)));
}

const PLAIN_ASCII = /^[\x20-\x5b\x5d-\x7e]*$/;

/** The first line of a head, without its line end. */
function firstLine(head: Uint8Array): Uint8Array {
  const end = head.indexOf(LF);
  return head.subarray(0, end > 0 && head[end - 1] === CR ? end - 1 : end);
}

/** The request head for the console, one line per line received. */
function formatHead(head: Uint8Array, client: string): string {
  const lines = showBytes(head).replaceAll("\\x0d\\x0a", "\n").replaceAll(
    "\\x0a",
    "\n",
  );
  return `--- request from ${client} ---\n${lines.trimEnd()}\n---`;
}

const MONTHS = "Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec".split(" ");

/** One request, as {@link formatAccessLog} writes it. */
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
 * codes. The same function, with the same output, is in server_files.ts and
 * message_board.ts.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * assert.equal(
 *   formatAccessLog({ client: "127.0.0.1", date: new Date(0), requestLine: "GET / HTTP/1.1", status: 200, bodyBytes: 512 }),
 *   '127.0.0.1 - - [01/Jan/1970:00:00:00 +0000] "GET / HTTP/1.1" 200 512',
 * );
 * ```
 */
export function formatAccessLog(entry: AccessLogEntry): string {
  const { client, date, requestLine, status, bodyBytes } = entry;
  const line = accessLogLine(
    client,
    date.getTime(),
    requestLine,
    status,
    bodyBytes,
  );
  return entry.referer === undefined && entry.userAgent === undefined
    ? line
    : line + combinedFields(entry.referer ?? null, entry.userAgent ?? null);
}

/** {@link formatAccessLog} with the time in milliseconds: no Date per request. */
function accessLogLine(
  client: string | null,
  time: number,
  requestLine: string | null,
  status: number,
  bodyBytes: number | null,
): string {
  const request = requestLine === null ? "-" : escapeForLog(requestLine);
  return `${client ?? "-"} - - [${logTime(time)}] "${request}" ${status} ${
    bodyBytes ? bodyBytes : "-"
  }`;
}

let cachedLogTime = { second: NaN, text: "" };

/** `06/Nov/1994:08:49:37 +0000`, made once a second as {@link httpDate} is. */
function logTime(time: number): string {
  const second = Math.floor(time / 1000);
  if (second !== cachedLogTime.second) {
    const date = new Date(time);
    const pad = (n: number) => String(n).padStart(2, "0");
    const text =
      `${pad(date.getUTCDate())}/${
        MONTHS[date.getUTCMonth()]
      }/${date.getUTCFullYear()}:` +
      `${pad(date.getUTCHours())}:${pad(date.getUTCMinutes())}:${
        pad(date.getUTCSeconds())
      } +0000`;
    cachedLogTime = { second, text };
  }
  return cachedLogTime.text;
}

/** One request, as {@link formatJsonAccessLog} writes it. */
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
 * server_files.ts and message_board.ts.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
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
    (char) => `\\u${hex(char.charCodeAt(0), 4)}`,
  );
}

/** Printable ASCII but `"` and `\`: what a log line shows as it is. */
const LOG_PLAIN = /^[\x20\x21\x23-\x5b\x5d-\x7e]*$/;
const LOG_ESCAPED = /[^\x20\x21\x23-\x5b\x5d-\x7e]/gu;

/** Text for a log line, escaped as {@link formatAccessLog} says. */
function escapeForLog(text: string): string {
  if (LOG_PLAIN.test(text)) return text;
  return text.replace(LOG_ESCAPED, (char) => {
    const code = char.codePointAt(0)!;
    return code < 0x100 ? `\\x${hex(code, 2)}` : `\\u{${hex(code, 4)}}`;
  });
}

// ---------------------------------------------------------------------------
// One connection: read, parse, answer, close.

/** How one connection is handled; set once per server. */
interface ConnectionSettings {
  quiet: boolean;
  /** Access-log lines as JSON ({@link formatJsonAccessLog}), not the Common Log Format. */
  json: boolean;
  /** Access-log lines with the Referer and User-Agent ({@link combinedFields}). */
  combined: boolean;
  log: (line: string) => void;
  headTimeoutMs: number;
  lingerMs: number;
  sendTimeoutMs: number;
  idleSignal: AbortSignal;
  allowedHosts: readonly string[];
  respond: Responder;
  /** Called once when the connection is closed and done with. */
  done: (connection: OpenConnection) => void;
}

/** A connection the server has open, in its {@link SlotList}. */
interface OpenConnection {
  conn: Deno.Conn;
  slot: number;
  /** The client's address (its IP address as text); null on a Unix socket. */
  client: string | null;
  /** The same address as the server counts it. */
  peer: Peer;
  /**
   * Its address held all the connections it may, none of which could make
   * room: it gets 429 without its head being read.
   */
  overLimit: boolean;
  /**
   * Set while it waits for a responder's promise: ends the wait when the
   * shutdown grace is over (see {@link awaitAnswer}).
   */
  abandon: (() => void) | undefined;
  /**
   * Closed by the server when the shutdown grace ended: the error its read
   * or write then gets is the server's doing, and not logged (the shutdown
   * logs one line for all of them).
   */
  cut: boolean;
}

/** What handleConnection answers a connection it does not read (see {@link OpenConnection}). */
type OverLimit = { kind: "over-limit" };
const OVER_LIMIT: OverLimit = { kind: "over-limit" };

/**
 * Buffers of finished connections, for the next ones: fresh buffers for
 * every connection are memory the garbage collector must find and free,
 * thousands of times a second. A connection holds one buffer at a time:
 * the head's while it reads and parses the head, the response's only from
 * when its answer is encoded until it is sent. A client that sends half a
 * head and waits holds the 8 KiB of the head, not the 16 KiB of an answer
 * too. A response larger than its buffer (a page with many long header
 * values) gets a buffer of its own.
 */
const spareHeadBuffers: Uint8Array[] = [];
const spareResponseBuffers: ResponseBuffer[] = [];
const MAX_SPARE_BUFFERS = 64;
const RESPONSE_BUFFER_BYTES = 16 * 1024;

/** Keeps `buffer` for a later connection, unless enough are kept already. */
function keepSpare<T>(spares: T[], buffer: T): void {
  if (spares.length < MAX_SPARE_BUFFERS) spares.push(buffer);
}

async function handleConnection(
  connection: OpenConnection,
  settings: ConnectionSettings,
): Promise<void> {
  const { conn, client } = connection;
  const { quiet, log, headTimeoutMs, lingerMs, idleSignal } = settings;
  // The JSON log's time and duration count from the accept.
  const arrived = settings.json ? Date.now() : 0;
  const startedAt = settings.json ? performance.now() : 0;
  // Who it is for the console: address and port, or the socket.
  const from = client === null
    ? "a Unix socket"
    : `${client}:${(conn.remoteAddr as Deno.NetAddr).port}`;
  const head = spareHeadBuffers.pop() ?? new Uint8Array(MAX_HEAD_BYTES);
  let reusable = false;
  let out: ResponseBuffer | undefined;
  let closed = false;
  try {
    const result = connection.overLimit ? OVER_LIMIT : await readHead(conn, {
      timeoutMs: headTimeoutMs,
      idleSignal,
      buffer: head,
    }, connection.peer);
    // After a timeout or a shutdown a read into the buffer is still pending:
    // that buffer is never reused.
    reusable = result.kind !== "timeout" && result.kind !== "closed";
    // A browser's spare connection that was never used, or a shutdown: no request, no answer.
    if (result.kind === "closed") return;

    let response: Outgoing;
    let request: RequestHead | null = null;
    let requestLine: string | null = null;
    // Only HEAD's answer goes without its body (see answerAsGet).
    let omitBody = false;
    if (result.kind === "head") {
      const parsed = parseRequestHead(result.head);
      if (parsed.ok) request = parsed.request;
      // One character per byte: bytes past ASCII are logged as \xNN.
      requestLine = parsed.ok
        ? `${request!.method} ${request!.target} ${request!.version}`
        : byteString(firstLine(result.head));
      let problem = parsed.ok
        ? null
        : `${parsed.status} because: ${parsed.reason}`;
      if (parsed.ok) {
        omitBody = parsed.request.method === "HEAD";
        const asked = omitBody ? answerAsGet(parsed.request) : parsed.request;
        const name = requestHostName(asked);
        if (name !== null && !isAllowedHost(name, settings.allowedHosts)) {
          response = misdirectedResponse(name);
          problem = `421 because: this server does not answer to ${
            showBytes(encoder.encode(name))
          } (see --allowed-host)`;
        } else if (settings.respond === respondTo) {
          response = routeRequest(asked);
        } else {
          const answered = answer(settings.respond, asked, log);
          response = answered instanceof Promise
            ? await awaitAnswer(connection, answered, log)
            : answered;
        }
      } else {
        response = errorResponse(parsed.status);
      }
      if (!quiet) {
        log(formatHead(result.head, from));
        if (problem) log(`    ${problem}`);
      }
    } else if (result.kind === "not-http") {
      response = errorResponse(400);
      if (!quiet) {
        log(formatHead(result.received, from));
        log(`    400 because: ${describeNotHttp(result.received)}`);
      }
    } else {
      const statusFor = {
        "too-large": 431,
        "target-too-long": 414,
        "timeout": 408,
        "incomplete": 400,
        "over-limit": 429,
      } as const;
      response = errorResponse(statusFor[result.kind]);
    }

    // The head's bytes are not looked at again: its buffer can serve the
    // next connection while this one's answer goes out.
    if (reusable) keepSpare(spareHeadBuffers, head);
    reusable = false;

    // Everything the rest needs is worked out before the write, so that the
    // request and the page are garbage while the bytes go out: less memory
    // held per connection in flight.
    const now = Date.now();
    out = spareResponseBuffers.pop() ??
      newResponseBuffer(RESPONSE_BUFFER_BYTES);
    const { bytes, bodyLength } = encodeResponse(response, omitBody, now, out);
    const accessLine = settings.json ? "" : accessLogLine(
      client,
      now,
      requestLine,
      response.status,
      omitBody ? 0 : bodyLength,
    ) + (settings.combined
      ? combinedFields(
        request && (fieldValues(request.headers, "referer")[0] ?? null),
        request && (fieldValues(request.headers, "user-agent")[0] ?? null),
      )
      : "");
    const linger = maySendMore(result, request);
    // One write nearly always takes it all; the rest waits for the client.
    const written = await conn.write(bytes);
    if (written < bytes.length) {
      await writeRest(
        conn,
        bytes.subarray(written),
        settings.sendTimeoutMs,
        connection.peer,
      );
    }
    log(
      settings.json
        ? formatJsonAccessLog({
          date: new Date(arrived),
          client,
          // From the line as received, so that a refused one is logged too.
          method: requestLine?.split(" ", 1)[0] ?? null,
          target: requestLine?.split(" ", 2)[1] ?? null,
          status: response.status,
          bodyBytes: omitBody ? 0 : bodyLength,
          durationMs: performance.now() - startedAt,
        })
        : accessLine,
    );
    if (linger) {
      closed = true;
      await closeGracefully(conn, lingerMs, connection.peer);
    }
  } catch (error) {
    // A reset or broken connection is normal on a network: note it, carry on.
    if (!connection.cut) {
      log(`${from} connection error: ${describeError(error)}`);
    }
  } finally {
    // Closed exactly once: closing a closed Conn throws, and building that
    // error costs more than the close.
    if (!closed) closeQuietly(conn);
    if (reusable) keepSpare(spareHeadBuffers, head);
    // Every write into it has settled by now, even after a send timeout.
    if (out) keepSpare(spareResponseBuffers, out);
    settings.done(connection);
  }
}

/**
 * HEAD is GET without the body (RFC 9110 9.3.2), and this is the one place
 * that knows it, at the edge: the request is answered as the GET it stands
 * for, by the default page or any {@link Responder} (none of them ever sees
 * HEAD), and handleConnection leaves the body off when it makes the bytes,
 * so that the head, Content-Length included (RFC 9110 8.6), is GET's. As
 * Hono answers HEAD with GET's response minus the body.
 */
function answerAsGet(request: RequestHead): RequestHead {
  return { ...request, method: "GET" };
}

/**
 * Waits for a responder's answer, or until the server stops waiting for it:
 * a responder whose promise never settles (an upstream call without a time
 * limit) must not keep a shutdown from finishing, so when the shutdown grace
 * is over the wait ends with a 500 (the connection is closed by then).
 */
function awaitAnswer(
  connection: OpenConnection,
  answered: Promise<TinyResponse>,
  log: (line: string) => void,
): Promise<TinyResponse> {
  return new Promise<TinyResponse>((resolve) => {
    connection.abandon = () => {
      log("respond had not answered when the shutdown grace ended");
      resolve(errorResponse(500));
    };
    // `answer` never rejects: a responder's failure is already a 500.
    answered.then(resolve);
  }).finally(() => connection.abandon = undefined);
}

/** Why bytes that cannot begin a request were refused, for the console. */
function describeNotHttp(received: Uint8Array): string {
  // RFC 8446 5.1: a TLS record starts with its type, 22 for a handshake.
  return received[0] === 0x16
    ? "a TLS handshake on this plain HTTP port (did the client use https://?)"
    : "the first bytes cannot begin an HTTP/1.x request line";
}

/**
 * Asks `respond` for the answer and checks it can be sent as it is; a
 * responder that throws, or answers something this server cannot frame
 * honestly, gives a generic 500 and one line in the log. An answer given at
 * once (as {@link respondTo} gives it) is returned at once, not as a
 * promise: awaiting it would cost a turn of the microtask queue on every
 * request.
 */
function answer(
  respond: Responder,
  request: RequestHead,
  log: (line: string) => void,
): TinyResponse | Promise<TinyResponse> {
  try {
    const response = respond(request);
    if (response instanceof Promise) {
      return response.then(checkedResponse).catch((error) =>
        respondFailed(error, request, log)
      );
    }
    return checkedResponse(response);
  } catch (error) {
    return respondFailed(error, request, log);
  }
}

function checkedResponse(response: TinyResponse): TinyResponse {
  checkResponse(response);
  return response;
}

function respondFailed(
  error: unknown,
  request: RequestHead,
  log: (line: string) => void,
): TinyResponse {
  const what = error instanceof Error
    ? `${error.name}: ${error.message}`
    : String(error);
  log(
    `respond failed for ${request.target}: ${showBytes(encoder.encode(what))}`,
  );
  return errorResponse(500);
}

/** A short name for an error, never a stack trace: `ConnectionReset`, `BrokenPipe`. */
function describeError(error: unknown): string {
  return error instanceof Error ? error.name : String(error);
}

// ---------------------------------------------------------------------------
// The server: accept connections until told to stop.

/** Options for {@link serveTiny}. */
export interface TinyServerOptions {
  /** Port to listen on; 0 picks a free one (read it from `server.addr.port`). @default 8080 */
  port?: number;
  /** Address to listen on. "0.0.0.0" would let other machines connect. @default "127.0.0.1" */
  hostname?: string;
  /** Serve one connection, then stop. @default false */
  once?: boolean;
  /** Do not print request heads (access log lines are still written). @default false */
  quiet?: boolean;
  /**
   * The access log's format: `"clf"` ({@link formatAccessLog}) or `"json"`
   * ({@link formatJsonAccessLog}). @default "clf"
   */
  logFormat?: "clf" | "combined" | "json";
  /** Where output lines go, one call per line. @default console.log (in batches) */
  log?: (line: string) => void;
  /** See {@link HEAD_TIMEOUT_MS}. @default {HEAD_TIMEOUT_MS} */
  headTimeoutMs?: number;
  /** See {@link LINGER_TIMEOUT_MS}. @default {LINGER_TIMEOUT_MS} */
  lingerMs?: number;
  /** See {@link SHUTDOWN_GRACE_MS}. @default {SHUTDOWN_GRACE_MS} */
  shutdownGraceMs?: number;
  /** See {@link SEND_TIMEOUT_MS}. @default {SEND_TIMEOUT_MS} */
  sendTimeoutMs?: number;
  /** See {@link MAX_CONNECTIONS}. @default {MAX_CONNECTIONS} */
  maxConnections?: number;
  /** See {@link MAX_CONNECTIONS_PER_CLIENT}. @default {MAX_CONNECTIONS_PER_CLIENT} */
  maxConnectionsPerClient?: number;
  /**
   * Host names answered besides the default ones (see {@link allowedHostsFor});
   * `.example.com` also allows its subdomains. Requests for any other name get
   * 421. @default []
   */
  allowedHosts?: string[];
  /** Decides the answer to each request; see {@link Responder}. @default {respondTo} */
  respond?: Responder;
}

/**
 * What `console.log` prints, a batch of lines at a time: the lines of the
 * last {@link LOG_FLUSH_MS} in one write, in order. A `console.log` costs 6
 * to 12 µs and a timer about as much, as much as a tenth of a whole request
 * here; a batch of many lines costs about one line's worth. The batch is
 * written to stdout as bytes rather than through `console.log`: under load,
 * `console.log` kept requests' garbage alive past minor garbage collections
 * (about 75 KB promoted at each one), which grew V8's young generation and
 * added 25 MB to the peak memory.
 *
 * Each line goes into the batch's bytes at once, not kept as a string until
 * the write: at 11,000 requests a second the strings of 10 ms of lines were
 * 40 of the 110 KB that survived each minor garbage collection. V8 doubles
 * its young generation each time the bytes that survived add up to its size,
 * so they took it from 16 to 32 MB near the end of 36 s of the benchmark's tiny
 * scenario (peak RSS 114 MB, against 88 MB with no such strings).
 */
function batchedConsoleLog(): (line: string) => void {
  const batch = new Uint8Array(LOG_BATCH_BYTES);
  let used = 0;
  let scheduled = false;
  const write = (bytes: Uint8Array) => {
    try {
      // Like any write, one writeSync may take only part of the bytes.
      let written = 0;
      while (written < bytes.length) {
        written += Deno.stdout.writeSync(bytes.subarray(written));
      }
    } catch {
      // Nowhere to write to (say, piped into `head`): keep serving.
    }
  };
  const flush = () => {
    scheduled = false;
    if (used > 0) write(batch.subarray(0, used));
    used = 0;
  };
  return (line) => {
    // A line takes at most 3 bytes per UTF-16 unit, and its line end.
    if (used + line.length * 3 + 1 > batch.length) {
      flush();
      if (line.length * 3 + 1 > batch.length) {
        write(encoder.encode(line + "\n"));
        return;
      }
    }
    used = writeLine(line, batch, used);
    if (!scheduled) {
      scheduled = true;
      setTimeout(flush, LOG_FLUSH_MS);
    }
  };
}

/**
 * Writes `line` and a line end into `bytes` from `at`, returns where it
 * ends. Log lines are ASCII nearly always (the access log escapes everything
 * else): those are copied a character at a time, which makes no garbage.
 */
function writeLine(line: string, bytes: Uint8Array, at: number): number {
  let i = 0;
  for (; i < line.length; i++) {
    const code = line.charCodeAt(i);
    if (code >= 0x80) break;
    bytes[at + i] = code;
  }
  let end = at + i;
  if (i < line.length) {
    end += encoder.encodeInto(line.slice(i), bytes.subarray(end)).written;
  }
  bytes[end] = 0x0a;
  return end + 1;
}

/**
 * Logs a line at most once a second: a flood makes room once per connection,
 * and a line each time would flood the log too. Lines in between are counted
 * into the next one.
 */
function everySecond(log: (line: string) => void): (line: string) => void {
  let last = -Infinity;
  let skipped = 0;
  return (line) => {
    const now = Date.now();
    if (now - last < 1000) {
      skipped++;
      return;
    }
    last = now;
    log(
      skipped === 0
        ? line
        : `${line} (and ${skipped} more since the last such line)`,
    );
    skipped = 0;
  };
}

/**
 * The client an address stands for, as the key for the per-client limit
 * ({@link MAX_CONNECTIONS_PER_CLIENT}): the address itself, but IPv6
 * clients by their /64 network, since one machine usually has a whole /64
 * to pick addresses from, and an IPv4 client on a dual-stack socket by its
 * IPv4 address. The same function, with the same output, is in
 * message_board.ts.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * assert.equal(clientKey("2001:db8:1:2:aaaa::1"), "2001:db8:1:2::/64");
 * assert.equal(clientKey("::ffff:192.0.2.7"), "192.0.2.7");
 * ```
 */
export function clientKey(address: string | undefined): string {
  if (address === undefined || address === "") return "unknown";
  if (!address.includes(":")) return address; // IPv4, as nearly always
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

/** True when `accept` failed because that one connection was reset before we took it. */
function isGoneBeforeAccept(error: unknown): boolean {
  return error instanceof Deno.errors.NotConnected ||
    error instanceof Deno.errors.ConnectionAborted ||
    error instanceof Deno.errors.ConnectionReset;
}

/** Options for {@link serveTiny} on a Unix domain socket. */
export interface TinyUnixServerOptions extends TinyServerOptions {
  /**
   * A Unix domain socket to listen on instead of `hostname` and `port`, for
   * a proxy on the same machine (`--allow-read` and `--allow-write` of the
   * path, and `--allow-net=unix:PATH`). Every peer on it counts as one client,
   * not held to {@link MAX_CONNECTIONS_PER_CLIENT}.
   */
  path: string;
}

/** A running server. */
export interface TinyServer<A extends Deno.Addr = Deno.NetAddr> {
  /** The address it listens on, with the real port (or the socket's path). */
  addr: A;
  /** Settles when the server has stopped and every connection is closed. */
  finished: Promise<void>;
  /** Stops accepting, lets requests in progress finish (bounded), closes idle connections. */
  shutdown(): Promise<void>;
}

/**
 * Listens and serves until {@link TinyServer.shutdown} is called (or, with
 * `once`, until one connection is done). Each connection is handled on its
 * own, so a slow client never delays another.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * const server = serveTiny({ port: 0, log: () => {} });
 * const page = await fetch(`http://127.0.0.1:${server.addr.port}/`);
 * assert.equal(page.status, 200);
 * assert.match(await page.text(), /Hello from server_tiny\.ts/);
 * await server.shutdown();
 * ```
 */
export function serveTiny(options?: TinyServerOptions): TinyServer;
/** {@link serveTiny} on a Unix domain socket (`path`), for a proxy on the same machine. */
export function serveTiny(
  options: TinyUnixServerOptions,
): TinyServer<Deno.UnixAddr>;
export function serveTiny(
  options: TinyServerOptions | TinyUnixServerOptions = {},
): TinyServer<Deno.NetAddr | Deno.UnixAddr> {
  const path = "path" in options ? options.path : undefined;
  const {
    port = 8080,
    hostname = "127.0.0.1",
    once = false,
    quiet = false,
    logFormat = "clf",
    log: writeLine = batchedConsoleLog(),
    headTimeoutMs = HEAD_TIMEOUT_MS,
    lingerMs = LINGER_TIMEOUT_MS,
    shutdownGraceMs = SHUTDOWN_GRACE_MS,
    sendTimeoutMs = SEND_TIMEOUT_MS,
    maxConnections = MAX_CONNECTIONS,
    maxConnectionsPerClient = MAX_CONNECTIONS_PER_CLIENT,
    allowedHosts = [],
    respond = respondTo,
  } = options;
  const listener: Deno.Listener = path === undefined
    ? Deno.listen({ hostname, port, transport: "tcp" })
    : Deno.listen({ path, transport: "unix" });
  const addr = listener.addr as Deno.NetAddr | Deno.UnixAddr;
  const connections = new SlotList<OpenConnection>();
  // Each client address with a connection open, and how many it holds.
  const peers = new Map<string, Peer>();
  const stopping = new AbortController();
  let listening = true;
  // Resolves `finished` once the last connection is done, after the listener closed.
  let allDone: (() => void) | undefined;
  // Set while acceptConnections waits for a connection to close.
  let closedOne: (() => void) | undefined;

  // If the output has gone away (say, piped into `head`), keep serving anyway.
  const log = (line: string) => {
    try {
      writeLine(line);
    } catch {
      // Nowhere to write to.
    }
  };
  const settings = {
    quiet,
    json: logFormat === "json",
    combined: logFormat === "combined",
    log,
    headTimeoutMs,
    lingerMs,
    sendTimeoutMs,
    idleSignal: stopping.signal,
    allowedHosts: allowedHostsFor(
      hostname,
      "hostname" in addr ? [addr.hostname, ...allowedHosts] : allowedHosts,
    ),
    respond,
    done(connection: OpenConnection) {
      connections.remove(connection);
      const { peer } = connection;
      if (--peer.held === 0) peers.delete(peer.address);
      closedOne?.();
      if (connections.items.length === 0) allDone?.();
    },
  };

  function stopListening(): void {
    if (!listening) return;
    listening = false;
    listener.close();
  }

  /** Settles when a connection closes, or after `ms` when given. */
  function waitForClose(ms?: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = ms === undefined ? undefined : setTimeout(resolve, ms);
      closedOne = () => {
        closedOne = undefined;
        clearTimeout(timer);
        resolve();
      };
    });
  }

  const reportFull = everySecond(log);
  const reportClientFull = everySecond(log);
  const reportAcceptFailed = everySecond(log);

  async function acceptConnections(): Promise<void> {
    while (listening) {
      if (
        connections.items.length >= maxConnections && !deadlines.canShed(peers)
      ) {
        // Full, and every connection is being answered: no room can be
        // made, so accept no more (the kernel queues them) until one closes.
        await waitForClose();
        continue;
      }
      let conn: Deno.Conn;
      try {
        conn = await listener.accept();
      } catch (error) {
        if (!listening) return;
        // A client that reset its connection while it waited in the queue
        // (ENOTCONN, ECONNABORTED) is that client's fault: take the next one
        // at once. Pausing here let a few resets a second keep everyone out.
        if (isGoneBeforeAccept(error)) continue;
        // Out of descriptors, most likely: a flood of connections that send
        // nothing, or a head a byte at a time. As nginx reuses connections
        // that are still waiting for a request, one of those waiting gets
        // its 408 now instead of at the end of HEAD_TIMEOUT_MS, and its
        // descriptor serves the next client in the queue.
        const from = deadlines.shedOne(peers);
        reportAcceptFailed(
          `accept failed (${
            error instanceof Error ? error.message : String(error)
          }); closed ${
            from === null ? 0 : 1
          } connection waiting for a head or lingering${
            from === null ? "" : ` from ${from}`
          }; trying again when one closes, or in ${ACCEPT_RETRY_MS} ms`,
        );
        await waitForClose(ACCEPT_RETRY_MS);
        continue;
      }
      if (once) stopListening();
      // Every peer on a Unix socket is one client, as the other two log it.
      const client = conn.remoteAddr.transport === "unix"
        ? null
        : (conn.remoteAddr as Deno.NetAddr).hostname;
      const address = client === null ? "unix" : clientKey(client);
      let peer = peers.get(address);
      if (peer === undefined) {
        peer = { address, held: 0, group: peers };
        peers.set(address, peer);
      }
      // Room for the new connection, made among its address's own when that
      // address holds all it may, else among all when the server is full.
      // (A proxy on a Unix socket is every client at once: not capped.)
      const capped = client !== null && peer.held >= maxConnectionsPerClient;
      let overLimit = false;
      if (capped) {
        overLimit = deadlines.shedOne(peers, peer) === null;
        reportClientFull(
          `${address} holds ${peer.held} connections, the most one address may; ${
            overLimit
              ? "none waiting for a head or lingering: answered the new one 429"
              : "closed its own that has waited longest for a head, or lingered"
          }`,
        );
      }
      if (
        connections.items.length >= maxConnections && (overLimit || !capped)
      ) {
        const from = deadlines.shedOne(peers);
        reportFull(
          `${connections.items.length} connections open, the most there may be; closed ${
            from === null ? 0 : 1
          } waiting for a head or lingering${
            from === null ? "" : ` from ${from}`
          }`,
        );
      }
      peer.held++;
      const connection: OpenConnection = {
        conn,
        slot: -1,
        client,
        peer,
        overLimit,
        abandon: undefined,
        cut: false,
      };
      connections.add(connection);
      // Not awaited: each connection goes on on its own. It never rejects
      // (every error is caught and logged) and tells `settings.done` when done.
      handleConnection(connection, settings);
    }
  }

  // Each connection is bounded by its own limits, so this always settles.
  deadlines.hold();
  const finished = acceptConnections().then(() =>
    new Promise<void>((resolve) => {
      allDone = resolve;
      if (connections.items.length === 0) resolve();
    })
  ).finally(() => deadlines.release());

  function shutdown(): Promise<void> {
    if (stopping.signal.aborted) return finished;
    stopping.abort();
    stopListening();
    // Requests in progress get a bounded time; then their connections are closed.
    const timer = setTimeout(() => {
      const count = connections.items.length;
      log(
        `the shutdown grace (${shutdownGraceMs} ms) is over: closing ${count} connection${
          count === 1 ? "" : "s"
        } still in progress`,
      );
      for (const connection of connections.items) {
        connection.cut = true;
        closeQuietly(connection.conn);
        connection.abandon?.();
      }
    }, shutdownGraceMs);
    finished.then(() => clearTimeout(timer));
    return finished;
  }

  return { addr, finished, shutdown };
}

// ---------------------------------------------------------------------------
// Command line: parseCommandLine reads the flags, startServer starts and
// reports, main does only what needs the process (exit codes, signals).

/**
 * This script's version, the same in server_files.ts and message_board.ts:
 * the date of the deno-servers release it comes from (`--version` prints it),
 * so that a copy pasted into another project can be told apart.
 */
export const VERSION = "2026.12.2";

const USAGE = `Usage: deno run --allow-net=127.0.0.1 server_tiny.ts [options]

An HTTP/1.1 server written by hand on a raw TCP socket: / shows what your browser sent.

Options:
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
  --allowed-host NAME also answer to this host name (repeatable; .example.com
                      allows its subdomains); by default only localhost,
                      127.0.0.1, [::1] and the names and addresses it listens on
                      (any other Host gets 421)
  --once              serve one connection, then exit
  --quiet             do not print request heads (the access log stays)
  --log-format FMT    the access log's lines: clf (default, the Common Log
                      Format), combined (clf and the Referer and User-Agent, as
                      nginx's default) or json (one object per line: time,
                      remote_addr, method, target, status, bytes, duration_ms;
                      written once the answer is sent)
  -V, --version       print the version and exit
  -h, --help          show this help`;

/** A command line that cannot be used; `main` prints its message in one line and exits 2. */
export class CommandLineError extends Error {
  /** Always "CommandLineError". */
  override name = "CommandLineError";
}

/** What {@link parseCommandLine} found on the command line. */
export interface CommandLineOptions {
  /** --port: 0 picks a free port. */
  port: number;
  /** --hostname: the address to listen on. */
  hostname: string;
  /** --unix: a Unix domain socket's path, instead of hostname and port (absent without it). */
  unixPath?: string | undefined;
  /** --unix-mode: the socket file's mode. */
  unixMode?: number | undefined;
  /** --allowed-host: more Host names to answer to. */
  allowedHosts: string[];
  /** --once: serve one connection, then exit. */
  once: boolean;
  /** --quiet: do not print each request head. */
  quiet: boolean;
  /** --log-format: clf or json. */
  logFormat: "clf" | "combined" | "json";
  /** --help: print the usage and exit. */
  help: boolean;
  /** --version: print the version and exit. */
  version: boolean;
}

const FLAGS = {
  port: { type: "string" }, // 8080, unless --unix
  hostname: { type: "string" }, // 127.0.0.1, unless --unix
  unix: { type: "string" },
  "unix-mode": { type: "string" },
  "allowed-host": { type: "string", multiple: true, default: [] },
  once: { type: "boolean", default: false },
  quiet: { type: "boolean", default: false },
  "log-format": { type: "string", default: "clf" },
  help: { type: "boolean", short: "h", default: false },
  version: { type: "boolean", short: "V", default: false },
} satisfies ParseArgsOptionsConfig;

/**
 * Reads the command line; throws {@link CommandLineError} with a one-line
 * message for the user when it cannot be used.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * assert.equal(parseCommandLine(["--port", "0"]).port, 0);
 * assert.throws(() => parseCommandLine(["--colour"]), CommandLineError);
 * ```
 */
export function parseCommandLine(args: string[]): CommandLineOptions {
  const values = readFlags(args, FLAGS);
  for (const name of values["allowed-host"]) {
    if (!/^\.?[A-Za-z0-9\-._~[\]:]+$/.test(name)) {
      throw new CommandLineError(
        `--allowed-host takes a host name, got ${showArg(name)}`,
      );
    }
  }
  if (values.unix !== undefined) checkUnixFlags(values);
  const unixMode = parseUnixMode(values["unix-mode"], values.unix);
  return {
    port: parsePort(values.port ?? "8080"),
    hostname: values.hostname ?? "127.0.0.1",
    ...(values.unix === undefined ? {} : { unixPath: values.unix, unixMode }),
    allowedHosts: values["allowed-host"],
    once: values.once,
    quiet: values.quiet,
    logFormat: parseLogFormat(values["log-format"]),
    help: values.help,
    version: values.version,
  };
}

/** Refuses what cannot go with `--unix`: another place to listen. */
function checkUnixFlags(
  values: { unix?: string; port?: string; hostname?: string },
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
}

/**
 * Reads `--unix-mode`: an octal file mode (`660`, `0660` or `0o660`) for the
 * socket, only with `--unix`. The same check is in server_files.ts and
 * message_board.ts.
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

/** Reads `--log-format`: clf, combined or json. The same check is in server_files.ts and message_board.ts. */
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
 * `parseArgs`'s values, with each mistake thrown as a {@link CommandLineError}
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
 * check, with the same message, is in server_files.ts and message_board.ts.
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

/**
 * Starts the server the command line asked for and prints where to connect
 * (the line a browser user, and the tests, look for) and what is exposed.
 * Resolves once it listens; rejects (AddrInUse, NotCapable) when it cannot.
 * With `unixPath` it listens on that Unix domain socket instead (see
 * {@link claimSocketPath}), its file given `unixMode` when set.
 */
export function startServer(
  options: TinyServerOptions & { unixPath: string; unixMode?: number },
): Promise<TinyServer<Deno.UnixAddr>>;
/** {@link startServer} on TCP: `addr` has the real port. */
export function startServer(
  options?: TinyServerOptions & { unixPath?: undefined },
): Promise<TinyServer>;
/** {@link startServer} on TCP, or on a Unix socket with `unixPath`. */
export function startServer(
  options?: TinyServerOptions & {
    unixPath?: string | undefined;
    unixMode?: number | undefined;
  },
): Promise<TinyServer<Deno.NetAddr | Deno.UnixAddr>>;
export async function startServer(
  options: TinyServerOptions & {
    unixPath?: string | undefined;
    unixMode?: number | undefined;
  } = {},
): Promise<TinyServer<Deno.NetAddr | Deno.UnixAddr>> {
  const { hostname = "127.0.0.1", log = batchedConsoleLog() } = options;
  const { unixPath, unixMode } = options;
  if (unixPath !== undefined) {
    if (await claimSocketPath(unixPath)) {
      log(
        `server_tiny: removed ${unixPath}, a socket file no server accepted on (left by a run that was killed)`,
      );
    }
    const server = serveTiny({ ...options, log, path: unixPath });
    try {
      if (unixMode !== undefined) Deno.chmodSync(unixPath, unixMode);
    } catch (error) {
      await server.shutdown();
      throw error;
    }
    log(
      `Listening on unix:${server.addr.path} (for a proxy on this machine; try curl --unix-socket ${server.addr.path} http://localhost/)`,
    );
    return server;
  }
  // Listening is synchronous here; the handle still comes as a promise, as
  // from the other two scripts' startServer (they read TLS files first).
  const server = serveTiny({ ...options, log });
  const { hostname: host, port } = server.addr;
  log(
    `Open your browser and connect to: http://${bracketIpv6(host)}:${port}/`,
  );
  if (!["127.0.0.1", "localhost", "::1"].includes(hostname)) {
    // Loopback keeps a server private to this machine; any other address may not.
    log(
      `Note: other machines may reach ${host}; traffic is plain HTTP, readable on the way.`,
    );
  }
  const everyAddress = ["0.0.0.0", "::", "[::]"].includes(hostname);
  const sys = { name: "sys", kind: "networkInterfaces" } as const;
  if (everyAddress && Deno.permissions.querySync(sys).state !== "granted") {
    log(
      "Note: without --allow-sys=networkInterfaces this server answers only to " +
        "localhost and --allowed-host names, not to this machine's addresses.",
    );
  }
  return server;
}

/**
 * Makes `path` ready for a Unix socket listener. Listening fails (AddrInUse)
 * on a path where any file is, and a server that was killed leaves its
 * socket file behind (the listener removes it when it closes). So a socket
 * file on which nothing accepts a connection is removed; a socket a server
 * still accepts on is left alone (AddrInUse), and so is anything that is not
 * a socket (AlreadyExists): a typo in --unix must never delete a file.
 * Returns whether a stale socket file was removed. The same function is in
 * server_files.ts and message_board.ts.
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

/** Why the server could not start, in one line, with what to do about it. */
function explainStartFailure(
  error: unknown,
  options: CommandLineOptions,
): string {
  const socket = options.unixPath;
  if (socket !== undefined) {
    const shown = showArg(socket);
    if (error instanceof Deno.errors.AddrInUse) {
      return `${shown} is in use: a server accepts connections on it (stop it, or give another --unix PATH)`;
    }
    if (error instanceof Deno.errors.AlreadyExists) {
      return `${shown} exists and is not a socket, so it is left alone (remove it, or give another --unix PATH)`;
    }
    if (error instanceof Deno.errors.NotCapable) {
      // --allow-net=unix: takes only an absolute path.
      let absolute = socket;
      try {
        if (!socket.startsWith("/")) absolute = `${Deno.cwd()}/${socket}`;
      } catch {
        // no read permission for the working folder: show the path as given
      }
      return `no permission for the socket ${shown}: run with --allow-read=${shown} --allow-write=${shown} --allow-net=unix:${
        showArg(absolute)
      }`;
    }
    // ENOENT, ENOTDIR: a folder on the way is missing, or is a file.
    const folder = socket.includes("/")
      ? showArg(socket.slice(0, socket.lastIndexOf("/")) || "/")
      : ".";
    if (error instanceof Deno.errors.NotFound) {
      return `cannot listen on ${shown}: the folder ${folder} does not exist (create it, or give another --unix PATH)`;
    }
    if (error instanceof Deno.errors.NotADirectory) {
      return `cannot listen on ${shown}: ${folder} is not a folder (give another --unix PATH)`;
    }
    return `cannot listen on ${shown}: ${describeStartError(error)}`;
  }
  const where = `${showArg(bracketIpv6(options.hostname))}:${options.port}`;
  if (error instanceof Deno.errors.AddrInUse) {
    return `${where} is in use (try another --port, or --port 0)`;
  }
  if (error instanceof Deno.errors.AddrNotAvailable) {
    return `cannot listen on ${where}: no network interface of this machine has that address (try 127.0.0.1, or 0.0.0.0 for every address)`;
  }
  if (error instanceof Deno.errors.NotCapable) {
    // Permission scopes are literal: --allow-net=127.0.0.1 does not cover 0.0.0.0.
    return `no permission to listen on ${where}: run with --allow-net=${
      bracketIpv6(options.hostname)
    }`;
  }
  return `cannot listen on ${where}: ${describeStartError(error)}`;
}

/**
 * The runtime's message, not only the error's name ("Error" alone says
 * nothing of a bad host name), in one line, and shown as {@link showBytes}
 * shows a request: it repeats what the user typed, escape codes included.
 */
function describeStartError(error: unknown): string {
  const why = error instanceof Error ? error.message : String(error);
  return showBytes(encoder.encode(why.split("\n", 1)[0]!));
}

async function main(): Promise<void> {
  let options: CommandLineOptions;
  try {
    options = parseCommandLine(Deno.args);
  } catch (error) {
    if (!(error instanceof CommandLineError)) throw error;
    console.error(`server_tiny: ${error.message} (see --help)`);
    Deno.exit(2);
  }
  if (options.help) {
    console.log(USAGE);
    return;
  }
  if (options.version) {
    console.log(`server_tiny.ts ${VERSION} (Deno ${Deno.version.deno})`);
    return;
  }
  // One log for the server's lines and ours, so that they come out in the
  // order they happened: the access log is written in batches.
  const log = batchedConsoleLog();
  let server: TinyServer<Deno.NetAddr | Deno.UnixAddr>;
  try {
    server = await startServer({ ...options, log });
  } catch (error) {
    console.error(`server_tiny: ${explainStartFailure(error, options)}`);
    Deno.exit(1);
  }

  const onSignal = () => {
    log("Shutting down: finishing requests in progress...");
    server.shutdown();
  };
  // Windows has no SIGTERM; Ctrl-C arrives as SIGINT everywhere.
  const signals: Deno.Signal[] = Deno.build.os === "windows"
    ? ["SIGINT"]
    : ["SIGINT", "SIGTERM"];
  for (const signal of signals) Deno.addSignalListener(signal, onSignal);
  await server.finished;
  for (const signal of signals) Deno.removeSignalListener(signal, onSignal);
  // The last log lines leave in the batch's timer (LOG_FLUSH_MS); then exit
  // at once, as the other two scripts do: under `deno serve`, a module that
  // returns without `export default { fetch }` gets an "error:" line.
  await new Promise((resolve) => setTimeout(resolve, LOG_FLUSH_MS));
  Deno.exit(0);
}

if (import.meta.main) {
  await main();
}
