#!/usr/bin/python3 -I
# TCP proxy used by 'kdc-control.sh ROOT delay MS': waits MS milliseconds on every new connection, then
# relays it to the real KDC. Its own upstream sockets carry SO_MARK so the DNAT rule does not loop them back.
# usage: kdc-delay-proxy.py LISTEN_IP LISTEN_PORT KDC_IP KDC_PORT DELAY_MS MARK
import asyncio, socket, sys

lip, lport, kip, kport, delay_ms, mark = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), \
    int(sys.argv[5]), int(sys.argv[6], 0)


async def pipe(r, w):
    try:
        while True:
            b = await r.read(65536)
            if not b:
                break
            w.write(b)
            await w.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        try:
            w.close()
        except Exception:
            pass


async def handle(cr, cw):
    await asyncio.sleep(delay_ms / 1000.0)
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_MARK, mark)
    s.setblocking(False)
    try:
        await asyncio.get_running_loop().sock_connect(s, (kip, kport))
    except OSError:
        s.close(); cw.close(); return
    ur, uw = await asyncio.open_connection(sock=s)
    await asyncio.gather(pipe(cr, uw), pipe(ur, cw))


async def main():
    srv = await asyncio.start_server(handle, lip, lport, reuse_address=True)
    print("kdc-delay-proxy: %s:%d -> %s:%d delay %d ms" % (lip, lport, kip, kport, delay_ms), flush=True)
    async with srv:
        await srv.serve_forever()

asyncio.run(main())
