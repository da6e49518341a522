"""ipgeo: a self-hosted IP geolocation web service."""

import os

# ipgeo uses numpy for array walks and sorts, never for linear algebra. A numpy built with
# OpenBLAS would otherwise start a BLAS thread pool per process at import (a tenth of a CPU
# second per `ipgeo bulk` run, threads idling in every web worker). Set before numpy loads;
# an operator's own setting wins.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

__version__ = "0.1.0"
