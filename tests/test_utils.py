"""rpg.utils: one provenance record and one atomic writer for every results file."""

import json
import os

import pytest

from rpg.utils.atomic import atomic_write, write_json_atomic
from rpg.utils.provenance import command_line, provenance


def test_provenance_has_one_key_per_fact():
    facts = provenance(["python", "job.py", "--seed", "3"], extra={"seeds": [3]})
    assert facts["command"] == "python job.py --seed 3"
    assert set(facts) >= {"command", "commit", "code_dirty", "machine", "versions", "utc", "seeds"}
    assert set(facts["machine"]) >= {"host", "platform", "cpu", "cpus", "accelerator"}
    assert {"python", "torch", "numpy"} <= set(facts["versions"])
    assert facts["commit"] is None or len(facts["commit"]) == 40
    assert facts["code_dirty"] in (True, False, None)


def test_console_script_command_is_written_as_rpg():
    assert command_line(["/usr/local/bin/rpg", "control", "train"]) == "rpg control train"


def test_atomic_write_leaves_the_old_file_when_the_writer_dies(tmp_path):
    target = tmp_path / "result.json"
    write_json_atomic(target, {"a": 1})

    def dies_half_way(handle):
        handle.write(b'{"a": ')
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(target, dies_half_way)
    assert json.loads(target.read_text()) == {"a": 1}
    assert os.listdir(tmp_path) == ["result.json"]  # no temporary file left behind
