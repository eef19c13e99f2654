// The fifth hostile-client round against message_board.ts: clients that ask for the
// board's biggest answers and never read them. One test per defect found, each failing on
// the code before its fix.
import assert from "node:assert/strict";
import { join } from "node:path";
import { openBoard } from "../message_board.ts";
import { startBoard, tempFolder } from "./_board.ts";
import { certTestOptions, makeCertificate } from "./_certs.ts";
import { readRss } from "./_process.ts";
import { openStalledStreams } from "./_raw.ts";

/** 100 messages of 4,000 emoji (16 KB each in UTF-8): the longest page the API gives. */
function longMessages(): string {
  return Array.from({ length: 100 }, (_, i) =>
    JSON.stringify({
      id: i + 1,
      text: "😀".repeat(4000),
      postedAt: "2026-11-21T22:44:51.000Z",
    }) + "\n").join("");
}

Deno.test({
  name:
    "hostile5: regression: HTTP/2 streams that give no window hold a piece of a long page each, not the page",
  ...certTestOptions(),
  async fn() {
    // Deno.serve holds a string body whole until the client takes it: 600 streams asking
    // for the 1.6 MB page held 400-464 MB (another client then waited 4-5 s); rendered as
    // the client reads, they hold 104-160 MB, about what any stalled stream costs.
    await using folder = await tempFolder();
    const data = join(folder.path, "data");
    await Deno.mkdir(data);
    const cert = await makeCertificate(data);
    await Deno.writeTextFile(join(data, "messages.jsonl"), longMessages());
    const board = await startBoard(folder.path, [
      "--cert",
      "data/cert.pem",
      "--key",
      "data/key.pem",
    ]);
    try {
      using client = Deno.createHttpClient({
        caCerts: [cert.pem],
        http1: false,
      });
      const path = "/api/messages?limit=100";
      const first = await fetch(new URL(path, board.url), { client });
      assert.equal((await first.json()).messages.length, 100);
      const before = await readRss(board.pid);
      // SETTINGS_INITIAL_WINDOW_SIZE = 0: no stream may be sent a byte of its body.
      using _stalled = await openStalledStreams(board.port, cert.pem, {
        connections: 2,
        perConnection: 200,
        path: () => path,
      });
      await new Promise((resolve) => setTimeout(resolve, 2000));
      const grown = (await readRss(board.pid) - before) / 1e6;
      // The whole page per stream: about 300 MB for these 400 streams.
      assert.ok(grown < 180, `RSS grew by ${grown.toFixed(0)} MB`);
      const health = await fetch(new URL("/healthz", board.url), { client });
      assert.equal(health.status, 200);
      await health.body?.cancel();
    } finally {
      await board.stop("SIGKILL");
    }
  },
});

Deno.test("hostile5: a long page rendered in pieces is the same text as whole", async () => {
  await using folder = await tempFolder();
  const dataFile = join(folder.path, "messages.jsonl");
  await Deno.writeTextFile(dataFile, longMessages());
  const board = await openBoard({ dataFile, log: () => {} });
  try {
    const api = await board.handler(
      new Request("http://127.0.0.1/api/messages?limit=100"),
    );
    const { messages } = await board.store.listMessages({ limit: 100 });
    assert.equal(
      await api.text(),
      JSON.stringify({ messages, older: null }),
    );
    // No Host header, as over HTTP/2: in pieces. With one, as over HTTP/1.1: whole.
    const inPieces = await board.handler(new Request("http://127.0.0.1/"));
    const whole = await board.handler(
      new Request("http://127.0.0.1/", { headers: { host: "127.0.0.1" } }),
    );
    const html = await inPieces.text();
    assert.equal(html.match(/<article /g)?.length, 50);
    assert.equal(html, await whole.text());
    const wholeApi = await board.handler(
      new Request("http://127.0.0.1/api/messages?limit=100", {
        headers: { host: "127.0.0.1" },
      }),
    );
    assert.equal(
      await wholeApi.text(),
      JSON.stringify({ messages, older: null }),
    );
  } finally {
    await board.close();
  }
});

Deno.test("hostile5: posts racing with clears: every acknowledged post is kept once, ids never reused", async () => {
  await using folder = await tempFolder();
  const dataFile = join(folder.path, "messages.jsonl");
  // A visitor on this machine (who may clear), each request on a connection of its own.
  let port = 40000;
  const info = (): Deno.ServeHandlerInfo => ({
    remoteAddr: { transport: "tcp", hostname: "127.0.0.1", port: port++ },
    completed: Promise.resolve(),
  });
  const board = await openBoard({ dataFile, log: () => {}, rateLimit: false });
  const post = async (text: string) => {
    const response = await board.handler(
      new Request("http://127.0.0.1/api/messages", {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ text }),
      }),
      info(),
    );
    return response.status === 201 ? (await response.json()).id : null;
  };
  const clear = async () => {
    const response = await board.handler(
      new Request("http://127.0.0.1/", {
        method: "POST",
        headers: { "content-type": "application/x-www-form-urlencoded" },
        body: "clear=1",
      }),
      info(),
    );
    await response.body?.cancel();
    return response.status;
  };
  const acknowledged = new Map<number, string>();
  try {
    for (let round = 0; round < 3; round++) {
      const texts = Array.from({ length: 40 }, (_, i) => `r${round} p${i}`);
      const results = await Promise.all([
        ...texts.map((text) => post(text)),
        clear(),
        ...texts.slice(0, 10).map((text) => post(`${text} again`)),
        clear(),
      ]);
      assert.deepEqual([results[40], results[51]], [303, 303]); // the clears
      const ids = [...results.slice(0, 40), ...results.slice(41, 51)];
      const sent = [...texts, ...texts.slice(0, 10).map((t) => `${t} again`)];
      ids.forEach((id, i) => {
        assert.notEqual(id, null, sent[i]);
        assert.ok(!acknowledged.has(id), `id ${id} given twice`);
        acknowledged.set(id, sent[i]!);
      });
    }
  } finally {
    await board.close();
  }
  // Every file the board wrote (the board and its archives), read back as start-up would.
  const kept = new Map<number, string>();
  for await (const entry of Deno.readDir(folder.path)) {
    if (!entry.name.endsWith(".jsonl")) continue;
    const lines = (await Deno.readTextFile(join(folder.path, entry.name)))
      .split("\n").filter(Boolean).map((line) => JSON.parse(line));
    let last = 0;
    for (const line of lines) {
      if (typeof line.text !== "string") continue; // a clear record
      assert.ok(line.id > last, `${entry.name}: id ${line.id} after ${last}`);
      last = line.id;
      assert.ok(!kept.has(line.id), `id ${line.id} kept twice`);
      kept.set(line.id, line.text);
    }
  }
  assert.deepEqual(
    [...kept].sort(([a], [b]) => a - b),
    [...acknowledged].sort(([a], [b]) => a - b),
  );
});
