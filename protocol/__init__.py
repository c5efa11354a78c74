"""pgt.protocol: the wire contract shared by host, firmware and simulator (runs on MicroPython too)."""
