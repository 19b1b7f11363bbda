"""Files: presigned uploads and the files a user has stored."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

import attrs

from ._base import extra_field, redact_url

__all__ = ["StoredFile", "UploadTarget"]


@attrs.frozen(kw_only=True)
class UploadTarget:
    """Where to ``PUT`` a file's bytes, from ``POST /connectors/files/upload/request``.

    Attributes:
        presigned_url: the S3 URL to PUT to; its query holds a signature, masked in the repr.
        s3_key: the key to reference the file by in actions and to delete it.
        md5: the base64 MD5 to send as ``Content-MD5``.
        type: ``new``, or ``existing`` when a file with this MD5 is already stored.
        extra: response keys this SDK does not know, read-only.
    """

    presigned_url: str = attrs.field(repr=redact_url)
    s3_key: str | None = None
    md5: str | None = None
    type: str | None = None
    extra: Mapping[str, Any] = extra_field()

    @property
    def already_uploaded(self) -> bool:
        """True when Alloy already holds a file with this MD5 (no upload needed)."""
        return self.type == "existing"


@attrs.frozen(kw_only=True)
class StoredFile:
    """A file a user uploaded.

    Attributes:
        s3_key: the key to reference or delete the file by.
        filename: the original file name.
        size: the size in bytes, when known.
        last_modified: the last modification time (aware datetime), or None.
        extra: response keys this SDK does not know, read-only.
    """

    s3_key: str
    filename: str | None = None
    size: int | None = None
    last_modified: datetime | None = None
    extra: Mapping[str, Any] = extra_field()
