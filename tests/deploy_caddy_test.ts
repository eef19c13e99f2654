// The deployment recipe, run for real: Caddy (Debian's package) with
// deploy/Caddyfile in front of two board processes on one throwaway PostgreSQL
// database and the file server. The same file as in production, with its
// environment placeholders set for a test: plain HTTP on 127.0.0.1 (no
// certificate, no ACME), the admin API off, free ports, a 1 s header-read
// timeout, a 2 s idle timeout and a health check every 500 ms. One board
// reaches the database through a relay the test cuts, to see Caddy skip a
// board whose /healthz says 503 and take it back once it says 200.
//
// Needs `apt-get install -y caddy postgresql`. Without Caddy or PostgreSQL
// the test is skipped with a loud message, except in CI (CI=true), where it
// fails.
import assert from "node:assert/strict";
import { POST_BURST } from "../message_board.ts";
import {
  BOARD_HOST,
  CADDY,
  FILES_HOST,
  IDLE_TIMEOUT_MS,
  IN_CI,
  READ_HEADER_TIMEOUT_MS,
  send,
  type SendOptions,
  startCaddy,
} from "./_caddy.ts";
import { countOpenFds, type RunningProcess, startScript } from "./_process.ts";
import { PG_FLAGS } from "./_board.ts";
import { pgTestOptions, startPostgres } from "./_postgres.ts";

/** Where each script listens, after the README command's own flags. */
const ON_PORT_0 = ["--hostname", "127.0.0.1", "--port", "0"];

/** How many connections the flood opens, past a 256-descriptor budget. */
const IDLE_CONNECTIONS = 300;
/** Twenty clients, told apart by their source addresses. */
const CLIENTS = Array.from({ length: 20 }, (_, i) => `127.0.0.${10 + i}`);

/**
 * Reads a connection until the other side closes it; resolves with the
 * milliseconds that took, or null when it was still open after `limitMs`.
 * A reset counts as closed.
 */
async function timeUntilClosed(
  conn: Deno.Conn,
  startedAt: number,
  limitMs: number,
): Promise<number | null> {
  const buffer = new Uint8Array(4096);
  const timer = setTimeout(() => conn.close(), limitMs);
  try {
    while (await conn.read(buffer) !== null) {
      // Caddy may say 408 before it closes; read on to the end.
    }
    return performance.now() - startedAt;
  } catch (error) {
    if (error instanceof Deno.errors.BadResource) return null; // closed by us
    return performance.now() - startedAt; // reset by Caddy
  } finally {
    clearTimeout(timer);
  }
}

/** A TCP relay to a port that a test can cut (as a broken network would) and mend. */
interface Relay extends AsyncDisposable {
  /** Where to connect instead of the target. */
  port: number;
  /** Closes every connection through it; new ones are closed as soon as they are accepted. */
  cut(): void;
  /** Relays new connections again. */
  mend(): void;
}

/** Relays each connection to 127.0.0.1:`port`, byte for byte, until cut. */
function startRelay(port: number): Relay {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const open = new Set<Deno.Conn>();
  let passing = true;
  const close = (conn: Deno.Conn) => {
    open.delete(conn);
    try {
      conn.close();
    } catch {
      // closed already
    }
  };
  const pipe = async (from: Deno.Conn, to: Deno.Conn) => {
    const buffer = new Uint8Array(65536);
    try {
      for (let n; (n = await from.read(buffer)) !== null;) {
        let written = 0;
        while (written < n) {
          written += await to.write(buffer.subarray(written, n));
        }
      }
    } catch {
      // either side closed or reset: end both
    }
    close(from);
    close(to);
  };
  const pairs = new Set<Promise<unknown>>();
  const accepting = (async () => {
    for await (const client of listener) {
      if (!passing) {
        close(client);
        continue;
      }
      open.add(client);
      const pair = Deno.connect({ hostname: "127.0.0.1", port }).then(
        (server) => {
          open.add(server);
          return Promise.all([pipe(client, server), pipe(server, client)]);
        },
        () => close(client),
      );
      pairs.add(pair);
      pair.finally(() => pairs.delete(pair));
    }
  })();
  return {
    port: (listener.addr as Deno.NetAddr).port,
    cut() {
      passing = false;
      for (const conn of [...open]) close(conn);
    },
    mend() {
      passing = true;
    },
    async [Symbol.asyncDispose]() {
      listener.close();
      await accepting.catch(() => {});
      for (const conn of [...open]) close(conn);
      await Promise.all([...pairs]);
    },
  };
}

/** Lines a process logged for requests to `path` (Common Log Format: `"GET path HTTP/1.1"`). */
function requestLines(server: RunningProcess, path: string): string[] {
  return server.lines.filter((line) => line.includes(` ${path} `));
}

Deno.test({
  name:
    "deploy/Caddyfile: Caddy before two boards on one database and the file server",
  ignore: (CADDY === null && !IN_CI) || pgTestOptions().ignore,
  sanitizeResources: false, // node:http's sockets close a moment after 'end'
  async fn(t) {
    await using pg = await startPostgres();
    // Board A reaches the database through a relay the test can cut.
    await using relay = startRelay(pg.port);
    // The README's commands: each board trusts the proxy in front of it for
    // the client's address and scheme, and answers to the site's name.
    const boardArgs = (store: string) => [
      "--store",
      store,
      "--trust-proxy",
      "--allowed-host",
      BOARD_HOST,
    ];
    const started: RunningProcess[] = [];
    try {
      const [boardA, boardB, files] = await Promise.all([
        startScript("board_postgres.ts", PG_FLAGS, [
          ...boardArgs(pg.url.replace(`:${pg.port}/`, `:${relay.port}/`)),
          ...ON_PORT_0,
        ]),
        startScript("board_postgres.ts", PG_FLAGS, [
          ...boardArgs(pg.url),
          ...ON_PORT_0,
        ]),
        startScript(
          "server_files.ts",
          ["--allow-net=127.0.0.1", "--allow-read=./static"],
          // Caddy passes the site's name on as Host: the file server must answer to it.
          [
            "--root",
            "./static",
            "--trust-proxy",
            "--allowed-host",
            FILES_HOST,
            ...ON_PORT_0,
          ],
        ),
      ].map(async (starting) => {
        const server = await starting;
        started.push(server);
        return server;
      }));
      const upstream = (server: RunningProcess) => new URL(server.origin).host;
      await using caddy = await startCaddy({
        BOARD_UPSTREAM_A: upstream(boardA),
        BOARD_UPSTREAM_B: upstream(boardB),
        FILES_UPSTREAM: upstream(files),
      });
      const board = (options: Omit<SendOptions, "host">) =>
        send(caddy.boardPort, { host: BOARD_HOST, ...options });

      const posted = await board({
        method: "POST",
        path: "/api/messages",
        localAddress: "127.0.0.2",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ text: "through Caddy" }),
      });
      assert.equal(posted.status, 201, posted.body);
      await t.step(
        "each client sticks to one board",
        async () => {
          // The poster's next pages come from the board that took the post,
          // so the message is on every one of them.
          for (let i = 0; i < 5; i++) {
            const page = await board({
              path: "/api/messages?limit=2",
              localAddress: "127.0.0.2",
            });
            assert.equal(page.status, 200);
            assert.match(page.body, /through Caddy/);
          }
          const [poster] = [boardA, boardB].filter((server) =>
            requestLines(server, "/api/messages?limit=2").length === 5
          );
          assert.ok(poster, "one board answered all five");
        },
      );

      await t.step(
        "both boards show the post, from their one database",
        async () => {
          // Twenty other clients; each sees the message (the board that did
          // not take it once PostgreSQL's NOTIFY reaches it).
          for (const address of CLIENTS) {
            const deadline = Date.now() + 5_000;
            for (;;) {
              const page = await board({
                path: "/api/messages?limit=2",
                localAddress: address,
              });
              assert.equal(page.status, 200);
              if (/through Caddy/.test(page.body)) break;
              assert.ok(Date.now() < deadline, `${address}: ${page.body}`);
              await new Promise((resolve) => setTimeout(resolve, 50));
            }
          }
        },
      );

      await t.step(
        "clients are spread over both boards",
        () => {
          for (const server of [boardA, boardB]) {
            assert.ok(
              requestLines(server, "/api/messages?limit=2").length > 0,
              `Caddy sent requests to the board at ${server.origin}`,
            );
          }
        },
      );

      await t.step("the board's page answers through Caddy", async () => {
        const home = await board({ path: "/" });
        assert.equal(home.status, 200);
        assert.match(home.body, /Tiny Message Board/);
      });

      await t.step("the file server answers through Caddy", async () => {
        const index = await send(caddy.filesPort, {
          host: FILES_HOST,
          path: "/index.html",
        });
        assert.equal(index.status, 200);
        assert.match(index.body, /index page of our tiny site/);
      });

      await t.step(
        "each client is known by the address Caddy saw, whatever X-Forwarded-For it sends",
        async () => {
          // Posts from 127.0.0.3, each claiming another address. Had the
          // board believed the claim, every post would be a new client and
          // none would be refused; as it is, the sixth is.
          const postAs = (localAddress: string, claimed: string) =>
            board({
              method: "POST",
              path: "/api/messages",
              localAddress,
              headers: {
                "content-type": "application/json",
                "x-forwarded-for": claimed,
                "forwarded": `for=${claimed}`,
                "x-real-ip": claimed,
              },
              body: JSON.stringify({ text: `from ${localAddress}` }),
            });
          const statuses: number[] = [];
          for (let i = 1; i <= POST_BURST + 1; i++) {
            const { status } = await postAs("127.0.0.3", `198.51.100.${i}`);
            statuses.push(status);
          }
          assert.deepEqual(statuses, [
            ...Array(POST_BURST).fill(201),
            429,
          ]);
          // Another client is not held back by the first one's limit (as it
          // would be if the boards saw only Caddy's own address).
          const other = await postAs("127.0.0.4", "198.51.100.1");
          assert.equal(other.status, 201, other.body);
        },
      );

      await t.step(
        `${IDLE_CONNECTIONS} idle connections: the boards keep answering, Caddy closes them after its header timeout`,
        async () => {
          const conns: Deno.Conn[] = [];
          try {
            const openedAt = performance.now();
            for (let i = 0; i < IDLE_CONNECTIONS; i++) {
              conns.push(
                await Deno.connect({
                  hostname: "127.0.0.1",
                  port: caddy.boardPort,
                }),
              );
            }
            // A sixth of them start a request head and stop (slowloris).
            const partial = new TextEncoder().encode(
              `GET / HTTP/1.1\r\nHost: ${BOARD_HOST}\r\nX-Slow: `,
            );
            for (const conn of conns.filter((_, i) => i % 6 === 0)) {
              await conn.write(partial);
            }
            const closing = conns.map((conn) =>
              timeUntilClosed(conn, openedAt, READ_HEADER_TIMEOUT_MS + 4_000)
            );

            // Meanwhile people are served as usual, by both boards, and the
            // boards never see the idle connections.
            for (let i = 0; i < 10; i++) {
              const page = await board({ path: "/" });
              assert.equal(page.status, 200);
            }
            const posted = await board({
              method: "POST",
              path: "/api/messages",
              headers: { "content-type": "application/json" },
              body: JSON.stringify({ text: "during the flood" }),
            });
            assert.equal(posted.status, 201, posted.body);
            for (const server of [boardA, boardB]) {
              const open = countOpenFds(server.pid);
              assert.ok(
                open < 100,
                `the board at ${server.origin} has ${open} files open`,
              );
            }

            const closedAfter = await Promise.all(closing);
            const stillOpen = closedAfter.filter((ms) => ms === null).length;
            assert.equal(stillOpen, 0, `${stillOpen} connections still open`);
            const times = closedAfter as number[];
            const first = Math.min(...times);
            // Closed by the timeout: not before it ran out.
            assert.ok(
              first >= READ_HEADER_TIMEOUT_MS - 50,
              `first closed after ${first.toFixed(0)} ms`,
            );
            console.log(
              `${IDLE_CONNECTIONS} idle connections closed by Caddy ${
                first.toFixed(0)
              }-${Math.max(...times).toFixed(0)} ms after they opened`,
            );

            const after = await board({ path: "/" });
            assert.equal(after.status, 200);
          } finally {
            for (const conn of conns) {
              try {
                conn.close();
              } catch {
                // already closed by timeUntilClosed
              }
            }
          }
        },
      );

      await t.step(
        "a kept-alive connection is closed after the idle timeout",
        async () => {
          const conn = await Deno.connect({
            hostname: "127.0.0.1",
            port: caddy.boardPort,
          });
          try {
            await conn.write(new TextEncoder().encode(
              `GET /api/messages?limit=1 HTTP/1.1\r\nHost: ${BOARD_HOST}\r\n\r\n`,
            ));
            // Read the answer (its head is enough to know it came).
            const buffer = new Uint8Array(65536);
            const n = await conn.read(buffer);
            assert.ok(n !== null);
            const head = new TextDecoder().decode(buffer.subarray(0, n));
            assert.match(head, /^HTTP\/1\.1 200 /);
            const answeredAt = performance.now();
            const closedAfter = await timeUntilClosed(
              conn,
              answeredAt,
              IDLE_TIMEOUT_MS + 4_000,
            );
            assert.ok(closedAfter !== null, "closed");
            assert.ok(
              closedAfter >= IDLE_TIMEOUT_MS - 50,
              `closed after ${closedAfter.toFixed(0)} ms`,
            );
          } finally {
            try {
              conn.close();
            } catch {
              // closed already
            }
          }
        },
      );

      const atLimit = JSON.stringify({ text: "x".repeat(65536 - 11) });
      assert.equal(new TextEncoder().encode(atLimit).length, 65536);
      await t.step("a body of exactly 64 KiB reaches a board", async () => {
        const big = await board({
          method: "POST",
          path: "/api/messages",
          headers: { "content-type": "application/json" },
          body: atLimit,
        });
        // It got to a board, which refuses a message that long.
        assert.equal(big.status, 422, big.body);
        assert.match(big.body, /"error"/);
      });
      await t.step(
        "a body over 64 KiB is refused with 413",
        async () => {
          const tooBig = await board({
            method: "POST",
            path: "/api/messages",
            headers: {
              "content-type": "application/json",
              "transfer-encoding": "chunked",
            },
            body: atLimit + " ",
          });
          assert.equal(tooBig.status, 413, tooBig.body);
        },
      );

      await t.step(
        "oversized uploads from every client leave both boards in service",
        async () => {
          // Each client's board gets a body over the limit (a client's
          // fault, not the board's), then every client reads the page.
          const tooBig = "x".repeat(65536 + 1);
          for (const address of CLIENTS) {
            const refused = await board({
              method: "POST",
              path: "/api/messages",
              localAddress: address,
              headers: {
                "content-type": "application/json",
                "transfer-encoding": "chunked",
              },
              body: tooBig,
            });
            assert.equal(refused.status, 413);
          }
          for (const address of CLIENTS) {
            const page = await board({
              path: "/api/messages?limit=1",
              localAddress: address,
            });
            assert.equal(page.status, 200, `${address}: ${page.body}`);
          }
        },
      );

      await t.step(
        "a board whose /healthz says 503 gets no clients until it says 200 again",
        async () => {
          // Caddy's active health checks ask each board's /healthz.
          for (const server of [boardA, boardB]) {
            assert.ok(
              server.lines.some((line) =>
                line.includes('"GET /healthz HTTP/1.1" 200 ')
              ),
              `Caddy checked /healthz on ${server.origin}`,
            );
          }
          const healthOfA = async () => {
            const response = await fetch(`${boardA.origin}/healthz`);
            return { status: response.status, body: await response.json() };
          };
          /** Every client's page through Caddy; their statuses, and how many A answered. */
          const everyClient = async (path: string) => {
            const before = requestLines(boardA, path).length;
            const statuses = [];
            for (const localAddress of CLIENTS) {
              statuses.push((await board({ path, localAddress })).status);
            }
            return {
              statuses,
              onA: requestLines(boardA, path).length - before,
            };
          };
          /** Calls `check` every 100 ms until it returns true, for 10 s at most. */
          const waitFor = async (
            what: string,
            check: () => Promise<boolean>,
          ) => {
            const deadline = Date.now() + 10_000;
            while (!await check()) {
              assert.ok(Date.now() < deadline, what);
              await new Promise((resolve) => setTimeout(resolve, 100));
            }
          };

          // A loses its database: its /healthz says 503 (B's still says 200).
          relay.cut();
          await waitFor("A's /healthz says 503", async () => {
            const { status, body } = await healthOfA();
            return status === 503 && body.status === "unavailable";
          });
          // Once Caddy's next check has seen it, every client is sent to B.
          await waitFor(
            "every client gets its page from B",
            async () => {
              const { statuses, onA } = await everyClient(
                "/api/messages?limit=4",
              );
              return onA === 0 && statuses.every((status) => status === 200);
            },
          );
          const out = await everyClient("/api/messages?limit=4");
          assert.deepEqual(out.statuses, CLIENTS.map(() => 200));
          assert.equal(
            out.onA,
            0,
            "A got no client while its /healthz said 503",
          );

          // A reaches its database again: /healthz says 200, and A's clients come back.
          relay.mend();
          await waitFor("A's /healthz says 200", async () => {
            const { status } = await healthOfA();
            return status === 200;
          });
          await waitFor("A answers its clients again", async () => {
            const { statuses, onA } = await everyClient(
              "/api/messages?limit=5",
            );
            assert.deepEqual(statuses, CLIENTS.map(() => 200));
            return onA > 0;
          });
        },
      );

      await t.step(
        "when one board dies, the other answers every request",
        async () => {
          Deno.kill(boardA.pid, "SIGKILL");
          // Every client, A's included, gets its answer from B.
          for (const address of CLIENTS) {
            const page = await board({
              path: "/api/messages?limit=3",
              localAddress: address,
            });
            assert.equal(
              page.status,
              200,
              `${address}: ${page.status}; Caddy's log:\n${
                caddy.lines.join("\n")
              }`,
            );
            assert.match(page.body, /during the flood/);
          }
          assert.equal(
            requestLines(boardB, "/api/messages?limit=3").length,
            CLIENTS.length,
          );
        },
      );
    } finally {
      await Promise.all(started.map((server) => server.stop()));
    }
  },
});

Deno.test({
  name:
    "deploy/Caddyfile: Caddy before the board and the file server on Unix sockets (--unix)",
  ignore: CADDY === null && !IN_CI,
  sanitizeResources: false, // node:http's sockets close a moment after 'end'
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "deploy_unix_caddy_" });
    try {
      await Deno.mkdir(`${dir}/data`);
      const boardSocket = `${dir}/board.sock`;
      const filesSocket = `${dir}/files.sock`;
      // Each script with its usage's flags for a socket.
      const socketFlags = (path: string) => [
        `--allow-read=${path}`,
        `--allow-write=${path}`,
        `--allow-net=unix:${path}`,
      ];
      await using boardServer = await startScript("message_board.ts", [
        `--allow-read=${dir}/data`,
        `--allow-write=${dir}/data`,
        ...socketFlags(boardSocket),
      ], [
        "--data",
        `${dir}/data/messages.jsonl`,
        "--trust-proxy",
        "--allowed-host",
        BOARD_HOST,
        "--unix",
        boardSocket,
      ], { ready: /on unix:/ });
      await using filesServer = await startScript("server_files.ts", [
        "--allow-read=./static",
        ...socketFlags(filesSocket),
      ], [
        "--root",
        "./static",
        "--allowed-host",
        FILES_HOST,
        "--unix",
        filesSocket,
      ], { ready: /on unix:/ });
      // Caddy's name for a Unix socket upstream: unix/ and the path.
      await using caddy = await startCaddy({
        BOARD_UPSTREAM_A: `unix/${boardSocket}`,
        BOARD_UPSTREAM_B: `unix/${boardSocket}`,
        FILES_UPSTREAM: `unix/${filesSocket}`,
      });

      const index = await send(caddy.filesPort, {
        host: FILES_HOST,
        path: "/index.html",
      });
      assert.equal(index.status, 200);
      assert.match(index.body, /index page of our tiny site/);
      await filesServer.waitForLine(/"GET \/index\.html HTTP\/1\.1" 200 /);

      // A form posted from the board's page, as a browser sends it.
      const origin = `http://${BOARD_HOST}:${caddy.boardPort}`;
      const posted = await send(caddy.boardPort, {
        method: "POST",
        path: "/",
        host: BOARD_HOST,
        localAddress: "127.0.0.5",
        headers: {
          "content-type": "application/x-www-form-urlencoded",
          origin,
        },
        body: "message=through+a+socket",
      });
      assert.equal(posted.status, 303, posted.body);
      const page = await send(caddy.boardPort, { host: BOARD_HOST, path: "/" });
      assert.equal(page.status, 200);
      assert.match(page.body, /through a socket/);
      // Caddy's health checks reach the board on its socket too.
      await boardServer.waitForLine(/"GET \/healthz HTTP\/1\.1" 200 /, 5_000);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});
