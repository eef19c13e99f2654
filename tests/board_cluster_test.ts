// Several board processes on one PostgreSQL database, started with the README's Postgres-mode
// command: a post on one shows on the other (page, API, live events), a clear on one empties
// both, SIGKILL while posting loses nothing acknowledged, a stopped database gives 503 and the
// boards recover when it is back.
import assert from "node:assert/strict";
import {
  fetchAllMessages,
  PG_FLAGS,
  PG_SCRIPT,
  postJson,
  startPgBoard,
} from "./_board.ts";
import { pgTestOptions, startPostgres } from "./_postgres.ts";
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
  name:
    "cluster: a post on A shows on B's page, API and event stream; a clear on B empties A",
  ...pgTestOptions(),
  async fn() {
    await using pg = await startPostgres();
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

      const event = await events.nextEvent();
      assert.equal(event?.event, "message");
      assert.equal(event?.id, String(id));
      assert.deepEqual(JSON.parse(event!.data!), posted.message);

      const page = await (await fetch(b.url)).text();
      assert.match(page, new RegExp(`<article class="message" id="m${id}">`));
      assert.match(page, /from A &lt;b&gt;bold&lt;\/b&gt;/);
      assert.match(page, /by <span class="name">Ann<\/span>/);
      assert.deepEqual(await fetchAllMessages(b.url), [posted.message]);

      const cleared = await postForm(b.url, "clear=1");
      assert.equal(cleared.status, 303);
      await cleared.body?.cancel();
      assert.deepEqual(await events.nextEvent(), {
        id: String(id),
        event: "clear",
        data: "{}",
      });
      assert.deepEqual(await fetchAllMessages(a.url), []);
      assert.match(await (await fetch(a.url)).text(), /No messages yet\./);
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
    await using pg = await startPostgres();
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
  name:
    "cluster: with the database stopped the board answers 503, and recovers after restart",
  ...pgTestOptions(),
  async fn() {
    await using pg = await startPostgres();
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
      const page = await fetch(a.url);
      assert.equal(page.status, 503);
      assert.match(await page.text(), /unavailable right now/);
      const form = await postForm(a.url, "message=during");
      assert.equal(form.status, 503);
      await form.body?.cancel();

      await pg.start();
      const after = await postJson(a.url, { text: "after" });
      assert.equal(after.status, 201);
      assert.deepEqual((await fetchAllMessages(b.url)).map((m) => m.text), [
        "after",
        "before",
      ]);
      // B's listener reconnects by itself and delivers what was posted meanwhile.
      const event = await events.nextEvent();
      assert.equal(JSON.parse(event!.data!).text, "after");
    } finally {
      await events.cancel();
    }
  },
});

Deno.test({
  name: "cluster: SIGTERM with an open event stream stops the board cleanly",
  ...pgTestOptions(),
  async fn() {
    await using pg = await startPostgres();
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
    await using pg = await startPostgres();
    await pg.stop();
    const { code, stderr } = await runScript(PG_SCRIPT, PG_FLAGS, [
      "--port",
      "0",
      "--store",
      pg.url,
    ]);
    assert.equal(code, 1);
    assert.match(
      stderr,
      /cannot open the database at postgres:\/\/board@127\.0\.0\.1:\d+\/board/,
    );
    assert.doesNotMatch(stderr, /^\s+at /m, "a message, not a stack trace");
  },
});

Deno.test({
  name:
    "cluster: with the database hung (SIGSTOP) posts and older pages get 503 within 5 s; it recovers on SIGCONT",
  ...pgTestOptions(),
  async fn() {
    await using pg = await startPostgres();
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
        await response.body?.cancel();
        return { response, ms: Date.now() - start };
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
      for (const [what, { response, ms }] of Object.entries({ post, older })) {
        assert.equal(response.status, 503, what);
        assert.ok(ms < 5_000, `${what} answered in ${ms} ms`);
        assert.ok(Number(response.headers.get("retry-after")) >= 1, what);
      }
      // The newest page is answered from memory, without the database.
      assert.equal(newest.response.status, 200);
      assert.ok(
        newest.ms < 1_000,
        `the newest page answered in ${newest.ms} ms`,
      );
    } finally {
      await pg.signal("SIGCONT");
    }
    const deadline = Date.now() + 15_000;
    let status = 0;
    while (status !== 201 && Date.now() < deadline) {
      status = (await postJson(board.url, { text: "after" })).status;
    }
    assert.equal(status, 201, "posts work again");
  },
});
