// The JSON Lines store: start-up, durability rules, torn tails, corrupt
// lines, the lock, concurrency and clearing. In-process, on temp folders.
import assert from "node:assert/strict";
import { join } from "node:path";
import {
  type BoardEvent,
  type Message,
  openJsonLinesStore,
  parseDataFile,
  StartupError,
} from "../message_board.ts";
import { tempFolder } from "./_board.ts";

const encoder = new TextEncoder();
const line = (id: number, text = `message ${id}`) =>
  JSON.stringify({ id, text, postedAt: "2026-11-21T22:44:51.000Z" }) + "\n";

/** Every message in the store, oldest first. */
async function allMessages(
  store: Awaited<ReturnType<typeof openJsonLinesStore>>,
) {
  const page = await store.listMessages({ limit: Number.MAX_SAFE_INTEGER });
  return page.messages.reverse();
}

async function listFolder(path: string): Promise<string[]> {
  return (await Array.fromAsync(Deno.readDir(path))).map((entry) => entry.name)
    .sort();
}

/**
 * Makes the `n`-th `Deno.rename` from now on fail, as a crash at that point
 * would; `using` puts the real one back.
 */
function failNthRename(n: number): Disposable {
  const originalRename = Deno.rename;
  let renames = 0;
  Deno.rename = (from, to) => {
    if (++renames === n) return Promise.reject(new Error("crash"));
    return originalRename(from, to);
  };
  return {
    [Symbol.dispose]() {
      Deno.rename = originalRename;
    },
  };
}

Deno.test("store: creates the folder and an empty data file when missing", async () => {
  await using folder = await tempFolder();
  const dataFile = join(folder.path, "nested", "messages.jsonl");
  const store = await openJsonLinesStore(dataFile);
  try {
    assert.deepEqual(await store.listMessages({ limit: 50 }), {
      messages: [],
      hasOlder: false,
    });
    assert.equal(await Deno.readTextFile(dataFile), "");
  } finally {
    await store.close();
  }
});

Deno.test("store: posts across a restart", async (t) => {
  await using folder = await tempFolder();
  const dataFile = join(folder.path, "messages.jsonl");
  let store = await openJsonLinesStore(dataFile);
  const first = await store.appendMessage({
    text: "Hello\nworld",
    name: "Ann",
  });
  const second = await store.appendMessage({ text: "second" });
  await store.close();
  await t.step("a post appends one JSON line", async () => {
    assert.equal(first.id, 1);
    assert.equal(second.id, 2);
    assert.match(
      first.postedAt,
      /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/,
    );
    const lines = (await Deno.readTextFile(dataFile)).split("\n");
    assert.equal(lines.length, 3); // two lines, each ending in "\n"
    assert.deepEqual(JSON.parse(lines[0]), first);
    assert.deepEqual(Object.keys(JSON.parse(lines[0])), [
      "id",
      "text",
      "name",
      "postedAt",
    ]);
    assert.deepEqual(JSON.parse(lines[1]), second);
  });
  store = await openJsonLinesStore(dataFile);
  try {
    await t.step("the posts survive a restart", async () => {
      assert.deepEqual(await allMessages(store), [first, second]);
    });
    await t.step("ids keep increasing after the restart", async () => {
      assert.equal((await store.appendMessage({ text: "third" })).id, 3);
    });
  } finally {
    await store.close();
  }
});

Deno.test("store: 200 posts at once are all kept, with unique increasing ids", async () => {
  await using folder = await tempFolder();
  const dataFile = join(folder.path, "messages.jsonl");
  let store = await openJsonLinesStore(dataFile);
  const texts = Array.from({ length: 200 }, (_, i) => `post ${i}`);
  const stored = await Promise.all(
    texts.map((text) => store.appendMessage({ text })),
  );
  await store.close();
  // Each promise got its own message, and ids follow the order of the calls.
  assert.deepEqual(stored.map((m) => m.text), texts);
  assert.deepEqual(stored.map((m) => m.id), texts.map((_, i) => i + 1));

  store = await openJsonLinesStore(dataFile);
  try {
    assert.deepEqual(await allMessages(store), stored);
  } finally {
    await store.close();
  }
});

Deno.test("store: posts under a slow fdatasync", async (t) => {
  await using folder = await tempFolder();
  const store = await openJsonLinesStore(join(folder.path, "messages.jsonl"));
  // Hold every fdatasync until the test opens the gate, and count them.
  const originalSync = Deno.FsFile.prototype.syncData;
  let syncs = 0;
  const syncStarted = Promise.withResolvers<void>();
  const gate = Promise.withResolvers<void>();
  Deno.FsFile.prototype.syncData = async function (this: Deno.FsFile) {
    syncs++;
    syncStarted.resolve();
    await gate.promise;
    return await originalSync.call(this);
  };
  try {
    let acknowledged = 0;
    const first = store.appendMessage({ text: "first" }).then((
      m,
    ) => (acknowledged++, m));
    // The first post is now waiting in its sync; 199 more arrive meanwhile.
    const rest = Array.from(
      { length: 199 },
      (_, i) =>
        store.appendMessage({ text: `post ${i}` }).then((
          m,
        ) => (acknowledged++, m)),
    );
    await syncStarted.promise;
    assert.equal(syncs, 1, "one sync is under way");
    await t.step("no post is acknowledged before its sync finished", () => {
      assert.equal(acknowledged, 0);
    });
    await t.step("no post is shown before its sync finished", async () => {
      assert.deepEqual((await store.listMessages({ limit: 10 })).messages, []);
    });
    gate.resolve();
    const stored = [await first, ...await Promise.all(rest)];
    assert.equal(acknowledged, 200);
    await t.step("the 199 posts that waited share one sync", () => {
      assert.equal(syncs, 2);
    });
    await t.step("the posts get ids 1 to 200 in arrival order", () => {
      assert.deepEqual(
        stored.map((m) => m.id),
        Array.from({ length: 200 }, (_, i) => i + 1),
      );
    });
  } finally {
    Deno.FsFile.prototype.syncData = originalSync;
    await store.close();
  }
});

Deno.test("store: a failed sync", async (t) => {
  await using folder = await tempFolder();
  const dataFile = join(folder.path, "messages.jsonl");
  const logged: string[] = [];
  const store = await openJsonLinesStore(dataFile, {
    log: (text) => logged.push(text),
  });
  const kept = await store.appendMessage({ text: "before the failure" });
  assert.equal(store.writable, true);
  const originalSync = Deno.FsFile.prototype.syncData;
  Deno.FsFile.prototype.syncData = () =>
    Promise.reject(new Error("EIO: the disk failed"));
  try {
    await t.step("the post whose sync failed is refused", async () => {
      await assert.rejects(store.appendMessage({ text: "lost" }), {
        name: "StoreUnavailableError",
      });
    });
    await t.step("the store is then read-only, and says so in the log", () => {
      assert.equal(store.writable, false);
      assert.match(logged.join("\n"), /writing failed, the board is read-only/);
    });
    await t.step("later posts are refused with when to retry", async () => {
      const refused = await store.appendMessage({ text: "later" }).catch((
        e,
      ) => e);
      assert.equal(refused.name, "StoreUnavailableError");
      assert.ok(
        refused.retryAfterSeconds >= 1 && refused.retryAfterSeconds <= 10,
        `retryAfterSeconds ${refused.retryAfterSeconds}`,
      );
    });
    await t.step("a clear is refused", async () => {
      await assert.rejects(store.clearMessages(), {
        name: "StoreUnavailableError",
      });
    });
    await t.step("a delete is refused", async () => {
      await assert.rejects(store.deleteMessage(kept.id), {
        name: "StoreUnavailableError",
      });
    });
  } finally {
    Deno.FsFile.prototype.syncData = originalSync;
  }
  await t.step("the board still shows what was acknowledged", async () => {
    const page = await store.listMessages({ limit: 10 });
    assert.deepEqual(page.messages.map((m) => m.text), ["before the failure"]);
  });

  // The disk works again: the background retry repairs the file and posts resume.
  await t.step("it is writable again by itself within 10 s", async () => {
    const deadline = Date.now() + 10_000;
    while (!store.writable && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    assert.equal(store.writable, true);
    assert.match(logged.join("\n"), /writing works again/);
  });
  await t.step("posts then resume", async () => {
    const after = await store.appendMessage({ text: "after the retry" });
    assert.ok(after.id > kept.id, `id ${after.id} after ${kept.id}`);
  });
  await store.close();

  // The line whose sync failed was never acknowledged: it is set aside, not on the board.
  await t.step(
    "the unacknowledged line is set aside in a side file",
    async () => {
      const names = await listFolder(folder.path);
      const torn = names.filter((name) => name.includes(".torn-"));
      assert.equal(torn.length, 1, names.join(" "));
      assert.match(
        await Deno.readTextFile(join(folder.path, torn[0])),
        /"lost"/,
      );
    },
  );
  await t.step(
    "after a restart the unacknowledged line is not on the board",
    async () => {
      const reopened = await openJsonLinesStore(dataFile, { log: () => {} });
      try {
        assert.deepEqual((await allMessages(reopened)).map((m) => m.text), [
          "before the failure",
          "after the retry",
        ]);
      } finally {
        await reopened.close();
      }
    },
  );
});

Deno.test("store: pages are newest first, with before and hasOlder", async () => {
  await using folder = await tempFolder();
  await Deno.writeTextFile(
    join(folder.path, "messages.jsonl"),
    [1, 2, 3, 5, 8].map((id) => line(id)).join(""),
  );
  const store = await openJsonLinesStore(join(folder.path, "messages.jsonl"));
  try {
    const ids = async (before: number | undefined, limit: number) => {
      const page = await store.listMessages({ before, limit });
      return [page.messages.map((m: Message) => m.id), page.hasOlder];
    };
    assert.deepEqual(await ids(undefined, 2), [[8, 5], true]);
    assert.deepEqual(await ids(5, 2), [[3, 2], true]);
    assert.deepEqual(await ids(2, 2), [[1], false]);
    assert.deepEqual(await ids(4, 10), [[3, 2, 1], false]); // an id that does not exist
    assert.deepEqual(await ids(1, 10), [[], false]);
    assert.deepEqual(await ids(1000, 5), [[8, 5, 3, 2, 1], false]);
  } finally {
    await store.close();
  }
});

Deno.test("store: a torn last line at start-up", async (t) => {
  await using folder = await tempFolder();
  const dataFile = join(folder.path, "messages.jsonl");
  const good = line(1) + line(2);
  const torn = '{"id":3,"text":"cut sh';
  await Deno.writeTextFile(dataFile, good + torn);
  const logged: string[] = [];
  const store = await openJsonLinesStore(dataFile, {
    log: (text) => logged.push(text),
  });
  try {
    const sideFiles = (await listFolder(folder.path)).filter((name) =>
      name.includes(".torn-")
    );
    await t.step("the board has the lines before it", async () => {
      assert.deepEqual((await allMessages(store)).map((m) => m.id), [1, 2]);
    });
    await t.step("it is cut off the data file", async () => {
      assert.equal(await Deno.readTextFile(dataFile), good);
    });
    await t.step("it is kept in one side file", async () => {
      assert.equal(sideFiles.length, 1);
      assert.equal(
        await Deno.readTextFile(join(folder.path, sideFiles[0])),
        torn,
      );
    });
    await t.step("one log line reports it, naming the side file", () => {
      assert.equal(logged.length, 1);
      assert.match(logged[0], /incomplete/);
      assert.ok(logged[0].includes(sideFiles[0]), logged[0]);
    });
    await t.step("the board goes on from the last good line", async () => {
      assert.equal((await store.appendMessage({ text: "after" })).id, 3);
    });
  } finally {
    await store.close();
  }
});

Deno.test("store: a complete file without a torn tail is not touched at start-up", async () => {
  await using folder = await tempFolder();
  const dataFile = join(folder.path, "messages.jsonl");
  await Deno.writeTextFile(dataFile, line(1));
  const logged: string[] = [];
  const store = await openJsonLinesStore(dataFile, {
    log: (text) => logged.push(text),
  });
  await store.close();
  assert.deepEqual(logged, []);
  assert.deepEqual(await listFolder(folder.path), [
    "messages.jsonl",
    "messages.jsonl.lock",
  ]);
});

// Any bad line other than a torn last one stops start-up, names the line,
// and leaves the file exactly as it was.
const corruptFiles: [string, string, number][] = [
  ["not JSON", line(1) + "hello\n" + line(3), 2],
  ["a torn line in the middle", line(1) + '{"id":2,"te\n' + line(3), 2],
  ["ids going down", line(1) + line(5) + line(4), 3],
  ["a repeated id", line(1) + line(1), 2],
  [
    "a missing text",
    line(1) + '{"id":2,"postedAt":"2026-11-21T22:44:51.000Z"}\n',
    2,
  ],
  [
    "a text that is not a string",
    '{"id":1,"text":7,"postedAt":"2026-11-21T22:44:51.000Z"}\n',
    1,
  ],
  ["a bad time", '{"id":1,"text":"x","postedAt":"yesterday"}\n', 1],
  [
    "an id that is not a positive integer",
    '{"id":1.5,"text":"x","postedAt":"2026-11-21T22:44:51Z"}\n',
    1,
  ],
  ["an empty line", line(1) + "\n" + line(2), 2],
  ["a JSON array", "[1,2]\n", 1],
  [
    "a clear record that is not the first line",
    line(1) + '{"clearedAt":"x","nextId":9}\n',
    2,
  ],
];

for (const [what, content, lineNumber] of corruptFiles) {
  Deno.test(`store: start-up stops on ${what}, naming line ${lineNumber}`, async () => {
    await using folder = await tempFolder();
    const dataFile = join(folder.path, "messages.jsonl");
    await Deno.writeTextFile(dataFile, content);
    const error = await openJsonLinesStore(dataFile).then(
      () => assert.fail("the store opened"),
      (error) => error,
    );
    assert.ok(error instanceof StartupError);
    assert.ok(
      error.message.startsWith(`${dataFile}:${lineNumber}: `),
      error.message,
    );
    assert.equal(
      await Deno.readTextFile(dataFile),
      content,
      "the file is unchanged",
    );
    assert.deepEqual(await listFolder(folder.path), [
      "messages.jsonl",
      "messages.jsonl.lock",
    ]);
  });
}

Deno.test("store: invalid UTF-8 in a line stops start-up with its line number", async () => {
  await using folder = await tempFolder();
  const dataFile = join(folder.path, "messages.jsonl");
  const bytes = new Uint8Array([
    ...encoder.encode(line(1)),
    ...encoder.encode('{"id":2,"text":"'),
    0xff,
    ...encoder.encode('","postedAt":"2026-11-21T22:44:51.000Z"}\n'),
  ]);
  await Deno.writeFile(dataFile, bytes);
  await assert.rejects(openJsonLinesStore(dataFile), (error: Error) => {
    assert.ok(error instanceof StartupError);
    assert.ok(error.message.startsWith(`${dataFile}:2: `));
    return true;
  });
  assert.deepEqual(await Deno.readFile(dataFile), bytes);
});

Deno.test("store: a data file of several MiB is read in pieces, its lines whole", async (t) => {
  await using folder = await tempFolder();
  const dataFile = join(folder.path, "messages.jsonl");
  // Lines across every 1 MiB boundary, one line longer than two pieces, then a torn tail.
  const long = "x".repeat(2_500_000);
  const lines: string[] = [];
  for (let id = 1; id <= 30_000; id++) lines.push(line(id));
  lines.push(line(30_001, long));
  for (let id = 30_002; id <= 40_000; id++) lines.push(line(id));
  const whole = lines.join("");
  await Deno.writeTextFile(dataFile, whole + '{"id":40001,"te');
  await t.step("every line's message, the long one whole", async () => {
    const store = await openJsonLinesStore(dataFile, { log: () => {} });
    try {
      const messages = await allMessages(store);
      assert.equal(messages.length, 40_000);
      assert.ok(messages.every((message, i) => message.id === i + 1));
      assert.equal(messages[30_000]!.text, long);
      assert.equal(messages[39_999]!.text, "message 40000");
    } finally {
      await store.close();
    }
  });
  await t.step(
    "the torn tail is cut off after the last whole line",
    async () => {
      assert.equal(
        (await Deno.stat(dataFile)).size,
        encoder.encode(whole).length,
      );
    },
  );
  await t.step("bad UTF-8 far into the file names its own line", async () => {
    const bytes = encoder.encode(whole);
    const at = bytes.indexOf(0x0a, bytes.length - 1000) + 5; // inside line 39,99x
    const lineNumber =
      new TextDecoder().decode(bytes.subarray(0, at)).split("\n").length;
    bytes[at] = 0xff;
    await Deno.writeFile(dataFile, bytes);
    await assert.rejects(openJsonLinesStore(dataFile), (error: Error) => {
      assert.ok(error instanceof StartupError);
      assert.ok(
        error.message.startsWith(`${dataFile}:${lineNumber}: `),
        error.message,
      );
      return true;
    });
  });
});

Deno.test("store: regression: a byte order mark starting any line is skipped, as before pieces", async () => {
  // The file is decoded in 1 MiB pieces now; a mark at a line start inside a piece stopped
  // start-up ("not a valid JSON line"), where decoding each line alone had dropped it.
  await using folder = await tempFolder();
  const dataFile = join(folder.path, "messages.jsonl");
  await Deno.writeTextFile(
    dataFile,
    "\ufeff" + line(1) + line(2) + "\ufeff" + line(3),
  );
  const store = await openJsonLinesStore(dataFile, { log: () => {} });
  try {
    assert.deepEqual((await allMessages(store)).map((m) => m.id), [1, 2, 3]);
  } finally {
    await store.close();
  }
});

Deno.test("store: times are kept as toISOString writes them (table)", async () => {
  await using folder = await tempFolder();
  const dataFile = join(folder.path, "messages.jsonl");
  const rows: [string, string][] = [
    ["2026-11-21T22:44:51.000Z", "2026-11-21T22:44:51.000Z"],
    ["2026-11-21T22:44:52.5Z", "2026-11-21T22:44:52.500Z"],
    ["2026-11-21T22:44:53Z", "2026-11-21T22:44:53.000Z"],
    // A day seen before, but a time of day out of range: still normalized.
    ["2026-11-21T24:00:00.000Z", "2026-11-22T00:00:00.000Z"],
    ["2026-02-30T10:00:00.000Z", "2026-03-02T10:00:00.000Z"],
    ["2026-02-30T11:00:00.000Z", "2026-03-02T11:00:00.000Z"],
    ["2024-02-29T10:00:00.000Z", "2024-02-29T10:00:00.000Z"],
  ];
  await Deno.writeTextFile(
    dataFile,
    rows.map(([postedAt], i) =>
      JSON.stringify({ id: i + 1, text: "t", postedAt }) + "\n"
    ).join(""),
  );
  const store = await openJsonLinesStore(dataFile, { log: () => {} });
  try {
    const times = (await allMessages(store)).map((m) => m.postedAt);
    assert.deepEqual(times, rows.map(([, stored]) => stored));
  } finally {
    await store.close();
  }
});

Deno.test("store: parseDataFile", async (t) => {
  const bytes = encoder.encode(line(1) + line(4) + '{"id"');
  const parsed = parseDataFile(bytes, "m.jsonl");
  await t.step("it keeps every whole line's message", () => {
    assert.deepEqual(parsed.messages.map((m) => m.id), [1, 4]);
  });
  await t.step("the next id follows the largest", () => {
    assert.equal(parsed.nextId, 5);
  });
  await t.step("it splits off the torn tail", () => {
    assert.deepEqual(parsed.tornTail, encoder.encode('{"id"'));
  });
  await t.step("an empty file has no messages", () => {
    assert.deepEqual(parseDataFile(new Uint8Array(0), "m.jsonl").messages, []);
  });
});

Deno.test("store: a second open on the same file is refused while the first holds the lock", async () => {
  await using folder = await tempFolder();
  const dataFile = join(folder.path, "messages.jsonl");
  const first = await openJsonLinesStore(dataFile);
  try {
    await assert.rejects(openJsonLinesStore(dataFile), (error: Error) => {
      assert.ok(error instanceof StartupError);
      assert.match(error.message, /in use by another message board/);
      return true;
    });
  } finally {
    await first.close();
  }
  // Closing releases the lock.
  const again = await openJsonLinesStore(dataFile);
  await again.close();
});

Deno.test("store: clear", async (t) => {
  await using folder = await tempFolder();
  const dataFile = join(folder.path, "messages.jsonl");
  let store = await openJsonLinesStore(dataFile);
  await store.appendMessage({ text: "one" });
  await store.appendMessage({ text: "two", name: "Bo" });
  await t.step("it moves the messages to an archive file", async () => {
    const before = await Deno.readTextFile(dataFile);
    const result = await store.clearMessages();
    assert.equal(result.archived, 2);
    assert.ok(result.archive !== null);
    assert.match(
      result.archive,
      /messages\.cleared-\d{4}-\d{2}-\d{2}T\d{2}-\d{2}-\d{2}-\d{3}Z\.jsonl$/,
    );
    assert.equal(
      await Deno.readTextFile(result.archive),
      before,
      "the archive holds every line",
    );
    assert.deepEqual(await store.listMessages({ limit: 50 }), {
      messages: [],
      hasOlder: false,
    });
  });
  await t.step("a post after it gets the next id", async () => {
    assert.equal((await store.appendMessage({ text: "three" })).id, 3);
  });
  await t.step("clearing an empty board archives nothing", async () => {
    await store.clearMessages();
    assert.deepEqual(await store.clearMessages(), {
      archived: 0,
      archive: null,
    });
  });
  await store.close();
  store = await openJsonLinesStore(dataFile);
  try {
    await t.step("after a restart the board is still empty", async () => {
      assert.deepEqual(await allMessages(store), []);
    });
    await t.step("after a restart ids still do not restart at 1", async () => {
      assert.equal((await store.appendMessage({ text: "four" })).id, 4);
    });
  } finally {
    await store.close();
  }
  await t.step("each clear that had messages left one archive", async () => {
    const archives = (await listFolder(folder.path)).filter((name) =>
      name.includes(".cleared-")
    );
    assert.equal(archives.length, 2);
  });
});

Deno.test("store: a clear interrupted before the move leaves the board as it was", async () => {
  await using folder = await tempFolder();
  const dataFile = join(folder.path, "messages.jsonl");
  await Deno.writeTextFile(dataFile, line(1) + line(2));
  await Deno.writeTextFile(
    `${dataFile}.new`,
    '{"clearedAt":"2026-11-22T00:00:00.000Z","nextId":3}\n',
  );
  const store = await openJsonLinesStore(dataFile);
  try {
    assert.deepEqual((await allMessages(store)).map((m) => m.id), [1, 2]);
    assert.deepEqual(await listFolder(folder.path), [
      "messages.jsonl",
      "messages.jsonl.lock",
    ]);
  } finally {
    await store.close();
  }
});

Deno.test("store: a clear interrupted after the move is finished at start-up", async () => {
  await using folder = await tempFolder();
  const dataFile = join(folder.path, "messages.jsonl");
  // The data file was already renamed to the archive; only `.new` is left.
  const archive = join(
    folder.path,
    "messages.cleared-2026-11-22T00-00-00-000Z.jsonl",
  );
  await Deno.writeTextFile(archive, line(1) + line(2));
  await Deno.writeTextFile(
    `${dataFile}.new`,
    '{"clearedAt":"2026-11-22T00:00:00.000Z","nextId":3}\n',
  );
  const store = await openJsonLinesStore(dataFile);
  try {
    assert.deepEqual(await allMessages(store), []);
    assert.equal((await store.appendMessage({ text: "next" })).id, 3);
    assert.equal(await Deno.readTextFile(archive), line(1) + line(2));
  } finally {
    await store.close();
  }
});

Deno.test("store: a clear that fails between its two renames is finished at the next start", async () => {
  await using folder = await tempFolder();
  const dataFile = join(folder.path, "messages.jsonl");
  const silence = { log: () => {} };
  let store = await openJsonLinesStore(dataFile, silence);
  await store.appendMessage({ text: "one" });
  await store.appendMessage({ text: "two" });
  {
    // The first rename (data file -> archive) happens; the second "crashes".
    using _crash = failNthRename(2);
    await assert.rejects(store.clearMessages(), {
      name: "StoreUnavailableError",
    });
  }
  await store.close();
  assert.ok(
    !(await Array.fromAsync(Deno.readDir(folder.path))).some((e) =>
      e.name === "messages.jsonl"
    ),
  );

  store = await openJsonLinesStore(dataFile, silence);
  try {
    assert.deepEqual(await allMessages(store), [], "the clear was finished");
    assert.equal((await store.appendMessage({ text: "three" })).id, 3);
    const archives = (await listFolder(folder.path)).filter((name) =>
      name.includes(".cleared-")
    );
    assert.equal(archives.length, 1);
    const archived = await Deno.readTextFile(join(folder.path, archives[0]));
    assert.deepEqual(
      archived.trim().split("\n").map((l) => JSON.parse(l).text),
      ["one", "two"],
    );
  } finally {
    await store.close();
  }
});

Deno.test("store: close", async (t) => {
  await using folder = await tempFolder();
  const dataFile = join(folder.path, "messages.jsonl");
  const store = await openJsonLinesStore(dataFile);
  const pending = store.appendMessage({ text: "in flight" });
  await store.close(); // waits for the post already accepted
  await t.step("a post accepted before close is kept", async () => {
    assert.equal((await pending).id, 1);
  });
  await t.step("after close, posts are refused", async () => {
    await assert.rejects(store.appendMessage({ text: "late" }), {
      name: "StoreUnavailableError",
    });
  });
  await t.step("after close, the data file holds the one post", async () => {
    const lines = (await Deno.readTextFile(dataFile)).split("\n");
    assert.deepEqual(lines.map((l) => l && JSON.parse(l).text), [
      "in flight",
      "",
    ]);
  });
});

Deno.test("store: delete", async (t) => {
  await using folder = await tempFolder();
  const dataFile = join(folder.path, "messages.jsonl");
  let store = await openJsonLinesStore(dataFile);
  const events: BoardEvent[] = [];
  store.subscribe((event) => events.push(event));
  const [one, two, three] = [
    await store.appendMessage({ text: "one" }),
    await store.appendMessage({ text: "two" }),
    await store.appendMessage({ text: "three" }),
  ];
  const before = await Deno.readTextFile(dataFile);
  await t.step("a delete takes the message off the board", async () => {
    assert.equal(await store.deleteMessage(two.id), true);
    assert.deepEqual(await allMessages(store), [one, three]);
  });
  await t.step("a delete tells subscribers", () => {
    assert.deepEqual(events.at(-1), { type: "delete", id: two.id });
  });
  await t.step("a second delete of the same message is false", async () => {
    assert.equal(await store.deleteMessage(two.id), false);
  });
  await t.step("a delete of an id never used is false", async () => {
    assert.equal(await store.deleteMessage(99), false);
  });
  const after = await Deno.readTextFile(dataFile);
  await t.step("a delete keeps every line of the file", () => {
    assert.equal(after.slice(0, before.length), before);
  });
  await t.step("a delete appends one tombstone line", () => {
    const tombstone = JSON.parse(after.slice(before.length));
    assert.equal(tombstone.deletedId, two.id);
    assert.equal(tombstone.newestId, three.id);
  });
  await store.close();

  store = await openJsonLinesStore(dataFile);
  try {
    await t.step("after a restart the message is still deleted", async () => {
      assert.deepEqual(await allMessages(store), [one, three]);
    });
    await t.step("after a restart ids go on", async () => {
      assert.equal((await store.appendMessage({ text: "four" })).id, 4);
    });
  } finally {
    await store.close();
  }
});

Deno.test("store: eventsAfter replays the deletes a resuming client may have missed", async () => {
  await using folder = await tempFolder();
  const store = await openJsonLinesStore(join(folder.path, "messages.jsonl"));
  try {
    for (let i = 1; i <= 4; i++) await store.appendMessage({ text: `m${i}` });
    await store.deleteMessage(2); // made while 4 was the newest
    const five = await store.appendMessage({ text: "m5" });
    // A client at 3 or 4 may have missed it; one at 5 saw the delete before message 5.
    assert.deepEqual(await store.eventsAfter(3, 10), [
      { type: "delete", id: 2 },
      { type: "message", id: 4, message: (await allMessages(store))[2] },
      { type: "message", id: 5, message: five },
    ]);
    assert.deepEqual(await store.eventsAfter(4, 10), [
      { type: "delete", id: 2 },
      { type: "message", id: 5, message: five },
    ]);
    assert.deepEqual(await store.eventsAfter(5, 10), []);
    // A client at 1 never had message 2.
    assert.deepEqual((await store.eventsAfter(1, 10)).map((e) => e.type), [
      "message",
      "message",
      "message",
    ]);
    // After a clear the deletes before it are moot.
    await store.clearMessages();
    assert.deepEqual(await store.eventsAfter(4, 10), [{
      type: "clear",
      id: 5,
    }]);
  } finally {
    await store.close();
  }
});

Deno.test("store: restore", async (t) => {
  await using folder = await tempFolder();
  const dataFile = join(folder.path, "messages.jsonl");
  let store = await openJsonLinesStore(dataFile);
  const events: BoardEvent[] = [];
  store.subscribe((event) => events.push(event));
  await t.step("with no archive it restores nothing", async () => {
    assert.deepEqual(await store.restoreNewestArchive(), { restored: 0 });
  });
  const one = await store.appendMessage({ text: "one" });
  const two = await store.appendMessage({ text: "two" });
  await store.deleteMessage(two.id); // a deleted message stays deleted
  const three = await store.appendMessage({ text: "three" });
  await store.clearMessages(); // archive A: one, three
  const four = await store.appendMessage({ text: "four" });
  await store.clearMessages(); // archive B: four
  const five = await store.appendMessage({ text: "five" });

  await t.step("it puts the newest archive back with its ids", async () => {
    assert.deepEqual(await store.restoreNewestArchive(), { restored: 1 });
    assert.deepEqual(await allMessages(store), [four, five]);
  });
  await t.step("it tells subscribers the newest id", () => {
    assert.deepEqual(events.at(-1), { type: "restore", id: five.id });
  });
  await t.step("the next restore takes the archive before", async () => {
    assert.deepEqual(await store.restoreNewestArchive(), { restored: 2 });
    assert.deepEqual(await allMessages(store), [one, three, four, five]);
  });
  await t.step("each archive is restored once", async () => {
    assert.deepEqual(await store.restoreNewestArchive(), { restored: 0 });
    const names = await listFolder(folder.path);
    assert.equal(names.filter((n) => n.endsWith(".jsonl.restored")).length, 2);
    assert.equal(names.filter((n) => /cleared-.*\.jsonl$/.test(n)).length, 0);
  });
  await t.step(
    "a resuming client that was behind is told to reload",
    async () => {
      assert.deepEqual((await store.eventsAfter(four.id, 10)).at(-1), {
        type: "restore",
        id: five.id,
      });
    },
  );
  await t.step("a client at the newest id is not told again", async () => {
    assert.deepEqual(await store.eventsAfter(five.id, 10), []);
  });
  await store.close();

  store = await openJsonLinesStore(dataFile);
  try {
    await t.step(
      "after a restart the restored messages are there",
      async () => {
        assert.deepEqual(await allMessages(store), [one, three, four, five]);
      },
    );
    await t.step("after a restart ids go on", async () => {
      assert.equal((await store.appendMessage({ text: "six" })).id, 6);
    });
    await t.step(
      "after a restart a restored message can be deleted",
      async () => {
        assert.equal(await store.deleteMessage(one.id), true);
      },
    );
  } finally {
    await store.close();
  }
});

Deno.test("store: a restore interrupted at any step leaves every message in place", async () => {
  await using folder = await tempFolder();
  const dataFile = join(folder.path, "messages.jsonl");
  const silence = { log: () => {} };
  let store = await openJsonLinesStore(dataFile, silence);
  await store.appendMessage({ text: "one" });
  await store.clearMessages();
  await store.appendMessage({ text: "two" });
  await store.close();

  // Step 1 done, then a crash: a .restore file is left; the board is as it was.
  await Deno.writeTextFile(`${dataFile}.restore`, "half-written");
  store = await openJsonLinesStore(dataFile, silence);
  assert.deepEqual((await allMessages(store)).map((m) => m.text), ["two"]);
  assert.ok(
    !(await listFolder(folder.path)).includes("messages.jsonl.restore"),
  );

  // Step 2 done, step 3 (renaming the archive) fails: the next start finishes it.
  {
    using _crash = failNthRename(2);
    await assert.rejects(store.restoreNewestArchive(), {
      name: "StoreUnavailableError",
    });
  }
  await store.close();
  store = await openJsonLinesStore(dataFile, silence);
  try {
    assert.deepEqual((await allMessages(store)).map((m) => m.text), [
      "one",
      "two",
    ]);
    // The archive was marked restored, so a second restore cannot bring "one" twice.
    assert.deepEqual(await store.restoreNewestArchive(), { restored: 0 });
    assert.deepEqual((await allMessages(store)).map((m) => m.text), [
      "one",
      "two",
    ]);
  } finally {
    await store.close();
  }
});

Deno.test("store: parseDataFile reads tombstones and restore records", () => {
  const bytes = encoder.encode(
    JSON.stringify({
      restoredAt: "2026-11-22T00:00:00.000Z",
      archive: "messages.cleared-x.jsonl",
      nextId: 10,
      newestId: 3,
    }) + "\n" + line(1) + line(3) +
      JSON.stringify({
        deletedId: 1,
        deletedAt: "2026-11-22T00:00:01.000Z",
        newestId: 9,
      }) + "\n" +
      JSON.stringify({
        deletedId: 7, // not on the board: harmless
        deletedAt: "2026-11-22T00:00:01.000Z",
        newestId: 9,
      }) + "\n",
  );
  const loaded = parseDataFile(bytes, "m.jsonl");
  assert.deepEqual(loaded.messages.map((m) => m.id), [3]);
  assert.equal(loaded.nextId, 10);
  assert.equal(loaded.clearedThrough, 0);
  assert.equal(loaded.restoredNewest, 3);
  assert.equal(loaded.restoredArchive, "messages.cleared-x.jsonl");
  assert.deepEqual(loaded.deletes, [{ id: 1, newestId: 9 }, {
    id: 7,
    newestId: 9,
  }]);
  // A restore record elsewhere than line 1, or one naming a path, is refused.
  for (
    const bad of [
      line(1) +
      JSON.stringify({
        restoredAt: "x",
        archive: "a",
        nextId: 2,
        newestId: 1,
      }) + "\n",
      JSON.stringify({
        restoredAt: "x",
        archive: "../a",
        nextId: 2,
        newestId: 1,
      }) + "\n",
      line(1) +
      JSON.stringify({ deletedId: 1, deletedAt: "yesterday", newestId: 1 }) +
      "\n",
    ]
  ) {
    assert.throws(
      () => parseDataFile(encoder.encode(bad), "m.jsonl"),
      StartupError,
    );
  }
});

Deno.test("store: the largest id", async (t) => {
  await using folder = await tempFolder();
  const dataFile = join(folder.path, "messages.jsonl");
  const max = Number.MAX_SAFE_INTEGER; // 9007199254740991
  await Deno.writeTextFile(dataFile, line(max - 1));
  const logged: string[] = [];
  let store = await openJsonLinesStore(dataFile, {
    log: (text) => logged.push(text),
  });
  await t.step("a post gets it", async () => {
    assert.equal((await store.appendMessage({ text: "the last" })).id, max);
  });
  await t.step("the next post is refused with a log line", async () => {
    const refused = await store.appendMessage({ text: "one too many" })
      .catch((e) => e);
    assert.equal(refused.name, "StoreUnavailableError");
    assert.match(
      logged.join("\n"),
      /every message id up to 9007199254740991 is used/,
    );
    assert.equal(store.writable, true, "the board still serves and clears");
  });
  await store.close();

  store = await openJsonLinesStore(dataFile, { log: () => {} });
  try {
    await t.step("after a restart the messages are there", async () => {
      assert.deepEqual((await allMessages(store)).map((m) => m.id), [
        max - 1,
        max,
      ]);
    });
    await t.step("after a restart posts are still refused", async () => {
      await assert.rejects(store.appendMessage({ text: "still too many" }), {
        name: "StoreUnavailableError",
      });
    });
    await t.step("the board can still be cleared", async () => {
      assert.equal((await store.clearMessages()).archived, 2);
    });
  } finally {
    await store.close();
  }
  // After a clear the record holds nextId = 2^53, and the board starts again.
  store = await openJsonLinesStore(dataFile, { log: () => {} });
  try {
    await t.step("after a clear and a restart the board is empty", async () => {
      assert.deepEqual(await allMessages(store), []);
    });
    await t.step("after a clear and a restart no id is left", async () => {
      await assert.rejects(store.appendMessage({ text: "no id left" }), {
        name: "StoreUnavailableError",
      });
    });
  } finally {
    await store.close();
  }
});

Deno.test("store: a clear or restore whose first file cannot be written", async (t) => {
  await using folder = await tempFolder();
  const dataFile = join(folder.path, "messages.jsonl");
  const store = await openJsonLinesStore(dataFile);
  const originalOpen = Deno.open;
  try {
    await store.appendMessage({ text: "one" });
    await store.clearMessages();
    await store.appendMessage({ text: "two" });
    Deno.open = ((path: string | URL, options?: Deno.OpenOptions) =>
      /\.(new|restore)$/.test(String(path))
        ? Promise.reject(new Error("ENOSPC: no space left on device"))
        : originalOpen(path, options)) as typeof Deno.open;
    const attempts = {
      clear: () =>
        store.clearMessages(),
      restore: () => store.restoreNewestArchive(),
    };
    for (const [what, attempt] of Object.entries(attempts)) {
      await t.step(`the ${what} is refused with when to retry`, async () => {
        const error = await attempt().catch((e) => e);
        assert.equal(error.name, "StoreUnavailableError");
        assert.ok(error.retryAfterSeconds >= 1, `${error.retryAfterSeconds}`);
      });
    }
    await t.step("the board is unchanged", async () => {
      assert.deepEqual((await allMessages(store)).map((m) => m.text), ["two"]);
    });
    await t.step("the store stays writable", async () => {
      assert.equal(store.writable, true);
      assert.equal((await store.appendMessage({ text: "three" })).id, 3);
    });
    await t.step("no half-written file is left", async () => {
      assert.deepEqual(
        (await listFolder(folder.path)).filter((n) =>
          /\.(new|restore)$/.test(n)
        ),
        [],
      );
    });
  } finally {
    Deno.open = originalOpen;
    await store.close();
  }
});
