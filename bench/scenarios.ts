/**
 * The scenarios the benchmark runs, and beside them, in one table, the targets
 * they are held to. The servers themselves are in servers.ts.
 *
 * @module
 */

import { SITE_FILES } from "./fixtures.ts";
import type { TargetDef } from "./report.ts";
import {
  CADDY,
  CADDY_ENCODE,
  FILES_FLOOR,
  HONO,
  HTTP_SERVER,
  LIGHTTPD,
  LIGHTTPD_DEFLATE,
  NGINX,
  NGINX_GZIP,
  OUR_BOARD,
  OUR_BOARD_FILE_BASELINE,
  OUR_BOARD_PG_1,
  OUR_BOARD_PG_2,
  OUR_FILES,
  OUR_TINY,
  PYTHON_HTTP_SERVER,
  SERVE,
  type ServerDef,
  SIRV,
  STD_FILE_SERVER,
  TEXTBOOK_BOARD,
  TEXTBOOK_BOARD_SAVING,
  TEXTBOOK_TINY,
  TINY_DENO_LOOP,
  TINY_NODE_LOOP,
} from "./servers.ts";

/** A load to put on every server of a group. */
export interface ScenarioDef {
  id: string;
  title: string;
  /** How the client drives it, for the table. */
  load: string;
  metric: "requests" | "bytes";
  servers: ServerDef[];
  path: string;
  /** wrk (many connections for a bounded time) or curl (one download at a time). @default "wrk" */
  client?: "wrk" | "curl";
  /** curl only: downloads per server; the median is reported. */
  pulls?: number;
  connections: number;
  headers?: string[];
  /** An urlencoded form body to POST (through a generated wrk script) instead of a GET. */
  postBody?: string;
  /** The body length every GET must have (the generated file's size). */
  expectBytes?: number;
  /** Seconds before the client counts a request as timed out. */
  timeout: number;
  /** Messages the board starts with. */
  boardMessages?: number;
  /** Restart the server on a fresh copy of its data before every run (posts change the data). */
  freshEachRun?: boolean;
}

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
  // The PostgreSQL store beside the file store, at 1,000 stored: the newest page (which each
  // process keeps in memory) and posts. Two processes share the 32
  // connections: one wrk each, 16 connections, at the same time (see combineWrkResults).
  const stores = [OUR_BOARD_FILE_BASELINE, OUR_BOARD_PG_1, OUR_BOARD_PG_2];
  const pg: ScenarioDef[] = [
    {
      id: "board-pg-page",
      title: "Board newest page, 1,000 stored, PostgreSQL",
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

/** The JavaScript file servers a user might pick instead of ours. */
const JS_PEERS = [HONO, SERVE, HTTP_SERVER, SIRV, STD_FILE_SERVER];

/** Every scenario, in the order they run. */
export const SCENARIOS: ScenarioDef[] = [
  {
    id: "tiny",
    title: "Tiny, new connection per request",
    load: "32 connections, Connection: close",
    metric: "requests",
    servers: [OUR_TINY, TINY_DENO_LOOP, TINY_NODE_LOOP, TEXTBOOK_TINY],
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
    servers: [
      OUR_FILES,
      FILES_FLOOR,
      NGINX,
      CADDY,
      LIGHTTPD,
      ...JS_PEERS,
      PYTHON_HTTP_SERVER,
    ],
    path: `/${SITE_FILES.small.name}`,
    expectBytes: SITE_FILES.small.size,
    connections: 32,
    timeout: 2,
  },
  {
    id: "files-css-gzip",
    title: "Files, 15 KiB CSS, compressed",
    load: "32 connections, keep-alive, Accept-Encoding: gzip, br",
    metric: "requests",
    // The peers that compress on the fly: nginx and lighttpd when told to, Caddy with
    // `encode`, serve by default.
    servers: [
      OUR_FILES,
      FILES_FLOOR,
      NGINX_GZIP,
      CADDY_ENCODE,
      LIGHTTPD_DEFLATE,
      SERVE,
    ],
    path: `/${SITE_FILES.stylesheet.name}`,
    headers: ["Accept-Encoding: gzip, br"],
    connections: 32,
    timeout: 2,
  },
  {
    id: "files-100kb",
    title: "Files, 100 KiB file",
    load: "32 connections, keep-alive",
    metric: "requests",
    servers: [
      OUR_FILES,
      FILES_FLOOR,
      NGINX,
      CADDY,
      LIGHTTPD,
      ...JS_PEERS,
      PYTHON_HTTP_SERVER,
    ],
    path: `/${SITE_FILES.medium.name}`,
    expectBytes: SITE_FILES.medium.size,
    connections: 32,
    timeout: 5,
  },
  {
    id: "files-100mb",
    title: "Files, 100 MiB file, one download",
    load: "one curl at a time, 4 downloads",
    metric: "bytes",
    client: "curl",
    pulls: 4,
    servers: [
      OUR_FILES,
      NGINX,
      CADDY,
      LIGHTTPD,
      HONO,
      SERVE,
      PYTHON_HTTP_SERVER,
    ],
    path: `/${SITE_FILES.large.name}`,
    expectBytes: SITE_FILES.large.size,
    connections: 1,
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

/**
 * The targets, in one table beside the scenarios. Each row compares one figure of ours
 * (`server` "ours" unless named) with a peer's, the best of several, or a fixed number.
 */
export const TARGETS: TargetDef[] = [
  {
    goal: "Files, 500 B: at least 0.95× the Deno.serve floor",
    figure: "rate",
    ours: { scenario: "files-small" },
    versus: { scenario: "files-small", servers: [FILES_FLOOR.key] },
    atLeast: 0.95,
  },
  {
    goal: "Files, 500 B: at least 2.5× the fastest JavaScript peer",
    figure: "rate",
    ours: { scenario: "files-small" },
    versus: { scenario: "files-small", servers: JS_PEERS.map((s) => s.key) },
    atLeast: 2.5,
  },
  {
    goal: "Files, 15 KiB CSS compressed: at least 1.5× nginx with gzip on",
    figure: "rate",
    ours: { scenario: "files-css-gzip" },
    versus: { scenario: "files-css-gzip", servers: [NGINX_GZIP.key] },
    atLeast: 1.5,
  },
  {
    goal: "Files, 15 KiB CSS compressed: fewer bytes per response than nginx",
    figure: "bytes-per-response",
    ours: { scenario: "files-css-gzip" },
    versus: { scenario: "files-css-gzip", servers: [NGINX_GZIP.key] },
    below: 1,
  },
  {
    goal: "Files, 100 MiB, one download: at least 0.8× nginx",
    figure: "rate",
    ours: { scenario: "files-100mb" },
    versus: { scenario: "files-100mb", servers: [NGINX.key] },
    atLeast: 0.8,
  },
  {
    goal: "Files, 100 MiB, one download: peak RSS under 100 MB",
    figure: "memory",
    ours: { scenario: "files-100mb" },
    versus: 100e6,
    below: 1,
  },
  {
    goal: "Tiny: at least 0.9× the bare Deno.listen loop",
    figure: "rate",
    ours: { scenario: "tiny" },
    versus: { scenario: "tiny", servers: [TINY_DENO_LOOP.key] },
    atLeast: 0.9,
  },
  {
    goal: "Tiny: peak RSS at most 1.5× the bare Deno.listen loop's",
    figure: "memory",
    ours: { scenario: "tiny" },
    versus: { scenario: "tiny", servers: [TINY_DENO_LOOP.key] },
    atMost: 1.5,
  },
  ...["1k", "100k"].map((size): TargetDef => ({
    goal: `Board: durable posts/s from ${
      size === "1k" ? "1,000" : "100,000"
    } stored at least 3× the textbook board's in-memory rate from 1,000`,
    figure: "rate",
    ours: { scenario: `board-post-${size}` },
    versus: { scenario: "board-post-1k", servers: [TEXTBOOK_BOARD.key] },
    atLeast: 3,
  })),
  ...(["post", "page"] as const).map((kind): TargetDef => ({
    goal:
      `Board: ${kind} rate at 100,000 stored at least 0.67× the rate at 1,000 ` +
      "(cost at most 1.5×)",
    figure: "rate",
    ours: { scenario: `board-${kind}-100k` },
    versus: { scenario: `board-${kind}-1k`, servers: ["ours"] },
    atLeast: 1 / 1.5,
  })),
  {
    goal:
      "Board, PostgreSQL newest page, 1 process: at least 0.8× the file store",
    figure: "rate",
    ours: { scenario: "board-pg-page", server: OUR_BOARD_PG_1.key },
    versus: {
      scenario: "board-pg-page",
      servers: [OUR_BOARD_FILE_BASELINE.key],
    },
    atLeast: 0.8,
  },
];
