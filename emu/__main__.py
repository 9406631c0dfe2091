"""`python -m emu` runs the ktext-emu command line."""

from emu.cli import main

raise SystemExit(main())
