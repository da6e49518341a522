"""supervisord event listener: when nginx or uWSGI exits or fails, stop supervisord.

A container must end when one of its programs dies, so that its restart policy (or the
orchestrator) brings back a whole, working container instead of half of one.
"""

import os
import signal
import sys


def main() -> None:
    """Serve supervisord's event listener protocol on stdin/stdout."""
    while True:
        sys.stdout.write("READY\n")
        sys.stdout.flush()
        header = dict(token.split(":", 1) for token in sys.stdin.readline().split())
        payload = sys.stdin.read(int(header.get("len", "0")))
        event = header.get("eventname", "")
        if event in {"PROCESS_STATE_EXITED", "PROCESS_STATE_FATAL"}:
            sys.stderr.write(f"exit-on-failure: {event} {payload}; stopping the container\n")
            sys.stderr.flush()
            os.kill(os.getppid(), signal.SIGTERM)
        sys.stdout.write("RESULT 2\nOK")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
