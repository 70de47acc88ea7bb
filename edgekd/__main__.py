"""``python -m edgekd …`` (also what ``torchrun -m edgekd`` runs)."""

from edgekd.cli import main

raise SystemExit(main())
