/**
 * The servers the benchmark starts: ours, the runtime floors we wrote in
 * bench/reference/, and the peers a user would pick instead (nginx, Caddy,
 * lighttpd, Python, Hono, serve, http-server, sirv, std, the textbook's
 * programs). Each says why it cannot run here (one line, then it is skipped)
 * and how to start it on a port of 127.0.0.1.
 *
 * @module
 */

import { join } from "node:path";
import { SITE_FILES } from "./fixtures.ts";
import { postgresUnavailable } from "./postgres.ts";
import type { LaunchSpec } from "./processes.ts";

/** What a server needs to start: its port and the prepared data. */
export interface LaunchContext {
  port: number;
  /** Folder with our scripts (the repository root unless --servers says otherwise). */
  serversDir: string;
  /** Folder with the generated site files. */
  siteDir: string;
  /** A fresh, empty folder for this start (data files, configs). */
  workDir: string;
  /** Where the run installs the Node peers (a temporary folder, never the repository). */
  toolsDir: string;
  /** JSON Lines messages the boards start from (read only: copy before writing). */
  seedFile?: string;
  /** The throwaway database's URL, for servers with `postgres: true`. */
  databaseUrl?: string;
}

/** What `unavailable` may look at. */
export type ProbeContext = Pick<LaunchContext, "serversDir" | "toolsDir">;

/** A server the benchmark can start. */
export interface ServerDef {
  key: string;
  label: string;
  /** Ours; a floor (the runtime doing the least, written by us); or a peer users pick instead. */
  role: "ours" | "floor" | "peer";
  /** A JavaScript peer (for the target against the fastest of them). */
  javascript?: boolean;
  /** Why it cannot run on this machine, or null when it can. */
  unavailable(probe: ProbeContext): Promise<string | null>;
  /** Prepares what the server needs in `workDir` and says how to start it (once per instance). */
  launch(context: LaunchContext): Promise<LaunchSpec>;
  /** Processes started side by side, each on its own port, one wrk each. @default 1 */
  instances?: number;
  /** Runs on the benchmark's throwaway PostgreSQL, seeded before every start. */
  postgres?: boolean;
  /** Our message_board.ts (in any store): a post answers 303 once stored, and is counted. */
  ourBoard?: boolean;
}

/** Every server listens here only: a benchmark never opens a port to the network. */
export const LOCAL = "127.0.0.1";
const REFERENCE_DIR = new URL("./reference/", import.meta.url).pathname;

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

/** An `unavailable` that checks one program, with the line to print when it is missing. */
function needs(command: string, args: string[], missing: string) {
  return async () => (await canRun(command, args) ? null : missing);
}

const needsPython = needs(
  "python3",
  ["--version"],
  "python3 is not installed",
);

const readyAt = (port: number, path = `/${SITE_FILES.small.name}`) =>
  `http://${LOCAL}:${port}${path}`;

// ---------------------------------------------------------------------------
// Ours.

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
    async unavailable({ serversDir }) {
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
        readyUrl: readyAt(port, readyPath),
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

/**
 * The board's flags for a load test: per-client rate limits off, as the durability tests
 * have them (every wrk connection comes from 127.0.0.1, which a limit would throttle).
 */
const BOARD_LOAD_ARGS = ["--rate-limit", "off"];

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
      args: ["--data", dataFile, ...BOARD_LOAD_ARGS],
    };
  }),
  ourBoard: true,
};

/** Our board in file mode, as the baseline the PostgreSQL rows are compared with. */
export const OUR_BOARD_FILE_BASELINE: ServerDef = {
  ...OUR_BOARD,
  key: "board-file",
  label: "file store",
  role: "peer",
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
      args: ["--store", databaseUrl, ...BOARD_LOAD_ARGS],
    });
  });
  return {
    ...board,
    key: `board-pg-${instances}`,
    ourBoard: true,
    label: `PostgreSQL, ${instances} process${instances > 1 ? "es" : ""}`,
    instances,
    postgres: true,
    async unavailable(probe) {
      return postgresUnavailable() ?? await board.unavailable(probe);
    },
  };
}

export const OUR_BOARD_PG_1 = ourPgBoard(1);
export const OUR_BOARD_PG_2 = ourPgBoard(2);

// ---------------------------------------------------------------------------
// Floors: the runtime doing the least, in bench/reference/.

/** A Deno script of bench/reference/ (always there, so never unavailable). */
function denoFloor(
  key: string,
  label: string,
  script: string,
  permissions: (context: LaunchContext) => string[],
  args: (context: LaunchContext) => string[] = () => [],
): ServerDef {
  return {
    key,
    label,
    role: "floor",
    unavailable: () => Promise.resolve(null),
    launch(context) {
      return Promise.resolve({
        name: label,
        command: Deno.execPath(),
        args: [
          "run",
          ...permissions(context),
          join(REFERENCE_DIR, script),
          ...args(context),
          ...["--port", String(context.port), "--hostname", LOCAL],
        ],
        readyUrl: readyAt(context.port, "/"),
      });
    },
  };
}

export const TINY_DENO_LOOP = denoFloor(
  "deno-listen-loop",
  "bare Deno.listen loop",
  "tiny_listen_loop.ts",
  () => [`--allow-net=${LOCAL}`],
);

export const TINY_NODE_LOOP: ServerDef = {
  key: "node-net-loop",
  label: "bare node:net loop",
  role: "floor",
  unavailable: needs("node", ["--version"], "node is not installed"),
  launch({ port }) {
    return Promise.resolve({
      name: "bare node:net loop",
      command: "node",
      args: [
        join(REFERENCE_DIR, "tiny_net_loop.mjs"),
        ...["--port", String(port), "--hostname", LOCAL],
      ],
      readyUrl: readyAt(port, "/"),
    });
  },
};

export const FILES_FLOOR = denoFloor(
  "deno-serve-floor",
  "Deno.serve floor",
  "files_floor.ts",
  ({ siteDir }) => [`--allow-net=${LOCAL}`, `--allow-read=${siteDir}`],
  ({ siteDir }) => ["--root", siteDir],
);

// ---------------------------------------------------------------------------
// Native peers: nginx, Caddy, lighttpd, Python.

/**
 * nginx.conf for one run: one worker, sendfile on, no access log, every path (pid, logs,
 * temp folders) inside `workDir`, in the foreground. With `gzip`, gzip on at level 1 for
 * text types (nginx compresses at every request).
 */
export function renderNginxConfig(
  port: number,
  root: string,
  workDir: string,
  { gzip = false } = {},
): string {
  const temp = (name: string) => join(workDir, name);
  const compression = gzip
    ? `
    gzip on;
    gzip_comp_level 1;
    gzip_types text/css text/javascript application/json;
    gzip_vary on;`
    : "";
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
        text/css css;
    }${compression}
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

function nginx(gzip: boolean): ServerDef {
  return {
    key: gzip ? "nginx-gzip" : "nginx",
    label: gzip ? "nginx, gzip on" : "nginx",
    role: "peer",
    unavailable: needs(
      "nginx",
      ["-v"],
      "nginx is not installed (apt-get install nginx-light)",
    ),
    async launch({ port, siteDir, workDir }) {
      const config = join(workDir, "nginx.conf");
      await Deno.writeTextFile(
        config,
        renderNginxConfig(port, siteDir, workDir, { gzip }),
      );
      return {
        name: "nginx",
        command: "nginx",
        // -e: the error log before the config is read; -p: the prefix for relative paths.
        args: ["-e", join(workDir, "error.log"), "-p", workDir, "-c", config],
        readyUrl: readyAt(port),
        memoryOf: "child",
      };
    },
  };
}

export const NGINX = nginx(false);
export const NGINX_GZIP = nginx(true);

/**
 * The Caddyfile for `encode`: the same file server as `caddy file-server`, with gzip at
 * level 1 like nginx's (Caddy 2.6's `file-server` command has no flag for it).
 */
export function renderCaddyfile(port: number, root: string): string {
  return `# Written by bench/run.ts for one benchmark run.
{
\tadmin off
\tauto_https off
}
http://${LOCAL}:${port} {
\troot * ${root}
\tencode {
\t\tgzip 1
\t}
\tfile_server
}
`;
}

function caddy(encode: boolean): ServerDef {
  const label = encode ? "Caddy, encode gzip" : "Caddy";
  return {
    key: encode ? "caddy-encode" : "caddy",
    label,
    role: "peer",
    unavailable: needs(
      "caddy",
      ["version"],
      "caddy is not installed (apt-get install caddy)",
    ),
    async launch({ port, siteDir, workDir }) {
      let args = [
        "file-server",
        "--root",
        siteDir,
        "--listen",
        readyAt(port, "").slice(7),
      ];
      if (encode) {
        const config = join(workDir, "Caddyfile");
        await Deno.writeTextFile(config, renderCaddyfile(port, siteDir));
        args = ["run", "--config", config, "--adapter", "caddyfile"];
      }
      return {
        name: label,
        command: "caddy",
        args,
        // One core, as nginx's one worker; HOME keeps its storage folder out of the real one.
        env: { GOMAXPROCS: "1", HOME: workDir, XDG_DATA_HOME: workDir },
        readyUrl: readyAt(port),
      };
    },
  };
}

export const CADDY = caddy(false);
export const CADDY_ENCODE = caddy(true);

/** lighttpd.conf for one run: one process (lighttpd's default), no access log. */
export function renderLighttpdConfig(
  port: number,
  root: string,
  workDir: string,
  { deflate = false } = {},
): string {
  const lines = [
    "# Written by bench/run.ts for one benchmark run.",
    `server.document-root = "${root}"`,
    `server.bind = "${LOCAL}"`,
    `server.port = ${port}`,
    `server.errorlog = "${join(workDir, "error.log")}"`,
    'mimetype.assign = ( ".html" => "text/html; charset=utf-8", ' +
    '".css" => "text/css; charset=utf-8", "" => "application/octet-stream" )',
  ];
  if (deflate) {
    lines.push(
      'server.modules = ( "mod_deflate" )',
      'deflate.mimetypes = ( "text/" )',
      'deflate.allowed-encodings = ( "br", "gzip" )',
      "deflate.compression-level = 1",
    );
  }
  return lines.join("\n") + "\n";
}

const MOD_DEFLATE = "/usr/lib/lighttpd/mod_deflate.so";

function lighttpd(deflate: boolean): ServerDef {
  const label = deflate ? "lighttpd, mod_deflate" : "lighttpd";
  const installed = needs(
    "lighttpd",
    ["-v"],
    "lighttpd is not installed (apt-get install lighttpd)",
  );
  return {
    key: deflate ? "lighttpd-deflate" : "lighttpd",
    label,
    role: "peer",
    async unavailable() {
      const missing = await installed();
      if (missing || !deflate) return missing;
      return await fileExists(MOD_DEFLATE)
        ? null
        : "mod_deflate is not installed (apt-get install lighttpd-mod-deflate)";
    },
    async launch({ port, siteDir, workDir }) {
      const config = join(workDir, "lighttpd.conf");
      await Deno.writeTextFile(
        config,
        renderLighttpdConfig(port, siteDir, workDir, { deflate }),
      );
      return {
        name: label,
        command: "lighttpd",
        args: ["-D", "-f", config],
        readyUrl: readyAt(port),
      };
    },
  };
}

export const LIGHTTPD = lighttpd(false);
export const LIGHTTPD_DEFLATE = lighttpd(true);

export const PYTHON_HTTP_SERVER: ServerDef = {
  key: "python-http-server",
  label: "python3 -m http.server",
  role: "peer",
  unavailable: needsPython,
  launch({ port, siteDir }) {
    return Promise.resolve({
      name: "python3 -m http.server",
      command: "python3",
      args: [
        ...["-m", "http.server", String(port)],
        ...["--bind", LOCAL, "--directory", siteDir],
      ],
      readyUrl: readyAt(port),
    });
  },
};

// ---------------------------------------------------------------------------
// JavaScript peers: Hono and std on Deno; serve, http-server and sirv on Node.

/** Hono's serveStatic on Deno; the script pins `npm:hono` to an exact version. */
export const HONO: ServerDef = {
  key: "hono",
  label: "Hono serveStatic",
  role: "peer",
  javascript: true,
  unavailable: () => Promise.resolve(null),
  launch({ port, siteDir }) {
    return Promise.resolve({
      name: "Hono serveStatic",
      command: Deno.execPath(),
      args: [
        ...["run", `--allow-net=${LOCAL}`, "--allow-read=.", "--no-lock"],
        join(REFERENCE_DIR, "hono_static.ts"),
        ...["--port", String(port), "--hostname", LOCAL],
      ],
      // Hono's root is relative to the working folder.
      cwd: siteDir,
      readyUrl: readyAt(port),
    });
  },
};

/** std's file server, when JSR can be reached (it cannot from some machines). */
const STD_FILE_SERVER_MODULE = "jsr:@std/http@1/file-server";

export const STD_FILE_SERVER: ServerDef = {
  key: "std-file-server",
  label: "std file_server",
  role: "peer",
  javascript: true,
  unavailable: memoize(async () => {
    const { code } = await new Deno.Command(Deno.execPath(), {
      args: ["cache", "--quiet", "--no-lock", STD_FILE_SERVER_MODULE],
      cwd: "/",
      stdout: "null",
      stderr: "null",
    }).output();
    return code === 0
      ? null
      : `${STD_FILE_SERVER_MODULE} could not be fetched (JSR not reachable)`;
  }),
  launch({ port, siteDir }) {
    return Promise.resolve({
      name: "std file_server",
      command: Deno.execPath(),
      args: [
        ...[
          "run",
          `--allow-net=${LOCAL}`,
          `--allow-read=${siteDir}`,
          "--no-lock",
        ],
        ...[
          STD_FILE_SERVER_MODULE,
          siteDir,
          "--host",
          LOCAL,
          "--port",
          String(port),
          "--quiet",
        ],
      ],
      cwd: siteDir,
      readyUrl: readyAt(port),
    });
  },
};

/** The Node file servers, at the exact versions the bench installs. */
export const NODE_PEER_VERSIONS = {
  serve: "14.2.7",
  "http-server": "14.1.1",
  "sirv-cli": "3.0.1",
} as const;

function memoize<T>(make: () => Promise<T>): () => Promise<T> {
  let result: Promise<T> | undefined;
  return () => result ??= make();
}

let nodeInstall:
  | { toolsDir: string; result: Promise<string | null> }
  | undefined;

/**
 * Installs the Node peers with npm into `toolsDir` (once per run); resolves null, or why
 * they cannot run. Never into the repository: it has no package.json, and gets none.
 */
export function installNodePeers(toolsDir: string): Promise<string | null> {
  if (nodeInstall?.toolsDir !== toolsDir) {
    nodeInstall = {
      toolsDir,
      result: (async () => {
        if (!await canRun("node", ["--version"])) {
          return "node is not installed";
        }
        const packages = Object.entries(NODE_PEER_VERSIONS).map(
          ([name, version]) => `${name}@${version}`,
        );
        try {
          const { code, stderr } = await new Deno.Command("npm", {
            args: [
              ...["install", "--prefix", toolsDir, "--no-audit", "--no-fund"],
              ...["--no-save", "--loglevel=error", ...packages],
            ],
            stdout: "null",
            stderr: "piped",
          }).output();
          if (code === 0) return null;
          const why = new TextDecoder().decode(stderr).trim().split("\n")[0];
          return `npm install ${packages.join(" ")} failed: ${why}`;
        } catch {
          return "npm is not installed";
        }
      })(),
    };
  }
  return nodeInstall.result;
}

/** A Node file server from the npm registry, run through its bin script. */
function nodePeer(
  key: string,
  label: string,
  bin: string,
  args: (context: LaunchContext) => string[],
): ServerDef {
  return {
    key,
    label,
    role: "peer",
    javascript: true,
    unavailable: ({ toolsDir }) => installNodePeers(toolsDir),
    launch(context) {
      return Promise.resolve({
        name: label,
        // The bin script's shebang runs node in the same process (its memory is measured).
        command: join(context.toolsDir, "node_modules", ".bin", bin),
        args: args(context),
        readyUrl: readyAt(context.port),
      });
    },
  };
}

export const SERVE = nodePeer(
  "serve",
  `serve ${NODE_PEER_VERSIONS.serve}`,
  "serve",
  ({ port, siteDir, workDir }) => {
    // serve redirects /small.html to /small by default (cleanUrls); the others serve it.
    const config = join(workDir, "serve.json");
    Deno.writeTextFileSync(config, JSON.stringify({ cleanUrls: false }));
    return [
      siteDir,
      ...["--listen", `tcp://${LOCAL}:${port}`, "--config", config],
      ...["--no-clipboard", "--no-request-logging"],
    ];
  },
);

export const HTTP_SERVER = nodePeer(
  "http-server",
  `http-server ${NODE_PEER_VERSIONS["http-server"]}`,
  "http-server",
  ({ port, siteDir }) => [siteDir, "-a", LOCAL, "-p", String(port), "-s"],
);

export const SIRV = nodePeer(
  "sirv",
  `sirv-cli ${NODE_PEER_VERSIONS["sirv-cli"]}`,
  "sirv",
  ({ port, siteDir }) => [
    siteDir,
    ...["--host", LOCAL, "--port", String(port), "--quiet"],
  ],
);

// ---------------------------------------------------------------------------
// The textbook's programs, in bench/reference/.

export const TEXTBOOK_TINY: ServerDef = {
  key: "textbook-tiny",
  label: "tiny_socket_server.py",
  role: "peer",
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
      readyUrl: readyAt(port, "/"),
    });
  },
};

function textbookBoard(saving: boolean): ServerDef {
  const label = saving ? "textbook board, saving" : "textbook board";
  return {
    key: saving ? "textbook-board-saving" : "textbook-board",
    label,
    role: "peer",
    unavailable: needsPython,
    launch({ port, workDir, seedFile }) {
      const args = [
        join(REFERENCE_DIR, "board_httpserver.py"),
        ...["--port", String(port), "--quiet"],
      ];
      if (seedFile) args.push("--seed", seedFile);
      if (saving) args.push("--save", join(workDir, "messages.json"));
      return Promise.resolve({
        name: label,
        command: "python3",
        args,
        readyUrl: readyAt(port, "/"),
      });
    },
  };
}

export const TEXTBOOK_BOARD = textbookBoard(false);
export const TEXTBOOK_BOARD_SAVING = textbookBoard(true);
