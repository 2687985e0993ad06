"""The ``fastexec`` command.

Sub-commands are imported lazily so ``fastexec --help`` and ``fastexec
instruments`` stay instant and work even where an optional part (the HTTP
service, the simulator) fails to import — the error then names the part.
"""
from __future__ import annotations

import argparse
import sys
from typing import Callable, Optional, Sequence

from . import __version__

_SUBCOMMANDS: dict[str, tuple[str, str]] = {
    # name: (module:function taking argv, help)
    "serve": ("fastexec.service:serve_main", "run the engine with its REST API (8004) and metrics (8091)"),
    "sim": ("fastexec.sim.server:main", "run the OANDA v20 HTTP simulator on loopback"),
    "audit": ("fastexec.journal.audit:main", "export the journal for compliance (JSONL or CSV)"),
    "instruments": ("fastexec.cli:instruments_main", "print the packaged instrument table"),
}


def _load(target: str) -> Callable[[list[str]], int]:
    module_name, _, func = target.partition(":")
    import importlib

    module = importlib.import_module(module_name)
    return getattr(module, func)


def instruments_main(argv: list[str]) -> int:
    """Load the compiled core and print what it knows about each instrument."""
    parser = argparse.ArgumentParser(prog="fastexec instruments", description="Print the packaged instrument table.")
    parser.parse_args(argv)
    from fastexec._core.fixedpoint import format_rate
    from fastexec._core.instruments import load_instruments

    table = load_instruments()
    header = f"{'instrument':<10} {'type':<9} {'digits':>6} {'pip':>4} {'min units':>9} {'max units':>11} {'margin':>7}"
    print(header)
    print("-" * len(header))
    for inst in table:
        print(
            f"{inst.name:<10} {inst.type:<9} {inst.display_precision:>6} {inst.pip_location:>4} "
            f"{inst.minimum_trade_size:>9} {inst.maximum_order_units:>11} {format_rate(inst.margin_rate):>7}"
        )
    print(f"{len(table)} instruments")
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(
        prog="fastexec",
        description="Low-latency execution engine for FX trading on OANDA v20 (simulated venue when no credentials are set).",
    )
    parser.add_argument("--version", action="version", version=f"fastexec {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_, help_text) in _SUBCOMMANDS.items():
        sub.add_parser(name, help=help_text, add_help=False)
    if not argv or argv[0] in ("-h", "--help"):
        parser.print_help()
        return 0
    if argv[0] == "--version":
        parser.parse_args(argv)
    name, rest = argv[0], argv[1:]
    if name not in _SUBCOMMANDS:
        parser.error(f"unknown command {name!r}; choose from {', '.join(_SUBCOMMANDS)}")
    return int(_load(_SUBCOMMANDS[name][0])(rest) or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
