"""`python -m emu` runs the ktext-emu command line."""

import sys

try:
    # Importing the commands pulls in Unicorn, capstone and lief: on a loaded
    # machine a Ctrl-C can land here, before main() installs its handling.
    from emu.cli import main
except KeyboardInterrupt:
    sys.stderr.write("ktext-emu: interrupted\n")
    raise SystemExit(130) from None

raise SystemExit(main())
