"""The HTTP benchmark: ipgeo and baselines under wrk (``python -m bench.http``)."""
