"""Atomic checkpoints on both backends: manifest last, latest(), verified restore, fallback, retention."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from rarl.api.types import StorageSpec
from rarl.errors import StorageError
from rarl.storage import CheckpointStore, ChecksumMismatch, open_store
from tests.storage.conftest import make_tree, read_tree


def _snap(tmp_path: Path, step: int) -> Path:
    return make_tree(tmp_path / f"snap-{step}", seed=step)


def test_save_latest_restore(root_uri: str, settings: StorageSpec | None, tmp_path: Path) -> None:
    ckpts = CheckpointStore(root_uri, settings)
    assert ckpts.latest() is None
    assert ckpts.restore_latest(tmp_path / "r0") is None
    for step in (100, 20, 300):  # saved out of order: newest is by step, not by time
        ckpts.save(_snap(tmp_path, step), step, stage="rarl", config_hash="h1", extra={"loss": step / 10})
    latest = ckpts.latest()
    assert latest is not None and latest.step == 300
    assert latest.stage == "rarl" and latest.extra == {"loss": 30.0}
    assert latest.manifest.config_hash == "h1" and latest.manifest.created_at
    assert latest.uri.endswith("/step-300")
    assert [c.step for c in ckpts.list()] == [20, 100, 300]
    dest = ckpts.restore(ckpts.list()[1], tmp_path / "r1")
    assert read_tree(dest) == read_tree(tmp_path / "snap-100")
    manifest = json.loads((dest / "manifest.json").read_text())
    assert manifest["step"] == 100 and {f["path"] for f in manifest["files"]} >= {"empty.txt", "model/adapter_config.json"}


def test_folder_without_manifest_is_invisible(root_uri: str, settings: StorageSpec | None, tmp_path: Path) -> None:
    ckpts = CheckpointStore(root_uri, settings)
    ckpts.save(_snap(tmp_path, 1), 1)
    store = open_store(root_uri, settings)
    store.upload_tree(_snap(tmp_path, 2), "step-2")  # files only: an interrupted upload
    store.write_bytes("step-x/manifest.json", b"{}")  # not a step folder
    store.write_bytes("notes.txt", b"hi")
    assert ckpts.latest().step == 1  # type: ignore[union-attr]
    assert [c.step for c in ckpts.list()] == [1]
    info = ckpts.restore_latest(tmp_path / "r")
    assert info is not None and info.step == 1


def test_invalid_manifest_is_skipped_with_warning(root_uri: str, settings: StorageSpec | None, tmp_path: Path) -> None:
    ckpts = CheckpointStore(root_uri, settings)
    ckpts.save(_snap(tmp_path, 1), 1)
    open_store(root_uri, settings).write_bytes("step-2/manifest.json", b"{not json")
    with pytest.warns(UserWarning, match="step-2"):
        assert ckpts.latest().step == 1  # type: ignore[union-attr]


def test_corrupted_object_falls_back_with_warning(
    root_uri: str, settings: StorageSpec | None, tmp_path: Path
) -> None:
    ckpts = CheckpointStore(root_uri, settings)
    ckpts.save(_snap(tmp_path, 1), 1)
    ckpts.save(_snap(tmp_path, 2), 2)
    store = open_store(root_uri, settings)
    key = "step-2/optim/shard/deep/state.pt"
    size = store.stat(key).size  # type: ignore[union-attr]
    bad = tmp_path / "bad"
    bad.write_bytes(b"\0" * size)  # same size: only sha256 can tell
    store.put_file(bad, key)

    with pytest.raises(ChecksumMismatch) as exc:
        ckpts.restore(ckpts.latest(), tmp_path / "direct")  # type: ignore[arg-type]
    assert [m.path for m in exc.value.mismatches] == ["optim/shard/deep/state.pt"]
    assert "sha256" in str(exc.value)

    with pytest.warns(UserWarning, match=r"step-2.*optim/shard/deep/state\.pt"):
        info = ckpts.restore_latest(tmp_path / "r")
    assert info is not None and info.step == 1
    assert read_tree(tmp_path / "r") == read_tree(tmp_path / "snap-1")


def test_missing_object_falls_back(root_uri: str, settings: StorageSpec | None, tmp_path: Path) -> None:
    ckpts = CheckpointStore(root_uri, settings)
    ckpts.save(_snap(tmp_path, 1), 1)
    ckpts.save(_snap(tmp_path, 2), 2)
    open_store(root_uri, settings).delete("step-2/rng state.bin")
    with pytest.raises(ChecksumMismatch) as exc:
        ckpts.restore(ckpts.latest(), tmp_path / "direct")  # type: ignore[arg-type]
    assert [(m.path, m.problem) for m in exc.value.mismatches] == [("rng state.bin", "missing")]
    assert read_tree(tmp_path / "direct")["empty.txt"]  # the other files were still fetched
    with pytest.warns(UserWarning, match="rng state.bin"):
        info = ckpts.restore_latest(tmp_path / "r")
    assert info is not None and info.step == 1


def test_overwriting_a_step_hides_it_until_complete(
    root_uri: str, settings: StorageSpec | None, tmp_path: Path
) -> None:
    ckpts = CheckpointStore(root_uri, settings)
    ckpts.save(_snap(tmp_path, 1), 1)
    ckpts.save(_snap(tmp_path, 5), 1, stage="second")
    assert ckpts.latest().stage == "second"  # type: ignore[union-attr]
    assert read_tree(ckpts.restore(ckpts.latest(), tmp_path / "r")) == read_tree(tmp_path / "snap-5")  # type: ignore[arg-type]


def test_prune_retention(root_uri: str, settings: StorageSpec | None, tmp_path: Path) -> None:
    ckpts = CheckpointStore(root_uri, settings)
    store = open_store(root_uri, settings)
    snap = _snap(tmp_path, 0)
    for step in (1, 2, 3, 4, 5):
        ckpts.save(snap, step)
    store.upload_tree(snap, "step-3-extra")  # unrelated name, untouched
    store.write_bytes("step-2x/file", b"")  # unrelated name, untouched
    store.upload_tree(snap, "step-0")  # failed leftover older than the newest: garbage
    store.upload_tree(snap, "step-9")  # being written (newer than newest complete): kept
    with pytest.raises(ValueError):
        ckpts.prune(0)
    deleted = ckpts.prune(2)
    assert deleted == [0, 1, 2, 3]
    assert [c.step for c in ckpts.list()] == [4, 5]
    assert set(store.list_dirs("")) == {"step-4", "step-5", "step-9", "step-3-extra", "step-2x"}
    assert ckpts.prune(2) == []
    assert ckpts.prune(1) == [4]
    assert ckpts.latest().step == 5  # type: ignore[union-attr]
    assert store.exists("step-9/empty.txt")


def test_prune_never_deletes_newest_even_if_keep_exceeds(
    root_uri: str, settings: StorageSpec | None, tmp_path: Path
) -> None:
    ckpts = CheckpointStore(root_uri, settings)
    assert ckpts.prune(3) == []
    ckpts.save(_snap(tmp_path, 0), 7)
    assert ckpts.prune(1) == [] and ckpts.latest().step == 7  # type: ignore[union-attr]


def test_save_of_missing_dir_fails_cleanly(root_uri: str, settings: StorageSpec | None, tmp_path: Path) -> None:
    ckpts = CheckpointStore(root_uri, settings)
    with pytest.raises(StorageError, match="not a directory"):
        ckpts.save(tmp_path / "nope", 1)
    assert ckpts.latest() is None


def test_local_layout_is_plain_files(tmp_path: Path) -> None:
    """Local checkpoints are ordinary folders (inspectable, no temp files left behind)."""
    ckpts = CheckpointStore(f"file://{tmp_path}/ck")
    ckpts.save(_snap(tmp_path, 3), 3)
    files = sorted(p.relative_to(tmp_path / "ck").as_posix() for p in (tmp_path / "ck").rglob("*") if p.is_file())
    assert "step-3/manifest.json" in files and not any(".rarl-tmp-" in f for f in files)
    assert os.listdir(tmp_path / "ck") == ["step-3"]


# --------------------------------------------------------------------------- parts (sharded, several nodes)


def _shard(tmp_path: Path, node: str, rank: int) -> Path:
    folder = tmp_path / node / "weights"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"__{rank}_0.distcp").write_bytes(os.urandom(2048))
    return tmp_path / node


def test_a_checkpoint_waits_for_every_part_of_its_save_and_lists_it(root_uri: str, settings: StorageSpec | None,
                                                                    tmp_path: Path) -> None:
    import threading

    ckpts = CheckpointStore(root_uri, settings)
    main, other = _shard(tmp_path, "node0", 0), _shard(tmp_path, "node1", 1)
    ckpts.save_part(other, 4, name="rank-1", token="old", paths=["weights/__1_0.distcp"])  # an earlier attempt's
    (other / "weights" / "__1_0.distcp").write_bytes(b"this attempt's shard")
    late = threading.Timer(0.8, lambda: ckpts.save_part(other, 4, name="rank-1", token="new",
                                                        paths=["weights/__1_0.distcp"]))
    late.start()
    info = ckpts.save(main, 4, parts=["rank-1"], token="new", parts_timeout=30)
    late.join()
    assert {f.path for f in info.manifest.files} == {"weights/__0_0.distcp", "weights/__1_0.distcp"}
    dest = ckpts.restore(ckpts.latest(), tmp_path / "restored")
    assert (dest / "weights" / "__1_0.distcp").read_bytes() == b"this attempt's shard"  # not the older part


def test_a_part_that_never_arrives_fails_the_save_without_a_manifest(root_uri: str, settings: StorageSpec | None,
                                                                      tmp_path: Path) -> None:
    ckpts = CheckpointStore(root_uri, settings)
    ckpts.save(_snap(tmp_path, 2), 2)
    with pytest.raises(StorageError, match=r"part rank-1 .* did not arrive"):
        ckpts.save(_shard(tmp_path, "node0", 0), 4, parts=["rank-1"], token="t", parts_timeout=1)
    assert ckpts.latest().step == 2  # step 4 does not exist
    with pytest.raises(StorageError, match="missing"):
        ckpts.save_part(tmp_path / "node0", 4, name="rank-1", token="t", paths=["weights/__9_0.distcp"])


def test_a_part_that_failed_fails_the_save_at_once(root_uri: str, settings: StorageSpec | None,
                                                   tmp_path: Path) -> None:
    """The other node says its part failed: rank 0's save ends now, not after its parts timeout."""
    import time

    ckpts = CheckpointStore(root_uri, settings)
    with pytest.raises(StorageError, match="missing"):
        ckpts.save_part(tmp_path / "node1", 4, name="rank-1", token="t", paths=["weights/__1_0.distcp"])
    started = time.monotonic()
    with pytest.raises(StorageError, match=r"step 4: checkpoint part rank-1 of step 4: missing"):
        ckpts.save(_shard(tmp_path, "node0", 0), 4, parts=["rank-1"], token="t", parts_timeout=60)
    assert time.monotonic() - started < 30
    assert ckpts.latest() is None
