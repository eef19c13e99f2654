#!/usr/bin/env python3
"""The textbook's Tiny Message Board on http.server, kept as a benchmark baseline.

    python3 bench/reference/board_httpserver.py [--port 8080] [--seed FILE.jsonl]
                                                [--save FILE.json] [--quiet]

This is the board our users come from, written the way the chapter writes it:
an HTTPServer with a BaseHTTPRequestHandler, messages kept in a Python list,
do_POST reads Content-Length bytes, parses the urlencoded body, clears or
appends, and answers with the whole page drawn again. `deno task bench`
measures our message_board.ts against it.

Two modes:
- in memory (the default): the chapter's board; the main baseline.
- --save FILE: the chapter's persistence exercise. The whole list is written
  to FILE after every change and read back at start-up (an empty board when
  FILE is missing). Note it never calls fsync, so a reply does not mean the
  message is on disk, and a crash in the middle of a save loses the file.

It keeps the textbook's flaws on purpose (message text goes into the page
unescaped, a refresh posts again, anyone can clear everything) and must never
be exposed to anyone: it listens on 127.0.0.1 only. See message_board.ts for a
correct board. Changes that make it measurable:
- --seed loads messages from a JSON Lines file in message_board.ts's format,
  so both boards start from the same messages;
- responses carry Content-Length, so the load generator knows where a page
  ends; the listen backlog is 128 so the kernel queues concurrent clients;
- --quiet turns off the per-request log line.
"""

import argparse
import datetime
import json
import os
from http.server import BaseHTTPRequestHandler, HTTPServer
from urllib.parse import parse_qs

messages = []  # each message is {"posted": "...", "text": "..."}
save_file = None
quiet = False

PAGE = """<!DOCTYPE html>
<html>
<head><meta charset="utf-8"><title>Tiny Message Board</title></head>
<body>
<h1>Tiny Message Board</h1>
<h2>Messages</h2>
{messages}
<h2>New Message</h2>
<form method="post">
<textarea name="message" rows="4" cols="50"></textarea><br>
<input type="submit" value="Save Message">
</form>
<form method="post">
<input type="submit" name="clear" value="Clear Messages">
</form>
</body>
</html>
"""


def load_messages(seed):
    """Reads the saved list, or the seed file, or starts empty."""
    if save_file and os.path.exists(save_file):
        with open(save_file) as f:
            return json.load(f)
    if seed:
        loaded = []
        with open(seed) as f:
            for line in f:
                if line.strip():
                    message = json.loads(line)
                    posted = datetime.datetime.fromisoformat(message["postedAt"].replace("Z", "+00:00"))
                    loaded.append({"posted": posted.strftime("%Y-%m-%d %H:%M:%S"), "text": message["text"]})
        return loaded
    return []


def save_messages():
    """The exercise's persistence: write the whole list after every change."""
    if save_file:
        with open(save_file, "w") as f:
            json.dump(messages, f)


class MessageHandler(BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_page()

    def do_POST(self):
        length = int(self.headers["Content-Length"])
        body = self.rfile.read(length).decode("utf-8")
        fields = parse_qs(body)
        if "clear" in fields:
            messages.clear()
        elif "message" in fields:
            posted = datetime.datetime.now().strftime("%Y-%m-%d %H:%M:%S")
            messages.append({"posted": posted, "text": fields["message"][0]})
        save_messages()
        self.send_page()

    def send_page(self):
        shown = "<br>\n".join(
            "Posted: " + message["posted"] + "<br>\n" + message["text"] for message in messages
        )
        page = PAGE.format(messages=shown).encode("utf-8")
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(page)))
        self.end_headers()
        self.wfile.write(page)

    def log_message(self, format, *args):
        if not quiet:
            super().log_message(format, *args)


class BoardServer(HTTPServer):
    request_queue_size = 128


def main():
    global messages, save_file, quiet
    parser = argparse.ArgumentParser(description="The textbook's message board (benchmark baseline).")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--seed", help="JSON Lines file of messages to start with")
    parser.add_argument("--save", help="save the whole list to this file after every change")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args()
    save_file = args.save
    quiet = args.quiet
    messages = load_messages(args.seed)

    server = BoardServer(("127.0.0.1", args.port), MessageHandler)
    print("Open your browser and connect to: http://127.0.0.1:%d/" % args.port, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    server.server_close()


if __name__ == "__main__":
    main()
