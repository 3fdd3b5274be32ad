"""Process memory for the benchmark workers (they run as scripts, so this folder is on sys.path)."""

import resource


def rss_mib() -> float:
    """Resident set size now, MiB (Linux ``/proc``; NaN elsewhere)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def peak_rss_mib() -> float:
    """Peak resident set size of this process so far, MiB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def print_worker_result(impl: str, marks: list, rss_at_start: float, rss_after_imports: float, **extra) -> None:
    """A benchmark worker's one ``RESULT {json}`` line: per-iteration wall and CPU seconds from ``marks``
    ((perf_counter, process_time) pairs), peak and staged RSS, plus ``extra`` fields.

    One thread: CPU time is the compute, unaffected by other jobs on a shared machine; wall time is what a
    user waits.
    """
    import json

    result = {
        "impl": impl,
        "iteration_seconds": [b[0] - a[0] for a, b in zip(marks, marks[1:])],
        "iteration_cpu_seconds": [b[1] - a[1] for a, b in zip(marks, marks[1:])],
        "peak_rss_mib": peak_rss_mib(),
        "rss_at_start_mib": rss_at_start,
        "rss_after_imports_mib": rss_after_imports,
        **extra,
    }
    print("RESULT " + json.dumps(result))
