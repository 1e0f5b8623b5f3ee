"""`python -m archdsl …` runs the command line (see `archdsl --help`)."""
from archdsl.cli import main

if __name__ == "__main__":
    main(prog_name="archdsl")
