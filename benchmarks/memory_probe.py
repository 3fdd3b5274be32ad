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
