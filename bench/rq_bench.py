"""python-rq drain throughput, a reference row for bench/main.ts (see bench/README.md).

    /usr/bin/python3 bench/rq_bench.py REDIS_URL JOBS fork|simple

Enqueues JOBS no-op jobs (not timed), then times one burst worker from its start until the
queue is empty, and prints one JSON line. Not named rq.py: run as a script, its directory comes
first on sys.path, and a module called rq would hide the rq package from itself.
"""

import json
import sys
import time

from redis import Redis
from rq import Queue, SimpleWorker, Worker

QUEUE = "bench"
CHUNK = 1000


def noop():
    """The job: nothing, so that only rq itself is measured."""
    return None


def main():
    url, jobs, mode = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    connection = Redis.from_url(url)
    queue = Queue(QUEUE, connection=connection)
    # The worker imports the job function by name; from __main__ it could not, so use the module.
    from rq_bench import noop as job

    for start in range(0, jobs, CHUNK):
        count = min(CHUNK, jobs - start)
        queue.enqueue_many([Queue.prepare_data(job) for _ in range(count)])

    worker_class = Worker if mode == "fork" else SimpleWorker
    worker = worker_class([queue], connection=connection)
    started = time.perf_counter()
    # WARNING, not INFO: a log line per job would be measured too, and the other side logs none.
    worker.work(burst=True, logging_level="WARNING")
    seconds = time.perf_counter() - started

    finished = queue.finished_job_registry.count
    failed = queue.failed_job_registry.count
    if finished != jobs or failed != 0 or queue.count != 0:
        print(f"rq {mode}: {finished}/{jobs} finished, {failed} failed, {queue.count} left", file=sys.stderr)
        sys.exit(1)
    print(json.dumps({"mode": mode, "jobs": jobs, "seconds": seconds, "jobsPerSecond": jobs / seconds}))


if __name__ == "__main__":
    main()
