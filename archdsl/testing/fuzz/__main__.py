"""`python -m archdsl.testing.fuzz`: the fuzzer's command line (see the package's docstring)."""
from __future__ import annotations

import argparse
import sys

import archdsl.testing.fuzz as package
from archdsl.testing.fuzz.cases import Corpus, make_case
from archdsl.testing.fuzz.run import fuzz, render


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m archdsl.testing.fuzz", description=package.__doc__.split("\n\n")[0])
    p.add_argument("--cases", type=int, default=1000, help="how many cases (at most)")
    p.add_argument("--seconds", type=float, default=float("inf"), help="stop starting cases after this")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--build-fraction", type=float, default=0.25,
                   help="the fraction of cases also built and run when they pass and are small")
    p.add_argument("--snippets", type=float, default=0.45,
                   help="the fraction of cases that are snippets (the others mutate files)")
    p.add_argument("--timeout", type=float, default=10.0, help="per-case limit, seconds of CPU")
    p.add_argument("--slow", type=float, default=1.0, help="report cases slower than this, seconds")
    p.add_argument("--jobs", type=int, default=1, help="worker processes")
    p.add_argument("--memory-gb", type=float, default=4.0, help="address-space limit of each worker")
    p.add_argument("--show", type=int, metavar="I", help="print case I of the seed and exit")
    args = p.parse_args(argv)
    if args.show is not None:
        case = make_case(args.seed, args.show, Corpus(), args.build_fraction, args.snippets)
        print(f"# case {args.show} of seed {args.seed}: {case.origin} (imports resolve in {case.folder})")
        print(case.text)
        return 0
    report = fuzz(args.cases, args.seconds, args.seed, build_fraction=args.build_fraction, snippets=args.snippets,
                  timeout=args.timeout, slow=args.slow, jobs=args.jobs,
                  memory_limit=int(args.memory_gb * (1 << 30)),
                  progress=lambda r, s, news: print(f"  {r.cases} cases, {s:.0f} s: {dict(r.kinds)} {news}",
                                                    file=sys.stderr, flush=True))
    print(render(report, args.slow))
    return 1 if report.failed else 0


if __name__ == "__main__":
    sys.exit(main())
