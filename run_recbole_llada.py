"""Train and evaluate LLaDARec or any RecBole model: ``python run_recbole_llada.py --help``."""

import sys

from recbole_llada.cli.run import main

if __name__ == "__main__":
    sys.exit(main())
