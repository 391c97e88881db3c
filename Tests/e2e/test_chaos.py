"""The short version of the fault-injection suite (make chaos runs the long one)."""
import chaos


def test_chaos_short(capsys):
    assert chaos.main(["--short"]) == 0
    out = capsys.readouterr().out
    assert "kill -9 workers" in out and "NO" not in out
