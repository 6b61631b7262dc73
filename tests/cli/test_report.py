"""report.html (rendered, and loaded in headless Chromium), recipe show, compress knobs, and
zero-weights' chosen points as files."""

import json
import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import numpy as np
import pytest
import torch

from netsqueeze.cli import main
from netsqueeze.cli.compress import apply_overrides
from netsqueeze.core.container import read_nsq
from netsqueeze.data import load
from netsqueeze.experiments import zero_weights as zw
from netsqueeze.experiments.html_report import figure_ids, write_report
from netsqueeze.experiments.recipe import load_recipe
from netsqueeze.nn.export import load_compressed
from netsqueeze.nn.train import TrainConfig, evaluate
from tests.cli.clitools import assert_one_line_error, cli

TINY_RECIPE = """
name = "tiny"
description = "a few iterations of every stage, for tests"
[train]
iterations = 40
[prune]
sparsity = 0.5
steps = 3
[prune.retrain]
iterations = 10
[share]
conv_bits = 5
fc_bits = 4
[finetune]
iterations = 10
"""


@pytest.fixture(scope="module")
def zw_run(tmp_path_factory):
    """A small zero-weights run on the bundled sample, with the chosen points saved."""
    out = tmp_path_factory.mktemp("zw")
    spec = zw.ZeroWeightsSpec(dataset="mnist-sample", train=TrainConfig(iterations=60, seed=0),
                              threshold_num=6, cluster_starts=(12, 24, 48, 12), cluster_steps=3,
                              device="cpu", save_chosen=True)
    results = zw.run_zero_weights(spec, out, progress=False, plots=False, log=lambda s: None)
    write_report(out)
    return out, results


@pytest.fixture(scope="module")
def compress_run(tmp_path_factory):
    """A tiny compress run through the command line, with every recipe knob overridden."""
    out = tmp_path_factory.mktemp("compress")
    recipe = out / "tiny.toml"
    recipe.write_text(TINY_RECIPE)
    code = main.main(["compress", "--model", "lenet-300-100", "--recipe", str(recipe),
                      "--dataset", "mnist-sample", "--device", "cpu", "-q", "-o", str(out),
                      "--sparsity", "fc1=0.9,fc2=0.8,fc3=0.5", "--bits", "3",
                      "--iterations", "50", "--steps", "2"])
    assert code == 0
    return out, json.loads((out / "results.json").read_text())


# ------------------------------------------------------------------------------------------
# the page, without a browser
# ------------------------------------------------------------------------------------------


def assert_self_contained(text: str):
    low = text.lower()
    assert "<script src" not in low and "<link" not in low and "@import" not in low
    assert "url(" not in low
    assert not re.search(r"(src|href)\s*=", low)
    assert "http://" not in low and "https://" not in low


def key_numbers_zero_weights(r: dict) -> list[str]:
    a = r["answers"]
    out = [f"{r['train']['accuracy']:.4f}", r["dataset"]["fingerprint"],
           r["versions"]["torch"], f"{r['model']['weights']:,}"]
    if a["zero"]:
        out += [f"{100 * a['zero']['zero_fraction']:.1f} %", f"{a['zero']['threshold']:.4f}"]
    if a["clusters_within_tolerance"]:
        out.append(f"{a['clusters_within_tolerance']['distinct_weights']:,} distinct values")
    for c in (r.get("chosen_files") or {}).values():
        out += [c["path"], f"{c['bytes']:,} bytes"]
    return out


def key_numbers_compress(r: dict) -> list[str]:
    s, t = r["summary"], r["file"]["totals"]
    return [f"{s['trained_error_pct']:.2f} %", f"{s['final_error_pct']:.2f} %",
            f"{t['file_bytes']:,} bytes", f"{t['ratio_to_dense']:.1f}x",
            r["dataset"]["fingerprint"], r["versions"]["torch"], "--sparsity"]


def test_zero_weights_report_holds_answers_tables_figures(zw_run):
    out, r = zw_run
    text = (out / "report.html").read_text()
    assert_self_contained(text)
    for number in key_numbers_zero_weights(r):
        assert number in text, number
    for fid in figure_ids(r):
        assert f'id="{fid}"' in text
    for tid in ("tbl-cluster-sweep", "tbl-threshold-sweep", "tbl-zero-per-layer",
                "tbl-file-threshold", "tbl-file-clusters"):
        assert f'id="{tid}"' in text, tid
    # every point of every curve carries its values (hover text)
    n_points = (len(r["threshold_sweep"]["layers"]) + 2) * len(r["threshold_sweep"]["thresholds"])
    n_points += len(r["cluster_sweep"]["accuracy"])
    assert text.count('class="pt"') == n_points


def test_compress_report_and_knobs_recorded(compress_run):
    out, r = compress_run
    assert r["spec"]["overrides"] == {"sparsity": {"fc1": 0.9, "fc2": 0.8, "fc3": 0.5},
                                      "bits": 3, "iterations": 50, "steps": 2}
    assert r["recipe"]["prune"]["steps"] == 2 and r["recipe"]["share"]["bits"] == 3
    assert r["recipe"]["train"]["iterations"] == 50
    assert r["stages"][0]["train"]["iterations"] == 50
    assert [s["stage"] for s in r["stages"]] == ["train", "prune 1/2", "prune 2/2", "share",
                                                 "finetune"]
    kept = {x["layer"]: x["kept_fraction"] for x in r["table"]}
    assert kept == pytest.approx({"fc1": 0.1, "fc2": 0.2, "fc3": 0.5}, abs=1e-3)
    assert max(x["distinct"] for x in r["table"]) <= 8  # 3 bits
    text = (out / "report.html").read_text()  # written by the command
    assert_self_contained(text)
    for number in key_numbers_compress(r):
        assert number in text, number
    for fid in figure_ids(r):
        assert f'id="{fid}"' in text
    for layer in ("fc1", "fc2", "fc3"):
        assert f"<td class=\"l\">{layer}</td>" in text


def test_report_is_redrawn_from_results_json_alone(compress_run, tmp_path, capsys):
    out, _ = compress_run
    run = tmp_path / "copy"
    run.mkdir()
    shutil.copy(out / "results.json", run / "results.json")  # nothing else of the run
    code, stdout, _ = cli(capsys, "report", run)
    assert code == 0 and "report.html" in stdout
    assert (run / "report.html").read_bytes() == (out / "report.html").read_bytes()


def test_report_errors_are_one_line(tmp_path, capsys):
    code, _, err = cli(capsys, "report", tmp_path / "nothing")
    assert_one_line_error(code, err, "report", "results.json: no such file")
    (tmp_path / "results.json").write_text('{"kind": "sweep"}')
    code, _, err = cli(capsys, "report", tmp_path)
    assert_one_line_error(code, err, "report", "no report for results of kind 'sweep'")
    (tmp_path / "results.json").write_text('{"kind": "compress", "spec": {}}')
    code, _, err = cli(capsys, "report", tmp_path)
    assert_one_line_error(code, err, "report", "lack a field")
    (tmp_path / "results.json").write_text('{"kind": "comp')
    code, _, err = cli(capsys, "report", tmp_path)
    assert_one_line_error(code, err, "report", "not valid JSON")


# ------------------------------------------------------------------------------------------
# in a real browser
# ------------------------------------------------------------------------------------------


def chromium_binary() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        path = shutil.which(name)
        if path:
            return path
    pytest.skip("no Chromium found: install Debian's chromium package "
                "(apt-get install chromium) to run the browser test")


def open_in_chromium(page: Path, workdir: Path, screenshot: Path | None = None):
    """Load ``page`` from disk in headless Chromium; return (DOM after scripts ran, stderr)."""
    exe = chromium_binary()
    flags = [exe, "--headless", "--no-sandbox", "--disable-gpu",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--no-first-run", "--enable-logging=stderr", "--v=0",
             f"--user-data-dir={workdir / 'profile'}", "--window-size=1200,2600"]
    proc = subprocess.run([*flags, "--dump-dom", page.resolve().as_uri()],
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    if screenshot is not None:
        shot = subprocess.run([*flags, f"--screenshot={screenshot}", page.resolve().as_uri()],
                              capture_output=True, text=True, timeout=120, check=False)
        assert shot.returncode == 0, shot.stderr[-2000:]
    return proc.stdout, proc.stderr


def console_errors(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines()
            if "CONSOLE" in line and ("Uncaught" in line or "Error" in line)]


def check_rendered(dom: str, stderr: str) -> None:
    body = re.search(r"<body[^>]*>", dom)
    assert body, dom[:500]
    assert "data-errors" not in body.group(0), body.group(0)
    assert 'data-ready="1"' in body.group(0), "the page's script did not run to its end"
    assert console_errors(stderr) == []


@pytest.mark.parametrize("which", ["zero-weights", "compress"])
def test_report_renders_in_chromium(which, zw_run, compress_run, tmp_path):
    out, r = zw_run if which == "zero-weights" else compress_run
    shot = tmp_path / f"report-{which}.png"
    dom, stderr = open_in_chromium(out / "report.html", tmp_path, screenshot=shot)
    check_rendered(dom, stderr)
    for fid in figure_ids(r):
        m = re.search(rf'<figure[^>]*id="{fid}"[^>]*>(.*?)</figure>', dom, re.DOTALL)
        assert m, f"figure {fid} missing"
        assert "<svg" in m.group(1)
    numbers = key_numbers_zero_weights(r) if which == "zero-weights" else key_numbers_compress(r)
    for number in numbers:
        assert number in dom, number
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000
    print(f"screenshot: {shot}")


def test_chromium_check_catches_a_script_error(zw_run, tmp_path):
    """The browser check fails on a page whose script breaks (so its passing means something)."""
    out, _ = zw_run
    broken = tmp_path / "broken.html"
    text = (out / "report.html").read_text()
    broken.write_text(text.replace("<script>", "<script>undefinedFunction();", 1))
    dom, stderr = open_in_chromium(broken, tmp_path)
    with pytest.raises(AssertionError):
        check_rendered(dom, stderr)


def test_sorting_and_hover_work_in_chromium(compress_run, tmp_path):
    out, r = compress_run
    probe = """<script>
    var t=document.getElementById('tbl-file'), th=t.tHead.rows[0].cells[9];
    th.click(); var asc=[].map.call(t.tBodies[0].rows, function(r){return r.cells[0].textContent});
    th.click(); var desc=[].map.call(t.tBodies[0].rows, function(r){return r.cells[0].textContent});
    var pt=document.querySelector('#fig-stages .pt');
    pt.dispatchEvent(new MouseEvent('mousemove', {clientX: 50, clientY: 50, bubbles: true}));
    var tip=document.getElementById('tip');
    document.body.setAttribute('data-probe', JSON.stringify({asc: asc, desc: desc,
      tip: tip.textContent, shown: tip.style.display}));
    </script></body>"""
    page = tmp_path / "probe.html"
    page.write_text((out / "report.html").read_text().replace("</body>", probe))
    dom, stderr = open_in_chromium(page, tmp_path)
    check_rendered(dom, stderr)
    raw = re.search(r"data-probe=\"([^\"]*)\"", dom).group(1)
    probe = json.loads(raw.replace("&quot;", '"').replace("&amp;", "&"))
    by_bytes = sorted(r["file"]["layers"], key=lambda n: r["file"]["layers"][n]["bytes"])
    assert probe["asc"] == [n or "(model)" for n in by_bytes]
    assert probe["desc"] == probe["asc"][::-1]
    first = r["stages"][0]
    assert probe["shown"] == "block"
    assert probe["tip"].startswith(f"train: top-1 error {100 * (1 - first['accuracy']):.2f} %")


# ------------------------------------------------------------------------------------------
# zero-weights' answers as files
# ------------------------------------------------------------------------------------------


def test_chosen_point_files_reproduce_the_sweep(zw_run):
    out, r = zw_run
    a, chosen = r["answers"], r["chosen_files"]
    assert set(chosen) == {"threshold", "clusters"}
    ds = load("mnist-sample")
    z = a["zero"]
    thr_model = load_compressed(out / "threshold.nsq")
    assert evaluate(thr_model, ds.x_test, ds.y_test) == z["accuracy"]
    assert chosen["threshold"]["accuracy"] == z["accuracy"]
    weights = [m.weight for m in thr_model.modules() if isinstance(m, torch.nn.Conv2d |
                                                                  torch.nn.Linear)]
    zeros = sum(int((w == 0).sum()) for w in weights) / sum(w.numel() for w in weights)
    assert zeros == pytest.approx(z["zero_fraction"], abs=1e-12)
    c = a["clusters_within_tolerance"] or a["clusters_notebook_rule"]
    clu_model = load_compressed(out / "clusters.nsq")
    assert evaluate(clu_model, ds.x_test, ds.y_test) == c["accuracy"]
    assert chosen["clusters"]["accuracy"] == c["accuracy"]
    distinct = [int(torch.unique(m.weight).numel()) for m in clu_model.modules()
                if isinstance(m, torch.nn.Conv2d | torch.nn.Linear)]
    assert distinct == c["clusters"]
    for key in ("threshold", "clusters"):
        path = out / chosen[key]["path"]
        assert chosen[key]["bytes"] == path.stat().st_size
    assert chosen["clusters"]["bytes"] < chosen["threshold"]["bytes"] < 4 * 48_912
    summary = (out / "summary.md").read_text()
    assert "## The chosen points as files" in summary
    assert f"{chosen['threshold']['bytes']:,}" in summary
    assert f"{chosen['clusters']['bytes']:,}" in summary


def test_pack_threshold_and_clusters_rebuild_the_chosen_files(zw_run, tmp_path, capsys):
    out, r = zw_run
    z = r["answers"]["zero"]
    ks = r["chosen_files"]["clusters"]["clusters"]
    for flag, value, ref in (("--threshold", repr(z["threshold"]), "threshold.nsq"),
                             ("--clusters", ",".join(map(str, ks)), "clusters.nsq")):
        dest = tmp_path / ref
        code, stdout, err = cli(capsys, "pack", out / "model.pt", "-o", dest, flag, value)
        assert code == 0, err
        assert "before encoding:" in stdout
        mine, theirs = read_nsq(dest).arrays(), read_nsq(out / ref).arrays()
        assert mine.keys() == theirs.keys()
        for k in mine:
            assert np.array_equal(mine[k], theirs[k]), k


def test_pack_answer_flags_are_checked(zw_run, tmp_path, capsys):
    out, _ = zw_run
    code, _, err = cli(capsys, "pack", out / "model.pt", "-o", tmp_path / "x.nsq",
                       "--clusters", "4,4")
    assert_one_line_error(code, err, "pack", "one count per layer")
    code, _, err = cli(capsys, "pack", out / "model.pt", "-o", tmp_path / "x.nsq",
                       "--threshold", "-1")
    assert_one_line_error(code, err, "pack", "--threshold must be")
    with pytest.raises(SystemExit) as info:
        main.main(["pack", str(out / "model.pt"), "-o", str(tmp_path / "x.nsq"),
                   "--threshold", "0.1", "--clusters", "2,2,2,2"])
    assert info.value.code == 2
    assert not (tmp_path / "x.nsq").exists()


# ------------------------------------------------------------------------------------------
# recipe show, compress knobs
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["lenet5", "lenet-300-100", "notebook-cnn"])
def test_recipe_show_prints_a_template_that_loads(name, capsys, tmp_path):
    code, stdout, _ = cli(capsys, "recipe", "show", name)
    assert code == 0
    path = tmp_path / "mine.toml"
    path.write_text(stdout)
    tomllib.loads(stdout)
    mine, builtin = load_recipe(path).to_dict(), load_recipe(name).to_dict()
    mine.pop("source"), builtin.pop("source")
    assert mine == builtin


def test_recipe_show_unknown_name(capsys):
    code, _, err = cli(capsys, "recipe", "show", "vgg")
    assert_one_line_error(code, err, "recipe", "no built-in recipe 'vgg'")


def _args(**kw):
    import argparse

    base = {"sparsity": None, "bits": None, "iterations": None, "steps": None}
    base.update(kw)
    return argparse.Namespace(**base)


def test_overrides_change_only_what_is_given():
    base = load_recipe("lenet5")
    recipe, given = apply_overrides(load_recipe("lenet5"), _args())
    assert given == {} and recipe.to_dict() == base.to_dict()
    recipe, given = apply_overrides(load_recipe("lenet5"), _args(sparsity=0.7, steps=2))
    assert given == {"sparsity": 0.7, "steps": 2}
    assert recipe.prune.config.sparsity == 0.7 and recipe.prune.steps == 2
    assert recipe.share.to_dict() == base.share.to_dict()
    assert recipe.train.iterations == base.train.iterations


def test_overrides_add_missing_stages_and_refuse_steps_without_pruning(tmp_path):
    path = tmp_path / "share-only.toml"
    path.write_text("[train]\niterations = 10\n[share]\nfc_bits = 4\n")
    recipe, _ = apply_overrides(load_recipe(path), _args(sparsity=0.5, bits=2))
    assert recipe.prune.config.sparsity == 0.5 and recipe.share.bits == 2
    recipe.validate()
    with pytest.raises(ValueError, match="no \\[prune\\] stage; give --sparsity"):
        apply_overrides(load_recipe(path), _args(steps=3))


@pytest.mark.parametrize("flag,value", [("--sparsity", "1.5"), ("--sparsity", "fc1=x"),
                                        ("--bits", "0"), ("--bits", "fc1"),
                                        ("--steps", "0"), ("--iterations", "-3")])
def test_bad_knob_values_are_usage_errors(flag, value, capsys):
    with pytest.raises(SystemExit) as info:
        main.main(["compress", flag, value])
    assert info.value.code == 2
    assert flag in capsys.readouterr().err


def test_new_commands_are_registered():
    names = {m.NAME for m in main.COMMANDS}
    assert {"report", "recipe"} <= names
