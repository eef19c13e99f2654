// The seventh hostile-client round against message_board.ts: who the answer limits count
// behind a proxy and on a Unix socket, and the send timeout that frees the process's
// answers from clients that never read them (redteam F4's residue).
import assert from "node:assert/strict";
import { join } from "node:path";
import {
  type Board,
  MAX_ANSWERS_IN_FLIGHT,
  MAX_ANSWERS_PER_CLIENT,
  MAX_ANSWERS_PER_CONNECTION,
  openBoard,
} from "../message_board.ts";
import { tempFolder } from "./_board.ts";
import { connectFrom, h2Frame, h2Get, type RawClient } from "./_raw.ts";

const H2_PREFACE = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const latin1 = (bytes: Uint8Array) => String.fromCharCode(...bytes);
/** SETTINGS with SETTINGS_INITIAL_WINDOW_SIZE = 0 (RFC 9113 6.5.2): no stream gets DATA. */
const ZERO_WINDOW = h2Frame(4, 0, 0, new Uint8Array([0, 4, 0, 0, 0, 0]));

/** The start of a zero-window cleartext HTTP/2 connection with `count` GETs for `path`. */
function stalledGets(
  count: number,
  path = "/",
  headers: [string, string][] = [],
): string {
  return H2_PREFACE + latin1(ZERO_WINDOW) +
    Array.from(
      { length: count },
      (_, i) => latin1(h2Frame(1, 0x5, 2 * i + 1, h2Get(path, headers))),
    ).join("");
}

/** 50 messages of 3,999 `<`: an 818 KB newest page, which goes in pieces over HTTP/2. */
function longPage(): string {
  return Array.from({ length: 50 }, (_, i) =>
    JSON.stringify({
      id: i + 1,
      text: "<".repeat(3999),
      postedAt: "2026-12-02T04:00:00.000Z",
    }) + "\n").join("");
}

/** Polls `done` every 20 ms until it holds or `deadlineMs` passes. */
async function waitFor(done: () => boolean, deadlineMs = 10_000) {
  for (const end = Date.now() + deadlineMs; !done() && Date.now() < end;) {
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  return done();
}

/** A board on a data file of `page`, served on TCP or a Unix socket, logging each status. */
async function serveBoard(
  options: Parameters<typeof openBoard>[0] & { unix?: boolean },
  page = "",
) {
  const folder = await tempFolder();
  const dataFile = join(folder.path, "messages.jsonl");
  await Deno.writeTextFile(dataFile, page);
  const board: Board = await openBoard({ dataFile, log: () => {}, ...options });
  /** Status of each answer, with the X-Forwarded-For it came with ("" when none). */
  const answers: { status: number; forwarded: string }[] = [];
  const handler = async (request: Request, info: Deno.ServeHandlerInfo) => {
    const response = await board.handler(request, info);
    answers.push({
      status: response.status,
      forwarded: request.headers.get("x-forwarded-for") ?? "",
    });
    return response;
  };
  const path = join(folder.path, "board.sock");
  const server = options.unix
    ? Deno.serve({ path, onListen() {} }, handler)
    : Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, handler);
  const conns: Deno.Conn[] = [];
  const clients: RawClient[] = [];
  return {
    answers,
    port: (server.addr as Deno.NetAddr).port,
    count: (status: number, forwarded?: string) =>
      answers.filter((a) =>
        a.status === status &&
        (forwarded === undefined || a.forwarded === forwarded)
      ).length,
    /** A zero-window HTTP/2 connection to the Unix socket, sending `first`. */
    async connectUnix(first: string) {
      const conn = await Deno.connect({ transport: "unix", path });
      conns.push(conn);
      await conn.write(Uint8Array.from(first, (c) => c.charCodeAt(0)));
      return conn;
    },
    /** The same over TCP from `address` (127.0.0.2, ...). */
    async connectFrom(address: string, first: string) {
      const client = await connectFrom(
        (server.addr as Deno.NetAddr).port,
        address,
        first,
      );
      clients.push(client);
      return client;
    },
    async [Symbol.asyncDispose]() {
      for (const conn of conns) conn.close();
      for (const client of clients) client.socket.destroy();
      board.endEventStreams();
      await server.shutdown();
      await board.close();
      await folder[Symbol.asyncDispose]();
    },
  };
}

Deno.test("hostile7: behind a trusted proxy on TCP, MAX_ANSWERS_PER_CLIENT counts each forwarded client", async () => {
  // Every request comes from the proxy's one address: keyed by it, the 33rd visitor's
  // answer would get 429 while 32 others wait for slow readers.
  await using served = await serveBoard(
    { trustProxy: ["loopback"] },
    longPage(),
  );
  const streams = MAX_ANSWERS_PER_CONNECTION;
  const connections = MAX_ANSWERS_PER_CLIENT / streams + 1;
  const slow = stalledGets(streams, "/", [["x-forwarded-for", "198.51.100.7"]]);
  for (let c = 0; c < connections; c++) {
    await served.connectFrom("127.0.0.1", slow);
  }
  assert.ok(
    await waitFor(() => served.answers.length === connections * streams),
  );
  assert.equal(served.count(200), MAX_ANSWERS_PER_CLIENT);
  assert.equal(served.count(429), streams);
  // Another visitor through the same proxy (same peer address) is answered.
  await served.connectFrom(
    "127.0.0.1",
    stalledGets(1, "/", [["x-forwarded-for", "198.51.100.8"]]),
  );
  assert.ok(await waitFor(() => served.count(200, "198.51.100.8") === 1));
  assert.equal(served.count(429, "198.51.100.8"), 0);
});

Deno.test("hostile7: on a Unix socket the answer limits count the forwarded client when trusted, else only the process", async () => {
  // No connection is counted on a Unix socket (its peer has no address and port), and
  // before this the process and client limits were not counted there either.
  const count = MAX_ANSWERS_PER_CLIENT + 8;
  {
    await using served = await serveBoard({
      unix: true,
      trustProxy: ["loopback"],
    }, longPage());
    await served.connectUnix(
      stalledGets(count, "/", [["x-forwarded-for", "198.51.100.7"]]),
    );
    assert.ok(await waitFor(() => served.answers.length === count));
    assert.equal(served.count(200), MAX_ANSWERS_PER_CLIENT);
    assert.equal(served.count(429), 8);
    await served.connectUnix(
      stalledGets(1, "/", [["x-forwarded-for", "198.51.100.8"]]),
    );
    assert.ok(await waitFor(() => served.count(200, "198.51.100.8") === 1));
  }
  {
    // Untrusted: every visitor is the same unknown client, so only the process counts.
    await using served = await serveBoard({ unix: true }, longPage());
    const perConnection = 110;
    const connections = Math.ceil((MAX_ANSWERS_IN_FLIGHT + 20) / perConnection);
    for (let c = 0; c < connections; c++) {
      await served.connectUnix(stalledGets(perConnection));
    }
    const total = connections * perConnection;
    assert.ok(await waitFor(() => served.answers.length === total));
    assert.equal(served.count(429), 0);
    assert.equal(served.count(200), MAX_ANSWERS_IN_FLIGHT);
    assert.equal(served.count(503), total - MAX_ANSWERS_IN_FLIGHT);
  }
});

Deno.test("hostile7: regression: answers many addresses never read time out, and a new visitor is answered again (F4)", async () => {
  // 16 addresses, each under MAX_ANSWERS_PER_CLIENT, held all MAX_ANSWERS_IN_FLIGHT with
  // zero-window HTTP/2 streams and every new visitor got 503 for as long as they stayed.
  const sendTimeoutMs = 2_000;
  await using served = await serveBoard({ sendTimeoutMs }, longPage());
  const addresses = Math.ceil(MAX_ANSWERS_IN_FLIGHT / MAX_ANSWERS_PER_CLIENT);
  const perClient = MAX_ANSWERS_PER_CLIENT / MAX_ANSWERS_PER_CONNECTION;
  const slow = stalledGets(MAX_ANSWERS_PER_CONNECTION);
  const startedAt = Date.now();
  const held: RawClient[] = [];
  for (let a = 0; a < addresses; a++) {
    for (let c = 0; c < perClient; c++) {
      held.push(await served.connectFrom(`127.0.0.${a + 2}`, slow));
    }
  }
  const total = addresses * MAX_ANSWERS_PER_CLIENT;
  assert.ok(await waitFor(() => served.answers.length === total));
  assert.equal(served.count(200), MAX_ANSWERS_IN_FLIGHT);
  assert.equal(served.count(503), total - MAX_ANSWERS_IN_FLIGHT);
  const visitor = () =>
    fetch(`http://127.0.0.1:${served.port}/api/messages?limit=1`);
  // Only while the first answer can still be waiting (a loaded machine may take longer).
  const early = await visitor();
  await early.body?.cancel();
  if (Date.now() - startedAt < sendTimeoutMs) assert.equal(early.status, 503);
  // The stalled clients stay, reading nothing; their answers time out and free the process.
  let status = 0;
  for (const end = Date.now() + 15_000; status !== 200 && Date.now() < end;) {
    const response = await visitor();
    await response.body?.cancel();
    status = response.status;
    if (status !== 200) await new Promise((r) => setTimeout(r, 100));
  }
  assert.equal(status, 200);
  assert.ok(held.every(({ socket }) => !socket.destroyed));
  // A timed-out answer still counts for its client while its connection holds it: one
  // address cannot pile up more than MAX_ANSWERS_PER_CLIENT that way.
  const before = served.count(429);
  await served.connectFrom("127.0.0.2", stalledGets(1));
  assert.ok(await waitFor(() => served.count(429) === before + 1));
});
