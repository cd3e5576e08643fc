#!/usr/bin/env python3
"""Opens many concurrent server-sent event streams against one server and
reports how they arrived, and the server workers' memory meanwhile.

    stream_client.py --port P --path /v1/chat/completions --body FILE \
        [--header 'Authorization: Bearer ...'] --streams 100 --events 60 \
        [--ramp 1.0] [--pids 123,124] [--end 'data: [DONE]'] [--out result.json]

Each stream is one HTTP/1.1 POST (Connection: close).  Streams start
evenly over --ramp seconds, so they overlap the way independent clients
do.  Every content event the mock upstream writes carries its send time as
"t=<seconds.milliseconds>" (nginx's $msec) in its text; translated or not,
the text reaches the client, so each event's delay from the upstream's
write to the client's read is measured directly.

Reported (milliseconds): time to first byte of the response, time to the
first event, per-event delay (median, p90, p99, mean), the events and bytes
received, streams that failed or ended early, and the summed VmRSS of
--pids sampled every --sample-interval (idle before, peak while streams are
open, early and late in the streams: 10-30 % and 70-95 % of all events
received) and their VmHWM at the end.
"""

import argparse
import asyncio
import json
import re
import sys
import time
import os

# worker memory is read the way the rest of the harness reads it
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
from servers import rss_kb  # noqa: E402

TS = re.compile(rb"t=(\d+\.\d{3}) ")


def pct(values, p):
    if not values:
        return None
    values = sorted(values)
    k = min(len(values) - 1, max(0, int(round(p / 100.0 * (len(values) - 1)))))
    return values[k]


class Stream(asyncio.Protocol):
    """one streamed response: HTTP head, chunked body, SSE events"""

    received = 0                        # content events, all streams

    def __init__(self, request, end_marker, delays, done):
        self.request = request
        self.end_marker = end_marker
        self.delays = delays            # shared list of per-event delays (s)
        self.done = done
        self.t_send = None
        self.t_first_byte = None
        self.t_first_event = None
        self.status = None
        self.raw = bytearray()          # undecoded bytes
        self.head = True
        self.chunked = False
        self.chunk_left = 0             # data bytes left in the current chunk
        self.chunk_crlf = 0             # CRLF bytes after it still to skip
        self.body = bytearray()         # decoded, not yet split into events
        self.events = 0
        self.content_events = 0
        self.bytes = 0
        self.complete = False           # the end marker arrived
        self.error = None

    def connection_made(self, transport):
        self.transport = transport
        self.t_send = time.time()
        transport.write(self.request)

    def data_received(self, data):
        now = time.time()
        if self.t_first_byte is None:
            self.t_first_byte = now
        self.bytes += len(data)
        self.raw += data
        if self.head:
            end = self.raw.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self.raw[:end]).decode("latin-1")
            del self.raw[:end + 4]
            self.head = False
            try:
                self.status = int(head.split(" ", 2)[1])
            except (IndexError, ValueError):
                self.status = 0
            self.chunked = re.search(r"(?im)^transfer-encoding:\s*chunked", head) is not None
        if self.chunked:
            self._dechunk()
        else:
            self.body += self.raw
            self.raw.clear()
        self._events(now)

    def _dechunk(self):
        raw = self.raw
        while raw:
            if self.chunk_crlf:
                n = min(self.chunk_crlf, len(raw))
                del raw[:n]
                self.chunk_crlf -= n
                continue
            if self.chunk_left:
                n = min(self.chunk_left, len(raw))
                self.body += raw[:n]
                del raw[:n]
                self.chunk_left -= n
                if self.chunk_left == 0:
                    self.chunk_crlf = 2
                continue
            eol = raw.find(b"\r\n")
            if eol < 0:
                return
            size = int(bytes(raw[:eol]).split(b";")[0], 16)
            del raw[:eol + 2]
            if size == 0:
                raw.clear()
                return
            self.chunk_left = size

    def _events(self, now):
        body = self.body
        start = 0
        while True:
            end = body.find(b"\n\n", start)
            if end < 0:
                break
            event = bytes(body[start:end])
            start = end + 2
            if not event.strip():
                continue
            self.events += 1
            m = TS.search(event)
            if m:
                self.content_events += 1
                Stream.received += 1
                self.delays.append(now - float(m.group(1)))
                if self.t_first_event is None:
                    self.t_first_event = now
            if self.end_marker in event:
                self.complete = True
        del body[:start]

    def connection_lost(self, exc):
        if exc is not None:
            self.error = str(exc)
        if not self.done.done():
            self.done.set_result(True)


async def run(args):
    loop = asyncio.get_running_loop()
    with open(args.body, "rb") as f:
        body = f.read()
    head = ["POST %s HTTP/1.1" % args.path, "Host: 127.0.0.1:%d" % args.port,
            "Content-Type: application/json", "Accept: text/event-stream",
            "Content-Length: %d" % len(body), "Connection: close"] + args.header
    request = ("\r\n".join(head) + "\r\n\r\n").encode() + body
    pids = [int(p) for p in args.pids.split(",") if p]
    end_marker = args.end.encode()

    delays = []
    streams = []
    mem = {"idle_rss_kb": rss_kb(pids)[0], "peak_rss_kb": 0, "samples": 0}
    running = True

    expected = float(args.streams * args.events)
    progress = []                       # (share of all events received, rss)

    async def sample():
        while running:
            rss, _ = rss_kb(pids)
            mem["peak_rss_kb"] = max(mem["peak_rss_kb"], rss)
            mem["samples"] += 1
            progress.append((Stream.received / expected, rss))
            await asyncio.sleep(args.sample_interval)

    async def one(i, t0):
        await asyncio.sleep(max(0.0, t0 + args.ramp * i / args.streams - time.time()))
        done = loop.create_future()
        s = Stream(request, end_marker, delays, done)
        streams.append(s)
        try:
            transport, _ = await loop.create_connection(lambda: s, "127.0.0.1", args.port)
        except OSError as e:
            s.error = "connect: %s" % e
            return
        try:
            await asyncio.wait_for(done, args.timeout)
        except asyncio.TimeoutError:
            s.error = "timeout"
            transport.abort()

    sampler = asyncio.ensure_future(sample())
    t0 = time.time() + 0.05
    await asyncio.gather(*(one(i, t0) for i in range(args.streams)))
    elapsed = time.time() - t0
    running = False
    await sampler
    mem["end_rss_kb"], mem["hwm_kb"] = rss_kb(pids)
    # the same streams open, early and late in them: growth with length
    early = [r for p, r in progress if 0.1 <= p <= 0.3]
    late = [r for p, r in progress if 0.7 <= p <= 0.95]
    mem["early_rss_kb"] = max(early) if early else None
    mem["late_rss_kb"] = max(late) if late else None

    ok = [s for s in streams if s.status == 200 and s.complete
          and s.content_events == args.events and s.error is None]
    statuses = {}
    for s in streams:
        statuses[str(s.status)] = statuses.get(str(s.status), 0) + 1
    errors = sorted({s.error for s in streams if s.error})[:5]
    ms = lambda v: None if v is None else round(v * 1000.0, 3)
    ttfb = [s.t_first_byte - s.t_send for s in streams if s.t_first_byte]
    ttfe = [s.t_first_event - s.t_send for s in streams if s.t_first_event]
    return {
        "streams": args.streams, "ok": len(ok), "statuses": statuses, "errors": errors,
        "incomplete": sum(1 for s in streams if s.status == 200 and not s.complete),
        "events_expected": args.events,
        "content_events": sum(s.content_events for s in streams),
        "events": sum(s.events for s in streams),
        "bytes": sum(s.bytes for s in streams),
        "elapsed_s": round(elapsed, 3),
        "ttfb_ms": {"p50": ms(pct(ttfb, 50)), "p99": ms(pct(ttfb, 99))},
        "first_event_ms": {"p50": ms(pct(ttfe, 50)), "p99": ms(pct(ttfe, 99))},
        "event_delay_ms": {"p50": ms(pct(delays, 50)), "p90": ms(pct(delays, 90)),
                           "p99": ms(pct(delays, 99)),
                           "mean": ms(sum(delays) / len(delays)) if delays else None},
        "memory": mem,
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--path", required=True)
    ap.add_argument("--body", required=True, help="request body file")
    ap.add_argument("--header", action="append", default=[])
    ap.add_argument("--streams", type=int, default=10)
    ap.add_argument("--events", type=int, required=True,
                    help="content events each stream must deliver")
    ap.add_argument("--ramp", type=float, default=1.0)
    ap.add_argument("--timeout", type=float, default=300.0)
    ap.add_argument("--pids", default="", help="server worker pids to sample")
    ap.add_argument("--sample-interval", type=float, default=0.05,
                    help="seconds between memory samples")
    ap.add_argument("--end", default="data: [DONE]", help="text of the last event")
    ap.add_argument("--out")
    args = ap.parse_args()
    result = asyncio.run(run(args))
    text = json.dumps(result, indent=1)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")
    else:
        print(text)
    return 0 if result["ok"] == args.streams else 1


if __name__ == "__main__":
    sys.exit(main())
