"""The ``histo2st`` command line and its subcommands.

``demo``, ``pretrain``, ``fit``, ``predict``, ``predict-cohort``, ``evaluate``, ``report`` and ``info``.

Every subcommand takes ``--config FILE`` (TOML, or YAML with PyYAML) whose values the flags override, ``--quiet`` and
``--verbose``. Exit codes: 0 success, 1 the job failed (one line on stderr; a traceback with ``--verbose``), 2 the
command line or config file was wrong. Only the standard library is imported before a subcommand runs, so ``--help``
is fast.
"""

from __future__ import annotations

import argparse
import sys
import traceback

from ._cli import demo, evaluate, fit, info, predict, predict_cohort, pretrain, report
from ._cli.common import COMMON_DEFAULTS, JOB_ERRORS, common_parser, verbosity
from ._cli.config import ConfigError, UsageError, as_arguments, check_keys, load_config, merge_options

COMMANDS = {
    "demo": demo,
    "pretrain": pretrain,
    "fit": fit,
    "predict": predict,
    "predict-cohort": predict_cohort,
    "evaluate": evaluate,
    "report": report,
    "info": info,
}
#: Exit codes.
OK, FAILED, USAGE, INTERRUPTED = 0, 1, 2, 130


def build_parser() -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    """The top-level parser and one parser per subcommand.

    Options have no argparse defaults (``SUPPRESS``), so a parse returns only what was given; the defaults live in each
    subcommand's ``DEFAULTS`` and are merged under the config file and the flags by :func:`resolve`.
    """
    from ._version import __version__

    parser = argparse.ArgumentParser(
        prog="histo2st",
        description="Predict spatial gene expression from H&E.",
        epilog="Run `histo2st COMMAND --help` for the options of a command.",
    )
    parser.add_argument("--version", action="version", version=f"histo2st {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    parents = [common_parser()]
    parsers = {}
    for name, module in COMMANDS.items():
        parsers[name] = sub.add_parser(
            name,
            help=module.HELP,
            description=module.DESCRIPTION,
            parents=parents,
            argument_default=argparse.SUPPRESS,
        )
        module.add_arguments(parsers[name])
    return parser, parsers


def resolve(module, parser: argparse.ArgumentParser, flags: dict) -> argparse.Namespace:
    """Options of one run: the flags given, over the config file (if any), over the subcommand's defaults.

    A config table named by the subcommand's ``TABLE`` (``[model]`` for ``fit``) becomes ``hyperparameters``, except
    its ``name`` key, which is the option of the table's name (``--model``).
    Config values go through the subcommand's parser, so they are checked and converted exactly like flags.
    """
    defaults = {**COMMON_DEFAULTS, **module.DEFAULTS}
    config: dict = {}
    extra: dict = {}
    table = getattr(module, "TABLE", None)
    path = flags.get("config")
    if path is not None:
        raw = load_config(path)
        if table is not None and isinstance(raw.get(table), dict):
            extra = raw.pop(table)
            if "name" in extra:  # [model] name = "pixnet" is the --model option, so the flag still wins
                raw[table] = extra.pop("name")
        check_keys(raw, set(defaults) - {"config"}, f"config file '{path}'")
        tables = sorted(key for key, value in raw.items() if isinstance(value, dict))
        if tables:
            raise ConfigError(f"config file '{path}': {', '.join(tables)} must be values, not tables.")
        try:
            config = vars(parser.parse_args(as_arguments(raw, module.POSITIONAL)))
        except SystemExit as exit_:
            raise ConfigError(f"the value above comes from config file '{path}'.") from exit_
    options = merge_options(defaults, config, flags)
    if table is not None:
        options["hyperparameters"] = extra
    return argparse.Namespace(**options)


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit code (0 success, 1 failure, 2 usage error)."""
    parser, parsers = build_parser()
    try:
        flags = vars(parser.parse_args(argv))
    except SystemExit as exit_:  # --help, --version and usage errors
        return exit_.code if isinstance(exit_.code, int) else USAGE
    command = flags.pop("command")
    module, sub = COMMANDS[command], parsers[command]
    verbose = flags.get("verbose", False)
    try:
        opts = resolve(module, sub, flags)
        verbose = opts.verbose
        with verbosity(quiet=opts.quiet, verbose=opts.verbose):
            module.run(opts)
    except UsageError as err:
        if not isinstance(err, ConfigError):
            sub.print_usage(sys.stderr)
        print(f"histo2st {command}: error: {err}", file=sys.stderr)
        return USAGE
    except JOB_ERRORS as err:
        if verbose:
            traceback.print_exc()
        print(f"histo2st {command}: error: {_one_line(err)}", file=sys.stderr)
        return FAILED
    except KeyboardInterrupt:
        print(f"histo2st {command}: interrupted", file=sys.stderr)
        return INTERRUPTED
    return OK


def _one_line(err: BaseException) -> str:
    # KeyError's str() is the repr of its message; the message itself reads better
    message = err.args[0] if isinstance(err, KeyError) and err.args else str(err)
    return " ".join(str(message).split()) or type(err).__name__


if __name__ == "__main__":
    sys.exit(main())
