"""Checkpoint helpers shared by the detectors' ``state_dict()`` / ``from_state()``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def check_version(owner: str, state: Mapping[str, Any], version: int) -> None:
    """Refuse a checkpoint written by another version of ``owner``'s state layout.

    >>> check_version("SuccessRateDrop", {"version": 2}, 1)
    Traceback (most recent call last):
    ...
    ValueError: unsupported SuccessRateDrop state version 2 (this code reads version 1)
    """
    found = state.get("version")
    if found != version:
        raise ValueError(
            f"unsupported {owner} state version {found!r} (this code reads version {version})"
        )
