#!/usr/bin/env sh
# Regenerates the pictures in docs/img/ (needs graphviz's `dot`: apt-get install graphviz /
# brew install graphviz). Run from anywhere: sh docs/make_images.sh
#
# Once the CLI has its `viz` command these lines become:
#   archdsl viz convnext_tiny --depth 2 -o docs/img/convnext_tiny.svg
#   archdsl viz convnext_tiny --depth 2 -o docs/img/convnext_tiny.png
#   archdsl viz moco_v2 -o docs/img/moco.svg
#   archdsl viz moco_v2 -o docs/img/moco.png
set -eu
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python}"

for out in docs/img/convnext_tiny.svg docs/img/convnext_tiny.png; do
  "$PYTHON" -c 'import sys, archdsl
from archdsl.viz import render
result = render(archdsl.load_graph("convnext_tiny"), sys.argv[1], depth=2)
print(result.message)
sys.exit(0 if result.dot_available else 1)' "$out"
done

# a topology: its networks (one node each), momentum twin, queue state and training phase
for out in docs/img/moco.svg docs/img/moco.png; do
  "$PYTHON" -c 'import sys, archdsl
from archdsl.viz import render
result = render(archdsl.load_topology("moco_v2"), sys.argv[1])
print(result.message)
sys.exit(0 if result.dot_available else 1)' "$out"
done
