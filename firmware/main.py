# pgt firmware entry point, copied to the board's root as /main.py. It runs the firmware tree /pgt; if that tree
# is missing or does not import (a flash cut short while it switched trees), it runs the previous tree, which
# `pgt flash` keeps in /pgt_prev (with that tree's board.json). A board.json the firmware refuses leaves the board
# at its REPL with a one-line reason. Leave the loop with the "exit" op or Ctrl-C (mpremote does this by itself);
# docs/hardware.md, "Flashing".
import sys

TREES = (("", "board.json"), ("pgt_prev", "pgt_prev/board.json"))


def _forget(tree):
    for name in list(sys.modules):
        if name == "pgt" or name.startswith("pgt."):
            del sys.modules[name]
    if tree and tree in sys.path:
        sys.path.remove(tree)


def boot():
    for tree, config in TREES:
        if tree:
            sys.path.insert(0, tree)
        try:
            from pgt.firmware import startup

            startup.TREE = startup_tree(tree)  # the tree hello reports the file hashes of
            return startup.main(config)
        except (ImportError, SyntaxError, MemoryError) as e:
            print("pgt: the firmware in /%s does not import (%s: %s)" % (startup_tree(tree), type(e).__name__, e))
            _forget(tree)
    print("pgt: no firmware tree imports: reflash with pgt flash")


def startup_tree(tree):
    return tree + "/pgt" if tree else "pgt"


boot()
