// server_tiny.ts's one-pass parser (parseUsualHead) against the rule-by-rule
// one (parseHeadByRules): on every head, random or hostile, the same verdict,
// the same status, the same reason and the same parsed request.
import assert from "node:assert/strict";
import {
  parseHeadByRules,
  parseRequestHead,
  parseUsualHead,
} from "../server_tiny.ts";

// Heads are bytes: each char of these test strings stands for one byte (0-255).
const bytes = (text: string) =>
  Uint8Array.from(text, (char) => char.charCodeAt(0));
const show = (head: Uint8Array) => JSON.stringify(String.fromCharCode(...head));

/** Both parsers agree on `head`; returns whether the one-pass parser took it. */
function assertSameResult(head: Uint8Array): boolean {
  const byRules = parseHeadByRules(head);
  const usual = parseUsualHead(head);
  if (usual !== null) {
    assert.deepEqual(
      { ok: true, request: usual },
      byRules,
      `parseUsualHead differs on ${show(head)}`,
    );
  }
  assert.deepEqual(
    parseRequestHead(head),
    byRules,
    `parseRequestHead differs on ${show(head)}`,
  );
  return usual !== null;
}

/** A small seeded generator (mulberry32), so that a failure can be replayed. */
function random(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

Deno.test("parseUsualHead takes the heads browsers, curl and wrk send", () => {
  const heads = [
    "GET / HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nConnection: close\r\n\r\n",
    "GET /favicon.ico HTTP/1.1\r\nHost: localhost:8080\r\nUser-Agent: curl/8.5.0\r\nAccept: */*\r\n\r\n",
    "HEAD /a?b=c HTTP/1.0\r\nhost: example.com\r\n\r\n",
    "GET /?q=%C3%A9 HTTP/1.1\r\nHost: localhost\r\nUser-Agent: Mozilla/5.0 (X11; Linux x86_64)\r\n" +
    'Accept: text/html,*/*;q=0.8\r\nsec-ch-ua: "Chromium";v="131"\r\nCookie: a=\xc3\xa9\r\n\r\n',
    "POST / HTTP/1.1\r\nHost: h:\r\nX-Empty:\r\nX-Spaces: \t a b \t \r\n\r\n",
  ];
  for (const text of heads) {
    const head = bytes(text);
    assert.ok(parseUsualHead(head) !== null, `not taken: ${show(head)}`);
    assertSameResult(head);
  }
});

Deno.test("both parsers agree on hostile heads", () => {
  const hostile = [
    "",
    "\r\n",
    "\r\n\r\n",
    "GET / HTTP/1.1\r\n\r\n",
    "GET / HTTP/1.0\r\n\r\n",
    "GET / HTTP/1.1\nHost: x\r\n\r\n",
    "GET / HTTP/1.1\r\nHost: x\n\r\n",
    "GET / HTTP/1.1\r\nHost: x\r\n\n",
    "GET / HTTP/1.1\r\nHost: x\r\r\n\r\n",
    "GET / HTTP/1.1\r\nHost: x\ry\r\n\r\n",
    "GET / HTTP/1.1\r\nHost: x\r\n y\r\n\r\n",
    "GET / HTTP/1.1\r\n Host: x\r\n\r\n",
    "GET / HTTP/1.1\r\n\tHost: x\r\n\r\n",
    "GET / HTTP/1.1\r\nHost : x\r\n\r\n",
    "GET / HTTP/1.1\r\nHost\t: x\r\n\r\n",
    "GET / HTTP/1.1\r\nHost: x\r\nNoColon\r\n\r\n",
    "GET / HTTP/1.1\r\nHost: x\r\n: empty name\r\n\r\n",
    "GET / HTTP/1.1\r\nHost: x\r\nBad Name: y\r\n\r\n",
    "GET / HTTP/1.1\r\nHost: x\r\nBad@Name: y\r\n\r\n",
    "GET / HTTP/1.1\r\nHost: x\r\nX: a\x00b\r\n\r\n",
    "GET / HTTP/1.1\r\nHost: x\r\nX: a\x7fb\r\n\r\n",
    "GET / HTTP/1.1\r\nHost: x\r\nX: a\x1bb\r\n\r\n",
    "GET / HTTP/1.1\r\nHost: x\r\nX: \x80\xff\r\n\r\n",
    "GET / HTTP/1.1\r\nHost: x\r\nHost: x\r\n\r\n",
    "GET / HTTP/1.1\r\nHost: x\r\nhOST: y\r\n\r\n",
    "GET / HTTP/1.1\r\nHost:\r\n\r\n",
    "GET / HTTP/1.1\r\nHost: \r\n\r\n",
    "GET / HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n",
    "GET / HTTP/1.1\r\nHost: [::1\r\n\r\n",
    "GET / HTTP/1.1\r\nHost: a:65535\r\n\r\n",
    "GET / HTTP/1.1\r\nHost: a:65536\r\n\r\n",
    "GET / HTTP/1.1\r\nHost: a:000080\r\n\r\n",
    "GET / HTTP/1.1\r\nHost: a:08080\r\n\r\n",
    "GET / HTTP/1.1\r\nHost: a:b\r\n\r\n",
    "GET / HTTP/1.1\r\nHost: a:1:2\r\n\r\n",
    "GET / HTTP/1.1\r\nHost: :80\r\n\r\n",
    "GET / HTTP/1.1\r\nHost: user@a\r\n\r\n",
    "GET / HTTP/1.1\r\nHost: a b\r\n\r\n",
    "GET / HTTP/1.1\r\nHost: \xc3\xa9\r\n\r\n",
    "GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n",
    "GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n",
    "GET / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
    "GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n",
    "GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n",
    "GET / HTTP/1.1\r\nHost: x\r\ncontent-length: 1\r\ntransfer-encoding: chunked\r\n\r\n",
    "GET / HTTP/2.0\r\nHost: x\r\n\r\n",
    "GET / HTTP/0.9\r\nHost: x\r\n\r\n",
    "GET / HTTP/1.10\r\nHost: x\r\n\r\n",
    "GET / HTTP/1.\r\nHost: x\r\n\r\n",
    "GET / http/1.1\r\nHost: x\r\n\r\n",
    "GET / HTTP/1.1 \r\nHost: x\r\n\r\n",
    "GET  / HTTP/1.1\r\nHost: x\r\n\r\n",
    "GET /  HTTP/1.1\r\nHost: x\r\n\r\n",
    "GET\t/ HTTP/1.1\r\nHost: x\r\n\r\n",
    " GET / HTTP/1.1\r\nHost: x\r\n\r\n",
    "\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n",
    "GET /#frag HTTP/1.1\r\nHost: x\r\n\r\n",
    "GET /\x7f HTTP/1.1\r\nHost: x\r\n\r\n",
    "GET /\xe9 HTTP/1.1\r\nHost: x\r\n\r\n",
    "GET ?a HTTP/1.1\r\nHost: x\r\n\r\n",
    "GET /?? HTTP/1.1\r\nHost: x\r\n\r\n",
    "GET http://x/a?b HTTP/1.1\r\nHost: x\r\n\r\n",
    "GET http://u@x/ HTTP/1.1\r\nHost: x\r\n\r\n",
    "OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n",
    "CONNECT x:443 HTTP/1.1\r\nHost: x:443\r\n\r\n",
    "G(T / HTTP/1.1\r\nHost: x\r\n\r\n",
    "GET / HTTP/1.1\r\nHost: x\r\n\r\nX: after the blank line\r\n\r\n",
    "GET / HTTP/1.1\r\nHost: x\r\n\r\nbody",
    "GET / HTTP/1.1\r\nHost: x\r\n",
    "GET / HTTP/1.1\r\nHost: x",
    "GET / HTTP/1.1",
    "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
  ];
  for (const text of hostile) assertSameResult(bytes(text));
});

// Pieces of heads, right and wrong, for the random ones below.
const METHODS = ["GET", "HEAD", "POST", "get", "G-T", "", "GE T", "G\x00T"];
const TARGETS = [
  "/",
  "/a/b",
  "/?x=1&y=%20",
  "/a?b?c",
  "/{|}^`",
  "",
  "*",
  "/#x",
  "/a b",
  "/\x80",
  "http://h/p?q",
  "https://u@h/",
];
const VERSIONS = [
  "HTTP/1.1",
  "HTTP/1.0",
  "HTTP/1.9",
  "HTTP/2.0",
  "HTTP/1.",
  "HTTP/11.1",
  "http/1.1",
  "HTTP/1.1 ",
];
const NAMES = [
  "Host",
  "host",
  "HOST",
  "hoSt",
  "Hos",
  "Hostx",
  "Content-Length",
  "content-length",
  "Transfer-Encoding",
  "transfer-encoding",
  "Connection",
  "X-A",
  "!#$%&'*+-.^_`|~",
  "",
  "Bad Name",
  "Bad\tName",
  "B@d",
  "N\x80",
];
const PLAIN_NAMES = ["Connection", "Accept", "User-Agent", "X-A"];
const VALUES = [
  "",
  "x",
  "127.0.0.1:8080",
  "localhost",
  "a:",
  "a:65535",
  "a:65536",
  "a:123456",
  "[::1]",
  "[::1]:80",
  "a@b",
  "0",
  "5",
  "-1",
  "chunked",
  "gzip, chunked",
  "close",
  "a b",
  "a\tb",
  "\xc3\xa9",
  "\xff",
  "a\x00b",
  "a\x7f",
  "a\rb",
  "a\nb",
];
const SEPARATORS = [": ", ":", ":\t", ": \t ", " : ", " :", "\t:"];
const TRAILS = ["", " ", "\t", " \t "];
const LINE_ENDS = ["\r\n", "\r\n", "\r\n", "\r\n", "\n", "\r", "\r\r\n"];
// Bytes that decide things, to put into heads as mutations.
const SPECIAL = "\r\n \t:?#/[]@%\x00\x7f\x80\xff0123456789Hh";

function randomHead(next: () => number): string {
  const pick = <T>(list: readonly T[]) =>
    list[Math.floor(next() * list.length)]!;
  const rare = (right: string, list: readonly string[]) =>
    next() < 0.93 ? right : pick(list);
  let head = `${rare("GET", METHODS)} ${rare("/", TARGETS)}${
    rare(" ", [" ", "  ", "\t", ""])
  }${rare("HTTP/1.1", VERSIONS)}${rare("\r\n", LINE_ENDS)}`;
  const fields = Math.floor(next() * 6);
  const hostAt = next() < 0.9 ? Math.floor(next() * (fields + 1)) : -1;
  for (let k = 0; k <= fields; k++) {
    const name = rare(k === hostAt ? "Host" : pick(PLAIN_NAMES), NAMES);
    const value = rare(k === hostAt ? "localhost:8080" : "a, b", VALUES);
    const lead = next() < 0.05 ? pick([" ", "\t"]) : "";
    head += `${lead}${name}${rare(": ", SEPARATORS)}${value}${
      rare("", TRAILS)
    }${rare("\r\n", LINE_ENDS)}`;
  }
  head += rare("\r\n", LINE_ENDS);
  if (next() < 0.03) head += pick(["body", "X: y\r\n\r\n", "\r\n"]);
  return head;
}

/** A few bytes of `text` changed, taken out or put in. */
function mutate(text: string, next: () => number): string {
  let head = text;
  const changes = 1 + Math.floor(next() * 3);
  for (let k = 0; k < changes; k++) {
    const at = Math.floor(next() * (head.length + 1));
    const byte = next() < 0.7
      ? SPECIAL[Math.floor(next() * SPECIAL.length)]!
      : String.fromCharCode(Math.floor(next() * 256));
    const what = next();
    if (what < 0.4) head = head.slice(0, at) + byte + head.slice(at + 1);
    else if (what < 0.7) head = head.slice(0, at) + byte + head.slice(at);
    else head = head.slice(0, at) + head.slice(at + 1);
  }
  return head;
}

Deno.test("both parsers agree on 40,000 random heads", () => {
  const seed = Date.now() % 1_000_000;
  const next = random(seed);
  let taken = 0;
  let refused = 0;
  for (let k = 0; k < 40_000; k++) {
    const generated = randomHead(next);
    const text = next() < 0.5 ? generated : mutate(generated, next);
    const head = bytes(text);
    try {
      if (assertSameResult(head)) taken++;
      if (!parseHeadByRules(head).ok) refused++;
    } catch (error) {
      throw new Error(`seed ${seed}, head ${k}: ${(error as Error).message}`);
    }
  }
  // Both sides are well exercised: many heads taken in one pass, many refused.
  assert.ok(taken > 6_000, `only ${taken} heads took the one-pass parser`);
  assert.ok(refused > 20_000, `only ${refused} heads were refused`);
});
