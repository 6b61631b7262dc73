"""``netsqueeze recipe show NAME``: print a built-in recipe, to start a recipe file from."""

from __future__ import annotations

import argparse

NAME = "recipe"


def add_parser(sub) -> argparse.ArgumentParser:
    from netsqueeze.experiments.recipe import BUILTIN_RECIPES

    p = sub.add_parser(
        NAME,
        help="print a built-in compression recipe (TOML) as a template",
        description="Print a built-in recipe of 'netsqueeze compress' as TOML, comments "
        "included: save it, edit it, and pass it with --recipe FILE.",
    )
    rsub = p.add_subparsers(dest="recipe_command", metavar="ACTION", required=True)
    show = rsub.add_parser("show", help="print a built-in recipe",
                           description="Print a built-in recipe as TOML.")
    show.add_argument("name", metavar="NAME",
                      help=f"one of: {', '.join(BUILTIN_RECIPES)}")
    show.set_defaults(run=run_show)
    lst = rsub.add_parser("list", help="list the built-in recipes with their descriptions")
    lst.set_defaults(run=run_list)
    return p


def builtin_text(name: str) -> str:
    """The TOML text of a built-in recipe, checked to parse."""
    from importlib import resources

    from netsqueeze.experiments.recipe import BUILTIN_RECIPES, load_recipe

    if name not in BUILTIN_RECIPES:
        raise ValueError(f"no built-in recipe {name!r}; choose one of: "
                         f"{', '.join(BUILTIN_RECIPES)}")
    load_recipe(name)  # the template printed is one that loads
    return resources.files("netsqueeze.recipes").joinpath(f"{name}.toml").read_text("utf-8")


def run_show(args: argparse.Namespace) -> int:
    text = builtin_text(args.name)
    print(f"# built-in recipe {args.name!r}: save as a .toml file, edit, and run\n"
          f"#   netsqueeze compress --model {args.name} --recipe FILE.toml\n")
    print(text, end="" if text.endswith("\n") else "\n")
    return 0


def run_list(args: argparse.Namespace) -> int:
    from netsqueeze.experiments.recipe import BUILTIN_RECIPES, load_recipe

    for name in BUILTIN_RECIPES:
        print(f"{name}: {load_recipe(name).description}")
    return 0
