// The board over HTTPS speaks HTTP/2 (browsers pick it for every https:// page); hostile and
// ordinary HTTP/2 clients, against a real board process.
import assert from "node:assert/strict";
import { join } from "node:path";
import { startBoard, tempFolder } from "./_board.ts";
import { certTestOptions, makeCertificate } from "./_certs.ts";

/** Whether the process has exited (it should not have). */
async function hasExited(output: Promise<unknown>): Promise<boolean> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const alive = new Promise<false>((resolve) => {
    timer = setTimeout(() => resolve(false), 300);
  });
  try {
    return await Promise.race([output.then(() => true), alive]);
  } finally {
    clearTimeout(timer);
  }
}

Deno.test({
  name:
    "h2: regression: event streams reset by an HTTP/2 client leave the board running (it exited with an uncaught rejection)",
  ...certTestOptions(),
  async fn(t) {
    await using folder = await tempFolder();
    const data = join(folder.path, "data");
    await Deno.mkdir(data);
    const cert = await makeCertificate(data);
    const board = await startBoard(
      folder.path,
      ["--cert", "data/cert.pem", "--key", "data/key.pem"],
      { rateLimit: true },
    );
    using client = Deno.createHttpClient({
      caCerts: [cert.pem],
      http1: false,
      http2: true,
    });
    try {
      // A tab closed on the page: the browser resets its /events stream (RST_STREAM).
      await t.step(
        "12 streams opened on one connection, then reset",
        async () => {
          const controllers = Array.from(
            { length: 12 },
            () => new AbortController(),
          );
          const responses = await Promise.all(
            controllers.map((controller) =>
              fetch(`${board.url}events`, { client, signal: controller.signal })
            ),
          );
          // 8 per client, the rest 429: the limit holds over one HTTP/2 connection too.
          assert.deepEqual(
            responses.map((response) => response.status).sort(),
            [...Array(8).fill(200), ...Array(4).fill(429)],
          );
          for (const response of responses) {
            if (response.status === 200) {
              await response.body!.getReader().read();
            } else await response.body?.cancel();
          }
          for (const controller of controllers) controller.abort();
          for (const response of responses) {
            await response.body?.cancel().catch(() => {});
          }
        },
      );
      await t.step("the board is still running", async () => {
        assert.equal(
          await hasExited(board.output),
          false,
          board.lines.join("\n"),
        );
        const response = await fetch(board.url, { client });
        await response.body?.cancel();
        assert.equal(response.status, 200);
      });
      await t.step("the reset streams gave their slots back", async () => {
        const controller = new AbortController();
        const response = await fetch(`${board.url}events`, {
          client,
          signal: controller.signal,
        });
        assert.equal(response.status, 200);
        controller.abort();
        await response.body?.cancel().catch(() => {});
      });
    } finally {
      const { code, stderr } = await board.stop();
      assert.doesNotMatch(stderr, /Uncaught/);
      assert.equal(code, 0, stderr);
    }
  },
});
