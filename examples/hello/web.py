"""A small web dyno: serves HTTP on $PORT and logs each request."""
import http.server
import os
import signal
import sys

PORT = int(os.environ["PORT"])
DYNO = os.environ.get("DYNO", "web.?")


class Hello(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = f"Hello from {DYNO} ({os.environ.get('APP_NAME', 'hello')})\n".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, fmt, *args):
        print(f"{self.command} {self.path} -> {fmt % args}", flush=True)


def stop(signum, _frame):
    print(f"{DYNO} got {signal.Signals(signum).name}, finishing up", flush=True)
    sys.exit(0)


# SIGTERM from `hkrun stop` or a container's stop, SIGINT from Ctrl-C: either exits cleanly.
signal.signal(signal.SIGTERM, stop)
signal.signal(signal.SIGINT, stop)
server = http.server.ThreadingHTTPServer(("0.0.0.0", PORT), Hello)
print(f"listening on http://127.0.0.1:{PORT}/", flush=True)
server.serve_forever()
