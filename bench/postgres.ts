/**
 * The throwaway PostgreSQL server the board's PostgreSQL scenarios run on.
 *
 * It reuses the tests' harness (tests/_postgres.ts: `initdb` into a temp folder, `pg_ctl`
 * on 127.0.0.1 with a free port, as the `postgres` user when we are root), and adds what the
 * benchmark needs: loading the seed messages and counting the stored ones with `psql`. The
 * server keeps PostgreSQL's default `fsync = on`, so a post is as durable as in production.
 *
 * @module
 */

import { findPgBin, type PgServer, startPostgres } from "../tests/_postgres.ts";

export type { PgServer };
export { startPostgres };

const PG_BIN = findPgBin();

/** Why the PostgreSQL scenarios cannot run here, or null when they can. */
export function postgresUnavailable(): string | null {
  return PG_BIN === null
    ? "PostgreSQL is not installed (apt-get install -y postgresql)"
    : null;
}

/** Runs `psql` against `url` with `sql` on stdin; returns what it printed (unaligned, tuples only). */
export async function runPsql(url: string, sql: string): Promise<string> {
  if (PG_BIN === null) throw new Error(postgresUnavailable()!);
  const child = new Deno.Command(`${PG_BIN}/psql`, {
    args: [
      "--no-psqlrc",
      "--quiet",
      "--no-align",
      "--tuples-only",
      "-v",
      "ON_ERROR_STOP=1",
      url,
    ],
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const writer = child.stdin.getWriter();
  await writer.write(new TextEncoder().encode(sql));
  await writer.close();
  const { code, stdout, stderr } = await child.output();
  if (code !== 0) {
    throw new Error(
      `psql failed (exit ${code}): ${new TextDecoder().decode(stderr).trim()}`,
    );
  }
  return new TextDecoder().decode(stdout).trim();
}

/** The number of messages stored in the board's table. */
export async function countPgMessages(url: string): Promise<number> {
  return Number(await runPsql(url, "select count(*) from board_messages;\n"));
}
