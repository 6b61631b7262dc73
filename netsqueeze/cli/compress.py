"""``netsqueeze compress``: the Deep Compression pipeline on a reference network."""

from __future__ import annotations

import argparse

from netsqueeze.cli import common, modelspec

NAME = "compress"


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser(
        NAME,
        help="prune with retraining, share weights with k-means, fine-tune the centroids; "
        "evaluate every stage",
        description="Train (or load --checkpoint), prune and retrain step by step, share "
        "weights with k-means and fine-tune the centroids, measuring accuracy on the whole "
        "test set after every stage. Writes into the output folder model.nsq (the compressed "
        "file: sparse indices and entropy codes; see netsqueeze inspect / evaluate), "
        "results.json, table.md, report.html (one self-contained page), "
        "accuracy_stages.png, weight_distribution.png, trained.pt and compressed.pt (the "
        "compressed network as a plain checkpoint, for netsqueeze pack). --sparsity, --bits, "
        "--iterations and --steps override the recipe.",
    )
    modelspec.add_model_args(p, default="lenet5", checkpoint=True)
    p.add_argument("--recipe", default=None,
                   help="TOML recipe file, or a built-in name (default, lenet5, lenet-300-100, "
                   "notebook-cnn) [the model's built-in recipe; 'default' for other models]")
    g = p.add_argument_group("recipe overrides (recorded in results.json)")
    g.add_argument("--sparsity", type=_sparsity, default=None, metavar="SPARSITY",
                   help="final fraction of weights pruned: one number for every layer, or "
                   "per layer (fc1=0.95,fc2=0.9; names or fnmatch patterns)")
    g.add_argument("--bits", type=_bits, default=None, metavar="BITS",
                   help="index bits of weight sharing (2**B shared values): one number for "
                   "every layer, or per layer (conv*=6,fc1=4)")
    g.add_argument("--iterations", type=_positive_int, default=None,
                   help="iterations of the initial training (ignored with --checkpoint)")
    g.add_argument("--steps", type=_positive_int, default=None,
                   help="rounds of prune + retrain")
    a = p.add_argument_group("automatic (no recipe): per-layer sparsity and bits under a budget")
    a.add_argument("--max-drop", type=float, default=None, metavar="PP",
                   help="largest validation-accuracy drop from the trained model, in "
                   "percentage points")
    a.add_argument("--max-error", type=float, default=None, metavar="PCT",
                   help="largest validation top-1 error, in percent")
    a.add_argument("--time-budget", type=float, default=None, metavar="SECONDS",
                   help="stop starting search rounds after this long; keep the best so far")
    a.add_argument("--max-rounds", type=int, default=40,
                   help="most prune + retrain rounds of the search [%(default)s]")
    a.add_argument("--val-fraction", type=float, default=0.1,
                   help="share of the training set held out for validation [%(default)s]")
    a.add_argument("--confirm-fraction", type=float, default=0.05,
                   help="share of the training set held out to confirm the final choice: "
                   "the smallest model that meets the budget there too (0: off) [%(default)s]")
    d = p.add_argument_group("data-parallel retraining (torch.distributed)")
    d.add_argument("--nproc", type=_positive_int, default=None, metavar="N",
                   help="train and retrain in N local processes (DistributedDataParallel; "
                   "gloo on the CPU, nccl with --device cuda), each taking its slice of every "
                   "batch; under torchrun the processes it starts are used instead [1]")
    common.add_data_args(p)
    common.add_executor_args(p)
    common.add_run_args(p, out_default="runs/compress")
    p.set_defaults(run=run, resume_hint="run the same command with --resume to continue")
    return p


def _pairs(text: str, convert, what: str):
    """``0.9`` -> 0.9; ``fc1=0.9,fc2=0.8`` -> {"fc1": 0.9, "fc2": 0.8}."""
    try:
        if "=" not in text:
            return convert(text)
        out = {}
        for part in text.split(","):
            name, _, value = part.partition("=")
            if not name.strip() or not value.strip():
                raise ValueError(part)
            out[name.strip()] = convert(value)
        return out
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected {what} or LAYER={what},LAYER={what}..., got {text!r}") from None


def _sparsity(text: str):
    def conv(v):
        x = float(v)
        if not 0 <= x < 1:
            raise ValueError(v)
        return x

    return _pairs(text, conv, "a fraction in [0, 1)")


def _bits(text: str):
    def conv(v):
        x = int(v)
        if not 1 <= x <= 16:
            raise ValueError(v)
        return x

    return _pairs(text, conv, "an integer in 1..16")


def _positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        v = 0
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}")
    return v


def apply_overrides(recipe, args: argparse.Namespace):
    """The recipe with the command line's knobs applied, and the knobs given (for results.json).

    ``--sparsity`` replaces the pruning criterion (adding a [prune] stage when the recipe has
    none, retrained at a tenth of the learning rate), ``--bits`` the sharing bits (adding a
    [share] stage), ``--iterations`` the initial training, ``--steps`` the pruning rounds.
    """
    import dataclasses

    from netsqueeze.experiments.recipe import PruneStage
    from netsqueeze.nn.prune import PruneConfig
    from netsqueeze.nn.share import ShareConfig

    given = {k: getattr(args, k, None) for k in ("sparsity", "bits", "iterations", "steps")}
    given = {k: v for k, v in given.items() if v is not None}
    if not given:
        return recipe, {}
    if "iterations" in given:
        recipe.train = dataclasses.replace(recipe.train, iterations=given["iterations"])
    if "sparsity" in given:
        scope = recipe.prune.config.scope if recipe.prune is not None else "layer"
        if isinstance(given["sparsity"], dict) and scope == "global":
            scope = "layer"
        cfg = PruneConfig(sparsity=given["sparsity"], scope=scope)
        if recipe.prune is None:
            retrain = dataclasses.replace(recipe.train, lr=recipe.train.lr / 10)
            recipe.prune = PruneStage(config=cfg, retrain=retrain)
        else:
            recipe.prune.config = cfg
    if "steps" in given:
        if recipe.prune is None:
            raise ValueError(f"--steps: recipe {recipe.name!r} has no [prune] stage; give "
                             "--sparsity too")
        recipe.prune.steps = given["steps"]
    if "bits" in given:
        if recipe.share is None:
            recipe.share = ShareConfig(bits=given["bits"])
        else:
            recipe.share.bits = given["bits"]
    return recipe, given


def run(args: argparse.Namespace) -> int:
    from netsqueeze.nn import distributed as ddp

    nproc = _nproc(args)
    if nproc > 1:
        if ddp.env_world_size() is not None:  # started by torchrun: this process is one rank
            return _rank(args)
        from netsqueeze.experiments.pipeline import check_nproc

        # a mistake is reported once, before any process starts
        check_nproc(check_before_work(args)[0], nproc)
        return _spawn(args, nproc)
    return _run(args)


def _nproc(args: argparse.Namespace) -> int:
    """The number of processes asked for (--nproc, or torchrun's WORLD_SIZE); 1 when neither.
    Raises ValueError for an option that data-parallel retraining cannot honour."""
    from netsqueeze.nn import distributed as ddp

    env = ddp.env_world_size()
    if env is not None and args.nproc is not None and args.nproc != env:
        raise ValueError(f"--nproc {args.nproc} but torchrun started {env} processes "
                         f"(WORLD_SIZE={env}); drop --nproc or make them equal")
    nproc = env if env is not None else (args.nproc or 1)
    if nproc < 1:
        raise ValueError(f"WORLD_SIZE={nproc}: expected at least 1 process")
    if nproc == 1:
        return 1
    if args.max_drop is not None or args.max_error is not None or args.time_budget is not None:
        raise ValueError("--nproc: the automatic search (--max-drop, --max-error, "
                         "--time-budget) runs in one process; drop --nproc, or give a recipe")
    dev = str(args.device)
    if dev == "auto":
        import torch

        dev = "cuda" if torch.cuda.is_available() else "cpu"
    if dev.startswith("cuda"):
        import torch

        if ":" in dev:
            raise ValueError(f"--nproc with --device {dev}: each process uses its own GPU "
                             "(cuda:LOCAL_RANK); give --device cuda")
        if not torch.cuda.is_available():
            raise ValueError("--device cuda was asked for but no CUDA GPU is available; "
                             "use --device cpu")
        if env is None and nproc > torch.cuda.device_count():
            raise ValueError(f"--nproc {nproc} with --device {args.device}: there are "
                             f"{torch.cuda.device_count()} GPUs; use at most that many processes "
                             "(or --device cpu)")
    return nproc


def _spawn(args: argparse.Namespace, nproc: int) -> int:
    import logging
    import sys

    import torch.multiprocessing as mp

    from netsqueeze.nn import distributed as ddp

    # when one process stops, torch stops the others and logs it per process; our one line
    # below says it instead
    logging.getLogger("torch.multiprocessing.spawn").setLevel(logging.ERROR)
    try:
        ddp.spawn(_rank_entry, (args,), nproc)
    except mp.ProcessExitedException as exc:
        if exc.exit_code == 2:  # a user error, already reported by rank 0
            return 2
        print(f"netsqueeze {NAME}: error: data-parallel process {exc.error_index} of {nproc} "
              f"stopped (exit code {exc.exit_code}); {args.resume_hint}", file=sys.stderr)
        return 1
    except mp.ProcessRaisedException as exc:
        last = (str(exc).strip().splitlines() or ["?"])[-1]
        print(f"netsqueeze {NAME}: error: data-parallel process {exc.error_index} of {nproc} "
              f"failed ({last}); {args.resume_hint}", file=sys.stderr)
        return 1
    return 0


def _rank_entry(args: argparse.Namespace) -> None:
    """One spawned process: its exit code carries a user error (2) to the parent."""
    import sys

    code = _rank(args)
    if code:
        sys.exit(code)


def _rank(args: argparse.Namespace) -> int:
    """This process as one rank: join the group, run, report a user error once (rank 0)."""
    import os
    import sys

    from netsqueeze.errors import FormatError
    from netsqueeze.nn import distributed as ddp
    from netsqueeze.nn.train import resolve_device

    try:
        ddp.init(resolve_device(args.device).type)
        try:
            code = _run(args)
            ddp.barrier()  # the other ranks wait for rank 0's writes
            return code
        finally:
            ddp.teardown()
    except (ValueError, FormatError, OSError) as exc:
        if os.environ.get("RANK", "0") == "0":
            from netsqueeze.cli.common import os_error_line

            text = (os_error_line(exc) if isinstance(exc, OSError) and exc.errno is not None
                    else str(exc))
            print(f"netsqueeze {NAME}: error: {text}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from netsqueeze.experiments.pipeline import CompressSpec, run_compress
    from netsqueeze.experiments.report import ratio_words
    from netsqueeze.nn import distributed as ddp

    if args.max_drop is not None or args.max_error is not None or args.time_budget is not None:
        from netsqueeze.experiments.auto_compress import run_auto_cli
        from netsqueeze.models.factory import resolve_factory

        resolve_factory(args.model)  # a wrong spec fails here, before anything is written
        common.check_out_dir(args.out)
        args.model_args_dict = modelspec.model_args(args) or None
        return run_auto_cli(args)
    if (args.workers or 1) > 1 or args.ray:
        raise ValueError("--workers / --ray run the sensitivity points of the automatic search "
                         "(--max-drop / --max-error); a recipe run trains in one process (use "
                         "--nproc N for data-parallel retraining)")
    recipe, overrides = check_before_work(args)
    spec = CompressSpec(model=args.model, dataset=args.dataset, data_dir=args.data_dir,
                        download=args.download, checkpoint=args.checkpoint, device=args.device,
                        overrides=overrides, model_args=modelspec.model_args(args) or None,
                        trust_checkpoint=args.trust_checkpoint)
    results = run_compress(spec, recipe, args.out, progress=not args.quiet, resume=args.resume)
    if not ddp.is_main():
        return 0  # rank 0 writes and prints
    s = results["summary"]
    out = Path(args.out)
    f = results["file"]["totals"]
    from netsqueeze.experiments.html_report import write_report

    report = write_report(out)
    print(f"wrote {out / 'results.json'}, {out / 'table.md'}, {out / 'model.nsq'}, "
          f"{report.name} and figures in {results['wall_times']['total']:.0f} s")
    print(f"{args.model}: top-1 error {s['trained_error_pct']:.2f} % -> {s['final_error_pct']:.2f} % "
          f"with {100 * s['kept_fraction']:.1f} % of weights kept; model.nsq {f['file_bytes']:,} "
          f"bytes, {ratio_words(f['ratio_to_dense'])} than dense float32")
    from netsqueeze.experiments.zero_weights import near_chance

    n_classes = int(results["dataset"].get("n_classes") or 0)
    near = near_chance(s["trained_accuracy"], n_classes)
    if near:
        print(f"warning: {near.replace('(--iterations)', '(the recipe train.iterations)')}")
    return 0


def check_before_work(args: argparse.Namespace):
    """What is checkable before loading data or training: the model spec, the output folder,
    the device, the recipe and its overrides (the recipe's layer patterns are checked against
    the network by run_compress, also before any data is loaded). Returns (recipe, overrides)."""
    from netsqueeze.experiments.recipe import load_recipe
    from netsqueeze.models.factory import resolve_factory
    from netsqueeze.nn.train import resolve_device

    resolve_factory(args.model)  # a wrong spec fails here, before anything is written
    common.check_out_dir(args.out)
    resolve_device(args.device)
    return apply_overrides(
        load_recipe(args.recipe or (args.model if modelspec.is_builtin(args.model)
                                    else "default")), args)
