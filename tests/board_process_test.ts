// The board as a real process, started with the README's command and flags:
// start-up, graceful stop, the lock between two processes, a corrupt file,
// and the crash test (SIGKILL while posting loses nothing acknowledged).
import assert from "node:assert/strict";
import { join } from "node:path";
import { CommandLineError, parseCommandLine } from "../message_board.ts";
import {
  BOARD_FLAGS,
  BOARD_SCRIPT,
  fetchAllMessages,
  postJson,
  startBoard,
  tempFolder,
} from "./_board.ts";
import { certTestOptions, makeCertificate } from "./_certs.ts";
import { runScript } from "./_process.ts";

Deno.test("cli: --store on message_board.ts points at board_postgres.ts in one line", async () => {
  const { code, stderr } = await runScript(BOARD_SCRIPT, BOARD_FLAGS, [
    "--store",
    "postgres://a@b/c",
  ]);
  assert.equal(code, 2);
  const lines = stderr.trimEnd().split("\n");
  assert.equal(lines.length, 1);
  assert.match(lines[0], /board_postgres\.ts --store postgres:\/\//);
});

Deno.test("cli: parseCommandLine reads every flag", () => {
  assert.deepEqual(parseCommandLine([]), {
    dataFile: undefined,
    databaseUrl: undefined,
    port: 8080,
    hostname: "127.0.0.1",
    unixPath: undefined,
    unixMode: undefined,
    cert: undefined,
    key: undefined,
    quiet: false,
    logFormat: "clf",
    help: false,
    version: false,
    allowedHosts: [],
    adminToken: undefined,
    trustProxy: false,
    rateLimit: true,
  });
  assert.deepEqual(
    parseCommandLine([
      "--data=x.jsonl",
      "--port=0",
      "--hostname=::1",
      "--cert=c",
      "--key=k",
      "--quiet",
      "--store=postgresql://u@h/d",
      "--allowed-host=board.example",
      "--allowed-host",
      ".team.example",
      "--admin-token=twelve-chars",
      "--trust-proxy",
      "--rate-limit=off",
    ]),
    {
      dataFile: "x.jsonl",
      databaseUrl: "postgresql://u@h/d",
      port: 0,
      hostname: "::1",
      unixPath: undefined,
      unixMode: undefined,
      cert: "c",
      key: "k",
      quiet: true,
      logFormat: "clf",
      help: false,
      version: false,
      allowedHosts: ["board.example", ".team.example"],
      adminToken: "twelve-chars",
      trustProxy: ["loopback"],
      rateLimit: false,
    },
  );
});

// The mistakes all three scripts share are in cli_test.ts; these are the board's own.
Deno.test("cli: parseCommandLine throws CommandLineError on a bad board flag value (table)", () => {
  for (
    const args of [
      ["--key", "k"],
      ["--store", "mysql://x"],
      ["--rate-limit", "no"],
      ["--admin-token", "short"],
    ]
  ) {
    assert.throws(
      () => parseCommandLine(args),
      CommandLineError,
      args.join(" "),
    );
  }
});

Deno.test("cli: the README's command, from start to a clean stop", async (t) => {
  await using folder = await tempFolder();
  await using board = await startBoard(folder.path);
  await t.step("it prints its real address", () => {
    assert.match(board.url, /^http:\/\/127\.0\.0\.1:\d+\/$/);
    assert.doesNotMatch(board.url, /:0\//);
  });
  await t.step("it creates ./data with an empty data file", async () => {
    const info = await Deno.stat(join(folder.path, "data", "messages.jsonl"));
    assert.ok(info.isFile);
  });
  await t.step("it serves the page and takes a post", async () => {
    const page = await fetch(board.url);
    assert.equal(page.status, 200);
    assert.match(await page.text(), /Tiny Message Board/);
    const posted = await postJson(board.url, {
      text: "kept after a clean stop",
    });
    assert.equal(posted.status, 201);
  });
  await t.step("SIGTERM stops it with exit code 0, the post kept", async () => {
    const { code, stdout } = await board.stop();
    assert.equal(code, 0);
    assert.match(stdout, /stopped/);
    const file = await Deno.readTextFile(
      join(folder.path, "data", "messages.jsonl"),
    );
    assert.equal(JSON.parse(file).text, "kept after a clean stop");
  });
});

Deno.test("cli: a second board on the same data file exits at once with a clear message", async () => {
  await using folder = await tempFolder();
  const first = await startBoard(folder.path);
  try {
    const second = await runScript(BOARD_SCRIPT, BOARD_FLAGS, ["--port", "0"], {
      cwd: folder.path,
    });
    assert.notEqual(second.code, 0);
    const message = second.stderr;
    assert.match(
      message,
      /data\/messages\.jsonl is in use by another message board process/,
    );
    assert.doesNotMatch(message, /\n\s+at /, "no stack trace");
    // The first one is unharmed.
    assert.equal(
      (await postJson(first.url, { text: "still here" })).status,
      201,
    );
  } finally {
    assert.equal((await first.stop()).code, 0);
  }
});

Deno.test("cli: a corrupt line at start-up", async (t) => {
  await using folder = await tempFolder();
  await Deno.mkdir(join(folder.path, "data"));
  const content =
    '{"id":1,"text":"ok","postedAt":"2026-11-21T22:44:51.000Z"}\nnot json\n';
  await Deno.writeTextFile(
    join(folder.path, "data", "messages.jsonl"),
    content,
  );
  const { code, stderr: message } = await runScript(
    BOARD_SCRIPT,
    BOARD_FLAGS,
    ["--port", "0"],
    { cwd: folder.path },
  );
  await t.step("stops start-up with exit code 1", () => {
    assert.equal(code, 1);
  });
  await t.step("names the file and line, without a stack trace", () => {
    assert.match(message, /data\/messages\.jsonl:2: /);
    assert.doesNotMatch(message, /\n\s+at /);
  });
  await t.step("leaves the file as it was", async () => {
    assert.equal(
      await Deno.readTextFile(join(folder.path, "data", "messages.jsonl")),
      content,
    );
  });
});

Deno.test("crash: SIGKILL while 16 clients post loses no acknowledged message", async () => {
  await using folder = await tempFolder();
  const board = await startBoard(folder.path);
  const acknowledged: { id?: number; text: string }[] = [];
  let killed = false;

  // Half the clients use the form (303), half the JSON API (201).
  async function client(n: number): Promise<void> {
    for (let i = 0; !killed; i++) {
      const text = `client ${n} post ${i}\nsecond line`;
      try {
        if (n % 2 === 0) {
          const response = await fetch(board.url, {
            method: "POST",
            body: new URLSearchParams({ message: text }),
            redirect: "manual",
          });
          await response.body?.cancel();
          if (response.status === 303) acknowledged.push({ text });
        } else {
          const { status, message } = await postJson(board.url, { text });
          if (status === 201) acknowledged.push({ id: message!.id, text });
        }
      } catch {
        return; // the connection died with the server: not acknowledged
      }
      if (acknowledged.length >= 400 && !killed) {
        killed = true;
        board.kill("SIGKILL");
      }
    }
  }
  await Promise.all(Array.from({ length: 16 }, (_, n) => client(n)));
  const { signal } = await board.output;
  assert.equal(signal, "SIGKILL");

  const restarted = await startBoard(folder.path);
  try {
    const stored = await fetchAllMessages(restarted.url);
    const ids = stored.map((m) => m.id);
    assert.deepEqual(ids, [...ids].sort((a, b) => b - a), "newest first");
    assert.equal(new Set(ids).size, ids.length, "ids are unique");
    const byText = new Map(stored.map((m) => [m.text, m.id]));
    for (const { id, text } of acknowledged) {
      assert.ok(byText.has(text), `acknowledged message "${text}" was lost`);
      if (id !== undefined) assert.equal(byText.get(text), id);
    }
    assert.ok(stored.length >= acknowledged.length);
    // The board goes on after the crash with the next id.
    const next = await postJson(restarted.url, { text: "after the crash" });
    assert.equal(next.message!.id, Math.max(...ids) + 1);
  } finally {
    assert.equal((await restarted.stop()).code, 0);
  }
});

// The certificate sits in ./data so the README's narrow --allow-read=./data covers it.
Deno.test({
  name:
    "cli: with --cert and --key it serves HTTPS and marks the cookie Secure",
  ...certTestOptions(),
  async fn() {
    await using folder = await tempFolder();
    const data = join(folder.path, "data");
    await Deno.mkdir(data);
    const cert = await makeCertificate(data);
    const board = await startBoard(folder.path, [
      "--cert",
      "data/cert.pem",
      "--key",
      "data/key.pem",
    ]);
    using client = Deno.createHttpClient({ caCerts: [cert.pem] });
    try {
      assert.match(board.url, /^https:\/\/127\.0\.0\.1:\d+\/$/);
      const response = await fetch(board.url, {
        client,
        method: "POST",
        body: new URLSearchParams({ message: "over TLS", name: "Tess" }),
        redirect: "manual",
      });
      await response.body?.cancel();
      assert.equal(response.status, 303);
      assert.match(response.headers.get("set-cookie") ?? "", /; Secure$/);
    } finally {
      assert.equal((await board.stop()).code, 0);
    }
  },
});
