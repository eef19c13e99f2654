// The JSON Lines store when something else changes its data file while the board runs: another
// process appends to it, an editor saves over it (a new file renamed into place), someone
// cuts it short or removes it, the data file is a FIFO, or its lock file is removed and a
// second board starts. Every message the board acknowledges must be in the file the next
// start reads. In-process, on temp folders; the other writer is a real `sh` process.
import assert from "node:assert/strict";
import { join } from "node:path";
import {
  type MessageStore,
  openJsonLinesStore,
  StartupError,
} from "../message_board.ts";
import { BOARD_FLAGS, BOARD_SCRIPT, tempFolder } from "./_board.ts";
import { runProcess, runScript } from "./_process.ts";

/** Every message text in the store, oldest first. */
async function texts(store: MessageStore): Promise<string[]> {
  const page = await store.listMessages({ limit: Number.MAX_SAFE_INTEGER });
  return page.messages.reverse().map((message) => message.text);
}

/** Runs a shell command in `cwd` (the other writer), failing the test when it fails. */
async function sh(cwd: string, script: string): Promise<void> {
  const { code, stderr } = await runProcess("sh", ["-c", script], { cwd });
  assert.equal(code, 0, stderr);
}

/** A store on `folder/messages.jsonl` that logs into `lines`, with two posts in it. */
async function storeWithTwoPosts(folder: string, lines: string[]) {
  const dataFile = join(folder, "messages.jsonl");
  const store = await openJsonLinesStore(dataFile, {
    log: (line) => lines.push(line),
  });
  await store.appendMessage({ text: "one" });
  await store.appendMessage({ text: "two" });
  return { dataFile, store };
}

/** What a fresh start on `dataFile` reads (the next start of the board). */
async function textsAfterRestart(dataFile: string): Promise<string[]> {
  const store = await openJsonLinesStore(dataFile, { log: () => {} });
  try {
    return await texts(store);
  } finally {
    await store.close();
  }
}

Deno.test("tamper: regression: another process appends half a line, then the board posts", async (t) => {
  await using folder = await tempFolder();
  const lines: string[] = [];
  const { dataFile, store } = await storeWithTwoPosts(folder.path, lines);
  try {
    await sh(folder.path, "printf 'not ours' >> messages.jsonl");
    await t.step("the next post is acknowledged", async () => {
      await store.appendMessage({ text: "three" });
    });
    await t.step("the log says what was found and where it went", () => {
      assert.match(lines.join("\n"), /another process/);
      assert.match(lines.join("\n"), /\.torn-/);
    });
    await t.step("the foreign bytes are kept in a side file", async () => {
      const names = (await Array.fromAsync(Deno.readDir(folder.path)))
        .map((entry) => entry.name);
      const side = names.find((name) => name.includes(".torn-"));
      assert.ok(side, names.join(" "));
      assert.equal(
        await Deno.readTextFile(join(folder.path, side)),
        "not ours",
      );
    });
  } finally {
    await store.close();
  }
  await t.step("the next start reads every acknowledged message", async () => {
    assert.deepEqual(await textsAfterRestart(dataFile), [
      "one",
      "two",
      "three",
    ]);
  });
});

Deno.test("tamper: regression: an editor saves over the data file (a new file renamed into place)", async (t) => {
  await using folder = await tempFolder();
  const lines: string[] = [];
  const { dataFile, store } = await storeWithTwoPosts(folder.path, lines);
  try {
    // What vim and most editors do: write a copy, rename it over the original.
    await sh(
      folder.path,
      "head -n 1 messages.jsonl > saved && mv saved messages.jsonl",
    );
    await t.step("the next post is acknowledged", async () => {
      await store.appendMessage({ text: "three" });
    });
    await t.step("the board follows the saved file", async () => {
      assert.deepEqual(await texts(store), ["one", "three"]);
      assert.match(lines.join("\n"), /replaced/);
    });
  } finally {
    await store.close();
  }
  await t.step(
    "the next start reads the post made after the save",
    async () => {
      assert.deepEqual(await textsAfterRestart(dataFile), ["one", "three"]);
    },
  );
});

Deno.test("tamper: regression: the data file is removed while the board runs", async (t) => {
  await using folder = await tempFolder();
  const lines: string[] = [];
  const { dataFile, store } = await storeWithTwoPosts(folder.path, lines);
  try {
    await sh(folder.path, "rm messages.jsonl");
    await t.step("the next post is acknowledged", async () => {
      await store.appendMessage({ text: "three" });
    });
    await t.step("the log says the file was removed", () => {
      assert.match(lines.join("\n"), /removed/);
    });
  } finally {
    await store.close();
  }
  await t.step("the next start reads the post made after it", async () => {
    assert.deepEqual(await textsAfterRestart(dataFile), ["three"]);
  });
});

Deno.test("tamper: regression: the data file is cut short while the board runs", async (t) => {
  await using folder = await tempFolder();
  const lines: string[] = [];
  const { dataFile, store } = await storeWithTwoPosts(folder.path, lines);
  try {
    await sh(folder.path, ": > messages.jsonl");
    await t.step("the next post is acknowledged", async () => {
      await store.appendMessage({ text: "three" });
    });
    await t.step("the log says acknowledged messages were lost", () => {
      assert.match(lines.join("\n"), /cut short/);
    });
    await t.step("the board shows what the next start will read", async () => {
      assert.deepEqual(await texts(store), ["three"]);
    });
  } finally {
    await store.close();
  }
  assert.deepEqual(await textsAfterRestart(dataFile), ["three"]);
});

Deno.test("tamper: regression: a FIFO as the data file stops start-up with a clear error (it hung)", async (t) => {
  await using folder = await tempFolder();
  await Deno.mkdir(join(folder.path, "data"));
  await sh(folder.path, "mkfifo data/messages.jsonl");
  const { code, stderr } = await runScript(
    BOARD_SCRIPT,
    BOARD_FLAGS,
    ["--port", "0"],
    { cwd: folder.path, timeoutMs: 10_000 },
  );
  await t.step("it exits with code 1 (not killed after 10 s)", () => {
    assert.equal(code, 1, stderr);
  });
  await t.step("it says the data file is not a regular file", () => {
    assert.match(stderr, /messages\.jsonl is not a regular file/);
    assert.doesNotMatch(stderr, /\n\s+at /);
  });
});

Deno.test("tamper: regression: the lock file is removed, and a second board starts on the data file", async (t) => {
  // The second board found no lock, took a new one and served the same file: both gave out
  // id 2, and each set the other's acknowledged lines aside as "a write that failed".
  await using folder = await tempFolder();
  const dataFile = join(folder.path, "messages.jsonl");
  const lines: string[] = [];
  const first = await openJsonLinesStore(dataFile, {
    log: (line) => lines.push(line),
  });
  try {
    await first.appendMessage({ text: "first's 1" });
    await Deno.remove(`${dataFile}.lock`);
    await t.step(
      "the second board does not start: the data file is locked",
      async () => {
        await assert.rejects(
          () => openJsonLinesStore(dataFile, { log: () => {} }),
          StartupError,
          "the file itself is locked",
        );
      },
    );
    await t.step(
      "the first board's next post locks the lock file again",
      async () => {
        assert.equal((await first.appendMessage({ text: "first's 2" })).id, 2);
        assert.match(lines.join("\n"), /locked it again/);
        await assert.rejects(
          () => openJsonLinesStore(dataFile, { log: () => {} }),
          StartupError,
          `${dataFile}.lock is locked`,
        );
      },
    );
  } finally {
    await first.close();
  }
  assert.deepEqual(await textsAfterRestart(dataFile), [
    "first's 1",
    "first's 2",
  ]);
});

Deno.test("tamper: regression: a second board on a link to the data file does not start", async () => {
  // Its lock file sat beside the link, so both boards ran on the one file and gave out the
  // same ids (measured: 'from 18621' and 'from 18623' both stored as id 1).
  await using folder = await tempFolder();
  const dataFile = join(folder.path, "messages.jsonl");
  const first = await openJsonLinesStore(dataFile, { log: () => {} });
  try {
    await first.appendMessage({ text: "one" });
    await Deno.mkdir(join(folder.path, "other"));
    const symbolic = join(folder.path, "other", "symbolic.jsonl");
    const hard = join(folder.path, "other", "hard.jsonl");
    await Deno.symlink(dataFile, symbolic);
    await Deno.link(dataFile, hard);
    for (const link of [symbolic, hard]) {
      await assert.rejects(
        () => openJsonLinesStore(link, { log: () => {} }),
        StartupError,
        "is in use by another message board process",
      );
    }
    // The first board goes on, clears (a new data file) and keeps its lock on that one too.
    await first.appendMessage({ text: "two" });
    await first.clearMessages();
    await assert.rejects(
      () => openJsonLinesStore(symbolic, { log: () => {} }),
      StartupError,
    );
    assert.equal((await first.appendMessage({ text: "three" })).id, 3);
  } finally {
    await first.close();
  }
  assert.deepEqual(await textsAfterRestart(dataFile), ["three"]);
});
