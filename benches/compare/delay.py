#!/usr/bin/env python3
"""A delaying front for the pull-through benchmark: an HTTP/1.1 relay that
waits DELAY_MS before passing each request on to the upstream, as a
distant index or file host would. Every peer fills through it, so each
pays the same latency per upstream request, with or without keep-alive.

    delay.py LISTEN_PORT UPSTREAM_PORT DELAY_MS

Requests carry no body (GET, HEAD); answers are passed back as they come,
framed by their Content-Length (a static nginx always sends one).
"""
import asyncio
import sys

listen, upstream, delay = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]) / 1000


async def read_head(reader):
    head = await reader.readuntil(b"\r\n\r\n")
    return head


async def relay(client_r, client_w):
    up_r = up_w = None
    try:
        while True:
            try:
                head = await read_head(client_r)
            except (asyncio.IncompleteReadError, ConnectionError):
                return
            await asyncio.sleep(delay)
            if up_w is None:
                up_r, up_w = await asyncio.open_connection("127.0.0.1", upstream)
            up_w.write(head)
            await up_w.drain()
            answer = await read_head(up_r)
            client_w.write(answer)
            lines = answer.decode("latin-1").split("\r\n")
            status = int(lines[0].split(" ")[1])
            length = 0
            for line in lines[1:]:
                if line.lower().startswith("content-length:"):
                    length = int(line.split(":", 1)[1])
            if head.startswith(b"HEAD ") or status in (204, 304):
                length = 0
            while length > 0:
                chunk = await up_r.read(min(length, 1 << 20))
                if not chunk:
                    return
                length -= len(chunk)
                client_w.write(chunk)
                await client_w.drain()
            await client_w.drain()
    finally:
        client_w.close()
        if up_w is not None:
            up_w.close()


async def main():
    server = await asyncio.start_server(relay, "127.0.0.1", listen, backlog=1024)
    async with server:
        await server.serve_forever()


asyncio.run(main())
