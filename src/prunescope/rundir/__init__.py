"""The run directory: atomic files, the manifest, levels, locking."""
