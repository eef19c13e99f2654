// Several board processes on one PostgreSQL database, started with the README's Postgres-mode
// command: a post on one shows on the other (page, API, live events), a clear on one empties
// both, SIGKILL while posting loses nothing acknowledged, a stopped database gives 503 and the
// boards recover when it is back.
//
// Every test takes a fresh database on the one PostgreSQL server this file shares
// (`freshDatabase()`): initdb is the slow part. The tests that stop, freeze or start the
// database act on that whole server, which is safe because a file's tests run one at a time
// and `freshDatabase()` starts a server a test left stopped; none needs a server of its own.
import assert from "node:assert/strict";
import postgres from "npm:postgres@3.4.7";
import {
  fetchAllMessages,
  PG_FLAGS,
  PG_SCRIPT,
  postJson,
  startPgBoard,
} from "./_board.ts";
import { freshDatabase, pgTestOptions } from "./_postgres.ts";
import { runScript } from "./_process.ts";
import { frameReader } from "./_sse.ts";

function postForm(url: string, body: string): Promise<Response> {
  return fetch(url, {
    method: "POST",
    headers: { "content-type": "application/x-www-form-urlencoded" },
    body,
    redirect: "manual",
  });
}

Deno.test({
  name: "cluster: two boards on one database share posts and clears",
  ...pgTestOptions(),
  async fn(t) {
    await using pg = await freshDatabase();
    await using a = await startPgBoard(pg);
    // B reads the URL from DATABASE_URL instead of --store.
    await using b = await startPgBoard(pg, { DATABASE_URL: pg.url });
    assert.notEqual(a.url, b.url);

    const events = frameReader(await fetch(new URL("events", b.url)));
    try {
      assert.deepEqual(await events.next(), { retry: "2000" });
      const posted = await postJson(a.url, {
        text: "from A <b>bold</b>",
        name: "Ann",
      });
      assert.equal(posted.status, 201);
      const id = posted.message!.id;

      await t.step("a post on A reaches B's event stream", async () => {
        const event = await events.nextEvent();
        assert.equal(event?.event, "message");
        assert.equal(event?.id, String(id));
        assert.deepEqual(JSON.parse(event!.data!), posted.message);
      });
      await t.step("a post on A shows on B's page, escaped", async () => {
        const page = await (await fetch(b.url)).text();
        assert.match(
          page,
          new RegExp(`<article class="message" id="m${id}">`),
        );
        assert.match(page, /from A &lt;b&gt;bold&lt;\/b&gt;/);
        assert.match(page, /by <span class="name">Ann<\/span>/);
      });
      await t.step("a post on A is in B's API", async () => {
        assert.deepEqual(await fetchAllMessages(b.url), [posted.message]);
      });

      const cleared = await postForm(b.url, "clear=1");
      assert.equal(cleared.status, 303);
      await cleared.body?.cancel();
      await t.step("a clear on B reaches B's event stream", async () => {
        assert.deepEqual(await events.nextEvent(), {
          id: String(id),
          event: "clear",
          data: "{}",
        });
      });
      await t.step("a clear on B empties A's API and page", async () => {
        assert.deepEqual(await fetchAllMessages(a.url), []);
        assert.match(await (await fetch(a.url)).text(), /No messages yet\./);
      });
    } finally {
      await events.cancel();
    }
  },
});

Deno.test({
  name:
    "cluster: SIGKILL on one board while posting loses no acknowledged message",
  ...pgTestOptions(),
  async fn() {
    await using pg = await freshDatabase();
    await using victim = await startPgBoard(pg);
    await using survivor = await startPgBoard(pg);

    const acknowledged = new Map<number, string>();
    let killed = false;
    const worker = async (w: number) => {
      for (let i = 0; !killed && i < 500; i++) {
        const text = `worker ${w} post ${i}`;
        try {
          const { status, message } = await postJson(victim.url, { text });
          if (status === 201) acknowledged.set(message!.id, text);
        } catch {
          return; // the connection died with the process: not acknowledged
        }
        if (acknowledged.size >= 150 && !killed) {
          killed = true;
          victim.kill("SIGKILL");
        }
      }
    };
    await Promise.all(Array.from({ length: 16 }, (_, w) => worker(w)));
    assert.ok(killed, "the victim was killed mid-run");
    const { code } = await victim.output;
    assert.notEqual(code, 0);

    const stored = new Map(
      (await fetchAllMessages(survivor.url)).map((m) => [m.id, m.text]),
    );
    for (const [id, text] of acknowledged) {
      assert.equal(stored.get(id), text, `message ${id}`);
    }
    // The survivor still takes posts.
    assert.equal(
      (await postJson(survivor.url, { text: "still here" })).status,
      201,
    );
  },
});

Deno.test({
  name: "cluster: a stopped database gives 503 until it is back",
  ...pgTestOptions(),
  async fn(t) {
    await using pg = await freshDatabase();
    await using a = await startPgBoard(pg);
    await using b = await startPgBoard(pg);
    const events = frameReader(await fetch(new URL("events", b.url)));
    try {
      await events.next();
      assert.equal((await postJson(a.url, { text: "before" })).status, 201);
      assert.equal(
        JSON.parse((await events.nextEvent())!.data!).text,
        "before",
      );
      await pg.stop();

      await t.step("an API post gets 503 with a generic error", async () => {
        const api = await fetch(new URL("api/messages", a.url), {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: '{"text":"during"}',
        });
        assert.equal(api.status, 503);
        const { error } = await api.json();
        assert.match(error, /unavailable/);
        assert.doesNotMatch(
          error,
          /127\.0\.0\.1|ECONN|postgres/i,
          "no internals to the client",
        );
      });
      await t.step("the page gets 503 saying so", async () => {
        const page = await fetch(a.url);
        assert.equal(page.status, 503);
        assert.match(await page.text(), /unavailable right now/);
      });
      await t.step("a form post gets 503 saying so", async () => {
        const form = await postForm(a.url, "message=during");
        assert.equal(form.status, 503);
        assert.match(await form.text(), /unavailable right now/);
      });

      await pg.start();
      await t.step("once it is back, a post is stored for both", async () => {
        const after = await postJson(a.url, { text: "after" });
        assert.equal(after.status, 201);
        assert.deepEqual(
          (await fetchAllMessages(b.url)).map((m) => m.text),
          ["after", "before"],
        );
      });
      await t.step(
        "once it is back, B's listener reconnects and delivers the post",
        async () => {
          const event = await events.nextEvent();
          assert.equal(JSON.parse(event!.data!).text, "after");
        },
      );
    } finally {
      await events.cancel();
    }
  },
});

Deno.test({
  name: "cluster: SIGTERM with an open event stream stops the board cleanly",
  ...pgTestOptions(),
  async fn() {
    await using pg = await freshDatabase();
    const board = await startPgBoard(pg);
    const events = frameReader(await fetch(new URL("events", board.url)));
    await events.next();
    board.kill("SIGTERM");
    assert.equal(await events.next(), null, "the stream is closed, not cut");
    const { code, stdout } = await board.output;
    assert.equal(code, 0);
    assert.match(stdout, /stopped/);
  },
});

Deno.test({
  name:
    "cluster: a board whose database is down at start-up exits with a clear message",
  ...pgTestOptions(),
  async fn() {
    await using pg = await freshDatabase();
    await pg.stop();
    const { code, stderr } = await runScript(PG_SCRIPT, PG_FLAGS, [
      "--port",
      "0",
      "--store",
      pg.url,
    ]);
    assert.equal(code, 1);
    const url = pg.url.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&");
    assert.match(stderr, new RegExp(`cannot open the database at ${url}: `));
    assert.doesNotMatch(stderr, /^\s+at /m, "a message, not a stack trace");
  },
});

Deno.test({
  name: "cluster: a hung database (SIGSTOP) gives quick 503s until SIGCONT",
  ...pgTestOptions(),
  async fn(t) {
    await using pg = await freshDatabase();
    await using board = await startPgBoard(pg);
    const first = await postJson(board.url, { text: "before the hang" });
    assert.equal(first.status, 201);
    // The newest page, once read, is kept in memory.
    assert.match(await (await fetch(board.url)).text(), /before the hang/);
    await pg.signal("SIGSTOP");
    try {
      const timed = async (request: Promise<Response>) => {
        const start = Date.now();
        const response = await request;
        const body = await response.text();
        return { response, body, ms: Date.now() - start };
      };
      const [post, older, newest] = await Promise.all([
        timed(fetch(new URL("api/messages", board.url), {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: JSON.stringify({ text: "while hung" }),
        })),
        timed(fetch(new URL(`?before=${first.message!.id + 1}`, board.url))),
        timed(fetch(board.url)),
      ]);
      for (
        const [what, { response, body, ms }] of Object.entries({
          "a post": post,
          "an older page": older,
        })
      ) {
        await t.step(
          `${what} gets 503 with Retry-After within 5 s`,
          () => {
            assert.equal(response.status, 503);
            // The post went to the stopped server, which runs it on SIGCONT: it may be saved.
            assert.match(
              body,
              what === "a post"
                ? /may still be saved/
                : /unavailable right now/,
            );
            assert.ok(ms < 5_000, `answered in ${ms} ms`);
            assert.ok(Number(response.headers.get("retry-after")) >= 1);
          },
        );
      }
      await t.step("the newest page is answered from memory", () => {
        assert.equal(newest.response.status, 200);
        assert.match(newest.body, /before the hang/);
        assert.ok(newest.ms < 1_000, `answered in ${newest.ms} ms`);
      });
    } finally {
      await pg.signal("SIGCONT");
    }
    await t.step("after SIGCONT posts work again", async () => {
      const deadline = Date.now() + 15_000;
      let status = 0;
      while (status !== 201 && Date.now() < deadline) {
        status = (await postJson(board.url, { text: "after" })).status;
      }
      assert.equal(status, 201);
    });
  },
});

Deno.test({
  name:
    "cluster: regression: a dropped database (a restore from a backup drops it first) gives 503 with Retry-After, not 500",
  ...pgTestOptions(),
  async fn(t) {
    await using pg = await freshDatabase();
    const name = new URL(pg.url).pathname.slice(1);
    const admin = postgres(pg.url.replace(/\/[^/]+$/, "/postgres"), {
      onnotice: () => {},
      max: 1,
    });
    try {
      const board = await startPgBoard(pg);
      try {
        assert.equal(
          (await postJson(board.url, { text: "before" })).status,
          201,
        );
        await admin.unsafe(`drop database "${name}" with (force)`);
        await t.step("an API post gets 503 with Retry-After", async () => {
          const response = await fetch(new URL("api/messages", board.url), {
            method: "POST",
            headers: { "content-type": "application/json" },
            body: '{"text":"during"}',
          });
          const { error } = await response.json();
          assert.equal(response.status, 503, error);
          assert.ok(Number(response.headers.get("retry-after")) >= 1);
          assert.doesNotMatch(error, /does not exist|postgres|test_/i);
        });
        await t.step("an older page gets 503", async () => {
          const response = await fetch(new URL("?before=5", board.url));
          await response.body?.cancel();
          assert.equal(response.status, 503);
        });
      } finally {
        const { code, stderr } = await board.stop();
        assert.equal(code, 0, stderr);
      }
    } finally {
      // Back for freshDatabase's own cleanup, which drops it.
      await admin.unsafe(`create database "${name}" owner board`);
      await admin.end();
    }
  },
});
