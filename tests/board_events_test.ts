// Live updates in file mode, in-process: GET /events (Server-Sent Events), resuming with
// Last-Event-ID, heartbeats, closing on shutdown, and the page's /board.js.
import assert from "node:assert/strict";
import { join } from "node:path";
import {
  type BoardEvent,
  createBoardHandler,
  formatEvent,
  MAX_REPLAY_EVENTS,
  type MessageStore,
  openBoard,
  openJsonLinesStore,
} from "../message_board.ts";
import { openTempBoard, tempFolder } from "./_board.ts";
import { frameReader } from "./_sse.ts";

const BASE = "http://localhost";

/** An in-process board on a temp data file, closed afterwards. */
async function withBoard(
  test: (board: Awaited<ReturnType<typeof openBoard>>) => Promise<void>,
  options: { heartbeatMs?: number } = {},
) {
  await using board = await openTempBoard(options);
  // Called as Deno.serve calls it, for a visitor on this machine (who may clear).
  const local: Deno.ServeHandlerInfo = {
    remoteAddr: { transport: "tcp", hostname: "127.0.0.1", port: 40000 },
    completed: Promise.resolve(),
  };
  await test({
    ...board,
    handler: (request) => board.handler(request, local),
  });
}

function events(headers: HeadersInit = {}, query = ""): Request {
  return new Request(`${BASE}/events${query}`, { headers });
}

function postForm(body: string): Request {
  return new Request(BASE + "/", {
    method: "POST",
    headers: { "content-type": "application/x-www-form-urlencoded" },
    body,
  });
}

Deno.test("events: formatEvent writes one id/event/data frame per change", () => {
  const message = {
    id: 3,
    text: "two\nlines",
    postedAt: "2026-11-21T22:44:51.000Z",
  };
  const table: [BoardEvent, string][] = [
    [
      { type: "message", id: 3, message },
      `id: 3\nevent: message\ndata: {"id":3,"text":"two\\nlines","postedAt":"2026-11-21T22:44:51.000Z"}\n\n`,
    ],
    [{ type: "clear", id: 7 }, "id: 7\nevent: clear\ndata: {}\n\n"],
    // No id: line, so the browser's Last-Event-ID stays the newest message it has.
    [{ type: "delete", id: 3 }, 'event: delete\ndata: {"id":3}\n\n'],
    [{ type: "restore", id: 9 }, "id: 9\nevent: restore\ndata: {}\n\n"],
  ];
  for (const [event, text] of table) assert.equal(formatEvent(event), text);
});

Deno.test("events: the live stream", async (t) => {
  await withBoard(async (board) => {
    const response = await board.handler(events());
    await t.step("is an uncached event stream", () => {
      assert.equal(response.status, 200);
      assert.equal(
        response.headers.get("content-type"),
        "text/event-stream; charset=utf-8",
      );
      assert.equal(response.headers.get("cache-control"), "no-store");
    });
    const stream = frameReader(response);
    try {
      await t.step("starts with the reconnection delay", async () => {
        assert.deepEqual(await stream.next(), { retry: "2000" });
      });
      const one = await board.store.appendMessage({
        text: "<b>one</b>",
        name: "Ann",
      });
      (await board.handler(postForm("message=two"))).body?.cancel();
      await t.step("new messages arrive with their ids, in order", async () => {
        const first = await stream.nextEvent();
        assert.deepEqual(first, {
          id: "1",
          event: "message",
          data: JSON.stringify(one),
        });
        const second = await stream.nextEvent();
        assert.equal(second?.id, "2");
        assert.equal(JSON.parse(second!.data!).text, "two");
      });
      (await board.handler(postForm("clear=1"))).body?.cancel();
      await t.step("a clear arrives with the newest id", async () => {
        assert.deepEqual(await stream.nextEvent(), {
          id: "2",
          event: "clear",
          data: "{}",
        });
      });
    } finally {
      await stream.cancel();
    }
  });
});

Deno.test("events: Last-Event-ID (or ?after=) resumes without gaps or repeats", async () => {
  await withBoard(async (board) => {
    for (const text of ["one", "two", "three"]) {
      await board.store.appendMessage({ text });
    }

    // A browser reconnecting after event 1 gets 2 and 3 at once.
    const resumed = frameReader(
      await board.handler(events({ "last-event-id": "1" })),
    );
    // The page's first connection: it already shows everything up to 3.
    const fromPage = frameReader(await board.handler(events({}, "?after=3")));
    // The header wins over the query (the browser keeps the page's URL when reconnecting).
    const both = frameReader(
      await board.handler(events({ "last-event-id": "2" }, "?after=0")),
    );
    try {
      assert.deepEqual([
        (await resumed.nextEvent())?.id,
        (await resumed.nextEvent())?.id,
      ], [
        "2",
        "3",
      ]);
      assert.equal((await both.nextEvent())?.id, "3");
      await board.store.appendMessage({ text: "four" });
      assert.equal(
        (await fromPage.nextEvent())?.id,
        "4",
        "nothing before 4 is repeated",
      );
      assert.equal((await resumed.nextEvent())?.id, "4");
      assert.equal((await both.nextEvent())?.id, "4");
    } finally {
      await Promise.all([resumed.cancel(), fromPage.cancel(), both.cancel()]);
    }
  });
});

Deno.test("events: a client that missed a clear gets it first, then the new messages", async () => {
  await withBoard(async (board) => {
    await board.store.appendMessage({ text: "one" });
    await board.store.appendMessage({ text: "two" });
    await board.store.clearMessages();
    await board.store.appendMessage({ text: "three" });
    const stream = frameReader(
      await board.handler(events({ "last-event-id": "1" })),
    );
    try {
      assert.deepEqual(await stream.nextEvent(), {
        id: "2",
        event: "clear",
        data: "{}",
      });
      assert.equal((await stream.nextEvent())?.id, "3");
    } finally {
      await stream.cancel();
    }
  });
});

Deno.test("events: a clear survives a restart of the file board for resuming clients", async () => {
  await using folder = await tempFolder();
  const dataFile = join(folder.path, "messages.jsonl");
  let store = await openJsonLinesStore(dataFile);
  await store.appendMessage({ text: "one" });
  await store.appendMessage({ text: "two" });
  await store.clearMessages();
  await store.close();
  store = await openJsonLinesStore(dataFile);
  try {
    assert.deepEqual(await store.eventsAfter(1, 10), [{
      type: "clear",
      id: 2,
    }]);
    assert.deepEqual(await store.eventsAfter(3, 10), []);
  } finally {
    await store.close();
  }
});

Deno.test("events: a client too far behind is told to reload the page", async () => {
  await withBoard(async (board) => {
    await Promise.all(
      Array.from(
        { length: MAX_REPLAY_EVENTS + 1 },
        (_, i) => board.store.appendMessage({ text: `m${i}` }),
      ),
    );
    const stream = frameReader(
      await board.handler(events({ "last-event-id": "0" })),
    );
    assert.deepEqual(await stream.next(), { retry: "2000" });
    assert.deepEqual(await stream.next(), { event: "reload", data: "{}" });
    assert.equal(await stream.next(), null, "the stream ends");
  });
});

Deno.test("events: an idle stream gets heartbeat comments", async () => {
  await withBoard(async (board) => {
    const stream = frameReader(await board.handler(events()));
    try {
      assert.deepEqual(await stream.next(), { retry: "2000" });
      assert.deepEqual(await stream.next(), { comment: "heartbeat" });
      assert.deepEqual(await stream.next(), { comment: "heartbeat" });
    } finally {
      await stream.cancel();
    }
  }, { heartbeatMs: 20 });
});

Deno.test("events: a bad resume id gets 400", async (t) => {
  await withBoard(async (board) => {
    for (
      const bad of ["abc", "-1", "1.5", "01", "2x", "99999999999999999999"]
    ) {
      await t.step(JSON.stringify(bad), async () => {
        const response = await board.handler(events({ "last-event-id": bad }));
        assert.equal(response.status, 400);
        await response.body?.cancel();
      });
    }
  });
});

Deno.test("events: other methods than GET and HEAD get 405 with Allow", async () => {
  await withBoard(async (board) => {
    const post = await board.handler(
      new Request(BASE + "/events", { method: "POST" }),
    );
    assert.equal(post.status, 405);
    assert.equal(post.headers.get("allow"), "GET, HEAD");
    await post.body?.cancel();
  });
});

Deno.test("events: HEAD gets the stream's headers and no body", async () => {
  await withBoard(async (board) => {
    const head = await board.handler(
      new Request(BASE + "/events", { method: "HEAD" }),
    );
    assert.equal(head.status, 200);
    assert.equal(
      head.headers.get("content-type"),
      "text/event-stream; charset=utf-8",
    );
    assert.equal(head.body, null);
  });
});

/** Wraps a store to count live subscriptions. */
function countingStore(store: MessageStore) {
  const counter = { active: 0 };
  const wrapped: MessageStore = {
    listMessages: (query) => store.listMessages(query),
    appendMessage: (input) => store.appendMessage(input),
    clearMessages: () => store.clearMessages(),
    deleteMessage: (id) => store.deleteMessage(id),
    restoreNewestArchive: () => store.restoreNewestArchive(),
    get writable() {
      return store.writable;
    },
    eventsAfter: (id, limit) => store.eventsAfter(id, limit),
    subscribe(listener) {
      counter.active++;
      const unsubscribe = store.subscribe(listener);
      return () => {
        counter.active--;
        unsubscribe();
      };
    },
    close: () => store.close(),
  };
  return { wrapped, counter };
}

Deno.test("events: subscriptions end", async (t) => {
  await using folder = await tempFolder();
  const store = await openJsonLinesStore(join(folder.path, "messages.jsonl"));
  const { wrapped, counter } = countingStore(store);
  const shutdown = new AbortController();
  const handler = createBoardHandler(wrapped, { signal: shutdown.signal });
  try {
    const leaving = frameReader(await handler(events()));
    const staying = frameReader(await handler(events()));
    assert.equal(counter.active, 2);
    await t.step("when a client leaves", async () => {
      await leaving.next();
      await leaving.cancel();
      assert.equal(counter.active, 1);
    });
    shutdown.abort();
    await t.step(
      "when the board shuts down, the stream ending cleanly",
      async () => {
        assert.deepEqual(await staying.next(), { retry: "2000" });
        assert.equal(await staying.next(), null);
        assert.equal(counter.active, 0);
      },
    );
    await t.step("while it shuts down, a new stream gets 503", async () => {
      const late = await handler(events());
      assert.equal(late.status, 503);
      await late.body?.cancel();
    });
  } finally {
    await store.close();
  }
});

Deno.test("events: regression: a reader that does not keep up is dropped, not closed after its queue", async () => {
  await using folder = await tempFolder();
  const store = await openJsonLinesStore(join(folder.path, "messages.jsonl"));
  const { wrapped, counter } = countingStore(store);
  const handler = createBoardHandler(wrapped);
  try {
    const stuck = await handler(events()); // never read
    const text = "x".repeat(4000);
    for (let i = 0; i < 20; i++) await store.appendMessage({ text });
    assert.equal(counter.active, 0, "its subscription ended");
    // A close kept every queued byte, and over a socket its connection, until the client
    // read them, while its stream slot was already given to another.
    await assert.rejects(stuck.body!.getReader().read(), /fell behind/);
  } finally {
    await store.close();
  }
});

Deno.test("events: over a real socket, endEventStreams lets server.shutdown() finish", async () => {
  await using board = await openTempBoard();
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen() {} },
    board.handler,
  );
  try {
    const url = `http://127.0.0.1:${server.addr.port}/events`;
    const response = await fetch(url);
    const stream = frameReader(response);
    assert.deepEqual(await stream.next(), { retry: "2000" });
    await fetch(`http://127.0.0.1:${server.addr.port}/api/messages`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: '{"text":"over the wire"}',
    }).then((r) => r.body?.cancel());
    const event = await stream.nextEvent();
    assert.equal(JSON.parse(event!.data!).text, "over the wire");

    board.endEventStreams();
    await server.shutdown();
    assert.equal(await stream.next(), null);
  } finally {
    await server.finished;
  }
});

Deno.test("page: the newest page loads /board.js and says where live updates start", async () => {
  await withBoard(async (board) => {
    for (const text of ["one", "two", "three"]) {
      await board.store.appendMessage({ text });
    }
    const newest = await (await board.handler(new Request(BASE + "/"))).text();
    assert.match(
      newest,
      /<section class="messages" aria-labelledby="messages-heading" aria-live="polite" data-after="3" data-events="\/events"/,
    );
    const older = await (await board.handler(new Request(BASE + "/?before=3")))
      .text();
    assert.doesNotMatch(
      older,
      /data-after/,
      "older pages do not change under the reader",
    );

    const script = await board.handler(new Request(BASE + "/board.js"));
    assert.equal(script.status, 200);
    assert.equal(
      script.headers.get("content-type"),
      "text/javascript; charset=utf-8",
    );
    const code = await script.text();
    assert.match(
      code,
      /new EventSource\(section\.dataset\.events \+ "\?after="/,
    );
    assert.match(code, /textContent/);
    assert.doesNotMatch(
      code,
      /innerHTML|insertAdjacentHTML|eval\(|document\.write/,
    );
  });
});

Deno.test("page: an empty board starts live updates after 0", async () => {
  await withBoard(async (board) => {
    const html = await (await board.handler(new Request(BASE + "/"))).text();
    assert.match(html, /data-after="0"/);
  });
});

Deno.test("events: moderation on an open page's stream", async (t) => {
  await withBoard(async (board) => {
    await board.store.appendMessage({ text: "one" });
    await board.store.appendMessage({ text: "two" });
    const stream = frameReader(await board.handler(events({}, "?after=2")));
    try {
      assert.deepEqual(await stream.next(), { retry: "2000" });
      (await board.handler(
        new Request(BASE + "/admin/delete", {
          method: "POST",
          headers: { "content-type": "application/x-www-form-urlencoded" },
          body: "id=1",
        }),
      )).body?.cancel();
      await t.step(
        "a delete arrives without an id (the resume point stays)",
        async () => {
          assert.deepEqual(await stream.nextEvent(), {
            event: "delete",
            data: '{"id":1}',
          });
        },
      );
      await board.store.clearMessages();
      await t.step("a clear arrives with the newest id", async () => {
        assert.deepEqual(await stream.nextEvent(), {
          id: "2",
          event: "clear",
          data: "{}",
        });
      });
      await board.store.restoreNewestArchive();
      await t.step(
        "a restore arrives, telling the page to reload",
        async () => {
          assert.deepEqual(await stream.nextEvent(), {
            id: "2",
            event: "restore",
            data: "{}",
          });
        },
      );
      await t.step("after a restore the stream ends", async () => {
        assert.equal(await stream.next(), null);
      });
    } finally {
      await stream.cancel();
    }
  });
});

Deno.test("events: a page that missed a delete while away gets it when it comes back", async () => {
  await withBoard(async (board) => {
    await board.store.appendMessage({ text: "one" });
    await board.store.appendMessage({ text: "two" });
    await board.store.deleteMessage(1);
    const resumed = frameReader(
      await board.handler(events({ "last-event-id": "2" })),
    );
    try {
      assert.deepEqual(await resumed.nextEvent(), {
        event: "delete",
        data: '{"id":1}',
      });
    } finally {
      await resumed.cancel();
    }
  });
});
