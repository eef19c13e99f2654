// Local moderation (no --admin-token: a visitor on this machine may clear, delete, restore)
// and a proxy in front (--trust-proxy): what the proxy says about the client is only as good
// as its configuration, so behind one nobody counts as local. In-process.
import assert from "node:assert/strict";
import type { BoardHandlerOptions } from "../message_board.ts";
import { openTempBoard } from "./_board.ts";

/** The proxy's socket: the board sees every proxied request come from this machine. */
const FROM_PROXY: Deno.ServeHandlerInfo = {
  remoteAddr: { transport: "tcp", hostname: "127.0.0.1", port: 40000 },
  completed: Promise.resolve(),
};

/** A clear sent with `headers`, as nginx's default `proxy_pass http://127.0.0.1:8080` passes it. */
function clearRequest(headers: Record<string, string> = {}): Request {
  return new Request("http://127.0.0.1:8080/", {
    method: "POST",
    headers: {
      "content-type": "application/x-www-form-urlencoded",
      host: "127.0.0.1:8080",
      ...headers,
    },
    body: "clear=1",
  });
}

/** The status of a clear on a board with one message, and whether the message is still there. */
async function tryClear(
  options: BoardHandlerOptions,
  headers: Record<string, string> = {},
): Promise<{ status: number; kept: boolean }> {
  await using board = await openTempBoard({ log: () => {}, ...options });
  await board.store.appendMessage({ text: "keep me" });
  const response = await board.handler(clearRequest(headers), FROM_PROXY);
  await response.body?.cancel();
  const { messages } = await board.store.listMessages({ limit: 1 });
  return { status: response.status, kept: messages.length === 1 };
}

Deno.test("proxy: a visitor on this machine, talking to the board directly, may clear", async () => {
  assert.deepEqual(await tryClear({}), { status: 303, kept: false });
});

Deno.test("proxy: behind --trust-proxy, a proxy that sends no X-Forwarded-For (nginx's default) makes no one local", async () => {
  assert.deepEqual(await tryClear({ trustProxy: true }), {
    status: 403,
    kept: true,
  });
});

Deno.test("proxy: behind --trust-proxy, an X-Forwarded-For: 127.0.0.1 the client wrote makes no one local", async () => {
  // nginx passes a client's own X-Forwarded-For on unchanged unless told otherwise.
  assert.deepEqual(
    await tryClear({ trustProxy: true }, { "x-forwarded-for": "127.0.0.1" }),
    { status: 403, kept: true },
  );
});
