"""``python -m napari_gan.cli`` (what ``torchrun -m napari_gan.cli`` runs): the command line."""

import sys

from . import main

sys.exit(main())
