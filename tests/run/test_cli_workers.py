"""``--workers`` / ``--ray`` on zero-weights: same results as in this process."""

import pytest

from netsqueeze.cli.main import build_parser, main

SMALL = ["zero-weights", "--dataset", "mnist-sample", "--iterations", "30",
         "--thresholds", "0.01", "0.09", "4", "--cluster-steps", "2", "--device", "cpu", "-q"]


def test_options_parse_and_bad_values_are_one_line_errors(tmp_path, capsys):
    args = build_parser().parse_args(["zero-weights", "--workers", "3", "--ray", "auto"])
    assert args.workers == 3 and args.ray == "auto"
    args = build_parser().parse_args(["zero-weights"])
    assert args.workers is None and args.ray is None
    assert main(SMALL + ["--workers", "0", "-o", str(tmp_path / "w0")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--workers must be an integer >= 1" in err[0]


@pytest.mark.parametrize("extra, kind", [([], "InProcess"), (["--workers", "1"], "InProcess"),
                                         (["--workers", "2"], "LocalProcesses")])
def test_zero_weights_passes_the_executor(tmp_path, monkeypatch, extra, kind):
    # the sweeps' equality on each backend is tested in test_executor.py / test_ray.py; here:
    # the command hands the executor the options ask for to the experiment, and closes it
    from netsqueeze.experiments import zero_weights as zw
    from netsqueeze.run import executor as ex_mod

    seen = {}

    def fake_run(spec, out, *, progress, resume, executor):
        seen["executor"] = executor
        raise ValueError("stop here")

    closed = []
    monkeypatch.setattr(zw, "run_zero_weights", fake_run)
    monkeypatch.setattr(ex_mod.Executor, "close", lambda self: closed.append(self))
    assert main(SMALL + extra + ["-o", str(tmp_path / "out")]) == 2
    assert type(seen["executor"]).__name__ == kind
    assert closed == [seen["executor"]]
    if kind == "LocalProcesses":
        assert seen["executor"].workers == 2


def test_sensitivity_passes_the_executor(tmp_path, monkeypatch, capsys):
    from netsqueeze.experiments import auto_compress

    seen = {}

    def fake_run(spec, out, *, retrain_iterations, progress, log, executor, resume):
        seen["executor"], seen["resume"] = executor, resume

    monkeypatch.setattr(auto_compress, "run_sensitivity", fake_run)
    base = ["sensitivity", "--dataset", "mnist-sample", "-q", "-o", str(tmp_path / "s")]
    assert main(base + ["--workers", "2"]) == 0
    assert type(seen["executor"]).__name__ == "LocalProcesses"
    assert seen["resume"] is False
    assert main(base + ["--resume"]) == 0 and seen["resume"] is True
    assert main(base + ["--workers", "2", "--retrain-iterations", "5"]) == 2
    assert "in this process only" in capsys.readouterr().err
