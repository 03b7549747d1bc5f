"""``python -m sweeper``."""

from .cli import main

raise SystemExit(main())
