"""`python -m ztp` runs the command line."""

from ztp.cli import main

raise SystemExit(main())
