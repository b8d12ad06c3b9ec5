"""The local image store's sweep (what a render leaves once its code is settled)."""

from __future__ import annotations

import os
import time

from app.kit.storage import LocalImageStore


def test_keep_only_leaves_the_named_images_and_a_live_writers_temporary(tmp_path):
    store = LocalImageStore(tmp_path)
    for key in ("w/c/new.png", "w/c/new.pdf", "w/c/killed-attempt.pdf", "w/other/kept.png"):
        store.put(key, b"image")
    (tmp_path / "w/c/.tmp-live").write_bytes(b"being written")
    (tmp_path / "w/c/.tmp-dead").write_bytes(b"left by a killed writer")
    an_hour_ago = time.time() - 3600
    os.utime(tmp_path / "w/c/.tmp-dead", (an_hour_ago, an_hour_ago))

    store.keep_only("w/c", {"w/c/new.png", "w/c/new.pdf"})

    assert sorted(p.name for p in (tmp_path / "w/c").iterdir()) == [".tmp-live", "new.pdf", "new.png"]
    assert store.get("w/other/kept.png") == b"image"


def test_keep_only_nothing_removes_the_prefix(tmp_path):
    store = LocalImageStore(tmp_path)
    store.put("w/c/a.png", b"image")
    store.keep_only("w/c", set())
    assert not (tmp_path / "w/c").exists() and (tmp_path / "w").is_dir()
    store.keep_only("w/never-written", set())  # a code deleted before anything was drawn
