"""Issue 11: how long a one-line typo (`linaer(4)`) and `catalog()` take, in CPU time, cold (the
first call in a process, the catalog index and parse cache on disk) and warm (the mean of 30 more).
Run from the repository root: `PYTHONPATH=$PWD python bench/unknown_name.py`."""
import time, tempfile, os
t0 = time.process_time()
import archdsl
from archdsl.api import catalog, check_spec
from archdsl.errors import ArchError
t_import = time.process_time() - t0
d = tempfile.mkdtemp(); p = os.path.join(d, "t.arch")
open(p, "w").write("network N() {\n  in x: [1, 4]\n  out x -> linaer(4)\n}\n")
src = open(p).read()
def typo_file():
    try: check_spec(p)
    except ArchError as e: return e
def typo_source():
    try: check_spec(source=src)
    except ArchError as e: return e
def first(fn):
    a = time.process_time(); fn(); return (time.process_time() - a) * 1000
def warm(fn, n=30):
    fn()
    a = time.process_time()
    for _ in range(n): fn()
    return (time.process_time() - a) / n * 1000
c1 = first(catalog); t1 = first(typo_file)
print(f"import archdsl {t_import*1000:.0f} ms; first catalog() {c1:.1f} ms; first typo {t1:.1f} ms")
print(f"warm: catalog() {warm(catalog):.2f} ms; typo file {warm(typo_file):.1f} ms; typo source {warm(typo_source):.1f} ms")
print(typo_file().render().splitlines()[-1])
