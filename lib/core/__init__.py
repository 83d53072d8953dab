"""Shared foundations: the 68-point scheme, crops, metrics, checkpoints, the
training scaffold, the predictor interface and the face finder. Imports nothing
from the other ``lib`` packages."""
