/**
 * The servers the benchmark starts: ours, the runtime floors we wrote in bench/reference/, and
 * the peers a user would pick instead. Each says how to start it on a port of 127.0.0.1 and, when
 * it may be missing here, why it cannot run (one line, then it is skipped).
 *
 * @module
 */

import { join } from "node:path";
import { findPgBin } from "../tests/_postgres.ts";
import { hasCommand, REPO_ROOT, runProcess } from "../tests/_process.ts";

/** Every server listens here only: a benchmark never opens a port to the network. */
export const LOCAL = "127.0.0.1";

/** What a server needs to start. */
export interface LaunchContext {
  port: number;
  /** The generated site files. */
  siteDir: string;
  /** A fresh, empty folder for this start (data files, configs). */
  workDir: string;
  /** Where the run installs the Node peers (a temporary folder). */
  toolsDir: string;
  /** JSON Lines messages the boards start from (read only: copy before writing). */
  seedFile?: string;
  /** The throwaway PostgreSQL's URL. */
  databaseUrl?: string;
}

/** How to start one server process. */
export interface LaunchSpec {
  command: string;
  args: string[];
  cwd?: string;
  /** Added to the runner's environment. */
  env?: Record<string, string>;
  /** nginx: the memory is its one worker's, not the master's. */
  memoryOfChild?: boolean;
}

/** A server the benchmark can start. */
export interface ServerDef {
  /** "ours" for ours; targets name the others by key. */
  key: string;
  label: string;
  /** Ours; a floor (the runtime doing the least, written by us); or a peer users pick instead. */
  role: "ours" | "floor" | "peer";
  /** Why it cannot run on this machine; null when it can. @default always available */
  unavailable?: (toolsDir: string) => string | null | Promise<string | null>;
  launch(context: LaunchContext): LaunchSpec | Promise<LaunchSpec>;
  /** Runs on the benchmark's throwaway PostgreSQL, seeded before every start. */
  postgres?: boolean;
  /** Our message_board.ts (any store): a post answers 303 once stored, and is counted. */
  ourBoard?: boolean;
}

const REFERENCE = new URL("./reference/", import.meta.url).pathname;
const NET = `--allow-net=${LOCAL}`;
const listen = (port: number) => ["--port", String(port), "--hostname", LOCAL];

/** A Deno script run by the runner's own Deno with `permissions`. */
const deno = (permissions: string[], script: string, args: string[]) => ({
  command: Deno.execPath(),
  args: ["run", ...permissions, script, ...args],
});

/** A Deno script that serves the site folder and may read nothing else. */
function denoSite(script: string, extra: string[] = []) {
  return ({ port, siteDir }: LaunchContext) =>
    deno([NET, `--allow-read=${siteDir}`], script, [
      ...["--root", siteDir, ...listen(port), ...extra],
    ]);
}

/** An `unavailable` for a program that must be on PATH. */
function needs(program: string, hint = `apt-get install ${program}`) {
  return async () =>
    await hasCommand(program) ? null : `${program} is not installed (${hint})`;
}

// Ours, with the README's narrow flags.

export const OUR_TINY: ServerDef = {
  ...{ key: "ours", label: "server_tiny.ts", role: "ours" },
  launch: ({ port }) =>
    deno([NET], `${REPO_ROOT}server_tiny.ts`, [...listen(port), "--quiet"]),
};

export const OUR_FILES: ServerDef = {
  ...{ key: "ours", label: "server_files.ts", role: "ours" },
  launch: denoSite(`${REPO_ROOT}server_files.ts`, ["--quiet"]),
};

/** Per-client rate limits off: every wrk connection comes from 127.0.0.1. */
const BOARD_ARGS = ["--rate-limit", "off", "--quiet"];

export const OUR_BOARD: ServerDef = {
  ...{ key: "ours", label: "message_board.ts", role: "ours" },
  ourBoard: true,
  async launch({ port, workDir, seedFile }) {
    const data = join(workDir, "messages.jsonl");
    if (seedFile) await Deno.copyFile(seedFile, data);
    const access = [`--allow-read=${workDir}`, `--allow-write=${workDir}`];
    return deno([NET, ...access], `${REPO_ROOT}message_board.ts`, [
      ...["--data", data, ...listen(port), ...BOARD_ARGS],
    ]);
  },
};

/** Our board on its file store: the yardstick of the PostgreSQL rows. */
export const BOARD_FILE_STORE: ServerDef = {
  ...OUR_BOARD,
  ...{ key: "board-file", label: "file store", role: "peer" },
};

/** Our board on PostgreSQL (board_postgres.ts, as the README runs it). */
export const BOARD_POSTGRES: ServerDef = {
  ...{ key: "ours", label: "PostgreSQL store", role: "ours" },
  ...{ ourBoard: true, postgres: true },
  unavailable: () =>
    findPgBin()
      ? null
      : "PostgreSQL is not installed (apt-get install postgresql)",
  launch: ({ port, databaseUrl }) =>
    deno(
      [NET, "--allow-env=DATABASE_URL,PG*"],
      `${REPO_ROOT}board_postgres.ts`,
      [
        ...["--store", databaseUrl!, ...listen(port), ...BOARD_ARGS],
      ],
    ),
};

// Floors: the runtime doing the least, in bench/reference/.

export const TINY_DENO_LOOP: ServerDef = {
  ...{ key: "deno-listen-loop", label: "bare Deno.listen loop", role: "floor" },
  launch: ({ port }) =>
    deno([NET], `${REFERENCE}tiny_listen_loop.ts`, listen(port)),
};

export const TINY_NODE_LOOP: ServerDef = {
  ...{ key: "node-net-loop", label: "bare node:net loop", role: "floor" },
  unavailable: needs("node", "apt-get install nodejs"),
  launch: ({ port }) => ({
    command: "node",
    args: [`${REFERENCE}tiny_net_loop.mjs`, ...listen(port)],
  }),
};

export const FILES_FLOOR: ServerDef = {
  ...{ key: "deno-serve-floor", label: "Deno.serve floor", role: "floor" },
  launch: denoSite(`${REFERENCE}files_floor.ts`),
};

export const FILES_BIG_FLOOR: ServerDef = {
  key: "deno-serve-big-floor",
  label: "Deno.serve streaming from memory",
  role: "floor",
  launch: denoSite(`${REFERENCE}files_big_floor.ts`),
};

// Native peers: nginx, Caddy, lighttpd, Python.

/** What a peer's config file names: its port, the site's folder, the start's folder. */
export type ConfigContext = Pick<LaunchContext, "port" | "siteDir" | "workDir">;

/** nginx.conf: one worker in the foreground, sendfile, no access log, paths in `workDir`; gzip 1 if asked. */
export function renderNginxConfig(context: ConfigContext, gzip: boolean) {
  const { port, siteDir, workDir } = context;
  const temp = ["client_body", "proxy", "fastcgi", "uwsgi", "scgi"]
    .map((name) => `    ${name}_temp_path ${workDir}/${name};\n`);
  const compress = gzip
    ? "    gzip on;\n    gzip_comp_level 1;\n    gzip_vary on;\n" +
      "    gzip_types text/css text/javascript application/json;\n"
    : "";
  return `# Written by bench/servers.ts for one benchmark run.
worker_processes 1;
daemon off;
pid ${workDir}/nginx.pid;
error_log ${workDir}/error.log warn;
events { worker_connections 1024; }
http {
    sendfile on;
    tcp_nopush on;
    access_log off;
    default_type application/octet-stream;
    types { text/html html; text/css css; }
${compress}${
    temp.join("")
  }    server { listen ${LOCAL}:${port}; root ${siteDir}; }
}
`;
}

function nginx(gzip: boolean): ServerDef {
  return {
    key: gzip ? "nginx-gzip" : "nginx",
    label: gzip ? "nginx, gzip on" : "nginx",
    role: "peer",
    unavailable: needs("nginx", "apt-get install nginx-light"),
    async launch(context) {
      const { workDir } = context;
      const config = join(workDir, "nginx.conf");
      await Deno.writeTextFile(config, renderNginxConfig(context, gzip));
      // -e: the error log before the config is read; -p: the prefix.
      const args = ["-e", `${workDir}/error.log`, "-p", workDir, "-c", config];
      return { command: "nginx", args, memoryOfChild: true };
    },
  };
}

export const NGINX = nginx(false);
export const NGINX_GZIP = nginx(true);

/** Caddy's `file-server` command on one core, as nginx's one worker. */
export const CADDY: ServerDef = {
  ...{ key: "caddy", label: "Caddy", role: "peer" },
  unavailable: needs("caddy"),
  launch: ({ port, siteDir, workDir }) => ({
    command: "caddy",
    args: ["file-server", "--root", siteDir, "--listen", `${LOCAL}:${port}`],
    // HOME and XDG_DATA_HOME keep its storage folder in the start's folder.
    env: { GOMAXPROCS: "1", HOME: workDir, XDG_DATA_HOME: workDir },
  }),
};

/** lighttpd.conf for one run: one process (lighttpd's default), no access log. */
export function renderLighttpdConfig(context: ConfigContext): string {
  const { port, siteDir, workDir } = context;
  return [
    `server.document-root = "${siteDir}"`,
    `server.bind = "${LOCAL}"`,
    `server.port = ${port}`,
    `server.errorlog = "${workDir}/error.log"`,
    'mimetype.assign = ( ".html" => "text/html; charset=utf-8", ' +
    '".css" => "text/css; charset=utf-8", "" => "application/octet-stream" )',
    "",
  ].join("\n");
}

export const LIGHTTPD: ServerDef = {
  ...{ key: "lighttpd", label: "lighttpd", role: "peer" },
  unavailable: needs("lighttpd"),
  async launch(context) {
    const config = join(context.workDir, "lighttpd.conf");
    await Deno.writeTextFile(config, renderLighttpdConfig(context));
    return { command: "lighttpd", args: ["-D", "-f", config] };
  },
};

export const PYTHON_HTTP_SERVER: ServerDef = {
  key: "python-http-server",
  label: "python3 -m http.server",
  role: "peer",
  unavailable: needs("python3"),
  launch: ({ port, siteDir }) => ({
    command: "python3",
    args: ["-m", "http.server", String(port), "--bind", LOCAL]
      .concat("--directory", siteDir),
  }),
};

// JavaScript peers: Hono and std on Deno; serve, http-server and sirv on Node.
// Fairness: every server runs with its defaults but its request log off (ours --quiet, serve
// --no-request-logging, http-server -s, sirv --quiet, std --quiet, nginx access_log off; Hono,
// Caddy, lighttpd and the floor log nothing by default; python3 -m http.server cannot be
// silenced), since what a log costs depends on where its output goes.

/** Hono's serveStatic on Deno; the script pins `npm:hono` to an exact version. */
export const HONO: ServerDef = {
  ...{ key: "hono", label: "Hono serveStatic", role: "peer" },
  launch: ({ port, siteDir }) => ({
    ...deno(
      [NET, "--allow-read=.", "--no-lock"],
      `${REFERENCE}hono_static.ts`,
      listen(port),
    ),
    // Hono's root is relative to the working folder.
    cwd: siteDir,
  }),
};

const STD_MODULE = "jsr:@std/http@1/file-server";

/** std's file server, which Deno fetches from JSR (not reachable from every machine). */
export const STD_FILE_SERVER: ServerDef = {
  ...{ key: "std-file-server", label: "std file_server", role: "peer" },
  async unavailable() {
    const args = ["cache", "--quiet", "--no-lock", "--no-config", STD_MODULE];
    const { code } = await runProcess(Deno.execPath(), args);
    return code
      ? `${STD_MODULE} could not be fetched (JSR is not reachable)`
      : null;
  },
  launch: ({ port, siteDir }) =>
    deno([NET, `--allow-read=${siteDir}`, "--no-lock"], STD_MODULE, [
      ...[siteDir, "--host", LOCAL, "--port", String(port), "--quiet"],
    ]),
};

/** The Node file servers, at the exact versions the bench installs. */
export const NODE_PEER_VERSIONS = {
  serve: "14.2.7",
  "http-server": "14.1.1",
  "sirv-cli": "3.0.1",
} as const;

const nodeInstalls = new Map<string, Promise<string | null>>();
const NPM_TIMEOUT_MS = 5 * 60_000;

/** Installs the Node peers with npm into `toolsDir` (never the repository), once; null, or why not. */
function installNodePeers(toolsDir: string): Promise<string | null> {
  const packages = Object.entries(NODE_PEER_VERSIONS).map((p) => p.join("@"));
  const install = async () => {
    if (!await hasCommand("npm")) return "node and npm are not installed";
    console.error(`installing the Node peers with npm into ${toolsDir}`);
    const args = ["install", "--prefix", toolsDir, "--no-audit", "--no-fund"];
    args.push("--no-save", "--loglevel=error", ...packages);
    const options = { timeoutMs: NPM_TIMEOUT_MS };
    const { code, stderr } = await runProcess("npm", args, options);
    const why = stderr.trim().split("\n")[0];
    return code ? `npm install ${packages.join(" ")} failed: ${why}` : null;
  };
  if (!nodeInstalls.has(toolsDir)) nodeInstalls.set(toolsDir, install());
  return nodeInstalls.get(toolsDir)!;
}

/** A Node file server from npm, run through its bin script. */
function nodePeer(
  name: keyof typeof NODE_PEER_VERSIONS,
  bin: string,
  args: (context: LaunchContext) => string[],
): ServerDef {
  return {
    ...{ key: bin, label: `${name} ${NODE_PEER_VERSIONS[name]}`, role: "peer" },
    unavailable: installNodePeers,
    launch: (context) => ({
      command: join(context.toolsDir, "node_modules", ".bin", bin),
      args: args(context),
    }),
  };
}

export const SERVE = nodePeer(
  "serve",
  "serve",
  ({ port, siteDir, workDir }) => {
    // serve redirects /small.html to /small by default (cleanUrls); the others serve it.
    const config = join(workDir, "serve.json");
    Deno.writeTextFileSync(config, JSON.stringify({ cleanUrls: false }));
    return [siteDir, "--listen", `tcp://${LOCAL}:${port}`, "--config", config]
      .concat("--no-clipboard", "--no-request-logging");
  },
);

export const HTTP_SERVER = nodePeer("http-server", "http-server", (c) => [
  ...[c.siteDir, "-a", LOCAL, "-p", String(c.port), "-s"],
]);

export const SIRV = nodePeer("sirv-cli", "sirv", (c) => [
  ...[c.siteDir, "--host", LOCAL, "--port", String(c.port), "--quiet"],
]);

// The textbook's programs, as rewritten in bench/reference/.

export const TEXTBOOK_TINY: ServerDef = {
  ...{ key: "textbook-tiny", label: "tiny_socket_server.py", role: "peer" },
  unavailable: needs("python3"),
  launch: ({ port }) => ({
    command: "python3",
    args: [`${REFERENCE}tiny_socket_server.py`, String(port), "--quiet"],
  }),
};

function textbookBoard(saving: boolean): ServerDef {
  return {
    key: saving ? "textbook-board-saving" : "textbook-board",
    label: saving ? "textbook board, saving" : "textbook board",
    role: "peer",
    unavailable: needs("python3"),
    launch: ({ port, workDir, seedFile }) => {
      const args = [`${REFERENCE}board_httpserver.py`, "--port", String(port)];
      if (seedFile) args.push("--seed", seedFile);
      if (saving) args.push("--save", join(workDir, "messages.json"));
      return { command: "python3", args: [...args, "--quiet"] };
    },
  };
}

export const TEXTBOOK_BOARD = textbookBoard(false);
export const TEXTBOOK_BOARD_SAVING = textbookBoard(true);
