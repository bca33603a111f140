"""Command-line flags made from settings dataclasses: a flag per field, its help and default read
from the field (adautomix.config.setting), so that a setting is defined once, where its default
is. `adautomix train`'s run flags (every RunConfig field, `-o` method options, --preset and
--config) come from here, and so do `python -m pipeline`'s, its pipeline settings' and its
cluster settings'."""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path
from typing import Any

from .config import RENAMED_FIELDS, ConfigError, RunConfig, parse_override, upgrade_saved_config


def flag_name(f: dataclasses.Field) -> str | None:
    """The field's flag (`--batch-size` for batch_size, or its own `flag=`); None: it has none."""
    return f.metadata.get("flag", "--" + f.name.replace("_", "-"))


def shown_default(f: dataclasses.Field, value: Any) -> str:
    """The default as the help shows it, in brackets: from the field's value (what an empty
    one means, where the field says)."""
    if not value and value is not False and value != 0 and "empty" in f.metadata:
        return f"[{f.metadata['empty']}]"
    if isinstance(value, dict):
        return f"[{','.join(f'{k}={v}' for k, v in value.items()) or 'none'}]"
    if isinstance(value, (list, tuple)):  # a list flag takes its values apart, a tuple's repeats
        return f"[{(' ' if isinstance(value, list) else ',').join(map(str, value)) or 'none'}]"
    return f"[{value}]"


def add_setting_flags(
    group: argparse._ActionsContainer, settings: type, leave_out: tuple[str, ...] = ()
) -> None:
    """A flag for each field of the `settings` dataclass that takes one (but those in
    `leave_out`), its help and default from the field: booleans as `--x/--no-x`, lists as
    `--x A B`, tuples and dicts repeatable (`--x KEY=VALUE` for a dict, the field's `parse`
    turning what was given into the value). A flag left out keeps the field's default."""
    defaults = settings()
    for f in dataclasses.fields(settings):
        flag = flag_name(f)
        if f.name in leave_out or not f.init or flag is None:
            continue
        default = getattr(defaults, f.name)
        options: dict[str, Any] = dict(
            dest=f.name,
            default=argparse.SUPPRESS,
            help=f"{f.metadata.get('help', '')} {shown_default(f, default)}".strip(),
        )
        metavar = f.name.upper()
        if isinstance(default, bool):
            options["action"] = argparse.BooleanOptionalAction
        elif isinstance(default, (tuple, dict)) or "parse" in f.metadata:
            options["action"] = "append"
            metavar = "KEY=VALUE" if isinstance(default, dict) else metavar
        elif isinstance(default, list):
            options["type"] = type(default[0]) if default else float
            options["nargs"] = len(default) or "+"
        else:
            options["type"] = type(default)
        if "choices" in f.metadata:
            options["choices"] = f.metadata["choices"]
        elif not isinstance(default, bool):
            options["metavar"] = f.metadata.get("metavar", metavar)
        group.add_argument(flag, **options)


def setting_values(args: argparse.Namespace, settings: type) -> dict[str, Any]:
    """The fields of `settings` given as flags (add_setting_flags), as the field takes them."""
    values = {}
    for f in dataclasses.fields(settings):
        if not hasattr(args, f.name) or not f.init or flag_name(f) is None:
            continue
        value = getattr(args, f.name)
        if "parse" in f.metadata:
            value = f.metadata["parse"](value)
        elif isinstance(f.default, tuple):
            value = tuple(value)
        values[f.name] = value
    return values


class _RenamedFlag(argparse.Action):
    """An old flag's name: noted, and refused with its new name by `run_values`."""

    def __call__(self, parser, namespace, values, option_string=None):
        namespace.renamed_flags = [*getattr(namespace, "renamed_flags", []), option_string]


def add_run_flags(parser: argparse.ArgumentParser, leave_out: tuple[str, ...] = ()) -> None:
    """`--preset` and `--config`, a flag for every RunConfig field but those in `leave_out`
    (`--batch-size 64`, `--crop-scale 0.5 1`, `--progress/--no-progress`), and `-o KEY=VALUE`
    for the method's options: `adautomix train`'s flags, and the pipeline's."""
    parser.add_argument(
        "--preset",
        default="",
        help="start from a named recipe (`adautomix presets` lists them); the flags go on top",
    )
    parser.add_argument(
        "--config",
        help="start from a saved config.json (a run's, or `adautomix presets NAME`'s), after "
        "the preset",
    )
    group = parser.add_argument_group("run configuration (defaults in brackets)")
    add_setting_flags(group, RunConfig, leave_out=("method_args", *leave_out))
    for old in RENAMED_FIELDS:
        group.add_argument(
            "--" + old.replace("_", "-"), nargs="?", action=_RenamedFlag, help=argparse.SUPPRESS
        )
    group.add_argument(
        "-o",
        "--method-arg",
        dest="method_arg",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a method option, repeatable: -o alpha=0.2 -o mix_samples=3 "
        "(`adautomix presets --methods` lists them)",
    )


def run_values(args: argparse.Namespace) -> tuple[str, dict[str, Any] | None, dict[str, Any]]:
    """What add_run_flags' flags give: the preset ('' for none), the saved config's fields (None
    without --config) and the RunConfig fields given as flags, the `-o` method options as
    `method_args`; a renamed flag is refused with its new name."""
    for old in getattr(args, "renamed_flags", []):
        new = "--" + RENAMED_FIELDS[old[2:].replace("-", "_")].replace("_", "-")
        raise ConfigError(f"{old} is now {new}; use {new} N")
    values = setting_values(args, RunConfig)
    if args.method_arg:
        values["method_args"] = dict(parse_override(o) for o in args.method_arg)
    saved = read_config_file(args.config) if args.config else None
    return args.preset or "", saved, values


def read_config_file(path: str) -> dict[str, Any]:
    """A saved config.json's fields, or a ConfigError naming the file and what is wrong."""
    try:
        values = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise ConfigError(
            f"--config {path}: no such file; pass a config.json that a run wrote "
            "(OUTPUT_DIR/config.json) or that `adautomix presets NAME` printed"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"--config {path} cannot be read ({exc})") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"--config {path} is not valid JSON ({exc}); fix it or write it again "
            "with `adautomix presets NAME > FILE`"
        ) from None
    if not isinstance(values, dict):
        raise ConfigError(
            f"--config {path} holds a JSON {type(values).__name__}, not an object of config fields"
        )
    return upgrade_saved_config(values, path)
