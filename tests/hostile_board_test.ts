// Hostile-client regression tests for message_board.ts, against a real process (the
// bugs are in what Deno.serve hands the handler, which an in-process Request cannot make).
import assert from "node:assert/strict";
import { openTempBoard, startBoard, tempFolder } from "./_board.ts";
import { sendRaw } from "./_raw.ts";

/** The board with its access log on (the log line parses the URL too) and its limits on. */
const startLoggingBoard = (cwd: string) =>
  startBoard(cwd, [], { accessLog: true, rateLimit: true });

Deno.test("a Host header that no URL can hold gets 400, never 500", async () => {
  await using folder = await tempFolder();
  await Deno.mkdir(`${folder.path}/data`);
  const board = await startLoggingBoard(folder.path);
  let stderr = "";
  try {
    for (
      const host of [
        "[zz",
        "a|b",
        "a%zz",
        "a^b",
        "[::1",
        "::1",
        "127.0.0.1:99999",
        "xn--",
      ]
    ) {
      for (const method of ["GET", "HEAD", "POST"]) {
        const body = method === "POST" ? "message=hi" : "";
        const reply = await sendRaw(
          board.port,
          `${method} / HTTP/1.1\r\nHost: ${host}\r\nContent-Type: application/x-www-form-urlencoded\r\n` +
            `Content-Length: ${body.length}\r\nConnection: close\r\n\r\n${body}`,
        );
        assert.equal(
          reply.status,
          400,
          `${method} with Host: ${host}\n${reply.text}`,
        );
        assert(!reply.text.includes("message_board.ts"), reply.text);
      }
    }
    const page = await sendRaw(
      board.port,
      "GET /api/messages HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
    );
    assert.equal(page.status, 200);
    assert(page.text.includes('"messages":[]'), "no post got through");
  } finally {
    stderr = (await board.stop()).stderr;
  }
  assert(!stderr.includes("TypeError"), stderr);
});

Deno.test("a Host with userinfo, a list, a path or nothing in it gets 400", async () => {
  await using folder = await tempFolder();
  await Deno.mkdir(`${folder.path}/data`);
  const board = await startLoggingBoard(folder.path);
  try {
    for (
      const host of [
        "",
        "a@127.0.0.1",
        "127.0.0.1:8080, evil.example",
        "127.0.0.1 evil.example",
        "127.0.0.1/api",
        "127.0.0.1:80a",
      ]
    ) {
      const reply = await sendRaw(
        board.port,
        `GET / HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`,
      );
      assert.equal(reply.status, 400, `Host: ${host}\n${reply.text}`);
    }
    const fine = await sendRaw(
      board.port,
      `GET / HTTP/1.1\r\nHost: 127.0.0.1:${board.port}\r\nConnection: close\r\n\r\n`,
    );
    assert.equal(fine.status, 200, fine.text);
  } finally {
    await board.stop();
  }
});

Deno.test("an absolute-form target's authority is checked as well as the Host header", async () => {
  await using folder = await tempFolder();
  await Deno.mkdir(`${folder.path}/data`);
  const board = await startLoggingBoard(folder.path);
  try {
    const elsewhere = await sendRaw(
      board.port,
      "GET http://evil.example/ HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
    );
    assert.equal(elsewhere.status, 421, elsewhere.text);
    const here = await sendRaw(
      board.port,
      `GET http://127.0.0.1:${board.port}/ HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n`,
    );
    assert.equal(here.status, 421, here.text);
    const both = await sendRaw(
      board.port,
      `GET http://127.0.0.1:${board.port}/ HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n`,
    );
    assert.equal(both.status, 200, both.text);
  } finally {
    await board.stop();
  }
});

Deno.test("a query parameter sent twice gets 400, not a guess", async () => {
  await using board = await openTempBoard({ log: () => {}, rateLimit: false });
  const info: Deno.ServeHandlerInfo = {
    remoteAddr: { transport: "tcp", hostname: "127.0.0.1", port: 40000 },
    completed: Promise.resolve(),
  };
  for (
    const path of [
      "/api/messages?limit=1&limit=100",
      "/api/messages?before=5&before=2",
      "/?before=5&before=2",
      "/events?after=1&after=2",
    ]
  ) {
    const response = await board.handler(
      new Request(`http://127.0.0.1:8080${path}`),
      info,
    );
    await response.body?.cancel();
    assert.equal(response.status, 400, path);
  }
  const once = await board.handler(
    new Request("http://127.0.0.1:8080/api/messages?limit=1"),
    info,
  );
  assert.equal(once.status, 200);
  await once.body?.cancel();
});
