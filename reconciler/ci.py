"""``python -m reconciler.ci``: the CI glue the example pipelines call (see ``cli.ci``)."""

import sys

from reconciler.cli.ci import main

if __name__ == "__main__":
    sys.exit(main())
