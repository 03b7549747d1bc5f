"""Producer side of image-sweeper: enqueue image jobs into Redis and read results.

Imports only redis and pydantic, never google-genai, APScheduler or the sweeper.
"""

from .client import AsyncEnqueueClient, EnqueueClient, build_record
from .errors import EnqueueError, InvalidJobId, InvalidRecord
from .keys import Keys, is_valid_id
from .records import (
    ImageFailure,
    ImageSpec,
    InputImage,
    JobRecord,
    JobStatus,
    ResultRecord,
    StoredImage,
    TelegramTarget,
)

__all__ = [
    "AsyncEnqueueClient",
    "EnqueueClient",
    "EnqueueError",
    "ImageFailure",
    "ImageSpec",
    "InputImage",
    "InvalidJobId",
    "InvalidRecord",
    "JobRecord",
    "JobStatus",
    "Keys",
    "ResultRecord",
    "StoredImage",
    "TelegramTarget",
    "build_record",
    "is_valid_id",
]
