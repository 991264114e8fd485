"""The run loop: virtual clock, cost model, server, transports."""
