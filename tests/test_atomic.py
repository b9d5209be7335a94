"""bench.atomic: a write that fails leaves the target as it was and no temporary file behind."""

import pytest

from bench.atomic import atomic_path, write_json_atomic


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "sub" / "result.json"
    write_json_atomic(target, {"a": 1})
    with pytest.raises(KeyboardInterrupt):
        with atomic_path(target) as tmp:
            tmp.write_text('{"a": 2, "half')
            raise KeyboardInterrupt
    assert target.read_text().replace(" ", "").replace("\n", "") == '{"a":1}'
    assert [p.name for p in target.parent.iterdir()] == ["result.json"]
    with atomic_path(target) as tmp:
        tmp.write_text("new")
    assert target.read_text() == "new" and len(list(target.parent.iterdir())) == 1
