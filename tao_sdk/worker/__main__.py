"""``python -m tao_sdk.worker <network> <action> -e spec.yaml``: see :mod:`tao_sdk.worker.cli`."""

import sys

from tao_sdk.worker.cli import main

if __name__ == "__main__":
    sys.exit(main())
