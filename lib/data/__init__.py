"""Data: readers for the supported dataset layouts, data preparation (splits,
crops, manifests) and procedural faces. Imports only ``lib.core``."""
