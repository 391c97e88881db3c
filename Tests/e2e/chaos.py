"""Fault-injection scenarios over real pipelines, checked row by row.

    python Tests/e2e/chaos.py            # the long version (make chaos): 1M rows, 50+ kills
    python Tests/e2e/chaos.py --short    # what make test runs (through test_chaos.py)

Prints a table: scenario, faults injected, rows expected, rows out, lost, duplicated.
"""
from __future__ import annotations

import argparse
import collections
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.ipc as ipc

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import isthmus_bin, python_bin, udf  # noqa: E402
from test_faults import alive, wait_for_workers, write_w1  # noqa: E402


def start(args, tmp, env=None):
    e = dict(os.environ)
    e.setdefault("ISTHMUS_PYTHON", python_bin())
    e["TMPDIR"] = str(tmp)
    e.update(env or {})
    return subprocess.Popen([isthmus_bin(), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=e)


def compare(expected_ids, got_ids):
    counts = collections.Counter(got_ids)
    lost = sum(1 for i in expected_ids if counts.get(i, 0) == 0)
    dup = sum(c - 1 for c in counts.values() if c > 1)
    in_order = got_ids == sorted(got_ids)
    return lost, dup, in_order


def kill_storm(tmp: Path, rows: int, kills: int):
    src = tmp / "in.arrows"
    write_w1(src, rows)
    out = tmp / "out.arrows"
    p = start(["run", "--input", str(src), "--output", str(out), "--udf", f"{udf('slow.py')}:slow_linear",
               "--workers", "2", "--batch-rows", "2000", "--max-retries", "50"], tmp,
              env={"ISTHMUS_TEST_DELAY": "0.01"})
    wait_for_workers(p, 2)
    done = threading.Event()
    injected = 0

    def killer():
        nonlocal injected
        rng = random.Random(42)
        while not done.is_set() and injected < kills:
            time.sleep(rng.uniform(0.05, 0.25))
            try:
                kids = wait_for_workers(p, 1, timeout=5)
            except AssertionError:
                continue
            victim = rng.choice(kids)
            if alive(victim):
                os.kill(victim, signal.SIGKILL)
                injected += 1

    t = threading.Thread(target=killer, daemon=True)
    t.start()
    _, err = p.communicate(timeout=1800)
    done.set()
    t.join()
    if p.returncode != 0:
        raise RuntimeError(f"kill storm run failed ({p.returncode}): {err.decode()[-2000:]}")
    got = ipc.open_stream(str(out)).read_all().column("id").to_pylist()
    return injected, rows, got


def row_errors(tmp: Path, rows: int):
    src = tmp / "in.arrows"
    write_w1(src, rows)
    out = tmp / "out.arrows"
    dead = tmp / "dead.jsonl"
    p = start(["run", "--input", str(src), "--output", str(out), "--udf", f"{udf('slow.py')}:raises_on_multiples_of_97",
               "--workers", "2", "--batch-rows", "5000", "--on-error", f"dead-letter={dead}"], tmp,
              env={"ISTHMUS_TEST_DELAY": "0"})
    _, err = p.communicate(timeout=600)
    if p.returncode != 0:
        raise RuntimeError(f"row-error run failed ({p.returncode}): {err.decode()[-2000:]}")
    good = ipc.open_stream(str(out)).read_all().column("id").to_pylist()
    import json
    failed = [json.loads(l)["id"] for l in dead.read_text().splitlines()]
    return len(failed), rows, sorted(good + failed), good, failed


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--short", action="store_true")
    args = ap.parse_args(argv)
    rows, kills = (60_000, 5) if args.short else (1_000_000, 60)
    table = []
    ok = True
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        (tmp / "a").mkdir()
        injected, expected, got = kill_storm(tmp / "a", rows, kills)
        lost, dup, ordered = compare(range(expected), got)
        table.append(("kill -9 workers", injected, expected, len(got), lost, dup, ordered))
        ok &= lost == 0 and dup == 0 and ordered and injected >= (3 if args.short else 50)
        (tmp / "b").mkdir()
        n_failed, expected, all_ids, good, failed = row_errors(tmp / "b", rows // 2)
        lost, dup, _ = compare(range(expected), all_ids)
        wrong = [i for i in failed if i % 97 != 0] + [i for i in good if i % 97 == 0]
        table.append(("UDF raises on rows (dead-letter)", n_failed, expected, len(good) + len(failed), lost, dup, not wrong))
        ok &= lost == 0 and dup == 0 and not wrong
    print(f"{'scenario':34} {'faults':>7} {'expected':>9} {'rows out':>9} {'lost':>5} {'dup':>5}  ok")
    for name, f, e, o, l, du, good_order in table:
        print(f"{name:34} {f:>7} {e:>9} {o:>9} {l:>5} {du:>5}  {'yes' if good_order and l == 0 and du == 0 else 'NO'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
