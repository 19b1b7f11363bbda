"""``alloy.files``: files a user uploads for actions to reference (by ``s3_key``)."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from typing import Any

from .._convert import structure, structure_list, unwrap
from .._http import Timeout
from ..errors import InvalidRequestError
from ..models.files import StoredFile, UploadTarget
from ..pagination import AsyncPaginator
from ._base import Service, check_id, extras

__all__ = ["Files"]


def _check_md5(md5: object) -> str:
    check_id("md5", md5)
    assert isinstance(md5, str)
    try:
        raw = bytes.fromhex(md5) if len(md5) == 32 else base64.b64decode(md5, validate=True)
    except (ValueError, binascii.Error):
        raw = b""
    if len(raw) != 16:
        raise InvalidRequestError("md5 must be an MD5 digest in hex or base64", field="md5")
    return md5


class Files(Service):
    """Presigned uploads, listing and deleting a user's files (de-duplicated by MD5)."""

    __slots__ = ()

    async def request_upload(
        self,
        *,
        filename: str,
        mime_type: str,
        md5: str,
        user_id: str | None = None,
        extra_headers: Mapping[str, str] | None = None,
        extra_query: Mapping[str, Any] | None = None,
        extra_body: Mapping[str, Any] | None = None,
        timeout: float | Timeout | None = None,
    ) -> UploadTarget:
        """A presigned URL to ``PUT`` the file's bytes to (with ``Content-MD5``).

        ``type == "existing"`` means a file with that MD5 is already stored: skip the upload.

        ``timeout``: seconds or a :class:`~alloy_async.Timeout` for this call (None: the
        client's).
        """
        body = {
            "filename": check_id("filename", filename),
            "mimeType": check_id("mime_type", mime_type),
            "md5": _check_md5(md5),
        }
        answer = await self._requester.request_json(
            "POST",
            "/connectors/files/upload/request",
            operation="alloy.files.request_upload",
            json=body,
            user_id=user_id,
            **extras(extra_headers, extra_query, extra_body, timeout),
        )
        return structure(unwrap(answer, "presignedUrl", "data"), UploadTarget)

    def list(
        self,
        *,
        user_id: str | None = None,
        extra_headers: Mapping[str, str] | None = None,
        extra_query: Mapping[str, Any] | None = None,
        timeout: float | Timeout | None = None,
    ) -> AsyncPaginator[StoredFile]:
        """The user's stored files.

        ``timeout``: seconds or a :class:`~alloy_async.Timeout` for each request it makes
        (None: the client's).
        """
        hatches = extras(extra_headers, extra_query, None, timeout)  # checked now

        async def fetch() -> Any:
            return await self._requester.request_json(
                "GET",
                "/connectors/files/list",
                operation="alloy.files.list",
                user_id=user_id,
                **hatches,
            )

        return AsyncPaginator.single(
            fetch, lambda body: structure_list(body, StoredFile, "files", "data")
        )

    async def delete(
        self,
        s3_key: str,
        *,
        user_id: str | None = None,
        extra_headers: Mapping[str, str] | None = None,
        extra_query: Mapping[str, Any] | None = None,
        timeout: float | Timeout | None = None,
    ) -> None:
        """Delete a stored file by its ``s3_key`` (slashes in the key are encoded).

        ``timeout``: seconds or a :class:`~alloy_async.Timeout` for this call (None: the
        client's).
        """
        await self._requester.request_json(
            "DELETE",
            "/connectors/files/{s3Key}",
            operation="alloy.files.delete",
            path_params={"s3Key": check_id("s3_key", s3_key)},
            user_id=user_id,
            **extras(extra_headers, extra_query, None, timeout),
        )
