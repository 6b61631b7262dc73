"""``netsqueeze compress --max-drop`` end to end on the MNIST sample, and its recipe."""

import json

import pytest
import torch

from netsqueeze.cli.main import main
from netsqueeze.experiments.recipe import load_recipe
from netsqueeze.models import build
from netsqueeze.nn.export import load_compressed
from netsqueeze.nn.prune import prune_, pruning_report
from netsqueeze.nn.share import share_report, share_weights_


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    from netsqueeze import data
    from netsqueeze.auto import validation_split
    from netsqueeze.models.checkpoint import save_checkpoint
    from netsqueeze.nn.train import TrainConfig, train

    torch.set_num_threads(1)
    ds = data.load("mnist-sample")
    tr, _ = validation_split(ds.y_train, 0.1, seed=0)
    torch.manual_seed(0)
    m = build("lenet-300-100")
    train(m, ds.x_train[tr], ds.y_train[tr], TrainConfig(iterations=250), progress=False)
    path = tmp_path_factory.mktemp("ck") / "trained.pt"
    save_checkpoint(m, path, arch="lenet-300-100")
    return path


@pytest.mark.slow
def test_max_drop_end_to_end_and_recipe_reproduces_the_allocation(checkpoint, tmp_path, capsys):
    out = tmp_path / "run"
    rc = main(["compress", "--model", "lenet-300-100", "--checkpoint", str(checkpoint),
               "--dataset", "mnist-sample", "--max-drop", "3", "--max-rounds", "2", "-q",
               "-o", str(out)])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "model.nsq" in printed and "smaller than dense" in printed
    for name in ("results.json", "recipe.toml", "table.md", "sensitivity.json", "pareto.png",
                 "sensitivity.png", "model.nsq"):
        assert (out / name).is_file(), name
    res = json.loads((out / "results.json").read_text())
    s = res["summary"]
    assert res["decided_on"]["allocation"] == "validation"
    assert res["decided_on"]["reported accuracy"].startswith("test")
    assert res["split"]["validation_images"] == 400
    # the confirmation split: 5 % of the training set more, out of training too
    sp = res["split"]
    assert sp["confirmation_images"] == 200
    assert sp["training_images"] + sp["validation_images"] + sp["confirmation_images"] == 4000
    assert res["decided_on"]["choice of the final model"] == "validation and confirmation"
    for r in res["search"]["rounds"]:
        assert (r["confirm_accuracy"] is not None) == r["meets_budget"]
    # it allows the drop the search may spend on validation (the budget less the validation
    # margin), less half its own standard error, from the trained model's confirmation level
    se = (s["trained_val_accuracy"] * (1 - s["trained_val_accuracy"]) / 200) ** 0.5
    assert res["confirmation_tolerance_pp"] == pytest.approx(100 * se / 2)
    srch = res["search"]
    assert srch["confirm_floor"] == pytest.approx(
        srch["confirm_baseline"] - (srch["baseline_accuracy"] - srch["floor_accuracy"]) - se / 2)
    assert s["final_val_accuracy"] >= s["trained_val_accuracy"] - 0.02 - 1e-9
    chosen = res["search"]["rounds"][res["search"]["chosen"]]
    assert chosen["meets_budget"] and chosen["file_bytes"] <= res["search"]["rounds"][0][
        "file_bytes"]
    # the file decodes to a model with the reported test accuracy
    from netsqueeze import data
    from netsqueeze.nn.train import evaluate

    ds = data.load("mnist-sample")
    back = load_compressed(out / "model.nsq")
    assert evaluate(back, ds.x_test, ds.y_test) == pytest.approx(s["final_test_accuracy"])
    # the recipe reproduces the allocation: per-layer sparsity and bits
    recipe = load_recipe(out / "recipe.toml")
    m = build("lenet-300-100")
    assert any(v > 0 for v in s["sparsity"].values()) and s["bits"]
    prune_(m, recipe.prune.config_for(recipe.prune.steps))
    got = {la.name: la.sparsity for la in pruning_report(m).layers}
    for name, sp in s["sparsity"].items():
        assert got[name] == pytest.approx(sp, abs=1e-4)
    share_weights_(m, recipe.share)
    assert {r.name: r.bits for r in share_report(m)} == s["bits"]
    assert recipe.share.bias_bits == s["bias_bits"]
    # and the sharing method: entropy-constrained (importance-weighted) when that was chosen
    assert recipe.share.rate_delta == s["ecsq_delta"]
    assert recipe.share.method == ("lloyd" if s["ecsq_delta"] is None else "ecsq")
    assert recipe.share.importance == (None if s["ecsq_delta"] is None else "fisher")
    ecsq = [r for r in res["search"]["rounds"]
            if r["ecsq_delta"] is not None and r["phase"] == "share"]
    assert ecsq and all("entropy-constrained" in r["note"] for r in ecsq)
    # bias rounds after an entropy-constrained sharing carry its delta
    for r in res["search"]["rounds"]:
        if r["phase"] == "bias" and r["ecsq_delta"] is not None:
            assert r["ecsq_delta"] in {e["ecsq_delta"] for e in ecsq if e["meets_budget"]}


def test_cli_budget_errors(tmp_path, capsys):
    assert main(["compress", "--model", "lenet5", "--max-drop", "-1", "-o",
                 str(tmp_path)]) == 2
    assert "--max-drop" in capsys.readouterr().err
    assert main(["compress", "--model", "lenet5", "--recipe", "lenet5", "--max-error", "1",
                 "-o", str(tmp_path)]) == 2
    assert "exclude each other" in capsys.readouterr().err
    assert main(["compress", "--model", "lenet5", "--time-budget", "10", "-o",
                 str(tmp_path)]) == 2
    assert "needs a budget" in capsys.readouterr().err
    assert main(["compress", "--model", "lenet5", "--recipe", "lenet5", "--workers", "2",
                 "-o", str(tmp_path)]) == 2
    assert "automatic search" in capsys.readouterr().err


def test_sensitivity_command_parses():
    from netsqueeze.cli.main import build_parser

    args = build_parser().parse_args(["sensitivity", "--model", "lenet-300-100",
                                      "--retrain-iterations", "5"])
    assert args.retrain_iterations == 5 and args.val_fraction == 0.1


def test_recipe_toml_round_trips_dotted_layer_names(tmp_path):
    from netsqueeze.experiments.auto_compress import recipe_toml
    from netsqueeze.experiments.recipe import StorageConfig
    from netsqueeze.nn.train import TrainConfig

    text = recipe_toml("auto-x", 'a "quoted" description', TrainConfig(iterations=10),
                       {"features.0": 0.9317, "classifier.fc": 0.0}, {"features.0": 3,
                                                                      "classifier.fc": 6},
                       steps=3, retrain_cfg=TrainConfig(iterations=7, lr=1e-4),
                       fine_cfg=TrainConfig(iterations=5), storage=StorageConfig(fc_gap_bits=4))
    path = tmp_path / "r.toml"
    path.write_text(text)
    r = load_recipe(path)
    assert r.prune.config.sparsity == {"features.0": 0.9317, "classifier.fc": 0.0}
    assert r.prune.steps == 3 and r.prune.retrain.iterations == 7
    assert r.share.bits == {"features.0": 3, "classifier.fc": 6}
    assert r.finetune.iterations == 5 and r.storage.fc_gap_bits == 4
    assert r.description == 'a "quoted" description'


TINY_NET = '''
import torch
from torch import nn


class Tiny(nn.Module):
    def __init__(self, hidden: int = 16):
        super().__init__()
        self.fc1 = nn.Linear(64, hidden)
        self.fc2 = nn.Linear(hidden, 3)

    def forward(self, x):
        return self.fc2(torch.relu(self.fc1(x.flatten(1))))
'''


def _npz_with_val(tmp_path):
    import numpy as np

    rng = np.random.RandomState(0)
    proto = rng.randint(0, 255, (3, 1, 8, 8))

    def part(n, seed):
        r = np.random.RandomState(seed)
        y = r.randint(0, 3, n)
        x = np.clip(proto[y] + r.randint(-40, 40, (n, 1, 8, 8)), 0, 255).astype(np.uint8)
        return x, y.astype(np.int64)

    (xt, yt), (xv, yv), (xs, ys) = part(300, 1), part(57, 2), part(90, 3)
    path = tmp_path / "d.npz"
    np.savez(path, x_train=xt, y_train=yt, x_val=xv, y_val=yv, x_test=xs, y_test=ys)
    return path


def test_sensitivity_of_a_custom_model_on_the_data_sets_own_validation(tmp_path, capsys):
    """A user's model file and an npz with x_val / y_val: the validation images are the data
    set's own (57 of them), not a split of the training set."""
    (tmp_path / "net.py").write_text(TINY_NET)
    data = _npz_with_val(tmp_path)
    out = tmp_path / "sens"
    rc = main(["sensitivity", "--model", f"{tmp_path / 'net.py'}:Tiny", "--model-args",
               '{"hidden": 8}', "--dataset", f"npz:{data}", "--device", "cpu", "-q",
               "-o", str(out)])
    assert rc == 0, capsys.readouterr().err
    res = json.loads((out / "sensitivity.json").read_text())
    assert res["meta"]["validation"] == "the data set's own x_val / y_val"
    assert {la["name"] for la in res["layers"]} == {"fc1", "fc2"}
    assert (out / "sensitivity.png").is_file()
    assert not (out / ".state").exists()  # progress is kept only while the run goes on
    # --resume of a finished run: nothing to resume, a fresh run says so
    rc = main(["sensitivity", "--model", f"{tmp_path / 'net.py'}:Tiny", "--model-args",
               '{"hidden": 8}', "--dataset", f"npz:{data}", "--device", "cpu", "-q",
               "--resume", "-o", str(out)])
    assert rc == 0
    assert json.loads((out / "sensitivity.json").read_text())["layers"] == res["layers"]
    rc = main(["sensitivity", "--model", f"{tmp_path / 'net.py'}:Nope", "--dataset",
               f"npz:{data}", "-o", str(out)])
    assert rc == 2
    assert "Nope" in capsys.readouterr().err
