// Behind a reverse proxy every client reaches the board and the file server
// from the proxy's address. `--trust-proxy LIST` names the proxies: a request
// from one of them is the client its X-Forwarded-For names (the rightmost hop
// that is not a trusted proxy, as nginx's real_ip_recursive finds it), for the
// board's per-client limits and both access logs; a request from any other
// peer is its own client, whatever headers it sends. Run in-process (tables),
// as processes with a spoofing peer on 127.0.0.2, and with real Caddy
// (deploy/Caddyfile) in front.
import assert from "node:assert/strict";
import * as board from "../message_board.ts";
import * as files from "../server_files.ts";
import { BOARD_FLAGS, BOARD_SCRIPT, startBoard, tempFolder } from "./_board.ts";
import {
  BOARD_HOST,
  CADDY,
  FILES_HOST,
  IN_CI,
  send,
  startCaddy,
} from "./_caddy.ts";
import { REPO_ROOT, runScript, startScript } from "./_process.ts";

const { POST_BURST } = board;
/** The two scripts that take --trust-proxy, with the same two functions. */
const MODULES = [
  ["message_board.ts", board],
  ["server_files.ts", files],
] as const;

/** Deno.serve's `info` for a request from `hostname`, or from a Unix socket. */
function peer(hostname: string | "unix"): Deno.ServeHandlerInfo {
  return {
    remoteAddr: hostname === "unix"
      ? { transport: "unix", path: "" }
      : { transport: "tcp", hostname, port: 40000 },
    completed: Promise.resolve(),
  } as Deno.ServeHandlerInfo;
}

for (const [script, { trustedProxies, forwardedClient }] of MODULES) {
  Deno.test(`${script} trustedProxies: addresses, CIDR ranges and loopback (table)`, () => {
    const trusted = trustedProxies([
      "loopback",
      "10.0.0.0/8",
      "192.0.2.7",
      "2001:db8::/32",
    ]);
    const cases: [string, boolean][] = [
      ["127.0.0.1", true],
      ["127.255.0.9", true],
      ["::1", true],
      ["[::1]", true],
      ["::ffff:127.0.0.1", true], // an IPv4 peer on a dual-stack socket
      ["10.200.3.4", true],
      ["11.0.0.1", false],
      ["192.0.2.7", true],
      ["192.0.2.8", false],
      ["2001:db8:ffff::1", true],
      ["2001:db9::1", false],
      ["::2", false],
      ["1.2.3.256", false],
      ["not-an-address", false],
      ["", false],
    ];
    for (const [address, expected] of cases) {
      assert.equal(trusted(address), expected, address);
    }
    for (
      const bad of [
        "10.0.0.0/33",
        "::1/129",
        "1.2.3.4/",
        "1.2.3",
        "x",
        "",
        "1/2/3",
      ]
    ) {
      assert.throws(() => trustedProxies([bad]), TypeError, bad);
    }
  });

  Deno.test(`${script} forwardedClient: the rightmost X-Forwarded-For hop that is no trusted proxy, and only from one (table)`, () => {
    const proxies = ["loopback", "10.0.0.0/8"];
    const cases: [
      from: string,
      forwarded: string | null,
      trust: boolean | string[],
      client: string | null,
    ][] = [
      // Not told to trust anyone: the socket's address, whatever the header.
      ["127.0.0.1", "198.51.100.1", false, "127.0.0.1"],
      // From the proxy: the hop it added, not what the client wrote before it.
      ["127.0.0.1", "6.6.6.6, 198.51.100.1", proxies, "198.51.100.1"],
      // Through two trusted proxies (a load balancer, then Caddy): skip both.
      ["127.0.0.1", "6.6.6.6, 198.51.100.1, 10.0.0.5", proxies, "198.51.100.1"],
      // A peer that is no proxy writes what it likes: it is its own client.
      ["127.0.0.2", "198.51.100.1", ["127.0.0.1"], "127.0.0.2"],
      ["192.0.2.9", "127.0.0.1", proxies, "192.0.2.9"],
      // The proxy sent none: the proxy itself.
      ["127.0.0.1", null, proxies, "127.0.0.1"],
      // Every hop trusted: the leftmost, the nearest to the client.
      ["127.0.0.1", "10.0.0.9, 10.0.0.5", proxies, "10.0.0.9"],
      // A hop that is no address ends the walk at the last address found.
      ["127.0.0.1", "6.6.6.6, <script>, 10.0.0.5", proxies, "10.0.0.5"],
      ["127.0.0.1", "not-an-address", proxies, "127.0.0.1"],
      // Ports and brackets (Azure's Application Gateway) are not the client.
      ["127.0.0.1", "203.0.113.5:50123", proxies, "203.0.113.5"],
      ["127.0.0.1", "[2001:db8::7]:50125", proxies, "2001:db8::7"],
      ["127.0.0.1", "[2001:db8::7]", proxies, "2001:db8::7"],
      // true: whatever peer connects is the one proxy, and its last hop the client.
      ["192.0.2.9", "6.6.6.6, 10.0.0.5", true, "10.0.0.5"],
      // A Unix socket's peer is the proxy whenever a list is given.
      ["unix", "198.51.100.1", proxies, "198.51.100.1"],
      ["unix", "198.51.100.1", false, null],
    ];
    for (const [from, forwarded, trust, client] of cases) {
      const request = new Request("http://127.0.0.1/", {
        headers: forwarded === null ? {} : { "x-forwarded-for": forwarded },
      });
      assert.equal(
        forwardedClient(request, peer(from), trust),
        client,
        `${from} ${forwarded} ${JSON.stringify(trust)}`,
      );
    }
    // Without Deno.serve's info there is no peer to trust, except with true.
    const request = new Request("http://127.0.0.1/", {
      headers: { "x-forwarded-for": "198.51.100.1" },
    });
    assert.equal(forwardedClient(request, undefined, proxies), null);
    assert.equal(forwardedClient(request, undefined, true), "198.51.100.1");
  });
}

/** One JSON post to the board at `port` from `localAddress`, with `headers`. */
function postFrom(
  port: number,
  localAddress: string,
  headers: Record<string, string>,
  host = "127.0.0.1",
) {
  return send(port, {
    method: "POST",
    path: "/api/messages",
    host,
    localAddress,
    headers: { "content-type": "application/json", ...headers },
    body: JSON.stringify({ text: `from ${localAddress}` }),
  });
}

/** The client addresses of the board's log lines for posts, in order (Common Log Format). */
function postClients(lines: string[]): string[] {
  return lines.filter((line) => line.includes('"POST /api/messages '))
    .map((line) => line.split(" ")[0]!);
}

Deno.test({
  name:
    "message_board.ts --trust-proxy 127.0.0.1: the proxy's X-Forwarded-For names the client; any other peer's is ignored",
  sanitizeResources: false, // node:http's sockets close a moment after 'end'
  async fn() {
    await using folder = await tempFolder();
    await Deno.mkdir(`${folder.path}/data`);
    await using board = await startBoard(folder.path, [
      "--trust-proxy",
      "127.0.0.1",
    ], { rateLimit: true, accessLog: true, flags: BOARD_FLAGS });
    // 127.0.0.2 is no proxy: each post claims another client, and every one
    // is charged to 127.0.0.2 and logged as it.
    const spoofed: number[] = [];
    for (let i = 1; i <= POST_BURST + 1; i++) {
      const { status } = await postFrom(board.port, "127.0.0.2", {
        "x-forwarded-for": `198.51.100.${i}`,
      });
      spoofed.push(status);
    }
    assert.deepEqual(spoofed, [...Array(POST_BURST).fill(201), 429]);
    // The proxy (127.0.0.1) forwards clients: each has its own allowance,
    // and the one 127.0.0.2 claimed to be is not used up.
    const forwarded = [];
    for (const client of ["198.51.100.1", "203.0.113.9", "2001:db8::5"]) {
      forwarded.push(
        (await postFrom(board.port, "127.0.0.1", {
          "x-forwarded-for": `6.6.6.6, ${client}`,
        })).status,
      );
    }
    assert.deepEqual(forwarded, [201, 201, 201]);
    await board.waitForLine(/2001:db8::5 - - /);
    assert.deepEqual(postClients(board.lines), [
      ...Array(POST_BURST + 1).fill("127.0.0.2"),
      "198.51.100.1",
      "203.0.113.9",
      "2001:db8::5",
    ]);
  },
});

/** The file server on `root` from the repository, logging, with `args`. */
function startFiles(args: string[]) {
  return startScript(`${REPO_ROOT}server_files.ts`, [
    "--allow-net=127.0.0.1",
    "--allow-read=./static",
  ], ["--root", "./static", "--hostname", "127.0.0.1", "--port", "0", ...args]);
}

/** The client addresses of the file server's log lines for `path`. */
function getClients(lines: string[], path: string): string[] {
  return lines.filter((line) => line.includes(`"GET ${path} `))
    .map((line) => line.split(" ")[0]!);
}

Deno.test({
  name:
    "server_files.ts --trust-proxy 127.0.0.1: the log names the proxy's forwarded client, and any other peer as itself",
  sanitizeResources: false, // node:http's sockets close a moment after 'end'
  async fn() {
    await using server = await startFiles(["--trust-proxy", "127.0.0.1"]);
    const get = (localAddress: string, forwarded: string) =>
      send(server.port, {
        path: "/page.html",
        host: "127.0.0.1",
        localAddress,
        headers: { "x-forwarded-for": forwarded },
      });
    assert.equal((await get("127.0.0.2", "198.51.100.1")).status, 200);
    assert.equal((await get("127.0.0.1", "6.6.6.6, 198.51.100.7")).status, 200);
    assert.equal((await get("127.0.0.1", "<script>")).status, 200);
    await server.waitForLine(/^127\.0\.0\.1 - - .*"GET \/page\.html /);
    assert.deepEqual(getClients(server.lines, "/page.html"), [
      "127.0.0.2",
      "198.51.100.7",
      "127.0.0.1",
    ]);
  },
});

Deno.test("--trust-proxy: a value that is no address or range is one line and exit 2", async (t) => {
  await using folder = await tempFolder();
  const runs = [
    ["message_board", BOARD_SCRIPT, BOARD_FLAGS],
    ["server_files", `${REPO_ROOT}server_files.ts`, ["--allow-read=."]],
  ] as const;
  for (const [program, script, flags] of runs) {
    await t.step(program, async () => {
      const result = await runScript(script, [...flags], [
        "--trust-proxy",
        "10.0.0.0/33",
      ], { cwd: folder.path });
      assert.equal(result.code, 2);
      assert.equal(
        result.stderr,
        `${program}: --trust-proxy takes addresses and CIDR ranges (127.0.0.1,10.0.0.0/8) or loopback, got 10.0.0.0/33 (see --help)\n`,
      );
    });
  }
});

Deno.test({
  name:
    "deploy/Caddyfile with --trust-proxy: each client is logged (board, files) and limited (board) by the address Caddy saw; a direct peer by its own",
  ignore: CADDY === null && !IN_CI,
  sanitizeResources: false, // node:http's sockets close a moment after 'end'
  async fn() {
    await using folder = await tempFolder();
    await Deno.mkdir(`${folder.path}/data`);
    // The README's command for a board behind Caddy on this machine, with
    // the JSON log; one board process for both upstreams. Here the other
    // loopback addresses stand for other machines: only Caddy's is trusted.
    await using board = await startBoard(folder.path, [
      "--hostname",
      "127.0.0.1",
      "--trust-proxy",
      "127.0.0.1",
      "--allowed-host",
      BOARD_HOST,
      "--log-format",
      "json",
    ], { rateLimit: true, accessLog: true });
    await using files = await startFiles([
      "--trust-proxy",
      "127.0.0.1",
      "--allowed-host",
      FILES_HOST,
    ]);
    const upstream = `127.0.0.1:${board.port}`;
    await using caddy = await startCaddy({
      BOARD_UPSTREAM_A: upstream,
      BOARD_UPSTREAM_B: upstream,
      FILES_UPSTREAM: `127.0.0.1:${files.port}`,
    });
    // Through Caddy from 127.0.0.3, each post claiming another address in
    // every header a client can write: Caddy replaces X-Forwarded-For with
    // the address it saw, so the sixth is refused.
    const statuses: number[] = [];
    for (let i = 1; i <= POST_BURST + 1; i++) {
      const claimed = `198.51.100.${i}`;
      const { status } = await postFrom(caddy.boardPort, "127.0.0.3", {
        "x-forwarded-for": claimed,
        "forwarded": `for=${claimed}`,
        "x-real-ip": claimed,
      }, BOARD_HOST);
      statuses.push(status);
    }
    assert.deepEqual(statuses, [...Array(POST_BURST).fill(201), 429]);
    // Another client through Caddy has its own allowance.
    const other = await postFrom(caddy.boardPort, "127.0.0.4", {}, BOARD_HOST);
    assert.equal(other.status, 201, other.body);
    // A peer that reaches the board without Caddy, claiming to be 127.0.0.4
    // (or Caddy), is itself: logged as 127.0.0.5, charged to it.
    const direct = await postFrom(board.port, "127.0.0.5", {
      "x-forwarded-for": "127.0.0.4",
    });
    assert.equal(direct.status, 201, direct.body);
    await board.waitForLine(/"remote_addr":"127\.0\.0\.5"/);
    const posts = board.lines.filter((line) => line.includes('"method":"POST"'))
      .map((line) => JSON.parse(line).remote_addr);
    assert.deepEqual(posts, [
      ...Array(POST_BURST + 1).fill("127.0.0.3"),
      "127.0.0.4",
      "127.0.0.5",
    ]);

    // The file server's log, through Caddy and beside it.
    const page = await send(caddy.filesPort, {
      host: FILES_HOST,
      path: "/page.html",
      localAddress: "127.0.0.6",
      headers: { "x-forwarded-for": "198.51.100.9" },
    });
    assert.equal(page.status, 200);
    const beside = await send(files.port, {
      host: "127.0.0.1",
      path: "/page.html",
      localAddress: "127.0.0.7",
      headers: { "x-forwarded-for": "127.0.0.6" },
    });
    assert.equal(beside.status, 200);
    await files.waitForLine(/^127\.0\.0\.7 /);
    assert.deepEqual(getClients(files.lines, "/page.html"), [
      "127.0.0.6",
      "127.0.0.7",
    ]);
  },
});

Deno.test({
  name:
    "message_board.ts --base-path /board: behind a proxy that passes the prefix on, the board lives under it",
  sanitizeResources: false, // node:http's sockets close a moment after 'end'
  async fn() {
    await using folder = await tempFolder();
    await Deno.mkdir(`${folder.path}/data`);
    await using board = await startBoard(folder.path, [
      "--base-path",
      "/board",
    ], { accessLog: true });
    // The start-up line opens the board's own page.
    assert.match(
      board.lines[0]!,
      /^Tiny Message Board on http:\/\/127\.0\.0\.1:\d+\/board\/ /,
    );
    const get = (path: string) => send(board.port, { path, host: "127.0.0.1" });
    const page = await get("/board/");
    assert.equal(page.status, 200);
    assert.match(page.body, /href="\/board\/style\.css/);
    assert.doesNotMatch(page.body, /(href|action|src)="\/(?!board\/)/);
    assert.equal((await get("/")).status, 404);
    assert.equal((await get("/board/api/messages")).status, 200);
    const posted = await send(board.port, {
      method: "POST",
      path: "/board/",
      host: "127.0.0.1",
      headers: {
        "content-type": "application/x-www-form-urlencoded",
        origin: board.origin,
      },
      body: "message=under+a+prefix",
    });
    assert.equal(posted.status, 303, posted.body);
    assert.match((await get("/board/")).body, /under a prefix/);
  },
});

Deno.test({
  name:
    "server_files.ts --trust-proxy: behind a proxy each forwarded client has its own MAX_OPEN_FILES_PER_CLIENT, not one for all",
  sanitizeResources: false,
  async fn() {
    const root = await Deno.makeTempDir({ prefix: "deploy_proxy_" });
    const conns: Deno.Conn[] = [];
    try {
      // Past the small-file cache, and more than the socket buffers hold:
      // a download nobody reads keeps its file (and its turn) open.
      await Deno.writeFile(`${root}/big.bin`, new Uint8Array());
      await Deno.truncate(`${root}/big.bin`, 256 << 20); // sparse: no disk used
      await using server = await startScript(`${REPO_ROOT}server_files.ts`, [
        "--allow-net=127.0.0.1",
        `--allow-read=${root}`,
      ], [
        "--root",
        root,
        "--port",
        "0",
        "--quiet",
        "--trust-proxy",
        "127.0.0.1",
      ]);
      // One client, through the proxy (127.0.0.1), takes every turn it has.
      const request = (client: string) =>
        new TextEncoder().encode(
          `GET /big.bin HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Forwarded-For: ${client}\r\n\r\n`,
        );
      for (let i = 0; i < files.MAX_OPEN_FILES_PER_CLIENT + 1; i++) {
        const conn = await Deno.connect({
          hostname: "127.0.0.1",
          port: server.port,
        });
        conns.push(conn);
        await conn.write(request("198.51.100.1"));
      }
      // Wait until they hold every turn: 64 descriptors of the file open.
      const held = () =>
        [...Deno.readDirSync(`/proc/${server.pid}/fd`)].filter(({ name }) => {
          try {
            return Deno.readLinkSync(`/proc/${server.pid}/fd/${name}`) ===
              `${root}/big.bin`;
          } catch {
            return false; // closed since the listing
          }
        }).length;
      for (
        const deadline = Date.now() + 5_000;
        held() < files.MAX_OPEN_FILES_PER_CLIENT && Date.now() < deadline;
      ) await new Promise((resolve) => setTimeout(resolve, 50));
      assert.ok(held() >= files.MAX_OPEN_FILES_PER_CLIENT, `${held()} open`);
      // Another client through the same proxy downloads at once.
      const started = performance.now();
      const response = await fetch(`${server.url}big.bin`, {
        headers: {
          "x-forwarded-for": "198.51.100.2",
          range: "bytes=0-1048575",
        },
        signal: AbortSignal.timeout(10_000),
      });
      assert.equal(response.status, 206);
      assert.equal((await response.arrayBuffer()).byteLength, 1 << 20);
      assert.ok(
        performance.now() - started < 10_000,
        "the second client did not wait for the first one's turns",
      );
      // Closed before the server stops, which would wait for them.
      for (const conn of conns.splice(0)) conn.close();
    } finally {
      for (const conn of conns) conn.close();
      await Deno.remove(root, { recursive: true });
    }
  },
});
