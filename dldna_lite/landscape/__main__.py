"""``python -m dldna_lite.landscape``: the loss-landscape scan of a checkpoint (chapters 03-04), on one process or under
``torchrun`` (:mod:`dldna_lite.landscape.cli`)."""
import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
