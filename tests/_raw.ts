// Shared helpers for the hostile-client tests (not a test file itself): raw bytes on a
// socket, because fetch() refuses to send most of what a hostile client sends.

/** What came back for one raw request: the status of the first response and all bytes. */
export interface RawReply {
  /** The first response's status code, or 0 when the server closed without answering. */
  status: number;
  /** Everything the server sent, as Latin-1 text (bytes kept one-to-one). */
  text: string;
}

/**
 * Sends `request` (a string is sent as Latin-1 bytes) on a new connection and reads until the server closes or `timeoutMs` passes (then it throws: a hang).
 */
export async function sendRaw(
  port: number,
  request: string | Uint8Array,
  timeoutMs = 5000,
): Promise<RawReply> {
  const bytes = typeof request === "string"
    ? Uint8Array.from(request, (c) => c.charCodeAt(0))
    : request;
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
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
