"""Generated fault profiles over small fleets: every run keeps every promise, then converges."""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

from hypothesis import given

from tests.chaos._scenario import CHAOS_SETTINGS, Chaos, chaos, run_chaos


@CHAOS_SETTINGS
@given(scenario=chaos())
def test_any_mix_of_faults_keeps_every_invariant_and_converges_once_healed(
    scenario: Chaos,
) -> None:
    """Slow, flaky, hanging, dead and capped clusters: invariants hold; a healed rerun completes."""

    async def main() -> None:
        with tempfile.TemporaryDirectory(prefix="bulkkm-chaos-") as directory:
            async with asyncio.timeout(90):
                await run_chaos(scenario, Path(directory))

    asyncio.run(main())
