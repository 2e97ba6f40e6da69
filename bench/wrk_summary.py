"""Reads `wrk --latency` output on stdin and prints the fields asked for, in order.

Fields: rps, p50, p75, p90, p99 (milliseconds), errors (socket errors plus non-2xx/3xx).
Usage: wrk ... --latency URL | python3 bench/wrk_summary.py rps p50 p99 errors
"""
import re
import sys

text = sys.stdin.read()


def ms(value):
    number, unit = re.match(r"([\d.]+)(\w+)", value).groups()
    return float(number) * {"us": 0.001, "ms": 1, "s": 1000}[unit]


def quantile(q):
    # The distribution lines only: "95.50%" in the stats table must not match.
    return round(ms(re.search(rf"^\s+{q}%\s+(\S+)", text, re.M).group(1)), 3)


def errors():
    sockets = sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", text))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    return sockets + (int(non2xx.group(1)) if non2xx else 0)


fields = {
    "rps": lambda: round(float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1)), 2),
    "p50": lambda: quantile(50),
    "p75": lambda: quantile(75),
    "p90": lambda: quantile(90),
    "p99": lambda: quantile(99),
    "errors": errors,
}
print(" ".join(str(fields[name]()) for name in sys.argv[1:]))
