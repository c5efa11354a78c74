# pgt firmware entry point, copied to the board's root as /main.py: runs the serve loop on boot.
# Leave the loop with the "exit" op or Ctrl-C (mpremote does this by itself); docs/hardware.md.
from pgt.firmware import startup

startup.main()
