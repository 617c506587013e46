"""``python -m napari_gan`` runs the command line (same as ``napari-gan``)."""

import sys

from .cli import main

sys.exit(main())
