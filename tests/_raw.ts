// Shared helpers for the hostile-client tests (not a test file itself): raw bytes on a
// socket, because fetch() refuses to send most of what a hostile client sends.
import net from "node:net";

/** What came back for one raw request: the status of the first response and all bytes. */
export interface RawReply {
  /** The first response's status code, or 0 when the server closed without answering. */
  status: number;
  /** Everything the server sent, as Latin-1 text (bytes kept one-to-one). */
  text: string;
}

/**
 * Sends `request` (a string is sent as Latin-1 bytes) on a new connection to `to`
 * (a port on 127.0.0.1, or the path of a Unix socket) and reads until the server
 * closes or `timeoutMs` passes (then it throws: a hang).
 */
export async function sendRaw(
  to: number | string,
  request: string | Uint8Array,
  timeoutMs = 5000,
): Promise<RawReply> {
  const bytes = typeof request === "string"
    ? Uint8Array.from(request, (c) => c.charCodeAt(0))
    : request;
  const conn = typeof to === "string"
    ? await Deno.connect({ transport: "unix", path: to })
    : await Deno.connect({ hostname: "127.0.0.1", port: to });
  const timer = setTimeout(() => conn.close(), timeoutMs);
  let text = "";
  let timedOut = true;
  try {
    // No closeWrite(): Deno.serve drops the answer to a half-closed connection,
    // so requests here end with `Connection: close` instead.
    await conn.write(bytes);
    const buffer = new Uint8Array(65536);
    while (true) {
      const n = await conn.read(buffer);
      if (n === null) {
        timedOut = false;
        break;
      }
      text += String.fromCharCode(...buffer.subarray(0, n));
    }
  } catch (error) {
    // a reset after the answer is fine; a close by our own timer is a hang
    if (!(error instanceof Deno.errors.BadResource)) timedOut = false;
  } finally {
    clearTimeout(timer);
    try {
      conn.close();
    } catch {
      // already closed by the timer
    }
  }
  if (timedOut) throw new Error(`no end of reply within ${timeoutMs} ms`);
  const match = text.match(/^HTTP\/1\.[01] (\d{3})/);
  return { status: match ? Number(match[1]) : 0, text };
}

/**
 * Everything the server sends on `conn` until it closes the connection, as
 * text; `"no close"` when it is still open after `timeoutMs` (then it is
 * closed here).
 */
export async function readUntilClosed(
  conn: Deno.Conn,
  timeoutMs = 3000,
): Promise<string> {
  const timer = setTimeout(() => conn.close(), timeoutMs);
  let text = "";
  try {
    const buffer = new Uint8Array(4096);
    for (
      let n = await conn.read(buffer);
      n !== null;
      n = await conn.read(buffer)
    ) {
      text += new TextDecoder().decode(buffer.subarray(0, n));
    }
  } catch (error) {
    if (error instanceof Deno.errors.BadResource) return "no close";
    if (!(error instanceof Deno.errors.ConnectionReset)) throw error;
  } finally {
    clearTimeout(timer);
  }
  return text;
}

/** A raw client from one loopback address ({@link connectFrom}). */
export interface RawClient {
  socket: net.Socket;
  /** When it connected (`Date.now()`). */
  connectedAt: number;
  /** Everything received so far, as Latin-1. */
  received(): string;
  /** Resolves with the time (`Date.now()`) the connection closed, by either side. */
  closed: Promise<number>;
}

/**
 * Connects to 127.0.0.1:`port` from `localAddress` (any of 127.0.0.0/8: a
 * distinct client to a per-address limit) and sends `first` as Latin-1; resolves
 * once it is written. Deno.connect cannot choose its source address; node:net can.
 */
export function connectFrom(
  port: number,
  localAddress: string,
  first: string,
): Promise<RawClient> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ port, host: "127.0.0.1", localAddress });
    let text = "";
    socket.setEncoding("latin1");
    socket.on("data", (chunk: string) => text += chunk);
    const closed = new Promise<number>((done) =>
      socket.once("close", () => done(Date.now()))
    );
    socket.once("error", reject);
    socket.once("connect", () => {
      const connectedAt = Date.now();
      socket.write(first, "latin1", () => {
        // A reset after the answer: "close" follows, and the caller checks the answer.
        socket.off("error", reject).on("error", () => {});
        resolve({ socket, connectedAt, received: () => text, closed });
      });
    });
  });
}

/** Closes every client and waits until each is closed. */
export async function closeAll(clients: RawClient[]): Promise<void> {
  for (const { socket } of clients) socket.destroy();
  await Promise.all(clients.map(({ closed }) => closed));
}

/** One HTTP/2 frame (RFC 9113 4.1): 24-bit length, type, flags, stream id. */
export function h2Frame(
  type: number,
  flags: number,
  stream: number,
  payload: Uint8Array = new Uint8Array(0),
): Uint8Array {
  const frame = new Uint8Array(9 + payload.length);
  const view = new DataView(frame.buffer);
  view.setUint32(0, payload.length << 8);
  view.setUint8(3, type);
  view.setUint8(4, flags);
  view.setUint32(5, stream);
  frame.set(payload, 9);
  return frame;
}

/** The client's connection preface (RFC 9113 3.4). */
const H2_PREFACE = new TextEncoder().encode("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");

/**
 * An HTTP/2 HEADERS block for `GET https://127.0.0.1{path}` (RFC 7541: static-table
 * names, literal values without Huffman coding), with each of `headers` as a literal
 * with a new name. Each name and value must be under 127 bytes (one length byte).
 */
export function h2Get(
  path: string,
  headers: readonly [name: string, value: string][] = [],
): Uint8Array {
  const literal = (text: string) => {
    const bytes = new TextEncoder().encode(text);
    if (bytes.length > 126) throw new RangeError(`too long for h2Get: ${text}`);
    return [bytes.length, ...bytes];
  };
  return new Uint8Array([
    0x82, // :method GET
    0x87, // :scheme https
    0x04, // :path, literal
    ...literal(path),
    0x01, // :authority, literal
    ...literal("127.0.0.1"),
    ...headers.flatMap(([name, value]) => [
      0x00, // literal with a new name
      ...literal(name),
      ...literal(value),
    ]),
  ]);
}

/**
 * Opens an HTTP/2 connection over TLS to 127.0.0.1:`port` (trusting `pem`) that gives
 * every stream no window (SETTINGS_INITIAL_WINDOW_SIZE = 0, RFC 9113 6.5.2): the server
 * may answer with HEADERS but can send no DATA, so it holds each response body.
 */
export async function connectZeroWindowH2(
  port: number,
  pem: string,
): Promise<Deno.TlsConn> {
  const conn = await Deno.connectTls({
    hostname: "127.0.0.1",
    port,
    caCerts: [pem],
    alpnProtocols: ["h2"],
  });
  try {
    await conn.write(H2_PREFACE);
    await conn.write(h2Frame(4, 0, 0, new Uint8Array([0, 4, 0, 0, 0, 0])));
  } catch (error) {
    conn.close();
    throw error;
  }
  return conn;
}

/** GETs sent in bursts: `every` at a time, `pauseMs` apart. */
export interface Pace {
  every: number;
  pauseMs: number;
}

/**
 * Sends `count` GETs on `conn` (streams 1, 3, 5, ...; HEADERS with END_STREAM and
 * END_HEADERS), the i-th for `path(i)` with `headers`; all at once unless `pace`.
 */
export async function sendH2Gets(
  conn: Deno.Conn,
  count: number,
  path: (i: number) => string,
  headers: readonly [name: string, value: string][] = [],
  pace?: Pace,
): Promise<void> {
  for (let i = 0; i < count; i++) {
    await conn.write(h2Frame(1, 0x5, 2 * i + 1, h2Get(path(i), headers)));
    if (pace !== undefined && i % pace.every === pace.every - 1) {
      await new Promise((resolve) => setTimeout(resolve, pace.pauseMs));
    }
  }
}

/** How {@link openStalledStreams} loads a server. */
export interface StalledStreamsOptions {
  /** How many zero-window connections. */
  connections: number;
  /** How many GETs on each. */
  perConnection: number;
  /** The path of the i-th GET on a connection. */
  path: (i: number) => string;
  /** More request headers, such as `[["range", "bytes=1-2"]]`. @default [] */
  headers?: readonly [name: string, value: string][];
  /** Send each connection's GETs in bursts (see {@link sendH2Gets}). @default all at once */
  pace?: Pace;
}

/**
 * Opens `connections` zero-window HTTP/2 connections ({@link connectZeroWindowH2}) and
 * sends `perConnection` GETs on each: streams whose responses the server must hold.
 * Disposing closes the connections.
 */
export async function openStalledStreams(
  port: number,
  pem: string,
  { connections, perConnection, path, headers = [], pace }:
    StalledStreamsOptions,
): Promise<Disposable> {
  const conns: Deno.TlsConn[] = [];
  const close = () => {
    for (const conn of conns) conn.close();
  };
  try {
    for (let c = 0; c < connections; c++) {
      const conn = await connectZeroWindowH2(port, pem);
      conns.push(conn);
      await sendH2Gets(conn, perConnection, path, headers, pace);
    }
  } catch (error) {
    close();
    throw error;
  }
  return { [Symbol.dispose]: close };
}

/**
 * Reads HTTP/2 frames from `conn` until it closes, adding to `answered` the id of each
 * stream whose response HEADERS came. Resolves when the connection is closed (by either
 * side); a read error ends it too.
 */
export async function collectH2Responses(
  conn: Deno.Conn,
  answered: Set<number>,
): Promise<void> {
  let pending = new Uint8Array(0);
  const buffer = new Uint8Array(65536);
  try {
    for (
      let n = await conn.read(buffer);
      n !== null;
      n = await conn.read(buffer)
    ) {
      const joined = new Uint8Array(pending.length + n);
      joined.set(pending);
      joined.set(buffer.subarray(0, n), pending.length);
      let at = 0;
      while (joined.length - at >= 9) {
        const view = new DataView(joined.buffer, at);
        const length = view.getUint32(0) >>> 8;
        if (joined.length - at < 9 + length) break;
        const stream = view.getUint32(5) & 0x7fffffff;
        if (view.getUint8(3) === 1 && stream !== 0) answered.add(stream);
        at += 9 + length;
      }
      pending = joined.slice(at);
    }
  } catch {
    // closed by the caller
  }
}
