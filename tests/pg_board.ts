// A board process in PostgreSQL mode, started with the README's command (shared by the
// cluster and browser tests).
import { fileURLToPath } from "node:url";
import { type BoardProcess, startBoard } from "./board_helpers.ts";
import type { PgServer } from "./pg_harness.ts";

/** The README's Postgres-mode permission flags. */
export const PG_FLAGS = [
  "--allow-net=127.0.0.1",
  "--allow-env=DATABASE_URL,PG*",
];
export const REPO_ROOT = fileURLToPath(new URL("../", import.meta.url));
/** The PostgreSQL mode's entry point, as an absolute path. */
export const PG_SCRIPT = fileURLToPath(
  new URL("../board_postgres.ts", import.meta.url),
);

export interface PgBoard extends BoardProcess, AsyncDisposable {}

/** Starts `board_postgres.ts --store URL --port 0` and waits for the address it prints. */
export async function startPgBoard(
  pg: PgServer,
  env: Record<string, string> = {},
): Promise<PgBoard> {
  const store = "DATABASE_URL" in env ? [] : ["--store", pg.url];
  const board = await startBoard(REPO_ROOT, store, {
    flags: PG_FLAGS,
    env,
    script: PG_SCRIPT,
  });
  return {
    ...board,
    async [Symbol.asyncDispose]() {
      try {
        board.child.kill("SIGTERM");
      } catch {
        // already gone (killed by the test)
      }
      await board.output;
    },
  };
}
