// The board as a real process on a real, small, full filesystem (a 256 KiB tmpfs): posts get
// 503 with Retry-After while pages are still served, posts resume by themselves once space is
// free, and a start on a full disk starts read-only (and leaves no empty side file).
// Mounting needs root: without it the test is skipped loudly, and fails under CI=true.
import assert from "node:assert/strict";
import { join } from "node:path";
import { postJson, startBoard, tempFolder } from "./_board.ts";
import { runProcess, toolTestOptions } from "./_process.ts";

// Mounting a tmpfs needs root.
const AS_ROOT = await toolTestOptions("the full-disk tests", ["mount"], {
  root: true,
});

/** Mounts a tmpfs of `size` on `path`; unmounts it on dispose. */
async function mountTmpfs(
  path: string,
  size: string,
): Promise<AsyncDisposable> {
  await Deno.mkdir(path, { recursive: true });
  const mount = await runProcess("mount", [
    "-t",
    "tmpfs",
    "-o",
    `size=${size}`,
    "tmpfs",
    path,
  ]);
  if (mount.code !== 0) throw new Error(`mount failed: ${mount.stderr}`);
  return {
    async [Symbol.asyncDispose]() {
      await runProcess("umount", ["-l", path]);
    },
  };
}

/** Writes zeros into `path` until the filesystem is full. */
async function fillDisk(path: string): Promise<void> {
  using file = await Deno.open(path, {
    write: true,
    create: true,
    append: true,
  });
  const chunk = new Uint8Array(4096);
  try {
    for (let i = 0; i < 1_000; i++) await file.write(chunk);
  } catch {
    return; // ENOSPC: full
  }
  throw new Error("the tmpfs never filled up");
}

/** Posts every 300 ms until one is stored (201); returns how long that took. */
async function postUntilStored(url: string, text: string): Promise<number> {
  const start = Date.now();
  while (Date.now() - start < 15_000) {
    const { status } = await postJson(url, { text });
    if (status === 201) return Date.now() - start;
    assert.equal(status, 503);
    await new Promise((resolve) => setTimeout(resolve, 300));
  }
  throw new Error("posts did not resume within 15 s");
}

async function sideFiles(
  folder: string,
): Promise<{ name: string; size: number }[]> {
  const files = [];
  for await (const entry of Deno.readDir(folder)) {
    if (!entry.name.includes(".torn-")) continue;
    files.push({
      name: entry.name,
      size: (await Deno.stat(join(folder, entry.name))).size,
    });
  }
  return files;
}

Deno.test({
  name: "disk: a disk that fills while the board runs",
  ...AS_ROOT,
  async fn(t) {
    await using folder = await tempFolder();
    const data = join(folder.path, "data");
    await using _mount = await mountTmpfs(data, "256k");
    const board = await startBoard(folder.path);
    try {
      assert.equal(
        (await postJson(board.url, { text: "before the disk filled" })).status,
        201,
      );
      await fillDisk(join(data, "filler"));

      await t.step("a post gets 503 with Retry-After", async () => {
        const refused = await fetch(new URL("api/messages", board.url), {
          method: "POST",
          headers: { "content-type": "application/json" },
          // Larger than what is left of the data file's last page, so it needs new pages.
          body: JSON.stringify({ text: "é".repeat(4000) }),
        });
        assert.equal(refused.status, 503);
        assert.match((await refused.json()).error, /unavailable/);
        const retryAfter = Number(refused.headers.get("retry-after"));
        assert.ok(
          Number.isInteger(retryAfter) && retryAfter >= 1,
          `Retry-After: ${retryAfter}`,
        );
      });
      await t.step("pages are still served", async () => {
        const page = await fetch(board.url);
        assert.equal(page.status, 200);
        assert.match(await page.text(), /before the disk filled/);
      });

      await Deno.remove(join(data, "filler"));
      await t.step("posts resume once space is free", async () => {
        const took = await postUntilStored(board.url, "after space came back");
        console.log(`  posts resumed ${took} ms after space was freed`);
        assert.match(
          await (await fetch(board.url)).text(),
          /after space came back/,
        );
      });
      await t.step("no empty side file is left", async () => {
        assert.deepEqual(
          await sideFiles(data).then((f) => f.filter((x) => x.size === 0)),
          [],
        );
      });
    } finally {
      await board.stop();
    }
  },
});

Deno.test({
  name: "disk: a start on a full disk with a torn tail",
  ...AS_ROOT,
  async fn(t) {
    await using folder = await tempFolder();
    const data = join(folder.path, "data");
    await using _mount = await mountTmpfs(data, "256k");
    const dataFile = join(data, "messages.jsonl");
    await Deno.writeTextFile(
      dataFile,
      JSON.stringify({
        id: 1,
        text: "kept",
        postedAt: "2026-11-21T22:44:51.000Z",
      }) +
        '\n{"id":2,"text":"torn by a cr',
    );
    await fillDisk(join(data, "filler"));

    const board = await startBoard(folder.path);
    try {
      await t.step("it starts and serves what was kept", async () => {
        const page = await fetch(board.url);
        assert.equal(page.status, 200);
        assert.match(await page.text(), /kept/);
      });
      await t.step("it is read-only: a post gets 503", async () => {
        const refused = await postJson(board.url, { text: "é".repeat(4000) });
        assert.equal(refused.status, 503);
      });
      await t.step(
        "while full, no side file is left, empty or not",
        async () => {
          assert.deepEqual(await sideFiles(data), []);
        },
      );

      await Deno.remove(join(data, "filler"));
      await t.step("once space is free, posts resume", async () => {
        await postUntilStored(board.url, "after space came back");
        const lines = (await Deno.readTextFile(dataFile)).trimEnd().split("\n");
        assert.deepEqual(lines.map((l) => JSON.parse(l).text), [
          "kept",
          "after space came back",
        ]);
      });
      await t.step(
        "once space is free, the torn tail is set aside",
        async () => {
          const side = await sideFiles(data);
          assert.equal(side.length, 1);
          assert.equal(
            await Deno.readTextFile(join(data, side[0].name)),
            '{"id":2,"text":"torn by a cr',
          );
        },
      );
    } finally {
      await board.stop();
    }
  },
});
