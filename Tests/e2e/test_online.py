"""End-to-end: the online request path (`isthmus bench latency`, an `OnlineStage`) with the
real CLI and real workers: requests go through the doorbells (PROTOCOL.md section 18) unless
the arena is off, every answer's value is checked by the command, wrong answers and bad flags
are refused with one clear line."""
from __future__ import annotations

import json

from harness import run_cli, udf


def latency(*extra: str, fn: str = "linear", requests: int = 200, warmup: int = 20):
    r = run_cli("bench", "latency", "--udf", f"{udf('basic.py')}:{fn}", "--requests", str(requests),
                "--warmup", str(warmup), *extra, timeout=120)
    return r, r.stdout.decode(), r.stderr.decode()


def test_requests_go_through_the_doorbells() -> None:
    r, out, err = latency()
    assert r.returncode == 0, err
    doc = json.loads(out)
    assert doc["requests"] == 200
    assert doc["doorbell_requests"] == 220  # warm-up included: every one of them
    assert 0 < doc["p50_us"] <= doc["p90_us"] <= doc["p99_us"] <= doc["max_us"]


def test_without_the_arena_requests_use_the_socket() -> None:
    r, out, err = latency("--shm-arena", "0", "--spin", "0")
    assert r.returncode == 0, err
    assert json.loads(out)["doorbell_requests"] == 0


def test_a_wrong_answer_is_refused_with_what_was_expected() -> None:
    r, out, err = latency(fn="linear_off_by_one", requests=10, warmup=2)
    assert r.returncode == 1
    assert out == ""
    assert err.strip().splitlines()[-1] == "error: expected y = 2x + 1 = 1.0 for request 0 but found 2.0"


def test_an_answer_without_y_is_refused() -> None:
    r, out, err = latency(fn="echo_x", requests=10, warmup=2)
    assert r.returncode == 1
    assert out == ""
    assert err.strip().splitlines()[-1] == "error: expected a float64 column y in the answer to request 0 but found columns (x)"


def test_bad_flags_are_usage_errors() -> None:
    r, _, err = latency("--spin", "5parsecs", requests=10, warmup=2)
    assert r.returncode == 2
    assert "--spin: expected a duration like 0, 500us, 5ms, 2.5, 1s or 2m but found '5parsecs'" in err
    r, _, err = latency("--spin", "5ms", requests=10, warmup=2)
    assert r.returncode == 2
    assert "--spin: expected at most 1ms (longer waits are cheaper asleep) but found '5ms'" in err
    r, _, err = latency("--shm-arena", "512K", requests=10, warmup=2)
    assert r.returncode == 2
    assert "--shm-arena: expected 0 (off) or at least 1Mi but found '512K'" in err
