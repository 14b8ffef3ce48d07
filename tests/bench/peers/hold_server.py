#!/usr/bin/python3
"""Plain-HTTP long-poll holder behind the benchmark's backend nginx (127.0.0.1 only).

    hold_server.py --port-file F

  GET /hold[?seconds=S]  answers 200 after S seconds (default 3600), or earlier when the client
                         (nginx, on behalf of a peer) hangs up - like an ActiveSync Ping
  GET /stats             {"held": now, "max_held": since start, "total": requests}
Keep-alive is honoured; asyncio, so 10 000+ held requests cost a few KiB each.
"""
import argparse
import asyncio
import json
import os
import resource
import urllib.parse

STATE = {"held": 0, "max_held": 0, "total": 0}


async def read_head(reader):
    head = await reader.readuntil(b"\r\n\r\n")
    line = head.split(b"\r\n", 1)[0].decode("latin-1")
    parts = line.split(" ")
    return parts[1] if len(parts) >= 2 else "/"


def answer(writer, body, status="200 OK"):
    writer.write(f"HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nContent-Length: {len(body)}\r\n\r\n"
                 .encode() + body)


async def handle(reader, writer):
    try:
        while True:
            try:
                target = await read_head(reader)
            except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
                return
            STATE["total"] += 1
            url = urllib.parse.urlsplit(target)
            if url.path == "/stats":
                answer(writer, json.dumps(STATE).encode())
            elif url.path.startswith("/hold"):
                seconds = float(urllib.parse.parse_qs(url.query).get("seconds", ["3600"])[0])
                STATE["held"] += 1
                STATE["max_held"] = max(STATE["max_held"], STATE["held"])
                try:
                    data = await asyncio.wait_for(reader.read(1), timeout=seconds)
                except asyncio.TimeoutError:
                    data = None
                except ConnectionError:
                    data = b""
                finally:
                    STATE["held"] -= 1
                if data == b"":
                    return  # the client hung up: the long-poll was abandoned
                answer(writer, b"held\n")
            else:
                answer(writer, b"not found\n", "404 Not Found")
            await writer.drain()
    finally:
        writer.close()


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port-file", required=True)
    args = ap.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    server = await asyncio.start_server(handle, "127.0.0.1", 0, backlog=4096)
    port = server.sockets[0].getsockname()[1]
    with open(args.port_file + ".tmp", "w") as f:
        f.write(str(port))
    os.rename(args.port_file + ".tmp", args.port_file)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())
