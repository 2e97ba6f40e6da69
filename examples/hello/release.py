"""The release phase: runs once before any dyno starts, like a database migration."""
import os
import time

print(f"release: preparing {os.environ.get('APP_NAME', 'hello')} ...", flush=True)
time.sleep(0.2)
with open(".release-stamp", "w") as stamp:
    stamp.write(time.strftime("%Y-%m-%dT%H:%M:%S\n"))
print("release: done", flush=True)
