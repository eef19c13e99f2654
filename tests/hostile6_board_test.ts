// The sixth hostile-client round against message_board.ts and board_postgres.ts, by class:
// request shapes Deno.serve hands on as they came, and what a store does under them. One
// test per defect found, each failing on the code before its fix.
import assert from "node:assert/strict";
import { join } from "node:path";
import {
  MAX_ANSWERS_PER_CLIENT,
  MAX_ANSWERS_PER_CONNECTION,
  openBoard,
} from "../message_board.ts";
import { openTempBoard, tempFolder } from "./_board.ts";
import {
  connectFrom,
  h2Frame,
  h2Get,
  type RawClient,
  sendRaw,
} from "./_raw.ts";

/** 50 messages of 3,999 `<`: an 818 KB newest page, which goes in pieces over HTTP/2. */
function longPage(): string {
  return Array.from({ length: 50 }, (_, i) =>
    JSON.stringify({
      id: i + 1,
      text: "<".repeat(3999),
      postedAt: "2026-12-02T04:00:00.000Z",
    }) + "\n").join("");
}

/** An in-process board served on a port (raw requests need Deno.serve in between). */
async function serveTempBoard() {
  const board = await openTempBoard({ log: () => {}, rateLimit: false });
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen() {} },
    board.handler,
  );
  return {
    board,
    port: server.addr.port,
    async [Symbol.asyncDispose]() {
      board.endEventStreams();
      await server.shutdown();
      await board[Symbol.asyncDispose]();
    },
  };
}

Deno.test("hostile6: regression: a body in a transfer coding other than chunked gets 501 and stores nothing", async () => {
  // Deno.serve takes off the chunked framing only: `gzip, chunked` reached the board as the
  // gzip bytes, and a JSON text sent that way was stored (201) as if it were plain.
  await using served = await serveTempBoard();
  const json = '{"text":"sent as gzip"}';
  const form = "message=sent+as+gzip";
  for (
    const [path, type, body] of [
      ["/api/messages", "application/json", json],
      ["/", "application/x-www-form-urlencoded", form],
    ]
  ) {
    for (
      const coding of ["gzip, chunked", "x-custom, chunked", "deflate,chunked"]
    ) {
      const reply = await sendRaw(
        served.port,
        `POST ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: ${type}\r\n` +
          `Transfer-Encoding: ${coding}\r\nConnection: close\r\n\r\n` +
          `${body.length.toString(16)}\r\n${body}\r\n0\r\n\r\n`,
      );
      assert.equal(reply.status, 501, `${path} with ${coding}`);
      assert.match(reply.text, /no transfer coding but chunked/);
    }
  }
  const page = await served.board.store.listMessages({ limit: 10 });
  assert.deepEqual(page.messages, []);
  // Plain chunked still works.
  const reply = await sendRaw(
    served.port,
    `POST /api/messages HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n` +
      `Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n` +
      `${json.length.toString(16)}\r\n${json}\r\n0\r\n\r\n`,
  );
  assert.equal(reply.status, 201);
});

Deno.test("hostile6: regression: a Content-Type parameter given twice gets 400, not one of the two", async () => {
  // The board read the last charset and Deno's form parser the first boundary; a proxy or
  // filter in front that reads the other one sees another body than the one stored.
  await using board = await openTempBoard({ log: () => {}, rateLimit: false });
  const multipart = (boundary: string) =>
    `--${boundary}\r\nContent-Disposition: form-data; name="message"\r\n\r\n` +
    `two boundaries\r\n--${boundary}--\r\n`;
  const cases: [string, string, string][] = [
    [
      "/api/messages",
      "application/json; charset=latin1; charset=utf-8",
      '{"text":"a"}',
    ],
    [
      "/",
      "application/x-www-form-urlencoded; charset=latin1; Charset=utf-8",
      "message=a",
    ],
    ["/", "multipart/form-data; boundary=XyZ; boundary=abc", multipart("XyZ")],
  ];
  for (const [path, type, body] of cases) {
    const response = await board.handler(
      new Request(`http://127.0.0.1${path}`, {
        method: "POST",
        headers: { "content-type": type },
        body,
      }),
    );
    assert.equal(response.status, 400, type);
    assert.match(
      await response.text(),
      /The Content-Type header gives (charset|boundary) twice/,
    );
  }
  assert.deepEqual(
    (await board.store.listMessages({ limit: 10 })).messages,
    [],
  );
});

Deno.test("hostile6: regression: one HTTP/2 connection that reads nothing gets MAX_ANSWERS_PER_CONNECTION answers at a time, then 429", async () => {
  // 10 connections of 199 zero-window streams asking for an 818 KB page took the board from
  // 59 to 478 MB in 4 s, and rising (redteam's F2: 40 of them, 1.5 GB): each answer waits
  // whole in Deno.serve for a client that never takes it.
  await using folder = await tempFolder();
  const dataFile = join(folder.path, "messages.jsonl");
  await Deno.writeTextFile(dataFile, longPage());
  const board = await openBoard({ dataFile, log: () => {}, rateLimit: false });
  const statuses: number[] = [];
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen() {} },
    async (request, info) => {
      const response = await board.handler(request, info);
      statuses.push(response.status);
      return response;
    },
  );
  const conn = await Deno.connect({
    hostname: "127.0.0.1",
    port: server.addr.port,
  });
  try {
    // Cleartext HTTP/2 (prior knowledge), every stream given no window (RFC 9113 6.5.2).
    await conn.write(
      new TextEncoder().encode("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"),
    );
    await conn.write(h2Frame(4, 0, 0, new Uint8Array([0, 4, 0, 0, 0, 0])));
    const count = MAX_ANSWERS_PER_CONNECTION + 12;
    for (let i = 0; i < count; i++) {
      await conn.write(h2Frame(1, 0x5, 2 * i + 1, h2Get("/")));
    }
    for (
      let waited = 0;
      statuses.length < count && waited < 5000;
      waited += 20
    ) {
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    assert.equal(
      statuses.filter((status) => status === 200).length,
      MAX_ANSWERS_PER_CONNECTION,
    );
    assert.equal(statuses.filter((status) => status === 429).length, 12);
    // Another connection is not held up, and HTTP/1.1 on one kept-alive connection (one
    // answer at a time) never meets the limit.
    statuses.length = 0;
    for (let i = 0; i < count; i++) {
      const response = await fetch(
        `http://127.0.0.1:${server.addr.port}/api/messages`,
      );
      await response.body?.cancel();
    }
    assert.deepEqual(statuses, Array(count).fill(200));
  } finally {
    conn.close();
    await server.shutdown();
    await board.close();
  }
});

Deno.test("hostile6: regression: one client's zero-window HTTP/2 connections get MAX_ANSWERS_PER_CLIENT answers at a time, then 429", async () => {
  // 70 connections of 8 answers from one address took every one of MAX_ANSWERS_IN_FLIGHT
  // (500), and every other client got 503 for as long as they stayed (redteam's F4).
  await using folder = await tempFolder();
  const dataFile = join(folder.path, "messages.jsonl");
  await Deno.writeTextFile(dataFile, longPage());
  const board = await openBoard({ dataFile, log: () => {} });
  const statuses = new Map<string, number[]>();
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen() {} },
    async (request, info) => {
      const response = await board.handler(request, info);
      const from = info.remoteAddr.hostname;
      statuses.set(from, [...statuses.get(from) ?? [], response.status]);
      return response;
    },
  );
  const latin1 = (bytes: Uint8Array) => String.fromCharCode(...bytes);
  const streams = MAX_ANSWERS_PER_CONNECTION;
  const connections = MAX_ANSWERS_PER_CLIENT / streams + 2;
  const clients: RawClient[] = [];
  try {
    // Cleartext HTTP/2 from 127.0.0.3, every stream given no window (RFC 9113 6.5.2).
    const first = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" +
      latin1(h2Frame(4, 0, 0, new Uint8Array([0, 4, 0, 0, 0, 0]))) +
      Array.from(
        { length: streams },
        (_, i) => latin1(h2Frame(1, 0x5, 2 * i + 1, h2Get("/"))),
      ).join("");
    for (let c = 0; c < connections; c++) {
      clients.push(await connectFrom(server.addr.port, "127.0.0.3", first));
    }
    const count = () => statuses.get("127.0.0.3")?.length ?? 0;
    for (
      let waited = 0;
      count() < connections * streams && waited < 5000;
      waited += 20
    ) {
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    const mine = statuses.get("127.0.0.3")!;
    assert.equal(
      mine.filter((status) => status === 200).length,
      MAX_ANSWERS_PER_CLIENT,
    );
    assert.equal(mine.filter((status) => status === 429).length, 2 * streams);
    // Another client is answered.
    const page = await fetch(`http://127.0.0.1:${server.addr.port}/`);
    assert.equal(page.status, 200);
    await page.body?.cancel();
  } finally {
    for (const client of clients) client.socket.destroy();
    await server.shutdown();
    await board.close();
  }
});
