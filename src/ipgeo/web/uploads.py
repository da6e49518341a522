"""Receiving a job's input: a multipart ``file`` field or a raw body, streamed to disk."""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from pathlib import Path
from typing import IO

from flask import request
from werkzeug.datastructures import FileStorage, MultiDict
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.formparser import parse_form_data

from ipgeo.web.errors import ApiError

_CHUNK = 256 * 1024
# Room for the multipart boundaries and the option fields around the file.
_MULTIPART_SLACK = 64 * 1024
# The upload form has about ten fields: more parts are a hostile body (each file part is a
# temporary file, and thousands of them exhaust the open files).
MAX_FORM_PARTS = 64
MAX_FORM_MEMORY = 1024 * 1024  # bytes of one non-file field (the pasted ``text``)
_NAME_RE = re.compile(r"[^\w.\-+ ]+")


def _too_large(limit: int) -> ApiError:
    return ApiError(
        413,
        "too_large",
        f"the upload is larger than the limit of {limit:,} bytes (IPGEO_MAX_UPLOAD)",
    )


def clean_name(raw: str | None) -> str:
    """A safe display name for an uploaded file."""
    name = os.path.basename((raw or "").replace("\\", "/")).strip()
    name = _NAME_RE.sub("_", name)[:120].strip("._ ")
    return name or "upload"


def receive(directory: Path, limit: int) -> tuple[str, int, MultiDict[str, str]]:
    """Store the upload as ``directory/input``: its name, its size and the form fields."""
    if request.content_length is not None and request.content_length > limit + _MULTIPART_SLACK:
        raise _too_large(limit)
    target = directory / "input"
    if request.mimetype == "multipart/form-data":
        return _multipart(directory, target, limit)
    request.max_content_length = limit + 1
    size = 0
    try:
        with target.open("wb") as out:
            while chunk := request.stream.read(_CHUNK):
                size += len(chunk)
                if size > limit:
                    raise _too_large(limit)
                out.write(chunk)
    except RequestEntityTooLarge:
        raise _too_large(limit) from None
    if size == 0:
        raise ApiError(400, "empty_upload", "the request body is empty: send the file to enrich")
    return clean_name(request.args.get("name")), size, MultiDict()


def _form_too_large(limit: int) -> ApiError:
    return ApiError(
        413,
        "too_large",
        f"the upload is larger than the limit of {limit:,} bytes (IPGEO_MAX_UPLOAD), or its "
        f"form has more than {MAX_FORM_PARTS} parts or a field over {MAX_FORM_MEMORY:,} bytes",
    )


def _multipart(directory: Path, target: Path, limit: int) -> tuple[str, int, MultiDict[str, str]]:
    opened: list[IO[bytes]] = []

    def stream_factory(
        total_content_length: int | None,
        content_type: str | None,
        filename: str | None,
        content_length: int | None = None,
    ) -> IO[bytes]:
        handle = tempfile.NamedTemporaryFile(dir=directory, prefix="part-", delete=False)  # noqa: SIM115
        opened.append(handle)
        return handle

    try:  # the part files go on every path, the upload's own moved to ``target`` first
        try:
            _, form, files = parse_form_data(
                request.environ,
                stream_factory=stream_factory,
                max_form_memory_size=MAX_FORM_MEMORY,
                max_content_length=limit + _MULTIPART_SLACK,
                silent=False,
                max_form_parts=MAX_FORM_PARTS,
            )
        except RequestEntityTooLarge:
            raise _form_too_large(limit) from None
        except ValueError:
            raise ApiError(400, "invalid_upload", "the multipart body could not be read") from None
        return _stored(form, files.get("file"), target, limit)
    finally:
        _discard(opened)


def _stored(
    form: MultiDict[str, str], upload: FileStorage | None, target: Path, limit: int
) -> tuple[str, int, MultiDict[str, str]]:
    """Keep the uploaded file (or the pasted text) as ``target``."""
    text = form.get("text", "")
    if upload is not None and upload.filename:
        upload.stream.flush()
        source = Path(upload.stream.name)
        size = source.stat().st_size
        if size > limit:
            raise _too_large(limit)
        if size == 0:
            raise ApiError(400, "empty_upload", f"{clean_name(upload.filename)} is empty")
        source.replace(target)
        return clean_name(upload.filename), size, form
    if text.strip():
        data = text.encode()
        if len(data) > limit:
            raise _too_large(limit)
        target.write_bytes(data if data.endswith(b"\n") else data + b"\n")
        return "pasted text", target.stat().st_size, form
    raise ApiError(
        400, "empty_upload", "send the file in the multipart field 'file' (or text in 'text')"
    )


def _discard(opened: list[IO[bytes]]) -> None:
    for handle in opened:
        with contextlib.suppress(OSError):
            handle.close()
        with contextlib.suppress(OSError, AttributeError):
            Path(handle.name).unlink(missing_ok=True)
