"""Storage layer: the same behaviour on local folders and on a real (moto) S3 server."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tao_sdk import storage as storage_mod
from tao_sdk.errors import StorageError
from tao_sdk.storage import (
    LocalStorage,
    ObjectInfo,
    S3Storage,
    Storage,
    is_remote,
    split_s3_uri,
    storage_for,
)

NESTED = {
    "results/job/train/model_epoch_001.pth": b"\x00\x01weights",
    "results/job/train/status.json": b'{"status": "RUNNING"}\n',
    "results/job/evaluate/kpi/metrics.json": b'{"mAP": 0.5}',
    "results/job/log.txt": b"hello\n",
    "results/job2/other.txt": b"not mine",
}


@pytest.fixture(params=["local", "file-uri", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[Storage, str]:
    """(backend, root URI) for each backend: plain path, file:// URI, s3://bucket/root."""
    if request.param == "local":
        root = str(tmp_path / "root")
    elif request.param == "file-uri":
        root = (tmp_path / "root").as_uri()
    else:
        bucket = request.getfixturevalue("s3_env")
        root = f"s3://{bucket}/root"
    return storage_for(root), root


def _fill(st: Storage, root: str) -> None:
    for rel, data in NESTED.items():
        st.write_bytes(st.join(root, rel), data)


# -- behaviour shared by every backend ------------------------------------------------------


def test_backend_type(store: tuple[Storage, str]) -> None:
    st, root = store
    assert isinstance(st, S3Storage if root.startswith("s3://") else LocalStorage)


def test_write_read_exists(store: tuple[Storage, str]) -> None:
    st, root = store
    uri = st.join(root, "a/b/c.bin")
    assert not st.exists(uri)
    st.write_bytes(uri, b"\x00\xffdata")
    assert st.exists(uri)
    assert st.read_bytes(uri) == b"\x00\xffdata"
    text_uri = st.join(root, "notes.txt")
    st.write_text(text_uri, "héllo ✓\n")
    assert st.read_text(text_uri) == "héllo ✓\n"
    st.write_text(text_uri, "replaced")  # overwrite
    assert st.read_text(text_uri) == "replaced"
    assert st.exists(st.join(root, "a"))  # a folder/prefix holding objects
    assert not st.exists(st.join(root, "nope"))


def test_list_is_recursive_by_default(store: tuple[Storage, str]) -> None:
    st, root = store
    _fill(st, root)
    job = st.join(root, "results/job")
    infos = st.list(job)
    expected = sorted(st.join(root, k) for k in NESTED if k.startswith("results/job/"))
    assert [i.uri for i in infos] == expected  # sorted, nested, and no results/job2/*
    assert all(isinstance(i, ObjectInfo) for i in infos)
    by_uri = {i.uri: i for i in infos}
    ckpt = st.join(root, "results/job/train/model_epoch_001.pth")
    assert by_uri[ckpt].size == len(NESTED["results/job/train/model_epoch_001.pth"])
    assert all(i.mtime > 1_600_000_000 for i in infos)
    # Every listed URI is usable as is.
    assert st.read_bytes(ckpt) == NESTED["results/job/train/model_epoch_001.pth"]
    # Trailing slash gives the same answer; the whole root includes job2.
    assert [i.uri for i in st.list(job + "/")] == expected
    assert len(st.list(root)) == len(NESTED)


def test_list_non_recursive_and_edge_cases(store: tuple[Storage, str]) -> None:
    st, root = store
    _fill(st, root)
    flat = st.list(st.join(root, "results/job"), recursive=False)
    assert [i.uri for i in flat] == [st.join(root, "results/job/log.txt")]
    train = st.list(st.join(root, "results/job/train"), recursive=False)
    assert len(train) == 2
    assert st.list(st.join(root, "results/missing")) == []
    one = st.join(root, "results/job/log.txt")
    assert [i.uri for i in st.list(one)] == [one]


def test_missing_object_errors_name_the_uri(store: tuple[Storage, str], tmp_path: Path) -> None:
    st, root = store
    missing = st.join(root, "results/job/nothing.json")
    for call in (st.read_bytes, st.read_text):
        with pytest.raises(StorageError) as exc:
            call(missing)
        assert missing in str(exc.value)
        assert "not found" in str(exc.value)
    dest = tmp_path / "dl" / "nothing.json"
    with pytest.raises(StorageError) as exc:
        st.download_file(missing, dest)
    assert missing in str(exc.value)
    assert not dest.exists()
    assert not dest.parent.exists() or list(dest.parent.iterdir()) == []


def test_upload_dir_and_download_file(store: tuple[Storage, str], tmp_path: Path) -> None:
    st, root = store
    src = tmp_path / "src"
    for rel, data in NESTED.items():
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_bytes(data)
    prefix = st.join(root, "uploaded")
    assert st.upload_dir(src, prefix) == len(NESTED)
    assert sorted(i.uri for i in st.list(prefix)) == sorted(st.join(prefix, k) for k in NESTED)

    dest = tmp_path / "down" / "deep" / "model.pth"
    st.download_file(st.join(prefix, "results/job/train/model_epoch_001.pth"), dest)
    assert dest.read_bytes() == NESTED["results/job/train/model_epoch_001.pth"]
    assert os.listdir(dest.parent) == ["model.pth"]  # no temp file left behind

    single = st.join(root, "single/file.txt")
    st.upload_file(src / "results/job/log.txt", single)
    assert st.read_bytes(single) == b"hello\n"

    empty = tmp_path / "empty"
    empty.mkdir()
    assert st.upload_dir(empty, st.join(root, "empty")) == 0
    with pytest.raises(StorageError, match="not an existing local folder"):
        st.upload_dir(tmp_path / "absent", prefix)
    with pytest.raises(StorageError, match="no such local file"):
        st.upload_file(tmp_path / "absent.txt", single)


def test_delete(store: tuple[Storage, str]) -> None:
    st, root = store
    _fill(st, root)
    log = st.join(root, "results/job/log.txt")
    st.delete(log)
    assert not st.exists(log)
    st.delete(log)  # idempotent
    st.delete(st.join(root, "results/job"), recursive=True)
    assert st.list(st.join(root, "results/job")) == []
    assert [i.uri for i in st.list(root)] == [st.join(root, "results/job2/other.txt")]


def test_join(store: tuple[Storage, str]) -> None:
    st, root = store
    assert st.join(root, "a", "b/c.txt") == root + "/a/b/c.txt"
    assert st.join(root + "/", "/a/", "", "./b") == root + "/a/b"
    assert st.join(root) == root
    with pytest.raises(StorageError, match=r"'\.\.'"):
        st.join(root, "../escape")


# -- URI helpers and backend selection ------------------------------------------------------


@pytest.mark.parametrize("uri", ["gs://bucket/key", "http://example.com/x", "azure://c/b"])
def test_unsupported_scheme(uri: str) -> None:
    with pytest.raises(StorageError) as exc:
        storage_for(uri)
    msg = str(exc.value)
    assert uri in msg and "s3://" in msg and "file://" in msg


@pytest.mark.parametrize(
    "uri", ["s3://", "s3:///key", "s3://Bad_Bucket/k", "s3://ab/k", "/local/path", "gs://b/k"]
)
def test_malformed_s3_uri(uri: str) -> None:
    with pytest.raises(StorageError, match="malformed S3 URI"):
        split_s3_uri(uri)


def test_storage_for_rejects_malformed_s3() -> None:
    with pytest.raises(StorageError, match="malformed S3 URI"):
        storage_for("s3:///no-bucket")


def test_split_s3_uri() -> None:
    assert split_s3_uri("s3://my-bucket/a/b.txt") == ("my-bucket", "a/b.txt")
    assert split_s3_uri("s3://my-bucket") == ("my-bucket", "")
    assert split_s3_uri("s3://my-bucket/") == ("my-bucket", "")
    assert split_s3_uri("S3://my.bucket/k/") == ("my.bucket", "k/")


def test_is_remote(tmp_path: Path) -> None:
    assert is_remote("s3://b/k")
    assert is_remote("gs://b/k")
    assert not is_remote("/data/coco")
    assert not is_remote("relative/dir")
    assert not is_remote(tmp_path.as_uri())
    assert not is_remote(tmp_path)


def test_storage_for_local_and_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    assert isinstance(storage_for("/tmp/x"), LocalStorage)
    assert isinstance(storage_for("file:///tmp/x"), LocalStorage)
    assert isinstance(storage_for(Path("rel")), LocalStorage)
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3", raising=False)
    monkeypatch.setattr(storage_mod, "_S3_CACHE", {})
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:1")
    a = storage_for("s3://bucket-a/x")
    assert isinstance(a, S3Storage) and a.endpoint_url == "http://127.0.0.1:1"
    assert storage_for("s3://bucket-b/y") is a  # one client per endpoint
    assert a._client is None  # created lazily, not by storage_for
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "http://127.0.0.1:2")  # S3-specific wins
    b = storage_for("s3://bucket-a/x")
    assert b is not a and b.endpoint_url == "http://127.0.0.1:2"
    assert S3Storage("http://explicit:9000").endpoint_url == "http://explicit:9000"


def test_local_storage_rejects_other_schemes() -> None:
    with pytest.raises(StorageError, match="storage_for"):
        LocalStorage().read_bytes("s3://bucket/key")
    with pytest.raises(StorageError, match="malformed file URI"):
        LocalStorage().read_bytes("file://remotehost/etc/passwd")


# -- local specifics: atomic writes ---------------------------------------------------------


def test_local_write_is_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    st = LocalStorage()
    target = tmp_path / "deep" / "dir" / "status.json"
    st.write_text(str(target), "old")  # parents created
    assert target.read_text() == "old"

    def boom(src: object, dst: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(storage_mod.os, "replace", boom)
    with pytest.raises(StorageError, match="no space left in .*deep.dir: .* free"):
        st.write_text(str(target), "new content that must not appear half-written")
    with pytest.raises(StorageError):
        st.download_file(str(target), tmp_path / "copy.json")
    monkeypatch.undo()
    assert target.read_text() == "old"  # old content intact
    assert os.listdir(target.parent) == ["status.json"]  # temp file cleaned up
    assert not (tmp_path / "copy.json").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["deep"]


def test_local_list_hides_in_flight_temp_files(tmp_path: Path) -> None:
    st = LocalStorage()
    (tmp_path / "a.txt").write_text("a")
    (tmp_path / ".tao-tmp-b.txt.xyz").write_text("partial")
    assert [Path(i.uri).name for i in st.list(str(tmp_path))] == ["a.txt"]


def test_local_delete_non_empty_folder_needs_recursive(tmp_path: Path) -> None:
    st = LocalStorage()
    st.write_text(str(tmp_path / "d" / "f.txt"), "x")
    with pytest.raises(StorageError, match="recursive=True"):
        st.delete(str(tmp_path / "d"))
    st.delete(str(tmp_path / "d"), recursive=True)
    assert not (tmp_path / "d").exists()


# -- S3 specifics ---------------------------------------------------------------------------


def test_s3_list_paginates_past_1000_keys(s3_env: str) -> None:
    import boto3

    client = boto3.session.Session().client("s3")  # endpoint from AWS_ENDPOINT_URL
    keys = [f"results/job/train/shard_{i // 100:02d}/obj_{i:05d}.bin" for i in range(1050)]

    def put(chunk: list[str]) -> None:
        for key in chunk:
            client.put_object(Bucket=s3_env, Key=key, Body=b"x")

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(put, [keys[i::8] for i in range(8)]))
    client.put_object(Bucket=s3_env, Key="results/job/top.txt", Body=b"top")

    st = storage_for(f"s3://{s3_env}/results/job")
    infos = st.list(f"s3://{s3_env}/results/job")
    assert len(infos) == 1051
    assert {i.uri for i in infos} >= {f"s3://{s3_env}/{k}" for k in keys}
    assert len(st.list(f"s3://{s3_env}")) == 1051  # bucket root, recursive
    assert [i.uri for i in st.list(f"s3://{s3_env}/results/job", recursive=False)] == [
        f"s3://{s3_env}/results/job/top.txt"
    ]
    st.delete(f"s3://{s3_env}/results", recursive=True)  # batched delete past 1000 keys
    assert st.list(f"s3://{s3_env}") == []


def test_s3_missing_bucket(s3_env: str, tmp_path: Path) -> None:
    st = storage_for(f"s3://{s3_env}")
    uri = "s3://no-such-bucket-tao/x.txt"
    for call in (lambda: st.read_bytes(uri), lambda: st.download_file(uri, tmp_path / "x")):
        with pytest.raises(StorageError) as exc:
            call()
        assert "s3://no-such-bucket-tao" in str(exc.value)
        assert "does not exist" in str(exc.value)
    with pytest.raises(StorageError, match="does not exist"):
        st.list("s3://no-such-bucket-tao/prefix")
    with pytest.raises(StorageError, match="does not exist"):
        st.write_text(uri, "x")
    assert not st.exists(uri)
    assert not st.exists("s3://no-such-bucket-tao")
    assert st.exists(f"s3://{s3_env}")


def test_s3_object_ops_need_a_key(s3_env: str) -> None:
    st = storage_for(f"s3://{s3_env}")
    for uri in (f"s3://{s3_env}", f"s3://{s3_env}/folder/"):
        with pytest.raises(StorageError, match="not an object"):
            st.read_bytes(uri)


def test_s3_no_credentials(s3_env: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    st = S3Storage()  # fresh client: the env chain has no keys now
    with pytest.raises(StorageError, match="AWS_ACCESS_KEY_ID") as exc:
        st.read_bytes(f"s3://{s3_env}/a.txt")
    assert f"s3://{s3_env}/a.txt" in str(exc.value)


def test_s3_never_holds_credentials(s3_env: str) -> None:
    st = S3Storage()
    st.write_text(f"s3://{s3_env}/a.txt", "x")
    assert "testing" not in repr(st)
    assert all("testing" not in repr(v) for k, v in vars(st).items() if k != "_client")


def test_s3_access_denied_message() -> None:
    from botocore.exceptions import ClientError

    exc = ClientError(
        {"Error": {"Code": "AccessDenied", "Message": "Access Denied"}}, "GetObject"
    )
    err = storage_mod._translate_s3_error(exc, "s3://bucket-x/k.txt", "read")
    msg = str(err)
    assert "access denied to s3://bucket-x" in msg
    assert "AWS_ACCESS_KEY_ID" in msg and "AWS_PROFILE" in msg
