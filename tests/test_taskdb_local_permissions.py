"""`--taskdb local` as root: Postgres runs as the `postgres` user, and no directory of the user's
has its permissions changed to let it in (a 0700 parent sends the data to a directory under /tmp)."""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path

import pytest

from rollback_drill.taskdb import providers


def _modes(path: Path) -> dict[Path, int]:
    return {p: stat.S_IMODE(p.stat().st_mode) for p in [path, *path.parents]}


def test_reachable_by_others_needs_every_directory_above_to_be_passable(tmp_path):
    open_dir = tmp_path / "open"
    open_dir.mkdir()
    closed = tmp_path / "closed"
    closed.mkdir(mode=0o700)
    closed.chmod(0o700)
    (closed / "inner").mkdir(mode=0o755)
    assert providers._reachable_by_others(Path(tempfile.gettempdir()))
    assert not providers._reachable_by_others(closed / "inner")
    open_dir.chmod(0o711)
    tmp_path.chmod(0o711)
    if providers._reachable_by_others(tmp_path.parent):
        assert providers._reachable_by_others(open_dir)


@pytest.mark.skipif(os.geteuid() != 0, reason="only root runs Postgres as another user")
def test_a_closed_parent_is_left_closed_and_the_data_goes_under_tmp(tmp_path):
    closed = tmp_path / "closed"
    closed.mkdir()
    closed.chmod(0o700)
    data_root = closed / "env" / "taskdb"
    before = _modes(closed)
    db = providers.start_local(data_root)
    try:
        assert _modes(closed) == before
        data_dir = Path(db.data_dir or "")
        relocated = data_dir.parent.parent
        assert relocated.parent == Path(tempfile.gettempdir())
        assert relocated.name.startswith(providers.RELOCATED_PREFIX)
        assert stat.S_IMODE(relocated.stat().st_mode) == 0o711
        with db.connect() as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
    finally:
        providers.stop_local(db)
    assert not relocated.exists()
    assert _modes(closed) == before
