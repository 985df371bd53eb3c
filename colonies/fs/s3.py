"""An S3 API (AWS S3, MinIO, Ceph RGW, ...) as an object store, through boto3 (imported lazily).

Configured like pycolonies (see store.py for the variables), so both share one bucket and read each
other's objects. Uploads up to `MULTIPART_THRESHOLD` go in one PUT; bigger ones as a multipart upload
of `PART_SIZE` parts, `CONCURRENCY` at a time, with at most `CONCURRENCY + 1` parts in memory. The
SHA-256 is computed from the bytes as they are read (upload) or received (download), so nothing is
read twice. bench/README.md says why boto3 rather than obstore.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, BinaryIO

from colonies.errors import ConfigError, FsError, ObjectNotFound
from colonies.fs.store import CHUNK, Progress, is_on
from colonies.model import Ref, S3Object

MULTIPART_THRESHOLD = 8 << 20
PART_SIZE = 8 << 20
CONCURRENCY = 4
MISSING = ("404", "NoSuchKey", "NotFound")


def split_endpoint(endpoint: str) -> tuple[str, int]:
    """host:port (as pycolonies takes AWS_S3_ENDPOINT) -> (host, port)."""
    if "://" in endpoint:
        raise ConfigError(
            f"AWS_S3_ENDPOINT={endpoint!r}: give host:port without a scheme (AWS_S3_TLS=true picks https)"
        )
    host, sep, port = endpoint.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"AWS_S3_ENDPOINT={endpoint!r}: expected host:port, e.g. localhost:9000")
    return host.strip("[]"), int(port)


class S3Store:
    """Objects in one bucket of an S3 API server; see the module docstring."""

    def __init__(
        self,
        server: str,
        port: int,
        bucket: str,
        *,
        accesskey: str = "",
        secretkey: str = "",
        region: str = "",
        tls: bool = False,
        skipverify: bool = False,
    ) -> None:
        if not bucket:
            raise ConfigError("no S3 bucket: set AWS_S3_BUCKET")
        self.server, self.port, self.bucket = server, port, bucket
        self.region, self.tls = region, tls
        self._creds = (accesskey, secretkey, skipverify)
        self._bucket_checked = False

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> S3Store:
        server, port = split_endpoint(env.get("AWS_S3_ENDPOINT", ""))
        return cls(
            server,
            port,
            env.get("AWS_S3_BUCKET", ""),
            accesskey=env.get("AWS_S3_ACCESSKEY", ""),
            secretkey=env.get("AWS_S3_SECRETKEY", ""),
            region=env.get("AWS_S3_REGION", ""),
            tls=is_on(env.get("AWS_S3_TLS")),
            skipverify=is_on(env.get("AWS_S3_SKIPVERIFY")),
        )

    @classmethod
    def for_ref(cls, ref: Ref, env: Mapping[str, str]) -> S3Store:
        """The server, bucket, region and TLS come from the ref; the keys from the environment."""
        o = ref.s3object
        if not o.server or not 0 < o.port < 65536 or not o.bucket:
            raise FsError(f"file ref names no S3 server:port and bucket ({o.server!r}:{o.port}, {o.bucket!r})")
        return cls(
            o.server,
            o.port,
            o.bucket,
            accesskey=env.get("AWS_S3_ACCESSKEY", ""),
            secretkey=env.get("AWS_S3_SECRETKEY", ""),
            region=o.region,
            tls=o.tls,
            skipverify=is_on(env.get("AWS_S3_SKIPVERIFY")),
        )

    @property
    def endpoint_url(self) -> str:
        host = f"[{self.server}]" if ":" in self.server else self.server
        return f"http{'s' if self.tls else ''}://{host}:{self.port}"

    def client(self) -> Any:
        accesskey, secretkey, skipverify = self._creds
        return _client(self.endpoint_url, self.region, accesskey, secretkey, skipverify)

    def ref(self, key: str) -> Ref:
        obj = S3Object(
            server=self.server, port=self.port, tls=self.tls, region=self.region, object=key, bucket=self.bucket
        )
        return Ref(protocol="s3", s3object=obj)

    def put(self, key: str, src: Path, progress: Progress | None = None) -> str:
        from boto3.s3.transfer import TransferConfig

        self._ensure_bucket()
        digest = hashlib.sha256()
        with open(src, "rb") as f:
            head = f.read(MULTIPART_THRESHOLD)
            if len(head) < MULTIPART_THRESHOLD:  # small: one PUT, at most the threshold in memory
                digest.update(head)
                if progress is not None and head:
                    progress(len(head))  # before the PUT: a callback that raises stops the upload
                self._call(key, self.client().put_object, Bucket=self.bucket, Key=key, Body=head)
                return digest.hexdigest()
            config = TransferConfig(
                multipart_threshold=MULTIPART_THRESHOLD, multipart_chunksize=PART_SIZE, max_concurrency=CONCURRENCY
            )
            config.max_in_memory_upload_chunks = CONCURRENCY + 1  # s3transfer's bound on buffered parts
            reader = _HashingReader(f, head, digest, progress)
            upload = self.client().upload_fileobj
            self._call(key, upload, reader, self.bucket, key, Config=config)
        return digest.hexdigest()

    def get(self, key: str, dst: Path, progress: Progress | None = None) -> str:
        reply = self._call(key, self.client().get_object, Bucket=self.bucket, Key=key)
        digest = hashlib.sha256()
        body = reply["Body"]
        try:
            with open(dst, "wb") as out:
                for chunk in body.iter_chunks(CHUNK):
                    digest.update(chunk)
                    out.write(chunk)
                    if progress is not None:
                        progress(len(chunk))
        except _boto_errors() as exc:
            raise FsError(f"S3 download of {key!r} from {self.endpoint_url}/{self.bucket} broke off: {exc}") from exc
        finally:
            body.close()
        return digest.hexdigest()

    def delete(self, key: str) -> None:
        try:
            self._call(key, self.client().delete_object, Bucket=self.bucket, Key=key)
        except ObjectNotFound:
            pass

    def _ensure_bucket(self) -> None:
        """Create the bucket if it does not exist yet, as pycolonies does before an upload."""
        if self._bucket_checked:
            return
        from botocore.exceptions import ClientError

        c = self.client()
        try:
            c.head_bucket(Bucket=self.bucket)
        except ClientError as exc:
            if _code(exc) not in MISSING + ("NoSuchBucket",):
                raise self._error("check of the bucket", exc) from exc
            try:
                c.create_bucket(Bucket=self.bucket)
            except ClientError as exc2:
                if _code(exc2) not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                    raise self._error("creation of the bucket", exc2) from exc2
        except _boto_errors() as exc:
            raise self._error("check of the bucket", exc) from exc
        self._bucket_checked = True

    def _call(self, key: str, fn: Callable[..., Any], *args: Any, **kw: Any) -> Any:
        """One boto3 call on `key`, its errors mapped onto ours (a missing object/bucket: ObjectNotFound)."""
        from botocore.exceptions import ClientError

        try:
            return fn(*args, **kw)
        except ClientError as exc:
            if _code(exc) in MISSING + ("NoSuchBucket",):
                raise ObjectNotFound(f"no object {key!r} in {self.endpoint_url}/{self.bucket}") from exc
            raise self._error(f"{fn.__name__} of {key!r}", exc) from exc
        except _boto_errors() as exc:
            raise self._error(f"{fn.__name__} of {key!r}", exc) from exc

    def _error(self, what: str, exc: BaseException) -> FsError:
        return FsError(f"S3 {what} at {self.endpoint_url}/{self.bucket} failed: {exc}")


class _HashingReader:
    """A forward-only reader over an open file (first `head` bytes already read) that hashes what it hands
    out. Having no seek(), it makes s3transfer read parts in order, so the hash sees the bytes in order.
    Progress is counted here, as parts are read: s3transfer would swallow an exception raised from its own
    Callback, while one raised here fails the transfer (and s3transfer aborts the multipart upload)."""

    def __init__(self, f: BinaryIO, head: bytes, digest: Any, progress: Progress | None) -> None:
        self._f, self._head, self._digest, self._progress = f, head, digest, progress

    def read(self, n: int = -1) -> bytes:
        if self._head:
            if n < 0:
                data, self._head = self._head + self._f.read(), b""
            else:
                data, self._head = self._head[:n], self._head[n:]
                if len(data) < n:
                    data += self._f.read(n - len(data))
        else:
            data = self._f.read(n)
        self._digest.update(data)
        if self._progress is not None and data:
            self._progress(len(data))
        return data


def _code(exc: Any) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _boto_errors() -> tuple[type[BaseException], ...]:
    from botocore.exceptions import BotoCoreError, ClientError

    return (BotoCoreError, ClientError)


@functools.lru_cache(maxsize=16)
def _client(endpoint_url: str, region: str, accesskey: str, secretkey: str, skipverify: bool) -> Any:
    """One thread-safe boto3 client per configuration (building one costs tens of milliseconds)."""
    try:
        import boto3
        from botocore.config import Config
    except ImportError as exc:  # pragma: no cover - boto3 is a dependency
        raise ConfigError(f"S3 needs boto3 ({exc})") from exc
    config = Config(
        max_pool_connections=max(10, CONCURRENCY * 2),
        # S3-compatible servers differ on the newer default CRC checksums; we check SHA-256 ourselves
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
    )
    session = boto3.session.Session()  # the default session is not safe to share between threads
    return session.client(
        "s3",
        endpoint_url=endpoint_url,
        aws_access_key_id=accesskey or None,
        aws_secret_access_key=secretkey or None,
        region_name=region or None,
        verify=not skipverify,
        config=config,
    )
