"""File names derived from method and style names."""
from __future__ import annotations

import re


def slug(name: str) -> str:
    """A file-name-safe form of a name: 'real only (landmark box)' -> 'real_only_landmark_box'."""
    return re.sub(r"[^A-Za-z0-9]+", "_", name).strip("_").lower()
