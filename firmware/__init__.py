"""pgt.firmware: the device core and board HALs (runs on MicroPython; imported by the simulator too)."""
