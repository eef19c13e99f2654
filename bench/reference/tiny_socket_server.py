#!/usr/bin/env python3
"""The textbook's tiny socket server (its lecture variant), kept as a benchmark baseline.

    python3 bench/reference/tiny_socket_server.py [PORT] [--quiet]

This is the program our users come from, written the way the chapter writes it:
one socket, a loop that accepts a connection, reads one 1024-byte chunk, prints
it, sends a fixed response and closes. `deno task bench` measures our
server_tiny.ts against it.

It keeps the textbook's flaws on purpose (one read taken as the whole request,
one client at a time, no timeout) and is not a model to copy; see
server_tiny.ts for a correct server. Three changes make it measurable:
- the response carries Content-Length, so the load generator knows where it
  ends instead of counting every response as a read error;
- the listen backlog is 128, so the kernel queues concurrent connections
  rather than dropping them and timing the retries;
- a client that hangs up early is ignored instead of ending the program
  (wrk drops its open connections when a run stops).
--quiet skips printing each request, as `server_tiny.ts --quiet` does.
"""

import socket
import sys

BODY = b"<html><body><h1>hello from our tiny server</h1></body></html>"
RESPONSE = (
    b"HTTP/1.1 200 OK\r\n"
    b"Content-Type: text/html; charset=UTF-8\r\n"
    b"Content-Length: " + str(len(BODY)).encode("ascii") + b"\r\n"
    b"Connection: close\r\n"
    b"\r\n" + BODY
)


def main():
    args = [arg for arg in sys.argv[1:] if arg != "--quiet"]
    quiet = "--quiet" in sys.argv[1:]
    port = int(args[0]) if args else 8080

    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", port))
    server.listen(128)
    print("Open your browser and connect to: http://127.0.0.1:%d" % port, flush=True)

    while True:
        connection, address = server.accept()
        try:
            request = connection.recv(1024).decode("utf-8", errors="replace")
            if not quiet:
                print(request)
            connection.sendall(RESPONSE)
        except OSError:
            pass  # the client hung up first
        connection.close()


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        pass
