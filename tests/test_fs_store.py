"""Object stores (colonies/fs): both stores against real parts (a directory, moto's S3 server on loopback),
selection from the environment and from refs, streaming with bounded memory, interop with boto3 as
pycolonies uses it."""

from __future__ import annotations

import hashlib
import os
import stat
import time
import tracemalloc
from pathlib import Path

import pytest

from colonies.errors import Cancelled, ConfigError, FsError, ObjectNotFound
from colonies.fs.local import LocalStore
from colonies.fs.s3 import MULTIPART_THRESHOLD, S3Store
from colonies.fs.store import ObjectStore, new_key, store_for_ref, store_from_env
from colonies.model import Ref, S3Object
from tests.conftest import free_port

MiB = 1 << 20


def make_file(path: Path, size: int) -> str:
    """A file of `size` bytes, every MiB different (a misordered part changes the hash); its SHA-256."""
    block = os.urandom(MiB)
    digest = hashlib.sha256()
    with open(path, "wb") as f:
        done, i = 0, 0
        while done < size:
            chunk = (i.to_bytes(8, "big") + block[8:])[: size - done]
            f.write(chunk)
            digest.update(chunk)
            done += len(chunk)
            i += 1
    return digest.hexdigest()


def sha_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(MiB):
            digest.update(chunk)
    return digest.hexdigest()


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest) -> ObjectStore:
    if request.param == "s3":
        return store_from_env(request.getfixturevalue("s3_server"))
    return store_from_env({"COLONIES_FS_DIR": str(request.getfixturevalue("local_store_dir"))})


def boto_like_pycolonies(env: dict[str, str]) -> object:
    """A boto3 client built the way pycolonies builds it from AWS_S3_*."""
    import boto3

    tls = env["AWS_S3_TLS"].lower() in ("true", "1", "yes")
    return boto3.session.Session().client(
        "s3",
        endpoint_url=f"http{'s' if tls else ''}://{env['AWS_S3_ENDPOINT']}",
        aws_access_key_id=env["AWS_S3_ACCESSKEY"],
        aws_secret_access_key=env["AWS_S3_SECRETKEY"],
        region_name=env["AWS_S3_REGION"],
        use_ssl=tls,
        verify=env["AWS_S3_SKIPVERIFY"].lower() not in ("true", "1", "yes"),
    )


# -- both stores -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("size", [0, 1000, MULTIPART_THRESHOLD - 1, MULTIPART_THRESHOLD, 3 * MULTIPART_THRESHOLD + 7])
def test_put_get_delete(store: ObjectStore, tmp_path: Path, size: int) -> None:
    src = tmp_path / "src.bin"
    want = make_file(src, size)
    key = new_key()
    moved_up: list[int] = []
    assert store.put(key, src, moved_up.append) == want
    assert sum(moved_up) == size
    moved_down: list[int] = []
    dst = tmp_path / "dst.bin"
    assert store.get(key, dst, moved_down.append) == want
    assert sum(moved_down) == size
    assert sha_of(dst) == want and dst.stat().st_size == size
    store.delete(key)
    with pytest.raises(ObjectNotFound):
        store.get(key, tmp_path / "again.bin")
    store.delete(key)  # a missing key is not an error


def test_overwrite_and_refs_read_back(store: ObjectStore, tmp_path: Path) -> None:
    src = tmp_path / "a"
    make_file(src, 5000)
    key = new_key()
    store.put(key, src)
    want = make_file(src, 7000)
    store.put(key, src)
    ref = store.ref(key)
    assert ref.s3object.object == key
    assert ref.s3object.accesskey == "" and ref.s3object.secretkey == ""
    env = {"AWS_S3_ACCESSKEY": "testaccess", "AWS_S3_SECRETKEY": "testsecret"}
    assert store_for_ref(ref, env).get(key, tmp_path / "b") == want


def test_failed_upload_leaves_no_object(store: ObjectStore, tmp_path: Path) -> None:
    """A transfer stopped midway (the progress callback raises, as the executor kit's does on a cancel)
    propagates that exception and leaves no object under the key."""
    src = tmp_path / "big"
    make_file(src, 4 * MULTIPART_THRESHOLD)
    key = new_key()

    def stop(n: int) -> None:
        raise Cancelled("stop")

    with pytest.raises(Cancelled):
        store.put(key, src, stop)
    with pytest.raises(ObjectNotFound):
        store.get(key, tmp_path / "out")
    if isinstance(store, LocalStore):
        assert sorted(p.name for p in store.root.iterdir()) == [".colonyfs"]  # no temp file left


def test_streaming_memory_is_bounded(store: ObjectStore, tmp_path: Path) -> None:
    """Moving 256 MiB up and down allocates a small bounded buffer, never the file."""
    src = tmp_path / "big"
    want = make_file(src, 256 * MiB)
    key = new_key()
    tracemalloc.start()
    try:
        assert store.put(key, src) == want
        up_peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.reset_peak()
        assert store.get(key, tmp_path / "down") == want
        down_peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    store.delete(key)
    # S3: at most CONCURRENCY + 1 parts of 8 MiB (and the 8 MiB head) in flight; local: one 1 MiB buffer
    assert up_peak < 96 * MiB, up_peak
    assert down_peak < 32 * MiB, down_peak


@pytest.mark.slow
def test_one_gib_round_trip(store: ObjectStore, tmp_path: Path) -> None:
    src = tmp_path / "gib"
    want = make_file(src, 1 << 30)
    key = new_key()
    t0 = time.monotonic()
    try:
        assert store.put(key, src) == want
        dst = tmp_path / "gib.down"
        assert store.get(key, dst) == want
        assert dst.stat().st_size == 1 << 30
    finally:
        store.delete(key)
        for p in tmp_path.glob("gib*"):
            p.unlink()
    print(f"1 GiB round trip through {type(store).__name__}: {time.monotonic() - t0:.1f} s")


# -- selection ---------------------------------------------------------------------------------------------
def test_store_from_env_picks_s3_then_local_then_refuses(tmp_path: Path) -> None:
    s3env = {"AWS_S3_ENDPOINT": "127.0.0.1:9000", "AWS_S3_BUCKET": "bkt", "AWS_S3_TLS": "true", "AWS_S3_REGION": "r1"}
    s3 = store_from_env({**s3env, "COLONIES_FS_DIR": str(tmp_path / "d")})
    assert isinstance(s3, S3Store)
    assert s3.endpoint_url == "https://127.0.0.1:9000"
    ref = s3.ref("k")
    assert (ref.protocol, ref.s3object.server, ref.s3object.port, ref.s3object.tls) == ("s3", "127.0.0.1", 9000, True)
    assert (ref.s3object.bucket, ref.s3object.region) == ("bkt", "r1")
    assert not (tmp_path / "d").exists()
    local = store_from_env({"COLONIES_FS_DIR": str(tmp_path / "d")})
    assert isinstance(local, LocalStore) and local.root == tmp_path / "d"
    with pytest.raises(ConfigError, match="COLONIES_FS_DIR"):
        store_from_env({})


@pytest.mark.parametrize(
    ("env", "match"),
    [
        ({"AWS_S3_ENDPOINT": "http://127.0.0.1:9000", "AWS_S3_BUCKET": "b"}, "without a scheme"),
        ({"AWS_S3_ENDPOINT": "127.0.0.1", "AWS_S3_BUCKET": "b"}, "host:port"),
        ({"AWS_S3_ENDPOINT": "127.0.0.1:99999", "AWS_S3_BUCKET": "b"}, "host:port"),
        ({"AWS_S3_ENDPOINT": "127.0.0.1:9000"}, "AWS_S3_BUCKET"),
    ],
)
def test_bad_s3_settings_are_clear_errors(env: dict[str, str], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        store_from_env(env)


def test_store_for_ref_refuses_what_it_cannot_read(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="protocol"):
        store_for_ref(Ref(protocol="ftp"))
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "victim").write_text("keep me")
    ref = Ref(protocol="local", s3object=S3Object(bucket=str(plain), object="victim"))
    with pytest.raises(ConfigError, match="not a ColonyFS local store"):
        store_for_ref(ref).delete("victim")
    assert (plain / "victim").read_text() == "keep me"
    assert not (plain / ".colonyfs").exists()
    with pytest.raises(FsError, match="server"):
        store_for_ref(Ref(protocol="s3", s3object=S3Object(bucket="b", object="k")))


# -- the local store ---------------------------------------------------------------------------------------
def test_local_store_modes_nested_keys_and_bad_keys(local_store_dir: Path, tmp_path: Path) -> None:
    os.chmod(local_store_dir, 0o755)
    store = LocalStore(local_store_dir)
    assert stat.S_IMODE(local_store_dir.stat().st_mode) == 0o700
    src = tmp_path / "s"
    want = make_file(src, 100)
    store.put("colony/abc", src)
    assert stat.S_IMODE((local_store_dir / "colony").stat().st_mode) == 0o700
    assert stat.S_IMODE((local_store_dir / "colony" / "abc").stat().st_mode) == 0o600
    ref = store.ref("colony/abc")
    assert ref.protocol == "local" and ref.s3object.bucket == str(local_store_dir) and ref.s3object.port == 0
    assert store_for_ref(ref).get("colony/abc", tmp_path / "o") == want
    for bad in ["", "../x", "a/../../x", "/abs", "a//b", "a\\b", ".colonyfs", "x/.tmp-1"]:
        with pytest.raises(FsError, match="invalid object key"):
            store.put(bad, src)
        with pytest.raises(FsError, match="invalid object key"):
            store.delete(bad)


# -- S3: interop with boto3 the way pycolonies uses it -------------------------------------------------------
@pytest.mark.parametrize("size", [2000, 3 * MULTIPART_THRESHOLD + 5])
def test_s3_interop_with_boto3(s3_server: dict[str, str], tmp_path: Path, size: int) -> None:
    boto = boto_like_pycolonies(s3_server)
    bucket = s3_server["AWS_S3_BUCKET"]
    ours = store_from_env(s3_server)
    src = tmp_path / "src"
    want = make_file(src, size)
    boto.upload_file(str(src), bucket, "from-boto")  # type: ignore[attr-defined]
    assert ours.get("from-boto", tmp_path / "a") == want
    ours.put("from-us", src)
    boto.download_file(bucket, "from-us", str(tmp_path / "b"))  # type: ignore[attr-defined]
    assert sha_of(tmp_path / "b") == want


def test_s3_creates_a_missing_bucket_like_pycolonies(s3_server: dict[str, str], tmp_path: Path) -> None:
    env = {**s3_server, "AWS_S3_BUCKET": s3_server["AWS_S3_BUCKET"] + "-new"}
    store = store_from_env(env)
    with pytest.raises(ObjectNotFound):
        store.get("k", tmp_path / "x")
    store.delete("k")  # no bucket, no object: not an error
    src = tmp_path / "s"
    want = make_file(src, 10)
    store.put("k", src)
    assert store_from_env(env).get("k", tmp_path / "y") == want


def test_s3_unreachable_endpoint_is_an_fs_error(s3_server: dict[str, str], tmp_path: Path) -> None:
    env = {**s3_server, "AWS_S3_ENDPOINT": f"127.0.0.1:{free_port()}"}
    src = tmp_path / "s"
    make_file(src, 10)
    with pytest.raises(FsError, match="127.0.0.1"):
        store_from_env(env).put("k", src)
