"""Errors a producer can see.

EnqueueError (ValueError)
├── InvalidJobId      the id breaks CONTRACT section 1
└── InvalidRecord     the record breaks CONTRACT section 1 (message names the field)
"""

from __future__ import annotations


class EnqueueError(ValueError):
    """Base class: the job was not enqueued."""


class InvalidJobId(EnqueueError):
    """The job id is not 1 to 128 of ``A-Z a-z 0-9 . _ : -``."""


class InvalidRecord(EnqueueError):
    """A field of the record is missing or wrong; the message says which."""
