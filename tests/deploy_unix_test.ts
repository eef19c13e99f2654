// `--unix PATH` on the three scripts, as real processes with the
// permission flags their usage gives: they answer HTTP on the socket, remove
// it when stopped, replace a socket file a killed run left behind, and refuse
// a socket another server still listens on or a path that is no socket.
// tests/deploy_caddy_test.ts runs Caddy in front of them on such sockets.
import assert from "node:assert/strict";
import {
  REPO_ROOT,
  runScript,
  startScript,
  toolTestOptions,
} from "./_process.ts";
import { sendRaw } from "./_raw.ts";

const PRLIMIT = await toolTestOptions("the Unix socket flood test", [
  "prlimit",
]);
/** The descriptors each server gets in the flood test, and how many connections it takes. */
const NOFILE = 64;
const FLOOD = 150;

/** Each script, the flags it needs beside the socket's, and where it keeps its files. */
const SCRIPTS = [
  {
    script: "server_tiny.ts",
    program: "server_tiny",
    logPrefix: "server_tiny",
    flags: (_dir: string) => [] as string[],
    args: (_dir: string, _second = false) => ["--allowed-host", "site.test"],
    ready: /^Listening on unix:/,
    page: "/",
    expect: /Hello from server_tiny\.ts/,
  },
  {
    script: "server_files.ts",
    program: "server_files",
    /** The prefix of its own log lines. */
    logPrefix: "server_files",
    flags: (dir: string) => [`--allow-read=${dir}/site`],
    args: (dir: string) => [
      "--root",
      `${dir}/site`,
      "--allowed-host",
      "site.test",
    ],
    ready: /^Serving .* on unix:/,
    page: "/index.html",
    expect: /index page of our test site/,
  },
  {
    script: "message_board.ts",
    program: "message_board",
    logPrefix: "message board",
    flags: (dir: string) => [
      `--allow-read=${dir}/data`,
      `--allow-write=${dir}/data`,
    ],
    // A second board needs a data file of its own (each file has one process).
    args: (dir: string, second = false) => [
      "--data",
      `${dir}/data/${second ? "second" : "messages"}.jsonl`,
      "--allowed-host",
      "site.test",
    ],
    ready: /^Tiny Message Board on unix:/,
    page: "/",
    expect: /Tiny Message Board/,
  },
];

/** A temp folder with a site and a data folder; removed on dispose. */
async function tempFolder(): Promise<AsyncDisposable & { path: string }> {
  const path = await Deno.makeTempDir({ prefix: "deploy_unix_" });
  await Deno.mkdir(`${path}/site`);
  await Deno.mkdir(`${path}/data`);
  await Deno.writeTextFile(
    `${path}/site/index.html`,
    "<!doctype html><title>t</title><p>index page of our test site</p>\n",
  );
  return {
    path,
    [Symbol.asyncDispose]: () => Deno.remove(path, { recursive: true }),
  };
}

/** The usage's flags for a socket at `socket` (an absolute path). */
function socketFlags(socket: string): string[] {
  return [
    `--allow-read=${socket}`,
    `--allow-write=${socket}`,
    `--allow-net=unix:${socket}`,
  ];
}

/** GET `target` on the socket with Host `host`, the connection closed after. */
async function getOnSocket(path: string, target: string, host = "localhost") {
  const request =
    `GET ${target} HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`;
  return (await sendRaw(path, request)).text;
}

function exists(path: string): boolean {
  try {
    Deno.lstatSync(path);
    return true;
  } catch {
    return false;
  }
}

for (const entry of SCRIPTS) {
  const { script, program, logPrefix, ready, page, expect } = entry;
  const start = (dir: string, socket: string) =>
    startScript(
      `${REPO_ROOT}${script}`,
      [...entry.flags(dir), ...socketFlags(socket)],
      [...entry.args(dir), "--unix", socket],
      { ready },
    );
  /** A second run, to its end. */
  const run = (dir: string, socket: string, flags = socketFlags(socket)) =>
    runScript(
      `${REPO_ROOT}${script}`,
      [...entry.flags(dir), ...flags],
      [...entry.args(dir, true), "--unix", socket],
    );

  Deno.test(`${script} --unix: serves HTTP on the socket, logs, removes it when stopped`, async () => {
    await using dir = await tempFolder();
    const socket = `${dir.path}/server.sock`;
    const server = await start(dir.path, socket);
    try {
      assert.ok(Deno.lstatSync(socket).isSocket);
      const answer = await getOnSocket(socket, page, "site.test");
      assert.match(answer, /^HTTP\/1\.1 200 /);
      assert.match(answer, expect);
      // No client address on a socket: the access log writes `-`.
      await server.waitForLine(
        new RegExp(`^- - - \\[[^\\]]+\\] "GET ${page} HTTP/1\\.1" 200 `),
      );
      // A name it was not told to answer to gets 421, as on TCP.
      assert.match(
        await getOnSocket(socket, page, "evil.test"),
        /^HTTP\/1\.1 421 /,
      );
    } finally {
      const { code } = await server.stop("SIGTERM");
      assert.equal(code, 0);
    }
    assert.equal(exists(socket), false, "the socket file is gone");
  });

  Deno.test({
    name:
      `${script} --unix: out of descriptors, it listens on the socket again once they are free`,
    ...PRLIMIT,
    async fn() {
      await using dir = await tempFolder();
      const socket = `${dir.path}/server.sock`;
      await using server = await startScript(
        `${REPO_ROOT}${script}`,
        [...entry.flags(dir.path), ...socketFlags(socket)],
        [
          ...entry.args(dir.path),
          "--unix",
          socket,
          "--unix-mode",
          "666",
          "--quiet",
        ],
        { ready, wrapper: ["prlimit", `--nofile=${NOFILE}`] },
      );
      const conns: Deno.Conn[] = [];
      try {
        // Idle connections until connecting fails: the listener gave up
        // (Deno removed its file) or the queue is full.
        for (let i = 0; i < FLOOD; i++) {
          try {
            conns.push(await Deno.connect({ transport: "unix", path: socket }));
          } catch {
            break;
          }
        }
        await server.waitForLine(/accept|descriptor/i);
      } finally {
        for (const conn of conns) conn.close();
      }
      // Then people are served on the same path again.
      const deadline = Date.now() + 10_000;
      for (;;) {
        const answer = await getOnSocket(socket, page, "site.test").catch(
          (error) => String(error),
        );
        if (expect.test(answer)) break;
        assert.ok(Date.now() < deadline, answer);
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
      // The socket made again has the --unix-mode, not the umask's.
      assert.equal((Deno.lstatSync(socket).mode! & 0o777).toString(8), "666");
    },
  });

  Deno.test(`${script} --unix-mode: the socket file gets that mode, whatever the umask`, async () => {
    await using dir = await tempFolder();
    /** The mode of the socket a server makes under umask 077 with `args`. */
    const modeUnderUmask077 = async (name: string, args: string[]) => {
      const socket = `${dir.path}/${name}`;
      await using _server = await startScript(
        `${REPO_ROOT}${script}`,
        [...entry.flags(dir.path), ...socketFlags(socket)],
        [...entry.args(dir.path), "--unix", socket, ...args],
        { ready, wrapper: ["sh", "-c", 'umask 077 && exec "$@"', "sh"] },
      );
      const mode = Deno.lstatSync(socket).mode! & 0o777;
      // Still the server's socket, answering.
      assert.match(await getOnSocket(socket, page, "site.test"), expect);
      return mode;
    };
    // Without the flag the umask decides: only the server's own user may connect.
    assert.equal(
      (await modeUnderUmask077("plain.sock", [])).toString(8),
      "700",
    );
    assert.equal(
      (await modeUnderUmask077("group.sock", ["--unix-mode", "660"]))
        .toString(8),
      "660",
    );
  });

  Deno.test(`${script} --unix: a socket file left by a killed run is replaced`, async () => {
    await using dir = await tempFolder();
    const socket = `${dir.path}/server.sock`;
    const killed = await start(dir.path, socket);
    await killed.stop("SIGKILL");
    assert.ok(Deno.lstatSync(socket).isSocket, "SIGKILL leaves the file");
    await using server = await start(dir.path, socket);
    assert.ok(
      server.lines.some((line) =>
        line ===
          `${logPrefix}: removed ${socket}, a socket file no server accepted on (left by a run that was killed)`
      ),
      server.lines.join("\n"),
    );
    assert.match(await getOnSocket(socket, page, "site.test"), expect);
  });

  Deno.test(`${script} --unix: a socket another server listens on, or a file that is no socket, is left alone`, async (t) => {
    await using dir = await tempFolder();
    await t.step(
      "a live socket: exit 1, the first server keeps it",
      async () => {
        const socket = `${dir.path}/live.sock`;
        await using first = await start(dir.path, socket);
        const second = await run(dir.path, socket);
        assert.equal(second.code, 1, second.stderr);
        assert.equal(
          second.stderr,
          `${program}: ${socket} is in use: a server accepts connections on it (stop it, or give another --unix PATH)\n`,
        );
        assert.match(await getOnSocket(socket, page, "site.test"), expect);
        assert.ok(first.pid > 0);
      },
    );
    await t.step("a regular file: exit 1, not touched", async () => {
      const socket = `${dir.path}/file.sock`;
      await Deno.writeTextFile(socket, "keep me\n");
      const result = await run(dir.path, socket);
      assert.equal(result.code, 1, result.stderr);
      assert.equal(
        result.stderr,
        `${program}: ${socket} exists and is not a socket, so it is left alone (remove it, or give another --unix PATH)\n`,
      );
      assert.equal(await Deno.readTextFile(socket), "keep me\n");
    });
    await t.step(
      "without the socket's flags: one line naming them",
      async () => {
        const socket = `${dir.path}/denied.sock`;
        for (const flags of [[], socketFlags(socket).slice(0, 2)]) {
          const result = await run(dir.path, socket, flags);
          assert.equal(result.code, 1, result.stderr);
          assert.match(
            result.stderr,
            new RegExp(
              `^${program}: no permission for the socket ${socket}: run with ${
                socketFlags(socket).join(" ")
              }( \\([^)\\n]+\\))?\\n$`,
            ),
          );
        }
        assert.equal(exists(socket), false);
      },
    );
  });
}

Deno.test("message_board.ts --unix: a form post from the board's own page is taken (its Origin is http://, the socket's URL http+unix://)", async () => {
  await using dir = await tempFolder();
  const socket = `${dir.path}/board.sock`;
  await using _board = await startScript(
    `${REPO_ROOT}message_board.ts`,
    [
      `--allow-read=${dir.path}/data`,
      `--allow-write=${dir.path}/data`,
      ...socketFlags(socket),
    ],
    [
      "--data",
      `${dir.path}/data/messages.jsonl`,
      "--allowed-host",
      "board.test",
      "--unix",
      socket,
    ],
    { ready: /on unix:/ },
  );
  const body = "message=over+a+socket";
  const post = (origin: string) =>
    sendRaw(
      socket,
      `POST / HTTP/1.1\r\nHost: board.test\r\nOrigin: ${origin}\r\n` +
        `Content-Type: application/x-www-form-urlencoded\r\n` +
        `Content-Length: ${body.length}\r\nConnection: close\r\n\r\n${body}`,
    );
  assert.equal((await post("http://board.test")).status, 303);
  // Another site's page still cannot post.
  assert.equal((await post("http://evil.test")).status, 403);
  const page = await getOnSocket(socket, "/api/messages", "board.test");
  assert.match(page, /"text":"over a socket"/);
});
