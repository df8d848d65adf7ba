"""A production install (without the simulator's extra) runs every fleet command."""

from __future__ import annotations

import subprocess
import sys

WITHOUT_TRUSTME = """
import sys
sys.modules["trustme"] = None  # as if `pip install bulkkm` without [sim]
import bulkkm.cli, bulkkm.engine, bulkkm.ontap, bulkkm.request, bulkkm.runner
assert "bulkkm.simulator" not in sys.modules, "the engine side imported the simulator"
for command in (["demo"], ["simulate"]):
    assert bulkkm.cli.main(command) == 2
print("ok")
"""


def test_fleet_commands_need_no_simulator_and_say_how_to_get_it() -> None:
    """Without trustme the engine imports and `demo`/`simulate` say which extra they need."""
    result = subprocess.run(
        [sys.executable, "-c", WITHOUT_TRUSTME], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
    assert result.stderr.count("pip install 'bulkkm[sim]'") == 2
