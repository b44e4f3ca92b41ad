"""Config files (TOML, or YAML when PyYAML is installed) and the merge of defaults, config and flags."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

TOML_SUFFIXES = (".toml",)
YAML_SUFFIXES = (".yaml", ".yml")


class UsageError(Exception):
    """The command line was called wrongly (exit code 2, like argparse's own errors)."""


class ConfigError(UsageError):
    """A config file that cannot be read, or that names options the subcommand does not have."""


def load_config(path: str | Path) -> dict:
    """Read a config file: a mapping of long option names (dashes or underscores) to values.

    ``.toml`` is read with the standard library's :mod:`tomllib`; ``.yaml``/``.yml`` with PyYAML, which is optional.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file '{path}' not found.")
    suffix = path.suffix.lower()
    if suffix in TOML_SUFFIXES:
        import tomllib

        try:
            data = tomllib.loads(path.read_text())
        except tomllib.TOMLDecodeError as err:
            raise ConfigError(f"config file '{path}' is not valid TOML: {err}.") from err
    elif suffix in YAML_SUFFIXES:
        try:
            import yaml
        except ImportError as err:
            raise ConfigError(
                f"config file '{path}' is YAML, which needs PyYAML: `pip install pyyaml`, or write the config as TOML."
            ) from err
        try:
            data = yaml.safe_load(path.read_text())
        except yaml.YAMLError as err:
            raise ConfigError(f"config file '{path}' is not valid YAML: {err}.") from err
        data = {} if data is None else data
    else:
        raise ConfigError(
            f"config file '{path}' must end in {', '.join(TOML_SUFFIXES + YAML_SUFFIXES)} (TOML or YAML)."
        )
    if not isinstance(data, Mapping):
        raise ConfigError(f"config file '{path}' must hold a mapping of option names to values, not a list or value.")
    return normalize_keys(data)


def normalize_keys(config: Mapping) -> dict:
    """Option names as argparse stores them (``max-time`` -> ``max_time``), in nested tables too."""
    return {
        str(key).replace("-", "_"): normalize_keys(value) if isinstance(value, Mapping) else value
        for key, value in config.items()
    }


def check_keys(config: Mapping, valid, source: str) -> None:
    """Raise a :class:`ConfigError` naming the keys of ``config`` that are not options in ``valid``."""
    unknown = sorted(set(config) - set(valid))
    if unknown:
        raise ConfigError(
            f"{source}: unknown option(s) {', '.join(unknown)}. Valid keys: {', '.join(sorted(valid))} "
            "(the long option names, with dashes or underscores)."
        )


def as_arguments(config: Mapping, positional: str | None = None) -> list[str]:
    """Command-line tokens equivalent to ``config``, so argparse checks and converts its values like flags.

    ``True`` becomes a bare switch, ``False`` and ``None`` are left out (the default), a list gives one token per item,
    and the ``positional`` option's values come first, without a flag.
    """
    head: list[str] = []
    tokens: list[str] = []
    for key, value in config.items():
        items = [str(v) for v in value] if isinstance(value, list | tuple) else [str(value)]
        if key == positional:
            head += items
        elif value is True:
            tokens.append(f"--{key.replace('_', '-')}")
        elif value is not False and value is not None:
            tokens += [f"--{key.replace('_', '-')}", *items]
    return head + tokens


def merge_options(defaults: Mapping, config: Mapping, flags: Mapping) -> dict:
    """Options of one run: flags over the config file over the defaults (keys with dashes or underscores)."""
    return {**normalize_keys(defaults), **normalize_keys(config), **normalize_keys(flags)}
