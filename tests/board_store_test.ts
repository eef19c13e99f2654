// The JSON Lines store: start-up, durability rules, torn tails, corrupt
// lines, the lock, concurrency and clearing. In-process, on temp folders.
import assert from "node:assert/strict";
import { join } from "node:path";
import {
  type Message,
  openJsonLinesStore,
  parseDataFile,
  StartupError,
} from "../message_board.ts";
import { tempFolder } from "./board_helpers.ts";

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

Deno.test("store: a post appends one JSON line and survives a restart; ids keep increasing", async () => {
  await using folder = await tempFolder();
  const dataFile = join(folder.path, "messages.jsonl");
  let store = await openJsonLinesStore(dataFile);
  const first = await store.appendMessage({
    text: "Hello\nworld",
    name: "Ann",
  });
  const second = await store.appendMessage({ text: "second" });
  await store.close();
  assert.equal(first.id, 1);
  assert.equal(second.id, 2);
  assert.match(first.postedAt, /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/);
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

  store = await openJsonLinesStore(dataFile);
  try {
    assert.deepEqual(await allMessages(store), [first, second]);
    assert.equal((await store.appendMessage({ text: "third" })).id, 3);
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

Deno.test("store: a post is acknowledged only after fdatasync, and posts that wait share one sync", async () => {
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
    assert.equal(
      acknowledged,
      0,
      "nothing is acknowledged before its sync finished",
    );
    assert.deepEqual(
      (await store.listMessages({ limit: 10 })).messages,
      [],
      "nor shown",
    );
    gate.resolve();
    const stored = [await first, ...await Promise.all(rest)];
    assert.equal(acknowledged, 200);
    assert.equal(
      syncs,
      2,
      "the 199 posts that waited were written with one sync",
    );
    assert.deepEqual(
      stored.map((m) => m.id),
      Array.from({ length: 200 }, (_, i) => i + 1),
    );
  } finally {
    Deno.FsFile.prototype.syncData = originalSync;
    await store.close();
  }
});

Deno.test("store: after a failed sync no more posts are accepted, and reads go on", async () => {
  await using folder = await tempFolder();
  const logged: string[] = [];
  const store = await openJsonLinesStore(join(folder.path, "messages.jsonl"), {
    log: (text) => logged.push(text),
  });
  await store.appendMessage({ text: "before the failure" });
  const originalSync = Deno.FsFile.prototype.syncData;
  Deno.FsFile.prototype.syncData = () =>
    Promise.reject(new Error("EIO: the disk failed"));
  try {
    await assert.rejects(store.appendMessage({ text: "lost" }), {
      name: "StoreUnavailableError",
    });
  } finally {
    Deno.FsFile.prototype.syncData = originalSync;
  }
  // The disk works again, but after a failed fsync only a restart knows what is on disk.
  await assert.rejects(store.appendMessage({ text: "later" }), {
    name: "StoreUnavailableError",
  });
  await assert.rejects(store.clearMessages(), {
    name: "StoreUnavailableError",
  });
  const page = await store.listMessages({ limit: 10 });
  assert.deepEqual(page.messages.map((m) => m.text), ["before the failure"]);
  assert.match(logged.join("\n"), /writing failed/);
  await store.close();
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

Deno.test("store: a torn last line is set aside in a side file and reported", async () => {
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
    assert.deepEqual((await allMessages(store)).map((m) => m.id), [1, 2]);
    assert.equal(await Deno.readTextFile(dataFile), good);
    const sideFiles = (await listFolder(folder.path)).filter((name) =>
      name.includes(".torn-")
    );
    assert.equal(sideFiles.length, 1);
    assert.equal(
      await Deno.readTextFile(join(folder.path, sideFiles[0])),
      torn,
    );
    assert.equal(logged.length, 1);
    assert.match(logged[0], /incomplete/);
    assert.ok(logged[0].includes(sideFiles[0]), "the log names the side file");
    // The board goes on from the last good line.
    assert.equal((await store.appendMessage({ text: "after" })).id, 3);
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

Deno.test("store: parseDataFile keeps every message and splits off the torn tail", () => {
  const bytes = encoder.encode(line(1) + line(4) + '{"id"');
  const parsed = parseDataFile(bytes, "m.jsonl");
  assert.deepEqual(parsed.messages.map((m) => m.id), [1, 4]);
  assert.equal(parsed.nextId, 5);
  assert.deepEqual(parsed.tornTail, encoder.encode('{"id"'));
  assert.deepEqual(parseDataFile(new Uint8Array(0), "m.jsonl").messages, []);
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

Deno.test("store: clear moves the messages to an archive file and ids go on increasing", async () => {
  await using folder = await tempFolder();
  const dataFile = join(folder.path, "messages.jsonl");
  let store = await openJsonLinesStore(dataFile);
  await store.appendMessage({ text: "one" });
  await store.appendMessage({ text: "two", name: "Bo" });
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
  // A post after the clear gets the next id, in the new data file.
  assert.equal((await store.appendMessage({ text: "three" })).id, 3);
  // Clearing an empty board archives nothing.
  await store.clearMessages();
  assert.deepEqual(await store.clearMessages(), { archived: 0, archive: null });
  await store.close();

  // After a restart the board is empty and ids still do not restart at 1.
  store = await openJsonLinesStore(dataFile);
  try {
    assert.deepEqual(await allMessages(store), []);
    assert.equal((await store.appendMessage({ text: "four" })).id, 4);
  } finally {
    await store.close();
  }
  const archives = (await listFolder(folder.path)).filter((name) =>
    name.includes(".cleared-")
  );
  assert.equal(archives.length, 2, "one archive per clear that had messages");
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
  const originalRename = Deno.rename;
  let renames = 0;
  Deno.rename = (from, to) => {
    // The first rename (data file -> archive) happens; the second "crashes".
    if (++renames === 2) return Promise.reject(new Error("crash"));
    return originalRename(from, to);
  };
  try {
    await assert.rejects(store.clearMessages(), {
      name: "StoreUnavailableError",
    });
  } finally {
    Deno.rename = originalRename;
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

Deno.test("store: after close, posts are refused and the data is intact", async () => {
  await using folder = await tempFolder();
  const dataFile = join(folder.path, "messages.jsonl");
  const store = await openJsonLinesStore(dataFile);
  const pending = store.appendMessage({ text: "in flight" });
  await store.close(); // waits for the post already accepted
  assert.equal((await pending).id, 1);
  await assert.rejects(store.appendMessage({ text: "late" }), {
    name: "StoreUnavailableError",
  });
  assert.equal((await Deno.readTextFile(dataFile)).split("\n").length, 2);
});
