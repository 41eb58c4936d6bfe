"""``python -m efficient_search.cluster SPEC.yaml [options]``: see :mod:`efficient_search.cluster.cli`."""

import sys

from efficient_search.cluster.cli import standalone

sys.exit(standalone())
