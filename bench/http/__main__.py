"""``python -m bench.http``: see bench/http/run.py."""

from bench.http.run import main

raise SystemExit(main())
