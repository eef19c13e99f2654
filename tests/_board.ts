// Shared helpers for the message board tests: the board as a process (file and
// PostgreSQL mode), a temp folder, and the JSON API.
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { REPO_ROOT, type RunningProcess, startScript } from "./_process.ts";
import type { PgServer } from "./_postgres.ts";
import {
  type Board,
  type BoardOptions,
  type MessageStore,
  openBoard,
} from "../message_board.ts";

/** The board script, as an absolute path. */
export const BOARD_SCRIPT = fileURLToPath(
  new URL("../message_board.ts", import.meta.url),
);

/** The README command's permission flags (relative to the board's working folder). */
export const BOARD_FLAGS = [
  "--allow-net=127.0.0.1",
  "--allow-read=./data",
  "--allow-write=./data",
];

/** A fresh temporary folder, removed again by `using`'s dispose. */
export async function tempFolder(): Promise<
  { path: string } & AsyncDisposable
> {
  const path = await Deno.makeTempDir({ prefix: "board_test_" });
  return {
    path,
    async [Symbol.asyncDispose]() {
      await Deno.remove(path, { recursive: true });
    },
  };
}

/** An in-process board from {@link openTempBoard}, and the temp folder its data file is in. */
export interface TempBoard extends Board, AsyncDisposable {
  /** The folder that holds `messages.jsonl`. */
  folder: string;
}

/**
 * An in-process board (`openBoard`) on `messages.jsonl` in a fresh temp folder.
 * `await using` closes the board, then removes the folder.
 *
 * @example
 * await using board = await openTempBoard({ log: () => {} });
 * const response = await board.handler(new Request("http://127.0.0.1/"));
 */
export async function openTempBoard(
  options: Omit<BoardOptions, "dataFile"> = {},
): Promise<TempBoard> {
  const folder = await tempFolder();
  let board: Board;
  try {
    board = await openBoard({
      ...options,
      dataFile: join(folder.path, "messages.jsonl"),
    });
  } catch (error) {
    await folder[Symbol.asyncDispose]();
    throw error;
  }
  return {
    ...board,
    folder: folder.path,
    async [Symbol.asyncDispose]() {
      try {
        await board.close();
      } finally {
        await folder[Symbol.asyncDispose]();
      }
    },
  };
}

/**
 * A store whose writes fail with `error`, to check what the client sees; its reads find an
 * empty board, or fail too with `readsFail`.
 */
export function failingStore(
  error: Error,
  { readsFail = false } = {},
): MessageStore {
  const fail = () => Promise.reject(error);
  return {
    listMessages: readsFail
      ? fail
      : () => Promise.resolve({ messages: [], hasOlder: false }),
    appendMessage: fail,
    clearMessages: fail,
    deleteMessage: fail,
    restoreNewestArchive: fail,
    writable: false,
    eventsAfter: fail,
    subscribe: () => () => {},
    close: () => Promise.resolve(),
  };
}

/** How {@link startBoard} runs the process. */
export interface StartOptions {
  /** Permission flags. @default {BOARD_FLAGS} (the file mode's README command) */
  flags?: string[];
  /** Extra environment variables. @default {} */
  env?: Record<string, string>;
  /** The script to run. @default {BOARD_SCRIPT} */
  script?: string;
  /**
   * Keep the per-client limits on. Off by default (`--rate-limit off`): these tests post
   * many messages from one address, as a load test does. @default false
   */
  rateLimit?: boolean;
  /** Keep the access log on (no `--quiet`). @default false */
  accessLog?: boolean;
  /** A command that runs deno, such as `["prlimit", "--nofile=256"]`. @default [] */
  wrapper?: string[];
}

/**
 * Starts `message_board.ts --port 0 --quiet` (or `script`) in `cwd` and waits for the
 * address it prints (`url`, like `http://127.0.0.1:41234/`; https with --cert). Throws
 * with the process output when it exits first.
 */
export function startBoard(
  cwd: string,
  args: string[] = [],
  {
    flags = BOARD_FLAGS,
    env = {},
    script = BOARD_SCRIPT,
    rateLimit = false,
    accessLog = false,
    wrapper = [],
  }: StartOptions = {},
): Promise<RunningProcess> {
  return startScript(script, flags, [
    "--port",
    "0",
    ...(accessLog ? [] : ["--quiet"]),
    ...(rateLimit ? [] : ["--rate-limit", "off"]),
    ...args,
  ], { cwd, env, wrapper });
}

/** The README's PostgreSQL-mode permission flags. */
export const PG_FLAGS = [
  "--allow-net=127.0.0.1",
  "--allow-env=DATABASE_URL,PG*",
];
/** The PostgreSQL mode's entry point, as an absolute path. */
export const PG_SCRIPT = fileURLToPath(
  new URL("../board_postgres.ts", import.meta.url),
);

/**
 * Starts `board_postgres.ts --store URL --port 0` with the README's flags from the
 * repository root (with `DATABASE_URL` in `env`, no `--store`) and waits for its address.
 */
export function startPgBoard(
  pg: PgServer,
  env: Record<string, string> = {},
): Promise<RunningProcess> {
  const store = "DATABASE_URL" in env ? [] : ["--store", pg.url];
  return startBoard(REPO_ROOT, store, {
    flags: PG_FLAGS,
    env,
    script: PG_SCRIPT,
  });
}

/** Posts a message with the JSON API; returns the status and the stored message. */
export async function postJson(
  url: string,
  body: unknown,
): Promise<{ status: number; message: { id: number; text: string } | null }> {
  const response = await fetch(new URL("api/messages", url), {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
  });
  const json = await response.json();
  return {
    status: response.status,
    message: response.status === 201 ? json : null,
  };
}

/** Reads every message through the JSON API, following the `older` links. */
export async function fetchAllMessages(
  url: string,
): Promise<{ id: number; text: string }[]> {
  const all: { id: number; text: string }[] = [];
  let next: string | null = "api/messages?limit=100";
  while (next !== null) {
    const response = await fetch(new URL(next, url));
    const page: {
      messages: { id: number; text: string }[];
      older: string | null;
    } = await response
      .json();
    all.push(...page.messages);
    next = page.older === null ? null : page.older.slice(1);
  }
  return all;
}
