// The JSON Lines store on a disk that stops answering: a real ext4 filesystem in a loop
// device, frozen with fsfreeze(8) as a hung or dying disk would be (every write blocks until
// it is thawed). Posts must get 503 with Retry-After within the write timeout, never hang;
// those still queued are never written later; once the disk answers, posts work again.
// Needs root, mkfs.ext4, mount with loop devices, and fsfreeze: skipped loudly without them,
// failing under CI=true.
import assert from "node:assert/strict";
import { join } from "node:path";
import {
  openBoard,
  openJsonLinesStore,
  startServer,
  StoreUnavailableError,
} from "../message_board.ts";
import { tempFolder } from "./_board.ts";
import { runProcess, toolTestOptions } from "./_process.ts";

const AS_ROOT = await toolTestOptions(
  "the frozen-disk test",
  ["mkfs.ext4", "mount", "fsfreeze"],
  { root: true },
);

/** Runs a command, throwing with its output when it fails. */
async function run(command: string, args: string[]): Promise<void> {
  const { code, stderr } = await runProcess(command, args);
  if (code !== 0) throw new Error(`${command} ${args.join(" ")}: ${stderr}`);
}

/** A fresh 16 MiB ext4 filesystem mounted at `path` from a loop device; unmounted on dispose. */
async function mountExt4(
  image: string,
  path: string,
): Promise<AsyncDisposable> {
  using file = await Deno.open(image, { write: true, create: true });
  await file.truncate(16 * 1024 * 1024);
  await run("mkfs.ext4", ["-q", "-F", image]);
  await Deno.mkdir(path);
  await run("mount", ["-o", "loop", image, path]);
  return {
    async [Symbol.asyncDispose]() {
      await runProcess("fsfreeze", ["-u", path]); // never leave it frozen
      await run("umount", [path]);
    },
  };
}

const WRITE_TIMEOUT_MS = 500;

/** `promise`, or a failure after `ms` (a hang must fail the test, not stall it for ever). */
async function within<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new Error(`no answer within ${ms} ms`)),
      ms,
    );
  });
  try {
    return await Promise.race([promise, late]);
  } finally {
    clearTimeout(timer);
  }
}

Deno.test({
  name: "disk: a disk that stops answering (fsfreeze) while the board runs",
  ...AS_ROOT,
  async fn(t) {
    await using folder = await tempFolder();
    const mountPoint = join(folder.path, "disk");
    await using _disk = await mountExt4(
      join(folder.path, "disk.img"),
      mountPoint,
    );
    const logged: string[] = [];
    const board = await openBoard({
      dataFile: join(mountPoint, "messages.jsonl"),
      log: (line) => logged.push(line),
      writeTimeoutMs: WRITE_TIMEOUT_MS,
      rateLimit: false,
    });
    const post = (text: string) =>
      board.handler(
        new Request("http://127.0.0.1/api/messages", {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: JSON.stringify({ text }),
        }),
      );
    let frozen = false;
    try {
      assert.equal((await post("before")).status, 201);
      await run("fsfreeze", ["-f", mountPoint]);
      frozen = true;
      await t.step("a post gets 503 with Retry-After, not a hang", async () => {
        // The first is being written when the disk stops; the second waits behind it.
        const [writing, waiting] = await within(
          Promise.all([post("being written"), post("waiting")]),
          5_000,
        );
        for (const response of [writing, waiting]) {
          assert.equal(response.status, 503);
          assert.ok(Number(response.headers.get("retry-after")) > 0);
        }
        // The first may still land (see the last step): its poster is told to look before
        // sending it again. The second is never written: a plain "try again".
        // In JSON too, for a script that retries on a 503.
        const [mayBeSaved, neverWritten] = [
          await writing.json(),
          await waiting.json(),
        ];
        assert.match(mayBeSaved.error, /may still be saved/);
        assert.equal(mayBeSaved.mayStillBeSaved, true);
        assert.match(neverWritten.error, /unavailable right now/);
        assert.equal(neverWritten.mayStillBeSaved, undefined);
      });
      await t.step(
        "a post while the disk is stuck is refused, never queued",
        async () => {
          // It is not held for the write timeout behind the stuck write (posts would pile up in
          // memory for as long as the freeze lasts), and it is never written later.
          // Refused before any timer can fire: it waits for nothing.
          const refused = await Promise.race([
            board.store.appendMessage({ text: "during the stall" })
              .then(() => "written", (error: Error) => error),
            new Promise<string>((resolve) =>
              setTimeout(() => resolve("queued"), 0)
            ),
          ]);
          assert.ok(refused instanceof StoreUnavailableError, String(refused));
          assert.equal(refused.mayStillComplete, false);
          const response = await within(post("during the stall"), 5_000);
          assert.equal(response.status, 503);
          assert.match((await response.json()).error, /unavailable right now/);
        },
      );
      await t.step("the form keeps what was typed on a 503", async () => {
        const response = await within(
          board.handler(
            new Request("http://127.0.0.1/", {
              method: "POST",
              headers: { "content-type": "application/x-www-form-urlencoded" },
              body: new URLSearchParams({ message: "typed while stuck" }),
            }),
          ),
          5_000,
        );
        assert.equal(response.status, 503);
        assert.ok(Number(response.headers.get("retry-after")) > 0);
        const html = await response.text();
        assert.match(html, /unavailable right now/);
        assert.match(html, /<textarea[^>]*>\n?typed while stuck<\/textarea>/);
      });
      await t.step("the store says it is not writable meanwhile", async () => {
        assert.equal(board.store.writable, false);
        const page = await board.handler(new Request("http://127.0.0.1/"));
        assert.match(await page.text(), /cannot take new messages/);
      });
      await t.step("the log says so once", () => {
        const lines = logged.filter((line) => /did not finish/.test(line));
        assert.equal(lines.length, 1, logged.join("\n"));
      });
      await run("fsfreeze", ["-u", mountPoint]);
      frozen = false;
      await t.step("once the disk answers, posts work again", async () => {
        // The stuck write ends first (posts are refused until then), and the log says so.
        await within(
          (async () => {
            while (!logged.some((line) => /answers again/.test(line))) {
              await new Promise((resolve) => setTimeout(resolve, 20));
            }
          })(),
          5_000,
        );
        assert.equal((await post("after")).status, 201);
        assert.equal(board.store.writable, true);
      });
      await t.step("a post that never started is never written", async () => {
        const { messages } = await board.store.listMessages({ limit: 10 });
        // "being written" was on its way to the disk: it lands, unacknowledged, like a post
        // whose answer was lost on the network. "waiting" had not started: it never does.
        assert.deepEqual(messages.map((message) => message.text).reverse(), [
          "before",
          "being written",
          "after",
        ]);
      });
    } finally {
      if (frozen) await runProcess("fsfreeze", ["-u", mountPoint]);
      await board.close();
    }
  },
});

Deno.test({
  name: "disk: a shutdown while the disk is frozen ends within its bound",
  ...AS_ROOT,
  async fn() {
    await using folder = await tempFolder();
    const mountPoint = join(folder.path, "disk");
    await using _disk = await mountExt4(
      join(folder.path, "disk.img"),
      mountPoint,
    );
    const dataFile = join(mountPoint, "messages.jsonl");
    const logged: string[] = [];
    const server = await startServer({
      port: 0,
      dataFile,
      quiet: true,
      rateLimit: false,
      log: (line) => logged.push(line),
      writeTimeoutMs: WRITE_TIMEOUT_MS,
      shutdownGraceMs: 200,
    });
    const url = `http://127.0.0.1:${server.addr.port}/api/messages`;
    const post = (text: string) =>
      fetch(url, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ text }),
      });
    let frozen = false;
    let stuck: Promise<Response | Error> | undefined;
    try {
      const before = await post("acknowledged");
      assert.equal(before.status, 201);
      await before.body?.cancel();
      await run("fsfreeze", ["-f", mountPoint]);
      frozen = true;
      stuck = post("stuck").catch((error) => error);
      await new Promise((resolve) => setTimeout(resolve, 100));
      // It used to wait for the stuck write for as long as the freeze lasted: for ever.
      // Bound: the grace, then the write timeout (200 + 500 ms here).
      await within(server.shutdown(), 5_000);
      assert.ok(
        logged.some((line) => /closing without the write/.test(line)),
        logged.join("\n"),
      );
    } finally {
      if (frozen) await runProcess("fsfreeze", ["-u", mountPoint]);
      await within(server.shutdown(), 10_000);
      const answer = await stuck;
      if (answer instanceof Response) await answer.body?.cancel();
    }
    // The lock is free and the acknowledged message is there; the stuck one never was
    // acknowledged (the file was closed under it).
    const store = await openJsonLinesStore(dataFile, { log: () => {} });
    try {
      const { messages } = await store.listMessages({ limit: 10 });
      assert.equal(messages.at(-1)?.text, "acknowledged");
    } finally {
      await store.close();
    }
  },
});
