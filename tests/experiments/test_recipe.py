import pytest

from netsqueeze.experiments.recipe import BUILTIN_RECIPES, RecipeError, load_recipe, parse_recipe


@pytest.mark.parametrize("name", BUILTIN_RECIPES)
def test_builtin_recipes_load(name):
    r = load_recipe(name)
    assert r.prune is not None and r.share is not None
    assert r.prune.retrain_for(r.prune.steps).iterations >= r.prune.retrain.iterations


def test_retraining_defaults_to_a_tenth_of_the_training_rate():
    r = parse_recipe({"train": {"lr": 0.01}, "prune": {"sparsity": 0.5, "steps": 2},
                      "share": {}, "finetune": {}})
    assert r.prune.retrain.lr == pytest.approx(0.001)  # the paper's retraining rate
    assert r.finetune.lr == pytest.approx(0.001)
    assert r.prune.retrain_for(2) is r.prune.retrain


def test_final_retrain_inherits_from_retrain():
    r = parse_recipe({"prune": {"sparsity": 0.5, "steps": 3, "retrain": {"iterations": 7,
                                                                          "lr": 0.5},
                                "final_retrain": {"iterations": 70}}})
    assert [r.prune.retrain_for(k).iterations for k in (1, 2, 3)] == [7, 7, 70]
    assert r.prune.retrain_for(3).lr == 0.5


def test_paper_choices_in_the_lenet5_recipe():
    r = load_recipe("lenet5")
    final = r.prune.config_for(r.prune.steps).sparsity
    assert final == {"conv1": 0.34, "conv2": 0.88, "fc1": 0.94, "fc2": 0.81}
    assert (r.share.conv_bits, r.share.fc_bits) == (8, 5)
    assert r.share.init == "linear"
    assert (r.storage.conv_gap_bits, r.storage.fc_gap_bits) == (8, 5)


def test_schedule_grows_to_the_final_targets():
    r = parse_recipe({"prune": {"sparsity": 0.8, "steps": 4, "schedule": "linear"}})
    assert [r.prune.config_for(k).sparsity for k in (1, 2, 3, 4)] == pytest.approx(
        [0.2, 0.4, 0.6, 0.8])


def test_sections_are_optional():
    only_prune = parse_recipe({"prune": {"quality": 1.0, "steps": 2}})
    assert only_prune.share is None and only_prune.finetune is None
    only_share = parse_recipe({"share": {"bits": 4}})
    assert only_share.prune is None


@pytest.mark.parametrize(
    "data, match",
    [
        ({"train": {"iteration": 5}}, r"unknown key 'iteration' in \[train\]"),
        ({"prune": {"sparsity": 0.5, "stepz": 2}}, r"unknown key 'stepz' in \[prune\]"),
        ({"prune": {"sparsity": 0.5, "retrain": {"lrr": 1}}}, r"\[prune.retrain\]"),
        ({"prune": {"sparsity": 1.5}}, "sparsity"),
        ({"prune": {"sparsity": 0.5, "quality": 1.0}}, "exactly one"),
        ({"share": {"bits": 40}}, r"\[share\].*bits"),
        ({"share": {"colour": 1}}, r"unknown key 'colour' in \[share\]"),
        ({"finetune": {"iterations": 5}}, r"needs a \[share\]"),
        ({"storage": {"fc_gap_bits": 0}}, "fc_gap_bits"),
        ({"pruning": {}}, "unknown key 'pruning' in \\[top level\\]"),
        ({"train": {"lr": -1}}, "lr must be"),
    ],
)
def test_bad_recipes_name_the_key(data, match):
    with pytest.raises(RecipeError, match=match) as info:
        parse_recipe(data, "my.toml")
    assert str(info.value).startswith("my.toml:")


def test_layer_patterns_are_checked_against_the_model(tmp_path):
    r = parse_recipe({"prune": {"sparsity": {"fc9": 0.5}}})
    with pytest.raises(ValueError, match="fc9"):
        r.validate(["fc1", "fc2"])


def test_recipe_files(tmp_path):
    p = tmp_path / "r.toml"
    p.write_text('name = "x"\n[share]\nbits = 3\n')
    assert load_recipe(p).share.bits == 3
    p.write_text("[share\n")
    with pytest.raises(RecipeError, match="not valid TOML"):
        load_recipe(p)
    with pytest.raises(FileNotFoundError, match="built-in recipes"):
        load_recipe(tmp_path / "missing.toml")
