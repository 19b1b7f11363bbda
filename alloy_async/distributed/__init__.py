"""Scale-out: many processes on many machines share one budget, one set of caps and one
write-ahead journal, on Redis (extra ``redis``), with taskiq workers (extra ``taskiq``).

``RedisCoordinator`` is the engine's coordinator on Redis; ``run_chunk`` is what a worker task
runs for a chunk of jobs. Importing this package needs the ``redis`` extra
(``pip install 'alloy-async[redis]'``).
"""

from __future__ import annotations

try:
    import redis as _redis  # noqa: F401
except ImportError as exc:  # pragma: no cover - the extra is missing
    raise ImportError(
        "alloy_async.distributed needs the redis extra: pip install 'alloy-async[redis]'"
    ) from exc

from .chunk import run_chunk
from .coordinator import RedisCoordinator, RedisRun

__all__ = ["RedisCoordinator", "RedisRun", "run_chunk"]
