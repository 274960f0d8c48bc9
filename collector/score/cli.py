"""``cxpulse score voice``: the E-model by hand, so a network engineer can check a path.
``--one-way-ms 150 --loss-pct 1 --codec g711-plc [--json]``; other G.107 parameters at their defaults.
Design notes: docs/collector-internals.md, "collector/score/cli.py".
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Callable

from .emodel import CODECS, Rating, codec_by_name, rate_path

__all__ = ["cmd_voice", "main", "register"]

PROG = "cxpulse score voice"


def _number(
    flag: str, lo: float | None = None, hi: float | None = None, *, lo_open: bool = False, hi_open: bool = False
) -> Callable[[str], float]:
    """An argparse type: a finite number within bounds, with a message naming the flag."""

    def parse(text: str) -> float:
        try:
            x = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{flag} wants a number, got {text!r}") from None
        if not math.isfinite(x):
            raise argparse.ArgumentTypeError(f"{flag} must be a finite number, got {text}")
        bad = lo is not None and (x <= lo if lo_open else x < lo)
        bad |= hi is not None and (x >= hi if hi_open else x > hi)
        if bad:
            lo_s = "" if lo is None else f"{'>' if lo_open else '>='} {lo:g}"
            hi_s = "" if hi is None else f"{'<' if hi_open else '<='} {hi:g}"
            raise argparse.ArgumentTypeError(f"{flag} must be {' and '.join(s for s in (lo_s, hi_s) if s)}, got {text}")
        return x

    return parse


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``score`` (with ``voice``) to the top-level ``cxpulse`` parser."""
    score = sub.add_parser("score", help="experience scores by hand (voice: ITU-T G.107 E-model)")
    what = score.add_subparsers(dest="score_command", required=True, metavar="WHAT")
    voice = what.add_parser(
        "voice",
        help="R and MOS for a one-way delay and packet loss (ITU-T G.107)",
        description="ITU-T G.107 E-model for one call leg: the given one-way delay is T and Ta, Tr = 2T, "
        "every other parameter at its G.107 default. Prints R, MOS and the impairments.",
    )
    voice.add_argument(
        "--one-way-ms",
        type=_number("--one-way-ms", 0),
        required=True,
        metavar="D",
        help="mean one-way (mouth-to-ear) delay in ms",
    )
    voice.add_argument(
        "--loss-pct",
        type=_number("--loss-pct", 0, 100),
        required=True,
        metavar="P",
        help="packet loss in percent (0-100)",
    )
    voice.add_argument(
        "--codec",
        metavar="NAME",
        help=f"codec for Ie and Bpl (ITU-T G.113): {', '.join(CODECS)}; default: G.107's Ie 0, Bpl 4.3",
    )
    voice.add_argument(
        "--ie",
        type=_number("--ie", 0, 95, hi_open=True),
        metavar="IE",
        help="equipment impairment factor (instead of --codec; needs --bpl)",
    )
    voice.add_argument(
        "--bpl",
        type=_number("--bpl", 0, lo_open=True),
        metavar="BPL",
        help="packet-loss robustness factor (instead of --codec; needs --ie)",
    )
    voice.add_argument(
        "--burst-r",
        type=_number("--burst-r", 1),
        default=1.0,
        metavar="B",
        help="burst ratio: 1 for random loss (default), larger for bursty loss",
    )
    voice.add_argument("--json", action="store_true", help="machine-readable output (keys r, mos, ...)")
    voice.set_defaults(func=cmd_voice)


def cmd_voice(args: argparse.Namespace) -> int:
    if args.codec is not None and (args.ie is not None or args.bpl is not None):
        return _fail("give either --codec or --ie with --bpl, not both")
    if (args.ie is None) != (args.bpl is None):
        return _fail("--ie and --bpl go together: give both (or use --codec)")
    codec = None
    if args.codec is not None:
        try:
            codec = codec_by_name(args.codec)
        except ValueError as exc:
            return _fail(str(exc))
    try:
        rating = rate_path(args.one_way_ms, args.loss_pct, codec=codec, ie=args.ie, bpl=args.bpl, burst_r=args.burst_r)
    except ValueError as exc:
        return _fail(str(exc))
    if args.json:
        out = rating.to_dict()
        out["codec"] = codec.name if codec else None
        print(json.dumps(out, sort_keys=True))
    else:
        print(render_text(rating, codec.name if codec else None))
    return 0


def _f(x: float) -> str:
    """Two decimals, without a "-0.00" for a tiny negative (Ist is -0.0007 at the defaults)."""
    return f"{0.0 if abs(x) < 0.005 else x:.2f}"


def render_text(rating: Rating, codec: str | None) -> str:
    p = rating.params
    what = f"codec {codec} (Ie {p.Ie:g}, Bpl {p.Bpl:g})" if codec else f"Ie {p.Ie:g}, Bpl {p.Bpl:g}"
    lines = [
        f"E-model (ITU-T G.107): T = Ta = {p.T:g} ms, Tr = {p.Tr:g} ms, loss {p.Ppl:g}% (BurstR {p.BurstR:g}), {what}",
        f"R       {rating.r:6.1f}   = Ro {_f(rating.ro)} - Is {_f(rating.is_)} - Id {_f(rating.id)}"
        f" - Ie,eff {_f(rating.ie_eff)} + A {rating.a:g}",
        f"MOS     {rating.mos:6.2f}",
        f"Id      {rating.id:6.2f}   talker echo Idte {_f(rating.idte)}, listener echo Idle {_f(rating.idle)},"
        f" absolute delay Idd {_f(rating.idd)}",
        f"Ie,eff  {rating.ie_eff:6.2f}   codec Ie {p.Ie:g} plus packet loss",
        f"Is      {rating.is_:6.2f}   Iolr {_f(rating.iolr)}, Ist {_f(rating.ist)}, Iq {_f(rating.iq)}",
    ]
    return "\n".join(lines)


def _fail(message: str) -> int:
    print(f"{PROG}: {message}", file=sys.stderr)
    return 2


def main(argv: list[str] | None = None) -> int:
    """Run ``score ...`` on its own (tests; ``python -m cxpulse.collector.score.cli score voice ...``)."""
    parser = argparse.ArgumentParser(prog="cxpulse")
    register(parser.add_subparsers(dest="command", required=True, metavar="COMMAND"))
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
