/**
 * The scenarios the benchmark runs and, beside them in one table, the targets
 * they are held to. The servers are in servers.ts.
 *
 * @module
 */

import { SITE_FILES } from "./fixtures.ts";
import { rateTargetsIn, type TargetDef } from "./report.ts";
import {
  BOARD_FILE_STORE,
  BOARD_POSTGRES,
  CADDY,
  FILES_BIG_FLOOR,
  FILES_FLOOR,
  HONO,
  HTTP_SERVER,
  LIGHTTPD,
  NGINX,
  NGINX_GZIP,
  OUR_BOARD,
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
  servers: ServerDef[];
  path: string;
  /** Download the file this many times with curl, one at a time, instead of running wrk. */
  pulls?: number;
  /** Runs, in all, of ours and its paired servers (pairedServers). @default the run's --pairs */
  pairs?: number;
  /** Servers to pair with ours besides the ones a target compares it with. */
  pairWith?: ServerDef[];
  headers?: string[];
  /** An urlencoded form to POST instead of a GET; each run then starts on fresh data. */
  postBody?: string;
  /** The body length every GET must have (the generated file's size). */
  expectBytes?: number;
  /** Seconds before the client counts a request as timed out. @default 2 */
  timeout?: number;
  /** Messages the board starts with. */
  boardMessages?: number;
  /** Seconds of warm-up (not counted). The boards' page is drawn in JavaScript, which V8 optimizes only after some 25,000 requests. @default the run's, 1 */
  warmup?: number;
}

/** The board's form as a browser posts it: one ordinary message. */
export const POST_BODY = new URLSearchParams({
  message:
    "Hello from the benchmark! A message of ordinary length, kept on disk.",
}).toString();

/** Board sizes the board's issue names: 1,000 and 100,000 stored messages. */
const BOARD_SIZES = [1_000, 100_000];

/** The JavaScript file servers a user might pick instead of ours. */
const JS_PEERS = [HONO, SERVE, HTTP_SERVER, SIRV, STD_FILE_SERVER];
const FILE_PEERS = [NGINX, CADDY, LIGHTTPD, ...JS_PEERS, PYTHON_HTTP_SERVER];

/** Every scenario, in the order they run. */
export const SCENARIOS: ScenarioDef[] = [
  {
    id: "tiny",
    title: "Tiny, new connection per request",
    load: "32 connections, Connection: close",
    servers: [OUR_TINY, TINY_DENO_LOOP, TINY_NODE_LOOP, TEXTBOOK_TINY],
    ...{ path: "/", headers: ["Connection: close"] },
  },
  {
    id: "files-small",
    title: "Files, 500 B page",
    load: "32 connections, keep-alive",
    servers: [OUR_FILES, FILES_FLOOR, ...FILE_PEERS],
    ...{ path: `/${SITE_FILES.small.name}`, pairs: 15 }, // ratio ~1: more pairs
    expectBytes: SITE_FILES.small.size,
  },
  {
    id: "files-css-gzip",
    title: "Files, 15 KiB CSS, compressed",
    load: "32 connections, keep-alive, Accept-Encoding: gzip, br",
    // The peers that compress on the fly: nginx told to, serve by default (Caddy 2.6's
    // `file-server` command has no flag for it).
    servers: [OUR_FILES, FILES_FLOOR, NGINX_GZIP, SERVE],
    path: `/${SITE_FILES.stylesheet.name}`,
    headers: ["Accept-Encoding: gzip, br"],
  },
  {
    id: "files-100kb",
    title: "Files, 100 KiB file",
    load: "32 connections, keep-alive",
    servers: [OUR_FILES, FILES_FLOOR, ...FILE_PEERS],
    path: `/${SITE_FILES.medium.name}`,
    expectBytes: SITE_FILES.medium.size,
    timeout: 5,
  },
  {
    id: "files-100mb",
    title: "Files, 100 MiB file, one download",
    load: "one curl at a time, 4 downloads (16 for the paired)",
    servers: [OUR_FILES, FILES_BIG_FLOOR, NGINX, CADDY, LIGHTTPD, HONO, SERVE]
      .concat(PYTHON_HTTP_SERVER),
    path: `/${SITE_FILES.large.name}`,
    ...{ pulls: 4, pairs: 16, pairWith: [FILES_BIG_FLOOR] }, // a download: some 50 ms
    ...{ expectBytes: SITE_FILES.large.size, timeout: 60 },
  },
  ...BOARD_SIZES.map((size): ScenarioDef => ({
    id: `board-page-${size / 1000}k`,
    title: `Board page, ${size.toLocaleString("en-US")} stored`,
    load: "32 connections, keep-alive, GET /",
    servers: [OUR_BOARD, TEXTBOOK_BOARD],
    ...{ path: "/", timeout: 10, boardMessages: size, warmup: 5 },
  })),
  ...BOARD_SIZES.map((size): ScenarioDef => ({
    id: `board-post-${size / 1000}k`,
    // Every post adds a message, so a run starts at this size and grows (the row says how far).
    title: `Board posts, from ${size.toLocaleString("en-US")} stored`,
    load: "32 connections, POST / message form",
    // The saving textbook board rewrites its whole file per post: at 100,000 that is a few
    // posts a second, and measuring it would only add half a minute to every run.
    servers: size === 1_000
      ? [OUR_BOARD, TEXTBOOK_BOARD, TEXTBOOK_BOARD_SAVING]
      : [OUR_BOARD, TEXTBOOK_BOARD],
    postBody: POST_BODY,
    ...{ path: "/", timeout: 10, boardMessages: size },
  })),
  // The PostgreSQL store beside the file store, both from the same 1,000 messages.
  ...["page", "post"].map((kind): ScenarioDef => ({
    id: `board-pg-${kind}`,
    title: kind === "page"
      ? "Board newest page, 1,000 stored, PostgreSQL"
      : "Board posts, from 1,000 stored, PostgreSQL",
    load: kind === "page"
      ? "32 connections, keep-alive, GET /"
      : "32 connections, POST / message form",
    servers: [BOARD_POSTGRES, BOARD_FILE_STORE],
    ...(kind === "post" ? { postBody: POST_BODY } : {}),
    ...{ path: "/", timeout: 10, boardMessages: 1_000, warmup: 5 },
  })),
];

/**
 * Picks scenarios by id or id prefix ("files" selects every files-* scenario).
 * Throws on a name that matches nothing, listing the valid ids.
 */
export function selectScenarios(
  all: ScenarioDef[],
  only: string[],
): ScenarioDef[] {
  const matches = (s: ScenarioDef, name: string) =>
    s.id === name || s.id.startsWith(`${name}-`);
  const unknown = only.find((name) => !all.some((s) => matches(s, name)));
  if (unknown !== undefined) {
    const ids = all.map((s) => s.id).join(", ");
    throw new Error(`unknown scenario "${unknown}"; choose from: ${ids}`);
  }
  return only.length
    ? all.filter((s) => only.some((name) => matches(s, name)))
    : all;
}

/**
 * The servers measured beside ours in every turn of `scenario`, and with it in the turns
 * after the scenario's runs: each server that a target there compares ours with alone, then
 * the scenario's `pairWith`. A target against the best of several (not paired) takes the best
 * of each of the scenario's turns.
 */
export function pairedServers(
  scenario: ScenarioDef,
  targets: TargetDef[],
): ServerDef[] {
  const keys = rateTargetsIn(targets, scenario.id)
    .flatMap((t) => t.versus.length === 1 ? [t.versus[0].key] : [])
    .concat((scenario.pairWith ?? []).map((s) => s.key));
  return [...new Set(keys)].flatMap((key) =>
    scenario.servers.filter((s) => s.key === key)
  );
}

/** The targets, beside the scenarios: each holds ours ÷ the best of `versus` (or a figure) to a bound. */
export const TARGETS: TargetDef[] = [
  {
    goal: "Files, 500 B: at least 0.95× the Deno.serve floor",
    ...{ scenario: "files-small", versus: [FILES_FLOOR], atLeast: 0.95 },
  },
  {
    goal: "Files, 500 B: at least 2.5× the fastest JavaScript peer",
    ...{ scenario: "files-small", versus: JS_PEERS, atLeast: 2.5 },
  },
  {
    goal: "Files, 15 KiB CSS compressed: at least 1.5× nginx with gzip on",
    ...{ scenario: "files-css-gzip", versus: [NGINX_GZIP], atLeast: 1.5 },
  },
  {
    goal: "Files, 15 KiB CSS compressed: fewer bytes per response than nginx",
    ...{ figure: "bytes-per-response", scenario: "files-css-gzip", below: 1 },
    versus: [NGINX_GZIP],
  },
  {
    goal: "Files, 100 MiB, one download: at least 0.8× nginx",
    ...{ scenario: "files-100mb", versus: [NGINX], atLeast: 0.8 },
  },
  {
    goal: "Files, 100 MiB, one download: peak RSS under 100 MB",
    ...{ figure: "memory", scenario: "files-100mb", versus: 100e6, below: 1 },
  },
  {
    goal: "Tiny: at least 0.9× the bare Deno.listen loop",
    ...{ scenario: "tiny", versus: [TINY_DENO_LOOP], atLeast: 0.9 },
  },
  {
    goal: "Tiny: peak RSS at most 1.5× the bare Deno.listen loop's",
    ...{ figure: "memory", scenario: "tiny", versus: [TINY_DENO_LOOP] },
    atMost: 1.5,
  },
  ...["1k", "100k"].map((size): TargetDef => ({
    goal:
      `Board: durable posts/s from ${size === "1k" ? "1,000" : "100,000"} ` +
      "stored at least 3× the textbook board's in-memory rate from 1,000",
    ...{ scenario: `board-post-${size}`, versus: [TEXTBOOK_BOARD], atLeast: 3 },
    versusScenario: "board-post-1k",
  })),
  ...["post", "page"].map((kind): TargetDef => ({
    goal: `Board: ${kind} rate at 100,000 stored at least 0.67× the rate at ` +
      "1,000 (cost at most 1.5×)",
    scenario: `board-${kind}-100k`,
    versus: [OUR_BOARD],
    atLeast: 1 / 1.5,
    versusScenario: `board-${kind}-1k`,
  })),
  {
    goal: "Board: PostgreSQL newest page at least 0.8× the file store",
    ...{ scenario: "board-pg-page", versus: [BOARD_FILE_STORE], atLeast: 0.8 },
  },
];
