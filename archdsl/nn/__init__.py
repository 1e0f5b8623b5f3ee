"""torch code the ops build or call: one file per op family, named as its archdsl/ops file."""
