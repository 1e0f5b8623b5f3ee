"""A fuzzer for hostile and broken specs: every input must end as a result or an `ArchError`.

    python -m archdsl.testing.fuzz --cases 2000 --seconds 60 --seed 0

Each case is a spec text made from (a) a stdlib file, a `specs/` file or a README example with one
to three mutations (token deletion, duplication and swap; a number replaced by an extreme;
an identifier swapped for another; a line deleted, duplicated or spliced in from another file;
a string replaced by a hostile one; a hostile label put on a chain stage), or (b) a snippet:
a small network or topology whose holes are filled with hostile labels (templates, Python
keywords, quotes, module attribute names), string escapes, integers between 2^1024 and 2^4096,
negative and huge dims as spec defaults, extreme initialiser arguments and topology statements.
Case `i` of seed `k` depends on nothing else, so `--show i` prints it again.

Each case is loaded, elaborated and costed (a topology elaborated) in a worker process, under a
per-case time limit; a fraction of the cases that pass are also built and run (a forward pass, or
one training step of a topology) when they are small. A case ends as

- ok: it loaded (and, if built, ran);
- error: an `ArchError`, what a user mistake must give;
- internal: any other exception (a bug in archdsl), grouped by signature (exception type and
  the innermost archdsl function that raised it); each signature is shrunk (lines, then tokens)
  to a small reproducer that still fails with the same signature;
- timeout: still running after `--timeout` seconds of CPU time (a hang, or a blow-up the
  worker's memory limit did not stop).

Cases that take more than `--slow` seconds of CPU time (default 1) are reported as slow, whatever
their end. Times are CPU time, not wall time: on a shared machine the wall clock measures the
other processes too. Workers warm up (load every stdlib module once) before the first case.
The exit status is 1 when there was an internal error or a timeout, else 0.
"""
from archdsl.testing.fuzz.cases import Case, Corpus, make_case, mutate
from archdsl.testing.fuzz.run import Report, fuzz, render
from archdsl.testing.fuzz.shrink import ddmin, shrink
from archdsl.testing.fuzz.worker import Outcome, Worker

__all__ = ["Case", "Corpus", "Outcome", "Report", "Worker", "ddmin", "fuzz", "make_case", "mutate", "render",
           "shrink"]
