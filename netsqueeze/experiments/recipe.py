"""Compression recipes: what ``netsqueeze compress`` does, read from a TOML file.

A recipe has up to five sections; leave one out to skip that stage (a recipe without
``[share]`` only prunes, one without ``[prune]`` only shares)::

    name = "lenet5"
    description = "Deep Compression's LeNet-5 setting"

    [train]                 # used when no --checkpoint is given
    iterations = 6000       # any TrainConfig field: lr, batch_size, seed, loss, schedule,
    lr = 0.002              # optimizer, weight_decay, momentum

    [prune]                 # exactly one of sparsity / quality / threshold
    sparsity = { conv1 = 0.34, conv2 = 0.88, fc1 = 0.92, fc2 = 0.81 }   # or one number
    scope = "layer"         # or "global" (one cut over all layers; sparsity a number)
    steps = 4               # rounds of prune + retrain; targets grow to the final ones
    schedule = "cubic"      # "linear" or "cubic" growth of the targets (sparsity only)

    [prune.retrain]         # after each round; TrainConfig fields, lr defaults to train.lr / 10
    iterations = 1200

    [prune.final_retrain]   # optional: the last round's retraining (defaults to [prune.retrain])
    iterations = 6000

    [share]                 # k-means weight sharing: 2**bits shared values per layer
    conv_bits = 8
    fc_bits = 5
    init = "linear"         # linear, density, random, k-means++
    # bits = { fc1 = 4 }    # per-layer overrides (names or fnmatch patterns)
    # method = "ecsq"       # entropy-constrained sharing: at most 2**bits values, for rate too
    # rate_delta = 2.0      #   each layer's rate: k-means's minus this many bits per weight
    # importance = "fisher" #   weight the distortion by squared gradients

    [finetune]              # centroid fine-tuning; lr defaults to train.lr / 10
    iterations = 1200

    [storage]               # sparse index coding of the compressed file
    conv_gap_bits = 8
    fc_gap_bits = 5

Layer names are target names: a module's name for its ``weight`` (``conv1``, ``features.0``),
``module.parameter`` otherwise (``lstm.weight_ih_l0``, ``attn.in_proj_weight``), matched exactly
or by fnmatch pattern (``"encoder.*"``). The ``default`` recipe serves any network. Every key is
checked: a misspelt key is an error naming the file, the section and the keys allowed.
"""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from netsqueeze.nn.prune import PruneConfig, SparsitySchedule
from netsqueeze.nn.share import ShareConfig
from netsqueeze.nn.train import TrainConfig

__all__ = ["BUILTIN_RECIPES", "PruneStage", "Recipe", "StorageConfig", "load_recipe"]

BUILTIN_RECIPES = ("default", "lenet-300-100", "lenet-300-100-ecsq", "lenet5", "lenet5-ecsq",
                   "notebook-cnn")
_TRAIN_KEYS = {f.name for f in dataclasses.fields(TrainConfig)}
_PRUNE_KEYS = {"sparsity", "quality", "threshold", "scope", "steps", "schedule", "initial",
               "retrain", "final_retrain"}
_TOP_KEYS = {"name", "description", "train", "prune", "share", "finetune", "storage"}


class RecipeError(ValueError):
    """A recipe file is wrong; the message names the file, the key and the fix."""


@dataclass
class StorageConfig:
    """Bits of the relative-index (gap) field of sparse layers, by layer kind."""

    conv_gap_bits: int = 8
    fc_gap_bits: int = 5

    def gap_bits_for(self, kind: str) -> int:
        return self.conv_gap_bits if kind == "conv" else self.fc_gap_bits

    def validate(self) -> StorageConfig:
        for name in ("conv_gap_bits", "fc_gap_bits"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= 16:
                raise ValueError(f"{name} must be an integer in 1..16, got {v!r}")
        return self


@dataclass
class PruneStage:
    """Iterative pruning: ``steps`` rounds of prune + retrain.

    With a ``sparsity`` criterion the per-round targets grow from ``initial`` to the final
    values following ``schedule``; with ``quality`` or ``threshold`` the same rule is applied each
    round (for ``quality`` the standard deviation shrinks with the layer, so each round prunes
    more).
    """

    config: PruneConfig
    steps: int = 1
    schedule: str = "cubic"
    initial: float = 0.0
    retrain: TrainConfig = field(default_factory=TrainConfig)
    final_retrain: TrainConfig | None = None

    def retrain_for(self, step: int) -> TrainConfig:
        """The retraining after round ``step`` (1-based): the last round may have its own."""
        if step == self.steps and self.final_retrain is not None:
            return self.final_retrain
        return self.retrain

    def config_for(self, step: int) -> PruneConfig:
        """The PruneConfig of round ``step`` (1-based)."""
        if self.config.sparsity is None:
            return self.config
        sched = SparsitySchedule(final=self.config.sparsity, steps=self.steps,
                                 initial=self.initial, kind=self.schedule,
                                 scope=self.config.scope)
        return sched.config(step)

    def validate(self) -> PruneStage:
        self.config.validate()
        if isinstance(self.steps, bool) or not isinstance(self.steps, int) or self.steps < 1:
            raise ValueError(f"prune.steps must be an integer >= 1, got {self.steps!r}")
        if self.config.sparsity is not None:
            SparsitySchedule(final=self.config.sparsity, steps=self.steps, initial=self.initial,
                             kind=self.schedule, scope=self.config.scope).validate()
        self.retrain.validate()
        if self.final_retrain is not None:
            self.final_retrain.validate()
        return self

    def to_dict(self) -> dict:
        return {"config": self.config.to_dict(), "steps": self.steps, "schedule": self.schedule,
                "initial": self.initial, "retrain": self.retrain.to_dict(),
                "final_retrain": None if self.final_retrain is None
                else self.final_retrain.to_dict()}


@dataclass
class Recipe:
    """Every choice of a compression run (see the module docstring for the file format)."""

    name: str = "custom"
    description: str = ""
    train: TrainConfig = field(default_factory=TrainConfig)
    prune: PruneStage | None = None
    share: ShareConfig | None = None
    finetune: TrainConfig | None = None
    storage: StorageConfig = field(default_factory=StorageConfig)
    source: str = ""

    def validate(self, layer_names: list[str] | None = None) -> Recipe:
        self.train.validate()
        if self.prune is not None:
            self.prune.validate()
            self.prune.config.validate(layer_names)
        if self.share is not None:
            self.share.validate(layer_names)
        if self.finetune is not None:
            self.finetune.validate()
            if self.share is None:
                raise ValueError("[finetune] tunes shared centroids and needs a [share] section")
        self.storage.validate()
        return self

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "description": self.description,
            "source": self.source,
            "train": self.train.to_dict(),
            "prune": None if self.prune is None else self.prune.to_dict(),
            "share": None if self.share is None else self.share.to_dict(),
            "finetune": None if self.finetune is None else self.finetune.to_dict(),
            "storage": dataclasses.asdict(self.storage),
        }


def _check_keys(where: str, d: dict, allowed: set[str], src: str) -> None:
    if not isinstance(d, dict):
        raise RecipeError(f"{src}: [{where}] must be a table, got {type(d).__name__}")
    unknown = sorted(set(d) - allowed)
    if unknown:
        raise RecipeError(
            f"{src}: unknown key{'s' if len(unknown) > 1 else ''} "
            f"{', '.join(repr(k) for k in unknown)} in [{where}]; allowed: "
            f"{', '.join(sorted(allowed))}"
        )


def _train_config(d: dict, where: str, src: str, base: TrainConfig | None = None) -> TrainConfig:
    _check_keys(where, d, _TRAIN_KEYS, src)
    start = dataclasses.asdict(base) if base is not None else {}
    start.update(d)
    try:
        return TrainConfig(**start).validate()
    except (TypeError, ValueError) as exc:
        raise RecipeError(f"{src}: [{where}] {exc}") from None


def _derived(train: TrainConfig) -> TrainConfig:
    """Retraining / fine-tuning defaults: the training settings at a tenth of the rate."""
    return dataclasses.replace(train, lr=train.lr / 10)


def parse_recipe(data: dict, src: str = "<recipe>") -> Recipe:
    """Build a :class:`Recipe` from the dict of a parsed TOML file, checking every key."""
    _check_keys("top level", data, _TOP_KEYS, src)
    train = _train_config(data.get("train", {}), "train", src)
    prune = None
    if "prune" in data:
        p = dict(data["prune"])
        _check_keys("prune", p, _PRUNE_KEYS, src)
        retrain = _train_config(p.pop("retrain", {}), "prune.retrain", src, _derived(train))
        final_retrain = None
        if "final_retrain" in p:
            final_retrain = _train_config(p.pop("final_retrain"), "prune.final_retrain", src,
                                          retrain)
        try:
            cfg = PruneConfig(
                sparsity=p.pop("sparsity", None), quality=p.pop("quality", None),
                threshold=p.pop("threshold", None), scope=p.pop("scope", "layer"),
            )
            prune = PruneStage(config=cfg, retrain=retrain, final_retrain=final_retrain,
                               **p).validate()
        except (TypeError, ValueError) as exc:
            raise RecipeError(f"{src}: [prune] {exc}") from None
    share = None
    if "share" in data:
        _check_keys("share", data["share"], {f.name for f in dataclasses.fields(ShareConfig)},
                    src)
        try:
            share = ShareConfig.from_dict(data["share"]).validate()
        except (TypeError, ValueError) as exc:
            raise RecipeError(f"{src}: [share] {exc}") from None
    finetune = None
    if "finetune" in data:
        finetune = _train_config(data["finetune"], "finetune", src, _derived(train))
    storage = StorageConfig()
    if "storage" in data:
        _check_keys("storage", data["storage"], {"conv_gap_bits", "fc_gap_bits"}, src)
        try:
            storage = StorageConfig(**data["storage"]).validate()
        except (TypeError, ValueError) as exc:
            raise RecipeError(f"{src}: [storage] {exc}") from None
    recipe = Recipe(name=str(data.get("name", Path(src).stem)),
                    description=str(data.get("description", "")), train=train, prune=prune,
                    share=share, finetune=finetune, storage=storage, source=src)
    try:
        return recipe.validate()
    except ValueError as exc:
        raise RecipeError(f"{src}: {exc}") from None


def load_recipe(name_or_path: str | Path) -> Recipe:
    """A recipe by built-in name (``lenet5``, ``lenet-300-100``, ``notebook-cnn``) or TOML path."""
    text_src = str(name_or_path)
    if text_src in BUILTIN_RECIPES:
        ref = resources.files("netsqueeze.recipes").joinpath(f"{text_src}.toml")
        text = ref.read_text(encoding="utf-8")
        src = f"built-in recipe {text_src!r}"
    else:
        path = Path(name_or_path)
        if not path.is_file():
            raise FileNotFoundError(
                f"{path}: no such recipe file; give a TOML file or one of the built-in recipes: "
                f"{', '.join(BUILTIN_RECIPES)}"
            )
        text = path.read_text(encoding="utf-8")
        src = str(path)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise RecipeError(f"{src}: not valid TOML ({exc})") from None
    return parse_recipe(data, src)
