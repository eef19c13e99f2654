// The sixth hostile-client round against message_board.ts and board_postgres.ts, by class:
// request shapes Deno.serve hands on as they came, and what a store does under them. One
// test per defect found, each failing on the code before its fix.
import assert from "node:assert/strict";
import { openTempBoard } from "./_board.ts";
import { sendRaw } from "./_raw.ts";

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
