/**
 * A throwaway PostgreSQL server for tests: `initdb` into a temp folder, `pg_ctl start` on
 * 127.0.0.1 with a free port and a private unix socket folder, then stop and delete it.
 *
 * It uses Debian's server binaries (`apt-get install -y postgresql` puts them in
 * `/usr/lib/postgresql/<major>/bin`; no service needs to run). PostgreSQL refuses to run as
 * root, so when the tests run as root (CI, containers) every server command runs as the
 * `postgres` system user that the Debian package creates, through `runuser -u postgres --`,
 * and the temp folder is handed to that user with `chown`. As any other user the commands
 * run directly.
 *
 * Where PostgreSQL is missing, {@link pgTestOptions} marks the tests ignored and a loud
 * message names the install command; with `CI=true` the tests run anyway and fail, so CI can
 * never pass by skipping them.
 *
 * @example
 * ```ts
 * Deno.test({ name: "...", ...pgTestOptions(), async fn() {
 *   await using pg = await startPostgres();
 *   // pg.url is postgres://board@127.0.0.1:PORT/board
 * } });
 * ```
 * @module
 */
import { pickFreePort, runProcess } from "./_process.ts";

const INSTALL_HINT = "apt-get install -y postgresql";

/** A running throwaway server. `await using` stops it and removes its files. */
export interface PgServer extends AsyncDisposable {
  /** Connection URL of the test database, e.g. `postgres://board@127.0.0.1:54123/board`. */
  readonly url: string;
  readonly port: number;
  /** Stops the server and keeps its files (`pg_ctl stop -m fast`), as for an outage. */
  stop(): Promise<void>;
  /** Starts the stopped server again on the same port with the same data. */
  start(): Promise<void>;
  /**
   * Sends `signal` to the server and every process it started (SIGSTOP: a hung database that
   * keeps its connections open but never answers; SIGCONT: it goes on).
   */
  signal(signal: "SIGSTOP" | "SIGCONT"): Promise<void>;
  /** Stops the server (if running) and deletes its temp folder. */
  destroy(): Promise<void>;
}

/** The folder with `initdb`, `pg_ctl` and `postgres`, the newest major first; null if none. */
export function findPgBin(): string | null {
  const root = "/usr/lib/postgresql";
  let majors: number[] = [];
  try {
    majors = [...Deno.readDirSync(root)].map((e) => Number(e.name)).filter(
      Number.isInteger,
    );
  } catch {
    return null;
  }
  for (const major of majors.sort((a, b) => b - a)) {
    const bin = `${root}/${major}/bin`;
    try {
      Deno.statSync(`${bin}/initdb`);
      Deno.statSync(`${bin}/pg_ctl`);
      return bin;
    } catch {
      // An incomplete install (client only); try the next version.
    }
  }
  return null;
}

const PG_BIN = findPgBin();
const IN_CI = Deno.env.get("CI") === "true";

let warned = false;

/** Prints, once, the loud message that PostgreSQL is missing (not on import: bench/ imports this too). */
function warnMissing(): void {
  if (PG_BIN !== null || warned) return;
  warned = true;
  const line = "!".repeat(78);
  console.error(
    `\n${line}\n!! PostgreSQL not found under /usr/lib/postgresql/*/bin: ` +
      `${IN_CI ? "FAILING (CI=true)" : "SKIPPING"} the PostgreSQL tests.\n` +
      `!! Install it with: ${INSTALL_HINT}\n${line}\n`,
  );
}

/**
 * Test options for a PostgreSQL test: ignored when PostgreSQL is missing, except in CI where
 * the test runs and fails in {@link startPostgres} with the install command.
 */
export function pgTestOptions(): { ignore: boolean } {
  warnMissing();
  return { ignore: PG_BIN === null && !IN_CI };
}

const runAsPostgresUser = Deno.uid() === 0;

/** Runs one PostgreSQL program (as the postgres user when we are root); throws with its output. */
async function runPg(program: string, args: string[]): Promise<void> {
  if (PG_BIN === null) {
    throw new Error(
      `PostgreSQL is not installed; install it with: ${INSTALL_HINT}`,
    );
  }
  const { code, stdout, stderr } = await runProcess(
    `${PG_BIN}/${program}`,
    args,
    { wrapper: runAsPostgresUser ? ["runuser", "-u", "postgres", "--"] : [] },
  );
  if (code !== 0) {
    const text = stdout + stderr;
    throw new Error(
      `${program} ${args.join(" ")} failed (exit ${code}):\n${text}`,
    );
  }
}

/** {@link runPg} for the process's exit (an unload listener cannot wait); ignores failures. */
function runPgSync(program: string, args: string[]): void {
  if (PG_BIN === null) return;
  const command = [
    ...(runAsPostgresUser ? ["runuser", "-u", "postgres", "--"] : []),
    `${PG_BIN}/${program}`,
    ...args,
  ];
  new Deno.Command(command[0], {
    args: command.slice(1),
    stdout: "null",
    stderr: "null",
  }).outputSync();
}

/** Numeric uid and gid of a system user, from `id`. */
async function lookupUser(name: string): Promise<{ uid: number; gid: number }> {
  const id = async (flag: string) => {
    const { code, stdout } = await runProcess("id", [flag, name]);
    if (code !== 0) {
      throw new Error(`no system user ${name}; ${INSTALL_HINT} creates it`);
    }
    return Number(stdout.trim());
  };
  return { uid: await id("-u"), gid: await id("-g") };
}

/** A server as {@link freshDatabase} shares it: more databases, and a synchronous end. */
interface Cluster extends PgServer {
  readonly running: boolean;
  /** Creates the empty database `name` owned by `board`. */
  createDatabase(name: string): Promise<void>;
  /** Drops the database `name`, ending its sessions first (`dropdb --force`). */
  dropDatabase(name: string): Promise<void>;
  /** {@link PgServer.destroy}, synchronously (for the process's unload event). */
  destroySync(): void;
}

/**
 * Creates a cluster in a temp folder, starts it on 127.0.0.1 with a free port and creates the
 * database `board` owned by the superuser `board` (trust authentication: loopback only, for
 * tests). Tries a few ports in case another process takes the picked one first.
 */
export function startPostgres(): Promise<PgServer> {
  return startCluster();
}

async function startCluster(): Promise<Cluster> {
  const dir = await Deno.makeTempDir({ prefix: "pg_test_" });
  const dataDir = `${dir}/data`;
  const socketDir = `${dir}/sock`;
  const logFile = `${dir}/server.log`;
  try {
    await Deno.mkdir(socketDir);
    if (runAsPostgresUser) {
      const { uid, gid } = await lookupUser("postgres");
      await Deno.chown(dir, uid, gid);
      await Deno.chown(socketDir, uid, gid);
    }
    // --no-sync: a test cluster need not survive a power cut, and initdb is 3x faster.
    await runPg("initdb", [
      "--pgdata",
      dataDir,
      "--username",
      "board",
      "--auth",
      "trust",
      "--encoding",
      "UTF8",
      "--no-sync",
      "--no-instructions",
    ]);
  } catch (error) {
    await Deno.remove(dir, { recursive: true });
    throw error;
  }

  let port = 0;
  let running = false;
  const start = async () => {
    await runPg("pg_ctl", [
      "--pgdata",
      dataDir,
      "--log",
      logFile,
      "--wait",
      "--timeout",
      "30",
      "--options",
      `-c listen_addresses=127.0.0.1 -c port=${port} -c unix_socket_directories=${socketDir}`,
      "start",
    ]);
    running = true;
  };
  const stop = async (mode: "fast" | "immediate") => {
    if (!running) return;
    await runPg("pg_ctl", [
      "--pgdata",
      dataDir,
      "--mode",
      mode,
      "--wait",
      "stop",
    ]);
    running = false;
  };
  const signalSync = (name: "SIGSTOP" | "SIGCONT") => {
    const text = Deno.readTextFileSync(`${dataDir}/postmaster.pid`);
    const postmaster = Number(text.split("\n")[0]);
    const pids = [postmaster];
    for (const entry of Deno.readDirSync("/proc")) {
      if (!/^\d+$/.test(entry.name)) continue;
      try {
        const stat = Deno.readTextFileSync(`/proc/${entry.name}/stat`);
        // pid (comm) state ppid ...: the command name may hold spaces, so split after ")".
        const ppid = Number(
          stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1],
        );
        if (ppid === postmaster) pids.push(Number(entry.name));
      } catch {
        // the process ended meanwhile
      }
    }
    for (const pid of pids) Deno.kill(pid, name);
  };
  const signal = (name: "SIGSTOP" | "SIGCONT") =>
    Promise.resolve().then(() => signalSync(name));

  const destroySync = () => {
    try {
      if (running) {
        try {
          signalSync("SIGCONT"); // a frozen server cannot stop
        } catch {
          // it has gone already
        }
        runPgSync("pg_ctl", [
          "--pgdata",
          dataDir,
          "--mode",
          "immediate",
          "--wait",
          "stop",
        ]);
        running = false;
      }
    } finally {
      Deno.removeSync(dir, { recursive: true });
    }
  };
  /** Runs a client program (createdb, dropdb) as `board` on the private socket. */
  const runClient = (program: string, args: string[]) =>
    runPg(program, [
      "--host",
      socketDir,
      "--port",
      String(port),
      "-U",
      "board",
      ...args,
    ]);
  const createDatabase = (name: string) => runClient("createdb", [name]);
  const dropDatabase = (name: string) => runClient("dropdb", ["--force", name]);

  const destroy = async () => {
    try {
      if (running) await signal("SIGCONT").catch(() => {}); // a frozen server cannot stop
      await stop("immediate");
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  };

  try {
    for (let attempt = 1;; attempt++) {
      port = pickFreePort();
      try {
        await start();
        break;
      } catch (error) {
        if (attempt === 3) throw error;
      }
    }
    await createDatabase("board");
  } catch (error) {
    await destroy();
    throw error;
  }

  return {
    url: `postgres://board@127.0.0.1:${port}/board`,
    port,
    stop: () => stop("fast"),
    start,
    signal,
    destroy,
    [Symbol.asyncDispose]: destroy,
    get running() {
      return running;
    },
    createDatabase,
    dropDatabase,
    destroySync,
  };
}

let sharedCluster: Promise<Cluster> | undefined;
let databaseCount = 0;

/**
 * A fresh, empty database on one server that the whole test file shares: the first call
 * starts it (initdb is the slow part, about 2 s), the process's exit stops and deletes it.
 * `stop`, `start` and `signal` act on that whole server, which no other test notices: a file's
 * tests run one at a time, and a server a test left stopped is started for the next.
 * Disposing it drops the database (when the server runs), once its sessions have ended.
 */
export async function freshDatabase(): Promise<PgServer> {
  if (sharedCluster === undefined) {
    sharedCluster = startCluster();
    const cluster = await sharedCluster;
    globalThis.addEventListener("unload", () => cluster.destroySync());
  }
  const cluster = await sharedCluster;
  if (!cluster.running) await cluster.start();
  const name = `test_${++databaseCount}`;
  await cluster.createDatabase(name);
  const destroy = async () => {
    if (cluster.running) await cluster.dropDatabase(name);
  };
  return {
    url: `postgres://board@127.0.0.1:${cluster.port}/${name}`,
    port: cluster.port,
    stop: cluster.stop,
    start: cluster.start,
    signal: cluster.signal,
    destroy,
    [Symbol.asyncDispose]: destroy,
  };
}
