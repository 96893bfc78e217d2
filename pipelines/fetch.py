"""Local access to an input video that may live on any pyarrow filesystem (S3, GCS, HDFS, local)."""
from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from typing import Iterator

from pt_data.shards import resolve_filesystem


@contextlib.contextmanager
def local_copy(uri: str) -> Iterator[str]:
    """Yield a local path for ``uri``: the file itself when local, else a temporary copy removed afterwards."""
    if "://" not in uri or uri.startswith("file://"):
        yield uri[len("file://"):] if uri.startswith("file://") else uri
        return
    fs, path = resolve_filesystem(uri)
    suffix = os.path.splitext(path)[1]
    fd, tmp = tempfile.mkstemp(prefix="pt-fetch-", suffix=suffix)
    try:
        with os.fdopen(fd, "wb") as out, fs.open_input_stream(path) as src:
            shutil.copyfileobj(src, out, length=1 << 22)
        yield tmp
    finally:
        os.unlink(tmp)
