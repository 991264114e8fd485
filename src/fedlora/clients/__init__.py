"""Who trains: client speeds, bandwidths and (in later issues) rank policies."""
