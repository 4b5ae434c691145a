"""CLI flags generated from the settings table (help, type, choices), and the Settings they make; the search
options' flags generated from their table (``query.options``)."""

from __future__ import annotations

import argparse

from ..settings import SETTINGS, Settings


def _choices(name: str):
    if name == "backbone":  # the registry is the list: a new backbone appears here by itself
        from ..models import BACKBONES

        return sorted(BACKBONES)
    return SETTINGS[name].choices


def add_setting_flags(parser: argparse.ArgumentParser, *names: str) -> None:
    """``--name`` for each setting, defaulting to None (= the environment's or the default value)."""
    for name in names:
        setting = SETTINGS[name]
        if setting.default is True or setting.default is False:  # a yes/no setting: --name / --no-name
            parser.add_argument(setting.flag, dest=name, action=argparse.BooleanOptionalAction, default=None,
                                help=f"{setting.help} (env {setting.env}; default {'yes' if setting.default else 'no'})")
            continue
        kind = setting.parse if setting.parse in (int, float) else str
        metavar = None if _choices(name) else name.upper().replace("_", "-")
        parser.add_argument(setting.flag, dest=name, type=kind, choices=_choices(name), default=None, metavar=metavar,
                            help=f"{setting.help} (env {setting.env}; default {setting.default!r})")


def settings_from(args: argparse.Namespace) -> Settings:
    """This run's settings: defaults < STYLELENS_* environment < the flags given."""
    return Settings.load(**{name: getattr(args, name) for name in SETTINGS if getattr(args, name, None) is not None})


def add_search_flags(parser: argparse.ArgumentParser, *names: str) -> None:
    """``--name`` for each search option (``query.options.OPTIONS``): its doc, its type; a yes/no option is a switch."""
    from ..query.options import OPTIONS

    for name in names:
        option = OPTIONS[name]
        flags = [option.flag] + ["--" + alias.replace("_", "-") for alias in option.aliases]
        if option.cli_type is None:
            parser.add_argument(*flags, dest=name, action="store_true", help=option.doc)
        else:
            parser.add_argument(*flags, dest=name, type=option.cli_type, metavar=option.metavar, help=option.doc)
