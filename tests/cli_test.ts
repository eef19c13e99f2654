// One command-line shape for the three scripts and board_postgres.ts's entry
// point: each parseCommandLine words a mistake the same way; run as a real
// process with the README's permission flags, a bad flag or a bad port gets
// one line on stderr naming --help and exit 2, --help the usage and exit 0;
// and each server's access log line for the same request has the same shape.
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import * as board from "../message_board.ts";
import * as files from "../server_files.ts";
import * as tiny from "../server_tiny.ts";
import { runScript, startScript } from "./_process.ts";
import { sendRaw } from "./_raw.ts";

const REPO = fileURLToPath(new URL("..", import.meta.url));

/** Every mistake, and the one line each parseCommandLine throws for it. */
const MISTAKES: [args: string[], message: string][] = [
  [["--colour"], "unknown flag --colour"],
  [["-x"], "unknown flag -x"],
  [["--col\nour"], 'unknown flag "--col\\x0aour"'],
  [["--port"], "--port needs a value"],
  [
    ["--port", "-1"],
    "--port needs a value (write --port=-1 for one that starts with -)",
  ],
  [["--port", "99999"], "--port must be a number from 0 to 65535, got 99999"],
  [["--port=http"], "--port must be a number from 0 to 65535, got http"],
  [["--port="], '--port must be a number from 0 to 65535, got ""'],
  [["--port=1e3"], "--port must be a number from 0 to 65535, got 1e3"],
  [["--port=-1"], "--port must be a number from 0 to 65535, got -1"],
  [["--quiet=yes"], "--quiet takes no value"],
  [
    ["--log-format", "xml"],
    "--log-format takes clf, combined or json, got xml",
  ],
  [["--log-format="], '--log-format takes clf, combined or json, got ""'],
  [["--allowed-host"], "--allowed-host needs a value"],
  [["--allowed-host", "a b"], '--allowed-host takes a host name, got "a b"'],
  [["--allowed-host", "a/b"], "--allowed-host takes a host name, got a/b"],
  [["--allowed-host", ""], '--allowed-host takes a host name, got ""'],
];

/** A word without a flag: tiny and the board take none. */
const WORD_MISTAKES: [args: string[], message: string][] = [
  [["stray"], "unexpected argument stray (flags start with --)"],
];

/** server_files.ts takes one, the folder (as std's `file_server [path]`), and no more. */
const FOLDER_MISTAKES: [args: string[], message: string][] = [
  [["./public", "stray"], "unexpected argument stray (flags start with --)"],
  [["./public", "--colour"], "unknown flag --colour"],
  [
    ["--root", "./public", "stray"],
    "unexpected argument stray (--root already names the folder)",
  ],
  [
    ["stray", "--root", "./public"],
    "unexpected argument stray (--root already names the folder)",
  ],
];

/** --cert without --key, the same in the two scripts that serve HTTPS. */
const CERT_MISTAKES: [args: string[], message: string][] = [
  [["--cert", "c.pem"], "--cert and --key go together"],
];

/** --unix with another place to listen or TLS, the same in the two Deno.serve scripts. */
const UNIX_MISTAKES: [args: string[], message: string][] = [
  [["--unix"], "--unix needs a value"],
  [["--unix="], "--unix needs a path"],
  [
    ["--unix", "/run/a.sock", "--port", "8080"],
    "--unix and --port are two places to listen: give one",
  ],
  [
    ["--hostname", "127.0.0.1", "--unix", "/run/a.sock"],
    "--unix and --hostname are two places to listen: give one",
  ],
  [["--unix-mode", "660"], "--unix-mode goes with --unix PATH"],
  ...["rw-rw----", "0x1b0", "6600", "66", "680", "+660", "0o0660"].map((
    mode,
  ): [string[], string] => [
    ["--unix", "/run/a.sock", "--unix-mode", mode],
    `--unix-mode takes an octal file mode such as 660, got ${mode}`,
  ]),
];

/** The two scripts that take --cert serve TLS on TCP only. */
const UNIX_TLS_MISTAKES: [args: string[], message: string][] = [
  [
    ["--unix", "/run/a.sock", "--cert", "c.pem", "--key", "k.pem"],
    "--cert and --key are for TCP, not --unix",
  ],
];

/** message_board.ts alone is mounted under a path. */
const BASE_PATH_MISTAKES: [args: string[], message: string][] = [
  ["board", "/a b", "/board?x", "//x"].map((path): [string[], string] => [
    ["--base-path", path],
    `--base-path takes a path such as /board, got ${
      path.includes(" ") ? `"${path}"` : path
    }`,
  ]),
].flat();

/** server_files.ts alone has --workers, which share a TCP port. */
const WORKER_MISTAKES: [args: string[], message: string][] = [
  [
    ["--unix", "/run/a.sock", "--workers", "2"],
    "--workers above 1 is for TCP, not --unix",
  ],
];

/** A --header that is no "Name: value". */
const HEADER_MISTAKES: [args: string[], message: string][] = [
  [
    ["--header", "nocolon"],
    '--header: invalid header "nocolon": expected "Name: value"',
  ],
];

/** Each parser, with the mistakes of the flags only it has. */
const PARSERS = [
  ["server_tiny.ts", tiny.parseCommandLine, tiny.CommandLineError, [
    ...WORD_MISTAKES,
    ...UNIX_MISTAKES,
  ]],
  ["server_files.ts", files.parseCommandLine, files.CommandLineError, [
    ...FOLDER_MISTAKES,
    ...CERT_MISTAKES,
    ...HEADER_MISTAKES,
    ...UNIX_MISTAKES,
    ...UNIX_TLS_MISTAKES,
    ...WORKER_MISTAKES,
  ]],
  ["message_board.ts", board.parseCommandLine, board.CommandLineError, [
    ...WORD_MISTAKES,
    ...CERT_MISTAKES,
    ...UNIX_MISTAKES,
    ...UNIX_TLS_MISTAKES,
    ...BASE_PATH_MISTAKES,
  ]],
] as const;

for (const [script, parseCommandLine, CommandLineError, own] of PARSERS) {
  Deno.test(`${script} parseCommandLine words each mistake in the shared line`, async (t) => {
    for (const [args, message] of [...MISTAKES, ...own]) {
      await t.step(JSON.stringify(args), () => {
        assert.throws(
          () => parseCommandLine(args),
          (error) =>
            error instanceof CommandLineError &&
            error.name === "CommandLineError" && error.message === message,
          message,
        );
      });
    }
  });
}

/** Access-log entries, and the one Common Log Format line each formatAccessLog writes. */
const LOG_LINES: [entry: tiny.AccessLogEntry, line: string][] = [
  [
    {
      client: "127.0.0.1",
      date: new Date(Date.UTC(2026, 11, 1, 10, 41, 27)),
      requestLine: "GET /page.html HTTP/1.1",
      status: 200,
      bodyBytes: 512,
    },
    '127.0.0.1 - - [01/Dec/2026:10:41:27 +0000] "GET /page.html HTTP/1.1" 200 512',
  ],
  [
    {
      client: null,
      date: new Date(0),
      requestLine: null,
      status: 408,
      bodyBytes: null,
    },
    '- - - [01/Jan/1970:00:00:00 +0000] "-" 408 -',
  ],
  [
    {
      client: "::1",
      date: new Date(0),
      requestLine: 'GET /a" 200 1\n\\\x1b[2J\xe9\u202e HTTP/1.1',
      status: 404,
      bodyBytes: 0,
    },
    '::1 - - [01/Jan/1970:00:00:00 +0000] "GET /a\\x22 200 1\\x0a\\x5c\\x1b[2J\\xe9\\u{202e} HTTP/1.1" 404 -',
  ],
  [
    {
      client: "127.0.0.1",
      date: new Date(0),
      requestLine: "GET / HTTP/1.1",
      status: 200,
      bodyBytes: 5,
      referer: null,
      userAgent: 'a "b"\n',
    },
    '127.0.0.1 - - [01/Jan/1970:00:00:00 +0000] "GET / HTTP/1.1" 200 5 "-" "a \\x22b\\x22\\x0a"',
  ],
];

const FORMATTERS = [
  ["server_tiny.ts", tiny.formatAccessLog],
  ["server_files.ts", files.formatAccessLog],
  ["message_board.ts", board.formatAccessLog],
] as const;

for (const [script, formatAccessLog] of FORMATTERS) {
  Deno.test(`${script} formatAccessLog writes the shared log line`, () => {
    for (const [entry, line] of LOG_LINES) {
      assert.equal(formatAccessLog(entry), line);
    }
  });
}

/** The board's flags, which board_postgres.ts takes too. */
const BOARD_USAGE = [
  "--data FILE",
  "--store URL",
  "--port N",
  "--hostname HOST",
  "--unix PATH",
  "--allow-net=unix:/ABSOLUTE/PATH",
  "--unix-mode MODE",
  "--trust-proxy [LIST]",
  "--cert FILE",
  "--key FILE",
  "--quiet",
  "--log-format FMT",
  "--allowed-host NAME",
  "--admin-token TOKEN",
  "--rate-limit off",
  "--version",
  "--help",
];

/** Each entry point with the README's permission flags and the flags its usage lists. */
const ENTRY_POINTS = [
  {
    script: "server_tiny.ts",
    program: "server_tiny",
    permissions: ["--allow-net=127.0.0.1"],
    usage: [
      "--port N",
      "--hostname HOST",
      "--unix PATH",
      "--allow-net=unix:/ABSOLUTE/PATH",
      "--unix-mode MODE",
      "--allowed-host NAME",
      "--once",
      "--quiet",
      "--log-format FMT",
      "--version",
      "--help",
    ],
  },
  {
    script: "server_files.ts",
    program: "server_files",
    permissions: ["--allow-net=127.0.0.1", "--allow-read=./static"],
    usage: [
      "--root",
      "--port",
      "--hostname",
      "--unix PATH",
      "--allow-net=unix:/ABSOLUTE/PATH",
      "--unix-mode MODE",
      "--trust-proxy [LIST]",
      "--allowed-host",
      "--fallback",
      "--clean-urls",
      "--dir-listing",
      "--dotfiles",
      "--cors",
      "--header",
      "--cert",
      "--key",
      "--quiet",
      "--log-format FMT",
      "--help",
    ],
  },
  {
    script: "message_board.ts",
    program: "message_board",
    permissions: [
      "--allow-net=127.0.0.1",
      "--allow-read=./data",
      "--allow-write=./data",
    ],
    usage: BOARD_USAGE,
  },
  {
    script: "board_postgres.ts",
    program: "board_postgres",
    permissions: ["--allow-net=127.0.0.1", "--allow-env=DATABASE_URL,PG*"],
    usage: BOARD_USAGE,
  },
];

function run(
  permissions: string[],
  script: string,
  args: string[],
  cwd = REPO,
) {
  // board_postgres.ts must not find a database in the environment.
  return runScript(`${REPO}/${script}`, ["--quiet", ...permissions], args, {
    cwd,
    clearEnv: true,
  });
}

for (const { script, program, permissions, usage } of ENTRY_POINTS) {
  Deno.test(`${script} as a process: a bad flag or port is one line and exit 2, --help the usage and exit 0`, async (t) => {
    for (
      const args of [["--nope"], ["--port", "70000"], ["--port"], ["a", "b"]]
    ) {
      await t.step(args.join(" "), async () => {
        const result = await run(permissions, script, args);
        assert.equal(result.code, 2, result.stderr);
        assert.match(
          result.stderr,
          new RegExp(`^${program}: [^\\n]+ \\(see --help\\)\\n$`),
        );
        assert.equal(result.stdout, "");
      });
    }
    await t.step("--help", async () => {
      const result = await run(permissions, script, ["--help"]);
      assert.equal(result.code, 0, result.stderr);
      assert.match(result.stdout, /^Usage: deno run --allow-net=127\.0\.0\.1 /);
      // One shape: the command, a sentence on what it is, the options.
      assert.match(
        result.stdout,
        /^Usage: deno run [^\n]+ \[options\]\n\n[A-Z][^\n]+\.\n\n[^]*^Options:\n/m,
      );
      assert.match(
        result.stdout,
        /^ {2}-V, --version {2,}print the version and exit$/m,
      );
      assert.match(result.stdout, /^ {2}-h, --help {2,}show this help$/m);
      assert.deepEqual(
        (await run(permissions, script, ["-h"])).stdout,
        result.stdout,
      );
      assert.match(result.stdout, /--port N/);
      assert.match(result.stdout, /--hostname HOST[^]*--allow-net=0\.0\.0\.0/);
      // The command to copy, with this script's narrow permissions.
      assert.ok(
        result.stdout.includes(`deno run ${permissions.join(" ")} ${script}`),
        `deno run ${permissions.join(" ")} ${script}`,
      );
      for (const flag of usage) {
        assert.ok(result.stdout.includes(flag), flag);
      }
      assert.equal(result.stderr, "");
    });
  });
}

/** Where each option's description starts in --help, and how wide its lines may be. */
const HELP_COLUMN = 22;
const HELP_WIDTH = 80;

/** The options block of a --help text: each option's flags and its description, one line. */
function helpOptions(usage: string): Map<string, string> {
  const block = usage.slice(usage.indexOf("\nOptions:\n") + 10).split(
    "\n\n",
  )[0]!;
  const options = new Map<string, string>();
  let flags = "";
  for (const line of block.split("\n")) {
    const text = line.slice(HELP_COLUMN).trim();
    if (line.startsWith("  -")) {
      flags = line.slice(2, HELP_COLUMN).trim();
      options.set(flags, text);
    } else options.set(flags, `${options.get(flags)} ${text}`.trim());
  }
  return options;
}

Deno.test("--help: one layout in the three scripts, and the options they share worded the same", async () => {
  const scripts = ENTRY_POINTS.filter(({ script }) =>
    script !== "board_postgres.ts"
  );
  const helps = new Map<string, Map<string, string>>();
  for (const { script, permissions } of scripts) {
    const { stdout } = await run(permissions, script, ["--help"]);
    const block = stdout.slice(stdout.indexOf("\nOptions:\n") + 10)
      .split("\n\n")[0]!.trimEnd();
    for (const line of block.split("\n")) {
      assert.ok(line.length <= HELP_WIDTH, `${script}: ${line}`);
      // A flag and its description, a flag too long to share its line, or a
      // description going on, always from the same column.
      assert.match(
        line,
        new RegExp(
          `^(  -[^ ].{0,${
            HELP_COLUMN - 5
          }} +(?<=^.{${HELP_COLUMN}})[^ ]|  -[^ ]+( [^ ]+)?$| {${HELP_COLUMN}}[^ ])`,
        ),
        `${script}: ${line}`,
      );
    }
    helps.set(script, helpOptions(stdout));
  }
  const shared = [
    "--port N",
    "--hostname HOST",
    "--unix PATH",
    "--unix-mode MODE",
    "--allowed-host NAME",
    "--log-format FMT",
    "-V, --version",
    "-h, --help",
  ];
  const tiny = helps.get("server_tiny.ts")!;
  for (const flags of shared) {
    assert.ok(tiny.has(flags), flags);
    for (const [script, options] of helps) {
      assert.equal(options.get(flags), tiny.get(flags), `${script} ${flags}`);
    }
  }
  // The two Deno.serve scripts share TLS and the quiet log too.
  const files = helps.get("server_files.ts")!;
  for (const flags of ["--cert FILE", "--key FILE", "--quiet"]) {
    assert.ok(files.has(flags), flags);
    assert.equal(helps.get("message_board.ts")!.get(flags), files.get(flags));
  }
});

Deno.test("--version: each script prints its name, the release and Deno's version, with no permission at all", async (t) => {
  assert.match(tiny.VERSION, /^\d{4}\.\d{1,2}\.\d{1,2}$/);
  assert.equal(files.VERSION, tiny.VERSION);
  assert.equal(board.VERSION, tiny.VERSION);
  for (const { script, permissions } of ENTRY_POINTS) {
    for (const flags of [permissions, []]) {
      // -V as std's file server spells it.
      for (const flag of ["--version", "-V"]) {
        await t.step(`${script} ${flags.join(" ")} ${flag}`, async () => {
          const result = await run(flags, script, [flag]);
          assert.equal(result.code, 0, result.stderr);
          assert.equal(
            result.stdout,
            `${script} ${tiny.VERSION} (Deno ${Deno.version.deno})\n`,
          );
          assert.equal(result.stderr, "");
        });
      }
    }
  }
});

/**
 * Starts `script` on port 0, asks it for `path` once, and returns the access
 * log line it printed for that request; then stops it with SIGTERM.
 */
async function accessLogLine(
  script: string,
  permissions: string[],
  args: string[],
  cwd: string,
  path: string,
  headers: Record<string, string> = {},
): Promise<string> {
  await using server = await startScript(`${REPO}/${script}`, permissions, [
    "--port",
    "0",
    ...args,
  ], { cwd });
  await (await fetch(`${server.url}${path.slice(1)}`, { headers })).body
    ?.cancel();
  const quoted = path.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
  return await server.waitForLine(new RegExp(`"GET ${quoted} `));
}

for (const format of ["clf", "combined"]) {
  Deno.test(`the three servers write the same --log-format ${format} line for the same request`, async () => {
    const folder = await Deno.makeTempDir({ prefix: "cli_test_" });
    try {
      await Deno.mkdir(`${folder}/static`);
      const path = "/cli-check?x=1";
      // combined adds the Referer and the User-Agent, escaped as the request line.
      const headers = {
        referer: "http://127.0.0.1/from?a=1",
        "user-agent": 'probe/1.0 "quoted" \\',
      };
      const args = ["--log-format", format];
      const lines = [
        await accessLogLine(
          "server_tiny.ts",
          ["--allow-net=127.0.0.1"],
          ["--quiet", ...args], // no request heads; the access log stays
          folder,
          path,
          headers,
        ),
        await accessLogLine(
          "server_files.ts",
          ["--allow-net=127.0.0.1", "--allow-read=./static"],
          args,
          folder,
          path,
          headers,
        ),
        await accessLogLine(
          "message_board.ts",
          [
            "--allow-net=127.0.0.1",
            "--allow-read=./data",
            "--allow-write=./data",
          ],
          args,
          folder,
          path,
          headers,
        ),
      ];
      const added = format === "combined"
        ? ' "http://127\\.0\\.0\\.1/from\\?a=1" "probe/1\\.0 \\\\x22quoted\\\\x22 \\\\x5c"'
        : "";
      for (const line of lines) {
        assert.match(
          line,
          new RegExp(
            `^127\\.0\\.0\\.1 - - \\[\\d\\d/[A-Z][a-z]{2}/\\d{4}:\\d\\d:\\d\\d:\\d\\d \\+0000\\] "GET /cli-check\\?x=1 HTTP/1\\.1" 404 (\\d+|-)${added}$`,
          ),
        );
      }
    } finally {
      await Deno.remove(folder, { recursive: true });
    }
  });
}

/** Each entry point run with --hostname 0.0.0.0 under the README's narrow --allow-net. */
const WIDENED = [
  ...ENTRY_POINTS.slice(0, 3).map(({ script, program, permissions }) => ({
    script,
    program,
    permissions,
    args: ["--hostname", "0.0.0.0", "--port", "0"],
    denied: "listen on 0.0.0.0:0",
    flag: "--allow-net=0.0.0.0",
    // The board's note on --allow-sys came first, a second line (it now
    // comes after the address line, once the board listens).
    lines: 1,
  })),
  {
    // PostgreSQL mode opens the database first: the flag must name it too.
    script: "board_postgres.ts",
    program: "board_postgres",
    permissions: ["--allow-net=0.0.0.0", "--allow-env=DATABASE_URL,PG*"],
    args: [
      "--hostname",
      "0.0.0.0",
      "--port",
      "0",
      "--store",
      "postgres://board@127.0.0.1:1/board",
    ],
    denied: "reach the database at 127.0.0.1:1",
    flag: "--allow-net=0.0.0.0,127.0.0.1",
    lines: 1,
  },
];

Deno.test("--hostname 0.0.0.0 under the README's --allow-net: one line naming the flag to add, exit 1", async (t) => {
  for (
    const { script, program, permissions, args, denied, flag, lines } of WIDENED
  ) {
    await t.step(script, async () => {
      const result = await run(permissions, script, args);
      assert.equal(result.code, 1, result.stderr);
      const stderr = result.stderr.trimEnd().split("\n");
      assert.equal(stderr.length, lines, result.stderr);
      assert.equal(
        stderr.at(-1),
        `${program}: no permission to ${denied}: run with ${flag}`,
      );
      assert.doesNotMatch(result.stderr, /^\s+at /m, "no stack trace");
    });
  }
});

Deno.test("the README gives each script's command with the flag --hostname 0.0.0.0 needs", async (t) => {
  const readme = await Deno.readTextFile(`${REPO}/README.md`);
  for (const { script, flag } of WIDENED) {
    await t.step(script, () => {
      assert.ok(
        readme.split("\n").some((line) =>
          line.startsWith(`deno run ${flag} `) && line.includes(script) &&
          line.includes("--hostname 0.0.0.0")
        ),
        `README: deno run ${flag} ... ${script} --hostname 0.0.0.0`,
      );
    });
  }
});

Deno.test("a port already taken: one line with what to do, exit 1", async (t) => {
  using taken = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = String(taken.addr.port);
  const folder = await Deno.makeTempDir({ prefix: "cli_test_" });
  try {
    await Deno.mkdir(`${folder}/static`);
    for (const { script, program, permissions } of ENTRY_POINTS.slice(0, 3)) {
      await t.step(script, async () => {
        const result = await run(permissions, script, ["--port", port], folder);
        assert.equal(result.code, 1, result.stderr);
        assert.equal(
          result.stderr,
          `${program}: 127.0.0.1:${port} is in use (try another --port, or --port 0)\n`,
        );
      });
    }
  } finally {
    await Deno.remove(folder, { recursive: true });
  }
});

Deno.test("startServer in each script", async (t) => {
  const folder = await Deno.makeTempDir({ prefix: "cli_test_" });
  try {
    await Deno.writeTextFile(`${folder}/hello.txt`, "hello");
    const lines: string[] = [];
    const starts = {
      "server_tiny.ts": () =>
        tiny.startServer({ port: 0, log: (line) => lines.push(line) }),
      "server_files.ts": () =>
        files.startServer({
          port: 0,
          fsRoot: folder,
          quiet: true,
          onListen: () => {},
        }),
      "message_board.ts": () =>
        board.startServer({
          port: 0,
          dataFile: `${folder}/messages.jsonl`,
          quiet: true,
        }),
    };
    const paths = {
      "server_tiny.ts": "/",
      "server_files.ts": "/hello.txt",
      "message_board.ts": "/",
    };
    for (const [script, start] of Object.entries(starts)) {
      const server = await start();
      try {
        await t.step(`${script}: resolves the real address`, () => {
          assert.equal(server.addr.hostname, "127.0.0.1");
          assert.notEqual(server.addr.port, 0);
        });
        await t.step(`${script}: serves on it`, async () => {
          const path = paths[script as keyof typeof paths];
          const response = await fetch(
            `http://127.0.0.1:${server.addr.port}${path}`,
          );
          assert.equal(response.status, 200);
          await response.body?.cancel();
        });
      } finally {
        await t.step(`${script}: shuts down`, async () => {
          await server.shutdown();
          await server.finished;
        });
      }
    }
    await t.step("server_tiny.ts says where to connect", () => {
      assert.ok(
        lines.some((line) => line.includes(`http://127.0.0.1:`)),
        lines.join("\n"),
      );
    });
  } finally {
    await Deno.remove(folder, { recursive: true });
  }
});

Deno.test("server_files.ts takes the spellings of std's file server", async (t) => {
  // `deno run jsr:@std/http/file-server -p 8000 --host ... -H ... -v`
  const cases: [args: string[], expected: Partial<files.CommandLineOptions>][] =
    [
      [["-p", "0"], { port: 0 }],
      [["-p8001"], { port: 8001 }],
      [["--host", "0.0.0.0"], { hostname: "0.0.0.0" }],
      [["-H", "Cache-Control: no-cache", "--header", "X-A: b"], {
        headers: ["Cache-Control: no-cache", "X-A: b"],
      }],
      [["-c", "cert.pem", "-k", "key.pem"], {
        cert: "cert.pem",
        key: "key.pem",
      }],
      [["-v"], { quiet: false }],
      [["--verbose"], { quiet: false }],
      [["--dir-listing", "--no-dir-listing"], { showDirListing: false }],
      [["--dotfiles", "--no-dotfiles"], { showDotfiles: false }],
      [["--cors", "--no-cors"], { enableCors: false }],
      [["./public"], { fsRoot: "./public" }],
      [["-H=X-A: b", "-p=8001"], { headers: ["X-A: b"], port: 8001 }],
      [["-p", "0", "./public", "--cors"], { fsRoot: "./public", port: 0 }],
      [[], { fsRoot: "./static" }],
      [["--dir-listing", "--dotfiles", "--cors"], {
        showDirListing: true,
        showDotfiles: true,
        enableCors: true,
      }],
    ];
  for (const [args, expected] of cases) {
    await t.step(args.join(" "), () => {
      const parsed = files.parseCommandLine(args);
      for (const [key, value] of Object.entries(expected)) {
        assert.deepEqual(parsed[key as keyof typeof parsed], value, key);
      }
    });
  }
  await t.step(
    "--host with --hostname, and -v with --quiet, are mistakes",
    () => {
      assert.throws(
        () => files.parseCommandLine(["--host", "a", "--hostname", "b"]),
        files.CommandLineError,
      );
      assert.throws(
        () => files.parseCommandLine(["-v", "--quiet"]),
        files.CommandLineError,
      );
    },
  );
});

Deno.test("--hostname 0.0.0.0 without --allow-sys: each server says at start which names it will not answer to", async (t) => {
  const folder = await Deno.makeTempDir({ prefix: "cli-every-address-" });
  try {
    await Deno.mkdir(`${folder}/static`);
    await Deno.mkdir(`${folder}/data`);
    for (const { script, permissions } of ENTRY_POINTS.slice(0, 3)) {
      await t.step(script, async () => {
        const widened = permissions.map((flag) =>
          flag === "--allow-net=127.0.0.1" ? "--allow-net=0.0.0.0" : flag
        );
        const server = await startScript(`${REPO}/${script}`, widened, [
          "--hostname",
          "0.0.0.0",
          "--port",
          "0",
        ], { cwd: folder, clearEnv: true });
        try {
          await server.waitForLine(/without --allow-sys=networkInterfaces/);
        } finally {
          await server.stop();
        }
      });
    }
  } finally {
    await Deno.remove(folder, { recursive: true });
  }
});

Deno.test("server_files.ts without a folder to serve: one line saying which, exit 1", async (t) => {
  const folder = await Deno.makeTempDir({ prefix: "cli-no-root-" });
  const script = `${REPO}/server_files.ts`;
  const cases: [what: string, flags: string[], args: string[], line: string][] =
    [
      [
        "the README's command where there is no ./static",
        ["--allow-net=127.0.0.1", "--allow-read=./static"],
        [],
        "server_files: cannot start: there is no folder ./static to serve (create it, or give --root DIR)",
      ],
      [
        "the same with --workers 2",
        [
          "--unstable-net",
          "--allow-net=127.0.0.1",
          `--allow-read=./static,${script}`,
        ],
        ["--workers", "2"],
        "server_files: cannot start: there is no folder ./static to serve (create it, or give --root DIR)",
      ],
      [
        "--root naming a file",
        ["--allow-net=127.0.0.1", "--allow-read=."],
        ["--root", "notes.txt"],
        "server_files: cannot start: notes.txt is not a folder (--root takes the folder to serve)",
      ],
    ];
  try {
    await Deno.writeTextFile(`${folder}/notes.txt`, "a file");
    for (const [what, flags, args, line] of cases) {
      await t.step(what, async () => {
        const result = await run(flags, "server_files.ts", [
          ...args,
          "--port",
          "0",
        ], folder);
        assert.equal(result.code, 1, result.stdout + result.stderr);
        assert.equal(result.stderr.trimEnd(), line);
      });
    }
  } finally {
    await Deno.remove(folder, { recursive: true });
  }
});

/** Targets a hostile client may send, each of which a JSON log line must keep inside its string. */
const HOSTILE_TARGETS = [
  '/a"}\n{"forged":true}',
  '/a\r\n127.0.0.1 - - [01/Jan/1970:00:00:00 +0000] "GET / HTTP/1.1" 200 1',
  '/back\\slash\\"',
  "/\x1b[2J\x1b]0;title\x07\x7f\x85\x9b",
  "/\u2028\u2029\u00e9\u{1f600}",
  "/lone\ud800surrogate",
];

const JSON_FORMATTERS = [
  ["server_tiny.ts", tiny.formatJsonAccessLog],
  ["server_files.ts", files.formatJsonAccessLog],
  ["message_board.ts", board.formatJsonAccessLog],
] as const;

Deno.test("formatJsonAccessLog: one line of printable ASCII, the same in the three scripts, that reads back as what was sent", () => {
  const entry = {
    date: new Date(Date.UTC(2026, 11, 1, 10, 41, 27, 5)),
    client: "127.0.0.1",
    method: "GET",
    target: "/page.html?x=1",
    status: 200,
    bodyBytes: 512,
    durationMs: 1.23456,
  };
  const expected =
    '{"time":"2026-12-01T10:41:27.005Z","remote_addr":"127.0.0.1","method":"GET",' +
    '"target":"/page.html?x=1","status":200,"bytes":512,"duration_ms":1.235}';
  for (const [script, format] of JSON_FORMATTERS) {
    assert.equal(format(entry), expected, script);
    assert.equal(
      format({
        ...entry,
        client: null,
        method: null,
        target: null,
        bodyBytes: null,
      }),
      '{"time":"2026-12-01T10:41:27.005Z","remote_addr":null,"method":null,' +
        '"target":null,"status":200,"bytes":null,"duration_ms":1.235}',
      script,
    );
    for (const target of HOSTILE_TARGETS) {
      const line = format({ ...entry, target, method: 'G"ET' });
      assert.match(
        line,
        /^[\x20-\x7e]+$/,
        `${script}: ${JSON.stringify(line)}`,
      );
      const read = JSON.parse(line);
      assert.deepEqual(Object.keys(read), [
        "time",
        "remote_addr",
        "method",
        "target",
        "status",
        "bytes",
        "duration_ms",
      ]);
      assert.equal(read.target, target);
      assert.equal(read.method, 'G"ET');
      assert.equal(
        line,
        JSON_FORMATTERS[0][1]({ ...entry, target, method: 'G"ET' }),
      );
    }
  }
});

Deno.test("--log-format json: each request is one JSON line, and a hostile target forges none", async (t) => {
  const folder = await Deno.makeTempDir({ prefix: "cli_test_" });
  try {
    await Deno.mkdir(`${folder}/static`);
    for (const { script, permissions } of ENTRY_POINTS.slice(0, 3)) {
      await t.step(script, async () => {
        // server_tiny.ts prints request heads too, unless --quiet (which in
        // the other two turns the access log off).
        const quiet = script === "server_tiny.ts" ? ["--quiet"] : [];
        await using server = await startScript(
          `${REPO}/${script}`,
          permissions,
          ["--port", "0", "--log-format", "json", ...quiet],
          { cwd: folder },
        );
        const started = server.stdout.length;
        const host = `Host: 127.0.0.1:${server.port}\r\n`;
        // Quotes and backslashes as they are, then CR and LF where a line
        // could end: each server refuses those (Deno.serve's before the
        // handler, which then logs nothing) or takes them apart.
        const requests = [
          `GET /cli-json?q="a"\\b&c=%0d%0a HTTP/1.1\r\n${host}Connection: close\r\n\r\n`,
          `GET /x\n{"forged":true} HTTP/1.1\r\n${host}Connection: close\r\n\r\n`,
          `GET /y"\r\n{"forged":true}\r\n${host}Connection: close\r\n\r\n`,
          `GET /z\r HTTP/1.1\r\n${host}Connection: close\r\n\r\n`,
        ];
        for (const request of requests) {
          await sendRaw(server.port, request);
        }
        const first = await server.waitForLine(/"target":"\/cli-json/);
        const entry = JSON.parse(first);
        assert.deepEqual(
          { ...entry, time: 0, duration_ms: 0, bytes: 0 },
          {
            time: 0,
            remote_addr: "127.0.0.1",
            method: "GET",
            target: '/cli-json?q="a"\\b&c=%0d%0a',
            status: 404,
            bytes: 0,
            duration_ms: 0,
          },
        );
        assert.ok(Date.parse(entry.time) <= Date.now());
        assert.ok(entry.duration_ms >= 0);
        // Lines for the refused ones come at most a moment later.
        await new Promise((resolve) => setTimeout(resolve, 300));
        const logged = server.stdout.slice(started);
        assert.ok(logged.length <= requests.length, logged.join("\n"));
        for (const line of logged) {
          assert.match(line, /^\{[\x20-\x7e]+\}$/);
          const read = JSON.parse(line); // every line one whole object
          assert.ok(!("forged" in read), line);
          assert.ok(read.target === null || read.target.startsWith("/"), line);
        }
        assert.ok(
          !server.lines.some((line) => line.startsWith('{"forged"')),
          server.lines.join("\n"),
        );
      });
    }
  } finally {
    await Deno.remove(folder, { recursive: true });
  }
});

Deno.test("--log-format json: the board logs a live event stream once it has ended, with its whole duration", async () => {
  const folder = await Deno.makeTempDir({ prefix: "cli_test_" });
  try {
    await using server = await startScript(
      `${REPO}/message_board.ts`,
      [
        "--allow-net=127.0.0.1",
        "--allow-read=./data",
        "--allow-write=./data",
      ],
      ["--port", "0", "--log-format", "json"],
      { cwd: folder },
    );
    const events = await fetch(`${server.url}events`);
    assert.equal(events.status, 200);
    const reader = events.body!.getReader();
    await reader.read(); // the stream's first bytes
    const openMs = 300;
    await new Promise((resolve) => setTimeout(resolve, openMs));
    const isEvents = (line: string) => line.includes('"target":"/events"');
    assert.ok(!server.stdout.some(isEvents), "not logged while open");
    await reader.cancel();
    const entry = JSON.parse(await server.waitForLine(/"target":"\/events"/));
    assert.equal(entry.status, 200);
    assert.ok(entry.duration_ms >= openMs, `${entry.duration_ms} ms`);
  } finally {
    await Deno.remove(folder, { recursive: true });
  }
});
