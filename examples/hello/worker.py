"""A worker dyno: does a job every couple of seconds and logs it."""
import os
import signal
import sys
import time

running = True


def stop(signum, _frame):
    global running
    running = False


# SIGTERM from `hkrun stop` or a container's stop, SIGINT from Ctrl-C: finish the job.
signal.signal(signal.SIGTERM, stop)
signal.signal(signal.SIGINT, stop)
job = 0
while running:
    job += 1
    print(f"job {job} done (DYNO={os.environ['DYNO']})", flush=True)
    if job % 3 == 0:
        print(f"job {job}: a warning on stderr", file=sys.stderr, flush=True)
    time.sleep(2)
print("worker: drained, bye", flush=True)
