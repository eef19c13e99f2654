/**
 * The servers the benchmark starts, the scenarios it runs, and the targets
 * the issues set.
 *
 * @module
 */

import { join } from "node:path";
import { SITE_FILES } from "./fixtures.ts";
import { postgresUnavailable } from "./postgres.ts";
import type { LaunchSpec } from "./processes.ts";
import {
  formatCount,
  formatLatency,
  formatRate,
  formatRatio,
  metricValue,
  type ScenarioResult,
  type TargetResult,
} from "./report.ts";

/** What a server needs to start: its port and the prepared data. */
export interface LaunchContext {
  port: number;
  /** Folder with our scripts (the repository root unless --servers says otherwise). */
  serversDir: string;
  /** Folder with the generated site files. */
  siteDir: string;
  /** A fresh, empty folder for this start (data files, nginx config). */
  workDir: string;
  /** JSON Lines messages the boards start from (read only: copy before writing). */
  seedFile?: string;
  /** The throwaway database's URL, for servers with `postgres: true`. */
  databaseUrl?: string;
}

/** A server the benchmark can start. */
export interface ServerDef {
  key: string;
  label: string;
  role: "ours" | "reference";
  /** Why it cannot run on this machine, or null when it can. */
  unavailable(serversDir: string): Promise<string | null>;
  /** Prepares what the server needs in `workDir` and says how to start it (once per instance). */
  launch(context: LaunchContext): Promise<LaunchSpec>;
  /** Processes started side by side, each on its own port, one wrk each. @default 1 */
  instances?: number;
  /** Runs on the benchmark's throwaway PostgreSQL, seeded before every start. */
  postgres?: boolean;
  /** Our message_board.ts (in any store): a post answers 303 once stored, and is counted. */
  ourBoard?: boolean;
}

/** A load to put on every server of a group. */
export interface ScenarioDef {
  id: string;
  title: string;
  /** How wrk drives it, for the table. */
  load: string;
  metric: "requests" | "bytes";
  servers: ServerDef[];
  path: string;
  connections: number;
  headers?: string[];
  /** An urlencoded form body to POST (through a generated wrk script) instead of a GET. */
  postBody?: string;
  /** The body length every GET must have (the generated file's size). */
  expectBytes?: number;
  /** Seconds before wrk counts a request as timed out. */
  timeout: number;
  /** Messages the board starts with. */
  boardMessages?: number;
  /** Restart the server on a fresh copy of its data before every run (posts change the data). */
  freshEachRun?: boolean;
}

/** Every server listens here only: a benchmark never opens a port to the network. */
const LOCAL = "127.0.0.1";
const REFERENCE_DIR = new URL("./reference/", import.meta.url).pathname;

/** The board's form as a browser posts it: one ordinary message. */
export const POST_BODY = new URLSearchParams({
  message:
    "Hello from the benchmark! A message of ordinary length, kept on disk.",
}).toString();

/**
 * The wrk script that sends `body` as a form POST. A static request: wrk
 * builds it once, so the load generator stays cheap.
 *
 * @example renderPostScript("message=hi") includes 'wrk.body = "message=hi"'
 */
export function renderPostScript(body: string): string {
  return [
    "-- Written by bench/run.ts: every request posts the board's form.",
    'wrk.method = "POST"',
    'wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"',
    // A JSON string is a valid Lua string literal for this ASCII body.
    `wrk.body = ${JSON.stringify(body)}`,
    "",
  ].join("\n");
}

/**
 * The status a server must give the scenario's request: 200 for a GET; for
 * a post, our board's 303 See Other, the textbook board's page (200).
 */
export function expectedStatus(
  scenario: ScenarioDef,
  server: ServerDef,
): number {
  return scenario.postBody !== undefined &&
      (server.role === "ours" || server.ourBoard)
    ? 303
    : 200;
}

/** Reports whether a program can be started (found on PATH and runs). */
async function canRun(command: string, args: string[]): Promise<boolean> {
  try {
    await new Deno.Command(command, { args, stdout: "null", stderr: "null" })
      .output();
    return true;
  } catch {
    return false;
  }
}

async function fileExists(path: string): Promise<boolean> {
  try {
    return (await Deno.stat(path)).isFile;
  } catch {
    return false;
  }
}

function needsPython(): Promise<string | null> {
  return canRun("python3", ["--version"]).then((ok) =>
    ok ? null : "python3 is not installed"
  );
}

/** Flags for one of our scripts: Deno's permissions, then the script's own. */
interface OurFlags {
  permissions: string[];
  args: string[];
}

/** One of our scripts, run by the same Deno as the runner with the README's narrow flags. */
function ourServer(
  script: string,
  flags: (context: LaunchContext) => Promise<OurFlags>,
  readyPath = "/",
): ServerDef {
  return {
    key: "ours",
    label: script,
    role: "ours",
    async unavailable(serversDir) {
      const path = join(serversDir, script);
      return await fileExists(path) ? null : `${path} does not exist yet`;
    },
    async launch(context) {
      const { port, serversDir } = context;
      const { permissions, args } = await flags(context);
      return {
        name: script,
        command: Deno.execPath(),
        args: [
          "run",
          ...permissions,
          join(serversDir, script),
          ...args,
          ...["--port", String(port), "--hostname", LOCAL, "--quiet"],
        ],
        readyUrl: `http://${LOCAL}:${port}${readyPath}`,
      };
    },
  };
}

export const OUR_TINY = ourServer(
  "server_tiny.ts",
  () => Promise.resolve({ permissions: [`--allow-net=${LOCAL}`], args: [] }),
);

export const OUR_FILES = ourServer(
  "server_files.ts",
  ({ siteDir }) =>
    Promise.resolve({
      permissions: [`--allow-net=${LOCAL}`, `--allow-read=${siteDir}`],
      args: ["--root", siteDir],
    }),
  `/${SITE_FILES.small.name}`,
);

export const OUR_BOARD: ServerDef = {
  ...ourServer("message_board.ts", async ({ workDir, seedFile }) => {
    const dataFile = join(workDir, "messages.jsonl");
    if (seedFile) await Deno.copyFile(seedFile, dataFile);
    return {
      permissions: [
        `--allow-net=${LOCAL}`,
        `--allow-read=${workDir}`,
        `--allow-write=${workDir}`,
      ],
      // A load test posts from one address: the per-client limits would answer 429.
      args: ["--data", dataFile, "--rate-limit", "off"],
    };
  }),
  ourBoard: true,
};

/**
 * Our board in file mode, as the baseline the PostgreSQL rows are compared with (a
 * "reference" in the tables only in that sense).
 */
export const OUR_BOARD_FILE_BASELINE: ServerDef = {
  ...OUR_BOARD,
  key: "board-file",
  label: "file store",
  role: "reference",
};

/**
 * Our board in PostgreSQL mode with the README's command (board_postgres.ts, its entry
 * point), `instances` processes on the one database.
 */
function ourPgBoard(instances: number): ServerDef {
  const board = ourServer("board_postgres.ts", ({ databaseUrl }) => {
    if (databaseUrl === undefined) {
      throw new Error("no database for a PostgreSQL board");
    }
    return Promise.resolve({
      permissions: [`--allow-net=${LOCAL}`, "--allow-env=DATABASE_URL,PG*"],
      args: ["--store", databaseUrl, "--rate-limit", "off"],
    });
  });
  return {
    ...board,
    key: `board-pg-${instances}`,
    ourBoard: true,
    label: `PostgreSQL, ${instances} process${instances > 1 ? "es" : ""}`,
    instances,
    postgres: true,
    async unavailable(serversDir) {
      return postgresUnavailable() ?? await board.unavailable(serversDir);
    },
    async launch(context) {
      // deno.json and deno.lock (the driver's exact version) are found from the working folder.
      return { ...await board.launch(context), cwd: context.serversDir };
    },
  };
}

export const OUR_BOARD_PG_1 = ourPgBoard(1);
export const OUR_BOARD_PG_2 = ourPgBoard(2);

export const TEXTBOOK_TINY: ServerDef = {
  key: "textbook-tiny",
  label: "tiny_socket_server.py",
  role: "reference",
  unavailable: needsPython,
  launch({ port }) {
    return Promise.resolve({
      name: "tiny_socket_server.py",
      command: "python3",
      args: [
        join(REFERENCE_DIR, "tiny_socket_server.py"),
        String(port),
        "--quiet",
      ],
      readyUrl: `http://${LOCAL}:${port}/`,
    });
  },
};

/**
 * nginx.conf for one run: one worker, sendfile on, no access log, every
 * path (pid, logs, temp folders) inside `workDir`, in the foreground.
 */
export function renderNginxConfig(
  port: number,
  root: string,
  workDir: string,
): string {
  const temp = (name: string) => join(workDir, name);
  return `# Written by bench/run.ts for one benchmark run.
worker_processes 1;
daemon off;
pid ${temp("nginx.pid")};
error_log ${temp("error.log")} warn;
events {
    worker_connections 1024;
}
http {
    sendfile on;
    tcp_nopush on;
    access_log off;
    default_type application/octet-stream;
    types {
        text/html html;
    }
    client_body_temp_path ${temp("client_body")};
    proxy_temp_path ${temp("proxy")};
    fastcgi_temp_path ${temp("fastcgi")};
    uwsgi_temp_path ${temp("uwsgi")};
    scgi_temp_path ${temp("scgi")};
    server {
        listen ${LOCAL}:${port};
        root ${root};
    }
}
`;
}

export const NGINX: ServerDef = {
  key: "nginx",
  label: "nginx",
  role: "reference",
  async unavailable() {
    return await canRun("nginx", ["-v"])
      ? null
      : "nginx is not installed (apt-get install nginx-light)";
  },
  async launch({ port, siteDir, workDir }) {
    const config = join(workDir, "nginx.conf");
    await Deno.writeTextFile(config, renderNginxConfig(port, siteDir, workDir));
    return {
      name: "nginx",
      command: "nginx",
      // -e: the error log before the config is read; -p: the prefix for relative paths.
      args: ["-e", join(workDir, "error.log"), "-p", workDir, "-c", config],
      readyUrl: `http://${LOCAL}:${port}/${SITE_FILES.small.name}`,
      memoryOf: "child",
    };
  },
};

export const PYTHON_HTTP_SERVER: ServerDef = {
  key: "python-http-server",
  label: "python3 -m http.server",
  role: "reference",
  unavailable: needsPython,
  launch({ port, siteDir }) {
    return Promise.resolve({
      name: "python3 -m http.server",
      command: "python3",
      args: [
        "-m",
        "http.server",
        String(port),
        "--bind",
        LOCAL,
        "--directory",
        siteDir,
      ],
      readyUrl: `http://${LOCAL}:${port}/${SITE_FILES.small.name}`,
    });
  },
};

function textbookBoard(saving: boolean): ServerDef {
  const label = saving ? "textbook board, saving" : "textbook board";
  return {
    key: saving ? "textbook-board-saving" : "textbook-board",
    label,
    role: "reference",
    unavailable: needsPython,
    launch({ port, workDir, seedFile }) {
      const args = [
        join(REFERENCE_DIR, "board_httpserver.py"),
        "--port",
        String(port),
        "--quiet",
      ];
      if (seedFile) args.push("--seed", seedFile);
      if (saving) args.push("--save", join(workDir, "messages.json"));
      return Promise.resolve({
        name: label,
        command: "python3",
        args,
        readyUrl: `http://${LOCAL}:${port}/`,
      });
    },
  };
}

export const TEXTBOOK_BOARD = textbookBoard(false);
export const TEXTBOOK_BOARD_SAVING = textbookBoard(true);

/** Board sizes the issue names: 1,000 and 100,000 stored messages. */
export const BOARD_SIZES = [1_000, 100_000] as const;

function boardScenarios(): ScenarioDef[] {
  const pages = BOARD_SIZES.map((size): ScenarioDef => ({
    id: `board-page-${size / 1000}k`,
    title: `Board page, ${size.toLocaleString("en-US")} stored`,
    load: "32 connections, keep-alive, GET /",
    metric: "requests",
    servers: [OUR_BOARD, TEXTBOOK_BOARD],
    path: "/",
    connections: 32,
    timeout: 10,
    boardMessages: size,
  }));
  const posts = BOARD_SIZES.map((size): ScenarioDef => ({
    id: `board-post-${size / 1000}k`,
    // Every post adds a message, so a run starts at this size and grows (the row says how far).
    title: `Board posts, from ${size.toLocaleString("en-US")} stored`,
    load: "32 connections, POST / message form",
    metric: "requests",
    // The saving textbook board rewrites its whole file per post: at 100,000 messages that is a
    // few posts a second, and measuring it would only add half a minute to every run.
    servers: size === 1_000
      ? [OUR_BOARD, TEXTBOOK_BOARD, TEXTBOOK_BOARD_SAVING]
      : [OUR_BOARD, TEXTBOOK_BOARD],
    path: "/",
    connections: 32,
    postBody: POST_BODY,
    timeout: 10,
    boardMessages: size,
    freshEachRun: true,
  }));
  // The PostgreSQL store beside the file store, at 1,000 stored. Two processes share the 32
  // connections: one wrk each, 16 connections, at the same time (see combineWrkResults).
  const stores = [OUR_BOARD_FILE_BASELINE, OUR_BOARD_PG_1, OUR_BOARD_PG_2];
  const pg: ScenarioDef[] = [
    {
      id: "board-pg-page",
      title: "Board page, 1,000 stored, PostgreSQL",
      load: "32 connections, keep-alive, GET / (2 processes: 16 each)",
      metric: "requests",
      servers: stores,
      path: "/",
      connections: 32,
      timeout: 10,
      boardMessages: 1_000,
    },
    {
      id: "board-pg-post",
      title: "Board posts, from 1,000 stored, PostgreSQL",
      load: "32 connections, POST / message form (2 processes: 16 each)",
      metric: "requests",
      servers: stores,
      path: "/",
      connections: 32,
      postBody: POST_BODY,
      timeout: 10,
      boardMessages: 1_000,
      freshEachRun: true,
    },
  ];
  return [...pages, ...posts, ...pg];
}

/** Every scenario, in the order they run. */
export const SCENARIOS: ScenarioDef[] = [
  {
    id: "tiny",
    title: "Tiny, new connection per request",
    load: "32 connections, Connection: close",
    metric: "requests",
    servers: [OUR_TINY, TEXTBOOK_TINY],
    path: "/",
    connections: 32,
    headers: ["Connection: close"],
    timeout: 2,
  },
  {
    id: "files-small",
    title: "Files, 500 B page",
    load: "32 connections, keep-alive",
    metric: "requests",
    servers: [OUR_FILES, NGINX, PYTHON_HTTP_SERVER],
    path: `/${SITE_FILES.small.name}`,
    expectBytes: SITE_FILES.small.size,
    connections: 32,
    timeout: 2,
  },
  {
    id: "files-100kb",
    title: "Files, 100 KiB file",
    load: "32 connections, keep-alive",
    metric: "requests",
    servers: [OUR_FILES, NGINX, PYTHON_HTTP_SERVER],
    path: `/${SITE_FILES.medium.name}`,
    expectBytes: SITE_FILES.medium.size,
    connections: 32,
    timeout: 5,
  },
  {
    id: "files-100mb",
    title: "Files, 100 MiB file",
    load: "4 connections, keep-alive",
    metric: "bytes",
    servers: [OUR_FILES, NGINX, PYTHON_HTTP_SERVER],
    path: `/${SITE_FILES.large.name}`,
    expectBytes: SITE_FILES.large.size,
    connections: 4,
    timeout: 60,
  },
  ...boardScenarios(),
];

/**
 * Picks scenarios by id or id prefix ("files" selects every files-* scenario).
 * Throws on a name that matches nothing, listing the valid ids.
 *
 * @example selectScenarios(SCENARIOS, ["tiny", "board-post"]).map((s) => s.id)
 *   // => ["tiny", "board-post-1k", "board-post-100k"]
 */
export function selectScenarios(
  all: ScenarioDef[],
  only: string[],
): ScenarioDef[] {
  if (only.length === 0) return all;
  for (const name of only) {
    if (!all.some((s) => s.id === name || s.id.startsWith(`${name}-`))) {
      throw new Error(
        `unknown scenario "${name}"; choose from: ${
          all.map((s) => s.id).join(", ")
        }`,
      );
    }
  }
  return all.filter((s) =>
    only.some((name) => s.id === name || s.id.startsWith(`${name}-`))
  );
}

/** Target ratios drawn on the chart, by "scenario title|reference label". */
export function chartTargets(): Record<string, number> {
  const byId = (id: string) => SCENARIOS.find((s) => s.id === id)!.title;
  return {
    [`${byId("files-small")}|nginx`]: 1,
    [`${byId("files-100mb")}|nginx`]: 0.8,
    [`${byId("board-post-1k")}|textbook board`]: 3,
  };
}

/**
 * Checks the speed targets of issues #3 and #4 against a run's results.
 * A target whose servers were not all measured reads "not measured".
 */
export function checkTargets(scenarios: ScenarioResult[]): TargetResult[] {
  const find = (id: string, key: string) => {
    const scenario = scenarios.find((s) => s.id === id);
    const result = scenario?.results.find((r) => r.key === key);
    return scenario && result ? { scenario, result } : null;
  };
  const figure = (id: string, key: string) => {
    const found = find(id, key);
    return found ? metricValue(found.scenario, found.result) : null;
  };
  const reqs = (value: number) => `${formatCount(value)}/s`;
  const mibs = (value: number) => `${formatRate(value)} MiB/s`;
  const targets: TargetResult[] = [];
  /** ours ÷ base must be at least `min`. */
  const atLeast = (
    source: string,
    goal: string,
    [ours, base]: (number | null)[],
    min: number,
    unit: (value: number) => string,
  ) => {
    if (ours === null || base === null || base === 0) {
      targets.push({ source, goal, measured: "–", met: null });
    } else {
      const ratio = ours / base;
      const measured = `${formatRatio(ratio)} (${unit(ours)} vs ${unit(base)})`;
      targets.push({ source, goal, measured, met: ratio >= min });
    }
  };
  /**
   * The cost (1 / rate) of our board at 100,000 messages must be at most
   * `max` times its cost at 1,000; the median latencies are shown beside.
   */
  const costGrowth = (
    source: string,
    goal: string,
    kind: "post" | "page",
    max: number,
  ) => {
    const [small, large] = [
      find(`board-${kind}-1k`, "ours"),
      find(`board-${kind}-100k`, "ours"),
    ];
    if (small === null || large === null || large.result.requestsPerSec === 0) {
      targets.push({ source, goal, measured: "–", met: null });
      return;
    }
    const growth = small.result.requestsPerSec / large.result.requestsPerSec;
    const p50 = [small, large].map(({ result }) => formatLatency(result.p50Ms));
    const measured =
      `${formatRatio(growth)} (${
        reqs(small.result.requestsPerSec)
      } at 1,000, ` +
      `${reqs(large.result.requestsPerSec)} at 100,000; p50 ${p50[0]} → ${
        p50[1]
      })`;
    targets.push({ source, goal, measured, met: growth <= max });
  };

  atLeast(
    "#3",
    "500 B page: requests/s at least 1× nginx (one worker)",
    [figure("files-small", "ours"), figure("files-small", "nginx")],
    1,
    reqs,
  );
  atLeast(
    "#3",
    "100 MiB file: throughput at least 0.8× nginx",
    [figure("files-100mb", "ours"), figure("files-100mb", "nginx")],
    0.8,
    mibs,
  );
  for (const size of ["1k", "100k"]) {
    const stored = size === "1k" ? "1,000" : "100,000";
    atLeast(
      "#4",
      `Durable posts/s from ${stored} stored at least 3× the textbook board's in-memory rate from 1,000`,
      [
        figure(`board-post-${size}`, "ours"),
        figure("board-post-1k", "textbook-board"),
      ],
      3,
      reqs,
    );
  }
  costGrowth(
    "#4",
    "Post cost from 100,000 stored at most 1.5× the cost from 1,000",
    "post",
    1.5,
  );
  costGrowth(
    "#4",
    "Page cost at 100,000 stored at most 1.5× the cost at 1,000",
    "page",
    1.5,
  );
  return targets;
}
